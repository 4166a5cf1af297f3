"""A canary's post-promotion watch on the simulated cluster: after the last step every user
moves to the canary at full scale, the old stable stays warm until scaleDownDelaySeconds is
over and postPromotionAnalysis passed, and a failure (late labels for liveAccuracy) switches
every user back at once."""

from modelroll.analysis import schedule
from modelroll.analysis.schedule import plan_measurement
from modelroll.spec import parse_spec
from modelroll.strategies import rollout

from tests.unit.sim import track_of
from tests.unit.test_analysis_rollout import ANALYSIS, BAD, GOOD, THIN, at
from tests.unit.test_analysis_rollout import rollout as rollout_of

STEPS = [{"setWeight": 50}]


def watched(delay=30, analysis=ANALYSIS):
    canary = {"steps": STEPS, "analysis": ANALYSIS, "scaleDownDelaySeconds": delay}
    if analysis is not None:
        canary["postPromotionAnalysis"] = analysis
    return {"type": "Canary", "canary": canary}


def switched(delay=30, analysis=ANALYSIS):
    """A rollout whose only step passed at t=2: every user is on v2, v1 kept warm."""
    cluster = rollout_of(watched(delay, analysis))
    cluster.measure(at(2), GOOD)
    return cluster


def test_after_the_last_step_every_user_moves_to_the_canary_and_the_old_stable_stays_warm():
    cluster = switched()
    s = cluster.status
    assert cluster.selector("fraud")["modelroll.io/track"] == "canary"
    assert cluster.replicas("canary") == 4 and cluster.replicas("stable") == 4
    assert s["stable"]["readyReplicas"] == 4
    assert s["stable"]["version"] == "v1" and s["weights"] == {"stable": 0, "canary": 100}
    assert (s["phase"], s["reason"]) == ("Progressing", "CanaryWatching")
    assert s["message"] == "v2 serves every user; v1 kept warm for the post-promotion watch (30s)"
    assert s["watch"]["switchedAt"] and "Switched" in cluster.events()
    plan = plan_measurement(parse_spec(cluster.spec), "ml", "fraud", cluster.status, at(12))
    assert plan is not None and plan.scope == "postPromotion"


def test_a_failure_in_the_watch_switches_every_user_back_to_the_warm_stable():
    cluster = switched()
    _, plan = cluster.measure(at(12), BAD)  # failureLimit 1: one failure is tolerated
    assert plan.scope == "postPromotion" and cluster.status["reason"] == "CanaryWatching"
    cluster.measure(at(22), BAD)
    s = cluster.status
    assert (s["phase"], s["reason"]) == ("Degraded", "AnalysisFailed")
    assert s["message"].startswith("postPromotionAnalysis of v2 failed: gate errorRate failed")
    assert track_of(cluster.selector("fraud")) == "stable"  # in the same write: no user reaches a going canary
    assert cluster.replicas("canary") == 0 and cluster.replicas("stable") == 4
    assert s["stable"]["version"] == "v1" and s["weights"]["stable"] == 100


def test_the_watch_ends_on_a_pass_after_the_delay_then_stable_rolls():
    cluster = switched(delay=30)
    cluster.measure(at(12), GOOD)  # a pass, but the delay runs until t=32
    assert cluster.status["reason"] == "CanaryWatching" and cluster.status["stable"]["version"] == "v1"
    cluster.settle(at(33))  # delay over, and the run's last measurement passed
    s = cluster.status
    assert s["phase"] == "Healthy" and s["stable"]["version"] == "v2" and "watch" not in s
    assert "WatchPassed" in cluster.events() and "Promoted" in cluster.events()


def test_after_the_delay_the_watch_waits_for_a_passing_measurement():
    cluster = switched(delay=5)
    cluster.measure(at(12), THIN)  # too few labels yet: Inconclusive, never a failure
    s = cluster.status
    assert (
        s["reason"] == "CanaryWatching" and "the post-promotion watch waits for a passing measurement" in s["message"]
    )
    assert cluster.replicas("stable") == 4 and s["stable"]["version"] == "v1"
    cluster.measure(at(22), GOOD)
    cluster.settle(at(23))
    assert cluster.status["phase"] == "Healthy" and cluster.status["stable"]["version"] == "v2"


def test_a_delay_without_analysis_keeps_the_old_stable_warm_for_that_long():
    cluster = switched(delay=20, analysis=None)
    assert cluster.status["reason"] == "CanaryWatching" and cluster.replicas("stable") == 4
    assert plan_measurement(parse_spec(cluster.spec), "ml", "fraud", cluster.status, at(12)) is None
    cluster.settle(at(15))
    assert cluster.status["stable"]["version"] == "v1"
    cluster.settle(at(23))
    assert cluster.status["phase"] == "Healthy" and cluster.status["stable"]["version"] == "v2"


def test_a_user_can_abort_in_the_watch_but_promote_is_declined():
    cluster = switched()
    cluster.annotations["modelroll.io/promote"] = "p1"
    cluster.settle(at(3))
    assert cluster.status["reason"] == "CanaryWatching"
    said = [e.message for p in cluster.plans for e in p.events if e.reason == "NothingToDo"]
    assert any("v2 already serves every user; v1 is kept warm until the post-promotion watch ends" in m for m in said)
    cluster.annotations["modelroll.io/abort"] = "a1"
    cluster.settle(at(4))
    s = cluster.status
    assert (s["phase"], s["reason"]) == ("Degraded", "Aborted")
    assert cluster.replicas("canary") == 0 and cluster.replicas("stable") == 4


def test_without_a_watch_the_last_step_promotes_right_away():
    cluster = rollout_of({"type": "Canary", "canary": {"steps": STEPS, "analysis": ANALYSIS}})
    cluster.measure(at(2), GOOD)
    cluster.settle(at(3))
    assert cluster.status["phase"] == "Healthy" and "CanaryWatching" not in cluster.events()


def test_the_planner_and_the_schedule_agree_on_the_status_key():
    assert schedule.WATCH_KEY == rollout.WATCH_KEY
