"""The result record: what one benchmark test stores in pytest-benchmark's `extra_info`.

It is the contract that `ftbench diff`, `ftbench report` and the `--baseline` gate read, so it is versioned
(`SCHEMA`), holds JSON values only, and is filled before the accuracy assert so a failing test still records.

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

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
"""Schema 1 lacks `errors` and `requests`: read as a run in which no item failed."""
FIRST_ERRORS = 5
"""How many errors a record lists in full (`errors.first`); `errors.items` keeps every one."""

import math
import platform
from collections.abc import Sequence
from typing import Any

from benchmarks.stats import percentile, wilson_interval
from models.base import Completion


def summarize_metric(values: Sequence[bool | float | None]) -> dict[str, Any]:
    """Accuracy-style summary of one metric's per-item outcomes (None = not scored, left out of n).

    Booleans get a Wilson 95% interval; floats (slot F1) their mean with a normal-approximation interval.

    >>> summarize_metric([True, False, None, True])["value"]
    0.6666666666666666
    >>> summarize_metric([None])["n"]
    0
    """
    scored = [v for v in values if v is not None]
    n = len(scored)
    if n == 0:
        return {"value": None, "n": 0, "ci95": None}
    if all(isinstance(v, bool) for v in scored):
        correct = sum(scored)
        return {"value": correct / n, "correct": correct, "n": n, "ci95": list(wilson_interval(correct, n))}
    mean = sum(scored) / n
    spread = math.sqrt(sum((v - mean) ** 2 for v in scored) / (n - 1)) if n > 1 else 0.0
    half = 1.96 * spread / math.sqrt(n)
    return {"value": mean, "n": n, "ci95": [max(0.0, mean - half), min(1.0, mean + half)]}


def error_summary(item_errors: dict[str, dict[str, str]], n: int) -> dict[str, Any]:
    """The record's `errors` from {item id: {stage: reason}}; an item with any error counts once.

    >>> summary = error_summary({"val/1": {"generate": "http 503 after 6 attempts: Service Unavailable"}}, 4)
    >>> summary["count"], summary["rate"], summary["by_reason"]
    (1, 0.25, {'http 503 after 6 attempts': 1})
    """
    by_reason: dict[str, int] = {}
    first = []
    for item_id, stages in item_errors.items():
        for stage, reason in stages.items():
            kind = reason.split(":")[0]  # 'http 503 after 6 attempts', 'scorer error', 'gold query failed', ...
            by_reason[kind] = by_reason.get(kind, 0) + 1
            if len(first) < FIRST_ERRORS:
                first.append({"id": item_id, "stage": stage, "reason": reason})
    return {"count": len(item_errors), "rate": len(item_errors) / n if n else 0.0, "by_reason": by_reason,
            "first": first, "items": item_errors}


def nonfinite_to_null(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """`value` with every NaN or infinity replaced by None (JSON has no spelling for them), and their paths.

    >>> nonfinite_to_null({"latency_s": {"p50": float("nan"), "p95": 1.0}, "ci95": [0.1, float("inf")]})
    ({'latency_s': {'p50': None, 'p95': 1.0}, 'ci95': [0.1, None]}, ['latency_s.p50', 'ci95[1]'])
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None, [path]
    if isinstance(value, dict):
        pairs = [(k, nonfinite_to_null(v, f"{path}.{k}" if path else str(k))) for k, v in value.items()]
        return {k: v for k, (v, _) in pairs}, [p for _, (_, found) in pairs for p in found]
    if isinstance(value, (list, tuple)):
        items = [nonfinite_to_null(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return [v for v, _ in items], [p for _, found in items for p in found]
    return value, []


def first_errors(errors: dict[str, Any], shown: int = 3) -> str:
    """The first errors of a record's `errors`, one clause each, for messages.

    >>> first_errors(error_summary({"val/1": {"generate": "timeout after 60 s x 6"}}, 4))
    'val/1 generate: timeout after 60 s x 6'
    """
    return "; ".join(f"{e['id']} {e['stage']}: {e['reason']}" for e in errors["first"][:shown])


def errors_of(record: dict[str, Any]) -> dict[str, Any]:
    """A record's `errors`, also for schema 1 records (which had none)."""
    return record.get("errors") or {"count": 0, "rate": 0.0, "by_reason": {}, "first": [], "items": {}}


def latency_summary(completions: Sequence[Completion], total_s: float) -> dict[str, Any]:
    """Per-item latency percentiles of the items answered in this run (failed attempts are left out); when every
    answer came from the prediction cache, of the timings stored with them, labelled so. `total` is this run's wall
    time either way."""
    answered = [c for c in completions if c.error is None]
    generated = [c.latency_s for c in answered if not c.cached]
    per_item = generated or [c.latency_s for c in answered]
    source = "generated" if generated or not answered else "stored timings of cached items"
    if not per_item:  # every item failed: no latency to report (JSON has no NaN)
        return {"p50": None, "p95": None, "mean": None, "total": total_s, "source": "no item answered",
                "generated_items": 0, "cached_items": 0, "failed_items": len(completions)}
    return {"p50": percentile(per_item, 50), "p95": percentile(per_item, 95), "mean": sum(per_item) / len(per_item), "total": total_s,
            "source": source, "generated_items": len(generated), "cached_items": len(answered) - len(generated),
            "failed_items": len(completions) - len(answered)}


def machine_info(hardware_description: str, hardware_key: str) -> dict[str, str]:
    import torch
    import transformers

    from models.precision import native_precision

    auto, why = native_precision("auto")
    return {"hardware": hardware_description, "hardware_key": hardware_key, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "precision_auto": auto, "precision_reason": why}


# ------------------------------------------------------------------------------------------------ validation

MAX_DEPTH = 64
"""Deepest nesting a record may have. Real records are about 5 levels deep; a deeper one is hostile or broken, and
would exhaust the recursion of the readers (json.dumps, the fingerprint diff)."""
LARGEST_COST_OR_TIME = 1e12
"""Above this a cost (USD) or time (s) is a units or overflow bug, not a measurement; refusing it keeps every sum,
ratio and figure axis of the readers finite (matplotlib's ticks overflow near the float limit)."""
_MISSING = object()


def is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that is neither NaN nor infinite; an int too large for a float is not finite.

    >>> is_finite_number(0.5), is_finite_number(True), is_finite_number(float("nan")), is_finite_number(10**400)
    (True, False, False, False)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # math.isfinite converts an int to float first
        return False


def validate_record(record: Any) -> list[str]:
    """Every problem that keeps `ftbench diff` and `ftbench report` from reading `record`, one line each naming the
    field and its value: a wrong type, a number that is NaN or infinite (Python's json reads NaN and Infinity),
    a field the runner nulled because it computed one (`nonfinite_fields`), a value out of range (accuracies,
    rates and interval bounds in [0, 1]; counts >= 0; costs and latencies in [0, LARGEST_COST_OR_TIME]), or
    nesting deeper than MAX_DEPTH. Empty when the record is fine. Schema 1 and 2 are checked alike: a field a
    record lacks is not a problem (schema 1 has no `errors`), and null stands for "not measured", as the runner
    writes it (the latency of a run without answers, the value of a metric nothing was scored on).

    >>> validate_record({"schema": 2, "task": "spider", "model": "m", "latency_s": {"p50": float("inf")}})
    ['latency_s.p50 = Infinity is not a finite number']
    >>> validate_record({"schema": 1, "task": "spider", "model": "m", "metrics": [], "data": {"n": -1}})
    ['metrics = [] is not an object', 'data.n = -1 is negative']
    """
    if not isinstance(record, dict):
        return [f"the record = {_shown(record)} is not an object"]
    too_deep, non_finite = _walk(record)
    if too_deep:  # checked alone: showing such values would recurse as deep as they go
        return too_deep
    check = _Checks()
    check.fields(record)
    return list((check.found | {p: m for p, m in non_finite.items() if p not in check.found}).values())


def _walk(record: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """(nesting problems, {path: problem} for every non-finite number anywhere in the record). Iterative, so a
    deeply nested record cannot exhaust the stack here."""
    too_deep, non_finite = [], {}
    stack = [(str(key), value, 1) for key, value in reversed(record.items())]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, (dict, list)) and value:
            if depth >= MAX_DEPTH:
                too_deep.append(f"{path} is nested more than {MAX_DEPTH} levels deep; a record is about 5 deep")
                continue
            children = value.items() if isinstance(value, dict) else enumerate(value)
            form = "{}.{}" if isinstance(value, dict) else "{}[{}]"
            stack += reversed([(form.format(path, key), child, depth + 1) for key, child in children])
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not is_finite_number(value):
            non_finite[path] = f"{path} = {_shown(value)} is not a finite number"
    return too_deep, non_finite


def _shown(value: Any, width: int = 40) -> str:
    """The value as JSON spells it (NaN, Infinity, true, null), cut to `width` characters."""
    import json  # only to show a bad value

    if isinstance(value, int) and not isinstance(value, bool) and not is_finite_number(value):
        return "an integer too large for a float"  # str() of it may be refused (int_max_str_digits)
    text = json.dumps(value, default=repr)
    return text if len(text) <= width else text[: width - 1] + "…"


class _Checks:
    """The typed fields `ftbench diff` and `ftbench report` read, checked; `found` maps each field path to its
    problem (the first one found, so a field is reported once)."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}

    def problem(self, path: str, value: Any, why: str) -> None:
        self.found.setdefault(path, f"{path} is missing" if value is _MISSING else f"{path} = {_shown(value)} {why}")

    def number(self, path: str, value: Any, high: float = math.inf, integer: bool = False) -> None:
        """A number in [0, high] (every number the tools read is a share, a count, a cost or a time); null is fine."""
        if value is None or value is _MISSING:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(path, value, "is not a number")
        elif not is_finite_number(value):
            self.problem(path, value, "is not a finite number")
        elif integer and not isinstance(value, int):
            self.problem(path, value, "is not a whole number")
        elif value < 0:
            self.problem(path, value, "is negative")
        elif value > high:
            beyond = ": no real cost (USD) or time (s) is that large" if high == LARGEST_COST_OR_TIME else ""
            self.problem(path, value, f"is above {high:g}{beyond}")

    def text(self, path: str, value: Any, required: bool = False) -> None:
        if required and (value is _MISSING or value is None or value == ""):
            self.problem(path, value, "is required (a non-empty string)")
        elif value is not _MISSING and value is not None and not isinstance(value, str):
            self.problem(path, value, "is not a string")

    def mapping(self, path: str, value: Any) -> dict[str, Any]:
        """The object to look into: {} when absent or null (readers treat both as empty), or not an object."""
        if value is None or value is _MISSING:
            return {}
        if not isinstance(value, dict):
            self.problem(path, value, "is not an object")
            return {}
        return value

    def interval(self, path: str, value: Any) -> None:
        if value is None or value is _MISSING:
            return
        if not (isinstance(value, list) and len(value) == 2):
            self.problem(path, value, "is not a [low, high] pair")
            return
        for i, bound in enumerate(value):
            self.number(f"{path}[{i}]", bound, high=1)
        if all(is_finite_number(b) for b in value) and value[0] > value[1]:
            self.problem(path, value, "has its low bound above its high bound")

    def fields(self, record: dict[str, Any]) -> None:
        get = record.get
        if type(get("schema")) is not int or get("schema") not in READABLE_SCHEMAS:
            self.problem("schema", get("schema", _MISSING), f"is not a schema this ftbench reads {READABLE_SCHEMAS}")
        self.text("task", get("task", _MISSING), required=True)
        self.text("model", get("model", _MISSING), required=True)
        self.text("metric", get("metric", _MISSING))
        self.number("accuracy", get("accuracy", _MISSING), high=1)
        self.interval("ci95", get("ci95", _MISSING))
        for name, entry in self.mapping("metrics", get("metrics", _MISSING)).items():
            self.metric(f"metrics.{name}", self.mapping(f"metrics.{name}", entry))
        for item_id, outcomes in self.mapping("items", get("items", _MISSING)).items():
            for metric, outcome in self.mapping(f"items.{item_id}", outcomes).items():
                if not isinstance(outcome, bool):  # true/false, a graded score in [0, 1], or null (not scored)
                    self.number(f"items.{item_id}.{metric}", outcome, high=1)
        for section, keys in (("latency_s", ("p50", "p95", "mean", "total")),
                              ("cost_usd", ("train", "eval", "per_1k_requests")), ("data", ("n",))):
            values = self.mapping(section, get(section, _MISSING))
            for key in keys:
                if key == "n":
                    self.number(f"{section}.{key}", values.get(key), integer=True)
                else:
                    self.number(f"{section}.{key}", values.get(key), high=LARGEST_COST_OR_TIME)
        for section, key in (("cost_usd", "prices_date"), ("data", "fingerprint"), ("machine", "hardware"),
                             ("machine", "precision_auto"), ("training", "precision")):
            self.text(f"{section}.{key}", self.mapping(section, get(section, _MISSING)).get(key, _MISSING))
        self.errors(get("errors", _MISSING))
        self.nulled(get("nonfinite_fields", _MISSING))

    def nulled(self, paths: Any) -> None:
        """Fields the runner nulled because it computed NaN or Infinity (`nonfinite_to_null`): read as null they
        would pass every gate unseen, so they are refused like the non-finite numbers they were."""
        if paths is None or paths is _MISSING:
            return
        if not (isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
            self.problem("nonfinite_fields", paths, "is not a list of field paths")
            return
        for path in paths:
            self.found.setdefault(path, f"{path} was NaN or infinite when the run computed it (nulled, listed in "
                                        f"nonfinite_fields): a bug in that run, not a measurement")

    def metric(self, path: str, entry: dict[str, Any]) -> None:
        self.number(f"{path}.value", entry.get("value"), high=1)
        for key in ("n", "correct", "errors"):
            self.number(f"{path}.{key}", entry.get(key), integer=True)
        self.interval(f"{path}.ci95", entry.get("ci95"))
        correct, n = entry.get("correct"), entry.get("n")
        if is_finite_number(correct) and is_finite_number(n) and correct > n:
            self.problem(f"{path}.correct", correct, f"is more than {path}.n = {n}")

    def errors(self, value: Any) -> None:
        """`errors` (schema 2): when it says anything, it must say it all, as `ftbench diff` prints every part."""
        errors = self.mapping("errors", value)
        if not errors:
            return
        for key in ("count", "rate", "by_reason", "first"):
            if errors.get(key) is None:
                self.problem(f"errors.{key}", errors.get(key, _MISSING), "is required when errors is given")
        self.number("errors.count", errors.get("count"), integer=True)
        self.number("errors.rate", errors.get("rate"), high=1)
        for reason, count in self.mapping("errors.by_reason", errors.get("by_reason")).items():
            self.number(f"errors.by_reason.{reason}", count, integer=True)
        first = errors.get("first")
        if first is not None and not isinstance(first, list):
            self.problem("errors.first", first, "is not a list")
        for i, entry in enumerate(first if isinstance(first, list) else []):
            entry = self.mapping(f"errors.first[{i}]", entry)
            for key in ("id", "stage", "reason"):
                self.text(f"errors.first[{i}].{key}", entry.get(key, _MISSING), required=True)
        for item_id, stages in self.mapping("errors.items", errors.get("items")).items():
            for stage, reason in self.mapping(f"errors.items.{item_id}", stages).items():
                self.text(f"errors.items.{item_id}.{stage}", reason)
