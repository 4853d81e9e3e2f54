"""Spider's evaluation files scored row by row, for `ftbench score-sql` (benchmarks/cli/score_sql.py).

Reads the official evaluator's formats (taoyds/test-suite-sql-eval ``evaluation.py``): the gold file has one
``SQL<TAB>db_id`` per line, the prediction file one SQL per line (an empty line is an empty prediction), databases
live at ``DIR/<db_id>/<db_id>.sqlite``. Unlike the official tool, files of different lengths are refused.

Schemas for ``execution_synth`` come from ``--context-file`` (rows with a ``context`` field, aligned with the gold
file, e.g. spider_create_context_val.json), else from the row's sqlite database, else from ``--table`` (Spider's
tables.json, which also covers databases whose file is missing). The row records and the summary are those the
command prints; its docstring describes them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from benchmarks.metrics.sql import METRICS, score_sql
from benchmarks.metrics.sql.synth import Table, schema_to_context
from benchmarks.record import summarize_metric
from benchmarks.stats import wilson_interval

ERROR_REASONS_SHOWN = 3
_SPIDER_TYPES = {"number": "NUMERIC", "boolean": "NUMERIC", "text": "TEXT", "time": "TEXT"}


class InputError(Exception):
    """Bad command-line input; the message says which file/line and what to do."""


@dataclass(frozen=True)
class Row:
    index: int
    gold: str
    db_id: str
    pred: str
    context: str | None


def _read_lines(path: Path, role: str) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read the {role} file {path}: {error.strerror}; check the --{role} path") from error
    try:
        text = data.decode("utf-8-sig")  # a BOM (Windows editors) is not part of the first line
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputError(
            f"{path} line {line} is not UTF-8 text ({error.reason}); re-save the {role} file as UTF-8"
        ) from error
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return lines


def read_gold(path: Path) -> list[tuple[str, str]]:
    lines = _read_lines(path, "gold")
    while lines and not lines[-1].strip():
        lines.pop()
    pairs = []
    for number, line in enumerate(lines, start=1):
        sql, tab, db_id = line.rpartition("\t")
        if not tab or not sql.strip() or not db_id.strip():
            raise InputError(f"{path} line {number} is not 'SQL<TAB>db_id': {line[:80]!r}; fix the gold file")
        pairs.append((sql.strip(), db_id.strip()))
    return pairs


def read_contexts(path: Path, gold: list[tuple[str, str]]) -> list[str]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as error:
        raise InputError(f"cannot read the context file {path}: {error.strerror}; check --context-file") from error
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(f"{path} is not a JSON file ({error}); --context-file wants a JSON list of rows") from error
    if not isinstance(rows, list) or len(rows) != len(gold):
        count = len(rows) if isinstance(rows, list) else "no list of"
        raise InputError(f"{path} has {count} rows but the gold file has {len(gold)}; they must be aligned")
    contexts = []
    for index, (row, (_, db_id)) in enumerate(zip(rows, gold)):
        if not isinstance(row, dict) or not isinstance(row.get("context"), str):
            raise InputError(f"{path} row {index} has no 'context' string; every row needs one")
        if row.get("db_id", db_id) != db_id:
            raise InputError(f"{path} row {index} has db_id {row['db_id']!r} but gold line {index + 1} has {db_id!r}; "
                             "the files are not aligned")
        contexts.append(row["context"])
    return contexts


def read_tables(path: Path) -> dict[str, str]:
    """db_id -> CREATE TABLE text, from Spider's tables.json."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8-sig"))
        schemas = {}
        for entry in entries:
            columns: list[list[tuple[str, str]]] = [[] for _ in entry["table_names_original"]]
            keys: list[list[str]] = [[] for _ in entry["table_names_original"]]
            names = entry["column_names_original"]
            for (table_index, name), spider_type in zip(names, entry["column_types"]):
                if table_index >= 0:
                    columns[table_index].append((name, _SPIDER_TYPES.get(spider_type, "")))
            for key in entry["primary_keys"]:
                table_index, name = names[key[0] if isinstance(key, list) else key]
                keys[table_index].append(name.lower())
            tables = [Table(name, tuple(cols), frozenset(key) if len(key) == 1 else frozenset())
                      for name, cols, key in zip(entry["table_names_original"], columns, keys)]
            schemas[entry["db_id"]] = schema_to_context(tables)
        return schemas
    except OSError as error:
        raise InputError(f"cannot read the tables file {path}: {error.strerror}; check --table") from error
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise InputError(
            f"{path} is not a Spider tables.json ({type(error).__name__}: {error}); check --table"
        ) from error


def load_rows(args: argparse.Namespace) -> list[Row]:
    gold = read_gold(args.gold)
    preds = _read_lines(args.pred, "pred")
    if len(gold) != len(preds):
        raise InputError(f"misaligned files: {args.gold} has {len(gold)} lines but {args.pred} has {len(preds)}; "
                         "there must be one prediction line per gold line (empty line = empty prediction)")
    if not args.db.is_dir():
        raise InputError(f"database folder {args.db} does not exist; --db wants DIR with DIR/<db_id>/<db_id>.sqlite")
    contexts: list[str | None] = read_contexts(args.context_file, gold) if args.context_file else [None] * len(gold)
    return [Row(index, sql, db_id, pred, context)
            for index, ((sql, db_id), pred, context) in enumerate(zip(gold, preds, contexts))]


def score_row(row: Row, args: argparse.Namespace, tables: dict[str, str]) -> dict:
    db_path = args.db / row.db_id / f"{row.db_id}.sqlite"
    db_exists = db_path.is_file()
    notes: dict[str, str] = {}
    outcomes = score_sql(row.gold, row.pred, db_path=db_path if db_exists else None, context=row.context,
                         schema_fallback=tables.get(row.db_id), timeout_s=args.timeout, max_rows=args.max_rows,
                         distinct=args.distinct, n_databases=args.n_databases, seed=args.seed, notes=notes)
    record: dict = {"index": row.index, "line": row.index + 1, "db_id": row.db_id}
    reasons = [] if db_exists else [f"database missing: {row.db_id}"]
    for name, outcome in outcomes.items():
        record[name] = outcome.to_json() if outcome is not None else None
        if outcome is None and name in notes and name != "execution":  # execution: 'database missing' says it
            hint = " (pass --context-file or --table)" if notes[name].startswith("no schema") else ""
            reasons.append(f"{name}: {notes[name]}{hint}")
    record["reason"] = "; ".join(reasons) or None
    return record


def summarize(records: list[dict], elapsed_s: float, max_row_s: float = 0.0) -> dict:
    """The summary line: per metric the verdicts counted as a record counts them, rows not computed, errors."""
    metrics = {}
    for name in METRICS:
        verdicts = [record[name] for record in records if record[name] is not None and "error" not in record[name]]
        errors = [record[name]["error"] for record in records if record[name] is not None and "error" in record[name]]
        counted = summarize_metric([verdict["correct"] for verdict in verdicts])
        interval = counted["ci95"] or wilson_interval(0, 0)  # no verdict: all of [0, 1], where a record writes null
        metrics[name] = {
            "correct": counted.get("correct", 0),
            "n": counted["n"],
            "accuracy": counted["value"],
            "ci95": [round(bound, 4) for bound in interval],
            "not_computed": sum(record[name] is None for record in records),
            "errors": len(errors),
            "error_reasons": list(dict.fromkeys(errors))[:ERROR_REASONS_SHOWN],
        }
    return {"summary": True, "rows": len(records), "elapsed_s": round(elapsed_s, 2), "max_row_s": round(max_row_s, 3),
            "metrics": metrics}
