"""Analysis driving canary and blue-green rollouts through the planner on the simulated cluster.

Measurements are built the way the controller builds them: ``plan_measurement`` decides from
status whether one is due and for which run, and the test supplies the Prometheus numbers.
"""

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from modelroll.analysis.gates import GateData, Measurement
from modelroll.analysis.schedule import build_queries, plan_measurement
from modelroll.spec import parse_spec

from tests.unit.sim import Cluster

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DIGESTS = {v: "sha256:" + str(i) * 64 for i, v in enumerate(["v1", "v2", "v3"], start=1)}
STEPS = [{"setWeight": 20}, {"pause": {"duration": "10s"}}, {"setWeight": 50}, {"pause": {"duration": "10s"}}]
ANALYSIS = {
    "interval": "10s",
    "failureLimit": 1,
    "consecutiveErrorLimit": 2,
    "minSamples": 100,
    "gates": [{"builtin": "errorRate", "max": 0.05}],
}

GOOD = GateData(samples=500, errors=1)
BAD = GateData(samples=500, errors=100)
THIN = GateData(samples=37, errors=0)
DOWN = GateData(error="Prometheus at http://prom:9090 unreachable: ClientConnectorError")


class AnalysedCluster(Cluster):
    """The simulated cluster plus the controller's measuring step."""

    def __init__(self, spec):
        super().__init__(spec)
        self.measurement = None

    def observed(self):
        return replace(super().observed(), measurement=self.measurement)

    def measure(self, now, data):
        """Take the due measurement (if any) with ``data`` for every gate, then settle."""
        plan = plan_measurement(parse_spec(self.spec), "ml", "fraud", self.status, now)
        self.measurement = (
            None
            if plan is None
            else Measurement(plan.scope, plan.revision, now, {g.name: data for g in plan.analysis.gates})
        )
        try:
            return self.settle(now), plan
        finally:
            self.measurement = None


def spec(version="v1", strategy=None):
    return {
        "model": {"uri": f"s3://models/{version}.joblib", "digest": DIGESTS[version], "version": version},
        "replicas": 4,
        "strategy": strategy or {"type": "Canary", "canary": {"steps": STEPS, "analysis": ANALYSIS}},
    }


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def rollout(strategy=None):
    cluster = AnalysedCluster(spec("v1", strategy))
    cluster.settle(T0)
    cluster.set_spec(spec("v2", strategy))
    cluster.settle(at(1))
    return cluster


def test_each_step_waits_for_a_pass_measured_in_it_and_the_last_pass_promotes():
    cluster = rollout()
    s = cluster.status
    assert (s["currentStep"], s["weights"]["canary"]) == (0, 20)
    assert "waiting for a passing measurement" in s["message"]
    assert s["analysis"]["phase"] == "Running" and cluster.plans[-1].requeue_after == 1.0

    _, plan = cluster.measure(at(2), GOOD)  # step 0 passes -> the 10 s pause starts
    assert plan.revision == s["canary"]["revision"] and plan.canary_version == "v2"
    assert cluster.status["currentStep"] == 1 and cluster.status["analysis"]["passed"] == 1
    assert plan_measurement(parse_spec(cluster.spec), "ml", "fraud", cluster.status, at(5)) is None  # not due yet

    cluster.measure(at(12), GOOD)  # pause over and a pass in it -> setWeight 50, which needs its own pass
    assert cluster.status["currentStep"] == 2 and cluster.status["weights"]["canary"] == 50
    cluster.settle(at(15))
    assert cluster.status["currentStep"] == 2

    cluster.measure(at(22), GOOD)
    cluster.measure(at(32), GOOD)  # last pause passes -> promoting
    cluster.settle(at(33))
    s = cluster.status
    assert s["phase"] == "Healthy" and s["stable"]["version"] == "v2"
    assert s["analysis"]["passed"] == 4 and s["analysis"]["failed"] == 0
    assert "Promoted" in cluster.events() and "AnalysisPass" in cluster.events()


def test_pause_elapsed_without_a_pass_waits():
    cluster = rollout()
    cluster.measure(at(2), GOOD)
    cluster.measure(at(12), THIN)  # the pause is over but this step has no Pass
    s = cluster.status
    assert s["currentStep"] == 1 and s["phase"] == "Progressing"
    assert "need 100 canary requests in the window, have 37" in s["message"]
    assert s["analysis"]["phase"] == "Inconclusive"
    cluster.measure(at(22), GOOD)
    assert cluster.status["currentStep"] == 2


def test_inconclusive_never_fails_and_never_advances():
    cluster = rollout()
    for i in range(9):  # below inconclusiveLimit (default 10; test_analysis_inconclusive.py goes past it)
        cluster.measure(at(2 + 10 * i), THIN)
    s = cluster.status
    assert s["phase"] == "Progressing" and s["currentStep"] == 0 and "aborted" not in s
    assert s["analysis"]["inconclusive"] == 9 and s["analysis"]["failed"] == 0
    assert cluster.events().count("AnalysisInconclusive") == 1  # an Event per verdict change only


def test_too_many_failures_abort_like_a_manual_abort():
    cluster = rollout()
    cluster.measure(at(2), BAD)
    assert cluster.status["phase"] == "Progressing" and cluster.status["analysis"]["failed"] == 1
    cluster.measure(at(12), BAD)
    s = cluster.status
    assert (s["phase"], s["reason"]) == ("Degraded", "AnalysisFailed")
    assert "gate errorRate failed: value 0.2, threshold <= 0.05" in s["message"]
    assert "v1 serving at full weight" in s["message"]
    assert cluster.replicas("canary") == 0 and cluster.replicas("stable") == 4
    assert s["weights"] == {"stable": 100, "canary": 0}
    degraded = next(c for c in s["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "AnalysisFailed"
    assert plan_measurement(parse_spec(cluster.spec), "ml", "fraud", s, at(40)) is None  # measuring stops

    cluster.annotations["modelroll.io/retry"] = "t1"  # a retry starts a fresh run
    cluster.settle(at(41))
    assert cluster.status["analysis"]["failed"] == 0 and cluster.status["analysis"]["phase"] == "Running"
    assert cluster.status["phase"] == "Progressing"


def test_prometheus_errors_wait_then_fail_past_the_consecutive_limit():
    cluster = rollout()
    cluster.measure(at(2), DOWN)
    cluster.measure(at(12), DOWN)
    s = cluster.status
    assert s["phase"] == "Progressing" and s["analysis"]["phase"] == "Error" and s["analysis"]["failed"] == 0
    cluster.measure(at(22), GOOD)  # Prometheus is back: the error streak resets
    assert cluster.status["analysis"]["consecutiveErrors"] == 0 and cluster.status["currentStep"] == 1
    for t in (32, 42, 52):
        cluster.measure(at(t), DOWN)
    s = cluster.status
    assert (s["phase"], s["reason"]) == ("Degraded", "AnalysisFailed")
    assert "Prometheus could not be queried for 3 measurements in a row" in s["message"]


def test_replanning_is_idempotent_with_the_same_measurement():
    cluster = rollout()
    cluster.measure(at(2), GOOD)
    before = dict(cluster.status)
    cluster.measurement = Measurement("canary", before["canary"]["revision"], at(2), {"errorRate": BAD})
    assert cluster.reconcile(at(2)).status is None  # already folded: nothing to write
    assert cluster.status == before


def test_queries_pick_canary_and_stable_by_namespace_version_and_track():
    cluster = rollout()
    plan = plan_measurement(parse_spec(cluster.spec), "ml", "fraud", cluster.status, at(2))
    gates = {
        g: parse_spec(
            spec("v2", {"type": "Canary", "canary": {"steps": STEPS, "analysis": {"gates": [{"builtin": g, **extra}]}}})
        ).strategy.canary.analysis.gates[0]
        for g, extra in (
            ("errorRate", {"max": 0.1}),
            ("latencyP99", {"maxRatioToStable": 2}),
            ("predictionShift", {"maxPSI": 0.2}),
        )
    }
    q = build_queries(plan, gates["errorRate"])
    canary = '{namespace="ml",model_name="fraud",model_version="v2",track="canary"}'
    assert q["samples"] == f"sum(increase(modelroll_requests_total{canary}[10s]))"
    assert q["errors"] == (
        'sum(increase(modelroll_requests_total{namespace="ml",model_name="fraud",model_version="v2",'
        'track="canary",code=~"5.."}[10s]))'
    )
    q = build_queries(plan, gates["latencyP99"])
    assert q["stable_p99"] == (
        "histogram_quantile(0.99, sum by (le) (increase(modelroll_request_duration_seconds_"
        'bucket{namespace="ml",model_name="fraud",model_version="v1",track="stable"}[10s])))'
    )
    q = build_queries(plan, gates["predictionShift"])
    assert q["canary_classes"] == f"sum by (class) (increase(modelroll_predictions_total{canary}[10s]))"
    query = 'x{namespace="{{namespace}}",n="{{name}}",v="{{canaryVersion}}",w="{{stableVersion}}"}[{{window}}]'
    custom = replace(gates["errorRate"], builtin=None, query=query)
    assert build_queries(plan, custom) == {"result": 'x{namespace="ml",n="fraud",v="v2",w="v1"}[10s]'}


def test_every_builtin_query_is_scoped_to_the_objects_namespace():
    """Two ModelDeployments named fraud, in namespaces ml and ml-b: every series selector of
    every built-in query names its own namespace (argo-rollouts#1866, flagger#1767), so neither
    reads the other's canary or stable."""
    gates = parse_spec(
        spec(
            "v2",
            {
                "type": "Canary",
                "canary": {
                    "steps": STEPS,
                    "analysis": {
                        "gates": [
                            {"builtin": "errorRate", "max": 0.1},
                            {"builtin": "latencyP99", "maxRatioToStable": 2},
                            {"builtin": "predictionShift", "maxPSI": 0.2},
                        ]
                    },
                },
            },
        )
    ).strategy.canary.analysis.gates
    cluster = rollout()
    for namespace in ("ml", "ml-b", 'we"ird'):
        plan = plan_measurement(parse_spec(cluster.spec), namespace, "fraud", cluster.status, at(2))
        wanted = '{namespace="' + namespace.replace('"', '\\"') + '",model_name="fraud",'
        for gate in gates:
            for promql in build_queries(plan, gate).values():
                selectors = re.findall(r"\{[^{}]*\}", promql)
                assert selectors and all(sel.startswith(wanted) for sel in selectors), (namespace, promql)


BG = {
    "type": "BlueGreen",
    "blueGreen": {
        "autoPromotionSeconds": 0,
        "scaleDownDelaySeconds": 5,
        "prePromotionAnalysis": ANALYSIS,
        "postPromotionAnalysis": ANALYSIS,
    },
}


def test_blue_green_pre_promotion_blocks_the_switch_until_a_pass():
    cluster = rollout(BG)
    assert cluster.status["blueGreen"]["stage"] == "Preview"
    assert "promotion waits for a passing measurement" in cluster.status["message"]
    _, plan = cluster.measure(at(2), THIN)
    assert plan.scope == "prePromotion" and cluster.status["blueGreen"]["stage"] == "Preview"
    cluster.annotations["modelroll.io/promote"] = "t1"  # a person's promote waits for the analysis too
    cluster.settle(at(3))
    assert cluster.status["blueGreen"]["stage"] == "Preview"
    assert "promote" not in (cluster.status.get("acknowledged") or {})
    _, plan = cluster.measure(at(12), GOOD)
    assert cluster.status["blueGreen"]["stage"] == "Switched"
    assert cluster.selector("fraud")["modelroll.io/track"] == "canary"


def test_blue_green_post_promotion_failure_switches_back():
    cluster = rollout(BG)
    cluster.measure(at(2), GOOD)
    assert cluster.status["blueGreen"]["stage"] == "Switched"
    _, plan = cluster.measure(at(12), BAD)
    assert plan.scope == "postPromotion" and cluster.status["analysis"]["passed"] == 0  # a new run
    cluster.settle(at(20))  # the scale-down delay is over, but no pass yet: the old track stays warm
    assert cluster.status["blueGreen"]["stage"] == "Switched" and cluster.replicas("stable") == 4
    cluster.measure(at(22), BAD)
    s = cluster.status
    assert (s["phase"], s["reason"]) == ("Degraded", "AnalysisFailed")
    assert s["message"].startswith("postPromotionAnalysis of v2 failed: gate errorRate failed")
    assert cluster.selector("fraud")["modelroll.io/track"] == "stable"
    assert cluster.replicas("canary") == 0 and cluster.replicas("stable") == 4


def test_blue_green_post_promotion_pass_finalizes():
    cluster = rollout(BG)
    cluster.measure(at(2), GOOD)
    cluster.measure(at(12), GOOD)
    cluster.settle(at(13))
    s = cluster.status
    assert s["phase"] == "Healthy" and s["stable"]["version"] == "v2"


@pytest.mark.parametrize("strategy", [None, BG])
def test_no_measurement_without_a_rollout(strategy):
    cluster = AnalysedCluster(spec("v1", strategy))
    cluster.settle(T0)
    assert plan_measurement(parse_spec(cluster.spec), "ml", "fraud", cluster.status, at(100)) is None


def test_a_bad_success_condition_is_an_invalid_spec_naming_the_field():
    bad = {
        "type": "Canary",
        "canary": {
            "steps": STEPS,
            "analysis": {"gates": [{"prometheus": {"query": "up", "successCondition": "__import__('os')"}}]},
        },
    }
    cluster = AnalysedCluster(spec("v1", bad))
    cluster.settle(T0)
    s = cluster.status
    assert (s["phase"], s["reason"]) == ("Failed", "InvalidSpec")
    assert "spec.strategy.canary.analysis.gates[0].prometheus.successCondition: only these functions" in s["message"]


def test_status_view_prints_the_gates_as_a_table():
    from modelroll.cli.render import status_view

    cluster = rollout()
    cluster.measure(at(2), BAD)
    text = status_view(
        {"metadata": {"name": "fraud", "namespace": "ml"}, "spec": cluster.spec, "status": cluster.status}
    )
    assert "Analysis:  Failed (canary" in text and "1 failed" in text
    header = next(line for line in text.splitlines() if line.startswith("GATE"))
    assert header.split() == ["GATE", "VALUE", "THRESHOLD", "SAMPLES", "VERDICT", "MESSAGE"]
    row = next(line for line in text.splitlines() if line.startswith("errorRate "))
    assert "0.2" in row and "<= 0.05" in row and "Fail" in row and " 500 " in row
