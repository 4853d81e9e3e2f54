"""Small statistics for accuracy figures: intervals, latency percentiles and the paired test of two runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (good at small n and near 0 or 1).

    >>> lo, hi = wilson_interval(80, 100)
    >>> round(lo, 3), round(hi, 3)
    (0.711, 0.867)
    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    """
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n], got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 or n successes the bound is exactly 0 or 1; floating point would leave a 1e-17 residue.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]; NaN for no values.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    >>> percentile([5.0], 95)
    5.0
    """
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b (old right, new wrong) and c (the reverse).

    Under "no change" each discordant item is a fair coin, so this is a binomial test of min(b, c) in b + c
    draws at p = 0.5 (testing the smaller count makes p(b, c) == p(c, b) exactly, not just up to rounding).

    >>> mcnemar_exact(0, 0)
    1.0
    >>> mcnemar_exact(4, 4)
    1.0
    >>> mcnemar_exact(5, 0), mcnemar_exact(0, 5)
    (0.0625, 0.0625)
    >>> round(mcnemar_exact(1, 9), 4)
    0.0215
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest  # scipy is heavy; only the diff needs it

    return float(min(1.0, binomtest(min(b, c), b + c, 0.5, alternative="two-sided").pvalue))


@dataclass(frozen=True)
class PairedTest:
    """Items both runs scored, compared one by one. For pass/fail outcomes this is the exact McNemar test;
    for graded outcomes (e.g. a per-item F1) it is the sign test, the same binomial test on "which run did better"."""

    shared: int
    """Items scored (non-null) in both runs."""
    old_better: int
    """b: items where the old run did better (for pass/fail: old right, new wrong)."""
    new_better: int
    """c: items where the new run did better."""
    old_mean: float
    """Old accuracy on the shared items (0..1)."""
    new_mean: float
    """New accuracy on the shared items (0..1)."""
    p_value: float
    """Two-sided exact p-value; 1 when no item changed."""

    @property
    def drop_points(self) -> float:
        """Accuracy lost on the shared items, in percentage points (negative for a gain)."""
        return (self.old_mean - self.new_mean) * 100

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "drop_points": self.drop_points}


def paired_test(pairs: Sequence[tuple[float, float]]) -> PairedTest | None:
    """The paired test of per-item outcomes (old, new), each 0..1 (True/False count as 1/0); None for no items.

    >>> test = paired_test([(True, False), (True, True), (0.5, 1.0)])
    >>> test.old_better, test.new_better, round(test.drop_points, 1)
    (1, 1, 16.7)
    """
    if not pairs:
        return None
    b = sum(old > new for old, new in pairs)
    c = sum(new > old for old, new in pairs)
    return PairedTest(
        shared=len(pairs),
        old_better=b,
        new_better=c,
        old_mean=sum(old for old, _ in pairs) / len(pairs),
        new_mean=sum(new for _, new in pairs) / len(pairs),
        p_value=mcnemar_exact(b, c),
    )
