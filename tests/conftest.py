"""Shared fixtures for the harness's own tests: tiny models, a private cache folder, CUDA for gpu-marked tests."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A gpu-marked test needs CUDA: where torch sees none it is skipped, saying so, even when --run-gpu asks for it
    (without --run-gpu the root conftest has skipped it already)."""
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip(f"marked gpu: torch {torch.__version__} sees no CUDA device here")


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


@pytest.fixture(scope="session")
def tiny_on(tiny):
    """`tiny_on(device, precision)`: tiny-random as an HFModel on 'cpu' or 'cuda' in 'fp32', 'bf16' or 'fp16', built
    once per pair; ('cpu', 'fp32') is the `tiny` fixture itself. The weights are those of `tiny`, cast."""
    from models.hf import HFModel
    from models.precision import torch_dtype
    from models.weights import load_tiny_random

    built = {("cpu", "fp32"): tiny}

    def on(device: str, precision: str) -> HFModel:
        if (device, precision) not in built:
            model, tokenizer, fingerprint = load_tiny_random()
            model = model.to(device=device, dtype=torch_dtype(precision))
            built[device, precision] = HFModel("tiny-random", model, tokenizer, fingerprint)
        return built[device, precision]

    return on
