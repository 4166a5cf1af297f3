"""Automated analysis end to end, on real traffic and real metrics.

Each test runs the operator (configured with its own Prometheus) against the real API server,
and a Canary ModelDeployment whose Pods run the real server image on the cluster's real node
(no kwok placement), serving scikit-learn models trained here and fetched from this host
(``model_store``). Traffic goes from the host to the Service's ClusterIP on fresh connections,
so kube-proxy splits it by the Pods' replica ratio: the test never chooses which model
answers. Prometheus runs on the host (upstream's, built with Kubernetes service discovery by
tests/cluster/build-tools.sh) and scrapes the Pods every second with the job in
docs/prometheus-scrape-config.yaml (the chart PodMonitor's equivalent; the last test here
checks the two agree), as written save for what a Prometheus outside the cluster adds to its
discovery: the cluster's kubeconfig and the test namespace. Its role-pod discovery watches
that namespace's Pods on the API server, and its relabelling keeps and labels them. Every
verdict below is the operator's own analysis of what those Pods really served:

- a good canary is promoted;
- a canary whose model raises on a category it never saw (a scikit-learn OneHotEncoder,
  ``handle_unknown="error"``) answers 500 to ~30 % of the rows, and is rolled back on errorRate;
- a canary trained on shuffled labels (it learned nothing and answers every row with the
  base rate) is rolled back on predictionShift;
- a Prometheus outage (the process stopped) holds the rollout instead of rolling it back, and
  it finishes once Prometheus is back;
- traffic below minSamples holds the rollout (Inconclusive).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.analysis.parts import SCRAPE_CONFIG, Prometheus, joblib_files, pod_scrape_job
from tests.e2e.conftest import start_operator
from tests.e2e.operator_helpers import apply, events_of, plugin, stable_version_is, status_of
from tests.e2e.real_node import REAL_NODE, SERVER_IMAGE, ModelStore, ServiceLoad, cluster_ip, infer, real_manifest
from tests.e2e.test_chart import render
from tests.helpers import get_json, wait_for

pytestmark = pytest.mark.e2e
NAME = "churn"
READY_TIMEOUT = 180  # a Pod on the real node: model fetched, Python and scikit-learn imported
RATE = 50.0  # requests a second through the Service, about half of them to the canary
MIN_SAMPLES = 80
GATES = [
    {"builtin": "errorRate", "max": 0.05},
    {"builtin": "latencyP99", "max": 2000},
    # The gate tests PSI against maxPSI given the sample sizes (docs/analysis.md): with ~125
    # canary requests a window at RATE and ~7 populated confidence bins, the critical PSI is
    # ~1.2 at the default significance, far above a good canary's noise (~0.1-0.2) and far
    # below the PSI of a canary that learned nothing (> 5). Likewise a ~30 % 5xx share over
    # ~125 requests has a 99 % lower bound near 0.2, well above errorRate's max.
    {"builtin": "predictionShift", "maxPSI": 0.5},
]


def strategy() -> dict:
    return {
        "type": "Canary",
        "canary": {
            # one stable Pod at full scale and, at 50 %, one canary Pod: a 50/50 split
            "steps": [{"setWeight": 50}, {"pause": {"duration": "2s"}}],
            "analysis": {
                "interval": "5s",  # also the query window: ~125 canary requests at RATE
                "failureLimit": 1,
                "consecutiveErrorLimit": 30,
                "minSamples": MIN_SAMPLES,
                "gates": GATES,
            },
        },
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """joblib files: stable, a good canary, one that fails on an unseen category, and one
    trained on shuffled labels."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    n = 600
    plan = rng.integers(0, 3, n).astype(float)  # a categorical feature: plans 0, 1, 2
    usage = rng.normal(size=(n, 3))
    X = np.column_stack([plan, usage])
    y = (usage[:, 0] + 0.3 * plan + rng.normal(scale=0.5, size=n) > 0.3).astype(int)
    built = {
        "stable": LogisticRegression().fit(X, y),
        "good": LogisticRegression(C=0.8).fit(X, y),
        # one-hot encodes the plan and refuses plans it never saw: 500 on that part of the traffic
        "failing": make_pipeline(
            ColumnTransformer([("plan", OneHotEncoder(handle_unknown="error"), [0])], remainder="passthrough"),
            LogisticRegression(),
        ).fit(X, y),
        # labels shuffled before training: it predicts the base rate (~0.57) for everyone, so its
        # confidence histogram sits in one bucket while the stable model's spreads over seven
        "shifted": LogisticRegression().fit(X, rng.permutation(y)),
    }
    return joblib_files(built, tmp_path_factory.mktemp("analysis-models"))


def traffic_rows() -> np.ndarray:
    rng = np.random.default_rng(1)
    n = 400
    plan = rng.choice([0.0, 1.0, 2.0, 3.0], size=n, p=[0.24, 0.23, 0.23, 0.30])  # plan 3 is new since training
    return np.column_stack([plan, rng.normal(size=(n, 3))])


@dataclass
class Rig:
    kubectl: Callable
    namespace: str
    prometheus: Prometheus
    operator: object
    store: ModelStore
    models: dict[str, bytes]
    canary: str
    address: str = ""
    load: ServiceLoad | None = None

    def deploy(self, version: str, model: str) -> None:
        uri, digest = self.store.put(f"{self.namespace}-{model}.joblib", self.models[model])
        apply(self.kubectl, self.namespace, real_manifest(NAME, uri, digest, version, 1, strategy=strategy()))

    def roll_out(self) -> None:
        """v2, the canary model, replaces v1: the canary rollout with analysis starts."""
        self.deploy("v2", self.canary)

    def status(self) -> dict:
        return status_of(self.kubectl, self.namespace, NAME)

    def describe(self) -> str:
        log = self.operator.log()[-3000:]  # type: ignore[attr-defined]
        load = self.load and (dict(self.load.codes), dict(self.load.versions))
        return f"status {self.status()}\ntraffic (codes, versions) {load}\noperator log:\n{log}"


@pytest.fixture
def rig(
    models, run_operator, install_crds, namespace, kubectl, kubeconfig, model_store, tmp_path
) -> Iterator[Callable[..., Rig]]:
    """rig(canary_model, rate) -> Rig: Prometheus and the operator started, v1 Healthy on the
    real node and scraped, traffic flowing through the Service; all stopped afterwards (the
    operator by run_operator, the namespace by its fixture)."""
    started = contextlib.ExitStack()  # closes everything, even when one close fails

    def build(canary: str, rate: float = RATE) -> Rig:
        prometheus, operator = observed_operator(started, run_operator, namespace, kubeconfig, tmp_path)
        r = Rig(kubectl, namespace, prometheus, operator, model_store, models, canary)
        r.deploy("v1", "stable")
        wait_for(stable_version_is(kubectl, namespace, NAME, "v1"), timeout=READY_TIMEOUT, message=r.describe)
        r.address = cluster_ip(kubectl, namespace, NAME)
        r.load = ServiceLoad(r.address, NAME, traffic_rows(), rate=rate, max_seconds=600)
        started.callback(r.load.stop)
        r.load.start()
        wait_for(  # discovered, scraped, and counting this traffic
            lambda: served_by_track(r.prometheus, namespace).get(("stable", "v1"), 0) > 0,
            timeout=60,
            message=lambda: f"the stable Pod's requests in Prometheus; targets {r.prometheus.active_targets()}",
        )
        return r

    with started:
        yield build


def observed_operator(
    started: contextlib.ExitStack, run_operator: Callable, namespace: str, kubeconfig: Path, tmp_path: Path
) -> tuple[Prometheus, object]:
    """A Prometheus discovering ``namespace``'s model Pods and the operator reading it (the real
    server image for the Pods), both stopped when ``started`` closes."""
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    prometheus = Prometheus(workdir, [pod_scrape_job(kubeconfig, namespace)])
    started.callback(prometheus.stop)
    prometheus.start()
    operator = start_operator(
        run_operator, namespace, MODELROLL_SERVER_IMAGE=SERVER_IMAGE, MODELROLL_PROMETHEUS_URL=prometheus.url
    )
    return prometheus, operator


def served_by_track(prometheus: Prometheus, namespace: str) -> dict[tuple[str, str], float]:
    """Requests Prometheus has counted so far, by (track, model_version), over every Pod it
    ever scraped in the namespace (last_over_time skips the staleness markers of Pods gone)."""
    result = prometheus.query(
        f'sum by (track, model_version) (last_over_time(modelroll_requests_total{{namespace="{namespace}"}}[10m]))'
    )
    return {(s["metric"]["track"], s["metric"]["model_version"]): float(s["value"][1]) for s in result}


def degraded_with(r: Rig, reason: str):
    def check():
        s = r.status()
        return s if s.get("phase") == "Degraded" and s.get("reason") == reason else None

    return check


def model_pods(kubectl, namespace: str) -> dict[str, dict]:
    """The namespace's model Pods that have an IP and have not finished, by name: what the
    scrape job's discovery and relabelling should turn into targets."""
    pods = get_json(kubectl, "pods", "-n", namespace, "-l", "app.kubernetes.io/managed-by=modelroll")["items"]
    return {
        p["metadata"]["name"]: p
        for p in pods
        if p["status"].get("podIP") and p["status"].get("phase") not in ("Failed", "Succeeded")
    }


def targets_are_the_pods(r: Rig) -> dict[str, tuple[dict, dict]] | None:
    """{Pod name: (Pod, target)} when the targets Prometheus discovered are exactly the
    namespace's model Pods (same names, UIDs and IPs), else None (discovery not caught up)."""
    pods = model_pods(r.kubectl, r.namespace)
    targets = {t["discoveredLabels"].get("__meta_kubernetes_pod_name"): t for t in r.prometheus.active_targets()}
    meta = ("__meta_kubernetes_pod_uid", "__meta_kubernetes_pod_ip")
    seen = {(name, *(t["discoveredLabels"].get(k) for k in meta)) for name, t in targets.items()}
    if seen != {(name, p["metadata"]["uid"], p["status"]["podIP"]) for name, p in pods.items()}:
        return None
    return {name: (pods[name], targets[name]) for name in pods}


def assert_scraped_as_the_podmonitor_would(pod: dict, target: dict, namespace: str) -> None:
    """The target Prometheus' role-pod discovery made of ``pod``, after the job's relabelling."""
    assert target["scrapeUrl"] == f"http://{pod['status']['podIP']}:8080/metrics", target
    found = target["discoveredLabels"]
    assert found["__meta_kubernetes_namespace"] == namespace and found["__meta_kubernetes_pod_node_name"] == REAL_NODE
    assert found["__meta_kubernetes_pod_container_port_name"] == "http", found
    assert found["__meta_kubernetes_pod_label_modelroll_io_track"] == pod["metadata"]["labels"]["modelroll.io/track"]
    labels = target["labels"]
    assert {k: labels.get(k) for k in ("namespace", "pod", "container", "endpoint", "job")} == {
        "namespace": namespace,
        "pod": pod["metadata"]["name"],
        "container": "server",
        "endpoint": "http",
        "job": "modelroll-models",
    }


def test_good_canary_is_promoted_on_passing_analysis(kubectl, kubeconfig, rig):
    r = rig("good")
    # Prometheus' own Kubernetes discovery found the Pod on the real node, and the job
    # labelled it as the chart's PodMonitor would.
    found = wait_for(lambda: targets_are_the_pods(r), timeout=30, message=r.describe)
    ((pod, target),) = found.values()
    assert pod["spec"]["nodeName"] == REAL_NODE and pod["metadata"]["labels"]["modelroll.io/name"] == NAME
    assert target["health"] == "up"
    assert_scraped_as_the_podmonitor_would(pod, target, r.namespace)

    r.roll_out()
    status = wait_for(stable_version_is(kubectl, r.namespace, NAME, "v2"), timeout=READY_TIMEOUT, message=r.describe)
    run = status["analysis"]
    assert run["passed"] >= 2 and run["failed"] == 0 and run["revision"]  # a pass at each of the 2 steps
    gates = {g["name"]: g for g in run["gates"]}
    assert set(gates) == {"errorRate", "latencyP99", "predictionShift"}
    assert all(g["verdict"] == "Pass" for g in gates.values()), gates
    assert gates["errorRate"]["value"] == 0 and gates["predictionShift"]["value"] < 0.5
    shown = plugin(kubeconfig, "status", NAME, "-n", r.namespace).stdout
    assert "GATE" in shown and "predictionShift" in shown and "Pass" in shown
    assert "AnalysisPass" in {e["reason"] for e in events_of(kubectl, r.namespace, NAME)}
    # kube-proxy sent the test's traffic to both models, and Prometheus counted both.
    assert r.load is not None and r.load.versions["v1"] > 0 and r.load.versions["v2"] > 0, r.load.versions
    counted = served_by_track(r.prometheus, r.namespace)
    assert counted.get(("stable", "v1"), 0) > 0 and counted.get(("canary", "v2"), 0) >= MIN_SAMPLES, counted

    # Discovery followed the Pods through the rollout: once the v1 and canary Pods are gone,
    # the one target is the stable Pod the promotion started.
    def one_new_stable_pod():
        found = targets_are_the_pods(r)
        return found and len(found) == 1 and found

    ((pod, target),) = wait_for(one_new_stable_pod, timeout=READY_TIMEOUT, message=r.describe).values()
    assert pod["metadata"]["labels"]["modelroll.io/track"] == "stable"
    assert pod["metadata"]["labels"]["modelroll.io/revision"] == status["stable"]["revision"]
    assert_scraped_as_the_podmonitor_would(pod, target, r.namespace)


def test_canary_failing_on_part_of_the_input_is_rolled_back_on_error_rate(kubectl, rig):
    r = rig("failing")
    r.roll_out()
    status = wait_for(degraded_with(r, "AnalysisFailed"), timeout=READY_TIMEOUT, message=r.describe)
    share = {g["name"]: g for g in status["analysis"]["gates"]}["errorRate"]["value"]
    assert 0.1 < share < 0.6  # ~30 % of the rows carry the unseen plan
    assert f"gate errorRate failed: value {share:.4g}" in status["message"], status["message"]
    assert "threshold <= 0.05" in status["message"] and "v1 serving at full weight" in status["message"]
    assert status["aborted"]["reason"] == "AnalysisFailed"
    assert r.load is not None and r.load.codes[500] > 0, r.load.codes  # the canary really answered 500
    wait_for(  # the weights follow the Pods: full weight once the canary's are gone
        lambda: (
            (s := r.status())["canary"]["replicas"] == 0
            and s["stable"]["readyReplicas"] == 1
            and s["weights"] == {"stable": 100, "canary": 0}
        ),
        timeout=READY_TIMEOUT,
        message=r.describe,
    )
    assert r.status()["stable"]["version"] == "v1"
    events = events_of(kubectl, r.namespace, NAME)
    assert any(e["reason"] == "AnalysisFailed" and e["type"] == "Warning" for e in events)
    # The old model keeps serving, the rows that broke the canary included.
    unseen = traffic_rows()[traffic_rows()[:, 0] == 3.0][:20]
    wait_for(
        lambda: all(infer(r.address, NAME, row[None, :])["model_version"] == "v1" for row in unseen),
        timeout=30,
        message="20 requests in a row answered by v1",
    )


def test_canary_with_shifted_predictions_is_rolled_back_on_prediction_shift(kubectl, rig):
    r = rig("shifted")
    r.roll_out()
    status = wait_for(degraded_with(r, "AnalysisFailed"), timeout=READY_TIMEOUT, message=r.describe)
    assert "gate predictionShift failed" in status["message"] and "threshold PSI <= 0.5" in status["message"]
    gates = {g["name"]: g for g in status["analysis"]["gates"]}
    assert gates["errorRate"]["verdict"] == "Pass" and gates["predictionShift"]["value"] > 1.0
    assert status["stable"]["version"] == "v1"


def test_prometheus_outage_waits_instead_of_rolling_back(kubectl, rig):
    r = rig("good")
    r.roll_out()
    wait_for(lambda: (r.status().get("analysis") or {}).get("lastMeasuredAt"), timeout=60, message=r.describe)
    r.prometheus.stop()
    status = wait_for(
        lambda: (s := r.status()).get("analysis", {}).get("errors", 0) >= 3 and s,
        timeout=60,
        message=r.describe,
    )
    assert status["phase"] == "Progressing" and status["stable"]["version"] == "v1"
    assert status["analysis"]["phase"] == "Error" and status["analysis"]["failed"] == 0
    assert status["currentStep"] < status["stepCount"]
    assert "unreachable" in status["analysis"]["message"]
    r.prometheus.start()  # back: it rediscovers the Pods and the rollout carries on and promotes
    wait_for(stable_version_is(kubectl, r.namespace, NAME, "v2"), timeout=READY_TIMEOUT, message=r.describe)


def test_traffic_below_min_samples_waits_instead_of_promoting(kubectl, rig):
    r = rig("good", rate=2.0)  # about 5 canary requests a window, minSamples 80
    r.roll_out()

    def held_with_canary_traffic_counted():
        s = r.status()
        run = s.get("analysis") or {}
        # "have N" with N > 0: the canary Pod's requests did reach Prometheus, just too few
        return run.get("inconclusive", 0) >= 3 and "have 0" not in s.get("message", "") and s

    status = wait_for(held_with_canary_traffic_counted, timeout=READY_TIMEOUT, message=r.describe)
    assert status["phase"] == "Progressing" and status["currentStep"] == 0 and status["stable"]["version"] == "v1"
    assert status["analysis"]["passed"] == 0 and status["analysis"]["failed"] == 0
    assert f"need {MIN_SAMPLES} canary requests in the window, have" in status["message"], status["message"]
    assert status["canary"]["readyReplicas"] == 1  # the canary was up and answering, only quiet


def test_the_scrape_job_selects_what_the_chart_podmonitor_selects():
    """docs/prometheus-scrape-config.yaml against the chart's PodMonitor, rendered: the keep
    rules the Prometheus Operator writes for its selector and port, its path and interval."""
    docs = render("monitoring", "--set", "monitoring.podMonitor.enabled=true")
    (monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (job,) = yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]
    rules = job["relabel_configs"]
    for key, value in monitor["spec"]["selector"]["matchLabels"].items():
        label = key.replace(".", "_").replace("/", "_").replace("-", "_")
        assert {
            "action": "keep",
            "source_labels": [f"__meta_kubernetes_pod_label_{label}", f"__meta_kubernetes_pod_labelpresent_{label}"],
            "regex": f"({value});true",
        } in rules, rules
    assert {
        "action": "keep",
        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
        "regex": endpoint["port"],
    } in rules
    assert {"target_label": "endpoint", "replacement": endpoint["port"]} in rules
    assert job["metrics_path"] == endpoint["path"] and job["scrape_interval"] == endpoint["interval"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
