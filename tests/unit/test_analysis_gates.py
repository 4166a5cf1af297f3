"""PSI, gate verdicts and the verdict state machine, table-driven."""

import math
from datetime import UTC, datetime, timedelta

import pytest
from modelroll.analysis import state as st
from modelroll.analysis.gates import (
    ERROR,
    FAIL,
    INCONCLUSIVE,
    PASS,
    GateData,
    Measurement,
    evaluate_gate,
    evaluate_measurement,
)
from modelroll.analysis.psi import Comparison, compare, evaluate_psi, histogram_counts, pool_sparse
from modelroll.spec import Analysis, Gate

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

# --- PSI -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canary", "stable", "low", "high"),
    [
        ({"a": 50, "b": 50}, {"a": 500, "b": 500}, 0.0, 1e-9),  # same shares, different volume
        ({"a": 55, "b": 45}, {"a": 50, "b": 50}, 0.005, 0.02),  # a small shift
        ({"a": 90, "b": 10}, {"a": 50, "b": 50}, 0.6, 1.0),  # a large one
        ({"a": 100}, {"b": 100}, 5.0, 30.0),  # disjoint: large but finite thanks to epsilon
        ({"a": 100, "b": 0}, {"a": 50, "b": 50}, 2.0, 10.0),  # a class the canary never predicts
    ],
)
def test_psi(canary, stable, low, high):
    psi = evaluate_psi(canary, stable)
    assert low <= psi <= high and math.isfinite(psi)


@pytest.mark.parametrize(("canary", "stable"), [({}, {}), ({"a": 0}, {"a": 5}), ({"a": 5}, {"b": 0})])
def test_psi_without_observations_raises(canary, stable):
    with pytest.raises(ValueError):
        evaluate_psi(canary, stable)


def test_psi_is_symmetric_enough_and_ignores_nan_and_negatives():
    assert evaluate_psi({"a": 1, "b": float("nan"), "c": -3}, {"a": 1}) < 0.01
    a, b = {"x": 70, "y": 30}, {"x": 30, "y": 70}
    assert evaluate_psi(a, b) == pytest.approx(evaluate_psi(b, a))


def test_sparse_bins_are_pooled_before_the_test():
    # r: one stray prediction, where the smaller side (100) expects 0.5 -> merged with b, the
    # next sparsest; a and b expect 30 and 20 and stay
    canary, stable, merges = pool_sparse({"a": 60, "b": 40, "r": 1}, {"a": 60, "b": 40})
    assert (canary, stable, merges) == ({"a": 60, "r|b": 41}, {"a": 60, "r|b": 40}, 1)
    c = compare({"a": 60, "b": 40, "r": 1}, {"a": 60, "b": 40})
    assert (c.bins, c.pooled, c.canary_total, c.stable_total) == (2, 1, 101, 100) and c.psi < 1e-3
    assert evaluate_psi({"a": 60, "b": 40, "r": 1}, {"a": 60, "b": 40}) > 0.04  # what r alone would add
    # a class stable predicts often and the canary never is no sparse bin: the shift stays visible
    assert compare({"a": 100}, {"a": 70, "b": 30}).psi > 2.0
    # everything sparse: one bin, no shift to measure
    assert compare({"a": 2, "b": 1}, {"a": 1, "b": 2}) == Comparison(0.0, 1, 3, 3, 1)


def test_histogram_counts_from_cumulative_buckets():
    assert histogram_counts({"0.5": 2, "+Inf": 10, "0.9": 7}) == {"0.5": 2, "0.9": 5, "+Inf": 3}
    assert histogram_counts({}) == {}


# --- gates -----------------------------------------------------------------------------------

ERR = Gate("errorRate", builtin="errorRate", max=0.05)
ERR_1PC = Gate("errorRate", builtin="errorRate", max=0.01)
LAT = Gate("latencyP99", builtin="latencyP99", max=100)
LAT_RATIO = Gate("latencyP99", builtin="latencyP99", max_ratio_to_stable=1.5)
SHIFT = Gate("predictionShift", builtin="predictionShift", max_psi=0.2)
CUSTOM = Gate("custom", query="sum(x)", success_condition="result < 0.05")


@pytest.mark.parametrize(
    ("gate", "data", "verdict", "value", "needle"),
    [
        (ERR, GateData(samples=200, errors=2), PASS, 0.01, "share 0.01 (2 of 200 requests): 99% lower bound 0.0"),
        (ERR, GateData(samples=200, errors=0), PASS, 0.0, "99% lower bound 0 <= 0.05"),
        (ERR, GateData(samples=200, errors=60), FAIL, 0.3, "99% lower bound 0.2"),
        (ERR, GateData(samples=200, errors=60), FAIL, 0.3, "> 0.05"),
        # above max, but 3 of 100 could well come from a true share of 0.01: not shown at 0.01
        (ERR_1PC, GateData(samples=100, errors=3), PASS, 0.03, "(3 of 100 requests): 99% lower bound 0.004395 <= 0.01"),
        (ERR_1PC, GateData(samples=1000, errors=30), FAIL, 0.03, "99% lower bound 0.01884 > 0.01"),
        (ERR, GateData(samples=200.4, errors=1.6), PASS, 0.01, "(2 of 200 requests)"),  # increase() extrapolates
        (ERR, GateData(samples=37, errors=30), INCONCLUSIVE, None, "need 100 canary requests in the window, have 37"),
        (ERR, GateData(samples=None), INCONCLUSIVE, None, "have 0"),
        (ERR, GateData(error="connection refused"), ERROR, None, "connection refused"),
        (ERR, None, ERROR, None, "not measured"),
        (LAT, GateData(samples=500, canary_p99=0.05), PASS, 50.0, "canary p99 50 ms <= 100 ms"),
        (LAT, GateData(samples=500, canary_p99=0.25), FAIL, 250.0, "250 ms > 100 ms"),
        (LAT, GateData(samples=500, canary_p99=float("nan")), INCONCLUSIVE, None, "no canary latency"),
        (LAT_RATIO, GateData(samples=500, canary_p99=0.012, stable_p99=0.010), PASS, 12.0, "vs stable 10 ms"),
        (LAT_RATIO, GateData(samples=500, canary_p99=0.020, stable_p99=0.010), FAIL, 20.0, "stable 10 ms > 15 ms"),
        (LAT_RATIO, GateData(samples=500, canary_p99=0.020, stable_p99=None), INCONCLUSIVE, 20.0, "stable served no"),
        (
            SHIFT,
            GateData(samples=500, canary_classes={"a": 50, "b": 50}, stable_classes={"a": 51, "b": 49}),
            PASS,
            None,
            "PSI of predicted classes",
        ),
        (
            SHIFT,
            GateData(samples=500, canary_classes={"a": 95, "b": 5}, stable_classes={"a": 50, "b": 50}),
            FAIL,
            None,
            "> 0.6025, the critical value for maxPSI 0.2 at significance 0.01",
        ),
        # a raw PSI above maxPSI that 20 predictions a side easily show by chance
        (
            SHIFT,
            GateData(samples=500, canary_classes={"a": 15, "b": 5}, stable_classes={"a": 10, "b": 10}),
            PASS,
            0.2745,
            "PSI of predicted classes canary vs stable 0.2745 (bias-corrected 0.1745; 2 bins, effective n 10) <=",
        ),
        (
            SHIFT,
            GateData(samples=500, canary_classes={"a": 95}, stable_classes={}),
            INCONCLUSIVE,
            None,
            "no prediction distribution",
        ),
        # confidence buckets shift even though the classes agree: the larger PSI decides
        (
            SHIFT,
            GateData(
                samples=500,
                canary_classes={"a": 50, "b": 50},
                stable_classes={"a": 50, "b": 50},
                canary_confidence={"0.6": 90, "1.0": 100},
                stable_confidence={"0.6": 5, "1.0": 100},
            ),
            FAIL,
            None,
            "PSI of confidence",
        ),
        (CUSTOM, GateData(result=0.01), PASS, 0.01, "result 0.01: result < 0.05 is true"),
        (CUSTOM, GateData(result=0.5), FAIL, 0.5, "is false"),
        (CUSTOM, GateData(result=[0.01]), PASS, 0.01, "is true"),  # one series = a number
        (CUSTOM, GateData(result=[0.01, 0.02]), ERROR, None, "fold it with all()"),
        (CUSTOM, GateData(result=None), INCONCLUSIVE, None, "no data"),
        (CUSTOM, GateData(result=[]), INCONCLUSIVE, None, "no data"),
        (CUSTOM, GateData(result=float("nan")), INCONCLUSIVE, None, "no data"),
        (CUSTOM, GateData(result=[float("nan"), 0.01]), PASS, 0.01, "is true"),
        (CUSTOM, GateData(samples=0, result=0.01), PASS, 0.01, "true"),  # minSamples is for builtins only
    ],
)
def test_gate_verdicts(gate, data, verdict, value, needle):
    got = evaluate_gate(gate, data, min_samples=100)
    assert got.verdict == verdict, got
    if value is not None:
        assert got.value == pytest.approx(value, abs=1e-4)
    assert needle in got.message, got.message


def test_all_series_condition_on_several_series():
    gate = Gate("custom", query="q", success_condition="all(result < 0.05)")
    assert evaluate_gate(gate, GateData(result=[0.01, 0.02]), 0).verdict == PASS
    got = evaluate_gate(gate, GateData(result=[0.01, 0.2]), 0)
    assert got.verdict == FAIL and "[0.01, 0.2]" in got.message


def test_status_shape_of_a_verdict():
    got = evaluate_gate(ERR, GateData(samples=30, errors=10), min_samples=2).as_status()
    assert got == {
        "name": "errorRate",
        "verdict": FAIL,
        "value": pytest.approx(0.333333),
        "threshold": "<= 0.05",
        "samples": 30,  # what the verdict rests on: the canary's requests in the window
        "message": got["message"],
    }


def test_each_builtin_verdict_carries_its_sample_size():
    assert evaluate_gate(ERR, GateData(samples=412.6, errors=1), min_samples=2).samples == 413
    assert evaluate_gate(ERR, GateData(samples=3, errors=0), min_samples=100).samples == 3  # Inconclusive too
    agreement = Gate("agree", builtin="predictionAgreement", min_agreement=0.9, min_pairs=10)
    assert evaluate_gate(agreement, GateData(samples=5, agree=180, disagree=20), 0).samples == 200  # rows compared
    custom = Gate("custom", query="q", success_condition="result < 1")
    assert evaluate_gate(custom, GateData(result=0.5), 0).samples is None
    assert "samples" not in evaluate_gate(custom, GateData(result=0.5), 0).as_status()


INCREASE = Gate("errorRate", builtin="errorRate", max_increase=0.01)
BOTH = Gate("errorRate", builtin="errorRate", max=0.02, max_increase=0.01)
ERR_DETECT = Gate("errorRate", builtin="errorRate", max=0.01, detect=0.05)
INCREASE_DETECT = Gate("errorRate", builtin="errorRate", max_increase=0.01, detect=0.04)
SHIFT_DETECT = Gate("predictionShift", builtin="predictionShift", max_psi=0.2, detect=0.5)
CLASSES = {"a": 500, "b": 300, "c": 200}


@pytest.mark.parametrize(
    ("gate", "data", "min_samples", "verdict", "threshold", "needle"),
    [
        (
            INCREASE,
            GateData(samples=500, errors=30, stable_samples=2000, stable_errors=10),
            100,
            FAIL,
            "<= stable + 0.01",
            "canary 5xx share 0.06 (30 of 500 requests): increase over stable 0.055 (10 of 2000 stable requests), "
            "99% lower bound 0.03403 > 0.01",
        ),
        (
            INCREASE,
            GateData(samples=500, errors=5, stable_samples=2000, stable_errors=10),
            100,
            PASS,
            "<= stable + 0.01",
            "increase over stable 0.005 (10 of 2000 stable requests), 99% lower bound -0.003199 <= 0.01",
        ),
        (INCREASE, GateData(samples=500, errors=5), 100, INCONCLUSIVE, "<= stable + 0.01", "stable served no requests"),
        # with minSamples 0, a fraction of a request (increase() extrapolates) still is none
        (
            ERR,
            GateData(samples=0.4, errors=0.1),
            0,
            INCONCLUSIVE,
            "<= 0.05",
            "need 1 canary requests in the window, have 0",
        ),
        (
            INCREASE,
            GateData(samples=500, errors=5, stable_samples=0.2, stable_errors=0),  # rounds to none
            100,
            INCONCLUSIVE,
            "<= stable + 0.01",
            "stable served no requests in the window to compare the 5xx share with",
        ),
        # two tests in one gate: each at significance / 2, so the gate's false-failure rate stays 0.01
        (
            BOTH,
            GateData(samples=500, errors=5, stable_samples=2000, stable_errors=10),
            100,
            PASS,
            "<= 0.02, <= stable + 0.01",
            "(5 of 500 requests): 99.5% lower bound 0.002162 <= 0.02; increase over stable 0.005 (10 of 2000 stable "
            "requests), 99.5% lower bound -0.003966 <= 0.01",
        ),
        (
            ERR_DETECT,
            GateData(samples=37, errors=0),
            100,
            INCONCLUSIVE,
            "<= 0.01",
            "need 312 canary requests in the window (derived from detect 0.05 at significance 0.01, power 0.95), "
            "have 37",
        ),
        # detect replaces minSamples: 400 requests are enough for it, though minSamples asks 1000
        (ERR_DETECT, GateData(samples=400, errors=0), 1000, PASS, "<= 0.01", "(0 of 400 requests)"),
        (
            INCREASE_DETECT,
            GateData(samples=37, errors=0, stable_samples=2000, stable_errors=10),
            100,
            INCONCLUSIVE,
            "<= stable + 0.01",
            "need 790 canary requests in the window (derived from detect 0.04 at significance 0.01, power 0.95), "
            "have 37",
        ),
        (
            INCREASE_DETECT,
            GateData(samples=5000, errors=0, stable_samples=20, stable_errors=0),
            100,
            INCONCLUSIVE,
            "<= stable + 0.01",
            "no number of canary requests reaches power 0.95 on detect 0.04 at significance 0.01 against stable's "
            "0 5xx of 20 requests in the window: too few stable requests",
        ),
        (
            SHIFT_DETECT,
            GateData(samples=500, canary_classes={"a": 50, "b": 30, "c": 20}, stable_classes=CLASSES),
            100,
            INCONCLUSIVE,
            "PSI <= 0.2",
            "need 378 canary predictions in the window (derived from detect 0.5 at significance 0.01, power 0.95: "
            "effective n 274 over 3 bins of predicted classes), have 100",
        ),
        (
            SHIFT_DETECT,
            GateData(samples=500, canary_classes=CLASSES, stable_classes={"a": 100, "b": 60, "c": 40}),
            100,
            INCONCLUSIVE,
            "PSI <= 0.2",
            "need over 274 stable predictions in the window",
        ),
        # detect replaces minSamples for predictionShift too: it counts predictions, not requests
        (
            SHIFT_DETECT,
            GateData(samples=5, canary_classes=CLASSES, stable_classes={k: 2 * v for k, v in CLASSES.items()}),
            100,
            PASS,
            "PSI <= 0.2",
            "PSI of predicted classes canary vs stable 0 (bias-corrected 0; 3 bins, effective n 666.7) <= 0.2903, "
            "the critical value for maxPSI 0.2 at significance 0.01",
        ),
        # one stray prediction of a class stable never made is pooled, not taken for a shift
        (
            SHIFT,
            GateData(samples=500, canary_classes={**CLASSES, "d": 1}, stable_classes=CLASSES),
            100,
            PASS,
            "PSI <= 0.2",
            "(bias-corrected 0; 3 bins (1 sparse merged), effective n 500.2) <=",
        ),
        # classes and confidence: two tests, each at significance / 2; the failing one is shown
        (
            SHIFT,
            GateData(
                samples=500,
                canary_classes=CLASSES,
                stable_classes={k: 2 * v for k, v in CLASSES.items()},
                canary_confidence={"0.6": 90, "1.0": 1000},
                stable_confidence={"0.6": 700, "1.0": 2000},
            ),
            100,
            FAIL,
            "PSI <= 0.2",
            "PSI of confidence canary vs stable 0.4403 (bias-corrected 0.4388; 2 bins, effective n 666.7) > 0.2992, "
            "the critical value for maxPSI 0.2 at significance 0.005",
        ),
    ],
)
def test_statistical_gate_verdicts(gate, data, min_samples, verdict, threshold, needle):
    got = evaluate_gate(gate, data, min_samples, significance=0.01)
    assert (got.verdict, got.threshold) == (verdict, threshold), got
    assert needle in got.message, got.message


def test_significance_moves_the_verdict():
    """The same window: significant at 0.1, not at 0.001."""
    data = GateData(samples=1000, errors=17)  # p-value of 17 of 1000 against 0.01 is ~0.026
    assert evaluate_gate(ERR_1PC, data, 100, significance=0.1).verdict == FAIL
    assert evaluate_gate(ERR_1PC, data, 100, significance=0.001).verdict == PASS
    analysis = Analysis(significance=0.1, gates=(ERR_1PC,))
    verdict, _ = evaluate_measurement(analysis, Measurement("canary", "r1", T0, {"errorRate": data}))
    assert verdict == FAIL  # the analysis' significance reaches the gates
    assert (
        evaluate_measurement(Analysis(gates=(ERR_1PC,)), Measurement("canary", "r1", T0, {"errorRate": data}))[0]
        == PASS
    )  # the default, 0.01


@pytest.mark.parametrize(
    ("verdicts", "want"),
    [
        ((PASS, PASS), PASS),
        ((PASS, INCONCLUSIVE), INCONCLUSIVE),
        ((INCONCLUSIVE, ERROR), ERROR),
        ((ERROR, FAIL), FAIL),
        ((FAIL, INCONCLUSIVE), FAIL),
    ],
)
def test_measurement_verdict_precedence(verdicts, want):
    data = {
        PASS: GateData(result=0.0),
        FAIL: GateData(result=1.0),
        INCONCLUSIVE: GateData(result=None),
        ERROR: GateData(error="boom"),
    }
    gates = tuple(Gate(f"g{i}", query="q", success_condition="result < 0.5") for i in range(len(verdicts)))
    m = Measurement("canary", "r1", T0, {f"g{i}": data[v] for i, v in enumerate(verdicts)})
    verdict, _ = evaluate_measurement(Analysis(gates=gates), m)
    assert verdict == want


# --- the state machine ---------------------------------------------------------------------

ANALYSIS = Analysis(interval_seconds=10, failure_limit=1, consecutive_error_limit=2, min_samples=10, gates=(ERR,))
DATA = {
    "P": GateData(samples=100, errors=0),
    "F": GateData(samples=100, errors=50),
    "I": GateData(samples=3, errors=0),
    "E": GateData(error="Prometheus at http://p:9090: connection refused"),
}


def run_sequence(seq, step=0):
    run = st.build_run("canary", "r1")
    events = []
    for i, kind in enumerate(seq):
        run, ev = st.fold_measurement(
            run, ANALYSIS, Measurement("canary", "r1", T0 + timedelta(seconds=10 * i), {"errorRate": DATA[kind]}), step
        )
        events += ev
    return run, events


@pytest.mark.parametrize(
    ("seq", "phase", "outcome", "counts"),
    [
        ("", "Running", None, (0, 0, 0, 0)),
        ("P", "Passed", None, (1, 0, 0, 0)),
        ("F", "Failed", None, (0, 1, 0, 0)),  # one failure is within failureLimit 1
        ("FF", "Failed", "Failed", (0, 2, 0, 0)),  # the second exceeds it
        ("FPF", "Failed", "Failed", (1, 2, 0, 0)),  # failures add up, passes do not forgive them
        ("IIIIII", "Inconclusive", None, (0, 0, 6, 0)),  # not enough data never fails
        ("EE", "Error", None, (0, 0, 0, 2)),
        ("EEE", "Error", "Failed", (0, 0, 0, 3)),  # consecutiveErrorLimit 2 exceeded
        ("EEPEE", "Error", None, (1, 0, 0, 4)),  # a success resets the consecutive count
        ("EEEE", "Error", "Failed", (0, 0, 0, 3)),  # nothing is folded after the outcome
        ("FFP", "Failed", "Failed", (0, 2, 0, 0)),
    ],
)
def test_state_machine(seq, phase, outcome, counts):
    run, _ = run_sequence(seq)
    assert run["phase"] == phase
    assert run.get("outcome") == outcome
    assert (run["passed"], run["failed"], run["inconclusive"], run["errors"]) == counts


def test_outcome_message_names_gate_value_and_threshold():
    run, _ = run_sequence("FF")
    assert run["message"].startswith("gate errorRate failed: value 0.5, threshold <= 0.05")
    run, _ = run_sequence("EEE")
    assert "Prometheus could not be queried for 3 measurements in a row" in run["message"]
    assert "connection refused" in run["message"]


def test_an_event_for_every_verdict_change_only():
    _, events = run_sequence("PPIIPFF")
    assert [e[1] for e in events] == ["AnalysisPass", "AnalysisInconclusive", "AnalysisPass", "AnalysisFail"]
    assert events[-1][0] == "Warning"


def test_folding_is_idempotent_and_ignores_other_runs():
    run, _ = run_sequence("P")
    again, ev = st.fold_measurement(run, ANALYSIS, Measurement("canary", "r1", T0, {"errorRate": DATA["F"]}), 0)
    assert again == run and ev == []
    other, ev = st.fold_measurement(
        run, ANALYSIS, Measurement("canary", "r2", T0 + timedelta(minutes=1), {"errorRate": DATA["F"]}), 0
    )
    assert other == run and ev == []
    assert st.fold_measurement(run, ANALYSIS, None, 0)[0] == run


def test_current_run_resets_on_a_new_revision_or_scope():
    run, _ = run_sequence("PF")
    assert st.current_run(run, "canary", "r1") == run
    assert st.current_run(run, "canary", "r2")["failed"] == 0
    assert st.current_run(run, "postPromotion", "r1")["passed"] == 0


def test_passed_at_needs_a_pass_taken_at_that_step():
    run, _ = run_sequence("P", step=2)
    assert st.passed_at(run, 2) and not st.passed_at(run, 3)
    run, _ = run_sequence("PI", step=2)
    assert not st.passed_at(run, 2)  # the latest verdict decides


def test_next_due():
    run, _ = run_sequence("P")
    assert st.next_due_seconds(run, ANALYSIS, T0 + timedelta(seconds=4)) == 6
    assert st.next_due_seconds(run, ANALYSIS, T0 + timedelta(seconds=40)) == 0
    assert st.next_due_seconds(st.build_run("canary", "r1"), ANALYSIS, T0) == 0


def test_a_verdict_event_lists_every_gate_with_value_threshold_and_sample_size():
    analysis = Analysis(min_samples=10, gates=(ERR, LAT))
    data = {"errorRate": GateData(samples=300, errors=60), "latencyP99": GateData(samples=300, canary_p99=0.012)}
    _, events = st.fold_measurement(st.build_run("canary", "r1"), analysis, Measurement("canary", "r1", T0, data), 0)
    (event,) = events
    assert event.reason == "AnalysisFail"
    assert "errorRate Fail 0.2 (<= 0.05, 300 samples)" in event.message
    assert "latencyP99 Pass 12 (<= 100 ms, 300 samples)" in event.message
