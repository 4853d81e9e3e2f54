"""The sandbox against an adversarial corpus, on a real sqlite file: every attack is a wrong answer with the right
reason, within its time budget, and the database file is byte-identical afterwards."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from benchmarks.metrics.sql import execute, execution_match
from benchmarks.metrics.sql.sandbox import close_connections, sandbox_for_file

BUDGET_S = 0.3


@pytest.fixture()
def database(tmp_path: Path) -> Path:
    path = tmp_path / "shop" / "shop.sqlite"
    path.parent.mkdir()
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    connection.executemany("INSERT INTO item VALUES (?, ?, ?)", [(i, f"item {i}", i * 1.5) for i in range(3000)])
    connection.commit()
    connection.close()
    yield path
    close_connections()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


ATTACKS = [
    ("UPDATE item SET price = 0", "denied: UPDATE"),
    ("DELETE FROM item", "denied: DELETE"),
    ("DROP TABLE item", "denied: DROP"),
    ("INSERT INTO item VALUES (9999, 'x', 1)", "denied: INSERT"),
    ("ATTACH DATABASE 'other.sqlite' AS other", "denied: ATTACH"),
    ("PRAGMA writable_schema = 1", "denied: PRAGMA"),
    ("VACUUM INTO 'copy.sqlite'", "denied: VACUUM"),
    ("SELECT load_extension('x')", "denied: FUNCTION 'load_extension'"),
    ("WITH doomed AS (SELECT 1) DELETE FROM item", "denied: DELETE 'item'"),  # past the keyword gate: authorizer
    ("SELECT * FROM pragma_table_info('item')", "denied:"),
    ("WITH RECURSIVE forever(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM forever) SELECT count(*) FROM forever",
     "timeout after 0.3s"),
    ("SELECT count(*) FROM item AS a, item AS b, item AS c", "timeout after 0.3s"),
    ("WITH RECURSIVE up(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM up WHERE n < 10000000) SELECT n FROM up",
     "too many rows (>100000)"),
    ("The query selects the average price of all items.", "syntax error:"),
    ("", "empty prediction"),
    ("   ", "empty prediction"),
    ("SELECT 1; SELECT 2", "multiple statements (2)"),
    ("SELECT 1; DROP TABLE item", "multiple statements (2)"),
    ("SELECT missing_column FROM item", "error: no such column: missing_column"),
]


@pytest.mark.parametrize(("sql", "reason"), ATTACKS, ids=[reason for _, reason in ATTACKS])
def test_attack_is_a_wrong_answer_with_its_reason(database: Path, sql: str, reason: str) -> None:
    before, files_before = sha256(database), sorted(os.listdir(database.parent))
    result = execute(database, sql, timeout_s=BUDGET_S)
    assert result.rows is None
    assert result.error is not None and result.error.startswith(reason), result.error
    verdict = execution_match("SELECT count(*) FROM item", sql, database, timeout_s=BUDGET_S)
    assert not verdict.correct and verdict.reason == result.error
    assert sha256(database) == before, "the database file changed"
    assert sorted(os.listdir(database.parent)) == files_before, "files appeared next to the database"


def test_semicolon_inside_a_string_is_one_statement(database: Path) -> None:
    result = execute(database, "SELECT 'a;b' AS text;")
    assert result.error is None and result.rows == [("a;b",)] and result.columns == ["text"]


def test_connection_stays_usable_after_a_timeout(database: Path) -> None:
    assert execute(database, "SELECT count(*) FROM item a, item b, item c", timeout_s=0.1).error.startswith("timeout")
    assert execute(database, "SELECT count(*) FROM item").rows == [(3000,)]


def test_connections_are_reused_per_thread_and_never_shared(database: Path) -> None:
    assert sandbox_for_file(database) is sandbox_for_file(database)
    seen = []
    worker = threading.Thread(target=lambda: seen.append((sandbox_for_file(database), execute(database, "SELECT 1"))))
    worker.start()
    worker.join()
    other_thread_sandbox, result = seen[0]
    assert other_thread_sandbox is not sandbox_for_file(database)
    assert result.rows == [(1,)]


def test_a_changed_file_gets_a_fresh_connection(database: Path) -> None:
    first = sandbox_for_file(database)
    connection = sqlite3.connect(database)
    connection.execute("INSERT INTO item VALUES (5000, 'new', 1)")
    connection.commit()
    connection.close()
    os.utime(database, ns=(1, 1))  # make sure the mtime differs even on coarse clocks
    assert sandbox_for_file(database) is not first
    assert execute(database, "SELECT count(*) FROM item").rows == [(3001,)]


def test_missing_database_is_an_error_result(tmp_path: Path) -> None:
    result = execute(tmp_path / "nope.sqlite", "SELECT 1")
    assert result.error is not None and result.error.startswith("database missing")
