"""Costs in records: GPUs billed per device used, a CPU machine once, an unpriced GPU as unknown, and a cached rerun
of a local model billed what producing its predictions cost (the first run's cost, exactly)."""

from __future__ import annotations

import pytest

from benchmarks.data import resolve_data
from benchmarks.record import validate_record
from benchmarks.runner import PreparedModel, Settings, build_record, eval_examples, timed_generate
from benchmarks.tasks import get_task
from models.base import Completion, Usage
from models.catalog import CatalogEntry
from models.prediction_cache import CachedModel, PredictionCache
from models.pricing import Hardware, load_prices

TASK = get_task("viggo")
ENTRY = CatalogEntry("fake-lora", "tiny-random")  # runtime "hf": items of one batch share the machine


class SlowLocalModel:
    """A local model timed like transformers: a batch of `batch_size` items, each item's latency_s running from its
    batch's start to its own end (so the latencies of one batch overlap)."""

    name = "fake-lora"
    backend_version = "fake/1"

    def __init__(self):
        self.calls = 0

    def fingerprint(self):
        return {"base": "fake", "adapter": None}

    def generate(self, prompts, config):
        self.calls += 1
        return [Completion(f"name[{i}]", Usage(10, 4), latency_s=0.5 + 0.125 * (i % config.batch_size))
                for i, _ in enumerate(prompts)]


@pytest.fixture(autouse=True)
def cpu_machine(monkeypatch):
    """Evaluation billed at the CPU rate wherever the test runs."""
    monkeypatch.setattr("benchmarks.runner.detect_hardware", lambda: Hardware("cpu", "test CPU (2 cores)"))


def _settings(**overrides) -> Settings:
    return Settings(**{"data": resolve_data("fixtures"), "limit": 6, "prices": load_prices(), "progress": False,
                       "batch_size": 4} | overrides)


def _record(model, settings, training=None):
    examples = eval_examples(TASK, settings)
    completions, wall_s = timed_generate(model, examples, TASK, settings)
    scores = TASK.score(examples, [c.text for c in completions], settings.data)
    prepared = PreparedModel(model, training)
    record = build_record(TASK, ENTRY, prepared, examples, completions, scores, wall_s, settings).to_json()
    assert validate_record(record) == []
    return record


def _lora_run(key: str, processes: int, devices: int) -> dict:
    """train_info of a one-hour LoRA run as models.finetune.lora records it."""
    return {"wall_s": 3600.0, "processes": processes, "steps": 10,
            "hardware": {"key": key, "description": f"{devices} x GPU" if key != "cpu" else "cpu", "devices": devices}}


@pytest.mark.parametrize("run, usd, basis", [
    (_lora_run("a40", processes=2, devices=1), 2 * 0.475, "x $0.475/h x 2 (a40)"),  # accelerate launch, 2 GPUs
    (_lora_run("h100", processes=1, devices=4), 4 * 2.49, "x $2.49/h x 4 (h100)"),  # one process over 4 GPUs
    (_lora_run("cpu", processes=2, devices=1), 0.09, "x $0.09/h x 1 (cpu)"),  # 2 processes share one machine
    ({"wall_s": 3600.0, "processes": 2, "hardware": {"key": "a40", "description": "2 x NVIDIA A40"}}, 2 * 0.475,
     "x 2 (a40)"),  # an adapter trained before 'devices' was recorded: one GPU per process
])
def test_training_is_billed_per_device_used(run, usd, basis):
    record = _record(SlowLocalModel(), _settings(prediction_cache=False), training=run)
    assert record["cost_usd"]["train"] == pytest.approx(usd)
    assert record["cost_usd"]["pricing"]["train"].endswith(basis)


def test_an_unpriced_gpu_is_unknown_never_a_default():
    run = _lora_run("unknown", processes=1, devices=1) | {"hardware": {"key": "unknown", "description": "1 x RTX 9090"}}
    record = _record(SlowLocalModel(), _settings(prediction_cache=False), training=run)
    assert record["cost_usd"]["train"] is None
    assert record["cost_usd"]["pricing"]["train"].startswith("unknown: no hourly price for hardware 'unknown' (1 x RTX")


def test_a_cached_rerun_of_a_local_model_costs_what_the_first_run_did(tmp_path):
    settings = _settings()
    model = SlowLocalModel()
    cached = lambda: CachedModel(model, PredictionCache(tmp_path), save_every=256)  # noqa: E731
    first, again = _record(cached(), settings), _record(cached(), settings)
    assert model.calls == 1  # the rerun generated nothing
    assert again["predictions"] == first["predictions"]
    assert (first["cost_usd"]["pricing"]["cached_items"], again["cost_usd"]["pricing"]["cached_items"]) == (0, 6)
    assert again["cost_usd"]["eval"] == first["cost_usd"]["eval"]
    assert again["cost_usd"]["prices_date"] == first["cost_usd"]["prices_date"] == "2025-06-01"
    # 6 items in batches of 4: latencies 0.5, 0.625, 0.75, 0.875, 0.5, 0.625 s, 4 at once, at the CPU rate
    assert first["cost_usd"]["eval"] == pytest.approx(3.875 / 4 / 3600 * 0.09)
