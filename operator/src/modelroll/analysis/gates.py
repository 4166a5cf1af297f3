"""Gate verdicts: one gate plus the raw numbers Prometheus returned -> Pass, Fail,
Inconclusive or Error, with the value, the threshold and a one-line reason (pure).

The rule that matters most: not enough data is never a failure. Fewer than ``minSamples``
canary requests in the window, an empty result, or a side with no traffic to compare
against is Inconclusive; only a number on the wrong side of its threshold is a Fail, and a
query that could not run (Prometheus down, bad PromQL) is an Error, which the state machine
counts apart from failures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..spec import Analysis, Gate
from .condition import ConditionError, evaluate_condition
from .psi import evaluate_psi, histogram_counts

PASS, FAIL, INCONCLUSIVE, ERROR = "Pass", "Fail", "Inconclusive", "Error"
CANARY_SCOPE, PRE_PROMOTION, POST_PROMOTION = "canary", "prePromotion", "postPromotion"


@dataclass(frozen=True)
class GateData:
    """What the I/O side read from Prometheus for one gate, over one window.

    ``samples`` is the canary's request count (None: not asked); ``error`` is set when a
    query could not run, and then nothing else is trusted.
    """

    samples: float | None = None
    errors: float | None = None  # canary 5xx responses (errorRate)
    canary_p99: float | None = None  # seconds (latencyP99); None = no data
    stable_p99: float | None = None
    canary_classes: Mapping[str, float] = field(default_factory=dict)  # predicted rows by class
    stable_classes: Mapping[str, float] = field(default_factory=dict)
    canary_confidence: Mapping[str, float] = field(default_factory=dict)  # cumulative buckets by le
    stable_confidence: Mapping[str, float] = field(default_factory=dict)
    result: float | list[float] | None = None  # custom query: None = empty result
    error: str | None = None


@dataclass(frozen=True)
class Measurement:
    """One round of queries for every gate of an analysis, taken at ``taken_at``."""

    scope: str  # canary | prePromotion | postPromotion
    revision: str  # the canary (or preview) revision it measured
    taken_at: datetime
    data: Mapping[str, GateData]  # by gate name


@dataclass(frozen=True)
class GateVerdict:
    name: str
    verdict: str
    value: float | None
    threshold: str
    message: str

    def as_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "verdict": self.verdict,
            "threshold": self.threshold,
            "message": self.message,
        }
        if self.value is not None:
            out["value"] = round(self.value, 6)
        return out


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def threshold_of(gate: Gate) -> str:
    if gate.builtin == "errorRate":
        return f"<= {_fmt(gate.max or 0)}"
    if gate.builtin == "latencyP99":
        if gate.max is not None:
            return f"<= {_fmt(gate.max)} ms"
        return f"<= {_fmt(gate.max_ratio_to_stable or 0)}x stable"
    if gate.builtin == "predictionShift":
        return f"PSI <= {_fmt(gate.max_psi or 0)}"
    return gate.success_condition or ""


def _not_enough(gate: Gate, data: GateData, min_samples: int) -> GateVerdict | None:
    have = data.samples or 0.0
    if data.samples is None or have < min_samples or have <= 0:
        return GateVerdict(
            gate.name,
            INCONCLUSIVE,
            None,
            threshold_of(gate),
            f"need {min_samples} canary requests in the window, have {int(have)}",
        )
    return None


def _error_rate(gate: Gate, data: GateData) -> GateVerdict:
    rate = (data.errors or 0.0) / (data.samples or 1.0)
    limit = gate.max or 0.0
    ok = rate <= limit
    return GateVerdict(
        gate.name,
        PASS if ok else FAIL,
        rate,
        threshold_of(gate),
        f"canary 5xx share {_fmt(rate)} {'<=' if ok else '>'} {_fmt(limit)} "
        f"({int(data.errors or 0)} of {int(data.samples or 0)} requests)",
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


def _shift(gate: Gate, data: GateData) -> GateVerdict:
    threshold = threshold_of(gate)
    found: list[tuple[float, str]] = []
    missing = []
    for what, canary, stable in (
        ("predicted classes", data.canary_classes, data.stable_classes),
        ("confidence", histogram_counts(data.canary_confidence), histogram_counts(data.stable_confidence)),
    ):
        try:
            found.append((evaluate_psi(canary, stable), what))
        except ValueError:
            missing.append(what)
    if not found:
        return GateVerdict(
            gate.name,
            INCONCLUSIVE,
            None,
            threshold,
            "no prediction distribution on both tracks in the window (stable idle, or the "
            "model exports neither classes nor confidence)",
        )
    psi, what = max(found)
    limit = gate.max_psi or 0.0
    ok = psi <= limit
    return GateVerdict(
        gate.name,
        PASS if ok else FAIL,
        psi,
        threshold,
        f"PSI of {what} canary vs stable {_fmt(psi)} {'<=' if ok else '>'} {_fmt(limit)}",
    )


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


def evaluate_gate(gate: Gate, data: GateData | None, min_samples: int) -> GateVerdict:
    """The verdict of ``gate`` on ``data`` (None: the gate was not measured -> Error)."""
    if data is None:
        return GateVerdict(gate.name, ERROR, None, threshold_of(gate), "not measured")
    if data.error:
        return GateVerdict(gate.name, ERROR, None, threshold_of(gate), data.error)
    if gate.builtin is None:
        return _custom(gate, data)
    short = _not_enough(gate, data, min_samples)
    if short:
        return short
    if gate.builtin == "errorRate":
        return _error_rate(gate, data)
    if gate.builtin == "latencyP99":
        return _latency(gate, data)
    return _shift(gate, data)


def evaluate_measurement(analysis: Analysis, measurement: Measurement) -> tuple[str, list[GateVerdict]]:
    """Every gate's verdict and the measurement's: any Fail fails it; otherwise any Error makes
    it an Error; otherwise any Inconclusive makes it Inconclusive; otherwise it passes."""
    verdicts = [evaluate_gate(g, measurement.data.get(g.name), analysis.min_samples) for g in analysis.gates]
    kinds = {v.verdict for v in verdicts}
    for verdict in (FAIL, ERROR, INCONCLUSIVE):
        if verdict in kinds:
            return verdict, verdicts
    return PASS, verdicts
