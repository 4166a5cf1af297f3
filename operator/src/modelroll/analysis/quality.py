"""The model-quality gates: featureDrift (live inputs against the new revision's reference
statistics) and liveAccuracy (late labels), each a statistical test like those in gates.py,
with each track's own numbers beside the verdict (pure).

featureDrift is predictionShift's test made one-sample: the reference's shares are known
exactly (the gauge the canary's own Pods export from reference.json), so ``n · PSI`` of the
canary's ``n`` input rows against them is about noncentral chi-square with ``bins - 1`` degrees
of freedom and noncentrality ``n · PSI_true`` (for small differences PSI is Pearson's chi-square
over n); a feature fails when its PSI is above the ``maxPSI`` critical value at the
significance divided by the number of features judged (Bonferroni), so the gate's false-failure
rate stays within the significance however many features there are.

liveAccuracy counts labels over the whole analysis run, not one interval (the window is
``MeasurementPlan.labels_window``): a label arrives minutes or days after its prediction, so an
interval's worth of labels would be a handful, and the ones that did arrive would belong to
predictions from any earlier time. ``min`` fails when the exact one-sided Clopper–Pearson upper
bound of the accuracy is below it; ``maxDrop`` when Newcombe's lower bound of (canary error
share - stable error share) exceeds it; ``maxMeanAbsError`` when the mean absolute error's
lower bound (stats.mean_lower_bound, as predictionAgreement) exceeds it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..spec import FEATURE_DRIFT, Gate
from . import stats
from .psi import Comparison, bucket_counts, compare_to_reference
from .verdict import (
    DESIGN_POWER,
    FAIL,
    INCONCLUSIVE,
    PASS,
    GateData,
    GateVerdict,
    confidence,
    count,
    derived,
    fmt,
)

NO_REFERENCE = (
    "no reference statistics from the canary's Pods in Prometheus (modelroll_feature_reference_proportion): "
    "the ModelDeployment needs spec.monitoring.drift, and its Pods must have been scraped"
)
CORRECT, INCORRECT = "correct", "incorrect"


def threshold(gate: Gate) -> str:
    if gate.builtin == FEATURE_DRIFT:
        return f"PSI <= {fmt(gate.max_psi or 0)} per feature"
    parts = []
    if gate.min is not None:
        parts.append(f"accuracy >= {fmt(gate.min)}")
    if gate.max_drop is not None:
        parts.append(f"accuracy >= stable - {fmt(gate.max_drop)}")
    if gate.max_mean_abs_error is not None:
        parts.append(f"mean |error| <= {fmt(gate.max_mean_abs_error)}")
    return ", ".join(parts)


def _verdict(gate: Gate, verdict: str, value: float | None, message: str, tracks: dict[str, Any]) -> GateVerdict:
    return GateVerdict(gate.name, verdict, value, threshold(gate), message, tracks=tracks or None)


# --- featureDrift ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureShift:
    feature: str
    comparison: Comparison

    @property
    def rows(self) -> int:
        return count(self.comparison.canary_total)


def _shifts(
    bins: Mapping[str, Mapping[str, float]], reference: Mapping[str, Mapping[str, float]], features: list[str]
) -> list[FeatureShift]:
    """Each feature's PSI against its reference; features without rows are left out."""
    out = []
    for feature in features:
        try:
            out.append(FeatureShift(feature, compare_to_reference(bins.get(feature) or {}, reference[feature])))
        except ValueError:
            continue
    return out


def _worst_entry(shifts: list[FeatureShift]) -> dict[str, Any]:
    """A track's entry: its largest-PSI feature and its rows."""
    if not shifts:
        return {"rows": 0}
    worst = max(shifts, key=lambda s: s.comparison.psi)
    return {"feature": worst.feature, "psi": worst.comparison.psi, "rows": max(s.rows for s in shifts)}


def drift_rows(gate: Gate, data: GateData) -> int:
    """The canary's input rows in the window (every row counts once per feature)."""
    wanted = gate.features or tuple(data.canary_bins)
    return max((count(math.fsum((data.canary_bins.get(f) or {}).values())) for f in wanted), default=0)


def _stable_entry(data: GateData) -> dict[str, Any] | None:
    """Stable's inputs against stable's own reference (its bins are its reference's edges):
    informative, never judged."""
    if not data.stable_reference:
        return None
    return _worst_entry(_shifts(data.stable_bins, data.stable_reference, sorted(data.stable_reference)))


def feature_drift(gate: Gate, data: GateData, min_samples: int, significance: float) -> GateVerdict:
    tracks: dict[str, Any] = {}
    stable = _stable_entry(data)
    if stable is not None:
        tracks["stable"] = stable
    reference = data.canary_reference
    if not reference:
        return _verdict(gate, INCONCLUSIVE, None, NO_REFERENCE, tracks)
    wanted = list(gate.features) or sorted(reference)
    unknown = [f for f in wanted if f not in reference]
    if unknown:
        known = ", ".join(sorted(reference)[:10]) + (", …" if len(reference) > 10 else "")
        return _verdict(
            gate,
            INCONCLUSIVE,
            None,
            f"not in the canary's reference statistics: {', '.join(unknown)} (it has {known})",
            tracks,
        )
    shifts = _shifts(data.canary_bins, reference, wanted)
    tracks = {"canary": _worst_entry(shifts), **tracks}
    rows = drift_rows(gate, data)
    alpha = significance / len(wanted)
    limit = gate.max_psi or 0.0
    need, why = min_samples, ""
    if gate.detect is not None:
        sizes = [stats.psi_min_n_eff(s.comparison.bins, limit, gate.detect, alpha, DESIGN_POWER) for s in shifts]
        need = max((n for n in sizes if n is not None), default=min_samples)
        why = f" ({derived(gate, significance, f' over {len(wanted)} features')})"
    if rows < max(need, 1) or not shifts:
        short = f"need {need} canary input rows in the window{why}, have {rows}"
        return _verdict(gate, INCONCLUSIVE, None, short, tracks)
    judged = []
    for s in shifts:
        critical = stats.psi_critical(s.comparison.bins, s.comparison.canary_total, limit, alpha)
        judged.append((s.comparison.psi > critical, s.comparison.psi / critical, s.feature, s, critical))
    failed, _, _, worst, critical = max(judged)  # a failing feature first, then the nearest to failing
    c = worst.comparison
    pooled = f" ({c.pooled} sparse merged)" if c.pooled else ""
    return _verdict(
        gate,
        FAIL if failed else PASS,
        c.psi,
        f"feature {worst.feature!r}: PSI of the canary's inputs vs its reference {fmt(c.psi)} ({c.bins} bins{pooled}, "
        f"{worst.rows} rows) {'>' if failed else '<='} {fmt(critical)}, the critical value for maxPSI {fmt(limit)} "
        f"at significance {fmt(alpha)} ({len(wanted)} features judged)",
        tracks,
    )


# --- liveAccuracy ----------------------------------------------------------------------------


def _accuracy_entry(feedback: Mapping[str, float]) -> tuple[int, int, dict[str, Any]]:
    """(correct, labels, the track's entry) from labelled rows by result."""
    correct, incorrect = count(feedback.get(CORRECT)), count(feedback.get(INCORRECT))
    labels = correct + incorrect
    entry: dict[str, Any] = {"labels": labels}
    if labels:
        entry = {"accuracy": correct / labels, **entry}
    return correct, labels, entry


def _error_entry(total: float | None, n: float | None) -> dict[str, Any]:
    labels = count(n)
    return {"meanAbsError": float(total or 0.0) / labels, "labels": labels} if labels else {"labels": 0}


def labels_matched(gate: Gate, data: GateData) -> int:
    """The canary's labels matched to its predictions since the run began."""
    if gate.max_mean_abs_error is not None:
        return count(data.canary_error_count)
    return _accuracy_entry(data.canary_feedback)[1]


def live_accuracy(gate: Gate, data: GateData, min_samples: int, significance: float) -> GateVerdict:
    need = gate.min_labels if gate.min_labels is not None else min_samples
    if gate.max_mean_abs_error is not None:
        return _mean_abs_error(gate, data, need, significance)
    correct, n, canary = _accuracy_entry(data.canary_feedback)
    stable_correct, stable_n, stable = _accuracy_entry(data.stable_feedback)
    tracks = {"canary": canary, "stable": stable}
    if n < max(need, 1):
        hint = ""
        if count(data.canary_feedback.get("matched")):  # a regressor's labels are matched, never correct
            hint = " (the labels are a regressor's: use maxMeanAbsError)"
        return _verdict(gate, INCONCLUSIVE, None, f"need {need} labels, have {n}{hint}", tracks)
    if gate.max_drop is not None and stable_n <= 0:
        return _verdict(
            gate, INCONCLUSIVE, None, "stable has no labels since the run began to compare accuracy with", tracks
        )
    tests = [t for t in (gate.min, gate.max_drop) if t is not None]
    alpha = significance / len(tests)
    accuracy = correct / n
    failed, parts = False, []
    if gate.min is not None:
        upper = 1.0 - stats.clopper_pearson_lower(n - correct, n, alpha)
        below = upper < gate.min
        failed |= below
        parts.append(f"{confidence(alpha)} upper bound {fmt(upper)} {'<' if below else '>='} {fmt(gate.min)}")
    if gate.max_drop is not None:
        # a drop in accuracy is a rise in the error share: errorRate's maxIncrease test on errors
        lower = stats.newcombe_lower(n - correct, n, stable_n - stable_correct, stable_n, alpha)
        over = lower > gate.max_drop
        failed |= over
        parts.append(
            f"drop below stable {fmt(stable_correct / stable_n - accuracy)} ({stable_correct} of {stable_n} stable "
            f"labels correct), {confidence(alpha)} lower bound {fmt(lower)} {'>' if over else '<='} "
            f"{fmt(gate.max_drop)}"
        )
    return _verdict(
        gate,
        FAIL if failed else PASS,
        accuracy,
        f"canary accuracy {fmt(accuracy)} ({correct} of {n} labels since the run began): " + "; ".join(parts),
        tracks,
    )


def _mean_abs_error(gate: Gate, data: GateData, need: int, significance: float) -> GateVerdict:
    n = count(data.canary_error_count)
    tracks = {
        "canary": _error_entry(data.canary_error_sum, data.canary_error_count),
        "stable": _error_entry(data.stable_error_sum, data.stable_error_count),
    }
    if n < max(need, 1):
        return _verdict(gate, INCONCLUSIVE, None, f"need {need} labels, have {n}", tracks)
    limit = gate.max_mean_abs_error or 0.0
    total = float(data.canary_error_sum or 0.0)
    mean = total / n
    lower = stats.mean_lower_bound(total, float(n), bucket_counts(data.canary_error_buckets), significance)
    failed = lower > limit
    return _verdict(
        gate,
        FAIL if failed else PASS,
        mean,
        f"canary mean |error| {fmt(mean)} over {n} labels since the run began: {confidence(significance)} lower bound "
        f"{fmt(lower)} {'>' if failed else '<='} {fmt(limit)}",
        tracks,
    )
