"""The walk of one benchmark: prepare the model (train or reuse its adapter or OpenAI job), generate, score, record.

pytest's benchmark test and the `ftbench` command share these functions, so both measure the same thing.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks import record as rec
from benchmarks.data import DataSource, fingerprint_rows
from benchmarks.tasks import Example, Score, Task, training_split
from models.backends import Backend, PreparedModel, TrainingData, Workload, backend_for
from models.backends.local import TrainSettings
from models.backends.openai import OpenAISettings
from models.base import Completion, GenerationConfig, Model
from models.catalog import CatalogEntry, OpenAIEntry
from models.money import DEFAULT_MAX_COST_USD
from models.pricing import PriceTable, detect_hardware


@dataclass(frozen=True)
class Settings:
    """Resolved options shared by every benchmark of a run."""

    data: DataSource
    """Where rows come from (`--data`)."""
    limit: int | None
    """Evaluate only the first N eval rows (`--limit`); training uses the train split whatever the limit."""
    prices: PriceTable
    batch_size: int = 8
    max_new_tokens: int = 100
    progress: bool = True
    allow_paid: bool = False
    """Paid API work may run (pytest --run-paid); without it a paid step is refused before any call."""
    max_cost_usd: float = DEFAULT_MAX_COST_USD
    """Refuse a benchmark whose new paid work (training + evaluation) is estimated above this (--max-cost)."""
    prediction_cache: bool = True
    """Answer repeated API requests from the prediction cache (--no-prediction-cache turns it off)."""
    max_error_rate: float = 0.0
    """A benchmark fails when more than this share of its items got an error instead of an answer or a score."""
    openai: OpenAISettings = field(default_factory=OpenAISettings)
    train: TrainSettings = field(default_factory=TrainSettings)


def prepare_model(entry: CatalogEntry | OpenAIEntry, task: Task, settings: Settings,
                  backend: Backend | None = None) -> PreparedModel:
    """Load a catalog entry through its backend; a fine-tuned entry is trained on the task's train split first (or
    its adapter or job reused). `backend` replaces the registered one (tests put a local transport under OpenAI)."""
    return (backend or backend_for(entry)).prepare(entry, workload(task, settings), settings)


def workload(task: Task, settings: Settings) -> Workload:
    """The task as a backend sees it: evaluation prompts, decoding, and training data read on demand."""
    prompts = functools.cache(lambda: [task.prompt(e) for e in eval_examples(task, settings)])
    return Workload(task.name, prompts, generation_config(task, settings), lambda: training_data(task, settings.data))


def training_data(task: Task, data: DataSource) -> TrainingData:
    """(prompt, answer) pairs of the same split for every backend, so LoRA and an OpenAI job learn from the same
    examples through the same prompt function as evaluation."""
    split = training_split(task, data)
    return TrainingData(split=task.train_split, validation_how=split.how,
                        train=[(task.prompt(e), e.target) for e in split.train],
                        validation=[(task.prompt(e), e.target) for e in split.validation],
                        train_rows=[e.fields for e in split.train])


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


def score_items(task: Task, examples: Sequence[Example], completions: Sequence[Completion],
                data: DataSource) -> list[Score]:
    """Score each answered item under its own guard. An item without an answer is not scored, and a scorer that
    raises gives that item an error, never a wrong verdict or the end of the run."""
    scores = []
    for example, completion in zip(examples, completions, strict=True):
        if completion.error is not None:
            scores.append(Score({m: None for m in task.metrics}))
            continue
        try:
            [score] = task.score([example], [completion.text], data)
        except Exception as err:  # noqa: BLE001 - any scorer failure is this item's error, recorded with its type
            reason = f"scorer error: {type(err).__name__}: {str(err)[:200]}"
            score = Score({m: None for m in task.metrics}, errors={m: reason for m in task.metrics})
        scores.append(score)
    return scores


def item_errors(examples: Sequence[Example], completions: Sequence[Completion],
                scores: Sequence[Score]) -> dict[str, dict[str, str]]:
    """{item id: {stage: reason}} for every item that failed: 'generate', or 'score:<metric>'."""
    found: dict[str, dict[str, str]] = {}
    for example, completion, score in zip(examples, completions, scores, strict=True):
        stages = {"generate": completion.error} if completion.error is not None else {}
        stages |= {f"score:{metric}": reason for metric, reason in score.errors.items()}
        if stages:
            found[example.id] = stages
    return found


class ErrorRateExceeded(AssertionError):
    """Items failed (outage, timeout, malformed answers, scorer errors): the accuracy is not the model's."""


def check_error_rate(record: rec.Record, max_error_rate: float) -> None:
    """Raise ErrorRateExceeded, message prefixed 'ERRORS:', when more items failed than --max-error-rate allows."""
    errors = record.errors
    if errors.count and errors.rate > max_error_rate:
        where = (record.requests or {}).get("endpoint") or record.model
        raise ErrorRateExceeded(
            f"ERRORS: {errors.count} of {record.data.n} items of {record.task} x {record.model} failed "
            f"({errors.rate:.1%} > --max-error-rate {max_error_rate:g}) at {where}; by reason: "
            f"{dict(errors.by_reason)}; first: {errors.first_errors()}. The accuracy covers only the answered items; "
            f"fix the cause and rerun (answers already received are cached and not asked again).")


def build_record(task: Task, entry: CatalogEntry, prepared: PreparedModel, examples: Sequence[Example],
                 completions: Sequence[Completion], scores: Sequence[Score], wall_s: float,
                 settings: Settings, backend: Backend | None = None) -> rec.Record:
    """The result record (benchmarks.record) for one task x model run. Costs come from the entry's backend: what
    producing these predictions cost at the current price table (a rerun answered from the prediction cache records
    the first run's cost, never ~$0), and what its fine-tuning cost (0 for base models)."""
    metrics = {m: rec.summarize_metric([s.outcomes.get(m) for s in scores]) for m in task.metrics}
    failed = item_errors(examples, completions, scores)
    for m in task.metrics:
        metrics[m]["errors"] = sum(1 for stages in failed.values() if "generate" in stages or f"score:{m}" in stages)
    headline = next((m for m in (task.headline, *task.metrics) if metrics[m]["n"]), task.headline)
    hardware = detect_hardware()
    prompt_tokens = sum(c.usage.prompt_tokens for c in completions)
    completion_tokens = sum(c.usage.completion_tokens for c in completions)
    backend = backend or backend_for(entry)
    eval_cost, eval_basis = backend.eval_cost(prepared.model, entry, completions, hardware, settings)
    train_cost, train_basis = (backend.training_cost(prepared.training, settings.prices) if prepared.training
                               else (0.0, None))
    n = len(examples)
    record, nonfinite = rec.nonfinite_to_null({
        "schema": rec.SCHEMA,
        "task": task.name,
        "model": entry.name,
        "data": settings.data.to_json() | {"split": task.eval_split, "n": n,
                                           "fingerprint": fingerprint_rows([e.fields | {"target": e.target} for e in examples])},
        "model_fingerprint": prepared.model.fingerprint(),
        "metric": headline,
        "accuracy": metrics[headline]["value"],
        "accuracy_basis": f"{metrics[headline]['n']} of {n} items: those with an answer and a verdict on {headline} "
                          f"({len(failed)} errors, never counted wrong; see errors)",
        "ci95": metrics[headline]["ci95"],
        "metrics": metrics,
        "items": {e.id: dict(s.outcomes) for e, s in zip(examples, scores)},
        "predictions": {e.id: c.text if c.error is None else None for e, c in zip(examples, completions)},
        "reasons": {e.id: s.reasons for e, s in zip(examples, scores) if s.reasons},
        "errors": rec.error_summary(failed, n),
        "requests": endpoint.to_json() if (endpoint := getattr(prepared.model, "endpoint", None)) else None,
        "latency_s": rec.latency_summary(completions, wall_s),
        "throughput": {"examples_per_s": n / wall_s if wall_s else None,
                       "completion_tokens_per_s": completion_tokens / wall_s if wall_s else None},
        "tokens": {"prompt": prompt_tokens, "completion": completion_tokens},
        "cost_usd": {"train": train_cost, "eval": eval_cost,
                     "per_1k_requests": eval_cost / n * 1000 if n and eval_cost is not None else None,
                     "prices_date": settings.prices.date,
                     "pricing": {"eval": eval_basis, "train": train_basis, "price_file": settings.prices.source,
                                 "cached_items": sum(c.cached for c in completions)}},
        "training": prepared.training,
        "machine": rec.machine_info(hardware.description, hardware.key),
    })
    if nonfinite:  # a bug upstream, not a measurement: the record stays strict JSON and says what it dropped
        record["nonfinite_fields"] = nonfinite
    return rec.Record.from_json(record, check=False)
