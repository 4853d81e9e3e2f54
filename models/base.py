"""The contract every backend keeps: a batch of prompts in, one Completion per prompt out, in order.

A task builds a `Prompt` once and both backends read the form they need: local models the plain `text`
(the seed's completion-style prompt), chat APIs the `messages`. Training pairs come from the same Prompt
plus the target, so training and evaluation prompts cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Message:
    """One chat turn."""

    role: str
    """'system', 'user' or 'assistant'."""
    content: str


@dataclass(frozen=True)
class Prompt:
    """What a model sees for one example, in both the completion and the chat form."""

    text: str
    """Completion-style prompt for local models, ending where the answer starts."""
    messages: tuple[Message, ...] = ()
    """The same prompt as chat turns (no assistant answer), for chat APIs."""

    def chat(self, answer: str | None = None) -> list[dict[str, str]]:
        """The messages as OpenAI-style dicts, with the assistant `answer` appended when given."""
        turns = [{"role": m.role, "content": m.content} for m in self.messages]
        if answer is not None:
            turns.append({"role": "assistant", "content": answer})
        return turns

    def api_messages(self) -> list[dict[str, str]]:
        """What a chat API is sent: the chat turns, or the plain text as one user turn when the task has none."""
        return self.chat() or [{"role": "user", "content": self.text}]


@dataclass(frozen=True)
class TrainingPair:
    """One supervised example for fine-tuning: the evaluation prompt text and the answer that should follow it."""

    prompt: str
    completion: str


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode. Greedy only: benchmarks must be reproducible."""

    max_new_tokens: int = 100
    """Upper bound on generated tokens per prompt (the seed used 100)."""
    stop: tuple[str, ...] = ("\n",)
    """Generation for a sequence ends at the first of these strings, which is cut from the text."""
    batch_size: int = 8
    """Prompts decoded together by local backends (grouped by length to keep padding small)."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Usage:
    """Token counts for one completion, as the backend's tokenizer or API counted them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    """One generated answer."""

    text: str
    """The answer, cut at the first stop string."""
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    """Seconds spent on this item; for batched backends, the batch's time shared by its items."""
    finish_reason: str = "stop"
    """'stop' (hit a stop string or EOS), 'length' (max_new_tokens) or 'error'."""
    cached: bool = False
    """True when the answer came from a prediction cache rather than the model."""
    error: str | None = None
    """Why generation failed for this item, when finish_reason is 'error'."""
    machine_s: float | None = None
    """This item's share of the machine time spent generating it (its batch's wall time / the batch's size), what
    a local model's eval cost bills; None for backends that cannot tell (HTTP servers)."""


@runtime_checkable
class Model(Protocol):
    """A text generator the benchmarks can time and score."""

    name: str
    """Catalog name, e.g. 'smollm2-135m-lora'."""

    def fingerprint(self) -> dict[str, Any]:
        """JSON-able identity of the weights and adapter, for records and caches."""
        ...

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        """One Completion per prompt, in the order given."""
        ...


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the earliest stop string; say whether one was found.

    >>> cut_at_stop("SELECT 1\\nmore", ["\\n"])
    ('SELECT 1', True)
    >>> cut_at_stop("no stop", ["\\n", ";"])
    ('no stop', False)
    """
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def fingerprint_rows(rows: list[dict[str, Any]]) -> str:
    """Content hash of rows (evaluated or trained on), so diffs can tell a changed data set from a changed model.

    >>> fingerprint_rows([{"a": 1}]) == fingerprint_rows([{"a": 1}])
    True
    >>> fingerprint_rows([{"a": 1}]) == fingerprint_rows([{"a": 2}])
    False
    """
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()[:32]
