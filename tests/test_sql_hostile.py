"""Issue 12, "failures are never scores": hostile predictions each get a wrong verdict with a reason, bad data gets a
MetricError, and nothing raises. Verdicts and reasons are asserted, never wall-clock times."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.data import DataSource
from benchmarks.metrics.sql import METRICS, MetricError, Verdict, score_sql
from benchmarks.metrics.sql.sandbox import close_connections
from benchmarks.tasks.base import Example
from benchmarks.tasks.spider import SpiderTask

CONTEXT = "CREATE TABLE singer (singer_id INTEGER, name VARCHAR, age INTEGER); CREATE TABLE city (id INTEGER, name VARCHAR)"
GOLD = "SELECT count(*) FROM singer"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spider") / "concert_singer" / "concert_singer.sqlite"
    path.parent.mkdir()
    connection = sqlite3.connect(path)
    connection.executescript(CONTEXT.replace("; ", ";\n") + ";")
    connection.executemany("INSERT INTO singer VALUES (?, ?, ?)", [(i, f"singer {i}", 20 + i % 40) for i in range(50)])
    connection.executemany("INSERT INTO city VALUES (?, ?)", [(i, f"city {i}") for i in range(30)])
    connection.commit()
    connection.close()
    yield path
    close_connections()


def score(pred: str, database: Path, gold: str = GOLD, timeout_s: float = 2.0) -> dict:
    return score_sql(gold, pred, db_path=database, context=CONTEXT, timeout_s=timeout_s)


def nested(depth: int) -> str:
    return "SELECT name FROM singer WHERE age IN " + "(" * depth + "30" + ")" * depth


HOSTILE = {  # prediction -> what execution on the real database must say
    "zeroblob": ("SELECT zeroblob(999999999) FROM singer", "result too large: string or blob too big"),
    "randomblob": ("SELECT randomblob(999999999), randomblob(999999999) FROM singer",
                   "result too large: string or blob too big"),
    "printf": ("SELECT count(*) + 0*length(printf('%.*c',999999999,'x')) FROM singer",
               "printf() refused: width/precision 999,999,999 exceeds 1,000,000 bytes"),
    "50 parentheses": (nested(50), "rows differ"),
    "65 IN (SELECT": ("SELECT name FROM singer WHERE singer_id IN "
                      + "(SELECT singer_id FROM singer WHERE singer_id IN " * 65 + "(1)" + ")" * 65, "error: "),
    "unbalanced WHERE": ("SELECT name FROM city WHERE " + "(" * 93, "syntax error"),
    "2 MB IN list": ("SELECT count(*) FROM singer WHERE age IN (" + ",".join(map(str, range(330_000))) + ")",
                     "prediction too long (2,"),
    "lone surrogate": ("SELECT name FROM singer WHERE name = '\ud83d'", "not valid Unicode: surrogates not allowed"),
    "cartesian product": ("SELECT count(*) FROM singer a, singer b, singer c, singer d, singer e, singer f",
                          "timeout after 0.5s"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_prediction_is_wrong_under_every_metric_with_a_reason(database: Path, name: str) -> None:
    pred, execution_reason = HOSTILE[name]
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    outcomes = score(pred, database, timeout_s=0.5 if name == "cartesian product" else 2.0)
    assert list(outcomes) == list(METRICS)
    for metric, outcome in outcomes.items():
        assert isinstance(outcome, Verdict) and not outcome.correct and outcome.reason, (metric, outcome)
    assert outcomes["execution"].reason.startswith(execution_reason), outcomes["execution"]
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before


def test_the_row_deadline_spans_the_real_and_the_synthesized_databases(database: Path) -> None:
    endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    outcomes = score(endless, database, timeout_s=0.3)
    assert outcomes["execution"] == Verdict(False, "timeout after 0.3s")
    assert outcomes["execution_synth"] == Verdict(False, "timeout: the row's time budget (0.45s) is spent")


def test_failing_gold_is_a_metric_error_and_the_prediction_still_gets_text_verdicts(database: Path) -> None:
    outcomes = score("SELECT count(*) FROM singer", database, gold="SELECT count(*) FROM nowhere")
    assert outcomes["exact"] == Verdict(False, "text differs")
    assert isinstance(outcomes["execution"], MetricError), outcomes["execution"]
    assert outcomes["execution_synth"] is None  # the context lacks the gold's table: not applicable, as before
    assert outcomes["execution"].reason.startswith("gold query failed on") and "no such table: nowhere" in (
        outcomes["execution"].reason)
    assert outcomes["execution"].to_json() == {"correct": None, "error": outcomes["execution"].reason}


def test_gold_too_deep_to_canonicalize_is_a_scorer_error_not_the_predictions_fault(database: Path) -> None:
    deep_gold = "SELECT count(*) FROM singer WHERE " + " OR ".join(f"age = {i}" for i in range(1200))
    outcome = score("SELECT count(*) FROM singer", database, gold=deep_gold)["structural"]
    assert outcome == MetricError("scorer error: RecursionError: the gold query is nested too deeply to score")
    deep_pred = score(deep_gold, database)["structural"]
    assert deep_pred == Verdict(False, "prediction nested too deeply to score (past Python's recursion limit)")


@pytest.mark.parametrize("content", [b"SQLite format 2\x00 but not really" * 40, "truncated"])
def test_unreadable_database_is_a_metric_error(tmp_path: Path, database: Path, content) -> None:
    broken = tmp_path / "broken.sqlite"
    data = database.read_bytes()
    broken.write_bytes(data[: len(data) // 2] if content == "truncated" else content)
    outcomes = score_sql(GOLD, "SELECT count(*) FROM singer", db_path=broken, context=CONTEXT)
    assert outcomes["execution"] == MetricError(outcomes["execution"].reason)
    assert outcomes["execution"].reason.startswith(f"database unreadable: {broken}: ")
    assert outcomes["exact"].correct and outcomes["structural"].correct and outcomes["execution_synth"].correct


def test_spider_task_puts_metric_errors_in_score_errors(tmp_path: Path, database: Path) -> None:
    root = tmp_path / "seed"
    (root / "spider" / "database").mkdir(parents=True)
    (root / "spider" / "database" / "concert_singer").symlink_to(database.parent)
    examples = [Example("val/0", {"question": "?", "context": CONTEXT, "db_id": "concert_singer"}, target)
                for target in ("SELECT count(*) FROM nowhere", GOLD)]
    scores = SpiderTask().score(examples, ["SELECT count(*) FROM singer", "SELECT 1;;; DROP"], DataSource("dir", root))
    assert scores[0].outcomes["execution"] is None and scores[0].outcomes["exact"] is False
    assert scores[0].errors["execution"].startswith("gold query failed") and "execution" not in scores[0].reasons
    assert scores[1].errors == {} and scores[1].outcomes["execution"] is False
    assert scores[1].reasons["execution"] == "multiple statements (2)"


SQL_PIECES = st.sampled_from([
    "SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "LIMIT", "UNION", "JOIN", "ON", "AS", "IN", "AND", "OR", "NOT",
    "(", ")", ",", "*", "=", "<", "+", "-", "||", ";", "'", '"', "singer", "city", "name", "age", "singer_id", "T1",
    "T1.name", "count(", "max(", "printf('%.*c',", "trim(", "replace(", "instr(", "zeroblob(", "randomblob(",
    "json_patch(", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r)", "999999999", "1e999",
    "9" * 5000, "0", "'x'", "'\ud83d'", "\ud83d", "NULL", "DISTINCT", "CASE WHEN", "THEN", "END", "LIKE '%a%'", "BETWEEN 1 AND",
])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(SQL_PIECES, max_size=30))
def test_no_prediction_makes_a_metric_error_or_raises(database: Path, pieces: list[str]) -> None:
    """Whatever the prediction, with sound gold and database every metric is a Verdict: a MetricError here would be
    a scorer bug blamed on the data."""
    pred = " ".join(pieces)
    outcomes = score(pred, database, timeout_s=0.2)
    assert all(isinstance(outcome, Verdict) for outcome in outcomes.values()), (pred, outcomes)


def test_synthesized_schema_sources_say_why_one_was_passed_over(tmp_path: Path, database: Path) -> None:
    gold = "SELECT name FROM singer WHERE age > 30"
    alone = score_sql(gold, gold, db_path=database, context=None)["execution_synth"]
    assert alone == Verdict(True)  # no context: the database is simply the first schema, nothing was passed over
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"not sqlite" * 100)
    lacking = "CREATE TABLE singer (name VARCHAR)"
    fallback = score_sql(gold, gold, db_path=broken, context=lacking, schema_fallback=CONTEXT)["execution_synth"]
    assert fallback == Verdict(True, "schema from the fallback schema: the context lacks a name the gold uses; "
                                     "the database is unreadable")
    nothing_fits = score_sql(gold, gold, db_path=broken, context=lacking)["execution_synth"]
    assert isinstance(nothing_fits, MetricError) and nothing_fits.reason.startswith("database unreadable")
