"""The statistics the gates are built on: distributions, one-sided tests and power (pure).

Standard library only (the operator image installs no scipy): ``math.lgamma`` and
``statistics.NormalDist``, the regularized incomplete beta and gamma functions by their usual
series and continued fractions, and from them

- the binomial upper tail and the one-sided Clopper–Pearson lower bound (errorRate's ``max``);
- Wilson's score interval and Newcombe's hybrid score interval for a difference of two
  proportions (errorRate's ``maxIncrease``);
- the noncentral chi-square distribution, exactly, as a Poisson mixture of central ones
  (predictionShift: ``n_eff · PSI`` is approximately noncentral chi-square);
- the sample sizes at which those tests reach a given power.

Nothing here knows about gates; tests/unit/test_analysis_stats.py checks every distribution
against ``scipy.stats`` on a grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from statistics import NormalDist

_NORMAL = NormalDist()
_TINY = 1e-300
_EPS = 1e-15
_MAX_ITERATIONS = 100_000
_WEIGHT_FLOOR = 1e-20  # Poisson weights below this add nothing a float CDF can show
# From this noncentrality on, the noncentral chi-square is Sankaran's approximation (within 1e-7
# there, checked against scipy) instead of the exact Poisson sum, whose length grows as its root.
SANKARAN_FROM = 1e5
MAX_N = 1e12  # no sample-size search looks beyond this many observations


def normal_quantile(p: float) -> float:
    """The standard normal's ``p`` quantile."""
    return _NORMAL.inv_cdf(p)


# --- incomplete beta: binomial tails and Clopper–Pearson ------------------------------------


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz), converging fast for x < (a+1)/(a+b+2)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITERATIONS):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            delta = c * d
            h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for x={x}, a={a}, b={b}")


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the beta(a, b) distribution's CDF at ``x`` (a, b > 0)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = a * math.log(x) + b * math.log1p(-x) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1.0 - x, b, a) / b


def beta_quantile(q: float, a: float, b: float) -> float:
    """The ``q`` quantile of beta(a, b), by bisection on I_x (monotone; 1e-12 in x)."""
    lo, hi = 0.0, 1.0
    while hi - lo > 1e-12 * max(lo, 1e-300) and hi - lo > 1e-300:
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if regularized_beta(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return regularized_beta(p, k, n - k + 1)


@lru_cache(maxsize=4096)
def clopper_pearson_lower(x: int, n: int, alpha: float) -> float:
    """The exact one-sided (1 - alpha) lower confidence bound of a binomial share from ``x``
    successes in ``n`` trials: the p at which P(X >= x) = alpha. It exceeds p0 exactly when
    the exact binomial test rejects p <= p0 at level alpha."""
    if x <= 0:
        return 0.0
    x = min(x, n)
    return beta_quantile(alpha, x, n - x + 1)


def binomial_exceeds(x: int, n: int, p0: float, alpha: float) -> bool:
    """The exact one-sided binomial test: do ``x`` of ``n`` show the true share is above ``p0``
    at level ``alpha``? (Equivalently: the Clopper–Pearson lower bound exceeds p0.)"""
    return binomial_sf(x, n, p0) < alpha


def _binomial_critical(n: int, p0: float, alpha: float) -> int:
    """The smallest count the exact test rejects ``p <= p0`` at, among ``n`` trials (n + 1: none)."""
    lo, hi = 0, n + 1  # binomial_sf(k) decreases in k; sf(n + 1) = 0 < alpha
    while lo < hi:
        mid = (lo + hi) // 2
        if binomial_sf(mid, n, p0) < alpha:
            hi = mid
        else:
            lo = mid + 1
    return lo


def binomial_power(n: int, p0: float, p1: float, alpha: float) -> float:
    """The exact test's chance of rejecting ``p <= p0`` at level alpha when the share is ``p1``."""
    return binomial_sf(_binomial_critical(n, p0, alpha), n, p1)


def _smallest(ok: Callable[[float], bool], start: float) -> float | None:
    """The smallest x >= 1 with ok(x), for ok false then true as x grows (None: not by MAX_N);
    to within 1 (the result satisfies ok)."""
    lo, hi = 0.0, max(start, 1.0)
    while not ok(hi):
        lo, hi = hi, hi * 2.0
        if hi > MAX_N:
            return None
    while hi - lo > 1.0:
        mid = math.floor((lo + hi) / 2.0)
        if mid <= lo:
            break
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


@lru_cache(maxsize=256)
def binomial_min_n(p0: float, p1: float, alpha: float, power: float) -> int | None:
    """The fewest trials at which the exact one-sided binomial test of ``p <= p0`` at level alpha
    catches a true share ``p1`` (> p0) with at least ``power``, and keeps doing so at the next
    few sizes: exact power saw-tooths with n, so a size is taken only once the next
    ``max(10, n/20)`` sizes (at most 200, which bounds the time on huge sizes, where the teeth
    are small) reach the power too. None if p1 <= p0 or no size up to 1e12 does."""
    if not 0.0 <= p0 < p1 <= 1.0:
        return None
    z_a, z_b = normal_quantile(1.0 - alpha), normal_quantile(power)
    guess = ((z_a * math.sqrt(p0 * (1 - p0)) + z_b * math.sqrt(p1 * (1 - p1))) / (p1 - p0)) ** 2
    found = _smallest(lambda n: binomial_power(int(n), p0, p1, alpha) >= power, 0.5 * guess)
    if found is None:
        return None
    n = int(found)
    # walk down while smaller sizes still qualify (bisection assumed monotone), then make sure
    # the sizes just above hold too
    while n > 1 and binomial_power(n - 1, p0, p1, alpha) >= power:
        n -= 1
    while True:
        ahead = min(max(10, n // 20), 200)
        bad = [m for m in range(n + 1, n + ahead + 1) if binomial_power(m, p0, p1, alpha) < power]
        if not bad:
            return n
        n = bad[-1] + 1


# --- Wilson and Newcombe: a difference of two shares ----------------------------------------


def wilson_interval(x: float, n: float, z: float) -> tuple[float, float]:
    """Wilson's score interval for a share from ``x`` of ``n`` (n > 0), at normal quantile ``z``."""
    p = x / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denominator
    half = z * math.sqrt(max(p * (1.0 - p), 0.0) / n + z * z / (4.0 * n * n)) / denominator
    return max(centre - half, 0.0), min(centre + half, 1.0)


def newcombe_lower(x1: float, n1: float, x2: float, n2: float, alpha: float) -> float:
    """The one-sided (1 - alpha) lower confidence bound of p1 - p2 by Newcombe's hybrid score
    method (his method 10: each share's Wilson bound, combined in quadrature)."""
    z = normal_quantile(1.0 - alpha)
    p1, p2 = x1 / n1, x2 / n2
    lower1, _ = wilson_interval(x1, n1, z)
    _, upper2 = wilson_interval(x2, n2, z)
    return (p1 - p2) - math.sqrt((p1 - lower1) ** 2 + (upper2 - p2) ** 2)


def newcombe_min_n(p2: float, n2: float, margin: float, increase: float, alpha: float, power: float) -> int | None:
    """The fewest trials n1 at which the test "Newcombe's lower bound of p1 - p2 exceeds
    ``margin``" catches a true difference ``increase`` (> margin) with ``power``, the other side
    having ``n2`` trials at share ``p2``. Normal approximation: the estimated difference is
    normal around ``increase`` and the interval's half-width is taken at the expected counts,
    so power = Phi((increase - margin - halfwidth) / sd). None: no n1 up to 1e12 does (the
    other side's own uncertainty is too large) or the shares leave [0, 1]."""
    p1 = p2 + increase
    if not (increase > margin and p2 >= 0.0 and p1 <= 1.0 and n2 > 0):
        return None
    z_b = normal_quantile(power)

    def ok(n1: float) -> bool:
        lower = newcombe_lower(p1 * n1, n1, p2 * n2, n2, alpha)  # = increase - halfwidth
        sd = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
        return lower - margin >= z_b * sd

    found = _smallest(ok, 16.0)
    return None if found is None else int(found)


# --- incomplete gamma: chi-square, central and noncentral ------------------------------------


def regularized_gamma(a: float, x: float) -> float:
    """P(a, x), the gamma(a) distribution's CDF at ``x`` (a > 0): the series below a + 1, the
    continued fraction (modified Lentz) above."""
    if x <= 0.0:
        return 0.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(_MAX_ITERATIONS):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * _EPS:
                return min(total * math.exp(log_front), 1.0)
        raise ArithmeticError(f"incomplete gamma series did not converge for a={a}, x={x}")
    b = x + 1.0 - a
    c, d = 1.0 / _TINY, 1.0 / b
    h = d
    for i in range(1, _MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = b + an / c
        c = c if abs(c) > _TINY else _TINY
        delta = c * d
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return max(1.0 - math.exp(log_front) * h, 0.0)
    raise ArithmeticError(f"incomplete gamma fraction did not converge for a={a}, x={x}")


def chi2_cdf(x: float, df: float) -> float:
    return regularized_gamma(df / 2.0, x / 2.0)


def ncx2_cdf(x: float, df: float, nc: float) -> float:
    """The noncentral chi-square CDF with ``df`` degrees of freedom and noncentrality ``nc``,
    exactly: sum over j of Poisson(j; nc/2) · P(df/2 + j, x/2), from the Poisson mode outwards
    (P by recurrence: P(a+1, y) = P(a, y) - y^a e^-y / Gamma(a+1)) until the weights vanish.
    From ``SANKARAN_FROM`` on (where the sum grows long), Sankaran's approximation."""
    if x <= 0.0:
        return 0.0
    if nc <= 0.0:
        return chi2_cdf(x, df)
    if nc >= SANKARAN_FROM:
        return _sankaran_cdf(x, df, nc)
    mu, y = nc / 2.0, x / 2.0
    j0 = math.floor(mu)
    a0 = df / 2.0 + j0
    weight0 = math.exp(-mu + j0 * math.log(mu) - math.lgamma(j0 + 1.0)) if j0 > 0 else math.exp(-mu)
    p0 = regularized_gamma(a0, y)
    term0 = math.exp(a0 * math.log(y) - y - math.lgamma(a0 + 1.0))  # y^a e^-y / Gamma(a+1)
    total = weight0 * p0
    # upwards: j0+1, j0+2, ... (a grows by 1 a step)
    weight, p, term, a, j = weight0, p0, term0, a0, j0
    while True:
        j += 1
        weight *= mu / j
        p = max(p - term, 0.0)
        a += 1.0
        term *= y / a
        total += weight * p
        if j > mu and (p == 0.0 or weight < _WEIGHT_FLOOR):
            break
    # downwards: j0-1, ..., 0
    weight, p, term, a, j = weight0, p0, term0, a0, j0
    while j > 0:
        weight *= j / mu
        term *= a / y  # now y^(a-1) e^-y / Gamma(a)
        a -= 1.0
        p = min(p + term, 1.0)
        j -= 1
        total += weight * p
        if weight < _WEIGHT_FLOOR:
            break
    return min(total, 1.0)


def _sankaran(df: float, nc: float) -> tuple[float, float, float, float]:
    """(df + nc, h, mean, sd): (X / (df + nc))^h is about normal(mean, sd)."""
    s1, s2, s3 = df + nc, df + 2.0 * nc, df + 3.0 * nc
    h = 1.0 - 2.0 / 3.0 * s1 * s3 / (s2 * s2)
    p = s2 / (s1 * s1)
    m = (h - 1.0) * (1.0 - 3.0 * h)
    mean = 1.0 + h * p * (h - 1.0 - 0.5 * (2.0 - h) * m * p)
    sd = h * math.sqrt(2.0 * p * (1.0 + 0.5 * m * p))
    return s1, h, mean, sd


def sankaran_quantile(q: float, df: float, nc: float) -> float:
    """Sankaran's (1963) normal approximation to the noncentral chi-square ``q`` quantile:
    the starting point of ``ncx2_quantile``, and its answer from ``SANKARAN_FROM`` on (where
    it is within 1e-7 of the exact quantile)."""
    s1, h, mean, sd = _sankaran(df, nc)
    base: float = max(mean + sd * normal_quantile(q), 1e-12)
    return s1 * math.pow(base, 1.0 / h)


def _sankaran_cdf(x: float, df: float, nc: float) -> float:
    s1, h, mean, sd = _sankaran(df, nc)
    return _NORMAL.cdf((math.pow(x / s1, h) - mean) / sd)


@lru_cache(maxsize=4096)
def ncx2_quantile(q: float, df: float, nc: float) -> float:
    """The noncentral chi-square ``q`` quantile (0 < q < 1): Sankaran's approximation to start,
    then a bracketed secant (Illinois) on the exact CDF to a relative 1e-10."""
    guess = sankaran_quantile(q, df, nc)
    if nc >= SANKARAN_FROM:
        return guess
    step = min(0.1 * guess, 0.25 * math.sqrt(2.0 * (df + 2.0 * nc)))  # a quarter of a standard deviation
    lo, hi = max(guess - step, 0.0), guess + step
    f_lo, f_hi = ncx2_cdf(lo, df, nc) - q, ncx2_cdf(hi, df, nc) - q
    while f_lo > 0.0:
        step *= 2.0
        hi, f_hi = lo, f_lo
        lo = max(lo - step, 0.0)
        f_lo = ncx2_cdf(lo, df, nc) - q
    while f_hi < 0.0:
        step *= 2.0
        lo, f_lo = hi, f_hi
        hi += step
        f_hi = ncx2_cdf(hi, df, nc) - q
    side = 0
    x = hi
    for _ in range(200):
        previous = x
        x = (lo * f_hi - hi * f_lo) / (f_hi - f_lo) if f_hi != f_lo else 0.5 * (lo + hi)
        if not lo < x < hi:
            x = 0.5 * (lo + hi)
        f_x = ncx2_cdf(x, df, nc) - q
        if f_x == 0.0 or hi - lo < 1e-10 * x or abs(x - previous) < 1e-11 * x:
            return x
        if f_x < 0.0:
            lo, f_lo = x, f_x
            if side == -1:
                f_hi /= 2.0
            side = -1
        else:
            hi, f_hi = x, f_x
            if side == 1:
                f_lo /= 2.0
            side = 1
    return x


# --- the PSI test ---------------------------------------------------------------------------


def effective_n(n1: float, n2: float) -> float:
    """n1·n2 / (n1 + n2): the size of the one sample that measures as precisely as two."""
    return n1 * n2 / (n1 + n2) if n1 > 0 and n2 > 0 else 0.0


def psi_critical(bins: int, n_eff: float, max_psi: float, alpha: float) -> float:
    """The PSI above which the observed PSI shows the true one exceeds ``max_psi`` at level
    alpha: n_eff · PSI is about noncentral chi-square with bins - 1 degrees of freedom and
    noncentrality n_eff · PSI_true, so this is its (1 - alpha) quantile at PSI_true = max_psi,
    divided by n_eff."""
    return ncx2_quantile(1.0 - alpha, max(bins - 1, 1), n_eff * max_psi) / n_eff


def psi_power(bins: int, n_eff: float, max_psi: float, detect: float, alpha: float) -> float:
    """The PSI test's chance of failing a canary whose true PSI is ``detect``."""
    df = max(bins - 1, 1)
    return 1.0 - ncx2_cdf(psi_critical(bins, n_eff, max_psi, alpha) * n_eff, df, n_eff * detect)


@lru_cache(maxsize=256)
def psi_min_n_eff(bins: int, max_psi: float, detect: float, alpha: float, power: float) -> int | None:
    """The smallest effective sample size n_eff at which the PSI test catches a true PSI of
    ``detect`` (> max_psi) with ``power``. None if detect <= max_psi."""
    if not detect > max_psi >= 0.0:
        return None
    z_a, z_b = normal_quantile(1.0 - alpha), normal_quantile(power)
    guess = ((z_a + z_b) ** 2 * 4.0 * detect) / (detect - max_psi) ** 2  # the normal limit
    found = _smallest(lambda n: psi_power(bins, n, max_psi, detect, alpha) >= power, 0.25 * guess)
    return None if found is None else int(found)


# --- a mean bounded from a histogram: predictionAgreement for regressors --------------------


def mean_lower_bound(total: float, count: float, buckets: Sequence[tuple[float, float]], alpha: float) -> float:
    """A one-sided (1 - alpha) lower confidence bound of the mean of non-negative values known
    only by their sum, their count and a histogram (``(upper edge, count)`` per bucket, edges
    increasing, the last may be ``inf``): the normal approximation ``mean - z·s/√n``, with the
    sample variance taken at the largest the histogram and the sum allow (every value at its
    bucket's lower edge, then the sum left over raising values to their upper edges, the
    highest buckets first; past the last finite edge one value takes all that is left), so the
    bound errs low, towards passing. Asymptotic: heavy tails need many pairs."""
    n = count
    if n < 2:
        return 0.0
    mean = total / n
    rows, previous = [], 0.0  # (lower edge, upper edge, count)
    for edge, k in buckets:
        if k > 0:
            rows.append((previous, edge, k))
        if math.isfinite(edge):
            previous = edge
    left = total - sum(lo * k for lo, _, k in rows)
    squares = 0.0
    for lo, hi, k in sorted(rows, key=lambda r: r[0] + r[1], reverse=True):
        if not math.isfinite(hi):  # all the rest on one value: the most uneven split
            squares += (k - 1) * lo * lo + (lo + max(left, 0.0)) ** 2
            left = 0.0
            continue
        whole = min(k, math.floor(max(left, 0.0) / (hi - lo))) if hi > lo else 0
        squares += whole * hi * hi
        left -= whole * (hi - lo)
        if whole < k:  # one value partly raised, the others at the lower edge
            part = min(max(left, 0.0), hi - lo)
            squares += (lo + part) ** 2 + (k - whole - 1) * lo * lo
            left -= part
    variance = max(squares - n * mean * mean, 0.0) / (n - 1)
    return max(mean - normal_quantile(1.0 - alpha) * math.sqrt(variance / n), 0.0)
