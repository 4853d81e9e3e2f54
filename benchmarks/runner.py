"""The walk of one benchmark: prepare the model (train or reuse its adapter), generate, score, record.

pytest's benchmark test and the `ftbench` command share these functions, so both measure the same thing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import record as rec
from benchmarks.data import DataSource, fingerprint_rows
from benchmarks.tasks import Example, Score, Task, training_pairs
from models.base import Completion, GenerationConfig, Model
from models.catalog import CatalogEntry
from models.finetune.lora import RunOptions, finetune
from models.pricing import PriceTable, detect_hardware, hardware_cost


@dataclass(frozen=True)
class Settings:
    """Resolved options shared by every benchmark of a run."""

    data: DataSource
    """Where rows come from (`--data`)."""
    limit: int | None
    """Evaluate only the first N eval rows (`--limit`); training always uses the whole train split."""
    prices: PriceTable
    batch_size: int = 8
    max_new_tokens: int = 100
    progress: bool = True


@dataclass(frozen=True)
class PreparedModel:
    model: Model
    training: dict[str, Any] | None
    """What fine-tuning measured (None for base models), plus whether the adapter came from the cache."""


def prepare_model(entry: CatalogEntry, task: Task, settings: Settings) -> PreparedModel:
    """Load a catalog entry; for a fine-tuned entry, train its adapter on the task's train split first (or reuse)."""
    if not entry.finetuned:
        return PreparedModel(entry.load(), None)
    train = task.examples(settings.data, task.train_split)
    adapter = finetune(entry.load_base, entry.base_fingerprint(), training_pairs(task, train), entry.recipe,
                       options=RunOptions(progress=settings.progress))
    adapter_fingerprint = {"adapter": f"sha256:{adapter.key[:32]}", "recipe": entry.recipe.to_json()}
    training = adapter.info | {"cached": adapter.cached, "train_split": task.train_split,
                               "train_fingerprint": fingerprint_rows([e.fields for e in train])}
    return PreparedModel(entry.load(adapter.path, adapter_fingerprint), training)


def eval_examples(task: Task, settings: Settings) -> list[Example]:
    examples = task.examples(settings.data, task.eval_split)
    return examples[: settings.limit] if settings.limit else examples


def generation_config(task: Task, settings: Settings) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=settings.max_new_tokens, stop=tuple(task.stop), batch_size=settings.batch_size)


def timed_generate(model: Model, examples: Sequence[Example], task: Task, settings: Settings,
                   runner: Callable[..., list[Completion]] | None = None) -> tuple[list[Completion], float]:
    """Generate for every example; `runner` lets pytest-benchmark's pedantic() do the timing call."""
    prompts = [task.prompt(e) for e in examples]
    config = generation_config(task, settings)
    started = time.perf_counter()
    completions = (runner or (lambda f, *a: f(*a)))(model.generate, prompts, config)
    return completions, time.perf_counter() - started


def build_record(task: Task, entry: CatalogEntry, prepared: PreparedModel, examples: Sequence[Example],
                 completions: Sequence[Completion], scores: Sequence[Score], wall_s: float,
                 settings: Settings) -> dict[str, Any]:
    """The result record (benchmarks.record) for one task x model run."""
    metrics = {m: rec.summarize_metric([s.outcomes.get(m) for s in scores]) for m in task.metrics}
    headline = next((m for m in (task.headline, *task.metrics) if metrics[m]["n"]), task.headline)
    hardware = detect_hardware()
    rate = settings.prices.hourly_rate(hardware.key)
    eval_cost = hardware_cost(wall_s, rate)
    train_cost = _training_cost(prepared.training, settings.prices)
    prompt_tokens = sum(c.usage.prompt_tokens for c in completions)
    completion_tokens = sum(c.usage.completion_tokens for c in completions)
    n = len(examples)
    return {
        "schema": rec.SCHEMA,
        "task": task.name,
        "model": entry.name,
        "data": settings.data.to_json() | {"split": task.eval_split, "n": n,
                                           "fingerprint": fingerprint_rows([e.fields | {"target": e.target} for e in examples])},
        "model_fingerprint": prepared.model.fingerprint(),
        "metric": headline,
        "accuracy": metrics[headline]["value"],
        "ci95": metrics[headline]["ci95"],
        "metrics": metrics,
        "items": {e.id: dict(s.outcomes) for e, s in zip(examples, scores)},
        "predictions": {e.id: c.text for e, c in zip(examples, completions)},
        "reasons": {e.id: s.reasons for e, s in zip(examples, scores) if s.reasons},
        "latency_s": rec.latency_summary(completions, wall_s),
        "throughput": {"examples_per_s": n / wall_s if wall_s else None,
                       "completion_tokens_per_s": completion_tokens / wall_s if wall_s else None},
        "tokens": {"prompt": prompt_tokens, "completion": completion_tokens},
        "cost_usd": {"train": train_cost, "eval": eval_cost, "per_1k_requests": eval_cost / n * 1000 if n else None,
                     "prices_date": settings.prices.date, "pricing": {"eval": f"wall time x ${rate}/h ({hardware.key})",
                                                                      "price_file": settings.prices.source}},
        "training": prepared.training,
        "machine": rec.machine_info(hardware.description, hardware.key),
    }


def _training_cost(training: dict[str, Any] | None, prices: PriceTable) -> float:
    """Wall time of the training run x the hourly rate of the hardware it ran on (0 for base models)."""
    if not training:
        return 0.0
    return hardware_cost(training["wall_s"], prices.hourly_rate(training["hardware"]["key"]))
