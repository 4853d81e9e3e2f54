"""Shared fixtures for the harness's own tests: tiny models, a private cache folder."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Adapters, predictions and job state of tests go to a per-session temp folder, never the user's cache.

    The converted SmolLM2 folder is the exception: it is reused from the user's cache when present (it is
    derived from an installed file and takes 15 s to rebuild).
    """
    monkeypatch.setenv("FTBENCH_ADAPTER_CACHE", str(tmp_path_factory.getbasetemp() / "adapters"))
    monkeypatch.setenv("FTBENCH_PREDICTION_CACHE", str(tmp_path_factory.getbasetemp() / "predictions"))
    monkeypatch.setenv("FTBENCH_OPENAI_JOBS", str(tmp_path_factory.getbasetemp() / "openai_jobs"))


@pytest.fixture(scope="session")
def tiny():
    from models.hf import HFModel
    from models.weights import load_tiny_random

    model, tokenizer, fingerprint = load_tiny_random()
    return HFModel("tiny-random", model, tokenizer, fingerprint)
