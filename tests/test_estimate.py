"""`ftbench estimate`: training and evaluation cost of an OpenAI fine-tune, offline, and the seed's table reproduced."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from benchmarks.cli import main

SEED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No key and no network: any connection attempt fails the test."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError("ftbench estimate tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _estimate(capsys, *args: str) -> dict[str, str]:
    assert main(["estimate", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    return {line[:19].strip(): line[19:].strip() for line in lines}


def _number(text: str) -> float:
    return float(re.search(r"[\d,]+(\.\d+)?", text).group().replace(",", ""))


@pytest.mark.parametrize("task, epochs", [("viggo", "2 (catalog: the seed's value for viggo)"),
                                          ("spider", "3 (catalog: the seed's value for spider)")])
def test_estimate_on_fixtures_is_consistent(capsys, task, epochs):
    out = _estimate(capsys, "--task", task, "--model", "gpt-3.5-turbo-ft")
    assert out["epochs"] == epochs and out["base model"].startswith("gpt-3.5-turbo-0125 (encoding cl100k_base)")
    trained = _number(out["tokens per epoch"]) * int(epochs[0])
    assert _number(out["trained tokens"]) == trained
    assert out["training cost"] == f"${trained * 8.00 / 1e6:.2f}"
    assert re.fullmatch(r"\$\d+\.\d\d; the whole \w+ split \$\d+\.\d\d", out["per 1K requests"])


def test_epochs_override_and_validation_split(capsys):
    out = _estimate(capsys, "--task", "viggo", "--model", "gpt-4o-mini-ft", "--epochs", "5")
    assert out["epochs"] == "5 (--epochs)" and "(encoding o200k_base)" in out["base model"]
    assert "the valid split" in out["training file"]
    spider = _estimate(capsys, "--task", "spider", "--model", "gpt-4.1-nano-ft")
    assert "held out by row hash" in spider["training file"] and "whole train split" in spider


def test_not_an_openai_finetune_is_a_usage_error(capsys):
    assert main(["estimate", "--task", "viggo", "--model", "smollm2-135m-lora"]) == 2
    assert "not an OpenAI fine-tuned entry; choose one of ['gpt-3.5-turbo-ft'" in capsys.readouterr().err


@pytest.mark.skipif(not (SEED_DATA / "viggo" / "train.csv").is_file(), reason=f"the seed's data is not at {SEED_DATA}")
def test_seed_table_reproduced_at_three_epochs(capsys):
    """The seed's GPT-3.5 training costs: $11.99 (SQL) and $26.05 (ViGGO, which is 26.0566 cut, not rounded)."""
    viggo = _estimate(capsys, "--task", "viggo", "--model", "gpt-3.5-turbo-ft", "--epochs", "3", "--data", str(SEED_DATA))
    assert viggo["trained tokens"] == "3,257,070" and viggo["training cost"] == "$26.06"
    spider = _estimate(capsys, "--task", "spider", "--model", "gpt-3.5-turbo-ft", "--epochs", "3", "--data", str(SEED_DATA))
    whole = next(v for k, v in spider.items() if k.startswith("whole train split"))
    assert whole.endswith("1,498,956 trained tokens -> $11.99")
