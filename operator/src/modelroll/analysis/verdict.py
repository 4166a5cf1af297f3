"""What a gate is judged on and what it answers: the raw numbers one measurement read
(``GateData``), the round of them (``Measurement``) and a gate's verdict (``GateVerdict``), with
the few formatting helpers every gate's message uses (pure). gates.py judges; this module only
holds the shapes, so the gate families in gates.py and quality.py share them without importing
each other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..spec import Analysis, Gate

PASS, FAIL, INCONCLUSIVE, ERROR = "Pass", "Fail", "Inconclusive", "Error"
VERDICTS = (PASS, FAIL, INCONCLUSIVE, ERROR)
CANARY_SCOPE, PRE_PROMOTION, POST_PROMOTION = "canary", "prePromotion", "postPromotion"
POWER = 0.95  # the chance a gate with detect promises to catch that effect, once it has the samples
# The power the sample sizes are computed for: above POWER, so that the promise holds despite the
# approximations behind them (normal, noncentral chi-square) and the saw-tooth of exact tests.
DESIGN_POWER = 0.975
DEFAULT_SIGNIFICANCE: float = Analysis.significance
# A per-track entry of a quality gate (GateVerdict.tracks) names its value and its sample size by
# what they are; these are the keys, in the order readers (status, plugin, metrics) look for them.
TRACK_VALUE_KEYS = ("accuracy", "meanAbsError", "psi")
TRACK_SAMPLE_KEYS = ("labels", "rows")

Counts = Mapping[str, float]


@dataclass(frozen=True)
class GateData:
    """What the I/O side read from Prometheus for one gate, over one window.

    ``samples`` is the canary's request count (None: not asked); ``error`` is set when a
    query could not run, and then nothing else is trusted.
    """

    samples: float | None = None
    errors: float | None = None  # canary 5xx responses (errorRate)
    stable_samples: float | None = None  # stable's requests (errorRate with maxIncrease)
    stable_errors: float | None = None  # stable's 5xx responses (errorRate with maxIncrease)
    canary_p99: float | None = None  # seconds (latencyP99); None = no data
    stable_p99: float | None = None
    canary_classes: Counts = field(default_factory=dict)  # predicted rows by class
    stable_classes: Counts = field(default_factory=dict)
    canary_confidence: Counts = field(default_factory=dict)  # cumulative buckets by le
    stable_confidence: Counts = field(default_factory=dict)
    # predictionAgreement: stable's shadow comparisons against this canary over the window
    agree: float | None = None  # classifiers: rows labelled alike
    disagree: float | None = None
    difference_sum: float | None = None  # regressors: sum and count of |stable - canary| per row
    difference_count: float | None = None
    difference_buckets: Counts = field(default_factory=dict)  # cumulative by le
    # featureDrift, per track: live input rows per feature and bin over the window, and the
    # reference's share of each bin as that track's Pods export it
    canary_bins: Mapping[str, Counts] = field(default_factory=dict)
    canary_reference: Mapping[str, Counts] = field(default_factory=dict)
    stable_bins: Mapping[str, Counts] = field(default_factory=dict)
    stable_reference: Mapping[str, Counts] = field(default_factory=dict)
    # liveAccuracy, per track, since the run began: labelled rows by result (correct, incorrect,
    # matched, unmatched) and, for regressors, the absolute error's sum, count and buckets
    canary_feedback: Counts = field(default_factory=dict)
    stable_feedback: Counts = field(default_factory=dict)
    canary_error_sum: float | None = None
    canary_error_count: float | None = None
    canary_error_buckets: Counts = field(default_factory=dict)  # cumulative by le
    stable_error_sum: float | None = None
    stable_error_count: float | None = None
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
    samples: int | None = None  # what the verdict rests on: canary requests, compared rows, rows or labels
    # quality gates (featureDrift, liveAccuracy): each track's own numbers, e.g.
    # {"canary": {"accuracy": 0.93, "labels": 412}, "stable": {...}}; None for the other gates
    tracks: Mapping[str, Mapping[str, Any]] | None = None

    def as_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "verdict": self.verdict,
            "threshold": self.threshold,
            "message": self.message,
        }
        if self.value is not None:
            out["value"] = round(self.value, 6)
        if self.samples is not None:
            out["samples"] = self.samples
        if self.tracks:
            out["tracks"] = {
                track: {k: round(v, 6) if isinstance(v, float) else v for k, v in entry.items()}
                for track, entry in self.tracks.items()
            }
        return out


def fmt(x: float) -> str:
    return f"{x:.4g}"


def confidence(alpha: float) -> str:
    return f"{fmt(100.0 * (1.0 - alpha))}%"


def count(x: float | None) -> int:
    """Prometheus' increase() extrapolates to the window's edges, so counts come as fractions."""
    return max(round(x or 0.0), 0)


def derived(gate: Gate, significance: float, what: str = "") -> str:
    return (
        f"derived from detect {fmt(gate.detect or 0.0)} at significance {fmt(significance)}, power {fmt(POWER)}{what}"
    )


_VALUE_WORDS = {"accuracy": "accuracy", "meanAbsError": "mean |error|", "psi": "PSI"}


def track_value(entry: Mapping[str, Any]) -> str | None:
    """Which key of a track's entry holds its value (None: no number there yet)."""
    return next((k for k in TRACK_VALUE_KEYS if isinstance(entry.get(k), (int, float))), None)


def track_samples(entry: Mapping[str, Any]) -> str | None:
    """Which key of a track's entry holds its sample size (None: none there)."""
    return next((k for k in TRACK_SAMPLE_KEYS if isinstance(entry.get(k), int)), None)


def describe_track(entry: Mapping[str, Any]) -> str:
    """One track's entry in words: "accuracy 0.92 of 500 labels", "age PSI 0.31 over 480 rows"."""
    words = [str(entry["feature"])] if entry.get("feature") is not None else []
    value = track_value(entry)
    if value is not None:
        words.append(f"{_VALUE_WORDS[value]} {fmt(float(entry[value]))}")
    size = track_samples(entry)
    if size is not None:
        joint = ("of " if size == "labels" else "over ") if words else ""
        words.append(f"{joint}{entry[size]} {size}")
    return " ".join(words)


def describe_tracks(tracks: Mapping[str, Mapping[str, Any]]) -> str:
    """Every track's entry, canary first: "canary accuracy 0.92 of 500 labels, stable ..."."""
    order = sorted(tracks, key=lambda track: (track != "canary", track))
    return ", ".join(f"{track} {describe_track(tracks[track])}" for track in order)
