"""Price arithmetic: the seed's own inputs reproduce its training-cost table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.errors import ConfigError, UnknownNameError
from models.pricing import hardware_cost, load_prices, token_cost


@pytest.mark.parametrize("hours, expected", [(7, 3.32), (9, 4.27)])
def test_the_seeds_a40_jobs_cost_what_it_reported(hours, expected):
    prices = load_prices()
    assert round(hardware_cost(hours * 3600, prices.hourly_rate("a40")), 2) == expected


def test_the_seeds_viggo_job_trained_tokens_at_2023_prices():
    assert round(token_cost(2_150_968, load_prices().token_prices("gpt-3.5-turbo")["training"]), 2) == 17.21


@given(st.floats(0, 1e7), st.floats(0, 100), st.floats(0, 1e7))
def test_hardware_cost_is_linear_and_non_negative(a, rate, b):
    assert hardware_cost(a, rate) >= 0
    assert hardware_cost(a + b, rate) == pytest.approx(hardware_cost(a, rate) + hardware_cost(b, rate))


def test_unknown_gpu_falls_back_to_the_gpu_rate_and_unknown_model_lists_choices():
    prices = load_prices()
    assert prices.hourly_rate("rtx-9090") == prices.hardware["gpu"]
    with pytest.raises(UnknownNameError, match="gpt-4o-mini"):
        prices.token_prices("gpt-5-ft")


def test_a_broken_price_file_names_itself(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_text("[hardware]\ncpu = 0.1\n")
    with pytest.raises(ConfigError, match=r"lacks \['date'\]"):
        load_prices(path)
