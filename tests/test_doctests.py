"""Run the doctests of the pure functions (normalizers, parsers, statistics, price arithmetic)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "benchmarks.stats", "benchmarks.record", "benchmarks.metrics.mr", "benchmarks.tasks.jsonl",
    "benchmarks.metrics.sql.text", "benchmarks.metrics.sql.compare", "benchmarks.metrics.sql.structure",
    "benchmarks.metrics.sql.synth", "benchmarks.metrics.sql.score", "benchmarks.metrics.sql.verdict",
    "benchmarks.gate", "benchmarks.units", "benchmarks.tasks.base", "models.pricing", "models.base", "models.tokens",
    "models.prediction_cache", "models.finetune.openai_plan", "models.openai_api", "models.precision",
    "models.finetune.lora", "models.files", "models.loadtest", "benchmarks.record_build", "benchmarks.record_schema",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no doctests"
    assert result.failed == 0
