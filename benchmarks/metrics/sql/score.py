"""All four SQL metrics for one (gold, prediction) pair, each under its own guard: scoring never raises.

What a metric gives for one row:

- a Verdict: right or wrong. Every failure the prediction causes is a wrong Verdict with a reason: syntax error,
  denied statement, timeout, too many rows, result too large, out of memory, too long, nested too deeply to score;
- a MetricError: something other than the prediction failed, so the metric says nothing about it: the gold query
  (``gold query failed: ...``), the database file (``database unreadable: <path>: ...``) or the scorer itself
  (``scorer error: <exception>: ...``);
- None: the metric does not apply to this row (no database file, no schema, no schema with every name the gold uses).

Time: every query stops after ``timeout_s``, and all the prediction's queries of one row (the real database and the
synthesized ones) stop at one row deadline, ``ROW_BUDGET_FACTOR * timeout_s`` after the first metric starts. The
rest of a row's work is bounded by the prediction's length (MAX_QUERY_BYTES), so no row takes much more than that.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlglot.errors import SqlglotError

from benchmarks.metrics.sql.compare import execution_match
from benchmarks.metrics.sql.sandbox import Deadline
from benchmarks.metrics.sql.structure import Schema, structural_match
from benchmarks.metrics.sql.synth import parse_schema, schema_from_database, synthesized_match
from benchmarks.metrics.sql.text import exact_match
from benchmarks.metrics.sql.verdict import (
    GoldQueryError,
    IncompleteSchemaError,
    MetricError,
    UnreadableDatabaseError,
    Verdict,
)

METRICS = ("exact", "structural", "execution", "execution_synth")
# The prediction's queries of one row share ROW_BUDGET_FACTOR x timeout_s; the remaining half timeout leaves room for
# the gold's runs and the parsing, so a row stays under twice the timeout whatever the prediction.
ROW_BUDGET_FACTOR = 1.5

Outcome = Verdict | MetricError | None


def _schema_for_structure(db_path: Path | None, context: str | None) -> Schema | None:
    """Column names per table, most complete source first: the real database, else the given CREATE TABLE text."""
    source = context
    if db_path is not None and db_path.is_file():
        try:
            source = schema_from_database(db_path)
        except UnreadableDatabaseError:
            pass  # structure does not need the database: the context will do
    if source is None:
        return None
    try:
        return {table.name: [name for name, _ in table.columns] for table in parse_schema(source)}
    except (ValueError, SqlglotError):
        return None  # resolution then relies on what the queries themselves show


def _synth_schemas(context: str | None, db_path: Path | None,
                   schema_fallback: str | None) -> list[tuple[str, Callable[[], str | None]]]:
    """(source, loader of its CREATE TABLE text) to try in order: the context (what the model saw), the database,
    the fallback. Loaders: the database is read only when the context does not fit the gold."""
    return [("context", lambda: context),
            ("database", lambda: schema_from_database(db_path) if db_path is not None else None),
            ("fallback schema", lambda: schema_fallback)]


def _gold_reason(error: GoldQueryError) -> str:
    message = str(error)
    return message if message.startswith("gold query") else f"gold query failed: {message}"


def _guarded(name: str, scorer: Callable[[str], Verdict | None], gold: str, pred: str,
             notes: dict[str, str] | None) -> Outcome:
    """scorer(pred) as an Outcome: whatever it raises is a MetricError, or a wrong Verdict when the prediction caused
    it. A RecursionError is the prediction's when the gold scored against itself does not raise one too."""
    try:
        return scorer(pred)
    except IncompleteSchemaError as error:
        if notes is not None:
            notes[name] = str(error)
        return None
    except GoldQueryError as error:
        return MetricError(_gold_reason(error))
    except UnreadableDatabaseError as error:
        return MetricError(f"database unreadable: {error}")
    except RecursionError:
        try:
            scorer(gold)
        except RecursionError:
            return MetricError("scorer error: RecursionError: the gold query is nested too deeply to score")
        except Exception:  # noqa: BLE001 - only the question "does the gold recurse too?" matters here
            pass
        return Verdict(False, "prediction nested too deeply to score (past Python's recursion limit)")
    except Exception as error:  # noqa: BLE001 - a scorer bug must cost one metric of one row, not the run
        return MetricError(f"scorer error: {type(error).__name__}: {error}")


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
    notes: dict[str, str] | None = None,
) -> dict[str, Callable[[], Outcome]]:
    """One zero-argument call per metric (keys: METRICS); none raises (see the module docstring).

    ``execution`` gives None when db_path is None or missing. ``execution_synth`` synthesizes databases from the
    context, else from the database's schema, else from ``schema_fallback`` (e.g. Spider's tables.json); when the
    gold uses a name the context lacks, the next schema is tried (the verdict's reason says so). It gives None when
    there is no schema, or when no schema has every name the gold uses. ``notes`` (if given) receives why a metric
    is None. The row's deadline starts with the first call.
    """
    db_file = Path(db_path) if db_path is not None and Path(db_path).is_file() else None
    clock: list[Deadline] = []

    def deadline() -> Deadline:
        if not clock:
            clock.append(Deadline.after(ROW_BUDGET_FACTOR * timeout_s))
        return clock[0]

    def note(name: str, text: str) -> None:
        if notes is not None:
            notes[name] = text

    def structural(candidate: str) -> Verdict:
        return structural_match(gold, candidate, schema=_schema_for_structure(db_file, schema_fallback or context))

    def execution(candidate: str) -> Verdict | None:
        if db_file is None:
            note("execution", "no database file")
            return None
        return execution_match(gold, candidate, db_file, distinct=distinct, timeout_s=timeout_s, max_rows=max_rows,
                               deadline=deadline())

    def execution_synth(candidate: str) -> Verdict | None:
        failures: list[IncompleteSchemaError | UnreadableDatabaseError] = []
        passed_over: list[str] = []  # why each earlier schema was not used
        for source, load in _synth_schemas(context, db_file, schema_fallback):
            try:
                schema = load()
                if not schema:
                    continue
                verdict = synthesized_match(gold, candidate, schema, n_databases=n_databases, seed=seed,
                                            distinct=distinct, timeout_s=timeout_s, max_rows=max_rows,
                                            deadline=deadline())
            except IncompleteSchemaError as error:
                failures.append(error)
                passed_over.append(f"the {source} lacks a name the gold uses")
                continue
            except UnreadableDatabaseError as error:
                failures.append(error)
                passed_over.append("the database is unreadable")
                continue
            if not passed_over:
                return verdict
            text = f"schema from the {source}: {'; '.join(passed_over)}"
            return Verdict(verdict.correct, f"{verdict.reason}; {text}" if verdict.reason else text)
        if failures:  # an unreadable database is an error; schemas that all lack a gold name: not applicable
            raise next((error for error in failures if isinstance(error, UnreadableDatabaseError)), failures[0])
        note("execution_synth", "no schema (give a CREATE TABLE context, the database or a fallback schema)")
        return None

    scorers: dict[str, Callable[[str], Verdict | None]] = {
        "exact": lambda candidate: exact_match(gold, candidate),
        "structural": structural,
        "execution": execution,
        "execution_synth": execution_synth,
    }
    return {name: (lambda name=name, scorer=scorer: _guarded(name, scorer, gold, pred, notes))
            for name, scorer in scorers.items()}


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
    notes: dict[str, str] | None = None,
) -> dict[str, Outcome]:
    """Every metric for one pair: {"exact", "structural", "execution", "execution_synth"} -> Verdict, MetricError
    or None. Never raises: see the module docstring for what each outcome means, metric_calls for the arguments.

    >>> verdicts = score_sql("SELECT count(*) FROM head WHERE age > 56", "select count(*) from head where 56 < age",
    ...                      db_path=None, context="CREATE TABLE head (age INTEGER)")
    >>> {name: verdict and verdict.correct for name, verdict in verdicts.items()}
    {'exact': False, 'structural': True, 'execution': None, 'execution_synth': True}
    >>> failed = score_sql("SELECT age FROM head WHERE", "SELECT age FROM head", db_path=None, context=None)
    >>> type(failed["structural"]).__name__, failed["structural"].reason.startswith("gold query does not parse")
    ('MetricError', True)
    """
    calls = metric_calls(gold, pred, db_path=db_path, context=context, schema_fallback=schema_fallback,
                         timeout_s=timeout_s, max_rows=max_rows, distinct=distinct, n_databases=n_databases, seed=seed,
                         notes=notes)
    return {name: call() for name, call in calls.items()}
