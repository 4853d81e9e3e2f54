from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from benchmarks.record import summarize_metric
from benchmarks.stats import percentile, wilson_interval


@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_the_estimate_and_stays_in_bounds(kn):
    k, n = kn
    lo, hi = wilson_interval(k, n)
    assert 0 <= lo <= k / n <= hi <= 1


@given(st.integers(1, 2000))
def test_wilson_narrows_with_more_data(n):
    lo1, hi1 = wilson_interval(n // 2, n)
    lo2, hi2 = wilson_interval(2 * (n // 2), 2 * n)
    assert hi2 - lo2 < hi1 - lo1


def test_wilson_matches_the_seed_note():
    lo, hi = wilson_interval(round(0.8 * 568), 568)  # SEED.md: about +/-3.3 points at 80%, n=568
    assert math.isclose((hi - lo) / 2, 0.033, abs_tol=0.002)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1), st.floats(0, 100))
def test_percentile_within_range(values, q):
    assert min(values) <= percentile(values, q) <= max(values)


@given(st.lists(st.one_of(st.booleans(), st.none())))
def test_summary_counts_only_scored_items(values):
    summary = summarize_metric(values)
    scored = [v for v in values if v is not None]
    assert summary["n"] == len(scored)
    if scored:
        assert summary["value"] == sum(scored) / len(scored)
        assert summary["ci95"][0] <= summary["value"] <= summary["ci95"][1]
