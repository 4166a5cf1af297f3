"""The model's whole life end to end: raw data to a monitored model, on the cluster's real node.

`make pipeline` (examples/pipeline) cleans the damaged raw CSV, trains LogisticRegression and
an MLP, keeps the better, evaluates it against its minimums, packages it with its reference
statistics and pushes both to an S3-compatible store (moto's server on the host address the
Pods reach) -- the same targets the release workflow runs. It also builds the bad release (a
model trained on 45 % flipped labels) and a drifted copy of the traffic. Each test then rolls
out a release from that store with `kubectl apply` while labelled traffic flows through the
Service: every answer's true label follows two seconds later, through the same Service, so it
reaches a random Pod and must be routed to the one that answered by the id alone. The operator
reads Prometheus (scraping the real Pods) for every verdict:

- a second good release passes errorRate, featureDrift and liveAccuracy on its canary step,
  takes every user while the old stable stays warm (the post-promotion watch, liveAccuracy on
  late labels), and is promoted;
- the corrupted-labels model answers every request fine, so the HTTP gates pass it, but once it
  serves every user the late labels show its accuracy far below the minimum, and the watch
  switches every user back to the stable Pods that were kept warm;
- a good release meeting drifted inputs (three features scaled by 1.3) is rolled back by
  featureDrift.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.analysis.parts import Prometheus
from tests.e2e.labelled_load import LabelledLoad
from tests.e2e.operator_helpers import apply, plugin, stable_version_is, status_of
from tests.e2e.real_node import cluster_ip
from tests.e2e.test_analysis import READY_TIMEOUT, degraded_with, observed_operator
from tests.helpers import get_json, wait_for
from tests.server.fetch_emulators import REGION, Moto

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
NAME = "cancer"  # examples/pipeline/deploy/modeldeployment.yaml
STORE = "s3://models/cancer"
KEYS = {"AWS_ACCESS_KEY_ID": "pipeline", "AWS_SECRET_ACCESS_KEY": "pipeline", "AWS_REGION": REGION}
RATE = 40.0  # requests a second through the Service
MIN_ACCURACY = 0.85  # the good model is right on 92 % of the traffic rows, the bad one on 74 %


def analysis(*gates: dict) -> dict:
    return {"interval": "5s", "failureLimit": 1, "consecutiveErrorLimit": 30, "minSamples": 60, "gates": list(gates)}


ERROR_RATE = {"builtin": "errorRate", "max": 0.05}
# The traffic split's own rows differ from the training split's by PSI up to ~0.23 a feature
# (113 rows in 10 bins), whatever the sample: maxPSI sits above that, far below the drifted
# features' 1.2-1.8.
FEATURE_DRIFT = {"builtin": "featureDrift", "maxPSI": 0.5}
LIVE_ACCURACY = {"builtin": "liveAccuracy", "min": MIN_ACCURACY, "minLabels": 120}


def strategy(step_gates: tuple[dict, ...]) -> dict:
    """One step at 50 % (one stable and one canary Pod), then the post-promotion watch: every
    user on the canary for at least 10 s and until liveAccuracy on the labels passes."""
    return {
        "type": "Canary",
        "canary": {
            "steps": [{"setWeight": 50}],
            "analysis": analysis(*step_gates),
            "scaleDownDelaySeconds": 10,
            "postPromotionAnalysis": analysis(LIVE_ACCURACY),
        },
    }


@dataclass(frozen=True)
class Release:
    spec: dict  # spec.model and spec.monitoring as `make pipeline-push` printed them


@dataclass(frozen=True)
class Pipeline:
    build: Path
    releases: dict[str, Release]  # by version: v1, v2, v1-bad
    store_env: dict[str, str]  # what a Pod needs to read the store (the s3-creds Secret)

    def rows(self, name: str) -> np.ndarray:
        """A traffic CSV's rows: the features, then the true label."""
        with open(self.build / "data" / name) as f:
            return np.array([[float(x) for x in row] for row in list(csv.reader(f))[1:]])


@pytest.fixture(scope="module")
def pipeline(host_ip: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """`make pipeline` into a fresh build directory, pushing to moto's S3 on the host address;
    then v2, the same pipeline's next release, packaged and pushed as the workflow would."""
    store = Moto(tmp_path_factory.mktemp("moto"), {("models", "README"): b"models\n"}, auth=False, host=host_ip)
    try:
        build = tmp_path_factory.mktemp("pipeline")
        env = {**os.environ, **KEYS, "AWS_ENDPOINT_URL": store.url}

        def make(*targets: str, version: str) -> Release:
            args = [f"PIPELINE_BUILD={build}", f"PIPELINE_STORE={STORE}", f"PIPELINE_VERSION={version}"]
            done = subprocess.run(
                ["make", "--no-print-directory", *targets, *args], cwd=ROOT, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, f"make {' '.join(targets)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            return Release(json.loads((build / "push.json").read_text())["spec"])

        v1 = make("pipeline", version="v1")
        bad = Release(json.loads((build / "bad" / "push.json").read_text())["spec"])
        v2 = make("pipeline-package", "pipeline-push", version="v2")
        assert v2.spec["model"]["uri"] == f"{STORE}/v2/model.skops" and bad.spec["model"]["version"] == "v1-bad"
        yield Pipeline(build, {"v1": v1, "v2": v2, "v1-bad": bad}, {**KEYS, "AWS_ENDPOINT_URL": store.url})
    finally:
        store.stop()


@dataclass
class Rig:
    kubectl: Callable
    kubeconfig: Path
    namespace: str
    prometheus: Prometheus
    operator: object
    pipeline: Pipeline
    load: LabelledLoad | None = None

    def deploy(self, version: str, step_gates: tuple[dict, ...] = (ERROR_RATE,)) -> None:
        release = self.pipeline.releases[version].spec
        body = {
            "apiVersion": "modelroll.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": NAME},
            "spec": {
                "model": {**release["model"], "storageSecretRef": {"name": "s3-creds"}},
                "monitoring": release["monitoring"],
                "replicas": 1,
                "strategy": strategy(step_gates),
            },
        }
        apply(self.kubectl, self.namespace, yaml.safe_dump(body))

    def status(self) -> dict:
        return status_of(self.kubectl, self.namespace, NAME)

    def shown(self, *gates: str) -> str:
        """`kubectl modelroll status`, which must show each of ``gates`` for both tracks."""
        out = plugin(self.kubeconfig, "status", NAME, "-n", self.namespace).stdout
        assert "QUALITY GATE" in out and all(g in out for g in gates), out
        print(out)  # what docs/lifecycle.md shows
        return out

    def gate(self, name: str, status: dict | None = None) -> dict:
        run = (status or self.status())["analysis"]
        return next(g for g in run["gates"] if g["name"] == name)

    def describe(self) -> str:
        log = self.operator.log()[-3000:]  # type: ignore[attr-defined]
        load = self.load and (dict(self.load.codes), dict(self.load.versions), dict(self.load.labels))
        return f"status {self.status()}\ntraffic (codes, versions, labels) {load}\noperator log:\n{log}"


@pytest.fixture
def rig(pipeline, run_operator, install_crds, namespace, kubectl, kubeconfig, tmp_path) -> Iterator[Callable[..., Rig]]:
    """rig(traffic_csv) -> Rig: Prometheus and the operator started, the store's Secret made,
    v1 Healthy on the real node, labelled traffic flowing through the Service."""
    started = contextlib.ExitStack()

    def build(traffic: str = "traffic.csv") -> Rig:
        prometheus, operator = observed_operator(started, run_operator, namespace, kubeconfig, tmp_path)
        kubectl(
            "create", "secret", "generic", "s3-creds", "-n", namespace,
            *(f"--from-literal={k}={v}" for k, v in pipeline.store_env.items()),
        )  # fmt: skip
        r = Rig(kubectl, kubeconfig, namespace, prometheus, operator, pipeline)
        r.deploy("v1")
        wait_for(stable_version_is(kubectl, namespace, NAME, "v1"), timeout=READY_TIMEOUT, message=r.describe)
        r.load = LabelledLoad(cluster_ip(kubectl, namespace, NAME), NAME, pipeline.rows(traffic), rate=RATE)
        started.callback(r.load.stop)
        r.load.start()
        wait_for(lambda: labelled(r, "stable", "v1") > 0, timeout=60, message=r.describe)
        return r

    with started:
        yield build


def labelled(r: Rig, track: str, version: str) -> float:
    """Labels Prometheus has counted as matched for a track and version, over every Pod."""
    selector = f'namespace="{r.namespace}",track="{track}",model_version="{version}",result=~"correct|incorrect"'
    result = r.prometheus.query(f"sum(last_over_time(modelroll_feedback_total{{{selector}}}[10m]))")
    return float(result[0]["value"][1]) if result else 0.0


def stable_pods(r: Rig) -> dict[str, int]:
    """The stable track's Pods by name, with their containers' restarts."""
    pods = get_json(r.kubectl, "pods", "-n", r.namespace, "-l", f"modelroll.io/name={NAME},modelroll.io/track=stable")
    return {
        p["metadata"]["name"]: sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses") or ())
        for p in pods["items"]
    }


def watching(r: Rig) -> dict | None:
    """The status while the watch runs: every user on the canary, the old stable still Ready."""
    s = r.status()
    return s if s.get("reason") == "CanaryWatching" and (s.get("watch") or {}).get("switchedAt") else None


def assert_old_stable_kept_warm(r: Rig, watch: dict) -> None:
    service = get_json(r.kubectl, "service", NAME, "-n", r.namespace)
    assert service["spec"]["selector"]["modelroll.io/track"] == "canary", service["spec"]["selector"]
    assert watch["stable"]["version"] == "v1" and watch["stable"]["readyReplicas"] == 1, watch["stable"]
    assert watch["weights"] == {"stable": 0, "canary": 100}, watch["weights"]


def test_a_good_release_passes_the_quality_gates_and_the_watch_and_is_promoted(rig):
    r = rig()
    r.deploy("v2", (ERROR_RATE, FEATURE_DRIFT, {**LIVE_ACCURACY, "maxDrop": 0.1}))
    watch = wait_for(lambda: watching(r), timeout=READY_TIMEOUT, message=r.describe)
    assert_old_stable_kept_warm(r, watch)
    status = wait_for(stable_version_is(r.kubectl, r.namespace, NAME, "v2"), timeout=READY_TIMEOUT, message=r.describe)
    assert status["phase"] == "Healthy" and "watch" not in status
    accuracy = r.gate("liveAccuracy", status)
    assert status["analysis"]["scope"] == "postPromotion" and accuracy["verdict"] == "Pass", accuracy
    assert accuracy["value"] >= MIN_ACCURACY and accuracy["samples"] >= 120, accuracy
    # Labels sent to any Pod were counted by the Pod that answered: both tracks got theirs.
    assert labelled(r, "canary", "v2") >= 120 and labelled(r, "stable", "v1") > 0
    assert r.load is not None and r.load.labels["matched"] > 0 and r.load.feedback_codes.get(500, 0) == 0
    assert r.load.labels["unmatched"] <= 0.02 * r.load.labels["matched"], r.load.labels
    assert r.load.codes.get(500, 0) == 0 and r.load.versions["v2"] > 0
    r.shown("liveAccuracy")


def test_a_model_trained_on_corrupted_labels_is_rolled_back_by_late_labels_in_the_watch(rig):
    r = rig()
    before = stable_pods(r)
    r.deploy("v1-bad")  # its step checks only errorRate: every request is answered fine
    watch = wait_for(lambda: watching(r), timeout=READY_TIMEOUT, message=r.describe)
    assert_old_stable_kept_warm(r, watch)
    status = wait_for(degraded_with(r, "AnalysisFailed"), timeout=READY_TIMEOUT, message=r.describe)
    accuracy = r.gate("liveAccuracy", status)
    assert status["analysis"]["scope"] == "postPromotion" and accuracy["verdict"] == "Fail", accuracy
    assert accuracy["value"] < MIN_ACCURACY, accuracy
    assert status["message"].startswith("postPromotionAnalysis of v1-bad failed: gate liveAccuracy failed")
    # every user is back on v1, in the same write, on the Pod that never stopped
    service = get_json(r.kubectl, "service", NAME, "-n", r.namespace)
    assert service["spec"]["selector"]["modelroll.io/track"] == "stable", service["spec"]["selector"]
    assert status["stable"]["version"] == "v1" and status["weights"] == {"stable": 100, "canary": 0}
    assert stable_pods(r) == before
    r.shown("liveAccuracy")
    assert r.load is not None and r.load.codes.get(500, 0) == 0 and r.load.versions["v1-bad"] > 0


def test_drifted_inputs_are_caught_by_feature_drift(rig):
    r = rig("traffic-drifted.csv")
    r.deploy("v2", (ERROR_RATE, FEATURE_DRIFT))
    status = wait_for(degraded_with(r, "AnalysisFailed"), timeout=READY_TIMEOUT, message=r.describe)
    drift = r.gate("featureDrift", status)
    assert drift["verdict"] == "Fail" and drift["value"] > 0.5, drift
    assert status["analysis"]["scope"] == "canary" and status["stable"]["version"] == "v1"
    assert any(f in drift["message"] for f in ("radius_mean", "perimeter_mean", "area_mean")), drift["message"]
    r.shown("featureDrift")
