"""Price table and arithmetic: the seed's own inputs reproduce its training-cost table; base and fine-tuned models,
GPUs by exact key, budget messages with enough digits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.errors import BudgetError, ConfigError, UnknownNameError
from models.finetune.openai_plan import Budget
from models.money import DEFAULT_MAX_COST_USD
from models.pricing import DEFAULT_PRICE_FILE, Hardware, hardware_cost, load_prices, token_cost

SEED_TABLE = DEFAULT_PRICE_FILE.with_name("prices-2023-seed.toml")


@pytest.mark.parametrize("hours, expected", [(7, 3.32), (9, 4.27)])
def test_the_seeds_a40_jobs_cost_what_it_reported(hours, expected):
    prices = load_prices()
    assert round(hardware_cost(hours * 3600, prices.hourly_rate("a40")), 2) == expected


def test_the_seeds_viggo_job_trained_tokens_at_2023_prices():
    prices = load_prices()
    assert round(token_cost(2_150_968, prices.token_prices("gpt-3.5-turbo", finetuned=True)["training"]), 2) == 17.21


def test_the_seeds_2023_table_keeps_its_inference_prices():
    seed = load_prices(SEED_TABLE)
    assert seed.date == "2023-08-22"
    assert seed.token_prices("gpt-3.5-turbo", finetuned=True) == {"training": 8.0, "input": 12.0, "output": 16.0}


@pytest.mark.parametrize("family, base, finetuned", [
    ("gpt-3.5-turbo", (0.50, 1.50), (8.00, 3.00, 6.00)),
    ("gpt-4o-mini", (0.15, 0.60), (3.00, 0.30, 1.20)),
    ("gpt-4.1-nano", (0.10, 0.40), (1.50, 0.20, 0.80)),
])
def test_base_and_finetuned_models_have_their_own_prices(family, base, finetuned):
    prices = load_prices()
    assert prices.token_prices(family, finetuned=False) == dict(zip(("input", "output"), base))
    assert prices.token_prices(f"{family}-2024-07-18", finetuned=False) == dict(zip(("input", "output"), base))
    assert prices.token_prices(f"ft:{family}:org::x", finetuned=True) == dict(zip(("training", "input", "output"), finetuned))


def test_every_gpu_ftbench_detects_has_a_price():
    table = load_prices().hardware
    assert {"a40", "a100-40gb", "a100-80gb", "h100", "h200", "l4", "l40s", "a10", "t4", "cpu"} <= set(table)
    assert table["cpu"] == 0.09 and table["a40"] == 0.475  # the CI baseline's and the seed's rates
    assert "gpu" not in table  # no silent default for a GPU without a price


def test_detected_gpu_keys_match_exactly_and_unknown_ones_warn(monkeypatch, capsys):
    import torch

    from models.pricing import detect_hardware

    def detect(name, count=2, world=None):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: name)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i=0: type("P", (), {"total_memory": 48 << 30}))
        monkeypatch.setenv("WORLD_SIZE", str(world or 1))
        return detect_hardware.__wrapped__()  # the cached one holds this machine's answer

    assert detect("NVIDIA L40S") == Hardware("l40s", "2 x NVIDIA L40S", 2)  # one process, both GPUs
    assert detect("NVIDIA L4", world=2).devices == 1  # data-parallel: one GPU per process
    assert capsys.readouterr().err == ""
    assert detect("NVIDIA RTX PRO 6000").key == "unknown"
    assert "WARNING: no price key for GPU 'NVIDIA RTX PRO 6000'" in capsys.readouterr().err


def test_unknown_hardware_has_no_rate_and_unknown_model_lists_choices():
    prices = load_prices()
    assert prices.hourly_rate("unknown") is None and prices.hourly_rate("rtx-9090") is None
    with pytest.raises(UnknownNameError, match="gpt-4o-mini"):
        prices.token_prices("gpt-5-ft", finetuned=True)
    with pytest.raises(UnknownNameError, match="priced base model"):
        prices.token_prices("gpt-4o-mini-search-preview", finetuned=False)


def test_a_price_table_in_the_old_layout_is_refused_with_the_new_one(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_text('date = "2025-01-01"\n[hardware]\ncpu = 0.1\n[openai."gpt-4o-mini"]\ninput = 0.3\n')
    with pytest.raises(ConfigError, match=r"openai\.gpt-4o-mini: expected \[openai\.base\.<model>\]"):
        load_prices(path)


@pytest.mark.parametrize("usd, cap, message", [
    (0.0612, 0.06, r"estimated at \$0\.061, over --max-cost \$0\.060\. Raise --max-cost to at least 0\.062 "),
    (12.5, 5.0, r"estimated at \$12\.50, over --max-cost \$5\.00\. Raise --max-cost to at least 12\.50 "),
    (5.004, DEFAULT_MAX_COST_USD, r"estimated at \$5\.004, over --max-cost \$5\.000\."),
])
def test_budget_messages_show_why_they_refused(usd, cap, message):
    with pytest.raises(BudgetError, match=message):
        Budget(allow_paid=True, max_cost_usd=cap).check(usd, "x")
    with pytest.raises(BudgetError, match=r"\(estimate \$0\.00027\)"):
        Budget().check(0.000268, "x")


def test_one_max_cost_default_everywhere(pytestconfig):
    import argparse

    from benchmarks import runner
    from benchmarks.cli import finetune as finetune_cli

    root_conftest = next(p for p in pytestconfig.pluginmanager.get_plugins()
                         if getattr(p, "__file__", "") == str(DEFAULT_PRICE_FILE.parents[1] / "conftest.py"))
    parser = argparse.ArgumentParser()
    finetune_cli.add_arguments(parser)
    assert (root_conftest.DEFAULT_MAX_COST_USD is runner.DEFAULT_MAX_COST_USD is Budget.max_cost_usd
            is parser.get_default("max_cost") is DEFAULT_MAX_COST_USD)


@given(st.floats(0, 1e7), st.floats(0, 100), st.floats(0, 1e7))
def test_hardware_cost_is_linear_and_non_negative(a, rate, b):
    assert hardware_cost(a, rate) >= 0
    assert hardware_cost(a + b, rate) == pytest.approx(hardware_cost(a, rate) + hardware_cost(b, rate))


def test_a_broken_price_file_names_itself(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_text("[hardware]\ncpu = 0.1\n")
    with pytest.raises(ConfigError, match=r"lacks \['date'\]"):
        load_prices(path)


def test_money_doctests():
    import doctest

    from models import money

    assert doctest.testmod(money).failed == 0
