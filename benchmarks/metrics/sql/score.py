"""All four SQL metrics for one (gold, prediction) pair, with the rules for when a metric cannot be computed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlglot.errors import SqlglotError

from benchmarks.metrics.sql.compare import execution_match
from benchmarks.metrics.sql.structure import Schema, structural_match
from benchmarks.metrics.sql.synth import parse_schema, schema_from_database, synthesized_match
from benchmarks.metrics.sql.text import exact_match
from benchmarks.metrics.sql.verdict import IncompleteSchemaError, Verdict

METRICS = ("exact", "structural", "execution", "execution_synth")


def _schema_for_structure(db_path: Path | None, context: str | None) -> Schema | None:
    """Column names per table, most complete source first: the real database, else the given CREATE TABLE text."""
    try:
        source = schema_from_database(db_path) if db_path is not None and db_path.is_file() else context
        if source is None:
            return None
        return {table.name: [name for name, _ in table.columns] for table in parse_schema(source)}
    except (ValueError, SqlglotError):
        return None  # resolution then relies on what the queries themselves show


def _synth_schemas(context: str | None, db_path: Path | None, schema_fallback: str | None) -> list[tuple[str, str]]:
    """(source, CREATE TABLE text) to try in order: the context (what the model saw), the database, the fallback."""
    candidates = [("context", context), ("database", schema_from_database(db_path) if db_path else None),
                  ("fallback schema", schema_fallback)]
    return [(source, text) for source, text in candidates if text]


def metric_calls(
    gold: str,
    pred: str,
    *,
    db_path: Path | None,
    context: str | None,
    schema_fallback: str | None = None,
    timeout_s: float = 2.0,
    max_rows: int = 100_000,
    distinct: str = "strip",
    n_databases: int = 8,
    seed: int = 0,
) -> dict[str, Callable[[], Verdict | None]]:
    """One zero-argument call per metric (keys: METRICS), so a caller can catch a GoldQueryError per metric.

    ``execution`` gives None when db_path is None or missing. ``execution_synth`` synthesizes databases from the
    context, else from the database's schema, else from ``schema_fallback`` (e.g. Spider's tables.json); when the
    gold uses a name the context lacks, the next schema is tried (the verdict's reason says so). It gives None when
    there is no schema, and raises IncompleteSchemaError when no schema fits the gold.
    """
    db_file = Path(db_path) if db_path is not None and Path(db_path).is_file() else None

    def execution() -> Verdict | None:
        if db_file is None:
            return None
        return execution_match(gold, pred, db_file, distinct=distinct, timeout_s=timeout_s, max_rows=max_rows)

    def execution_synth() -> Verdict | None:
        schemas = _synth_schemas(context, db_file, schema_fallback)
        failure: IncompleteSchemaError | None = None
        for attempt, (source, schema) in enumerate(schemas):
            try:
                verdict = synthesized_match(gold, pred, schema, n_databases=n_databases, seed=seed,
                                            distinct=distinct, timeout_s=timeout_s, max_rows=max_rows)
            except IncompleteSchemaError as error:
                failure = failure or error
                continue
            if attempt == 0:
                return verdict
            note = f"schema from the {source}: the context lacks a name the gold uses"
            return Verdict(verdict.correct, f"{verdict.reason}; {note}" if verdict.reason else note)
        if failure is not None:
            raise failure
        return None

    return {
        "exact": lambda: exact_match(gold, pred),
        "structural": lambda: structural_match(
            gold, pred, schema=_schema_for_structure(db_file, schema_fallback or context)
        ),
        "execution": execution,
        "execution_synth": execution_synth,
    }


def score_sql(
    gold: str,
    pred: str,
    *,
    db_path: Path | None,
    context: str | None,
    schema_fallback: str | None = None,
    timeout_s: float = 2.0,
    max_rows: int = 100_000,
    distinct: str = "strip",
    n_databases: int = 8,
    seed: int = 0,
) -> dict[str, Verdict | None]:
    """Every metric for one pair: {"exact", "structural", "execution", "execution_synth"} -> Verdict or None.

    A metric is None when it cannot be computed for this row: ``execution`` without a database file,
    ``execution_synth`` without a schema or when no schema has every name the gold uses (see metric_calls).
    A failing prediction is a wrong Verdict with a reason; a failing gold query raises GoldQueryError.

    >>> verdicts = score_sql("SELECT count(*) FROM head WHERE age > 56", "select count(*) from head where 56 < age",
    ...                      db_path=None, context="CREATE TABLE head (age INTEGER)")
    >>> {name: verdict and verdict.correct for name, verdict in verdicts.items()}
    {'exact': False, 'structural': True, 'execution': None, 'execution_synth': True}
    """
    calls = metric_calls(gold, pred, db_path=db_path, context=context, schema_fallback=schema_fallback,
                         timeout_s=timeout_s, max_rows=max_rows, distinct=distinct, n_databases=n_databases, seed=seed)
    verdicts: dict[str, Verdict | None] = {}
    for name, call in calls.items():
        try:
            verdicts[name] = call()
        except IncompleteSchemaError:
            verdicts[name] = None
        except RecursionError:  # a tree that parsed but is too deep to walk (the gold parsed and ran: it is the pred)
            verdicts[name] = Verdict(False, f"prediction nested too deeply to score ({pred.count('(')} parentheses)")
    return verdicts
