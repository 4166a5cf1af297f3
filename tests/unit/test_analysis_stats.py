"""The statistics behind errorRate and predictionShift (analysis/stats.py): every distribution
against scipy.stats on a grid, the intervals against published values, the sample-size
searches against their own definitions, and seeded simulations of the real gate
(``evaluate_gate``): a canary identical to stable rarely fails, one at the threshold fails
about ``significance`` of the time, and one with the ``detect`` effect is caught at the derived
sample size with the promised power.

The simulation scenarios (also quoted in docs/analysis.md, with the rates they measure):

- errorRate with max: stable and the good canary at 0.5 % 5xx, ``max: 0.01``,
  ``detect: 0.05``, significance 0.01; each window has exactly the derived number of canary
  requests (312).
- errorRate with maxIncrease: stable at 0.5 % 5xx over 2000 requests a window,
  ``maxIncrease: 0.01``, a bad canary at 4.5 % (an increase of 0.04), significance 0.01;
  ``minSamples`` set to the size ``detect: 0.04`` derives at the true stable share (790).
- predictionShift: four classes, stable at 40/30/20/10 %, ``maxPSI: 0.2``, ``detect: 0.5``,
  significance 0.01, canary and stable 552 predictions each (the derived effective n 276, at a
  50/50 split); the bad canary moves its shares towards the rarest class until the true PSI is
  0.5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from modelroll.analysis import stats
from modelroll.analysis.gates import DESIGN_POWER, FAIL, INCONCLUSIVE, PASS, POWER, GateData, evaluate_gate
from modelroll.analysis.psi import evaluate_psi
from modelroll.spec import Gate
from scipy import special
from scipy import stats as scipy_stats

WINDOWS = 1000
ALPHA = 0.01

# --- the distributions against scipy ----------------------------------------------------------

SHAPES = [0.5, 1, 2, 5, 10, 50, 200, 1e3, 1e4, 1e5]
POINTS = [1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999999]


def test_regularized_beta_is_scipys():
    worst = max(
        abs(stats.regularized_beta(x, a, b) - special.betainc(a, b, x)) for a in SHAPES for b in SHAPES for x in POINTS
    )
    assert worst < 1e-9, worst


def test_beta_quantile_is_scipys():
    worst = max(
        abs(stats.beta_quantile(q, a, b) / scipy_stats.beta.ppf(q, a, b) - 1)
        for a in [1, 2, 5, 30, 400, 5000]
        for b in [1, 3, 50, 1000, 1e5]
        for q in [0.001, 0.01, 0.05, 0.5, 0.95, 0.99]
    )
    assert worst < 1e-9, worst


@pytest.mark.parametrize("n", [1, 7, 100, 312, 5000, 200_000])
def test_binomial_tail_and_clopper_pearson_are_scipys(n):
    for p in [1e-4, 0.005, 0.01, 0.05, 0.3, 0.9]:
        for k in sorted({0, 1, 2, n // 100, n // 10, n // 2, n, n + 1}):
            assert stats.binomial_sf(k, n, p) == pytest.approx(scipy_stats.binom.sf(k - 1, n, p), rel=1e-9, abs=1e-13)
    for x in sorted({0, 1, min(3, n), n // 20, n // 2, n}):
        for alpha in [0.001, 0.01, 0.1]:
            want = 0.0 if x == 0 else scipy_stats.beta.ppf(alpha, x, n - x + 1)
            assert stats.clopper_pearson_lower(x, n, alpha) == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_regularized_gamma_and_chi_square_are_scipys():
    worst = max(
        abs(stats.regularized_gamma(a, x) - special.gammainc(a, x))
        for a in [0.5, 1, 2, 5, 10, 50, 200, 1e3, 1e4, 1e5, 1e6]
        for x in [1e-3, 0.1, 0.5, 1, 2, 5, 10, 50, 100, 500, 1e3, 1e4, 1e5, 1e6]
    )
    assert worst < 1e-9, worst
    assert stats.chi2_cdf(11.34, 3) == pytest.approx(scipy_stats.chi2.cdf(11.34, 3), abs=1e-12)


NONCENTRAL = [(df, nc) for df in [1, 2, 3, 9, 30, 100] for nc in [0.0, 0.1, 1, 5, 20, 100, 1e3, 1e4]]
NONCENTRAL += [(1, 9e4), (30, 9e4)]  # just below SANKARAN_FROM, where the exact sum is longest


@pytest.mark.parametrize(("df", "nc"), NONCENTRAL)
def test_noncentral_chi_square_is_scipys(df, nc):
    for q in [0.5, 0.9, 0.95, 0.99, 0.995, 0.999]:
        want = scipy_stats.ncx2.ppf(q, df, nc) if nc else scipy_stats.chi2.ppf(q, df)
        assert stats.ncx2_quantile(q, df, nc) == pytest.approx(want, rel=1e-8), q
        for x in [0.5 * want, want, 1.3 * want]:
            got = stats.ncx2_cdf(x, df, nc)
            assert got == pytest.approx(
                scipy_stats.ncx2.cdf(x, df, nc) if nc else scipy_stats.chi2.cdf(x, df), abs=2e-9
            )


@pytest.mark.parametrize("df", [1, 3, 30, 100])
def test_sankaran_takes_over_where_it_is_as_good(df):
    """From a noncentrality of SANKARAN_FROM on, Sankaran's approximation replaces the exact sum."""
    for nc in [stats.SANKARAN_FROM, 1e6, 1e7, 1e9]:
        for q in [0.5, 0.9, 0.99, 0.999]:
            want = scipy_stats.ncx2.ppf(q, df, nc)
            assert stats.ncx2_quantile(q, df, nc) == pytest.approx(want, rel=1e-7)
            for x in [0.99 * want, want, 1.01 * want]:
                assert stats.ncx2_cdf(x, df, nc) == pytest.approx(scipy_stats.ncx2.cdf(x, df, nc), abs=1e-6)
    # below it, where the exact sum is used, Sankaran is off by several % at 1 degree of freedom
    assert abs(stats.sankaran_quantile(0.9, 1, 1.0) / scipy_stats.ncx2.ppf(0.9, 1, 1.0) - 1) > 0.01


# --- the intervals against published values ----------------------------------------------------

# Newcombe (1998), Statistics in Medicine 17:873-890, table II, method 10: the two-sided 95 %
# interval for p1 - p2, i.e. one-sided bounds at alpha 0.025.
NEWCOMBE = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0)),
    ((10, 10, 0, 10), (0.6075, 1.0)),
]


@pytest.mark.parametrize(("counts", "interval"), NEWCOMBE)
def test_newcombe_hybrid_score_interval_matches_the_paper(counts, interval):
    x1, n1, x2, n2 = counts
    lower = stats.newcombe_lower(x1, n1, x2, n2, 0.025)
    upper = -stats.newcombe_lower(x2, n2, x1, n1, 0.025)
    assert (round(lower, 4), round(upper, 4)) == interval


def test_wilson_bounds_solve_the_score_equation():
    z = stats.normal_quantile(0.99)
    for x, n in [(0, 50), (3, 50), (25, 50), (50, 50), (7, 1000)]:
        for bound in stats.wilson_interval(x, n, z):
            if 0 < bound < 1:
                assert abs(x / n - bound) == pytest.approx(z * math.sqrt(bound * (1 - bound) / n), rel=1e-9)


def test_normal_quantile_is_scipys():
    for p in [1e-6, 0.001, 0.05, 0.5, 0.95, 0.999]:
        assert stats.normal_quantile(p) == pytest.approx(scipy_stats.norm.ppf(p), rel=1e-12)


# --- sample sizes: each the smallest that reaches its power ------------------------------------


@pytest.mark.parametrize(("p0", "p1"), [(0.01, 0.05), (0.001, 0.005), (0.05, 0.1), (0.0, 0.02)])
def test_binomial_min_n_is_the_smallest_size_with_the_power(p0, p1):
    n = stats.binomial_min_n(p0, p1, ALPHA, POWER)
    assert n is not None

    def power(m):  # scipy's exact power of the same test
        critical = next(k for k in range(m + 2) if scipy_stats.binom.sf(k - 1, m, p0) < ALPHA)
        return scipy_stats.binom.sf(critical - 1, m, p1)

    assert power(n) >= POWER and power(n - 1) < POWER
    assert all(power(m) >= POWER for m in range(n, n + max(10, n // 20) + 1))  # and the sizes just above
    assert stats.binomial_power(n, p0, p1, ALPHA) == pytest.approx(power(n), abs=1e-9)
    assert stats.binomial_min_n(p1, p0, ALPHA, POWER) is None  # nothing to catch below the threshold


def test_psi_min_n_eff_is_the_smallest_size_with_the_power():
    for bins, max_psi, detect in [(2, 0.1, 0.3), (4, 0.2, 0.5), (10, 0.25, 0.4)]:
        n = stats.psi_min_n_eff(bins, max_psi, detect, ALPHA, POWER)
        assert n is not None

        def power(m, bins=bins, max_psi=max_psi, detect=detect):
            critical = scipy_stats.ncx2.ppf(1 - ALPHA, bins - 1, m * max_psi)
            return scipy_stats.ncx2.sf(critical, bins - 1, m * detect)

        assert power(n) >= POWER > power(n - 1)
    assert stats.psi_min_n_eff(4, 0.2, 0.2, ALPHA, POWER) is None


def test_newcombe_min_n_is_the_smallest_size_with_the_power():
    n = stats.newcombe_min_n(0.005, 2000, 0.01, 0.04, ALPHA, POWER)
    assert n is not None

    def approximate_power(m):
        lower = stats.newcombe_lower(0.045 * m, m, 0.005 * 2000, 2000, ALPHA)
        sd = math.sqrt(0.045 * 0.955 / m + 0.005 * 0.995 / 2000)
        return scipy_stats.norm.cdf((lower - 0.01) / sd)

    assert approximate_power(n) >= POWER > approximate_power(n - 1)
    # with too little stable traffic no canary size makes up for it
    assert stats.newcombe_min_n(0.005, 5, 0.01, 0.04, ALPHA, POWER) is None


# --- seeded simulations of the gate -------------------------------------------------------------


def fail_rate(gate: Gate, windows: list[GateData], min_samples: int = 0) -> float:
    verdicts = [evaluate_gate(gate, data, min_samples, ALPHA).verdict for data in windows]
    assert INCONCLUSIVE not in verdicts, "every window has the documented sample size"
    return verdicts.count(FAIL) / len(verdicts)


def test_error_rate_max_simulated():
    gate = Gate("errorRate", builtin="errorRate", max=0.01, detect=0.05)
    n = stats.binomial_min_n(0.01, 0.05, ALPHA, DESIGN_POWER)
    assert n == 312  # the scenario in the module docstring and docs/analysis.md
    rng = np.random.default_rng(20261122)

    def windows(share: float) -> list[GateData]:
        return [GateData(samples=n, errors=int(x)) for x in rng.binomial(n, share, WINDOWS)]

    assert fail_rate(gate, windows(0.005)) <= 0.01  # identical to stable
    assert fail_rate(gate, windows(0.01)) <= ALPHA  # at the threshold: the exact test never exceeds it
    assert fail_rate(gate, windows(0.05)) >= 0.95  # the detect effect
    assert evaluate_gate(gate, GateData(samples=n - 1, errors=0), 0, ALPHA).verdict == INCONCLUSIVE


def test_error_rate_max_increase_simulated():
    stable_n, stable_share = 2000, 0.005
    n = stats.newcombe_min_n(stable_share, stable_n, 0.01, 0.04, ALPHA, DESIGN_POWER)
    assert n == 790
    gate = Gate("errorRate", builtin="errorRate", max_increase=0.01)
    rng = np.random.default_rng(7)

    def windows(share: float) -> list[GateData]:
        canary = rng.binomial(n, share, WINDOWS)
        stable = rng.binomial(stable_n, stable_share, WINDOWS)
        return [
            GateData(samples=n, errors=int(c), stable_samples=stable_n, stable_errors=int(s))
            for c, s in zip(canary, stable, strict=True)
        ]

    assert fail_rate(gate, windows(stable_share), n) <= 0.01  # identical to stable
    assert fail_rate(gate, windows(stable_share + 0.01), n) <= 2 * ALPHA  # at the threshold
    assert fail_rate(gate, windows(stable_share + 0.04), n) >= 0.95  # the detect effect
    # the same size is what detect derives from this stable window
    detect = Gate("errorRate", builtin="errorRate", max_increase=0.01, detect=0.04)
    short = GateData(samples=n - 1, errors=0, stable_samples=stable_n, stable_errors=stable_n * stable_share)
    assert f"need {n} canary requests" in evaluate_gate(detect, short, 0, ALPHA).message
    enough = GateData(samples=n, errors=0, stable_samples=stable_n, stable_errors=stable_n * stable_share)
    assert evaluate_gate(detect, enough, 0, ALPHA).verdict == PASS


STABLE_CLASSES = np.array([0.4, 0.3, 0.2, 0.1])


def shares_at_psi(target: float) -> np.ndarray:
    """Canary shares moved from stable's towards the rarest class until the PSI is ``target``."""
    towards = np.array([0.05, 0.1, 0.25, 0.6])

    def psi(t: float) -> float:
        shares = (1 - t) * STABLE_CLASSES + t * towards
        return evaluate_psi(dict(enumerate(shares)), dict(enumerate(STABLE_CLASSES)))

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if psi(mid) < target else (lo, mid)
    return (1 - lo) * STABLE_CLASSES + lo * towards


def test_prediction_shift_simulated():
    gate = Gate("predictionShift", builtin="predictionShift", max_psi=0.2, detect=0.5)
    n_eff = stats.psi_min_n_eff(4, 0.2, 0.5, ALPHA, DESIGN_POWER)
    assert n_eff == 276
    n = 2 * n_eff  # canary and stable alike: n·n / (n + n) = n_eff
    rng = np.random.default_rng(11)

    def windows(shares: np.ndarray) -> list[GateData]:
        canary = rng.multinomial(n, shares, WINDOWS)
        stable = rng.multinomial(n, STABLE_CLASSES, WINDOWS)
        return [
            GateData(
                samples=n,
                canary_classes={str(i): float(x) for i, x in enumerate(c)},
                stable_classes={str(i): float(x) for i, x in enumerate(s)},
            )
            for c, s in zip(canary, stable, strict=True)
        ]

    assert fail_rate(gate, windows(STABLE_CLASSES)) <= 0.01  # identical to stable
    assert fail_rate(gate, windows(shares_at_psi(0.2))) <= 2 * ALPHA  # at the threshold
    assert fail_rate(gate, windows(shares_at_psi(0.5))) >= 0.95  # the detect effect
    one_short = windows(STABLE_CLASSES)[0]
    one_short = GateData(
        samples=n,
        canary_classes={k: v * (n - 1) / n for k, v in one_short.canary_classes.items()},
        stable_classes=one_short.stable_classes,
    )
    assert evaluate_gate(gate, one_short, 0, ALPHA).verdict == INCONCLUSIVE


def test_prediction_shift_with_sparse_classes_simulated():
    """Eleven classes, ten of them rare (1 % each), 60 predictions a side: a stray prediction
    or two in a rare class would, with PSI's epsilon, look like a large shift; pooled with the
    other sparse bins they do not. (Without the pooling an identical canary failed 15 % of
    these windows at maxPSI 0.1, 4 % at 0.2.)"""
    shares = np.array([0.9] + [0.01] * 10)
    gate = Gate("predictionShift", builtin="predictionShift", max_psi=0.1)
    rng = np.random.default_rng(5)
    canary, stable = rng.multinomial(60, shares, WINDOWS), rng.multinomial(60, shares, WINDOWS)
    windows = [
        GateData(
            samples=60,
            canary_classes={str(i): float(x) for i, x in enumerate(c)},
            stable_classes={str(i): float(x) for i, x in enumerate(s)},
        )
        for c, s in zip(canary, stable, strict=True)
    ]
    assert fail_rate(gate, windows) <= 0.01
