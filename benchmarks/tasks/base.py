"""What a task is: examples from a data source, one prompt function for training and evaluation, a scorer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from benchmarks.data import DataSource
from models.base import Prompt
from models.finetune.lora import TrainingPair


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
    """One item's outcomes: True/False per metric (None when it cannot be scored), plus reasons for failures."""

    outcomes: dict[str, bool | float | None]
    reasons: dict[str, str] = field(default_factory=dict)


class Task(Protocol):
    name: str
    headline: str
    """The metric a test asserts on."""
    train_split: str
    eval_split: str

    def examples(self, data: DataSource, split: str) -> list[Example]: ...

    def prompt(self, example: Example) -> Prompt: ...

    def score(self, examples: Sequence[Example], predictions: Sequence[str], data: DataSource) -> list[Score]: ...


def training_pairs(task: Task, examples: Sequence[Example]) -> list[TrainingPair]:
    """The LoRA training pairs: the evaluation prompt itself, followed by the reference answer."""
    return [TrainingPair(task.prompt(e).text, e.target) for e in examples]


def chat_rows(task: Task, examples: Sequence[Example]) -> list[dict[str, Any]]:
    """OpenAI fine-tuning rows built from the same prompts: {"messages": [..., assistant answer]}."""
    return [{"messages": task.prompt(e).chat(e.target)} for e in examples]
