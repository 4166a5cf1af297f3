"""Inconclusive has an upper bound: inconclusiveLimit and inconclusiveAction, table-driven.

First the streak in the state machine (``consecutiveInconclusive``, ``inconclusiveSince``),
then whole rollouts through the planner on the simulated cluster: each case seeds a rollout,
feeds the measurements the controller would take, and asserts the exact outcome.
"""

from dataclasses import replace
from datetime import timedelta

import pytest
from modelroll.analysis import state as st
from modelroll.analysis.gates import GateData, Measurement
from modelroll.analysis.schedule import plan_measurement
from modelroll.spec import Analysis, Gate, parse_spec

from tests.unit.test_analysis_rollout import ANALYSIS, BAD, DOWN, GOOD, STEPS, T0, THIN, AnalysedCluster, at, spec

ERR = Gate("errorRate", builtin="errorRate", max=0.05)
DATA = {
    "P": GateData(samples=100, errors=0),
    "F": GateData(samples=100, errors=50),
    "I": GateData(samples=3, errors=0),
    "E": GateData(error="Prometheus at http://p:9090: connection refused"),
}


def fold(seq, **limits):
    """The run after measurements ``seq`` (P F I E), one every 10 s from T0."""
    analysis = Analysis(interval_seconds=10, failure_limit=5, consecutive_error_limit=5, min_samples=10, gates=(ERR,))
    analysis = replace(analysis, **limits)
    run = st.build_run("canary", "r1")
    for i, kind in enumerate(seq):
        taken = T0 + timedelta(seconds=10 * i)
        run, _ = st.fold_measurement(run, analysis, Measurement("canary", "r1", taken, {"errorRate": DATA[kind]}), 0)
    return run, analysis


# --- the streak in the state machine --------------------------------------------------------


@pytest.mark.parametrize(
    ("seq", "streak", "since"),
    [
        ("", 0, None),
        ("I", 1, 0),
        ("III", 3, 0),
        ("IIP", 0, None),  # a Pass ends the streak
        ("IIF", 0, None),  # so does a Fail
        ("IIE", 0, None),  # and an Error
        ("IIPII", 2, 30),  # a new streak starts at its first Inconclusive
        ("PEII", 2, 20),
    ],
)
def test_the_streak_counts_inconclusive_measurements_in_a_row(seq, streak, since):
    run, _ = fold(seq)
    assert run["consecutiveInconclusive"] == streak
    assert run.get("inconclusiveSince") == (None if since is None else st.stamp(T0 + timedelta(seconds=since)))
    assert run["inconclusive"] == seq.count("I")  # the total is kept apart from the streak


@pytest.mark.parametrize(
    ("limits", "seq", "reached"),
    [
        ({}, "I" * 9, False),  # the default: 10 in a row
        ({}, "I" * 10, True),
        ({"inconclusive_limit": 3}, "II", False),
        ({"inconclusive_limit": 3}, "III", True),
        ({"inconclusive_limit": 3}, "IIPII", False),
        ({"inconclusive_limit": 1}, "I", True),
        # a duration: the streak's first and latest measurements that far apart (10 s apart here)
        ({"inconclusive_limit": None, "inconclusive_seconds": 20.0}, "II", False),
        ({"inconclusive_limit": None, "inconclusive_seconds": 20.0}, "III", True),
        ({"inconclusive_limit": None, "inconclusive_seconds": 25.0}, "III", False),
        ({"inconclusive_limit": None, "inconclusive_seconds": 25.0}, "IIII", True),
        ({"inconclusive_limit": None, "inconclusive_seconds": 1.0}, "I", False),  # one measurement spans no time
        ({"inconclusive_limit": None, "inconclusive_seconds": 20.0}, "IIEII", False),
    ],
)
def test_the_limit_is_a_count_or_a_duration(limits, seq, reached):
    run, analysis = fold(seq, **limits)
    assert st.inconclusive_limit_reached(run, analysis) is reached


def test_concluding_stops_measuring_and_says_how_long():
    run, analysis = fold("III", inconclusive_limit=3)
    done = st.conclude_inconclusive(run, analysis)
    assert done["outcome"] == "Inconclusive" and done["phase"] == "Inconclusive"
    assert done["message"] == (
        "3 Inconclusive measurements in a row, inconclusiveLimit 3: "
        "errorRate: need 10 canary requests in the window, have 3"
    )
    later = Measurement("canary", "r1", T0 + timedelta(minutes=5), {"errorRate": DATA["P"]})
    assert st.fold_measurement(done, analysis, later, 0) == (done, [])  # nothing folds after the outcome
    assert not st.inconclusive_limit_reached(done, analysis)

    run, analysis = fold("I" * 13, inconclusive_limit=None, inconclusive_seconds=120.0)
    assert st.conclude_inconclusive(run, analysis)["message"].startswith(
        "Inconclusive for 2m in a row (13 measurements), inconclusiveLimit 2m: "
    )


def test_restarting_reopens_the_run_and_is_idempotent():
    run, analysis = fold("III", inconclusive_limit=3)
    reopened = st.restart_inconclusive(st.conclude_inconclusive(run, analysis), "a user's resume")
    assert "outcome" not in reopened and "inconclusiveSince" not in reopened
    assert reopened["consecutiveInconclusive"] == 0 and reopened["inconclusive"] == 3
    assert reopened["message"] == "inconclusive count restarted by a user's resume; measuring again"
    assert st.restart_inconclusive(reopened) == reopened
    quiet, _ = fold("P")
    assert st.restart_inconclusive(quiet) == quiet  # nothing to restart: nothing changes
    failed, _ = fold("FFFFFF")
    assert st.restart_inconclusive(failed)["outcome"] == "Failed"  # a failure is never reopened


# --- rollouts -------------------------------------------------------------------------------

BG = {"type": "BlueGreen", "blueGreen": {"autoPromotionSeconds": 0, "scaleDownDelaySeconds": 5}}
MEASURED = {"P": GOOD, "F": BAD, "I": THIN, "E": DOWN}
RESUME = "`kubectl modelroll resume fraud` restarts the count"


def strategy(kind, bg=None, **bound):
    analysis = {**ANALYSIS, **bound}
    if kind == "canary":
        return {"type": "Canary", "canary": {"steps": STEPS, "analysis": analysis}}
    both = {"prePromotionAnalysis": analysis, "postPromotionAnalysis": analysis}
    return {**BG, "blueGreen": {**BG["blueGreen"], **(bg or {}), **both}}


def rolled_out(kind, seq, bg=None, **bound):
    """A rollout of v2 with measurements ``seq`` taken every 10 s from t=2."""
    cluster = AnalysedCluster(spec("v1", strategy(kind, bg, **bound)))
    cluster.settle(T0)
    cluster.set_spec(spec("v2", strategy(kind, bg, **bound)))
    cluster.settle(at(1))
    for i, kind_ in enumerate(seq):
        cluster.measure(at(2 + 10 * i), MEASURED[kind_])
    return cluster


def events(cluster):
    return [e for p in cluster.plans for e in p.events]


PAUSE_3, ABORT_3 = {"inconclusiveLimit": 3}, {"inconclusiveLimit": 3, "inconclusiveAction": "Abort"}
CANARY_W, BG_STABLE, BG_ACTIVE, BACK = (
    {"stable": 80, "canary": 20},
    {"stable": 100, "canary": 0},
    {"stable": 0, "canary": 100},
    {"stable": 100, "canary": 0},
)


@pytest.mark.parametrize(
    ("kind", "bound", "seq", "phase", "reason", "streak", "weights"),
    [
        ("canary", PAUSE_3, "II", "Progressing", "CanaryProgressing", 2, CANARY_W),
        ("canary", PAUSE_3, "III", "Paused", "AnalysisInconclusive", 3, CANARY_W),
        ("canary", ABORT_3, "III", "Degraded", "AnalysisInconclusive", 3, BACK),
        ("canary", {"inconclusiveLimit": "20s"}, "II", "Progressing", "CanaryProgressing", 2, CANARY_W),
        ("canary", {"inconclusiveLimit": "20s"}, "III", "Paused", "AnalysisInconclusive", 3, CANARY_W),
        ("canary", PAUSE_3, "IIEII", "Progressing", "CanaryProgressing", 2, CANARY_W),
        ("canary", PAUSE_3, "IIFII", "Progressing", "CanaryProgressing", 2, CANARY_W),
        ("canary", {}, "I" * 9, "Progressing", "CanaryProgressing", 9, CANARY_W),  # the default, 10
        ("canary", {}, "I" * 10, "Paused", "AnalysisInconclusive", 10, CANARY_W),
        ("blueGreen", PAUSE_3, "II", "Progressing", "BlueGreenPreview", 2, BG_STABLE),
        ("blueGreen", PAUSE_3, "III", "Paused", "AnalysisInconclusive", 3, BG_STABLE),
        ("blueGreen", ABORT_3, "III", "Degraded", "AnalysisInconclusive", 3, BG_STABLE),
        # post-promotion: the preview passed and took the traffic; then three Inconclusive
        ("blueGreen", PAUSE_3, "PIII", "Paused", "AnalysisInconclusive", 3, BG_ACTIVE),
        ("blueGreen", ABORT_3, "PIII", "Degraded", "AnalysisInconclusive", 3, BACK),
    ],
)  # fmt: skip
def test_reaching_the_limit_pauses_or_aborts(kind, bound, seq, phase, reason, streak, weights):
    cluster = rolled_out(kind, seq, **bound)
    s = cluster.status
    assert (s["phase"], s["reason"], s["analysis"]["consecutiveInconclusive"]) == (phase, reason, streak)
    assert s["weights"] == weights and cluster.replicas("stable") == 4
    progressing = next(c for c in s["conditions"] if c["type"] == "Progressing")
    assert (progressing["reason"], progressing["message"]) == (reason, s["message"])
    warnings = [e for e in events(cluster) if e.type == "Warning" and e.reason == "AnalysisInconclusive"]
    if reason != "AnalysisInconclusive":
        assert "outcome" not in s["analysis"] and not warnings
        return
    assert s["analysis"]["outcome"] == "Inconclusive" and len(warnings) == 1
    assert plan_measurement(parse_spec(cluster.spec), "ml", "fraud", s, at(500)) is None  # measuring stops
    if phase == "Paused":
        assert RESUME in s["message"] and RESUME in warnings[0].message and "aborted" not in s
        assert cluster.replicas("canary") == (1 if kind == "canary" else 4)  # the rollout holds where it was
    else:
        assert s["aborted"]["reason"] == "AnalysisInconclusive" and cluster.replicas("canary") == 0
        assert s["message"].endswith(
            "(inconclusiveAction Abort); v1 serving" + (" at full weight" if kind == "canary" else "")
        )


def test_the_pause_message_says_how_many_and_what_to_do():
    s = rolled_out("canary", "III", inconclusiveLimit=3).status
    assert s["message"] == (
        "step 1/4: canary v2 at 20%; analysis of canary v2 inconclusive: 3 Inconclusive measurements in a row, "
        "inconclusiveLimit 3: errorRate: need 100 canary requests in the window, have 37; paused: "
        "`kubectl modelroll resume fraud` restarts the count, `kubectl modelroll promote fraud` goes on without "
        "a passing measurement, `kubectl modelroll abort fraud` rolls back"
    )
    s = rolled_out("canary", "III", inconclusiveLimit="20s").status
    assert "Inconclusive for 20s in a row (3 measurements), inconclusiveLimit 20s: " in s["message"]


def test_the_streak_counts_only_while_analysis_alone_holds_the_rollout():
    """Canary Pods that are not Ready yet are no sign of too little traffic."""
    cluster = AnalysedCluster(spec("v1", strategy("canary", inconclusiveLimit=3)))
    cluster.settle(T0)
    cluster.set_spec(spec("v2", strategy("canary", inconclusiveLimit=3)))
    cluster.reconcile(at(1))
    cluster.unready.add(cluster.revision("canary"))
    for t in (2, 12, 22, 32, 42):
        cluster.measure(at(t), THIN)
    s = cluster.status
    assert (s["phase"], s["analysis"]["inconclusive"], s["analysis"]["consecutiveInconclusive"]) == (
        "Progressing",
        5,
        0,
    )
    cluster.unready.clear()  # the Pods come up: now the analysis is what the step waits for
    for t in (52, 62):
        cluster.measure(at(t), THIN)
    assert (cluster.status["phase"], cluster.status["analysis"]["consecutiveInconclusive"]) == ("Progressing", 2)
    cluster.measure(at(72), THIN)
    assert (cluster.status["phase"], cluster.status["reason"]) == ("Paused", "AnalysisInconclusive")


def test_a_users_pause_does_not_count_either():
    cluster = rolled_out("canary", "II", inconclusiveLimit=3)
    cluster.annotations["modelroll.io/paused"] = "true"
    for t in (22, 32, 42):
        cluster.measure(at(t), THIN)
    s = cluster.status
    assert (s["phase"], s["reason"], s["analysis"]["consecutiveInconclusive"]) == ("Paused", "CanaryPaused", 0)


@pytest.mark.parametrize("kind", ["canary", "blueGreen"])
def test_resume_restarts_the_count_and_measuring(kind):
    cluster = rolled_out(kind, "III", inconclusiveLimit=3)
    cluster.annotations["modelroll.io/resume"] = "r1"
    cluster.settle(at(23))
    s = cluster.status
    assert (s["phase"], s["acknowledged"]["resume"]) == ("Progressing", "r1")
    assert "outcome" not in s["analysis"] and s["analysis"]["consecutiveInconclusive"] == 0
    assert s["analysis"]["message"] == "inconclusive count restarted by a user's resume; measuring again"
    assert {"Resumed", "AnalysisResumed"} <= set(cluster.events())
    assert plan_measurement(parse_spec(cluster.spec), "ml", "fraud", s, at(32)) is not None
    for t in (32, 42):
        cluster.measure(at(t), THIN)
    assert cluster.status["phase"] == "Progressing"  # a fresh count: 2 of 3
    cluster.measure(at(52), GOOD)  # and a pass moves it on
    s = cluster.status
    if kind == "canary":
        assert (s["currentStep"], s["analysis"]["phase"], s["analysis"]["consecutiveInconclusive"]) == (1, "Passed", 0)
    else:
        assert s["blueGreen"]["stage"] == "Switched" and s["analysis"]["scope"] == "postPromotion"


def test_resume_while_measuring_restarts_the_count_too():
    cluster = rolled_out("canary", "II", inconclusiveLimit=3)
    cluster.annotations["modelroll.io/resume"] = "r1"
    cluster.settle(at(13))
    assert cluster.status["analysis"]["consecutiveInconclusive"] == 0
    assert "AnalysisResumed" not in cluster.events() and "Resumed" in cluster.events()  # nothing was paused


def test_promote_goes_on_without_a_passing_measurement():
    cluster = rolled_out("canary", "III", inconclusiveLimit=3)
    cluster.annotations["modelroll.io/promote"] = "p1"
    cluster.settle(at(23))
    s = cluster.status
    assert (s["phase"], s["currentStep"]) == ("Progressing", 1)
    assert "outcome" not in s["analysis"] and s["analysis"]["consecutiveInconclusive"] == 0
    assert plan_measurement(parse_spec(cluster.spec), "ml", "fraud", s, at(32)) is not None  # the next step measures


def test_abort_rolls_back_as_usual():
    cluster = rolled_out("canary", "III", inconclusiveLimit=3)
    cluster.annotations["modelroll.io/abort"] = "a1"
    cluster.settle(at(23))
    s = cluster.status
    assert (s["phase"], s["reason"], s["weights"]) == ("Degraded", "Aborted", BACK)
    assert cluster.replicas("canary") == 0 and cluster.replicas("stable") == 4
    cluster.annotations["modelroll.io/resume"] = "r1"
    cluster.settle(at(24))
    assert cluster.status["acknowledged"]["resume"] == "r1" and cluster.status["phase"] == "Degraded"
    assert any("nothing to resume: the rollout of v2 is aborted" in e.message for e in events(cluster))


def test_blue_green_promote_deferred_before_the_pause_is_not_taken_as_one_after_it():
    """A promote sent while the preview waited for a pass asked for a promotion *with* a pass: it
    is turned down when the analysis stays inconclusive, and a fresh one switches."""
    cluster = rolled_out("blueGreen", "I", {"autoPromotionSeconds": None}, inconclusiveLimit=2)
    assert cluster.status["analysis"]["consecutiveInconclusive"] == 0  # a person, not analysis, holds it
    cluster.annotations["modelroll.io/promote"] = "p1"
    cluster.settle(at(3))
    assert cluster.status["deferred"]["promote"]["token"] == "p1"
    cluster.measure(at(12), THIN)
    assert cluster.status["phase"] == "Progressing"  # now analysis holds it: 1 of 2
    cluster.measure(at(22), THIN)
    s = cluster.status
    assert (s["phase"], s["reason"], s["blueGreen"]["stage"]) == ("Paused", "AnalysisInconclusive", "Preview")
    assert s["acknowledged"]["promote"] == "p1" and "deferred" not in s
    assert any(
        e.reason == "NothingToDo" and "promote again to go on without a passing measurement" in e.message
        for e in events(cluster)
    )
    cluster.annotations["modelroll.io/promote"] = "p2"
    cluster.settle(at(23))
    s = cluster.status
    assert (s["phase"], s["blueGreen"]["stage"]) == ("Progressing", "Switched")
    assert cluster.selector("fraud")["modelroll.io/track"] == "canary"


def test_blue_green_post_promotion_pause_keeps_the_old_track_warm_until_promote():
    cluster = rolled_out("blueGreen", "PIII", inconclusiveLimit=3)
    s = cluster.status
    assert s["message"].startswith("v2 active, v1 kept warm; postPromotionAnalysis of v2 inconclusive: ")
    cluster.settle(at(100))
    assert cluster.status["blueGreen"]["stage"] == "Switched" and cluster.replicas("stable") == 4
    cluster.annotations["modelroll.io/promote"] = "p1"
    cluster.settle(at(101))
    s = cluster.status
    assert (s["phase"], s["stable"]["version"]) == ("Healthy", "v2")


def test_replanning_a_paused_rollout_writes_nothing():
    cluster = rolled_out("canary", "III", inconclusiveLimit=3)
    assert cluster.reconcile(at(200)).status is None


def test_status_view_shows_the_streak_and_the_outcome():
    from modelroll.cli.render import status_view

    def view(cluster):
        obj = {"metadata": {"name": "fraud", "namespace": "ml"}, "spec": cluster.spec, "status": cluster.status}
        return status_view(obj).splitlines()

    lines = view(rolled_out("canary", "II", inconclusiveLimit=3))
    head = next(line for line in lines if line.startswith("Analysis:"))
    assert "2 inconclusive (2 in a row since 2026-11-22T12:00:02Z)" in head
    assert not any(line.startswith("Outcome:") for line in lines)
    lines = view(rolled_out("canary", "III", inconclusiveLimit=3))
    assert "Phase:     Paused (AnalysisInconclusive)" in lines
    assert any(line.startswith("Outcome:   Inconclusive: 3 Inconclusive measurements in a row") for line in lines)
