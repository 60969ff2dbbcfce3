"""Plain statistics for scorecards: confidence intervals and two-sample tests.

No SciPy: the few distributions needed are computed here (normal via ``erfc``,
Student's t via the regularised incomplete beta function) and tested against
hand-computed values.
"""

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Interval:
    value: float | None
    low: float | None
    high: float | None
    n: int


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """Wilson score interval for a proportion; value None when n is 0."""
    if n <= 0:
        return Interval(None, None, None, 0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n)


def mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def sample_variance(values) -> float:
    values = list(values)
    n = len(values)
    if n < 2:
        return 0.0
    m = sum(values) / n
    return sum((v - m) ** 2 for v in values) / (n - 1)


def mean_interval(values, confidence: float = 0.95) -> Interval:
    """Mean with a Student-t confidence interval (low/high None with fewer than 2 values)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Interval(None, None, None, 0)
    m = sum(values) / n
    if n < 2:
        return Interval(m, None, None, 1)
    se = math.sqrt(sample_variance(values) / n)
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * se
    return Interval(m, m - half, m + half, n)


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def two_proportion_z(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float] | None:
    """Pooled two-proportion z-test: (z, two-sided p); None if undefined (empty or no variance)."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = (k1 / n1 - k2 / n2) / se
    return z, normal_two_sided_p(z)


def welch_t(a, b) -> tuple[float, float, float] | None:
    """Welch's unequal-variance t-test: (t, degrees of freedom, two-sided p); None if undefined."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = sample_variance(a) / len(a), sample_variance(b) / len(b)
    if va + vb == 0:
        return None
    t = (mean(a) - mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    return t, df, t_two_sided_p(t, df)


# --- Student's t distribution --------------------------------------------------------------


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for T ~ t(df): the regularised incomplete beta I_{df/(df+t²)}(df/2, 1/2)."""
    x = df / (df + t * t)
    return _betainc(df / 2, 0.5, x)


def t_quantile(prob: float, df: float) -> float:
    """The t(df) quantile for ``prob`` in (0.5, 1), by bisection on the CDF."""
    target = 2 * (1 - prob)  # two-sided tail mass
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > target:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if t_two_sided_p(mid, df) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) (Numerical Recipes' continued fraction)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log(1 - x))
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1 - math.exp(log_front) * _betacf(b, a, 1 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-14:
            break
    return h
