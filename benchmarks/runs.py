"""Reading a benchmark run: the ftbench records of one pytest-benchmark JSON file, checked, keyed by (task, model).

A run file is what `pytest benchmarks` writes with `--benchmark-json`, `--benchmark-save` or `--benchmark-autosave`;
the ftbench records in it are the `extra_info` that carries `"schema"` (see `benchmarks/record.py`).

Every record is read as a typed `benchmarks.record.Record` (`Record.from_json`), which checks it first: each
documented section present and of its type, and every number finite (Python's json reads NaN and Infinity, which
would compare as "no change") and in range. A file with a bad record is refused as a whole, listing every problem;
so is a file that is unreadable, not JSON, nested too deeply, not pytest-benchmark JSON, holds no ftbench record or
one of an unknown schema version, or records one (task, model) twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.record import READABLE_SCHEMAS, SCHEMA, Record, RecordError, nonfinite_to_null
from models.errors import ConfigError

Pair = tuple[str, str]
"""(task, model): how records of two runs are matched."""
LISTED_PROBLEMS = 50
"""Malformed values listed in full per file; a file broken everywhere (every item NaN) gets a count beyond that."""


class DiffInputError(ConfigError):
    """A file or record that `ftbench diff` cannot use; the message names the file and the reason."""


@dataclass(frozen=True)
class Run:
    """One pytest-benchmark file: where it came from and its ftbench records by (task, model)."""

    path: str
    datetime: str | None
    commit: str | None
    records: dict[Pair, Record]
    """The benchmark records (test_accuracy): what diff compares and gates."""
    serving: dict[Pair, dict[str, Any]] = field(default_factory=dict)
    """Serving records (test_serving, kind 'serving'): deploy throughput and cost, for the report's decision."""
    estimates: dict[Pair, dict[str, Any]] = field(default_factory=dict)
    """Estimate records (`ftbench estimate --json`, kind 'estimate'): an API candidate priced, not run."""

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "datetime": self.datetime, "commit": self.commit}


def load_records(path: str | os.PathLike[str]) -> dict[Pair, Record]:
    """The benchmark records of a pytest-benchmark JSON file, keyed by (task, model); raises DiffInputError, also for
    a file with none (serving or estimate records alone cannot be a --baseline)."""
    records = read_run(path).records
    if not records:
        raise DiffInputError(f"{path}: it holds no benchmark record (test_accuracy), only serving or estimate "
                             f"records; pass the JSON of a `pytest benchmarks` run")
    return records


def read_run(path: str | os.PathLike[str]) -> Run:
    """Read a pytest-benchmark JSON file and check its ftbench records; raises DiffInputError."""
    document = _read_json(Path(path))
    benchmarks = _benchmark_list(document, path)
    commit = document.get("commit_info") or {}
    commit = commit.get("id") if isinstance(commit, dict) else None
    side = {kind: _side_records(benchmarks, kind, path) for kind in SIDE_KINDS}
    return Run(
        path=str(path),
        datetime=_text_or_none(document.get("datetime")),  # both are only shown: a wrong type is dropped, not fatal
        commit=_text_or_none(commit),
        records=_records_by_pair([b for b in benchmarks if _kind(b) is None], path, any(side.values())),
        serving=side["serving"], estimates=side["estimate"],
    )


SIDE_KINDS = {"serving": ("task", "model", "latency_slo_s", "sustainable", "cost_usd", "failure"),
              "estimate": ("task", "model", "cost_usd")}
"""Records beside the benchmark records, by `kind`, and the keys each must have."""


def _kind(benchmark: dict[str, Any]) -> str | None:
    data = benchmark.get("extra_info")
    return data.get("kind") if isinstance(data, dict) else None


def _side_records(benchmarks: list[dict[str, Any]], kind: str, path: object) -> dict[Pair, dict[str, Any]]:
    """The records of one side kind by (task, model), checked: the keys and types the report reads, finite numbers
    only, one record per pair."""
    found: dict[Pair, dict[str, Any]] = {}
    problems: list[str] = []
    for benchmark in (b for b in benchmarks if _kind(b) == kind):
        data = benchmark["extra_info"]
        name = _text_or_none(benchmark.get("name")) or "?"
        found_problems = _side_problems(kind, data)
        problems += [f"{path}: {kind} record {name}: {p}" for p in found_problems]
        if found_problems:
            continue
        pair = (data["task"], data["model"])
        if pair in found:
            raise DiffInputError(f"{path}: task {pair[0]!r} x model {pair[1]!r} has two {kind} records; keep one "
                                 f"per file")
        found[pair] = data
    if problems:
        raise DiffInputError(_malformed(path, problems))
    return found


def _side_problems(kind: str, data: dict[str, Any]) -> list[str]:
    problems = [f"{key} is missing" for key in SIDE_KINDS[kind] if key not in data]
    problems += [f"{name} = {data.get(name)!r} is not a name" for name in ("task", "model")
                 if name in data and not (isinstance(data[name], str) and data[name])]
    problems += [f"{field_name} is not a finite number" for field_name in nonfinite_to_null(data)[1]]
    cost = data.get("cost_usd")
    if "cost_usd" in data and not isinstance(cost, dict):
        return problems + [f"cost_usd = {cost!r} is not an object"]
    numbers = {"serving": (("cost_usd", "hourly"), ("sustainable", "requests_per_s"), ("latency_slo_s",)),
               "estimate": (("cost_usd", "train"), ("cost_usd", "per_1k_requests"))}[kind]
    for path in numbers:
        value = data
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        optional = kind == "serving" and path[0] != "latency_slo_s"  # a run that met no SLO has no figures
        if (value is None and not optional) or (value is not None and not _non_negative(value)):
            problems.append(f"{'.'.join(path)} = {value!r} is not a number >= 0")
    if kind == "serving" and not isinstance(data.get("sustainable"), (dict, type(None))):
        problems.append(f"sustainable = {data['sustainable']!r} is not an object or null")
    if kind == "serving" and not isinstance(data.get("failure"), (str, type(None))):
        problems.append(f"failure = {data['failure']!r} is not text or null")
    return problems


def _non_negative(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DiffInputError(
            f"{path}: cannot read it ({error}); pass a file written by pytest --benchmark-json"
        ) from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DiffInputError(
            f"{path}: not JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
            f"pass a file written by pytest --benchmark-json"
        ) from error
    except RecursionError as error:  # json's parser recurses once per nesting level
        raise DiffInputError(
            f"{path}: JSON nested too deeply to read (about 1000 levels or more; a pytest-benchmark file is under "
            f"10 deep); pass a file written by pytest --benchmark-json"
        ) from error
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise DiffInputError(f"{path}: not readable JSON ({error}); pass a file written by pytest --benchmark-json") \
            from error


def _benchmark_list(document: Any, path: object) -> list[dict[str, Any]]:
    if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), list):
        raise DiffInputError(
            f"{path}: not pytest-benchmark JSON (no top-level 'benchmarks' list); "
            f"pass a file written by pytest --benchmark-json, --benchmark-save or --benchmark-autosave"
        )
    return [b for b in document["benchmarks"] if isinstance(b, dict)]


def _records_by_pair(benchmarks: list[dict[str, Any]], path: object, others: bool = False) -> dict[Pair, Record]:
    records: dict[Pair, Record] = {}
    names: dict[Pair, str] = {}
    problems: list[str] = []
    for benchmark in benchmarks:
        data = benchmark.get("extra_info") or {}
        if not isinstance(data, dict) or "schema" not in data:
            continue  # a plain timing benchmark, not an ftbench record
        name = _text_or_none(benchmark.get("fullname")) or _text_or_none(benchmark.get("name")) or "?"
        _check_schema(data, f"{path}: benchmark {name}")
        try:
            record = Record.from_json(data)
        except RecordError as error:  # keep going: the message lists every bad record of the file, not the first
            pair = data.get("task"), data.get("model")
            named = all(isinstance(part, str) and part for part in pair)
            where = f"{pair[0]} / {pair[1]}" if named else f"benchmark {name}"  # no pair to name: the test's name
            problems += [f"{path}: {where}: {problem}" for problem in error.problems]
            continue
        if record.pair in records:
            raise DiffInputError(
                f"{path}: task {record.task!r} x model {record.model!r} is recorded twice "
                f"({names[record.pair]} and {name}); diff one run per file"
            )
        records[record.pair], names[record.pair] = record, name
    if problems:
        raise DiffInputError(_malformed(path, problems))
    if not records and not others:
        raise DiffInputError(
            f"{path}: none of its {len(benchmarks)} benchmarks carries an ftbench record (extra_info with 'schema'); "
            f"pass the JSON of a `pytest benchmarks` run"
        )
    return records


def _check_schema(record: dict[str, Any], where: str) -> None:
    """An unknown schema version is refused on its own: its other fields cannot be judged by this version."""
    schema = record["schema"]
    if schema not in READABLE_SCHEMAS:
        shown = repr(schema)[:40] if isinstance(schema, (str, int, float)) else f"of type {type(schema).__name__}"
        raise DiffInputError(
            f"{where}: record schema {shown}, but this ftbench reads schemas "
            f"{', '.join(map(str, READABLE_SCHEMAS))} (it writes {SCHEMA}); "
            f"re-run the benchmarks with this version, or diff with the ftbench version that wrote the file"
        )


def _malformed(path: object, problems: list[str]) -> str:
    listed = problems[:LISTED_PROBLEMS]
    more = len(problems) - len(listed)
    return "\n  ".join([
        f"{path}: {len(problems)} malformed value(s) in its ftbench records, so none of it is used: a record "
        f"holds finite numbers and the types documented in benchmarks/record.py. Rerun the benchmark that wrote it "
        f"(or fix the tool that edited it):",
        *listed,
        *([f"... and {more} more"] if more else []),
    ])


def refuse_overwriting_inputs(
    outputs: Sequence[str | os.PathLike[str]], inputs: Sequence[str | os.PathLike[str]]
) -> None:
    """Raise DiffInputError when an output path is one of the input files (same path, link or hard link)."""
    for output in outputs:
        for source in inputs:
            if _same_file(Path(output), Path(source)):
                raise DiffInputError(f"refusing to write {output}: it is the input file {source}; choose another path")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
