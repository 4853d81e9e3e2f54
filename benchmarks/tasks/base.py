"""What a task is: examples from a data source, one prompt function for training and evaluation, a scorer."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from benchmarks.data import DataSource
from models.base import Prompt, TrainingPair


@dataclass(frozen=True)
class Example:
    """One row of a task."""

    id: str
    """Stable id, '<split>/<row index>': the key of per-item outcomes and paired diffs."""
    fields: dict[str, Any]
    """The row as the task reads it (question, context, db_id, ...)."""
    target: str
    """The reference answer."""


@dataclass(frozen=True)
class Score:
    """One item's outcomes: True/False per metric (None when it cannot be scored), plus reasons for failures.

    A metric that could not be computed because something other than the prediction failed (the scorer raised, the
    gold query failed, the database cannot be opened) has outcome None and its reason in `errors`: an error is
    recorded and gated, never counted as a wrong answer.
    """

    outcomes: dict[str, bool | float | None]
    reasons: dict[str, str] = field(default_factory=dict)
    """metric -> why the prediction is wrong (or a caveat on a right one)."""
    errors: dict[str, str] = field(default_factory=dict)
    """metric -> why it could not be scored ('scorer error: RecursionError ...', 'gold query failed: ...')."""


class Task(Protocol):
    """Everything the runner, the preflight and the record use of a task."""

    name: str
    metrics: tuple[str, ...]
    """Every metric `score` reports per item, in the order records and reports list them."""
    headline: str
    """The metric a test asserts on (one of `metrics`)."""
    stop: tuple[str, ...]
    """Where generation ends: the answer is cut at the first of these strings (empty: at max_new_tokens or EOS)."""
    train_split: str
    eval_split: str
    validation_split: str | None
    """A split that is neither train nor eval, for validation loss (None: hold out a slice of train)."""

    def examples(self, data: DataSource, split: str) -> list[Example]: ...

    def prompt(self, example: Example) -> Prompt: ...

    def score(self, examples: Sequence[Example], predictions: Sequence[str], data: DataSource) -> list[Score]: ...


def training_pairs(task: Task, examples: Sequence[Example]) -> list[TrainingPair]:
    """The LoRA training pairs: the evaluation prompt itself, followed by the reference answer."""
    return [TrainingPair(task.prompt(e).text, e.target) for e in examples]


def chat_rows(task: Task, examples: Sequence[Example]) -> list[dict[str, Any]]:
    """OpenAI fine-tuning rows built from the same prompts: {"messages": [..., assistant answer]}."""
    return [{"messages": task.prompt(e).chat(e.target)} for e in examples]


HOLDOUT_FRACTION = 0.05
"""Share of the train split held out for validation when a task has no validation split of its own."""


@dataclass(frozen=True)
class TrainingSplit:
    """What fine-tuning trains on and validates on. Validation never comes from the eval split: the seed chose its
    checkpoints on its test split, which lets the test set steer training."""

    train: list[Example]
    validation: list[Example]
    how: str
    """Where the validation examples came from, for the record."""


def training_split(task: Task, data: DataSource) -> TrainingSplit:
    """The task's train split and its validation split, or a stable hash-chosen slice of train held out."""
    train = task.examples(data, task.train_split)
    if task.validation_split:
        return TrainingSplit(train, task.examples(data, task.validation_split), f"the {task.validation_split} split")
    kept, held = holdout(train, HOLDOUT_FRACTION)
    return TrainingSplit(kept, held, f"{HOLDOUT_FRACTION:.0%} of the {task.train_split} split held out by row hash")


def holdout(examples: Sequence[Example], fraction: float) -> tuple[list[Example], list[Example]]:
    """(kept, held out): an example is held out when a hash of its content falls below `fraction`.

    Hashing the content (not the position) keeps the choice stable when rows are added or reordered.

    >>> rows = [Example(f"train/{i}", {"q": str(i)}, str(i)) for i in range(1000)]
    >>> kept, held = holdout(rows, 0.05)
    >>> len(kept) + len(held), 30 < len(held) < 70, holdout(list(reversed(rows)), 0.05)[1] == held[::-1]
    (1000, True, True)
    """
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be between 0 and 1, got {fraction}")
    kept, held = [], []
    for example in examples:
        content = json.dumps([example.fields, example.target], sort_keys=True, ensure_ascii=False)
        bucket = int(hashlib.sha256(content.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held if bucket < fraction else kept).append(example)
    return kept, held
