from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.record import summarize_metric
from benchmarks.stats import mcnemar_exact, paired_test, percentile, wilson_interval


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


# --- the paired test (McNemar exact; the sign test for graded outcomes) ---------------------------------------

counts = st.integers(min_value=0, max_value=400)
no_deadline = settings(deadline=None)  # the first example imports scipy: slow once, not a flaky test


@no_deadline
@given(counts, counts)
def test_mcnemar_is_symmetric(b, c):
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


@no_deadline
@given(counts, counts)
def test_mcnemar_is_a_probability(b, c):
    assert 0.0 <= mcnemar_exact(b, c) <= 1.0


@no_deadline
@given(counts)
def test_mcnemar_is_one_without_a_net_change(k):
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(k, k) == 1.0


@no_deadline
@given(counts, counts)
def test_mcnemar_never_rises_with_more_changes_in_the_leading_direction(b, c):
    low, high = min(b, c), max(b, c)
    assert mcnemar_exact(low, high + 1) <= mcnemar_exact(low, high)
    assert mcnemar_exact(high + 1, low) <= mcnemar_exact(high, low)


def test_mcnemar_rejects_negative_counts():
    with pytest.raises(ValueError, match="b=-1"):
        mcnemar_exact(-1, 3)


def test_graded_outcomes_use_the_sign_test():
    test = paired_test([(0.5, 0.25), (1.0, 0.5), (0.5, 0.5), (0.0, 1.0), (0.8, 0.2), (1, 0)])
    assert (test.shared, test.old_better, test.new_better) == (6, 4, 1)
    assert test.p_value == mcnemar_exact(4, 1)
