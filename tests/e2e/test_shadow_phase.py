"""The shadow phase end to end: no mesh, no Gateway, real Pods, real Prometheus.

A Canary ModelDeployment with ``trafficRouting.shadow`` rolls out v2 on the cluster's real node
while traffic flows from the host to the Service's ClusterIP (tests/e2e/test_analysis.py's rig:
the operator, a Prometheus that discovers the Pods itself, models trained here and fetched from
this host). During the phase the main Service selects the stable track alone; the operator
writes ConfigMap NAME-shadow, the kubelet refreshes the stable Pod's mounted file in place
(tests/cluster/node.py lowers its syncFrequency to 5 s for this), and the stable server copies
half of its answered requests to the canary over gRPC and counts agreeing and disagreeing
labels. The gate predictionAgreement reads those counts from Prometheus:

- a canary that flips the label wherever feature 0 > 1 (about 16 % of the rows) is stopped in
  the phase, and no user request ever reached it: its own metrics count gRPC copies only, the
  clients never got a v2 answer, and the main Service's endpoints never held a canary Pod;
- an equivalent retrain passes the phase, then the normal steps, and is promoted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from tests.analysis.parts import joblib_files
from tests.e2e.operator_helpers import apply, stable_version_is
from tests.e2e.real_node import real_manifest
from tests.e2e.test_analysis import READY_TIMEOUT, Rig, degraded_with
from tests.e2e.test_analysis import rig as rig  # noqa: F401 - the fixture, reused
from tests.helpers import get_json, wait_for

pytestmark = pytest.mark.e2e
NAME = "churn"  # test_analysis' rig deploys this name
PERCENT = 50
MIN_AGREEMENT = 0.95  # the retrain agrees on ~99+ % of the rows, the flipped canary on ~84 %


def strategy() -> dict:
    return {
        "type": "Canary",
        "canary": {
            "steps": [{"setWeight": 50}, {"pause": {"duration": "2s"}}],
            "analysis": {
                "interval": "10s",  # ~250 compared rows a window: 50 requests/s, half of them copied
                "failureLimit": 1,
                "consecutiveErrorLimit": 30,
                "minSamples": 80,
                "gates": [
                    {"builtin": "predictionAgreement", "minAgreement": MIN_AGREEMENT, "minPairs": 150},
                    {"builtin": "errorRate", "max": 0.05},
                ],
            },
        },
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """joblib files of plain scikit-learn estimators (the server image unpickles nothing else):
    stable, an equivalent retrain, and a tree fitted to labels flipped where feature 0 > 1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(0, 3, 2000).astype(float), rng.normal(size=(2000, 3))])
    y = (X[:, 1] + 0.3 * X[:, 0] > 0.3).astype(int)
    flipped = np.where(X[:, 1] > 1, 1 - y, y)  # feature 1 of the rows: usage[0], standard normal
    built = {
        "stable": LogisticRegression().fit(X, y),
        "retrain": LogisticRegression(C=0.8).fit(X, y),
        "flipped": DecisionTreeClassifier(max_depth=8, random_state=0).fit(X, flipped),
    }
    return joblib_files(built, tmp_path_factory.mktemp("shadow-models"))


def roll_out(r: Rig) -> None:
    """v2 with the shadow phase replaces v1 (the rig deployed v1 without analysis)."""
    uri, digest = r.store.put(f"{r.namespace}-{r.canary}.joblib", r.models[r.canary])
    manifest = real_manifest(
        NAME, uri, digest, "v2", 1, strategy=strategy(), trafficRouting={"shadow": {"percent": PERCENT}}
    )
    apply(r.kubectl, r.namespace, manifest)


def endpoint_pods(kubectl: Callable, namespace: str) -> set[str]:
    """Every Pod the main Service's EndpointSlices name, ready or not."""
    slices = get_json(kubectl, "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={NAME}")
    return {(ep.get("targetRef") or {}).get("name", "") for s in slices["items"] for ep in s.get("endpoints") or ()}


class EndpointWatch:
    """Polls the main Service's endpoints between checks: every Pod name ever seen there."""

    def __init__(self, r: Rig) -> None:
        self.r, self.seen = r, set()

    def __call__(self, check: Callable[[], dict | None]) -> Callable[[], dict | None]:
        def polled() -> dict | None:
            self.seen |= endpoint_pods(self.r.kubectl, self.r.namespace)
            return check()

        return polled

    @property
    def canary_pods(self) -> set[str]:
        return {name for name in self.seen if name.startswith(f"{NAME}-canary-")}


def in_phase(r: Rig) -> Callable[[], dict | None]:
    """The status once the phase's canary Pod is Ready and the stable server is comparing."""

    def check() -> dict | None:
        s = r.status()
        compared = r.prometheus.query(
            f'sum(modelroll_shadow_rows_total{{namespace="{r.namespace}",track="stable",canary_version="v2"}})'
        )
        ready = s.get("currentStep") == 0 and (s.get("canary") or {}).get("readyReplicas") == 1
        return s if ready and compared and float(compared[0]["value"][1]) > 0 else None

    return check


def canary_requests(r: Rig) -> dict[str, float]:
    """Requests every canary Pod ever counted, by protocol (last_over_time keeps Pods gone)."""
    result = r.prometheus.query(
        f'sum by (protocol) (last_over_time(modelroll_requests_total{{namespace="{r.namespace}",track="canary"}}[10m]))'
    )
    return {s["metric"]["protocol"]: float(s["value"][1]) for s in result}


def test_a_canary_that_disagrees_is_stopped_in_the_phase_before_any_user_reaches_it(kubectl, rig):  # noqa: F811
    r = rig("flipped")
    watch = EndpointWatch(r)
    started = time.monotonic()
    roll_out(r)
    phase = wait_for(watch(in_phase(r)), timeout=READY_TIMEOUT, message=r.describe)
    assert phase["weights"] == {"stable": 100, "canary": 0} and "shadow phase" in phase["message"]
    service = get_json(kubectl, "service", NAME, "-n", r.namespace)
    assert service["spec"]["selector"]["modelroll.io/track"] == "stable"
    config = get_json(kubectl, "configmap", f"{NAME}-shadow", "-n", r.namespace)["data"]["stable.json"]
    assert '"percent":50' in config and '"version":"v2"' in config

    status = wait_for(watch(degraded_with(r, "AnalysisFailed")), timeout=READY_TIMEOUT, message=r.describe)
    took = time.monotonic() - started
    gate = next(g for g in status["analysis"]["gates"] if g["name"] == "predictionAgreement")
    assert gate["verdict"] == "Fail" and gate["value"] < MIN_AGREEMENT, gate
    assert "gate predictionAgreement failed" in status["message"], status["message"]
    assert f"threshold agreement >= {MIN_AGREEMENT}" in status["message"]
    assert status["currentStep"] == 0  # stopped in the phase

    # No user request reached the canary: it only ever answered the stable's gRPC copies...
    counted = canary_requests(r)
    assert counted.get("grpc", 0) > 0 and counted.get("v2", 0) == 0 and counted.get("v1", 0) == 0, counted
    # ...no client got a v2 answer, and the main Service never listed a canary Pod.
    assert r.load is not None and r.load.versions["v2"] == 0 and r.load.versions["v1"] > 0, r.load.versions
    assert watch.seen and not watch.canary_pods, watch.seen
    # the phase over, the ConfigMap is empty again: the stable server stops copying
    wait_for(
        lambda: get_json(kubectl, "configmap", f"{NAME}-shadow", "-n", r.namespace)["data"]["stable.json"] == "",
        timeout=30,
        message=r.describe,
    )
    print(f"aborted in the shadow phase {took:.0f}s after the rollout started: {gate['message']}")


def test_an_equivalent_retrain_passes_the_phase_and_is_promoted(kubectl, rig):  # noqa: F811
    r = rig("retrain")
    stable_template = get_json(kubectl, "deployment", f"{NAME}-stable", "-n", r.namespace)["spec"]["template"]
    started = time.monotonic()
    roll_out(r)
    wait_for(in_phase(r), timeout=READY_TIMEOUT, message=r.describe)
    # shadowing changed nothing in the stable Deployment's Pod template
    during = get_json(kubectl, "deployment", f"{NAME}-stable", "-n", r.namespace)["spec"]["template"]
    assert during == stable_template
    passed = wait_for(
        lambda: (s := r.status()).get("currentStep", 0) >= 1 and s, timeout=READY_TIMEOUT, message=r.describe
    )
    phase_took = time.monotonic() - started
    gate = next(g for g in passed["analysis"]["gates"] if g["name"] == "predictionAgreement")
    assert gate["verdict"] == "Pass" and gate["value"] >= MIN_AGREEMENT, gate
    status = wait_for(stable_version_is(kubectl, r.namespace, NAME, "v2"), timeout=READY_TIMEOUT, message=r.describe)
    assert status["phase"] == "Healthy" and status["analysis"]["failed"] == 0
    assert r.load is not None and r.load.versions["v2"] > 0  # after the phase, users reached v2
    print(f"phase passed after {phase_took:.0f}s ({gate['message']}); promoted after {time.monotonic() - started:.0f}s")
