"""Gate verdicts: one gate plus the raw numbers Prometheus returned -> Pass, Fail,
Inconclusive or Error, with the value, the threshold and a one-line reason (pure).

The rule that matters most: not enough data is never a failure. Fewer than ``minSamples``
canary requests in the window (or, for a gate with ``detect``, fewer than the count its power
calculation derives), an empty result, or a side with no traffic to compare against is
Inconclusive; only a number on the wrong side of its threshold is a Fail, and a query that
could not run (Prometheus down, bad PromQL) is an Error, which the state machine counts apart
from failures.

errorRate and predictionShift are statistical tests (analysis/stats.py): they fail only when
the data show the canary past its threshold at the analysis' ``significance``, so a canary
exactly at its threshold fails one measurement in 1/significance by chance, and one with the
gate's ``detect`` effect fails with at least ``POWER`` once the derived sample size is reached.
A gate that runs two tests (errorRate with both ``max`` and ``maxIncrease``; predictionShift on
both the predicted classes and the confidence histogram) runs each at significance / 2
(Bonferroni), so the gate's false-failure rate stays within the significance.

The model-quality gates, featureDrift and liveAccuracy, are such tests too; they live in
quality.py and report each track's own numbers beside the verdict (``GateVerdict.tracks``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import replace

from ..spec import AGREEMENT, FEATURE_DRIFT, LIVE_ACCURACY, Analysis, Gate
from . import quality, stats
from .condition import ConditionError, evaluate_condition
from .psi import Comparison, bucket_counts, compare, histogram_counts
from .verdict import (
    CANARY_SCOPE,
    DEFAULT_SIGNIFICANCE,
    DESIGN_POWER,
    ERROR,
    FAIL,
    INCONCLUSIVE,
    PASS,
    POST_PROMOTION,
    POWER,
    PRE_PROMOTION,
    VERDICTS,
    GateData,
    GateVerdict,
    Measurement,
)
from .verdict import confidence as _confidence
from .verdict import count as _count
from .verdict import derived as _derived
from .verdict import fmt as _fmt

__all__ = [  # the shapes live in verdict.py; callers import them from here too
    "CANARY_SCOPE",
    "DESIGN_POWER",
    "ERROR",
    "FAIL",
    "INCONCLUSIVE",
    "PASS",
    "POST_PROMOTION",
    "POWER",
    "PRE_PROMOTION",
    "VERDICTS",
    "GateData",
    "GateVerdict",
    "Measurement",
    "analysis_at",
    "evaluate_gate",
    "evaluate_measurement",
    "sample_size",
    "threshold_of",
]


def threshold_of(gate: Gate) -> str:
    if gate.builtin in (FEATURE_DRIFT, LIVE_ACCURACY):
        return quality.threshold(gate)
    if gate.builtin == "errorRate":
        parts = [] if gate.max is None else [f"<= {_fmt(gate.max)}"]
        if gate.max_increase is not None:
            parts.append(f"<= stable + {_fmt(gate.max_increase)}")
        return ", ".join(parts)
    if gate.builtin == "latencyP99":
        if gate.max is not None:
            return f"<= {_fmt(gate.max)} ms"
        return f"<= {_fmt(gate.max_ratio_to_stable or 0)}x stable"
    if gate.builtin == "predictionShift":
        return f"PSI <= {_fmt(gate.max_psi or 0)}"
    if gate.builtin == AGREEMENT:
        if gate.min_agreement is not None:
            return f"agreement >= {_fmt(gate.min_agreement)}"
        return f"mean |difference| <= {_fmt(gate.max_mean_abs_difference or 0)}"
    return gate.success_condition or ""


def _inconclusive(gate: Gate, message: str, value: float | None = None) -> GateVerdict:
    return GateVerdict(gate.name, INCONCLUSIVE, value, threshold_of(gate), message)


def _not_enough(gate: Gate, data: GateData, min_samples: int) -> GateVerdict | None:
    have = data.samples or 0.0
    if data.samples is None or have < min_samples or have <= 0:
        return _inconclusive(gate, f"need {min_samples} canary requests in the window, have {int(have)}")
    return None


def _error_rate(gate: Gate, data: GateData, min_samples: int, significance: float) -> GateVerdict:
    n = _count(data.samples)
    x = min(_count(data.errors), n)
    tests = [t for t in (gate.max, gate.max_increase) if t is not None]
    alpha = significance / len(tests)
    stable_n = _count(data.stable_samples)
    stable_x = min(_count(data.stable_errors), stable_n)
    if gate.max_increase is not None and stable_n <= 0:
        return _inconclusive(gate, "stable served no requests in the window to compare the 5xx share with")
    if gate.detect is None:
        short = _not_enough(gate, data, min_samples)
        if short:
            return short
        if n <= 0:  # a fraction of a request, extrapolated
            return _inconclusive(gate, f"need {max(min_samples, 1)} canary requests in the window, have 0")
    else:
        if gate.max is not None:
            need = stats.binomial_min_n(gate.max, gate.detect, alpha, DESIGN_POWER)
        else:
            need = stats.newcombe_min_n(
                stable_x / stable_n, stable_n, gate.max_increase or 0.0, gate.detect, alpha, DESIGN_POWER
            )
        if need is None:
            return _inconclusive(
                gate,
                f"no number of canary requests reaches power {_fmt(POWER)} on detect {_fmt(gate.detect)} at "
                f"significance {_fmt(significance)} against stable's {stable_x} 5xx of {stable_n} requests "
                "in the window: too few stable requests",
            )
        if n < need or n <= 0:
            return _inconclusive(
                gate, f"need {need} canary requests in the window ({_derived(gate, significance)}), have {n}"
            )
    rate = x / n
    failed, parts = False, []
    if gate.max is not None:
        lower = stats.clopper_pearson_lower(x, n, alpha)
        over = stats.binomial_exceeds(x, n, gate.max, alpha)
        failed |= over
        parts.append(f"{_confidence(alpha)} lower bound {_fmt(lower)} {'>' if over else '<='} {_fmt(gate.max)}")
    if gate.max_increase is not None:
        lower = stats.newcombe_lower(x, n, stable_x, stable_n, alpha)
        over = lower > gate.max_increase
        failed |= over
        parts.append(
            f"increase over stable {_fmt(rate - stable_x / stable_n)} ({stable_x} of {stable_n} stable requests), "
            f"{_confidence(alpha)} lower bound {_fmt(lower)} {'>' if over else '<='} {_fmt(gate.max_increase)}"
        )
    return GateVerdict(
        gate.name,
        FAIL if failed else PASS,
        rate,
        threshold_of(gate),
        f"canary 5xx share {_fmt(rate)} ({x} of {n} requests): " + "; ".join(parts),
    )


def _usable(x: float | None) -> bool:
    return x is not None and not math.isnan(x)


def _latency(gate: Gate, data: GateData) -> GateVerdict:
    threshold = threshold_of(gate)
    if not _usable(data.canary_p99):
        return GateVerdict(gate.name, INCONCLUSIVE, None, threshold, "no canary latency observations in the window")
    p99 = float(data.canary_p99 or 0.0) * 1000.0
    if gate.max is not None:
        limit = gate.max
        detail = f"canary p99 {_fmt(p99)} ms"
    else:
        if not _usable(data.stable_p99):
            return GateVerdict(
                gate.name,
                INCONCLUSIVE,
                p99,
                threshold,
                "stable served no requests in the window to compare latency with",
            )
        stable_ms = float(data.stable_p99 or 0.0) * 1000.0
        limit = (gate.max_ratio_to_stable or 0.0) * stable_ms
        threshold = f"{threshold} ({_fmt(limit)} ms)"
        detail = f"canary p99 {_fmt(p99)} ms vs stable {_fmt(stable_ms)} ms"
    ok = p99 <= limit
    return GateVerdict(
        gate.name, PASS if ok else FAIL, p99, threshold, f"{detail} {'<=' if ok else '>'} {_fmt(limit)} ms"
    )


def _shift_short(gate: Gate, what: str, c: Comparison, alpha: float, significance: float) -> GateVerdict | None:
    """Inconclusive if ``c`` rests on fewer predictions than ``detect`` needs (None: enough)."""
    need = stats.psi_min_n_eff(c.bins, gate.max_psi or 0.0, gate.detect or 0.0, alpha, DESIGN_POWER)
    if need is None or stats.effective_n(c.canary_total, c.stable_total) >= need:
        return None
    why = _derived(gate, significance, f": effective n {need} over {c.bins} bins of {what}")
    if c.stable_total <= need:  # n_eff < the stable count, however many the canary has
        return _inconclusive(
            gate, f"need over {need} stable predictions in the window ({why}), have {int(c.stable_total)}"
        )
    canary_need = math.ceil(need * c.stable_total / (c.stable_total - need))
    return _inconclusive(
        gate, f"need {canary_need} canary predictions in the window ({why}), have {int(c.canary_total)}"
    )


def _shift(gate: Gate, data: GateData, significance: float) -> GateVerdict:
    found: list[tuple[str, Comparison]] = []
    for what, canary, stable in (
        ("predicted classes", data.canary_classes, data.stable_classes),
        ("confidence", histogram_counts(data.canary_confidence), histogram_counts(data.stable_confidence)),
    ):
        with contextlib.suppress(ValueError):  # no observations on a side: that distribution is left out
            found.append((what, compare(canary, stable)))
    if not found:
        return _inconclusive(
            gate,
            "no prediction distribution on both tracks in the window (stable idle, or the "
            "model exports neither classes nor confidence)",
        )
    alpha = significance / len(found)
    limit = gate.max_psi or 0.0
    judged = []
    for what, c in found:
        short = _shift_short(gate, what, c, alpha, significance) if gate.detect is not None else None
        if short:
            return short
        n_eff = stats.effective_n(c.canary_total, c.stable_total)
        critical = stats.psi_critical(c.bins, n_eff, limit, alpha)
        judged.append((c.psi > critical, c.psi / critical, what, c, n_eff, critical))
    failed, _, what, c, n_eff, critical = max(judged)  # a failing one first, then the nearest to failing
    corrected = max(c.psi - (c.bins - 1) / n_eff, 0.0)
    pooled = f" ({c.pooled} sparse merged)" if c.pooled else ""
    return GateVerdict(
        gate.name,
        FAIL if failed else PASS,
        c.psi,
        threshold_of(gate),
        f"PSI of {what} canary vs stable {_fmt(c.psi)} (bias-corrected {_fmt(corrected)}; {c.bins} bins{pooled}, "
        f"effective n {_fmt(n_eff)}) {'>' if failed else '<='} {_fmt(critical)}, the critical value for "
        f"maxPSI {_fmt(limit)} at significance {_fmt(alpha)}",
    )


def _agreement(gate: Gate, data: GateData, min_samples: int, significance: float) -> GateVerdict:
    """The shadow phase's paired comparison: stable's answers against the canary's on the very
    same rows. Classifiers: the share of identical labels, failed only when its exact one-sided
    upper bound (Clopper–Pearson) is below minAgreement. Regressors: the mean absolute
    difference, failed only when its one-sided lower bound (stats.mean_lower_bound) exceeds
    maxMeanAbsDifference."""
    need = gate.min_pairs if gate.min_pairs is not None else min_samples
    classifier = gate.min_agreement is not None
    pairs = sample_size(gate, data)
    if pairs < max(need, 1):
        return _inconclusive(gate, f"need {need} shadow-compared rows in the window, have {pairs}")
    level = _confidence(significance)
    if classifier:
        limit = gate.min_agreement or 0.0
        agree = min(_count(data.agree), pairs)
        share = agree / pairs
        upper = 1.0 - stats.clopper_pearson_lower(pairs - agree, pairs, significance)
        failed = upper < limit
        detail = f"{level} upper bound {_fmt(upper)} {'<' if failed else '>='} {_fmt(limit)}"
        return GateVerdict(
            gate.name,
            FAIL if failed else PASS,
            share,
            threshold_of(gate),
            f"canary agrees with stable on {_fmt(share)} of shadow-compared rows ({agree} of {pairs} pairs): {detail}",
        )
    limit = gate.max_mean_abs_difference or 0.0
    n, total = float(data.difference_count or 0.0), float(data.difference_sum or 0.0)
    mean = total / n
    buckets = bucket_counts(data.difference_buckets)
    lower = stats.mean_lower_bound(total, n, buckets, significance)
    failed = lower > limit
    return GateVerdict(
        gate.name,
        FAIL if failed else PASS,
        mean,
        threshold_of(gate),
        f"mean |canary - stable| {_fmt(mean)} over {pairs} shadow-compared rows: {level} lower bound {_fmt(lower)} "
        f"{'>' if failed else '<='} {_fmt(limit)}",
    )


def analysis_at(analysis: Analysis | None, shadowing: bool) -> Analysis | None:
    """The gates a canary measurement runs: during the shadow phase every gate but liveAccuracy
    (no user sees the canary's answers then, so no label can ever be matched to one); after it,
    all but predictionAgreement (no copies are compared any more). None when no gate is left,
    so the steps are then not held by analysis at all."""
    if analysis is None:
        return analysis
    left_out = LIVE_ACCURACY if shadowing else AGREEMENT
    gates = tuple(g for g in analysis.gates if g.builtin != left_out)
    if len(gates) == len(analysis.gates):
        return analysis
    return replace(analysis, gates=gates) if gates else None


def _custom(gate: Gate, data: GateData) -> GateVerdict:
    condition = gate.success_condition or ""
    result = data.result
    if isinstance(result, list):
        result = [x for x in result if not math.isnan(x)]
        if len(result) == 1:
            result = result[0]
    if result is None or result == [] or (isinstance(result, float) and math.isnan(result)):
        return GateVerdict(gate.name, INCONCLUSIVE, None, condition, "the query returned no data")
    shown = result if isinstance(result, float) else None
    try:
        ok = evaluate_condition(condition, result)
    except ConditionError as e:
        return GateVerdict(gate.name, ERROR, shown, condition, str(e))
    text = (
        _fmt(result)
        if isinstance(result, float)
        else "[" + ", ".join(_fmt(x) for x in result[:5]) + (", …]" if len(result) > 5 else "]")
    )
    return GateVerdict(
        gate.name, PASS if ok else FAIL, shown, condition, f"result {text}: {condition} is {'true' if ok else 'false'}"
    )


def evaluate_gate(
    gate: Gate, data: GateData | None, min_samples: int, significance: float = DEFAULT_SIGNIFICANCE
) -> GateVerdict:
    """The verdict of ``gate`` on ``data`` (None: the gate was not measured -> Error)."""
    if data is None:
        return GateVerdict(gate.name, ERROR, None, threshold_of(gate), "not measured")
    if data.error:
        return GateVerdict(gate.name, ERROR, None, threshold_of(gate), data.error)
    if gate.builtin is None:
        return _custom(gate, data)
    return replace(_builtin(gate, data, min_samples, significance), samples=sample_size(gate, data))


def _builtin(gate: Gate, data: GateData, min_samples: int, significance: float) -> GateVerdict:
    if gate.builtin == AGREEMENT:  # counts compared rows, not canary requests
        return _agreement(gate, data, min_samples, significance)
    if gate.builtin == "errorRate":  # checks its own sample size: with detect it is derived
        return _error_rate(gate, data, min_samples, significance)
    if gate.builtin == FEATURE_DRIFT:  # counts input rows, not requests
        return quality.feature_drift(gate, data, min_samples, significance)
    if gate.builtin == LIVE_ACCURACY:  # counts labels since the run began
        return quality.live_accuracy(gate, data, min_samples, significance)
    if gate.detect is None:
        short = _not_enough(gate, data, min_samples)
        if short:
            return short
    if gate.builtin == "latencyP99":
        return _latency(gate, data)
    return _shift(gate, data, significance)


def sample_size(gate: Gate, data: GateData) -> int:
    """What a built-in gate's verdict rests on: the rows compared in the shadow phase for
    predictionAgreement, the canary's input rows in the window for featureDrift, its labels
    since the run began for liveAccuracy, the canary's requests in the window for the others."""
    if gate.builtin == FEATURE_DRIFT:
        return quality.drift_rows(gate, data)
    if gate.builtin == LIVE_ACCURACY:
        return quality.labels_matched(gate, data)
    if gate.builtin == AGREEMENT:
        if gate.min_agreement is not None:
            return _count(data.agree) + _count(data.disagree)
        return _count(data.difference_count)
    return _count(data.samples)


def evaluate_measurement(analysis: Analysis, measurement: Measurement) -> tuple[str, list[GateVerdict]]:
    """Every gate's verdict and the measurement's: any Fail fails it; otherwise any Error makes
    it an Error; otherwise any Inconclusive makes it Inconclusive; otherwise it passes."""
    verdicts = [
        evaluate_gate(g, measurement.data.get(g.name), analysis.min_samples, analysis.significance)
        for g in analysis.gates
    ]
    kinds = {v.verdict for v in verdicts}
    for verdict in (FAIL, ERROR, INCONCLUSIVE):
        if verdict in kinds:
            return verdict, verdicts
    return PASS, verdicts
