"""Sandboxed execution of model-written SQL on sqlite (stdlib only).

Layers, each enough on its own for the common cases and together for the rest:

1. Exactly one statement, and it must not start with a non-query keyword (UPDATE, DROP, PRAGMA, ATTACH, ...).
2. Real database files are opened with ``file:...?mode=ro&immutable=1``. ``mode=ro`` makes sqlite's pager refuse any
   write; ``immutable=1`` makes it take no locks and create no -journal/-wal/-shm files, so neither the file nor its
   folder changes by a byte. We chose this over a private in-memory copy (``backup``): no copy time or memory per
   database, and a write that slipped past the authorizer cannot alter the data later rows see, because it cannot
   happen at all. (The price: a file changed by another process while we run gives undefined results; benchmark
   databases do not change.) In-memory synthesized databases get ``PRAGMA query_only=1`` for the same effect.
3. An authorizer that allows only reading (SELECT, READ, FUNCTION, RECURSIVE) and denies everything else: writes,
   schema changes, transactions, ATTACH/DETACH (``VACUUM INTO`` is authorized as an ATTACH), every PRAGMA, and the
   functions ``load_extension`` and friends. ``enable_load_extension(False)`` is called where the build has it.
4. A progress handler that aborts the running statement once a wall-clock deadline passes; it fires inside
   sqlite's VM, so it stops endless recursive CTEs and huge cartesian products, during execute and fetch alike.
5. A cap on fetched rows: rows are fetched in chunks and the statement fails once more than ``max_rows`` arrive.

Connections to database files are opened once per thread and per file, then reused; they are never shared across
threads (sqlite3's ``check_same_thread`` stays on).
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from pathlib import Path

from benchmarks.metrics.sql.text import single_statement
from benchmarks.metrics.sql.verdict import ExecResult

PROGRESS_EVERY_N_OPS = 1000  # sqlite VM instructions between deadline checks: ~1% overhead, sub-millisecond latency
FETCH_CHUNK = 1000
MAX_CACHED_CONNECTIONS = 64

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit"})
_ACTION_NAMES = {
    getattr(sqlite3, name): name.removeprefix("SQLITE_").replace("_", " ")
    for name in (
        "SQLITE_CREATE_INDEX SQLITE_CREATE_TABLE SQLITE_CREATE_TEMP_INDEX SQLITE_CREATE_TEMP_TABLE "
        "SQLITE_CREATE_TEMP_TRIGGER SQLITE_CREATE_TEMP_VIEW SQLITE_CREATE_TRIGGER SQLITE_CREATE_VIEW SQLITE_DELETE "
        "SQLITE_DROP_INDEX SQLITE_DROP_TABLE SQLITE_DROP_TEMP_INDEX SQLITE_DROP_TEMP_TABLE SQLITE_DROP_TEMP_TRIGGER "
        "SQLITE_DROP_TEMP_VIEW SQLITE_DROP_TRIGGER SQLITE_DROP_VIEW SQLITE_INSERT SQLITE_PRAGMA SQLITE_READ "
        "SQLITE_SELECT SQLITE_TRANSACTION SQLITE_UPDATE SQLITE_ATTACH SQLITE_DETACH SQLITE_ALTER_TABLE "
        "SQLITE_REINDEX SQLITE_ANALYZE SQLITE_CREATE_VTABLE SQLITE_DROP_VTABLE SQLITE_FUNCTION SQLITE_SAVEPOINT "
        "SQLITE_RECURSIVE"
    ).split()
    if hasattr(sqlite3, name)
}


class Sandbox:
    """One guarded sqlite connection: authorizer, deadline, row cap. Use from the thread that created it only."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self._deadline = math.inf
        self._denied: str | None = None
        connection.text_factory = lambda data: data.decode("utf-8", errors="replace")
        if hasattr(connection, "enable_load_extension"):
            connection.enable_load_extension(False)
        connection.execute("PRAGMA query_only = 1")  # before the authorizer, which denies every PRAGMA
        connection.set_authorizer(self._authorize)
        connection.set_progress_handler(self._past_deadline, PROGRESS_EVERY_N_OPS)

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
        if action in _ALLOWED_ACTIONS and not (action == sqlite3.SQLITE_FUNCTION and arg2 in _DENIED_FUNCTIONS):
            return sqlite3.SQLITE_OK
        target = " ".join(repr(arg) for arg in (arg1, arg2) if arg is not None)
        self._denied = f"{_ACTION_NAMES.get(action, f'action {action}')} {target}".strip()
        return sqlite3.SQLITE_DENY

    def _past_deadline(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def run(self, sql: str, *, timeout_s: float = 2.0, max_rows: int = 100_000) -> ExecResult:
        """Run one query within the budget; every failure comes back as ExecResult.error, never raised."""
        statement, reason = single_statement(sql)
        if statement is None:
            return ExecResult(None, [], reason)
        self._denied = None
        self._deadline = time.monotonic() + timeout_s
        cursor = self.connection.cursor()
        try:
            cursor.execute(statement)
            rows: list[tuple] = []
            while len(rows) <= max_rows:
                chunk = cursor.fetchmany(FETCH_CHUNK)
                if not chunk:
                    break
                rows.extend(chunk)
            if len(rows) > max_rows:
                return ExecResult(None, [], f"too many rows (>{max_rows})")
            return ExecResult(rows, [column[0] for column in cursor.description or ()])
        except (sqlite3.Error, ValueError, OverflowError, MemoryError) as error:
            return ExecResult(None, [], self._explain(error, timeout_s))
        finally:
            self._deadline = math.inf
            cursor.close()

    def _explain(self, error: Exception, timeout_s: float) -> str:
        message = str(error)
        if self._denied is not None or "not authorized" in message:
            return f"denied: {self._denied or message}"
        if "interrupted" in message and time.monotonic() > self._deadline:
            return f"timeout after {timeout_s:g}s"
        if any(marker in message for marker in ("syntax error", "unrecognized token", "incomplete input")):
            return f"syntax error: {message}"
        if "readonly" in message or "query_only" in message:
            return f"denied: {message}"
        return f"error: {message}"


def open_readonly(db_path: Path) -> sqlite3.Connection:
    """A plain read-only, immutable connection to a database file (no sandbox: for trusted schema reading)."""
    uri = f"{Path(db_path).resolve().as_uri()}?mode=ro&immutable=1"
    return sqlite3.connect(uri, uri=True)


class _ThreadConnections(threading.local):
    def __init__(self) -> None:
        self.by_key: dict[tuple[str, int, int], Sandbox] = {}


_connections = _ThreadConnections()


def sandbox_for_file(db_path: Path) -> Sandbox:
    """This thread's sandbox on db_path, opened on first use; a changed file (mtime, size) gets a new connection."""
    resolved = Path(db_path).resolve()
    stat = os.stat(resolved)
    key = (str(resolved), stat.st_mtime_ns, stat.st_size)
    cache = _connections.by_key
    if key not in cache:
        for stale in [cached for cached in cache if cached[0] == key[0]]:  # the file changed since
            cache.pop(stale).connection.close()
        while len(cache) >= MAX_CACHED_CONNECTIONS:  # oldest first (dicts keep insertion order)
            cache.pop(next(iter(cache))).connection.close()
        cache[key] = Sandbox(open_readonly(resolved))
    return cache[key]


def close_connections() -> None:
    """Close this thread's cached connections (tests use it to prove nothing stays open)."""
    while _connections.by_key:
        _connections.by_key.popitem()[1].connection.close()


def execute(db_path: Path, sql: str, *, timeout_s: float = 2.0, max_rows: int = 100_000) -> ExecResult:
    """Run one model-written query on a database file, sandboxed (see the module docstring).

    A missing database is an error result too: the caller decides whether that is the prediction's fault.
    """
    if not Path(db_path).is_file():
        return ExecResult(None, [], f"database missing: {db_path}")
    return sandbox_for_file(Path(db_path)).run(sql, timeout_s=timeout_s, max_rows=max_rows)
