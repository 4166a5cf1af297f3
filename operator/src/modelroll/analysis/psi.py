"""Population stability index between two count distributions (pure).

PSI = sum over bins of (p_canary - p_stable) * ln(p_canary / p_stable), where p are the
bins' shares. The usual reading: < 0.1 no real shift, 0.1-0.25 a moderate shift, > 0.25 a
large one. Bins are the predicted classes (or confidence-histogram buckets) seen on either
side; a bin empty on one side would make the logarithm infinite, so every bin gets a small
epsilon share before normalising: one class the canary never predicts then yields a large,
finite PSI instead of infinity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

EPSILON = 1e-4
# compare() pools bins in which the smaller side expects fewer observations than this (the
# chi-square test's rule of thumb), so one or two stray observations in a rare bin, which the
# epsilon share would turn into a large PSI, do not pass for a shift.
MIN_EXPECTED = 5.0


@dataclass(frozen=True)
class Comparison:
    """PSI of two count distributions and what its noise depends on: the bins (populated on
    either side, after pooling sparse ones) and the counts behind each distribution."""

    psi: float
    bins: int
    canary_total: float
    stable_total: float
    pooled: int = 0  # sparse bins merged into others


def build_shares(counts: Mapping[str, float], bins: list[str], epsilon: float = EPSILON) -> list[float]:
    """Shares of ``counts`` over ``bins`` after adding ``epsilon`` of the total to each bin."""
    clean = [max(float(counts.get(b, 0.0)), 0.0) for b in bins]
    clean = [0.0 if math.isnan(x) else x for x in clean]
    total = sum(clean)
    if total <= 0:
        raise ValueError("no observations")
    smoothed = [x / total + epsilon for x in clean]
    norm = sum(smoothed)
    return [x / norm for x in smoothed]


def evaluate_psi(canary: Mapping[str, float], stable: Mapping[str, float], epsilon: float = EPSILON) -> float:
    """PSI of ``canary`` against ``stable`` over the union of their bins.

    Raises ValueError if either side has no observations (the caller reports Inconclusive).
    """
    bins = sorted(set(canary) | set(stable))
    if not bins:
        raise ValueError("no observations")
    p = build_shares(canary, bins, epsilon)
    q = build_shares(stable, bins, epsilon)
    return max(0.0, math.fsum((a - b) * math.log(a / b) for a, b in zip(p, q, strict=True)))


def _clean(counts: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in ((k, float(v)) for k, v in counts.items()) if v > 0 and not math.isnan(v)}


def pool_sparse(
    canary: Mapping[str, float], stable: Mapping[str, float], min_expected: float = MIN_EXPECTED
) -> tuple[dict[str, float], dict[str, float], int]:
    """The two distributions with sparse bins merged, and how many merges that took. A bin is
    sparse when the smaller side expects fewer than ``min_expected`` observations in it (its
    pooled share times that side's total); the two sparsest bins are merged until none is, or
    one bin is left."""
    c, s = _clean(canary), _clean(stable)
    n_c, n_s = math.fsum(c.values()), math.fsum(s.values())
    if n_c <= 0 or n_s <= 0:
        return c, s, 0
    scale = min(n_c, n_s) / (n_c + n_s)

    def expected(b: str) -> float:
        return (c.get(b, 0.0) + s.get(b, 0.0)) * scale

    bins = sorted(set(c) | set(s), key=lambda b: (expected(b), b))
    merges = 0
    while len(bins) > 1 and expected(bins[0]) < min_expected:
        first, second, *bins = bins
        merged = f"{first}|{second}"
        for side in (c, s):
            side[merged] = side.pop(first, 0.0) + side.pop(second, 0.0)
        bins = sorted([*bins, merged], key=lambda b: (expected(b), b))
        merges += 1
    return c, s, merges


def compare(canary: Mapping[str, float], stable: Mapping[str, float], epsilon: float = EPSILON) -> Comparison:
    """PSI after pooling sparse bins (``pool_sparse``), with the number of bins left and each
    side's total count.

    Raises ValueError if either side has no observations."""
    c, s, merges = pool_sparse(canary, stable)
    psi = evaluate_psi(c, s, epsilon)
    return Comparison(psi, len(set(c) | set(s)), math.fsum(c.values()), math.fsum(s.values()), merges)


def compare_to_reference(counts: Mapping[str, float], reference: Mapping[str, float]) -> Comparison:
    """PSI of live ``counts`` against a reference's known shares (one sample: the reference has
    no sampling noise of its own). Sparse bins are pooled as ``compare`` pools two samples of
    equal size, the reference's shares standing for as many rows as ``counts`` holds, so a bin
    is merged when the live rows and the reference together expect fewer than MIN_EXPECTED
    there. ``stable_total`` of the result is that stand-in count; the test's sample size is
    ``canary_total``.

    Raises ValueError if ``counts`` has no rows or the reference no share."""
    n = math.fsum(v for v in _clean(counts).values())
    shares = _clean(reference)
    total_share = math.fsum(shares.values())
    if n <= 0 or total_share <= 0:
        raise ValueError("no observations")
    return compare(counts, {b: n * q / total_share for b, q in shares.items()})


def bound(le: str) -> float:
    """A histogram bucket's upper edge from its ``le`` label (+Inf, or anything unparsable, is inf)."""
    try:
        return float(le)
    except ValueError:
        return math.inf


def bucket_counts(cumulative: Mapping[str, float]) -> list[tuple[float, float]]:
    """(upper edge, count) per bucket, edges increasing, from cumulative ``le`` buckets."""
    return sorted((bound(le), k) for le, k in histogram_counts(cumulative).items())


def histogram_counts(cumulative: Mapping[str, float]) -> dict[str, float]:
    """Per-bucket counts from a Prometheus histogram's cumulative ``le`` buckets."""
    out: dict[str, float] = {}
    previous = 0.0
    for le in sorted(cumulative, key=bound):
        value = float(cumulative[le])
        out[le] = max(value - previous, 0.0)
        previous = max(value, previous)
    return out
