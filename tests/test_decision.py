"""The decision math: monthly cost, break-even volume, who is eligible, the pick."""

from __future__ import annotations


import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from benchmarks.decision import HOURS_PER_MONTH, Candidate, Hosting, break_even, judge, pick

money = st.floats(0, 500, allow_nan=False)


def api(train=0.0, per_request=0.001, accuracy=0.8, items=None, model="api"):
    return Candidate("spider", model, accuracy, None, train, per_request_usd=per_request, items=items or {})


def hosted(train=0.0, hourly=0.09, capacity=3600.0, accuracy=0.8, items=None, model="hosted"):
    return Candidate("spider", model, accuracy, None, train, hosting=Hosting(hourly, capacity, 10.0, 2),
                     items=items or {})


def test_an_instance_is_a_fixed_monthly_cost_until_its_capacity():
    c = hosted(train=30.0, hourly=0.1, capacity=1000)
    month = 0.1 * HOURS_PER_MONTH
    assert c.monthly_usd(0, months=3) == pytest.approx(10 + month)
    assert c.monthly_usd(1000 * HOURS_PER_MONTH, months=3) == pytest.approx(10 + month)
    assert c.monthly_usd(1000 * HOURS_PER_MONTH + 1, months=3) == pytest.approx(10 + 2 * month)
    assert c.hosting.usd_per_1k == pytest.approx(0.1)
    assert api(train=30, per_request=0.002).monthly_usd(10_000, months=3) == pytest.approx(10 + 20)


def test_the_break_even_of_a_worked_example():
    # API: $0.002 per request, no training; instance: $73/month for up to 730K requests, $12 training over 12 months
    found = break_even(api(per_request=0.002), hosted(train=12.0, hourly=0.1, capacity=1000), months=12)
    assert found.start == pytest.approx((1 + 73) / 0.002) and found.end is None  # $1.46 of API per $0.1 instance-hour
    # an API at $0.00005 per request with $2,400 of training: self-hosting wins until 5 instances are needed
    dear_api = api(train=2400.0, per_request=0.00005)
    found = break_even(dear_api, hosted(hourly=0.1, capacity=1000), months=12)
    assert found.start == 0 and found.end == pytest.approx(5 * 1000 * HOURS_PER_MONTH)  # 200/month saved: 5 x $36.5


@settings(max_examples=300, deadline=None)
@given(t_api=money, t_host=money, price=st.floats(1e-6, 0.05), hourly=st.floats(0.01, 10),
       capacity=st.floats(10, 1e5), months=st.floats(1, 36))
def test_break_even_is_the_first_volume_where_self_hosting_is_no_dearer(t_api, t_host, price, hourly, capacity,
                                                                         months):
    a, h = api(train=t_api, per_request=price), hosted(train=t_host, hourly=hourly, capacity=capacity)
    found = break_even(a, h, months)
    per_month = capacity * HOURS_PER_MONTH
    probes = [per_month * f for f in (0, 0.3, 0.999, 1.001, 2.5, 7.2, 40, 333)]
    assume(all(abs(h.monthly_usd(x, months) - a.monthly_usd(x, months)) > 1e-9 for x in probes))
    if found is None:  # never: self-hosting is dearer at every volume probed, range ends included
        assert all(h.monthly_usd(x, months) > a.monthly_usd(x, months) for x in probes)
        return
    v = found.start
    at = v if h.hosting.instances(v) == h.hosting.instances(v * (1 + 1e-12) + 1e-9) else v * (1 + 1e-12) + 1e-9
    assert h.monthly_usd(at, months) <= a.monthly_usd(at, months) * (1 + 1e-9) + 1e-9
    assert all(h.monthly_usd(x, months) > a.monthly_usd(x, months) - 1e-9 for x in probes if x < v * (1 - 1e-9))
    if found.end is not None:  # past the end self-hosting never wins again
        assert all(h.monthly_usd(x, months) > a.monthly_usd(x, months) - 1e-9 for x in probes
                   if x > found.end * (1 + 1e-9))


def test_a_cheap_enough_api_never_breaks_even():
    assert break_even(api(per_request=1e-7), hosted(hourly=1.0, capacity=100), months=12) is None


def test_the_pick_changes_with_volume_and_skips_the_significantly_worse():
    items_good = {f"i{n}": n % 10 != 0 for n in range(100)}  # 90%
    items_bad = {f"i{n}": n % 2 == 0 for n in range(100)}  # 50%
    candidates = [api(per_request=0.002, accuracy=0.9, items=items_good, model="api"),
                  hosted(train=12.0, hourly=0.1, capacity=1000, accuracy=0.9, items=items_good, model="lora"),
                  hosted(hourly=0.01, capacity=1000, accuracy=0.5, items=items_bad, model="base")]
    judged = judge(candidates)
    assert [j.eligible for j in judged] == [True, True, False]
    assert "less accurate than api" in judged[2].why
    assert pick(judged, 1_000, months=12).candidate.model == "api"
    assert pick(judged, 1_000_000, months=12).candidate.model == "lora"


def test_an_unknown_accuracy_is_never_judged_and_a_pick_resting_on_it_says_so():
    judged = judge([api(accuracy=None, per_request=0.0001, model="gpt"), hosted(accuracy=0.3, model="lora")])
    assert judged[0].why.startswith("accuracy unknown")
    chosen = pick(judged, 1000, months=12)
    assert chosen.candidate.model == "gpt" and chosen.provisional and "unknown" in chosen.why
    strict = pick(judge([api(accuracy=None, model="gpt"), hosted(accuracy=0.3, model="lora")], admit_unknown=False),
                  1000, months=12)
    assert strict.candidate.model == "lora" and not strict.provisional


def test_unknown_costs_are_never_picked():
    chosen = pick(judge([hosted(train=None)]), 10, months=1)
    assert chosen.candidate is None and chosen.monthly_usd is None and "no eligible" in chosen.why
