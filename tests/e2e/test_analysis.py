"""Automated analysis end to end, with real parts only: real scikit-learn models trained here,
served by real ``modelroll-server`` processes on loopback playing the stable and canary
tracks, traffic sent by the test, Debian's Prometheus scraping the servers every second, and
the operator (configured with that Prometheus) reconciling a Canary ModelDeployment on the
real API server. kwok's Pods stand in for the Deployments; the metrics come from the loopback
servers, which label them with the same model_name / model_version / track.
"""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pytest

from tests.analysis.parts import Prometheus, Traffic, scratch_dir, start_server, stop_server
from tests.e2e.operator_helpers import apply, events_of, manifest, plugin, stable_version_is, status_of
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.e2e
NAME = "churn"
GATES = [
    {"builtin": "errorRate", "max": 0.05},
    {"builtin": "latencyP99", "max": 2000},
    # PSI from sampling noise alone is about (bins - 1) * (1/n_canary + 1/n_stable): with ~100
    # requests a window and ~7 populated confidence bins that is ~0.1, so 0.5 keeps the good
    # canary clear of noise while a constant-answer canary (PSI > 1) still fails.
    {"builtin": "predictionShift", "maxPSI": 0.5},
]


def strategy(min_samples: int = 30) -> dict:
    return {
        "type": "Canary",
        "canary": {
            "steps": [{"setWeight": 50}, {"pause": {"duration": "2s"}}],
            "analysis": {
                "interval": "3s",
                "failureLimit": 1,
                "consecutiveErrorLimit": 30,
                "minSamples": min_samples,
                "gates": GATES,
            },
        },
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stable, a good canary, one that fails on an unseen category, one with shifted predictions."""
    from sklearn.compose import ColumnTransformer
    from sklearn.dummy import DummyClassifier
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
        # one-hot encodes the plan and refuses plans it never saw: 5xx on that part of the traffic
        "failing": make_pipeline(
            ColumnTransformer([("plan", OneHotEncoder(handle_unknown="error"), [0])], remainder="passthrough"),
            LogisticRegression(),
        ).fit(X, y),
        # answers "churns" for everyone
        "shifted": DummyClassifier(strategy="constant", constant=1).fit(X, y),
    }
    out = tmp_path_factory.mktemp("analysis-models")
    paths = {}
    for name, model in built.items():
        paths[name] = out / f"{name}.joblib"
        joblib.dump(model, paths[name])
    return paths


def traffic_rows() -> np.ndarray:
    rng = np.random.default_rng(1)
    n = 400
    plan = rng.choice([0.0, 1.0, 2.0, 3.0], size=n, p=[0.24, 0.23, 0.23, 0.30])  # plan 3 is new since training
    return np.column_stack([plan, rng.normal(size=(n, 3))])


@dataclass
class Rig:
    namespace: str
    prometheus: Prometheus
    traffic: Traffic
    operator: object

    def status(self, kubectl) -> dict:
        return status_of(kubectl, self.namespace, NAME)

    def describe(self, kubectl):
        def text() -> str:
            log = self.operator.log()[-3000:]  # type: ignore[attr-defined]
            return f"status {self.status(kubectl)}\ntraffic {self.traffic.codes}\noperator log:\n{log}"

        return text


@pytest.fixture
def rig(models, run_operator, install_crds, gateway_crds, namespace) -> Iterator:
    """rig(canary_model, rate) -> Rig: servers, Prometheus, traffic and the operator, all stopped afterwards."""
    started: list = []

    def build(canary: str, rate: float = 40.0) -> Rig:
        work = scratch_dir()
        started.append(lambda: shutil.rmtree(work, ignore_errors=True))
        servers = [
            start_server(work, models["stable"], NAME, "v1", "stable"),
            start_server(work, models[canary], NAME, "v2", "canary"),
        ]
        started.extend(lambda s=s: stop_server(s) for s in servers)
        prometheus = Prometheus(work, [s.target for s in servers]).start()
        started.append(prometheus.stop)
        traffic = Traffic(servers, traffic_rows(), rate=rate).start()
        started.append(traffic.stop)
        port = free_port()
        operator = run_operator(
            env={
                "MODELROLL_NAMESPACES": namespace,
                "MODELROLL_METRICS_PORT": str(port),
                "MODELROLL_RESYNC_SECONDS": "1",
                "MODELROLL_PROMETHEUS_URL": prometheus.url,
            }
        )
        wait_for(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200,
            timeout=30,
            message=lambda: f"operator health endpoint; log:\n{operator.log()}",
        )
        return Rig(namespace, prometheus, traffic, operator)

    yield build
    for stop in reversed(started):
        stop()


def start_rollout(kubectl, r: Rig, min_samples: int = 30) -> None:
    apply(kubectl, r.namespace, manifest(NAME, "v1", 2, strategy=strategy(min_samples)))
    wait_for(stable_version_is(kubectl, r.namespace, NAME, "v1"), timeout=60, message=r.describe(kubectl))
    apply(kubectl, r.namespace, manifest(NAME, "v2", 2, strategy=strategy(min_samples)))


def degraded_with(kubectl, r: Rig, reason: str):
    def check():
        s = r.status(kubectl)
        return s if s.get("phase") == "Degraded" and s.get("reason") == reason else None

    return check


def test_good_canary_is_promoted_on_passing_analysis(kubectl, kubeconfig, rig):
    r = rig("good")
    start_rollout(kubectl, r)
    status = wait_for(stable_version_is(kubectl, r.namespace, NAME, "v2"), timeout=90, message=r.describe(kubectl))
    run = status["analysis"]
    assert run["passed"] >= 2 and run["failed"] == 0 and run["revision"]  # a pass at each of the 2 steps
    gates = {g["name"]: g for g in run["gates"]}
    assert set(gates) == {"errorRate", "latencyP99", "predictionShift"}
    assert all(g["verdict"] == "Pass" for g in gates.values()), gates
    assert gates["errorRate"]["value"] == 0 and gates["predictionShift"]["value"] < 0.5
    shown = plugin(kubeconfig, "status", NAME, "-n", r.namespace).stdout
    assert "GATE" in shown and "predictionShift" in shown and "Pass" in shown
    assert "AnalysisPass" in {e["reason"] for e in events_of(kubectl, r.namespace, NAME)}


def test_canary_failing_on_part_of_the_input_is_rolled_back_on_error_rate(kubectl, rig):
    r = rig("failing")
    start_rollout(kubectl, r)
    status = wait_for(degraded_with(kubectl, r, "AnalysisFailed"), timeout=90, message=r.describe(kubectl))
    share = {g["name"]: g for g in status["analysis"]["gates"]}["errorRate"]["value"]
    assert 0.1 < share < 0.6  # ~30 % of the rows carry the unseen plan
    assert f"gate errorRate failed: value {share:.4g}" in status["message"], status["message"]
    assert "threshold <= 0.05" in status["message"] and "v1 serving at full weight" in status["message"]
    assert status["aborted"]["reason"] == "AnalysisFailed"
    assert r.traffic.codes.get(500, 0) > 0  # the canary really answered 5xx
    wait_for(  # the weights follow the Pods: full weight once the canary's are gone
        lambda: (
            (s := r.status(kubectl))["canary"]["replicas"] == 0
            and s["stable"]["readyReplicas"] == 2
            and s["weights"] == {"stable": 100, "canary": 0}
        ),
        timeout=60,
        message=r.describe(kubectl),
    )
    events = events_of(kubectl, r.namespace, NAME)
    assert any(e["reason"] == "AnalysisFailed" and e["type"] == "Warning" for e in events)


def test_canary_with_shifted_predictions_is_rolled_back_on_prediction_shift(kubectl, rig):
    r = rig("shifted")
    start_rollout(kubectl, r)
    status = wait_for(degraded_with(kubectl, r, "AnalysisFailed"), timeout=90, message=r.describe(kubectl))
    assert "gate predictionShift failed" in status["message"] and "threshold PSI <= 0.5" in status["message"]
    gates = {g["name"]: g for g in status["analysis"]["gates"]}
    assert gates["errorRate"]["verdict"] == "Pass" and gates["predictionShift"]["value"] > 1.0


def test_prometheus_outage_waits_instead_of_rolling_back(kubectl, rig):
    r = rig("good")
    start_rollout(kubectl, r)
    wait_for(
        lambda: (r.status(kubectl).get("analysis") or {}).get("lastMeasuredAt"), timeout=60, message=r.describe(kubectl)
    )
    r.prometheus.stop()
    status = wait_for(
        lambda: (s := r.status(kubectl)).get("analysis", {}).get("errors", 0) >= 3 and s,
        timeout=60,
        message=r.describe(kubectl),
    )
    assert status["phase"] == "Progressing" and status["stable"]["version"] == "v1"
    assert status["analysis"]["phase"] == "Error" and status["analysis"]["failed"] == 0
    assert status["currentStep"] < status["stepCount"]
    assert "unreachable" in status["analysis"]["message"]
    r.prometheus.start()  # back: the rollout carries on and promotes
    wait_for(stable_version_is(kubectl, r.namespace, NAME, "v2"), timeout=90, message=r.describe(kubectl))


def test_traffic_below_min_samples_waits_instead_of_promoting(kubectl, rig):
    r = rig("good", rate=2.0)  # about 6 requests a window, minSamples 30
    start_rollout(kubectl, r)
    status = wait_for(
        lambda: (s := r.status(kubectl)).get("analysis", {}).get("inconclusive", 0) >= 3 and s,
        timeout=60,
        message=r.describe(kubectl),
    )
    assert status["phase"] == "Progressing" and status["currentStep"] == 0 and status["stable"]["version"] == "v1"
    assert status["analysis"]["passed"] == 0 and status["analysis"]["failed"] == 0
    assert "need 30 canary requests in the window, have" in status["message"]
