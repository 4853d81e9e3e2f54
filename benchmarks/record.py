"""The result record: what one benchmark test stores in pytest-benchmark's `extra_info`.

It is the contract that `ftbench diff`, `ftbench report` and the `--baseline` gate read, so it is versioned
(`SCHEMA`), holds JSON values only, and is filled before the accuracy assert so a failing test still records.

In Python a record is a `Record`: a frozen tree of typed parts (`DataInfo`, `MetricSummary`, `ErrorSummary`,
`LatencySummary`, `CostSummary`, `Training`, `MachineInfo`, ...), its maps read-only. `Record.from_json` reads and
checks one (schemas 1 and 2; a bad one raises `RecordError` naming each field and value); `Record.to_json` writes
strict JSON, the same JSON that was read, keys of a newer writer included. The pieces the runner builds a record
from live in `benchmarks.record_build`, the checks in `benchmarks.record_schema`; both are re-exported here.

Shape (schema 2; schema 1 records, written before `errors` existed, still load as records without errors):

    {"schema": 2, "task": "spider", "model": "smollm2-135m-lora",
     "data": {"source": "fixtures", "split": "val", "n": 32, "fingerprint": "sha256:..."},
     "model_fingerprint": {"base": ..., "adapter": "sha256:..." | null, "recipe": {...} | null, ...},
     "metric": "execution", "accuracy": 0.31, "ci95": [0.18, 0.48],   # over the items that got an answer
     "accuracy_basis": "32 of 33 items: those with an answer and a verdict on execution (1 errors, never counted wrong; see errors)",
     "metrics": {"execution": {"value": 0.31, "correct": 10, "n": 32, "ci95": [...], "errors": 0}, ...},
     "items": {"val/0000": {"execution": true, "exact": false, ...}, ...},   # per-item outcomes, null = not scored
     "predictions": {"val/0000": "SELECT ...", "val/0007": null, ...},       # null: no answer (see errors)
     "reasons": {"val/0003": {"execution": "syntax error: ..."}, ...},        # why an answer is wrong
     "errors": {"count": 1, "rate": 0.03, "by_reason": {"http 503 after 6 attempts": 1},
                "first": [{"id": "val/0007", "stage": "generate", "reason": "http 503 after 6 attempts: ..."}],
                "items": {"val/0007": {"generate": "http 503 ..."}}},          # errors are never scored as wrong
     "requests": {"endpoint": "http://127.0.0.1:8000/v1", "timeout_s": 60.0, "max_retries": 5, ...} | null,
     "latency_s": {"p50": ..., "p95": ..., "mean": ..., "total": ...},
     "throughput": {"examples_per_s": ..., "completion_tokens_per_s": ...},
     "tokens": {"prompt": ..., "completion": ...},
     "cost_usd": {"train": ..., "eval": ..., "per_1k_requests": ..., "prices_date": "...", "pricing": {...}},
     "training": {...} | null,   # wall_s, tokens, steps, hardware, loss: see models.finetune
     "machine": {"hardware": ..., "platform": ..., "torch": ..., "transformers": ...,
                 "precision_auto": "fp32", "precision_reason": "CPU: AVX2, no AMX/AVX512-BF16: ..."},
     "threshold": {"value": 0.2, "file": "fixtures/thresholds.toml", "key": "spider.fixtures.smollm2-135m-lora"}}
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple, Self

from benchmarks.record_build import (FIRST_ERRORS, error_summary, errors_of, first_errors, latency_summary,
                                     machine_info, nonfinite_to_null, summarize_metric)
from benchmarks.record_schema import (LARGEST_COST_OR_TIME, MAX_DEPTH, READABLE_SCHEMAS, REQUIRED_SECTIONS, SCHEMA,
                                      is_finite_number, typed_record_problems, validate_record)

__all__ = [
    "SCHEMA", "READABLE_SCHEMAS", "REQUIRED_SECTIONS", "FIRST_ERRORS", "MAX_DEPTH", "LARGEST_COST_OR_TIME",
    "Record", "RecordError", "DataInfo", "MetricSummary", "ErrorEntry", "ErrorSummary", "LatencySummary",
    "Throughput", "TokenCounts", "CostSummary", "Training", "MachineInfo", "Threshold",
    "summarize_metric", "error_summary", "nonfinite_to_null", "first_errors", "errors_of", "latency_summary",
    "machine_info", "validate_record", "typed_record_problems", "is_finite_number",
]


class RecordError(ValueError):
    """A result record this ftbench cannot read; `problems` names every bad field with its value."""

    LISTED = 20
    """Problems spelled out in the message; `problems` keeps every one."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        more = len(self.problems) - self.LISTED
        listed = "; ".join(self.problems[: self.LISTED]) + (f"; ... and {more} more" if more > 0 else "")
        super().__init__(f"not a result record this ftbench reads ({len(self.problems)} problem(s)): {listed}. A "
                         f"record holds the fields documented in benchmarks/record.py, of their types, with finite "
                         f"numbers; rerun the benchmark that wrote it with this ftbench.")


# ------------------------------------------------------------------------------------ JSON <-> typed fields


def _freeze(value: Any) -> Any:
    """A read-only copy of a JSON value: objects become MappingProxyType, arrays tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item) for item in value)
    return value


def _thaw(value: Any) -> Any:
    """A fresh plain-JSON copy of a (frozen) value: dicts and lists."""
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(item) for item in value]
    return value


class _Codec(NamedTuple):
    """How one field goes from JSON to its attribute and back."""

    read: Callable[[Any], Any]
    """JSON value, or one already typed (a constructor's argument) -> the attribute, read-only."""
    write: Callable[[Any], Any]
    """The attribute -> a fresh JSON value."""


_JSON = _Codec(_freeze, _thaw)
"""A JSON value held as is, read-only: numbers, strings, intervals, maps by item id, free-form objects."""


def _part(cls: type[Any], nullable: bool = False) -> _Codec:
    """A typed part; `nullable`: null reads as None (a base model's `training`), else as an empty part that writes
    null."""
    def read(value: Any) -> Any:
        return value if isinstance(value, cls) or (nullable and value is None) else cls.from_json(value)
    return _Codec(read, lambda part: None if part is None else part.to_json())


def _parts_by_name(cls: type[_Part]) -> _Codec:
    read = _part(cls).read
    return _Codec(lambda value: MappingProxyType({name: read(item) for name, item in value.items()}),
                  lambda parts: {name: part.to_json() for name, part in parts.items()})


def _part_list(cls: type[_Part]) -> _Codec:
    read = _part(cls).read
    return _Codec(lambda value: tuple(read(item) for item in value), lambda parts: [part.to_json() for part in parts])


def _field(default: Any = None, *, key: str | None = None, codec: _Codec = _JSON,
           factory: Callable[[], Any] | None = None) -> Any:
    """A field of a record part: `key` is its JSON name where that differs (`latency` is "latency_s")."""
    metadata = {"key": key, "codec": codec}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@functools.cache
def _json_fields(cls: type) -> dict[str, dataclasses.Field]:
    """{JSON key: field} of a part, in the order the runner writes them."""
    return {f.metadata["key"] or f.name: f for f in dataclasses.fields(cls) if "codec" in f.metadata}


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@dataclass(frozen=True, kw_only=True)
class _Part:
    """A section of a record. Besides its typed fields it remembers how its JSON looked (keys it does not know, keys
    left out, null), so that a record read and written again is the same JSON. Its constructor takes each nested
    part typed or as its JSON, and keeps read-only copies (maps as MappingProxyType, lists as tuples)."""

    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Keys of a newer writer, unknown here: carried along, never dropped."""
    absent: frozenset[str] | None = field(default=None, repr=False)
    """Fields whose key the JSON left out (an older writer; a key written only sometimes), left out again while
    they hold their default; a field given a value is written. None: those of `_optional`."""
    null: bool = field(default=False, repr=False)
    """The JSON held null here: read as an empty part, written back as null."""

    _optional: ClassVar[frozenset[str]] = frozenset()
    """Fields a writer leaves out while they hold their default."""

    def __post_init__(self) -> None:
        fields = {f.name: f for f in _json_fields(type(self)).values()}
        for name, f in fields.items():  # frozen: only the constructor sets, here, typed read-only values
            object.__setattr__(self, name, f.metadata["codec"].read(getattr(self, name)))
        object.__setattr__(self, "extra", _freeze(self.extra))
        absent = self._optional if self.absent is None else self.absent
        object.__setattr__(self, "absent", frozenset(
            name for name in absent if name in fields and getattr(self, name) == _default(fields[name])))

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> Self:
        """This part of a record's JSON (null: an empty part that writes null), unchecked: `Record.from_json`
        checks a whole record."""
        if value is None:
            return cls(null=True)
        fields = _json_fields(cls)
        return cls(**{f.name: value[key] for key, f in fields.items() if key in value},
                   extra={key: item for key, item in value.items() if key not in fields},
                   absent=frozenset(f.name for key, f in fields.items() if key not in value))

    def to_json(self) -> dict[str, Any] | None:
        """A fresh plain-JSON copy: the fields in the order the runner writes them, then unknown keys."""
        if self.null:
            return None
        written = {key: f.metadata["codec"].write(getattr(self, f.name))
                   for key, f in _json_fields(type(self)).items() if f.name not in self.absent}
        return written | _thaw(self.extra)


# ----------------------------------------------------------------------------------------------- the parts


@dataclass(frozen=True, kw_only=True)
class DataInfo(_Part):
    """What was evaluated: where the rows came from (`--data`), the split, how many items, a hash of their content."""

    source: str | None = _field()
    """'fixtures', 'hub' or 'dir'."""
    path: str | None = _field()
    """The data folder, for 'dir' and 'fixtures'."""
    split: str | None = _field()
    n: int | None = _field()
    fingerprint: str | None = _field()


@dataclass(frozen=True, kw_only=True)
class MetricSummary(_Part):
    """One metric over the items (`summarize_metric`): true/false outcomes give an accuracy and a Wilson interval,
    graded ones (slot F1) a mean."""

    value: float | None = _field()
    """None when no item was scored on it."""
    correct: int | None = _field()
    """Items right, for true/false metrics (written only for them)."""
    n: int | None = _field()
    """Items scored; errors are left out, never counted wrong."""
    ci95: tuple[float, float] | None = _field()
    errors: int = _field(0)
    """Items that got an error instead of a score on it (none in schema 1)."""

    _optional: ClassVar[frozenset[str]] = frozenset({"correct"})


@dataclass(frozen=True, kw_only=True)
class ErrorEntry(_Part):
    """One error in full: the item, the stage ('generate' or 'score:<metric>') and why."""

    id: str | None = _field()
    stage: str | None = _field()
    reason: str | None = _field()

    @property
    def clause(self) -> str:
        return f"{self.id} {self.stage}: {self.reason}"


@dataclass(frozen=True, kw_only=True)
class ErrorSummary(_Part):
    """Items that got an error instead of an answer or a score (`error_summary`); a schema-1 record has none."""

    count: int = _field(0)
    rate: float = _field(0.0)
    by_reason: Mapping[str, int] = _field(factory=dict)
    """{'http 503 after 6 attempts': 5}: errors by the reason before its first colon."""
    first: tuple[ErrorEntry, ...] = _field((), codec=_part_list(ErrorEntry))
    items: Mapping[str, Mapping[str, str]] = _field(factory=dict)
    """{item id: {stage: reason}} for every failed item."""

    def first_errors(self, shown: int = 3) -> str:
        """The first errors, one clause each, for messages (as `first_errors` of the JSON)."""
        return "; ".join(entry.clause for entry in self.first[:shown])


@dataclass(frozen=True, kw_only=True)
class LatencySummary(_Part):
    """Seconds per item of the items answered (`latency_summary`), and the run's wall time (`total`)."""

    p50: float | None = _field()
    p95: float | None = _field()
    mean: float | None = _field()
    total: float | None = _field()
    source: str | None = _field()
    """'generated', 'stored timings of cached items' or 'no item answered'."""
    generated_items: int | None = _field()
    cached_items: int | None = _field()
    failed_items: int | None = _field()


@dataclass(frozen=True, kw_only=True)
class Throughput(_Part):
    examples_per_s: float | None = _field()
    completion_tokens_per_s: float | None = _field()


@dataclass(frozen=True, kw_only=True)
class TokenCounts(_Part):
    prompt: int | None = _field()
    completion: int | None = _field()


@dataclass(frozen=True, kw_only=True)
class CostSummary(_Part):
    """USD of training and of this evaluation at the price table of `prices_date`; `pricing` says how."""

    train: float | None = _field()
    eval: float | None = _field()
    per_1k_requests: float | None = _field()
    prices_date: str | None = _field()
    pricing: Mapping[str, Any] | None = _field()
    """How each cost was computed (free-form: the bases, the price file, cached items)."""


@dataclass(frozen=True, kw_only=True)
class MachineInfo(_Part):
    """The machine of the run (`machine_info`), with what precision 'auto' resolved to there."""

    hardware: str | None = _field()
    hardware_key: str | None = _field()
    platform: str | None = _field()
    python: str | None = _field()
    torch: str | None = _field()
    transformers: str | None = _field()
    precision_auto: str | None = _field()
    precision_reason: str | None = _field()


@dataclass(frozen=True, kw_only=True)
class Threshold(_Part):
    """The accuracy the test asserted, and where it was set (added after the run, by the pytest gate)."""

    value: float | None = _field()
    file: str | None = _field()
    key: str | None = _field()


@dataclass(frozen=True)
class Training(Mapping[str, Any]):
    """What fine-tuning measured, as its backend wrote it (LoRA: wall time, steps, loss curve, hardware, ...; OpenAI:
    provider, job, trained tokens, ...): a read-only mapping, with typed accessors for what the tools read."""

    values: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _freeze(self.values))  # frozen: the constructor alone sets it

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Training:
        return cls(value)

    def to_json(self) -> dict[str, Any]:
        return _thaw(self.values)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def wall_s(self) -> float | None:
        return self.values.get("wall_s")

    @property
    def steps(self) -> int | None:
        return self.values.get("steps")

    @property
    def cached(self) -> bool:
        """The adapter or job came from an earlier run: nothing was trained this time."""
        return bool(self.values.get("cached", False))

    @property
    def provider(self) -> str | None:
        """Who trained it off this machine ('openai'); None for a LoRA run here."""
        return self.values.get("provider")

    @property
    def trained_tokens(self) -> int | None:
        return self.values.get("trained_tokens")

    @property
    def precision(self) -> str | None:
        return self.values.get("precision")


# ------------------------------------------------------------------------------------------------ the record


@dataclass(frozen=True, kw_only=True)
class Record(_Part):
    """The result of one task x model run. Read with `from_json`, write with `to_json`; fields in the order the
    runner writes their keys (`headline` is "metric", `latency` "latency_s", `cost` "cost_usd").

    >>> record = Record.from_json({
    ...     "schema": 2, "task": "spider", "model": "m", "data": {"split": "val", "n": 2},
    ...     "model_fingerprint": {"base": "m"}, "metric": "execution", "accuracy": 0.5, "ci95": [0.09, 0.91],
    ...     "metrics": {"execution": summarize_metric([True, False])},
    ...     "items": {"val/1": {"execution": True}, "val/2": {"execution": False}},
    ...     "latency_s": {"p50": 0.2}, "cost_usd": {"eval": 0.001}, "machine": {"hardware": "cpu"}})
    >>> record.pair, record.accuracy, record.metric("execution").correct, record.outcome("val/2", "execution")
    (('spider', 'm'), 0.5, 1, False)
    >>> record.errors.count, record.cost.eval, record.latency.p95, record.training is None
    (0, 0.001, None, True)
    >>> Record.from_json(record.to_json()) == record
    True
    >>> try:
    ...     Record.from_json(record.to_json() | {"accuracy": float("nan"), "data": None, "machine": "cpu"})
    ... except RecordError as err:
    ...     err.problems
    ('accuracy = NaN is not a finite number', 'machine = "cpu" is not an object')
    """

    schema: int = _field(SCHEMA)
    task: str = _field(dataclasses.MISSING)
    model: str = _field(dataclasses.MISSING)
    data: DataInfo = _field(codec=_part(DataInfo), factory=DataInfo)
    model_fingerprint: Mapping[str, Any] | None = _field()
    """Base weights, adapter hash, recipe, ... (free-form by backend)."""
    headline: str | None = _field(key="metric")
    """The headline metric, whose value is `accuracy`."""
    accuracy: float | None = _field()
    accuracy_basis: str | None = _field()
    """Which items the accuracy covers, in words (schema 2)."""
    ci95: tuple[float, float] | None = _field()
    metrics: Mapping[str, MetricSummary] = _field(codec=_parts_by_name(MetricSummary), factory=dict)
    items: Mapping[str, Mapping[str, bool | float | None]] = _field(factory=dict)
    """{item id: {metric: true/false, a graded score, or None (not scored)}}."""
    predictions: Mapping[str, str | None] = _field(factory=dict)
    """{item id: the answer, None when it got none (see errors)}."""
    reasons: Mapping[str, Mapping[str, str]] = _field(factory=dict)
    """{item id: {metric: why the answer is wrong}}."""
    errors: ErrorSummary = _field(codec=_part(ErrorSummary), factory=ErrorSummary)
    requests: Mapping[str, Any] | None = _field()
    """How an HTTP model was asked (endpoint, timeout, retries, concurrency); None for local models."""
    latency: LatencySummary = _field(key="latency_s", codec=_part(LatencySummary), factory=LatencySummary)
    throughput: Throughput = _field(codec=_part(Throughput), factory=Throughput)
    tokens: TokenCounts = _field(codec=_part(TokenCounts), factory=TokenCounts)
    cost: CostSummary = _field(key="cost_usd", codec=_part(CostSummary), factory=CostSummary)
    training: Training | None = _field(codec=_part(Training, nullable=True))
    """None for a base model."""
    machine: MachineInfo = _field(codec=_part(MachineInfo), factory=MachineInfo)
    nonfinite_fields: tuple[str, ...] = _field(())
    """Fields the runner nulled because it computed NaN or infinity (written only then; such a record is refused)."""
    threshold: Threshold | None = _field(codec=_part(Threshold, nullable=True))

    _optional: ClassVar[frozenset[str]] = frozenset({"nonfinite_fields", "threshold"})

    @classmethod
    def from_json(cls, value: Mapping[str, Any], *, check: bool = True) -> Record:
        """The record of this JSON (a pytest-benchmark `extra_info`), schema 1 or 2; a schema-1 record reads as a
        run without errors and writes back as it was.

        Raises RecordError naming every field that is missing, of the wrong type, NaN or infinite, or out of range
        (`typed_record_problems`). `check=False` is for the runner's own record only, which must be recorded even
        when it lists `nonfinite_fields` (every reader refuses it then).
        """
        record = dict(value) if isinstance(value, Mapping) else value
        if check and (problems := typed_record_problems(record)):
            raise RecordError(problems)
        return super().from_json(record)

    def to_json(self) -> dict[str, Any]:
        """Strict JSON (no NaN: the record is checked or nulled when made), as fresh dicts and lists."""
        return super().to_json()

    @property
    def pair(self) -> tuple[str, str]:
        """(task, model): how the records of two runs are matched."""
        return self.task, self.model

    def metric(self, name: str) -> MetricSummary:
        """The summary of metric `name`; an empty one (value and n None) when the record has none."""
        return self.metrics.get(name) or MetricSummary()

    @property
    def headline_metric(self) -> MetricSummary:
        return self.metric(self.headline or "")

    def metric_value(self, name: str) -> float | None:
        """The recorded value of metric `name` as a float; for the headline metric of a record whose summary has no
        value (hand-made, or older), its `accuracy`."""
        summary = self.metrics.get(name)
        if summary is not None and not summary.null and "value" not in summary.absent:
            value = summary.value
        else:
            value = self.accuracy if self.headline == name else None
        return None if value is None else float(value)

    def outcome(self, item_id: str, metric: str) -> bool | float | None:
        """Item `item_id`'s outcome on `metric`: true/false, a graded score, or None (not scored, or no such item)."""
        return self.items.get(item_id, {}).get(metric)
