"""The shadow phase of a canary rollout (spec.trafficRouting.shadow), through the planner on the
simulated cluster: the canary comes up with no user traffic while the stable track's servers
copy a share of their requests to it (ConfigMap NAME-shadow), the phase ends on a Pass of the
canary analysis (predictionAgreement included), then the normal steps run; the stable
Deployment's Pod template never changes for it."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from modelroll.analysis.gates import GateData
from modelroll.analysis.schedule import build_queries, plan_measurement
from modelroll.children import SHADOW_DIR, SHADOW_KEY
from modelroll.spec import SpecError, parse_spec
from modelroll_contract import ENV_SHADOW_CONFIG, GRPC_PORT, LABEL_TRACK

from tests.unit.sim import track_of
from tests.unit.test_analysis_rollout import AnalysedCluster

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DIGESTS = {v: "sha256:" + str(i) * 64 for i, v in enumerate(["v1", "v2", "v3"], start=1)}
STEPS = [{"setWeight": 25}, {"pause": {"duration": "10s"}}]
AGREEMENT = {"name": "agreement", "builtin": "predictionAgreement", "minAgreement": 0.99, "minPairs": 200}
ERRORS = {"builtin": "errorRate", "max": 0.05}
GATEWAY = {"parentRefs": [{"name": "public", "namespace": "gw"}]}

# What Prometheus answers for both gates (each gate reads only its own fields).
AGREE = GateData(samples=500, errors=0, agree=498, disagree=2)
DISAGREE = GateData(samples=500, errors=0, agree=310, disagree=190)  # a region of the inputs flipped
NO_COPIES = GateData(samples=500, errors=0, agree=0, disagree=0)


def spec(version="v1", gates=(AGREEMENT, ERRORS), gateway=False, percent=20):
    analysis = {"interval": "10s", "failureLimit": 1, "minSamples": 100, "gates": list(gates)}
    routing = {"shadow": {"percent": percent}} | ({"gatewayAPI": GATEWAY} if gateway else {})
    return {
        "model": {"uri": f"s3://models/{version}.joblib", "digest": DIGESTS[version], "version": version},
        "replicas": 4,
        "strategy": {"type": "Canary", "canary": {"steps": STEPS, "analysis": analysis}},
        "trafficRouting": routing,
    }


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def template(cluster, track="stable"):
    """The Deployment's Pod template, byte for byte."""
    return json.dumps(cluster.deps[f"fraud-{track}"]["spec"]["template"], sort_keys=True)


def shadow_config(cluster):
    text = cluster.cms["fraud-shadow"]["data"][SHADOW_KEY]
    return json.loads(text) if text else None


def rollout(**kw):
    cluster = AnalysedCluster(spec("v1", **kw))
    cluster.settle(T0)
    assert cluster.status["phase"] == "Healthy" and shadow_config(cluster) is None
    before = template(cluster)
    cluster.set_spec(spec("v2", **kw))
    cluster.settle(at(1))
    return cluster, before


def test_the_phase_serves_no_user_copies_to_the_canary_and_ends_on_a_pass():
    cluster, before = rollout()
    s = cluster.status
    assert (s["currentStep"], s["stepCount"]) == (0, 3)  # the phase is step 0, counted
    assert "shadow phase (no user traffic; stable copies 20% of its requests to it)" in s["message"]
    assert track_of(cluster.selector("fraud")) == "stable"  # users reach stable Pods only
    assert cluster.replicas("canary") == 1 and cluster.replicas("stable") == 4  # the first step's canary Pods
    assert s["weights"] == {"stable": 100, "canary": 0}
    canary_ip = cluster.svcs["fraud-canary"]["spec"]["clusterIP"]
    assert shadow_config(cluster) == {"target": f"{canary_ip}:{GRPC_PORT}", "percent": 20, "version": "v2"}
    assert template(cluster) == before  # shadowing started with no change to the stable Pods

    _, plan = cluster.measure(at(2), AGREE)
    queries = build_queries(plan, plan.analysis.gates[0])
    assert queries["agree"] == (
        'sum(increase(modelroll_shadow_rows_total{namespace="ml",model_name="fraud",model_version="v1",'
        'track="stable",canary_version="v2",result="agree"}[10s]))'
    )
    s = cluster.status
    assert s["currentStep"] == 1 and s["analysis"]["gates"][0]["verdict"] == "Pass"
    assert "498 of 500 pairs" in s["analysis"]["gates"][0]["message"]
    assert track_of(cluster.selector("fraud")) is None  # replica ratio: every ready Pod again
    assert s["weights"] == {"stable": 75, "canary": 25}  # setWeight 25: 1 canary Pod, stable down to 3
    assert cluster.replicas("stable") == 3
    assert shadow_config(cluster) is None  # shadowing off
    assert template(cluster) == before

    _, plan = cluster.measure(at(12), AGREE)  # the steps after the phase run every gate but the comparison
    assert [g.name for g in plan.analysis.gates] == ["errorRate"]
    cluster.measure(at(22), AGREE)
    cluster.settle(at(23))
    s = cluster.status
    assert s["phase"] == "Healthy" and s["stable"]["version"] == "v2" and shadow_config(cluster) is None
    assert "Promoted" in cluster.events()


def test_a_disagreeing_canary_is_aborted_in_the_phase_without_ever_serving_a_user():
    cluster, before = rollout()
    cluster.measure(at(2), DISAGREE)
    cluster.measure(at(12), DISAGREE)  # failureLimit 1: the second failure aborts
    s = cluster.status
    assert s["phase"] == "Degraded" and s["reason"] == "AnalysisFailed"
    assert "gate agreement failed" in s["message"] and "310 of 500 pairs" in s["message"]
    assert track_of(cluster.selector("fraud")) == "stable"  # still no user on the canary
    assert cluster.replicas("canary") == 0 and cluster.replicas("stable") == 4
    assert shadow_config(cluster) is None and template(cluster) == before
    assert s["weights"] == {"stable": 100, "canary": 0}
    assert plan_measurement(parse_spec(cluster.spec), "ml", "fraud", s, at(30)) is None


def test_no_copies_is_inconclusive_and_holds_the_phase():
    cluster, _ = rollout()
    cluster.measure(at(2), NO_COPIES)
    s = cluster.status
    assert s["currentStep"] == 0 and s["analysis"]["phase"] == "Inconclusive"
    assert "need 200 shadow-compared rows in the window, have 0" in s["message"]
    assert track_of(cluster.selector("fraud")) == "stable" and shadow_config(cluster)["percent"] == 20


def test_canary_pods_start_only_once_the_main_service_keeps_users_off_them():
    cluster = AnalysedCluster(spec("v1"))
    cluster.settle(T0)
    assert track_of(cluster.selector("fraud")) is None
    cluster.set_spec(spec("v2"))
    cluster.reconcile(at(1))  # the Service's new selector is applied, not yet observed
    assert track_of(cluster.selector("fraud")) == "stable" and cluster.replicas("canary") == 0
    assert "waiting for Service fraud to select the stable track alone" in cluster.status["message"]
    cluster.reconcile(at(1))
    assert cluster.replicas("canary") == 1


def test_gateway_api_keeps_the_route_on_stable_with_no_mirror():
    cluster, before = rollout(gateway=True)
    rule = cluster.routes["fraud"]["spec"]["rules"][0]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [("fraud-stable", 100), ("fraud-canary", 0)]
    assert "filters" not in rule  # the stable servers copy; no RequestMirror
    assert cluster.replicas("canary") == 1 and shadow_config(cluster)["version"] == "v2"
    cluster.measure(at(2), AGREE)
    rule = cluster.routes["fraud"]["spec"]["rules"][0]
    assert [b["weight"] for b in rule["backendRefs"]] == [75, 25]
    assert shadow_config(cluster) is None and template(cluster) == before


def test_with_only_the_comparison_the_steps_after_the_phase_need_no_measurement():
    cluster, _ = rollout(gates=(AGREEMENT,))
    cluster.measure(at(2), AGREE)
    assert cluster.status["currentStep"] == 2  # setWeight 25 reached with nothing to measure: on to the pause
    assert plan_measurement(parse_spec(cluster.spec), "ml", "fraud", cluster.status, at(12)) is None
    cluster.settle(at(13))
    s = cluster.status
    assert s["phase"] == "Healthy" and s["stable"]["version"] == "v2"
    assert s["analysis"]["passed"] == 1  # the run that let the phase end stays as the record


def test_every_track_mounts_the_configmap_but_only_stable_reads_the_key_written():
    cluster, _ = rollout()
    for track in ("stable", "canary"):
        pod = cluster.deps[f"fraud-{track}"]["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env[ENV_SHADOW_CONFIG] == f"{SHADOW_DIR}/{track}.json"
        volume = next(v for v in pod["volumes"] if v["name"] == "shadow")
        assert volume == {"name": "shadow", "configMap": {"name": "fraud-shadow", "optional": True}}
    assert list(cluster.cms["fraud-shadow"]["data"]) == [SHADOW_KEY] == ["stable.json"]
    labels = cluster.cms["fraud-shadow"]["metadata"]["labels"]
    assert labels["modelroll.io/name"] == "fraud" and LABEL_TRACK not in labels
    assert cluster.cms["fraud-shadow"]["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    # a canary revision keeps its identity when promoted: the track is not in the revision hash
    assert cluster.revision("canary") == parse_revision_of_v2()


def parse_revision_of_v2():
    cluster = AnalysedCluster({**spec("v2"), "strategy": {"type": "Rolling"}, "trafficRouting": {}})
    cluster.settle(T0)
    return cluster.revision("stable")


def test_a_users_promote_skips_the_phase():
    cluster, _ = rollout()
    cluster.annotations["modelroll.io/promote"] = "p1"
    cluster.settle(at(2))
    assert cluster.status["currentStep"] == 1 and shadow_config(cluster) is None
    assert track_of(cluster.selector("fraud")) is None


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"strategy": {"type": "Canary", "canary": {"steps": STEPS}}}, "spec.trafficRouting.shadow"),
        ({"trafficRouting": {}}, "spec.strategy.canary.analysis.gates"),
        ({"trafficRouting": {"shadow": {"percent": 0}}}, "spec.trafficRouting.shadow.percent"),
    ],
)
def test_the_parser_refuses_what_the_crd_refuses(change, where):
    with pytest.raises(SpecError) as e:
        parse_spec({**spec("v1"), **change})
    assert e.value.path == where


def test_shadow_needs_no_gateway_and_a_regressor_gate_parses():
    gate = {"builtin": "predictionAgreement", "maxMeanAbsDifference": 0.5}
    parsed = parse_spec(spec("v1", gates=(gate,)))
    assert parsed.traffic.shadow_percent == 20 and not parsed.traffic.gateway_api
    assert parsed.strategy.canary.analysis.gates[0].max_mean_abs_difference == 0.5
    both = {**gate, "minAgreement": 0.9}
    with pytest.raises(SpecError, match="exactly one of minAgreement or maxMeanAbsDifference"):
        parse_spec(spec("v1", gates=(both,)))
    blue_green = {"type": "BlueGreen", "blueGreen": {"prePromotionAnalysis": {"gates": [AGREEMENT]}}}
    with pytest.raises(SpecError) as e:
        parse_spec({**spec("v1"), "strategy": blue_green, "trafficRouting": {}})
    assert e.value.path == "spec.strategy.blueGreen.prePromotionAnalysis.gates"
    watched = {"steps": [{"setWeight": 50}], "postPromotionAnalysis": {"gates": [AGREEMENT]}}
    with pytest.raises(SpecError) as e:
        parse_spec({**spec("v1"), "strategy": {"type": "Canary", "canary": watched}, "trafficRouting": {}})
    assert e.value.path == "spec.strategy.canary.postPromotionAnalysis.gates"
