"""The sandbox against an adversarial corpus, on a real sqlite file: every attack is a wrong answer with the right
reason, within its time budget, and the database file is byte-identical afterwards. Some attacks would take seconds
(printf, trim), a gigabyte (zeroblob, randomblob) or minutes (json_patch) in one sqlite step without the limits."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from benchmarks.metrics.sql import Deadline, UnreadableDatabaseError, execute, execution_match
from benchmarks.metrics.sql.sandbox import HEAP_LIMIT_BYTES, close_connections, heap_limit, sandbox_for_file

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
    ("SELECT zeroblob(999999999) FROM item", "result too large: string or blob too big"),
    ("SELECT randomblob(999999999), randomblob(999999999) FROM item", "result too large: string or blob too big"),
    ("SELECT count(*) + 0 * length(printf('%.*c', 999999999, 'x')) FROM item",
     "printf() refused: width/precision 999,999,999 exceeds 1,000,000 bytes"),
    ("SELECT format('%999999999d', 1)", "format() refused: width/precision 999,999,999"),
    ("SELECT trim(hex(zeroblob(400000)), hex(zeroblob(400000)) || 'x')", "trim() refused: length 800,000 x 800,001"),
    ("SELECT json_patch('{}', '{}')", "denied: FUNCTION 'json_patch'"),
    ("WITH RECURSIVE r(n, s) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, s || s FROM r WHERE n < 64) "
     "SELECT max(length(s)) FROM r", "result too large: string or blob too big"),
    (" UNION ".join(["SELECT 1"] * 60), "error: too many terms in compound SELECT"),
    ("SELECT " + "+".join(["1"] * 300), "error: Expression tree is too large (maximum depth 250)"),
    ("SELECT * FROM item WHERE id IN (" + ",".join(map(str, range(5000))) + ")", "prediction too long (23,"),
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


def test_row_and_byte_caps(database: Path) -> None:
    rows = "WITH RECURSIVE up(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM up WHERE n < 10000000) SELECT n FROM up"
    assert execute(database, rows, timeout_s=5, max_rows=10_000).error == "too many rows (>10000)"
    big = "WITH RECURSIVE up(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM up) SELECT n, randomblob(900000) FROM up"
    assert execute(database, big, timeout_s=5).error.startswith("result too large (> 64,000,000 bytes after 7")


def test_out_of_sqlite_heap_is_a_wrong_answer(database: Path) -> None:
    assert heap_limit() == HEAP_LIMIT_BYTES, "ctypes should reach the hard heap limit on this platform"
    wide = "SELECT " + ", ".join(["zeroblob(999999)"] * 400) + " FROM item LIMIT 1"  # 400 MB in one row
    assert execute(database, wide).error.startswith("out of memory (sqlite may hold 256 MiB")
    assert execute(database, "SELECT count(*) FROM item").rows == [(3000,)]


def test_wrapped_builtins_keep_sqlite_semantics(database: Path) -> None:
    sql = ("SELECT printf('%5.2f|%-3d|%s|%q', 3.14159, 7, NULL, 'it''s'), format('%d', 2), trim('xxaxx', 'x'), "
           "ltrim('  a'), rtrim('a--', '-'), replace('banana', 'an', 'AN'), instr('banana', 'nan'), "
           "instr(x'0102', x'02'), replace(NULL, 'a', 'b'), trim(12.50, '0')")
    assert execute(database, sql).rows == [(" 3.14|7  ||it''s", "2", "a", "a", "a", "bANANa", 3, 2, None, "12.5")]


def test_the_row_deadline_stops_the_prediction_before_its_own_timeout(database: Path) -> None:
    endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    result = execute(database, endless, timeout_s=60, deadline=Deadline.after(0.2))
    assert result.error == "timeout: the row's time budget (0.2s) is spent"
    assert execute(database, "SELECT 1", deadline=Deadline.after(0)).error.startswith("timeout: the row's")


@pytest.mark.parametrize("content", [b"this is not a database" * 100, "truncated"])
def test_unreadable_database_raises_not_a_wrong_answer(tmp_path: Path, database: Path, content) -> None:
    bad = tmp_path / "bad.sqlite"
    data = database.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if content == "truncated" else content)  # half: the schema still reads
    with pytest.raises(UnreadableDatabaseError, match=str(bad)):
        execute(bad, "SELECT count(*) FROM item")
    with pytest.raises(UnreadableDatabaseError):
        execution_match("SELECT count(*) FROM item", "SELECT 1", bad)


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
