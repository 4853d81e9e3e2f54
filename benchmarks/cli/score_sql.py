"""``ftbench score-sql``: score a prediction file against a Spider-format gold file with all four SQL metrics.

Inputs are the official evaluator's formats (taoyds/test-suite-sql-eval ``evaluation.py``): the gold file has one
``SQL<TAB>db_id`` per line, the prediction file one SQL per line (an empty line is an empty prediction), databases
live at ``DIR/<db_id>/<db_id>.sqlite``. Unlike the official tool, files of different lengths are refused (exit 2).

Output, on stdout, one JSON object per line:

- per row: ``{"index": 0, "line": 1, "db_id": ..., "exact": {"correct": true, "reason": null}, "structural": ...,
  "execution": ..., "execution_synth": ..., "reason": null}``. A metric that does not apply is ``null`` and the
  row's ``reason`` says why (``"database missing: wta_1"``, ``"execution_synth: no schema ..."``). A metric that
  failed for a reason other than the prediction is ``{"correct": null, "error": "..."}`` (``gold query failed: ...``,
  ``database unreadable: <path>: ...``, ``scorer error: ...``): neither right nor wrong;
- last: ``{"summary": true, "rows": N, "elapsed_s": ..., "max_row_s": ..., "metrics": {name: {"correct", "n",
  "accuracy", "ci95", "not_computed", "errors", "error_reasons"}}}``. ``n`` counts only rows with a verdict, so rows
  without a database or with an error are left out of the accuracy instead of counted wrong. ``ci95`` is a Wilson
  interval; ``error_reasons`` holds the first few distinct error reasons.

Every row gets a record: no prediction can stop the run (see benchmarks.metrics.sql.score). A readable summary table
and the progress bar go to stderr. Exit codes: 0 scored, 1 scored but some metrics have errors (bad data: see the
rows' errors), 2 bad input (missing file, misaligned files, unreadable line). Where ``execution_synth`` finds its
schemas: benchmarks/score_sql.py, which reads and scores the files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from benchmarks.metrics.sql import METRICS
from benchmarks.score_sql import InputError, load_rows, read_tables, score_row, summarize

EXIT_OK, EXIT_METRIC_ERRORS, EXIT_BAD_INPUT = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gold", type=Path, required=True, help="gold file: one 'SQL<TAB>db_id' per line")
    parser.add_argument("--pred", type=Path, required=True, help="predictions: one SQL per line, aligned with --gold")
    parser.add_argument("--db", type=Path, required=True, metavar="DIR", help="databases at DIR/<db_id>/<db_id>.sqlite")
    parser.add_argument("--table", type=Path,
                        help="Spider tables.json: schemas for rows whose database file is missing")
    parser.add_argument("--context-file", type=Path,
                        help="JSON list of rows with 'context' (CREATE TABLE text) aligned with --gold, "
                             "for execution on synthesized databases")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per query (default: %(default)s)")
    parser.add_argument("--max-rows", type=int, default=100_000,
                        help="rows fetched per query at most (default: %(default)s)")
    parser.add_argument("--distinct", choices=("strip", "keep"), default="strip",
                        help="strip DISTINCT from both queries before executing, as the official evaluator "
                             "(default: %(default)s)")
    parser.add_argument("--n-databases", type=int, default=8,
                        help="synthesized databases per row (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthesized databases (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _print_table(summary: dict) -> None:
    print(f"score-sql: {summary['rows']} rows in {summary['elapsed_s']:.1f}s (slowest row {summary['max_row_s']:.2f}s)",
          file=sys.stderr)
    for name, figures in summary["metrics"].items():
        accuracy = "n/a" if figures["accuracy"] is None else f"{figures['accuracy']:.1%}"
        low, high = figures["ci95"]
        print(f"  {name:<16} {figures['correct']:>5}/{figures['n']:<5} {accuracy:>6}  95% CI [{low:.1%}, {high:.1%}]"
              f"  not computed: {figures['not_computed']}, errors: {figures['errors']}", file=sys.stderr)
    for name, figures in summary["metrics"].items():
        for reason in figures["error_reasons"]:
            print(f"  error ({name}): {reason[:300]}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        rows = load_rows(args)
        tables = read_tables(args.table) if args.table else {}
    except InputError as error:
        print(f"ftbench score-sql: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    records = []
    max_row_s = 0.0
    for row in tqdm(rows, desc="score-sql", unit="row", file=sys.stderr, disable=True if args.no_progress else None):
        row_started = time.perf_counter()
        record = score_row(row, args, tables)
        max_row_s = max(max_row_s, time.perf_counter() - row_started)
        records.append(record)
        print(json.dumps(record, ensure_ascii=False), flush=False)
    summary = summarize(records, time.perf_counter() - started, max_row_s)
    print(json.dumps(summary), flush=True)
    _print_table(summary)
    with_errors = sum(any(isinstance(record[name], dict) and "error" in record[name] for name in METRICS)
                      for record in records)
    if with_errors:
        print(f"ftbench score-sql: {with_errors} rows have metrics that could not be computed for a reason other "
              "than the prediction (a failing gold query, an unreadable database): see their 'error' fields",
              file=sys.stderr)
        return EXIT_METRIC_ERRORS
    return EXIT_OK
