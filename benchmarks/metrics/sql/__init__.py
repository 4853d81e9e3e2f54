"""SQL scoring for ftbench: four metrics, each a Verdict (correct + reason), safe against anything a model writes.

- ``exact``: normalized text equality (``text.normalize_sql``);
- ``structural``: Spider-style exact *set* match on sqlglot's parse tree (``structure``; its docstring lists where
  it deliberately differs from the official evaluator);
- ``execution``: results on the real database, sandboxed (``sandbox``), compared with the official Spider
  semantics (``compare``: multiset of rows, ordered only under a gold ORDER BY, column order free, DISTINCT
  stripped by default, floats with a tolerance);
- ``execution_synth``: agreement on N small databases synthesized from the CREATE TABLE context (``synth``).

A failing prediction (syntax error, denied statement, timeout, too many rows, result too large, too long, prose,
empty line) is a wrong Verdict, never an exception. The metric functions raise GoldQueryError (a ValueError) for a
failing gold query (its subclass IncompleteSchemaError: the CREATE TABLE context lacks a name the gold uses) and
UnreadableDatabaseError for a database file sqlite cannot read; ``score_sql`` never raises: it turns those into
``MetricError(reason)`` (None for IncompleteSchemaError), see ``score``.
"""

from benchmarks.metrics.sql.compare import execution_match, results_equal
from benchmarks.metrics.sql.sandbox import Deadline, close_connections, execute
from benchmarks.metrics.sql.score import METRICS, Outcome, metric_calls, score_sql
from benchmarks.metrics.sql.structure import query_components, structural_match
from benchmarks.metrics.sql.synth import (
    build_databases,
    parse_schema,
    schema_from_database,
    schema_to_context,
    synthesized_match,
)
from benchmarks.metrics.sql.text import exact_match, normalize_sql
from benchmarks.metrics.sql.verdict import (
    ExecResult,
    GoldQueryError,
    IncompleteSchemaError,
    MetricError,
    UnreadableDatabaseError,
    Verdict,
)

__all__ = [
    "METRICS",
    "Deadline",
    "ExecResult",
    "GoldQueryError",
    "IncompleteSchemaError",
    "MetricError",
    "Outcome",
    "UnreadableDatabaseError",
    "Verdict",
    "build_databases",
    "close_connections",
    "exact_match",
    "execute",
    "execution_match",
    "metric_calls",
    "normalize_sql",
    "parse_schema",
    "query_components",
    "results_equal",
    "schema_from_database",
    "schema_to_context",
    "score_sql",
    "structural_match",
    "synthesized_match",
]
