"""Execution comparison with the official Spider semantics (taoyds/test-suite-sql-eval, ``exec_eval.py``).

Two results are equal when some reordering of the prediction's columns makes the rows equal:

- rows are compared as multisets (bag semantics), and in order only when the gold query has a top-level ORDER BY
  (the official tool looks for 'order by' anywhere in the text; see ``orders_rows``);
- column order is free: gold column i may match any prediction column holding the same multiset of values. Columns
  are grouped by that multiset, so the common case has one candidate mapping; ties (e.g. two identical columns) are
  resolved by trying the permutations within each group only (at most ``MAX_COLUMN_ORDERS``). The official tool
  enumerates permutations constrained by per-column value *sets* on 20 sampled rows; both are exact, ours is
  deterministic;
- two empty results are equal whatever their column counts (as in the official tool); otherwise row and column
  counts must agree;
- floats are rounded to ``FLOAT_DIGITS`` significant digits (a relative tolerance of about 1e-6) before comparison,
  so ``avg`` computed in another order still matches; the official tool compares floats exactly. Integers and
  integral floats compare equal (1 == 1.0), strings never equal numbers ('1' != 1), as in Python and the official tool;
- DISTINCT: ``distinct="strip"`` (the official default) deletes every DISTINCT keyword from both queries before they
  run, COUNT(DISTINCT x) included; ``distinct="keep"`` runs them as written;
- the prediction runs as written: the official tool's rewrites of ``> =`` into ``>=`` and of MySQL's
  ``YEAR(CURDATE())`` are not applied (they forgive invalid sqlite);
- a gold query that fails raises GoldQueryError (bad data), a database that cannot be read raises
  UnreadableDatabaseError; a prediction that fails is a wrong Verdict with the sandbox's reason.
- time: each query stops at ``timeout_s``; the prediction also stops at the row's ``deadline`` when one is given
  (the gold is not cut short by time the prediction spent: its failure would not be the prediction's).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from benchmarks.metrics.sql.sandbox import Deadline, execute
from benchmarks.metrics.sql.text import orders_rows, strip_distinct, too_long
from benchmarks.metrics.sql.verdict import ExecResult, GoldQueryError, Verdict

FLOAT_DIGITS = 7
MAX_COLUMN_ORDERS = 5040
DISTINCT_MODES = ("strip", "keep")


def canonical_value(value: object) -> object:
    """Round floats to FLOAT_DIGITS significant digits; other values pass through.

    >>> canonical_value(0.1 + 0.2) == canonical_value(0.3)
    True
    >>> canonical_value(2.0) == 2, canonical_value("2") == 2
    (True, False)
    """
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{FLOAT_DIGITS - 1}e}")
    return value


def _canonical_rows(rows: Sequence[tuple]) -> list[tuple]:
    return [tuple(canonical_value(value) for value in row) for row in rows]


def _column_signature(rows: list[tuple], column: int) -> frozenset:
    return frozenset(Counter(row[column] for row in rows).items())


def column_orders(gold: list[tuple], pred: list[tuple]) -> Iterator[tuple[int, ...]]:
    """Candidate mappings gold column i -> pred column order[i]: only columns with equal value multisets pair up.

    >>> list(column_orders([(1, "a"), (2, "b")], [("a", 1), ("b", 2)]))
    [(1, 0)]
    >>> list(column_orders([(1, 1)], [(1, 2)]))
    []
    """
    width = len(gold[0])
    gold_groups: dict[frozenset, list[int]] = {}
    pred_groups: dict[frozenset, list[int]] = {}
    for column in range(width):
        gold_groups.setdefault(_column_signature(gold, column), []).append(column)
        pred_groups.setdefault(_column_signature(pred, column), []).append(column)
    if any(len(pred_groups.get(signature, ())) != len(columns) for signature, columns in gold_groups.items()):
        return
    groups = list(gold_groups.items())
    choices = [itertools.permutations(pred_groups[signature]) for signature, _ in groups]
    for picked in itertools.islice(itertools.product(*choices), MAX_COLUMN_ORDERS):
        order = [0] * width
        for (_, gold_columns), pred_columns in zip(groups, picked):
            for gold_column, pred_column in zip(gold_columns, pred_columns):
                order[gold_column] = pred_column
        yield tuple(order)


def results_equal(gold_rows: Sequence[tuple], pred_rows: Sequence[tuple], *, ordered: bool) -> bool:
    """Official result equality: bag of rows (a list when ordered), columns in any order, floats with tolerance.

    >>> results_equal([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], ordered=False)
    True
    >>> results_equal([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], ordered=True)
    False
    >>> results_equal([(1,), (1,)], [(1,)], ordered=False)
    False
    >>> results_equal([], [], ordered=False)
    True
    """
    if not gold_rows and not pred_rows:
        return True
    if len(gold_rows) != len(pred_rows) or len(gold_rows[0]) != len(pred_rows[0]):
        return False
    gold, pred = _canonical_rows(gold_rows), _canonical_rows(pred_rows)
    gold_bag = None if ordered else Counter(gold)
    for order in column_orders(gold, pred):
        permuted = [tuple(row[column] for column in order) for row in pred]
        if permuted == gold if ordered else Counter(permuted) == gold_bag:
            return True
    return False


def describe_difference(gold: ExecResult, pred: ExecResult) -> str:
    gold_shape = f"{len(gold.rows or [])} rows x {len(gold.columns)} cols"
    pred_shape = f"{len(pred.rows or [])} rows x {len(pred.columns)} cols"
    return f"rows differ (gold {gold_shape}, pred {pred_shape})"


def prepare_pair(gold: str, pred: str, distinct: str) -> tuple[str, str]:
    if distinct not in DISTINCT_MODES:
        raise ValueError(f"distinct must be one of {DISTINCT_MODES}, got {distinct!r}")
    if distinct == "strip":
        return strip_distinct(gold), strip_distinct(pred)
    return gold, pred


def gold_failed(gold: str, where: str, error: str | None) -> GoldQueryError:
    return GoldQueryError(
        f"gold query failed on {where}: {error}. Query: {gold!r}. "
        "The gold data is bad (or the time budget too small): fix the gold file/database or raise timeout_s."
    )


def execution_match(
    gold: str,
    pred: str,
    db_path: Path,
    *,
    distinct: str = "strip",
    timeout_s: float = 2.0,
    max_rows: int = 100_000,
    deadline: Deadline | None = None,
) -> Verdict:
    """Run gold and prediction on the database file (sandboxed) and compare results as described above.

    Raises FileNotFoundError when db_path does not exist, GoldQueryError when the gold query fails and
    UnreadableDatabaseError when the file is not a readable sqlite database.
    """
    if not pred.strip():
        return Verdict(False, "empty prediction")
    if reason := too_long(pred):
        return Verdict(False, reason)
    if not Path(db_path).is_file():
        raise FileNotFoundError(f"database file {db_path} does not exist: check --db DIR/<db_id>/<db_id>.sqlite")
    gold_sql, pred_sql = prepare_pair(gold, pred, distinct)
    gold_result = execute(db_path, gold_sql, timeout_s=timeout_s, max_rows=max_rows)
    if not gold_result.ok:
        raise gold_failed(gold, str(db_path), gold_result.error)
    pred_result = execute(db_path, pred_sql, timeout_s=timeout_s, max_rows=max_rows, deadline=deadline)
    if not pred_result.ok:
        return Verdict(False, pred_result.error)
    if results_equal(gold_result.rows or [], pred_result.rows or [], ordered=orders_rows(gold)):
        return Verdict(True)
    return Verdict(False, describe_difference(gold_result, pred_result))
