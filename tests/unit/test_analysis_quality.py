"""The model-quality gates, featureDrift and liveAccuracy (analysis/quality.py): verdicts and
messages, each track's numbers, the PromQL they run (liveAccuracy over the whole run), the
parsing of Prometheus' answers, and seeded simulations of their false-failure and detection
rates (pure).

Simulation scenarios (quoted in docs/analysis.md with the rates they measure):

- featureDrift: one feature, reference shares 30/25/20/15/10 %, ``maxPSI: 0.1``,
  ``detect: 0.3``, significance 0.01, each window exactly the derived number of canary rows;
  the shifted canary moves its shares towards the rarest bin until the true PSI is 0.1 or 0.3.
  And three identical features judged at once (Bonferroni).
- liveAccuracy: ``min: 0.9`` over 500 labels; ``maxDrop: 0.02`` against a stable at 94 %
  over 2000 labels, canary over 1000.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from modelroll.analysis import state as st
from modelroll.analysis import stats
from modelroll.analysis.gates import (
    DESIGN_POWER,
    FAIL,
    INCONCLUSIVE,
    PASS,
    GateData,
    Measurement,
    analysis_at,
    evaluate_gate,
)
from modelroll.analysis.prometheus import _gate_data
from modelroll.analysis.psi import evaluate_psi
from modelroll.analysis.schedule import MeasurementPlan, build_queries
from modelroll.spec import Analysis, Gate

from tests.unit.test_analysis_rollout import AnalysedCluster
from tests.unit.test_analysis_rollout import spec as rollout_spec

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ALPHA = 0.01
WINDOWS = 1000

REF = {
    "age": {"20.0": 0.25, "40.0": 0.25, "60.0": 0.25, "+Inf": 0.25},
    "income": {"1000.0": 0.5, "+Inf": 0.3, "missing": 0.2},
}
SAME = {
    "age": {"20.0": 100, "40.0": 98, "60.0": 102, "+Inf": 100},
    "income": {"1000.0": 200, "+Inf": 120, "missing": 80},
}
AGED = {**SAME, "age": {"20.0": 250, "40.0": 50, "60.0": 50, "+Inf": 50}}  # the canary's users got younger
DRIFT = Gate("drift", builtin="featureDrift", max_psi=0.1)
DRIFT_DETECT = Gate("drift", builtin="featureDrift", max_psi=0.1, detect=0.3)
INCOME = Gate("drift", builtin="featureDrift", max_psi=0.1, features=("income",))
ACCURACY = Gate("accuracy", builtin="liveAccuracy", min=0.9, max_drop=0.02)
MIN = Gate("accuracy", builtin="liveAccuracy", min=0.9)
DROP = Gate("accuracy", builtin="liveAccuracy", max_drop=0.02)
MAE = Gate("mae", builtin="liveAccuracy", max_mean_abs_error=1.0, min_labels=100)
STABLE = {"correct": 1880, "incorrect": 120}  # 94 %
BUCKETS = (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)  # the server's


def errors(values, side="canary"):
    """What Prometheus answers for a batch of |errors|: sum, count and (canary) cumulative buckets."""
    data = {f"{side}_error_sum": float(sum(values)), f"{side}_error_count": float(len(values))}
    if side == "canary":
        buckets = {str(le): float(sum(v <= le for v in values)) for le in BUCKETS}
        data["canary_error_buckets"] = {**buckets, "+Inf": float(len(values))}
    return data


@pytest.mark.parametrize(
    ("gate", "data", "verdict", "value", "needle"),
    [
        (
            DRIFT,
            GateData(canary_bins=SAME, canary_reference=REF),
            PASS,
            0.0002,
            "feature 'age': PSI of the canary's inputs vs its reference 0.0001999 (4 bins, 400 rows) <= 0.204, "
            "the critical value for maxPSI 0.1 at significance 0.005 (2 features judged)",
        ),
        (DRIFT, GateData(canary_bins=AGED, canary_reference=REF), FAIL, 0.603, "feature 'age': PSI of the canary's "
         "inputs vs its reference 0.6031 (4 bins, 400 rows) > 0.204, the critical value for maxPSI 0.1"),
        # only the features named are judged (at the whole significance: one test)
        (INCOME, GateData(canary_bins=AGED, canary_reference=REF), PASS, 0.0, "feature 'income'"),
        (INCOME, GateData(canary_bins=AGED, canary_reference=REF), PASS, 0.0, "at significance 0.01 (1 features"),
        (DRIFT, GateData(canary_bins=SAME), INCONCLUSIVE, None, "the ModelDeployment needs spec.monitoring.drift"),
        (
            Gate("drift", builtin="featureDrift", max_psi=0.1, features=("zip", "age")),
            GateData(canary_bins=SAME, canary_reference=REF),
            INCONCLUSIVE,
            None,
            "not in the canary's reference statistics: zip (it has age, income)",
        ),
        (DRIFT, GateData(canary_bins={"age": {"20.0": 10}}, canary_reference=REF), INCONCLUSIVE, None,
         "need 100 canary input rows in the window, have 10"),
        (DRIFT, GateData(canary_reference=REF), INCONCLUSIVE, None, "have 0"),  # the canary took no requests
        (
            DRIFT_DETECT,
            GateData(canary_bins=SAME, canary_reference=REF),
            PASS,
            None,
            "(4 bins, 400 rows) <=",  # detect replaces minSamples: 390 rows are enough for it
        ),
        (
            DRIFT_DETECT,
            GateData(canary_bins={f: {b: v / 2 for b, v in c.items()} for f, c in SAME.items()}, canary_reference=REF),
            INCONCLUSIVE,
            None,
            "need 390 canary input rows in the window (derived from detect 0.3 at significance 0.01, power 0.95 "
            "over 2 features), have 200",
        ),
        (
            ACCURACY,
            GateData(canary_feedback={"correct": 460, "incorrect": 40, "unmatched": 9}, stable_feedback=STABLE),
            PASS,
            0.92,
            "canary accuracy 0.92 (460 of 500 labels since the run began): 99.5% upper bound 0.9481 >= 0.9; drop "
            "below stable 0.02 (1880 of 2000 stable labels correct), 99.5% lower bound -0.01014 <= 0.02",
        ),
        (ACCURACY, GateData(canary_feedback={"correct": 400, "incorrect": 100}, stable_feedback=STABLE), FAIL, 0.8,
         "99.5% upper bound 0.844 < 0.9; drop below stable 0.14"),
        # at 0.88 of 500 the true accuracy may well be 0.9: not shown below it at 0.01
        (MIN, GateData(canary_feedback={"correct": 440, "incorrect": 60}), PASS, 0.88, "99% upper bound 0.9117 >= 0.9"),
        (MIN, GateData(canary_feedback={"correct": 4400, "incorrect": 600}), FAIL, 0.88, "upper bound 0.8905 < 0.9"),
        (DROP, GateData(canary_feedback={"correct": 870, "incorrect": 130}, stable_feedback=STABLE), FAIL, 0.87,
         "drop below stable 0.07 (1880 of 2000 stable labels correct), 99% lower bound 0.04"),
        (ACCURACY, GateData(canary_feedback={"correct": 40, "incorrect": 10}, stable_feedback=STABLE), INCONCLUSIVE,
         None, "need 200 labels, have 50"),
        (DROP, GateData(canary_feedback={"correct": 460, "incorrect": 40}), INCONCLUSIVE, None,
         "stable has no labels since the run began to compare accuracy with"),
        (MIN, GateData(canary_feedback={"matched": 300, "unmatched": 4}), INCONCLUSIVE, None,
         "need 200 labels, have 0 (the labels are a regressor's: use maxMeanAbsError)"),
        (MAE, GateData(**errors([0.2] * 150)), PASS, 0.2,
         "canary mean |error| 0.2 over 150 labels since the run began: 99% lower bound"),
        (MAE, GateData(**errors([3.0] * 150)), FAIL, 3.0, "> 1"),
        (MAE, GateData(**errors([3.0] * 50)), INCONCLUSIVE, None, "need 100 labels, have 50"),  # minLabels
    ],
)  # fmt: skip
def test_verdicts(gate, data, verdict, value, needle):
    got = evaluate_gate(gate, data, min_samples=200 if gate.builtin == "liveAccuracy" else 100, significance=ALPHA)
    assert got.verdict == verdict, got
    if value is not None:
        assert got.value == pytest.approx(value, abs=1e-3)
    assert needle in got.message, got.message


def test_thresholds_and_sample_sizes():
    drift = evaluate_gate(DRIFT, GateData(canary_bins=AGED, canary_reference=REF), 100)
    assert (drift.threshold, drift.samples) == ("PSI <= 0.1 per feature", 400)  # input rows in the window
    accuracy = evaluate_gate(ACCURACY, GateData(canary_feedback={"correct": 46, "incorrect": 4}), 200)
    assert accuracy.threshold == "accuracy >= 0.9, accuracy >= stable - 0.02"
    assert accuracy.samples == 50  # labels matched, Inconclusive too
    mae = evaluate_gate(MAE, GateData(**errors([0.5] * 120)), 200)
    assert (mae.threshold, mae.samples) == ("mean |error| <= 1", 120)


def test_each_track_is_shown_beside_the_verdict():
    data = GateData(
        canary_bins=AGED,
        canary_reference=REF,
        stable_bins={"x": {"a": 900, "b": 100}},
        stable_reference={"x": {"a": 0.5, "b": 0.5}},  # stable judged against its own reference
    )
    got = evaluate_gate(DRIFT, data, 100).as_status()
    assert got["tracks"] == {
        "canary": {"feature": "age", "psi": pytest.approx(0.603058), "rows": 400},
        "stable": {"feature": "x", "psi": pytest.approx(0.878359), "rows": 1000},
    }
    got = evaluate_gate(
        ACCURACY, GateData(canary_feedback={"correct": 460, "incorrect": 40}, stable_feedback=STABLE), 200
    )
    assert got.as_status()["tracks"] == {
        "canary": {"accuracy": 0.92, "labels": 500},
        "stable": {"accuracy": 0.94, "labels": 2000},
    }
    got = evaluate_gate(MAE, GateData(**errors([0.5] * 120), **errors([0.25] * 40, "stable")), 200)
    assert got.tracks == {
        "canary": {"meanAbsError": 0.5, "labels": 120},
        "stable": {"meanAbsError": 0.25, "labels": 40},
    }
    # the other gates have no per-track entry
    plain = evaluate_gate(Gate("errorRate", builtin="errorRate", max=0.05), GateData(samples=200, errors=1), 100)
    assert plain.tracks is None and "tracks" not in plain.as_status()


def test_live_accuracy_waits_out_the_shadow_phase():
    """No user sees the canary's answers while it is shadowed, so no label can reach them."""
    analysis = Analysis(gates=(ACCURACY, DRIFT, Gate("agree", builtin="predictionAgreement", min_agreement=0.99)))
    assert [g.name for g in analysis_at(analysis, shadowing=True).gates] == ["drift", "agree"]
    assert [g.name for g in analysis_at(analysis, shadowing=False).gates] == ["accuracy", "drift"]
    assert analysis_at(Analysis(gates=(ACCURACY,)), shadowing=True) is None


def test_the_event_and_the_plugin_show_both_tracks():
    from modelroll.cli.render import analysis_view

    analysis = Analysis(min_samples=100, gates=(ACCURACY, DRIFT))
    data = {
        "accuracy": GateData(canary_feedback={"correct": 460, "incorrect": 40}, stable_feedback=STABLE),
        "drift": GateData(canary_bins=AGED, canary_reference=REF, stable_bins=SAME, stable_reference=REF),
    }
    run, events = st.fold_measurement(st.build_run("canary", "r2"), analysis, Measurement("canary", "r2", T0, data), 0)
    (event,) = events
    assert (
        "accuracy Pass 0.92 (accuracy >= 0.9, accuracy >= stable - 0.02, 500 samples; "
        "canary accuracy 0.92 of 500 labels, stable accuracy 0.94 of 2000 labels)" in event.message
    )
    assert "canary age PSI 0.6031 over 400 rows, stable age PSI 0.0001999 over 400 rows)" in event.message
    lines = "\n".join(analysis_view(run)).splitlines()
    header = lines.index(next(line for line in lines if line.startswith("QUALITY GATE")))
    assert lines[header].split() == ["QUALITY", "GATE", "CANARY", "STABLE"]
    assert " ".join(lines[header + 1].split()) == "accuracy accuracy 0.92 of 500 labels accuracy 0.94 of 2000 labels"
    assert " ".join(lines[header + 2].split()) == "drift age PSI 0.6031 over 400 rows age PSI 0.0002 over 400 rows"


# --- queries and answers ---------------------------------------------------------------------------

PLAN = MeasurementPlan(
    "canary", "r2", Analysis(interval_seconds=30, gates=(DRIFT, ACCURACY, MAE)), "fraud", "v2", "v1", "ml"
)
CANARY = 'namespace="ml",model_name="fraud",model_version="v2",track="canary"'
STABLE_SEL = 'namespace="ml",model_name="fraud",model_version="v1",track="stable"'


def test_drift_queries_read_each_track_over_the_interval():
    assert build_queries(PLAN, DRIFT) == {
        "canary_bins": f"sum by (feature, bin) (increase(modelroll_feature_bin_total{{{CANARY}}}[30s]))",
        "canary_reference": f"max by (feature, bin) (modelroll_feature_reference_proportion{{{CANARY}}})",
        "stable_bins": f"sum by (feature, bin) (increase(modelroll_feature_bin_total{{{STABLE_SEL}}}[30s]))",
        "stable_reference": f"max by (feature, bin) (modelroll_feature_reference_proportion{{{STABLE_SEL}}})",
    }


@pytest.mark.parametrize(("run_seconds", "window"), [(None, "30s"), (4.0, "30s"), (3600.4, "3600s")])
def test_accuracy_queries_count_labels_since_the_run_began(run_seconds, window):
    plan = replace(PLAN, run_seconds=run_seconds)
    assert build_queries(plan, ACCURACY) == {
        "canary_feedback": f"sum by (result) (increase(modelroll_feedback_total{{{CANARY}}}[{window}]))",
        "stable_feedback": f"sum by (result) (increase(modelroll_feedback_total{{{STABLE_SEL}}}[{window}]))",
    }
    mae = build_queries(plan, MAE)
    assert mae["canary_error_buckets"] == (
        f"sum by (le) (increase(modelroll_feedback_abs_error_bucket{{{CANARY}}}[{window}]))"
    )
    assert mae["stable_error_count"] == f"sum(increase(modelroll_feedback_abs_error_count{{{STABLE_SEL}}}[{window}]))"
    assert set(mae) == {"canary_error_sum", "canary_error_count", "canary_error_buckets", "stable_error_sum",
                        "stable_error_count"}  # fmt: skip


def test_the_run_records_where_its_data_begin_and_the_window_grows_with_it():
    """startedAt is the first measurement's window start; a later measurement's labels window
    reaches back to it, whatever the canary step."""
    analysis = {"interval": "10s", "minSamples": 10, "gates": [{"builtin": "liveAccuracy", "min": 0.5}]}
    strategy = {"type": "Canary", "canary": {"steps": [{"setWeight": 25}, {"pause": {}}], "analysis": analysis}}
    cluster = AnalysedCluster(rollout_spec("v1", strategy))
    cluster.settle(T0)
    cluster.set_spec(rollout_spec("v2", strategy))
    cluster.settle(T0 + timedelta(seconds=1))
    good = GateData(canary_feedback={"correct": 90, "incorrect": 10}, stable_feedback=STABLE)
    _, plan = cluster.measure(T0 + timedelta(seconds=2), good)
    assert plan.run_seconds is None and plan.labels_window == "10s"
    assert cluster.status["analysis"]["startedAt"] == "2026-11-22T11:59:52Z"  # 10 s before the first measurement
    _, plan = cluster.measure(T0 + timedelta(seconds=600), good)
    assert plan.labels_window == "608s"
    assert "[608s]" in build_queries(plan, plan.analysis.gates[0])["canary_feedback"]
    assert cluster.status["analysis"]["startedAt"] == "2026-11-22T11:59:52Z"  # kept for the whole run


def test_a_new_run_starts_its_own_labels_window():
    run, _ = st.fold_measurement(
        st.build_run("canary", "r1"), Analysis(interval_seconds=30, gates=(MIN,)),
        Measurement("canary", "r1", T0, {"accuracy": GateData()}), 0,
    )  # fmt: skip
    assert st.run_seconds(run, T0 + timedelta(minutes=5)) == 330
    assert st.run_seconds(st.current_run(run, "canary", "r2"), T0) is None


def series(*items):
    return [(labels, float(v)) for labels, v in items]


def test_answers_become_gate_data():
    drift = build_queries(PLAN, DRIFT)
    low, high = {"feature": "age", "bin": "20.0"}, {"feature": "age", "bin": "+Inf"}
    answers = {
        drift["canary_bins"]: series((low, 7), (high, 3)),
        drift["canary_reference"]: series((low, 0.5), (high, 0.5)),
        drift["stable_bins"]: series(({"feature": "age", "bin": "missing"}, float("nan"))),
        drift["stable_reference"]: [],
    }
    data = _gate_data(answers, drift)
    assert data.canary_bins == {"age": {"20.0": 7.0, "+Inf": 3.0}}
    assert data.canary_reference == {"age": {"20.0": 0.5, "+Inf": 0.5}}
    assert (data.stable_bins, data.stable_reference, data.error) == ({}, {}, None)

    accuracy = build_queries(PLAN, ACCURACY)
    answers = {
        accuracy["canary_feedback"]: series(({"result": "correct"}, 90.4), ({"result": "incorrect"}, 9.6)),
        accuracy["stable_feedback"]: [],
    }
    data = _gate_data(answers, accuracy)
    assert data.canary_feedback == {"correct": 90.4, "incorrect": 9.6} and data.stable_feedback == {}
    assert evaluate_gate(MIN, data, 100).samples == 100  # increase() extrapolates; labels are whole

    mae = build_queries(PLAN, MAE)
    answers = {q: series(({}, 12.0)) for q in mae.values()}
    answers[mae["canary_error_buckets"]] = series(({"le": "1.0"}, 10), ({"le": "+Inf"}, 12))
    answers[mae["stable_error_sum"]] = []  # stable has no regressor labels
    data = _gate_data(answers, mae)
    assert (data.canary_error_sum, data.canary_error_count, data.stable_error_sum) == (12.0, 12.0, None)
    assert data.canary_error_buckets == {"1.0": 10.0, "+Inf": 12.0}


# --- seeded simulations ----------------------------------------------------------------------------

SHARES = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
BINS = [str(b) for b in range(len(SHARES))]


def shares_at_psi(target: float) -> np.ndarray:
    """Live shares moved from the reference's towards its rarest bin until the PSI is ``target``."""
    towards = np.array([0.05, 0.1, 0.15, 0.2, 0.5])

    def psi(t: float) -> float:
        return evaluate_psi(dict(enumerate((1 - t) * SHARES + t * towards)), dict(enumerate(SHARES)))

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if psi(mid) < target else (lo, mid)
    return (1 - lo) * SHARES + lo * towards


def fail_rate(gate: Gate, windows: list[GateData], min_samples: int = 0) -> float:
    verdicts = [evaluate_gate(gate, data, min_samples, ALPHA).verdict for data in windows]
    assert INCONCLUSIVE not in verdicts, "every window has the documented sample size"
    return verdicts.count(FAIL) / len(verdicts)


def test_feature_drift_simulated():
    n = stats.psi_min_n_eff(len(SHARES), 0.1, 0.3, ALPHA, DESIGN_POWER)
    assert n == 351  # the scenario in the module docstring and docs/analysis.md
    reference = {"f": dict(zip(BINS, SHARES.tolist(), strict=True))}
    rng = np.random.default_rng(29)

    def windows(shares: np.ndarray) -> list[GateData]:
        rows = rng.multinomial(n, shares, WINDOWS)
        return [
            GateData(
                canary_bins={"f": dict(zip(BINS, r.astype(float).tolist(), strict=True))}, canary_reference=reference
            )
            for r in rows
        ]

    assert fail_rate(DRIFT_DETECT, windows(SHARES)) <= 0.01  # live inputs as the reference
    assert fail_rate(DRIFT_DETECT, windows(shares_at_psi(0.1))) <= 2 * ALPHA  # at the threshold
    assert fail_rate(DRIFT_DETECT, windows(shares_at_psi(0.3))) >= 0.95  # the detect effect
    short = windows(SHARES)[0]
    short = GateData(canary_bins={"f": {k: v * (n - 1) / n for k, v in short.canary_bins["f"].items()}},
                     canary_reference=reference)  # fmt: skip
    assert "need 351 canary input rows" in evaluate_gate(DRIFT_DETECT, short, 0, ALPHA).message


def test_feature_drift_over_many_features_simulated():
    """Three features of identical inputs, each tested at significance / 3: the gate as a whole
    still fails at most about the significance."""
    features = ("a", "b", "c")
    reference = {f: dict(zip(BINS, SHARES.tolist(), strict=True)) for f in features}
    rng = np.random.default_rng(31)
    windows = []
    for _ in range(WINDOWS):
        bins = {f: dict(zip(BINS, rng.multinomial(300, SHARES).astype(float).tolist(), strict=True)) for f in features}
        windows.append(GateData(canary_bins=bins, canary_reference=reference))
    assert fail_rate(DRIFT, windows, 100) <= 0.01


def test_live_accuracy_min_simulated():
    """500 labels a window: a canary exactly at min fails at most 1 % (the bound is exact), a
    better one never, one 10 points below nearly always."""
    rng = np.random.default_rng(37)

    def windows(accuracy: float) -> list[GateData]:
        return [
            GateData(canary_feedback={"correct": float(c), "incorrect": float(500 - c)})
            for c in rng.binomial(500, accuracy, WINDOWS)
        ]

    assert fail_rate(MIN, windows(0.95), 200) == 0.0
    assert fail_rate(MIN, windows(0.9), 200) <= ALPHA
    assert fail_rate(MIN, windows(0.8), 200) >= 0.95


def test_live_accuracy_max_drop_simulated():
    """Stable at 94 % over 2000 labels, canary over 1000: as good as stable rarely fails, exactly
    maxDrop below fails about the significance, 8 points below nearly always."""
    rng = np.random.default_rng(41)

    def windows(accuracy: float) -> list[GateData]:
        canary = rng.binomial(1000, accuracy, WINDOWS)
        stable = rng.binomial(2000, 0.94, WINDOWS)
        return [
            GateData(
                canary_feedback={"correct": float(c), "incorrect": float(1000 - c)},
                stable_feedback={"correct": float(s), "incorrect": float(2000 - s)},
            )
            for c, s in zip(canary, stable, strict=True)
        ]

    assert fail_rate(DROP, windows(0.94), 200) <= 0.01
    assert fail_rate(DROP, windows(0.92), 200) <= 2 * ALPHA
    assert fail_rate(DROP, windows(0.86), 200) >= 0.95
