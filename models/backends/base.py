"""The backend interface, and the task-free view of a benchmark that backends work from.

models/ knows nothing about tasks, so the runner hands a backend a `Workload`: the evaluation prompts, how to decode,
and (read only when the entry is fine-tuned) the training data, all built by the task's one prompt function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from models.base import Completion, GenerationConfig, Model, Prompt, TrainingPair
from models.pricing import Hardware, PriceTable


@dataclass(frozen=True)
class TrainingData:
    """What fine-tuning learns from: (prompt, answer) pairs, each backend taking the form it trains on."""

    split: str
    """Name of the task's train split."""
    validation_how: str
    """Where the validation pairs come from (a validation split, or a hash-chosen share of train held out)."""
    train: Sequence[tuple[Prompt, str]]
    validation: Sequence[tuple[Prompt, str]]
    train_rows: Sequence[dict[str, Any]]
    """The raw rows of `train`, whose content hash says in a record which data trained the model."""

    def pairs(self, which: str = "train") -> list[TrainingPair]:
        """Completion-style pairs (local LoRA): the evaluation prompt text, then the answer."""
        return [TrainingPair(prompt.text, answer) for prompt, answer in getattr(self, which)]

    def chat_rows(self, which: str = "train") -> list[dict[str, Any]]:
        """Chat-style rows (OpenAI fine-tuning files): the prompt's messages plus the assistant answer."""
        return [{"messages": prompt.chat(answer)} for prompt, answer in getattr(self, which)]


@dataclass(frozen=True)
class Workload:
    """One task as a backend sees it."""

    task: str
    """The task's name (names jobs, picks per-task epochs)."""
    prompts: Callable[[], Sequence[Prompt]]
    """Reads the evaluation prompts (after --limit); called only by backends that estimate their spend."""
    config: GenerationConfig
    training: Callable[[], TrainingData]
    """Reads the train and validation splits; called only for fine-tuned entries."""


@dataclass(frozen=True)
class PreparedModel:
    model: Model
    training: dict[str, Any] | None
    """What fine-tuning measured (None for base models), plus whether the adapter or job came from a cache."""
    adapter: Path | None = None
    """The LoRA adapter folder the model runs with (local fine-tuned entries), for serving the same model."""


class BackendSettings(Protocol):
    """The options of a run that backends read (benchmarks.runner.Settings has them all)."""

    prices: PriceTable
    batch_size: int
    progress: bool
    allow_paid: bool
    max_cost_usd: float
    prediction_cache: bool
    openai: Any
    """models.backends.openai.OpenAISettings"""
    train: Any
    """models.backends.local.TrainSettings"""


class Backend(Protocol):
    """Prepares a catalog entry's model, prices its work, and says what a run needs to know about it beforehand."""

    def prepare(self, entry: Any, work: Workload, settings: BackendSettings) -> PreparedModel:
        """The runnable model; a fine-tuned entry is trained (or its cached adapter or job reused) first. Paid work
        is estimated and guarded (--run-paid, --max-cost) before any call."""
        ...

    def eval_cost(self, model: Model, entry: Any, completions: Sequence[Completion], hardware: Hardware,
                  settings: BackendSettings) -> tuple[float | None, str]:
        """(USD or None when unknown, how it was computed) of producing these completions."""
        ...

    def training_cost(self, training: dict[str, Any], prices: PriceTable) -> tuple[float | None, str | None]:
        """(USD or None, how) of the fine-tuning that `prepare` recorded in `training`."""
        ...

    def marks(self, entry: Any, openai_base_url: str | None) -> set[str]:
        """Opt-in markers a benchmark of this entry carries: 'paid' (spends money), 'gpu' (needs CUDA)."""
        ...

    def prepared_per_task(self, entry: Any) -> bool:
        """True when the model depends on the task (trained on it, or budgeted per task); else one is shared."""
        ...

    def cache_folders(self, entries: Sequence[Any]) -> dict[Path, str]:
        """{folder this backend writes for these entries: the variable that moves it}, checked before a run."""
        ...

    def runs_here(self, entry: Any) -> bool:
        """True when the weights run on this machine: prompts are checked against the model's context before the run
        (an API refuses a long prompt itself, and that item becomes an error), and the serving benchmark can serve
        it here."""
        ...

    def server(self, entry: Any, prepared: PreparedModel, device: str) -> Any:
        """A `models.serving.LocalServer` (not started) serving exactly the prepared model, for the serving
        benchmark; None when the entry is served by its provider (an API)."""
        ...


def machine_cost(seconds: float, hardware: dict[str, Any], processes: int, prices: PriceTable,
                 what: str) -> tuple[float | None, str]:
    """(USD or None, how): seconds x the hourly rate of one device x the devices billed (see devices_billed)."""
    from models.pricing import devices_billed, hardware_cost

    rate = prices.hourly_rate(hardware["key"])
    if rate is None:
        return None, (f"unknown: no hourly price for hardware {hardware['key']!r} ({hardware.get('description')}) "
                      f"in {prices.source}")
    devices = devices_billed(hardware, processes)
    return hardware_cost(seconds, rate) * devices, f"{what} x ${rate}/h x {devices} ({hardware['key']})"


def generation_machine_cost(completions: Sequence[Completion], hardware: Hardware, prices: PriceTable,
                            items_at_once: int) -> tuple[float | None, str]:
    """What producing the completions cost in machine time, the same on a first run and on a rerun answered from
    the prediction cache (a cached completion keeps the machine_s and latency_s of when it was produced).

    Machine time is the sum of each item's `machine_s` (its share of its batch's wall time), so it equals the
    generation wall time on the first run. Items without one (an HTTP server; answers cached before machine_s
    existed) count latency_s / the items generated at once. None (unknown) when the table has no rate for the
    hardware.
    """
    seconds = sum(c.machine_s if c.machine_s is not None else c.latency_s / max(1, items_at_once)
                  for c in completions)
    cached = sum(c.cached for c in completions)
    return machine_cost(seconds, hardware.to_json(), 1, prices,
                        f"machine time of generation: {seconds:.3f} s, the items' shares of their batches' wall time "
                        f"({cached} stored with cached answers; without a share, latency / {items_at_once} at once)")


def with_prediction_cache(model: Model, settings: BackendSettings, save_every: int | None = None) -> Model:
    """A rerun of an unchanged benchmark generates nothing: answers are keyed by model fingerprint (base, adapter
    hash), prompt, generation parameters and backend version."""
    if not settings.prediction_cache:
        return model
    from models.prediction_cache import CachedModel, PredictionCache

    if save_every is None:
        return CachedModel(model, PredictionCache.default())
    return CachedModel(model, PredictionCache.default(), save_every=save_every)
