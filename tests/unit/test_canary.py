"""Canary and blue-green step machines, driven through the planner against a simulated cluster."""

from datetime import UTC, datetime, timedelta

import pytest
from modelroll.traffic import gateway_api
from modelroll.traffic import replicas as replicas_router

from tests.unit.sim import Cluster, track_of

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DIGESTS = {v: "sha256:" + str(i) * 64 for i, v in enumerate(["v1", "v2", "v3"], start=1)}
STEPS = [{"setWeight": 20}, {"pause": {"duration": "60s"}}, {"setWeight": 50}, {"pause": {}}]


def spec(version="v1", strategy=None, **extra):
    return {
        "model": {"uri": f"s3://models/{version}.joblib", "digest": DIGESTS[version], "version": version},
        "replicas": 4,
        "strategy": strategy or {"type": "Canary", "canary": {"steps": STEPS}},
        **extra,
    }


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def healthy_v1(strategy=None, **extra):
    cluster = Cluster(spec("v1", strategy, **extra))
    cluster.settle(T0)
    assert cluster.status["phase"] == "Healthy" and cluster.status["stable"]["version"] == "v1"
    assert "fraud-canary" not in cluster.deps
    return cluster


@pytest.mark.parametrize(
    ("weight", "replicas", "want"),
    [
        (0, 4, (4, 0)),
        (10, 4, (4, 1)),
        (20, 4, (4, 1)),
        (25, 4, (3, 1)),
        (40, 3, (2, 2)),
        (50, 4, (2, 2)),
        (90, 4, (1, 4)),
        (90, 10, (1, 9)),
        (99, 10, (1, 10)),
        (100, 4, (0, 4)),
        (10, 20, (18, 2)),
        (5, 0, (0, 0)),
    ],
)
def test_replica_ratio_split(weight, replicas, want):
    assert replicas_router.split_replicas(weight, replicas) == want


@pytest.mark.parametrize(("weight", "stable", "want"), [(0, 4, 0), (10, 4, 1), (50, 4, 2), (100, 4, 4)])
def test_gateway_canary_replicas(weight, stable, want):
    assert gateway_api.canary_replicas(weight, stable) == want


def test_canary_walks_every_step_and_promotes_without_a_gap():
    cluster = healthy_v1()
    v1_revision = cluster.revision("stable")
    cluster.set_spec(spec("v2"))
    cluster.settle(at(1))
    s = cluster.status
    # setWeight 20 reached (1 canary Pod next to 4 stable = 20 %), now in the timed pause
    assert (s["currentStep"], s["stepCount"], s["phase"]) == (1, 4, "Progressing")
    assert cluster.replicas("canary") == 1 and cluster.replicas("stable") == 4
    assert cluster.revision("stable") == v1_revision  # stable untouched during the rollout
    assert s["weights"] == {"stable": 80, "canary": 20}
    assert s["stable"]["version"] == "v1" and s["canary"]["version"] == "v2"
    assert track_of(cluster.selector("fraud")) is None  # replica ratio: every ready Pod

    result = cluster.settle(at(30))
    assert cluster.status["currentStep"] == 1 and 30 <= result.requeue_after <= 31

    cluster.settle(at(62))  # pause expired -> setWeight 50 -> manual pause
    s = cluster.status
    assert (s["currentStep"], s["phase"]) == (3, "Paused")
    assert "kubectl modelroll promote fraud" in s["message"]
    # 50 %: the stable track shrank to its share as the canary's Pods became Ready
    assert (cluster.replicas("stable"), cluster.replicas("canary")) == (2, 2)
    assert s["weights"] == {"stable": 50, "canary": 50}

    cluster.settle(at(3600))  # a manual pause never expires
    assert cluster.status["currentStep"] == 3

    cluster.annotations["modelroll.io/promote"] = "tok-1"
    first = cluster.reconcile(at(3601))
    # promoting: stable rolls to v2 while the canary keeps serving
    assert cluster.status["phase"] == "Progressing" and "promoting" in cluster.status["message"]
    assert cluster.replicas("canary") == 2 and cluster.replicas("stable") == 4
    assert cluster.revision("stable") == cluster.revision("canary")
    assert first.status["acknowledged"] == {"promote": "tok-1"}
    cluster.settle(at(3602))
    s = cluster.status
    assert s["phase"] == "Healthy" and s["stable"]["version"] == "v2" and "canary" not in s
    assert "fraud-canary" not in cluster.deps and s["weights"] == {"stable": 100, "canary": 0}
    assert [h["version"] for h in s["history"]] == ["v2", "v1"]
    assert "currentStep" not in s and "stepStartedAt" not in s
    # the acknowledged token stays, so the same annotation is never acted on twice
    assert cluster.settle(at(4000)).writes == 0
    assert {"RolloutStarted", "Promoted"} <= set(cluster.events())


def test_abort_returns_everything_to_stable_and_retry_restarts():
    cluster = healthy_v1()
    cluster.set_spec(spec("v2"))
    cluster.settle(at(1))
    cluster.annotations["modelroll.io/abort"] = "a1"
    cluster.settle(at(2))
    s = cluster.status
    assert s["phase"] == "Degraded" and s["reason"] == "Aborted" and "v1 serving at full weight" in s["message"]
    assert cluster.replicas("canary") == 0 and cluster.replicas("stable") == 4
    assert s["weights"] == {"stable": 100, "canary": 0}
    assert cluster.settle(at(500)).writes == 0  # stays aborted

    cluster.annotations["modelroll.io/retry"] = "r1"
    cluster.settle(at(501))
    assert cluster.status["phase"] == "Progressing" and cluster.status["currentStep"] == 1
    assert "aborted" not in cluster.status and cluster.replicas("canary") == 1


def test_spec_change_mid_rollout_replaces_the_canary_and_restarts_the_steps():
    cluster = healthy_v1()
    cluster.set_spec(spec("v2"))
    cluster.settle(at(1))
    cluster.settle(at(62))
    assert cluster.status["currentStep"] == 3
    cluster.set_spec(spec("v3"))
    cluster.reconcile(at(63))
    s = cluster.status
    assert s["canary"]["version"] == "v3" and s["currentStep"] == 0 and s["stable"]["version"] == "v1"
    dep = cluster.deps["fraud-canary"]
    assert dep["spec"]["strategy"] == {"type": "Recreate"}  # never three revisions at once
    assert "RolloutRestarted" in cluster.events()


def test_canary_not_ready_in_time_aborts_with_the_reason():
    cluster = healthy_v1(progressDeadlineSeconds=30)
    cluster.set_spec(spec("v2", progressDeadlineSeconds=30))
    cluster.reconcile(at(1))
    cluster.unready.add(cluster.revision("canary"))
    cluster.settle(at(10))
    assert cluster.status["phase"] == "Progressing"
    cluster.settle(at(40))
    s = cluster.status
    assert s["phase"] == "Degraded" and s["reason"] == "ProgressDeadlineExceeded"
    assert "not Ready within 30s" in s["message"] and cluster.replicas("canary") == 0
    assert cluster.replicas("stable") == 4


def test_user_pause_holds_the_step_and_resume_continues():
    cluster = healthy_v1()
    cluster.set_spec(spec("v2"))
    cluster.settle(at(1))
    cluster.annotations["modelroll.io/paused"] = "true"
    cluster.settle(at(100))
    assert cluster.status["phase"] == "Paused" and cluster.status["currentStep"] == 1
    del cluster.annotations["modelroll.io/paused"]
    cluster.settle(at(101))
    assert cluster.status["currentStep"] == 3


def test_promote_full_skips_the_remaining_steps():
    cluster = healthy_v1()
    cluster.set_spec(spec("v2"))
    cluster.settle(at(1))
    cluster.annotations["modelroll.io/promote-full"] = "f1"
    cluster.settle(at(2))
    assert cluster.status["phase"] == "Healthy" and cluster.status["stable"]["version"] == "v2"


def test_replanning_the_same_state_is_idempotent_at_every_step():
    """A restarted operator sees the same status and children: same decision, no jump."""
    cluster = healthy_v1()
    cluster.set_spec(spec("v2"))
    for t in (1, 2, 30, 61, 62, 63):
        cluster.settle(at(t))
        before = dict(cluster.status)
        again = cluster.reconcile(at(t))
        assert again.writes == 0 and cluster.status == before


BLUE_GREEN = {"type": "BlueGreen", "blueGreen": {"scaleDownDelaySeconds": 30}}


def test_blue_green_preview_switch_and_delayed_scale_down():
    cluster = healthy_v1(BLUE_GREEN)
    assert track_of(cluster.selector("fraud")) == "stable" and track_of(cluster.selector("fraud-preview")) == "canary"
    cluster.set_spec(spec("v2", BLUE_GREEN))
    cluster.settle(at(1))
    s = cluster.status
    assert s["phase"] == "Paused" and cluster.replicas("canary") == 4 and cluster.replicas("stable") == 4
    assert track_of(cluster.selector("fraud")) == "stable" and s["weights"]["canary"] == 0

    cluster.annotations["modelroll.io/promote"] = "p1"
    cluster.settle(at(2))
    s = cluster.status
    assert track_of(cluster.selector("fraud")) == "canary" and s["weights"] == {"stable": 0, "canary": 100}
    assert s["blueGreen"]["stage"] == "Switched" and "kept warm for 30s" in s["message"]
    assert cluster.replicas("stable") == 4  # old track warm

    cluster.settle(at(20))
    assert cluster.status["blueGreen"]["stage"] == "Switched"
    cluster.settle(at(33))
    s = cluster.status
    assert s["phase"] == "Healthy" and s["stable"]["version"] == "v2"
    assert track_of(cluster.selector("fraud")) == "stable" and "fraud-canary" not in cluster.deps


def test_blue_green_auto_promotion():
    strategy = {"type": "BlueGreen", "blueGreen": {"autoPromotionSeconds": 10, "scaleDownDelaySeconds": 0}}
    cluster = healthy_v1(strategy)
    cluster.set_spec(spec("v2", strategy))
    result = cluster.settle(at(1))
    assert cluster.status["blueGreen"]["stage"] == "Preview" and 9 <= result.requeue_after <= 10
    cluster.settle(at(12))
    assert cluster.status["phase"] == "Healthy" and cluster.status["stable"]["version"] == "v2"


GATEWAY = {
    "gatewayAPI": {"parentRefs": [{"name": "public", "namespace": "gw"}], "hostnames": ["fraud.example.com"]},
}


def test_gateway_route_weights():
    cluster = healthy_v1(trafficRouting=GATEWAY)
    route = cluster.routes["fraud"]
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gw"}]
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [100, 0]
    cluster.set_spec(spec("v2", trafficRouting=GATEWAY))
    cluster.settle(at(1))
    rule = cluster.routes["fraud"]["spec"]["rules"][0]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [("fraud-stable", 80), ("fraud-canary", 20)]
    assert "filters" not in rule  # no RequestMirror: shadowing is the stable servers' own (test_shadow_phase.py)
    assert cluster.status["weights"] == {"stable": 80, "canary": 20}
    assert cluster.replicas("canary") == 1
    assert track_of(cluster.selector("fraud")) == "stable"


def test_undo_pins_the_previous_revision_until_the_spec_changes():
    cluster = healthy_v1()
    cluster.set_spec(spec("v2"))
    cluster.annotations["modelroll.io/promote-full"] = "f1"
    cluster.settle(at(1))
    assert [h["version"] for h in cluster.status["history"]] == ["v2", "v1"]

    cluster.annotations["modelroll.io/undo"] = "u1"
    cluster.settle(at(2))
    s = cluster.status
    assert s["phase"] == "Healthy" and s["stable"]["version"] == "v1" and s["pinned"]["version"] == "v1"
    assert "pinned to v1 by undo while spec asks for v2" in s["message"]
    assert "fraud-canary" not in cluster.deps  # at once, no canary steps
    assert "Undo" in cluster.events()
    assert cluster.settle(at(100)).writes == 0  # the pin holds across resyncs

    cluster.set_spec(spec("v3"))  # a new spec lifts the pin and rolls out normally
    cluster.settle(at(101))
    assert "pinned" not in cluster.status and cluster.status["canary"]["version"] == "v3"


def test_undo_to_an_unknown_revision_is_refused_with_an_event():
    cluster = healthy_v1()
    cluster.annotations["modelroll.io/undo"] = "u1/deadbeef00"
    cluster.settle(at(1))
    assert "pinned" not in cluster.status and "UndoFailed" in cluster.events()
