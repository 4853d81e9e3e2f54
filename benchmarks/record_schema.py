"""The schema of the result record: its versions, and the checks that a record is one `ftbench diff`,
`ftbench report` and `benchmarks.record.Record` can read (every field its documented type, every number finite and
in range). `benchmarks.record` re-exports them.
"""

from __future__ import annotations

import math
from typing import Any

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
"""Schema 1 lacks `errors` and `requests`: read as a run in which no item failed."""

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
    return _problems(record, typed=False)


REQUIRED_SECTIONS = ("data", "model_fingerprint", "metric", "accuracy", "ci95", "metrics", "items", "latency_s",
                     "cost_usd", "machine")
"""Sections every writer has recorded since schema 1 and the diff and report read (besides schema, task and model).
The others came later (`accuracy_basis`, `errors`, `requests`), are added after the run (`threshold`) or only carried,
and may be absent."""


def typed_record_problems(record: Any) -> list[str]:
    """`validate_record`'s problems, and what a typed `benchmarks.record.Record` needs on top: every section of
    REQUIRED_SECTIONS present, the maps by metric or item objects (never null), and the fields the tools only carry
    (predictions, reasons, requests, throughput, tokens, threshold, the machine's versions, the training's typed
    keys) of their types.

    >>> typed_record_problems({"schema": 2, "task": "spider", "model": "m", "predictions": {"val/1": 7}})[:2]
    ['data is missing', 'model_fingerprint is missing']
    >>> typed_record_problems({"schema": 2, "task": "spider", "model": "m", "predictions": {"val/1": 7}})[-1]
    'predictions.val/1 = 7 is not a string'
    """
    return _problems(record, typed=True)


def _problems(record: Any, typed: bool) -> list[str]:
    if not isinstance(record, dict):
        return [f"the record = {_shown(record)} is not an object"]
    too_deep, non_finite = _walk(record)
    if too_deep:  # checked alone: showing such values would recurse as deep as they go
        return too_deep
    check = _Checks()
    check.fields(record)
    if typed:
        check.carried_fields(record)
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

    def carried_fields(self, record: dict[str, Any]) -> None:
        """The fields `validate_record` leaves alone, as the diff and report only carry them, which a typed record
        holds with their types."""
        get = record.get
        for key in REQUIRED_SECTIONS:
            if key not in record:
                self.problem(key, _MISSING, "")
        errors = self.mapping("errors", get("errors"))
        for path, value, per_item in (("metrics", get("metrics", {}), False),
                                      ("predictions", get("predictions", {}), False),
                                      ("items", get("items", {}), True), ("reasons", get("reasons", {}), True),
                                      ("errors.items", errors.get("items", {}), True)):
            self.not_null(path, value)
            for item_id, entry in value.items() if per_item and isinstance(value, dict) else ():
                self.not_null(f"{path}.{item_id}", entry)
        for key in ("model_fingerprint", "requests"):
            self.mapping(key, get(key))
        self.mapping("cost_usd.pricing", self.mapping("cost_usd", get("cost_usd")).get("pricing"))
        self.text("accuracy_basis", get("accuracy_basis"))
        for section, keys in (("data", ("source", "path", "split")), ("latency_s", ("source",)),
                              ("machine", ("hardware_key", "platform", "python", "torch", "transformers",
                                           "precision_reason")),
                              ("threshold", ("file", "key")), ("training", ("provider",))):
            values = self.mapping(section, get(section))
            for key in keys:
                self.text(f"{section}.{key}", values.get(key))
        for section, keys, integer in (("latency_s", ("generated_items", "cached_items", "failed_items"), True),
                                       ("tokens", ("prompt", "completion"), True),
                                       ("throughput", ("examples_per_s", "completion_tokens_per_s"), False),
                                       ("training", ("steps", "trained_tokens"), True)):
            values = self.mapping(section, get(section))
            for key in keys:
                self.number(f"{section}.{key}", values.get(key), integer=integer)
        self.number("training.wall_s", self.mapping("training", get("training")).get("wall_s"),
                    high=LARGEST_COST_OR_TIME)
        cached = self.mapping("training", get("training")).get("cached")
        if cached is not None and not isinstance(cached, bool):
            self.problem("training.cached", cached, "is not true or false")
        self.number("threshold.value", self.mapping("threshold", get("threshold")).get("value"), high=1)
        for item_id, text in self.mapping("predictions", get("predictions")).items():
            self.text(f"predictions.{item_id}", text)
        for item_id, why in self.mapping("reasons", get("reasons")).items():
            for metric, text in self.mapping(f"reasons.{item_id}", why).items():
                self.text(f"reasons.{item_id}.{metric}", text)

    def not_null(self, path: str, value: Any) -> None:
        if value is None:  # a map by metric or item: an empty one is {}, never null
            self.problem(path, value, "is not an object")

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
