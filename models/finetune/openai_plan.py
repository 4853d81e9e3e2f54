"""An OpenAI fine-tuning job worked out offline, before any call: its training files (serialized and validated as
OpenAI will), their exact token counts, the job's configuration, what it will cost, and the guard on paid work.

`models.finetune.openai_ft` runs the job; this module needs no network and no key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from models import money
from models.errors import BudgetError, ConfigError, DataError
from models.pricing import PriceTable, token_cost

MIN_TRAINING_EXAMPLES = 10  # OpenAI refuses smaller training files
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
MESSAGE_KEYS = {"role", "content", "name", "weight", "function_call", "tool_calls", "tool_call_id"}


# --- data: serialize, validate, count ------------------------------------------------------------------------


def _jsonl_line(row: dict[str, Any]) -> str:
    return json.dumps(row)  # ASCII escapes, as the seed's files: ftbench's ViGGO file is byte-identical to the seed's


def jsonl_bytes(rows: Sequence[dict[str, Any]]) -> bytes:
    """The file that is uploaded: one JSON object per line, in the given order."""
    return "".join(_jsonl_line(row) + "\n" for row in rows).encode("utf-8")


def row_problems(row: Any) -> list[str]:
    """What is wrong with one chat fine-tuning row (empty when nothing is).

    >>> row_problems({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    []
    >>> row_problems({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": ""}]})
    ["message 1: role 'bot' is not one of ['assistant', 'developer', 'function', 'system', 'tool', 'user']", 'message 1: empty content', 'the last message must be the assistant answer']
    """
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        return ["no 'messages' list"]
    problems = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            problems.append(f"message {i}: not an object")
            continue
        unknown = sorted(set(message) - MESSAGE_KEYS)
        if unknown:
            problems.append(f"message {i}: unknown keys {unknown}")
        if message.get("role") not in ROLES:
            problems.append(f"message {i}: role {message.get('role')!r} is not one of {sorted(ROLES)}")
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            problems.append(f"message {i}: empty content")
    if not isinstance(messages[-1], dict) or messages[-1].get("role") != "assistant":
        problems.append("the last message must be the assistant answer")
    return problems


def validate_rows(rows: Sequence[dict[str, Any]], *, encoding: str, max_tokens_per_example: int, what: str,
                  min_examples: int = 1) -> list[int]:
    """Check every row as OpenAI would, before anything is uploaded; return each row's token count.

    Raises DataError naming the first problems (row index and what to fix).
    """
    from models.tokens import chat_tokens

    problems, counts = [], []
    if len(rows) < min_examples:
        problems.append(f"{len(rows)} examples; OpenAI needs at least {min_examples}")
    for index, row in enumerate(rows):
        found = row_problems(row)
        count = chat_tokens(row["messages"], encoding) if not found else 0
        if count > max_tokens_per_example:
            found.append(f"{count} tokens, over the model's {max_tokens_per_example} per example (OpenAI would cut it)")
        problems += [f"row {index}: {p}" for p in found]
        counts.append(count)
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... {len(problems) - 8} more" if len(problems) > 8 else "")
        raise DataError(f"the {what} file for OpenAI fine-tuning is not valid: {shown}. Fix the task's rows "
                        f"(each needs non-empty system/user turns and the assistant answer last).")
    return counts


def default_epochs(n_examples: int) -> int:
    """OpenAI's documented `n_epochs="auto"` rule: aim at 3 epochs, at least 100 and at most 25,000 examples seen.

    >>> default_epochs(3961), default_epochs(20), default_epochs(10_000), default_epochs(1)
    (3, 5, 2, 25)
    """
    target, min_seen, max_seen, min_epochs, max_epochs = 3, 100, 25_000, 1, 25
    if n_examples * target < min_seen:
        return min(max_epochs, min_seen // n_examples)
    if n_examples * target > max_seen:
        return max(min_epochs, max_seen // n_examples)
    return target


# --- the job's configuration and its estimate -----------------------------------------------------------------------


@dataclass(frozen=True)
class JobSpec:
    """Everything sent with the job besides the files; hashed into the job key and saved in its state file."""

    base_model: str
    """The snapshot to fine-tune, e.g. 'gpt-3.5-turbo-0125'."""
    epochs: int
    """n_epochs, always explicit so that the estimate and the job agree."""
    price_family: str
    """Key of the price table's [openai.*] section."""
    max_tokens_per_example: int = 65_536
    """The model's training context; longer examples are refused before upload."""
    suffix: str | None = None
    """Up to 64 characters added to the fine-tuned model's name."""
    seed: int = 0
    """OpenAI's job seed, for reproducibility."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def encoding(self) -> str:
        from models.tokens import encoding_for

        return encoding_for(self.base_model)


@dataclass(frozen=True)
class TrainingEstimate:
    """What a job should cost, from exact token counts of the files (OpenAI bills training tokens x epochs)."""

    base_model: str
    encoding: str
    examples: int
    validation_examples: int
    tokens_per_epoch: int
    """Billed tokens of the training file (validation tokens are not billed)."""
    max_example_tokens: int
    epochs: int
    usd_per_million: float
    """Training price per 1M tokens, from the price table."""
    prices_date: str

    @property
    def trained_tokens(self) -> int:
        return self.tokens_per_epoch * self.epochs

    @property
    def usd(self) -> float:
        return token_cost(self.trained_tokens, self.usd_per_million)

    def describe(self) -> str:
        return (f"OpenAI fine-tuning estimate for {self.base_model} ({self.encoding}): {self.examples:,} training "
                f"examples ({self.validation_examples:,} validation), {self.tokens_per_epoch:,} tokens per epoch "
                f"(largest example {self.max_example_tokens:,}) x {self.epochs} epochs = {self.trained_tokens:,} "
                f"trained tokens x ${self.usd_per_million:.2f}/1M = ${self.usd:.2f} (prices of {self.prices_date})")

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"trained_tokens": self.trained_tokens, "usd": self.usd}


def estimate_training(train_rows: Sequence[dict[str, Any]], validation_rows: Sequence[dict[str, Any]],
                      spec: JobSpec, prices: PriceTable) -> TrainingEstimate:
    """Validate both files and price the job. Offline: no key, no call."""
    train_counts = validate_rows(train_rows, encoding=spec.encoding, max_tokens_per_example=spec.max_tokens_per_example,
                                 what="training", min_examples=MIN_TRAINING_EXAMPLES)
    validate_rows(validation_rows, encoding=spec.encoding, max_tokens_per_example=spec.max_tokens_per_example,
                  what="validation", min_examples=0)
    return TrainingEstimate(
        base_model=spec.base_model, encoding=spec.encoding, examples=len(train_rows),
        validation_examples=len(validation_rows), tokens_per_epoch=sum(train_counts),
        max_example_tokens=max(train_counts), epochs=spec.epochs,
        usd_per_million=prices.token_prices(spec.price_family, finetuned=True)["training"], prices_date=prices.date,
    )


@dataclass(frozen=True)
class Budget:
    """The cost guard: paid work needs an explicit opt-in and an estimate within the cap."""

    allow_paid: bool = False
    """pytest --run-paid, or an explicit --yes on the command line."""
    max_cost_usd: float = money.DEFAULT_MAX_COST_USD
    """Refuse when the estimate is above this (pytest/CLI --max-cost)."""

    def __post_init__(self) -> None:
        if not 0 <= self.max_cost_usd < math.inf:  # a NaN cap would compare False and never refuse
            raise ConfigError(f"--max-cost must be a finite amount of USD >= 0, got {self.max_cost_usd!r}")

    def check(self, usd: float, what: str) -> None:
        """Raise BudgetError (before any paid call) unless `what`, estimated at `usd`, may run."""
        if not math.isfinite(usd):
            raise BudgetError(f"refusing paid work: {what} has no finite cost estimate ({usd!r}); check the price table.")
        # Amounts are printed with as many decimals as it takes to tell them apart: never "$0.06, over $0.06".
        if not self.allow_paid:
            [shown] = money.usd(usd)
            raise BudgetError(f"refusing paid work without an explicit opt-in: {what} (estimate {shown}). "
                              f"Pass --run-paid (pytest) or --yes (ftbench) to spend it.")
        if usd > self.max_cost_usd:
            shown, cap = money.usd(usd, self.max_cost_usd)
            raise BudgetError(f"refusing paid work: {what} is estimated at {shown}, over --max-cost {cap}. "
                              f"Raise --max-cost to at least {money.usd_at_least(usd, shown)} to run it.")
