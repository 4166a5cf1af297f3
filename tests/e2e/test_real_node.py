"""Models really serve: ModelDeployments whose Pods run the server image on the cluster's real
node (containerd, kubelet, kube-proxy), fetching real scikit-learn models from this host over
HTTP, verified by digest in the init container, probed by the kubelet, and called through the
Service's ClusterIP. Nothing here runs on kwok."""

from __future__ import annotations

import contextlib
import json
import math
import socket
from pathlib import Path

import joblib
import numpy as np
import pytest
from modelroll_contract import EXIT_INTEGRITY_MISMATCH, termination_detail
from node import SINK  # tests/cluster, on sys.path through tests/conftest.py

from tests.e2e.operator_helpers import apply, phase_is, plugin, stable_version_is, status_of, weights_are
from tests.e2e.real_node import (
    REAL_NODE,
    SERVER_IMAGE,
    ServiceLoad,
    cluster_ip,
    infer,
    real_manifest,
    wait_until_proxied,
)
from tests.helpers import get_json, wait_for

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 180  # a cold node: images unpacked, Python and scikit-learn imported twice per Pod
TRAFFIC_RATE = 50.0  # requests a second through the Service during a rollout


class NotInTheImage:
    """A class only this test module defines: the server image cannot unpickle it."""

    def predict(self, X):  # noqa: N803 - scikit-learn's naming
        return np.zeros(len(X))


def pods_of(kubectl, namespace: str, name: str) -> list[dict]:
    return get_json(kubectl, "pods", "-n", namespace, "-l", f"modelroll.io/name={name}")["items"]


def condition(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def serve(kubectl, namespace, model_store, trained, name, version="v1", replicas=2, **spec) -> str:
    """Apply a ModelDeployment of `version` and wait until it is Healthy; returns the
    Service address."""
    _, models = trained
    uri, digest = model_store.put(f"{namespace}-{name}-{version}.joblib", models[version].data)
    apply(kubectl, namespace, real_manifest(name, uri, digest, version, replicas, **spec))
    wait_for(
        stable_version_is(kubectl, namespace, name, version),
        timeout=READY_TIMEOUT,
        message=lambda: f"{name} Healthy at {version}; status {status_of(kubectl, namespace, name)}",
    )
    wait_until_proxied(kubectl, namespace, name)
    return cluster_ip(kubectl, namespace, name)


def test_model_serves_through_the_service(kubectl, namespace, real_operator, model_store, trained):
    rows, models = trained
    address = serve(kubectl, namespace, model_store, trained, "iris")

    pods = pods_of(kubectl, namespace, "iris")
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == REAL_NODE
        fetch = pod["status"]["initContainerStatuses"][0]
        assert fetch["name"] == "fetch-model"
        assert fetch["state"]["terminated"]["exitCode"] == 0  # fetched and digest-verified for real
        server = pod["status"]["containerStatuses"][0]
        assert server["ready"] and server["restartCount"] == 0

    answer = infer(address, "iris", rows, request_id="req-42")
    assert answer["id"] == "req-42"
    assert answer["model_name"] == "iris" and answer["model_version"] == "v1"
    proba = next(o for o in answer["outputs"] if o["name"] == "predict_proba")
    assert proba["shape"] == [len(rows), 3]
    expected = models["v1"].estimator.predict_proba(rows)
    np.testing.assert_array_equal(np.asarray(proba["data"]).reshape(proba["shape"]), expected)


def test_wrong_digest_is_refused_and_the_old_model_keeps_serving(
    kubectl, namespace, real_operator, model_store, trained
):
    rows, models = trained
    address = serve(kubectl, namespace, model_store, trained, "guarded", progressDeadlineSeconds=40)
    traffic = ServiceLoad(address, "guarded", rows, rate=TRAFFIC_RATE, threads=1).start()
    try:
        uri, _ = model_store.put(f"{namespace}-v2.joblib", models["v2"].data)
        wrong = "sha256:" + "0" * 64
        apply(kubectl, namespace, real_manifest("guarded", uri, wrong, "v2", progressDeadlineSeconds=40))
        status = wait_for(
            phase_is(kubectl, namespace, "guarded", "Degraded"),
            timeout=READY_TIMEOUT,
            message=lambda: f"Degraded; status {status_of(kubectl, namespace, 'guarded')}",
        )
    finally:
        traffic.stop()

    verified = condition(status, "ModelVerified")
    assert verified["status"] == "False" and verified["reason"] == "IntegrityMismatch", verified
    assert condition(status, "Degraded")["reason"] == "IntegrityMismatch"
    # The reason came from the init container's real termination message.
    new_pods = [p for p in pods_of(kubectl, namespace, "guarded") if p["status"].get("initContainerStatuses")]
    stops = [
        s.get("state", {}).get("terminated") or s.get("lastState", {}).get("terminated") or {}
        for p in new_pods
        for s in p["status"]["initContainerStatuses"]
    ]
    refusal = next((t for t in stops if wrong[7:19] in t.get("message", "")), None)
    assert refusal, stops  # the init container named the digest it was asked for
    # its exit code said why (the contract's), and the operator shows the message's detail
    assert refusal["exitCode"] == EXIT_INTEGRITY_MISMATCH, refusal
    line = refusal["message"].strip().splitlines()[-1]
    assert termination_detail(line) in verified["message"], (line, verified["message"])
    assert status["stable"]["version"] == "v1"
    assert traffic.ok > 50 and traffic.failures == [], traffic.failures[:5]
    assert set(traffic.versions) == {"v1"}


def test_model_that_cannot_load_is_a_crash_loop_reported_as_model_load_failed(
    kubectl, namespace, real_operator, model_store, tmp_path
):
    path = tmp_path / "alien.joblib"
    joblib.dump(NotInTheImage(), path)
    uri, digest = model_store.put(f"{namespace}-alien.joblib", path.read_bytes())
    apply(kubectl, namespace, real_manifest("alien", uri, digest, "v1", replicas=1, progressDeadlineSeconds=60))

    def crash_looping():
        for pod in pods_of(kubectl, namespace, "alien"):
            for cs in pod["status"].get("containerStatuses") or []:
                if (cs.get("state", {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff":
                    return cs
        return None

    cs = wait_for(crash_looping, timeout=READY_TIMEOUT, message="the server container in CrashLoopBackOff")
    assert cs["restartCount"] >= 1
    # The server's own one-line reason, through the kubelet's termination message.
    assert "ModuleNotFoundError" in cs["lastState"]["terminated"]["message"], cs["lastState"]
    status = wait_for(
        phase_is(kubectl, namespace, "alien", "Degraded"),
        timeout=READY_TIMEOUT,
        message=lambda: f"Degraded; status {status_of(kubectl, namespace, 'alien')}",
    )
    assert condition(status, "Degraded")["reason"] == "ModelLoadFailed", status
    assert "crash-looping" in status["message"] and "ModuleNotFoundError" in status["message"], status["message"]


STRATEGIES = {
    "Rolling": {"type": "Rolling", "rolling": {"maxSurge": 1, "maxUnavailable": 0}},
    "BlueGreen": {"type": "BlueGreen", "blueGreen": {"autoPromotionSeconds": 3, "scaleDownDelaySeconds": 5}},
    "Canary": {"type": "Canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "5s"}}]}},
}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_rollout_under_continuous_traffic_fails_no_request(
    kubectl, namespace, real_operator, model_store, trained, strategy
):
    rows, models = trained
    spec = {"strategy": STRATEGIES[strategy]}
    address = serve(kubectl, namespace, model_store, trained, "live", **spec)
    traffic = ServiceLoad(address, "live", rows, rate=TRAFFIC_RATE, threads=1).start()
    try:
        wait_for(lambda: traffic.ok >= 20, timeout=30, message="traffic flowing before the rollout")
        uri, digest = model_store.put(f"{namespace}-live-v2.joblib", models["v2"].data)
        apply(kubectl, namespace, real_manifest("live", uri, digest, "v2", **spec))
        wait_for(
            stable_version_is(kubectl, namespace, "live", "v2"),
            timeout=2 * READY_TIMEOUT,
            message=lambda: f"v2 promoted; status {status_of(kubectl, namespace, 'live')}",
        )
        # Old Pods drain after promotion: keep calling until only v2 answers.
        seen = traffic.ok
        wait_for(
            lambda: (
                not [p for p in pods_of(kubectl, namespace, "live") if p["metadata"].get("deletionTimestamp")]
                and len(pods_of(kubectl, namespace, "live")) == 2
            ),
            timeout=READY_TIMEOUT,
            message="old Pods gone",
        )
        wait_for(lambda: traffic.ok > seen + 20, timeout=30, message="traffic after the old Pods left")
    finally:
        traffic.stop()
    assert traffic.failures == [], f"{len(traffic.failures)} of {traffic.ok + len(traffic.failures)} failed: " + (
        "; ".join(traffic.failures[:5])
    )
    assert traffic.versions["v1"] > 0 and traffic.versions["v2"] > 0, traffic.versions


def test_canary_at_half_weight_splits_fresh_connections_by_replica_ratio(
    kubectl, namespace, real_operator, model_store, trained, kubeconfig
):
    rows, models = trained
    spec = {"strategy": {"type": "Canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}}
    address = serve(kubectl, namespace, model_store, trained, "split", **spec)
    uri, digest = model_store.put(f"{namespace}-split-v2.joblib", models["v2"].data)
    apply(kubectl, namespace, real_manifest("split", uri, digest, "v2", **spec))
    status = wait_for(
        weights_are(kubectl, namespace, "split", 50, 50),
        timeout=READY_TIMEOUT,
        message=lambda: f"weights 50/50; status {status_of(kubectl, namespace, 'split')}",
    )
    assert status["phase"] == "Paused"
    endpoints = wait_until_proxied(kubectl, namespace, "split")
    assert len(endpoints) == 2  # 1 stable + 1 canary: the 50/50 split status reports

    n = 400
    versions = [infer(address, "split", rows[i % len(rows) : i % len(rows) + 1])["model_version"] for i in range(n)]
    canary = versions.count("v2")
    # Binomial(n, w): allow 4 standard deviations (a false alarm about once in 16,000 runs).
    w = status["weights"]["canary"] / 100
    bound = 4 * math.sqrt(n * w * (1 - w))
    assert abs(canary - n * w) <= bound, f"canary answered {canary}/{n}, expected {n * w:.0f} ± {bound:.0f}"
    assert set(versions) == {"v1", "v2"}

    plugin(kubeconfig, "promote", "split", "-n", namespace)
    wait_for(
        stable_version_is(kubectl, namespace, "split", "v2"),
        timeout=READY_TIMEOUT,
        message=lambda: f"v2 promoted; status {status_of(kubectl, namespace, 'split')}",
    )


PROBE = """
import json, os, socket, sys
def connect(host, port):
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        return "connected"
    except OSError as e:
        return type(e).__name__ + ": " + str(e)
print(json.dumps({
    "api": connect(os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]),
    "host": connect(sys.argv[1], sys.argv[2]),
    "outside": connect(sys.argv[3], 80),
    "routes": open("/proc/net/route").read().split("\\n")[1:],
}))
"""


def test_pods_reach_the_api_server_and_this_host_but_nothing_outside(kubectl, namespace, model_store, host_ip):
    """The Pod network is contained: a Pod reaches the API server through the `kubernetes`
    Service and this host at host-ip, and has no route to anything else."""
    outside = "192.0.2.1"  # TEST-NET-1: the address of no network this project creates
    host_port = model_store.base.rsplit(":", 1)[1]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "probe",
                    "image": SERVER_IMAGE,
                    "command": ["python3", "-c", PROBE, host_ip, host_port, outside],
                }
            ],
        },
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    wait_for(
        lambda: get_json(kubectl, "pod", "probe", "-n", namespace)["status"].get("phase") == "Succeeded",
        timeout=READY_TIMEOUT,
        message=lambda: f"probe Pod done: {get_json(kubectl, 'pod', 'probe', '-n', namespace)['status']}",
    )
    result = json.loads(kubectl("logs", "probe", "-n", namespace).stdout)
    assert result["api"] == "connected", result
    assert result["host"] == "connected", result
    assert result["outside"].startswith("OSError") or "unreachable" in result["outside"].lower(), result
    default_routes = [r for r in result["routes"] if r.split("\t")[1:2] == ["00000000"]]
    assert default_routes == [], result["routes"]


def test_a_packet_for_a_fake_pod_dies_in_the_sink(kubectl, namespace):
    """A Service whose endpoint is a kwok-range address: kube-proxy translates the ClusterIP to
    an address no one has, and the packet dies on the sink interface instead of leaving."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "nowhere"},
        "spec": {"ports": [{"port": 80}]},
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "nowhere-1", "labels": {"kubernetes.io/service-name": "nowhere"}},
        "addressType": "IPv4",
        "ports": [{"port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.7.7"], "conditions": {"ready": True}}],
    }
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [service, endpoints]}),
    )
    address = cluster_ip(kubectl, namespace, "nowhere")

    def sink_tx() -> int:
        return int(Path(f"/sys/class/net/{SINK}/statistics/tx_packets").read_text())

    before = sink_tx()

    def translated_and_dropped() -> bool:
        with contextlib.suppress(OSError):
            socket.create_connection((address, 80), timeout=0.5).close()
            raise AssertionError(f"{address}:80 answered; it has no real endpoint")
        return sink_tx() > before

    wait_for(translated_and_dropped, timeout=30, message=f"a SYN to {address} counted on {SINK}")
