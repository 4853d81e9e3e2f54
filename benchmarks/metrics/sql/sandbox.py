"""Sandboxed execution of model-written SQL on sqlite (stdlib only).

Layers, each enough on its own for the common cases and together for the rest:

1. Exactly one statement of at most ``MAX_QUERY_BYTES``, and it must not start with a non-query keyword (UPDATE,
   DROP, PRAGMA, ATTACH, ...).
2. Real database files are opened with ``file:...?mode=ro&immutable=1``. ``mode=ro`` makes sqlite's pager refuse any
   write; ``immutable=1`` makes it take no locks and create no -journal/-wal/-shm files, so neither the file nor its
   folder changes by a byte. We chose this over a private in-memory copy (``backup``): no copy time or memory per
   database, and a write that slipped past the authorizer cannot alter the data later rows see, because it cannot
   happen at all. (The price: a file changed by another process while we run gives undefined results; benchmark
   databases do not change.) In-memory synthesized databases get ``PRAGMA query_only=1`` for the same effect.
   A file that is not a readable sqlite database raises UnreadableDatabaseError: the data is bad, not the query.
3. An authorizer that allows only reading (SELECT, READ, FUNCTION, RECURSIVE) and denies everything else: writes,
   schema changes, transactions, ATTACH/DETACH (``VACUUM INTO`` is authorized as an ATTACH), every PRAGMA, and the
   functions ``load_extension`` and friends. ``enable_load_extension(False)`` is called where the build has it.
4. Time: a progress handler aborts the running statement once its deadline passes (the query's ``timeout_s``, or
   the row's ``Deadline`` if sooner); it fires inside sqlite's VM, so it stops endless recursive CTEs and huge
   cartesian products, during execute and fetch alike. It cannot stop one long VM step, so no step may be long:
   ``SQLITE_LIMIT_LENGTH`` (``MAX_VALUE_BYTES``) makes ``zeroblob(999999999)`` fail at once, and the built-ins that
   can spend seconds in one call on values within that limit are wrapped (``printf``/``format``: sqlite 3.40 loops
   999,999,999 times on ``%.*c``; ``trim``/``ltrim``/``rtrim``/``replace``/``instr``: quadratic) or denied
   (``json_patch``); the wrappers refuse more than ``MAX_CALL_WORK`` and check the deadline on every call.
5. Memory: sqlite's process-wide hard heap limit (``HEAP_LIMIT_BYTES``, set through ctypes on the library that
   ``_sqlite3`` loaded) bounds everything sqlite holds at once; fetched values count against ``MAX_RESULT_BYTES``
   (Python object sizes), rows against ``max_rows``. Breaches are a wrong answer, never an exception.

Connections to database files are opened once per thread and per file, then reused; they are never shared across
threads (sqlite3's ``check_same_thread`` stays on).
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.metrics.sql.text import MAX_QUERY_BYTES, single_statement
from benchmarks.metrics.sql.verdict import ExecResult, UnreadableDatabaseError

PROGRESS_EVERY_N_OPS = 1000  # sqlite VM instructions between deadline checks: ~1% overhead, sub-millisecond latency
MAX_CACHED_CONNECTIONS = 64
# Largest string, blob or row sqlite may build (SQLITE_LIMIT_LENGTH). Spider's largest stored value is 60 bytes and
# its widest row 270 bytes (the 20 dev databases); 1 MB leaves 10^4 x room while keeping every one-step operation on
# a value short (sqlite's default, 1 GB, lets one zeroblob() or printf() allocate a gigabyte).
MAX_VALUE_BYTES = 1_000_000
# Python memory (sys.getsizeof of rows and values) one query's result may take. The largest result of Spider's dev gold
# takes 0.2 MB (1,860 rows); gold and prediction results are held together, well under 1 GB with sqlite's heap.
MAX_RESULT_BYTES = 64_000_000
# All the memory sqlite may hold in this process at once (its hard heap limit): caches of every cached connection,
# sorters, and the values of a row being built. Breaching it is SQLITE_NOMEM: that query fails, nothing else.
HEAP_LIMIT_BYTES = 256 * 1024 * 1024
# len(X) * len(Y) one call of a wrapped quadratic built-in may cost (trim(X, Y) does ~1.5e8 of these per second).
MAX_CALL_WORK = 10_000_000
_LIMITS = {  # per connection; Spider's gold uses at most 2 set operations and 10 parentheses
    sqlite3.SQLITE_LIMIT_LENGTH: MAX_VALUE_BYTES,
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: MAX_QUERY_BYTES,
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 250,
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 50,
    sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 0,  # nothing is ever bound to a model's query
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
    sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 0,
    sqlite3.SQLITE_LIMIT_WORKER_THREADS: 0,
}
_DATABASE_FAULTS = {"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_CANTOPEN", "SQLITE_IOERR"}  # primary error names

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit",
                               "json_patch"})  # json_patch merges two objects in O(n*m) in one step: minutes at 1 MB
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


@dataclass(frozen=True)
class Deadline:
    """A moment (time.monotonic) after which no more SQL of one row may run: one row's budget across all databases.

    >>> Deadline.after(60).expired, Deadline.after(0).expired
    (False, True)
    """

    at: float
    budget_s: float
    """The budget it was made with, for messages."""

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at


def _sqlite_library() -> ctypes.CDLL | None:
    """The C library behind this process's sqlite3 module (the same instance: dlopen returns loaded libraries)."""
    import _sqlite3

    candidates = [_sqlite3.__file__]  # a build that links sqlite statically
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            candidates[:0] = sorted({line.split()[-1] for line in maps if "libsqlite3" in line})
    except OSError:
        pass  # not Linux
    for candidate in candidates:
        try:
            library = ctypes.CDLL(candidate)
            library.sqlite3_libversion.restype = ctypes.c_char_p
            if library.sqlite3_libversion().decode() == sqlite3.sqlite_version and hasattr(
                    library, "sqlite3_hard_heap_limit64"):
                return library
        except (OSError, AttributeError):
            continue
    return None


_heap_limit_lock = threading.Lock()
_heap_limit: int | None = None


def heap_limit() -> int:
    """Set sqlite's hard heap limit to HEAP_LIMIT_BYTES unless a lower one is set; the limit in force (0: none).

    Process-wide: it bounds every sqlite connection in the process, which here are only the scorer's.
    """
    global _heap_limit
    with _heap_limit_lock:
        if _heap_limit is None:
            library = _sqlite_library()
            if library is None:
                _heap_limit = 0
                print(f"ftbench: cannot reach sqlite's heap limit through ctypes; memory is bounded only by "
                      f"{MAX_VALUE_BYTES:,}-byte values and {MAX_RESULT_BYTES:,}-byte results", file=sys.stderr)
            else:
                function = library.sqlite3_hard_heap_limit64
                function.restype, function.argtypes = ctypes.c_int64, [ctypes.c_int64]
                current = function(-1)
                _heap_limit = current if 0 < current <= HEAP_LIMIT_BYTES else HEAP_LIMIT_BYTES
                function(_heap_limit)
        return _heap_limit


class _Refused(Exception):
    """A wrapped built-in refused a call; the message is the verdict's reason."""


# printf conversions: flags, width, precision (digits or '*' each), length modifier, type.
_PRINTF_SPEC = re.compile(r"%[-+ 0#,!]*(\*|\d+)?(?:\.(\*|\d*))?l*([a-zA-Z%])")


def _printf_sizes(fmt: object, args: tuple) -> list[int]:
    """The widths and precisions a printf format asks for, '*' taken from args as sqlite does."""
    if not isinstance(fmt, str):
        return []
    sizes, position = [], 0
    for match in _PRINTF_SPEC.finditer(fmt):
        for part in match.group(1), match.group(2):
            if part == "*":
                value = args[position] if position < len(args) else 0
                position += 1
                try:
                    sizes.append(abs(int(value)))
                except (TypeError, ValueError, OverflowError):
                    sizes.append(0)
            elif part:
                sizes.append(int(part))
        if match.group(3) != "%":
            position += 1  # the converted argument
    return sizes


def _text_size(value: object) -> int:
    return len(value) if isinstance(value, (str, bytes)) else 24  # a number's text


class Sandbox:
    """One guarded sqlite connection: limits, authorizer, deadline, result caps. Use from its creating thread only."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self._deadline = math.inf
        self._denied: str | None = None
        self._refused: str | None = None
        heap_limit()
        connection.text_factory = lambda data: data.decode("utf-8", errors="replace")
        if hasattr(connection, "enable_load_extension"):
            connection.enable_load_extension(False)
        connection.execute("PRAGMA query_only = 1")  # before the authorizer, which denies every PRAGMA
        for limit, value in _LIMITS.items():
            connection.setlimit(limit, value)
        self._wrap_builtins()
        connection.set_authorizer(self._authorize)
        connection.set_progress_handler(self._past_deadline, PROGRESS_EVERY_N_OPS)

    # ------------------------------------------------------------ guards
    def _authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
        if action in _ALLOWED_ACTIONS and not (action == sqlite3.SQLITE_FUNCTION and arg2 in _DENIED_FUNCTIONS):
            return sqlite3.SQLITE_OK
        target = " ".join(repr(arg) for arg in (arg1, arg2) if arg is not None)
        self._denied = f"{_ACTION_NAMES.get(action, f'action {action}')} {target}".strip()
        return sqlite3.SQLITE_DENY

    def _past_deadline(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def _wrap_builtins(self) -> None:
        """Replace the built-ins that can run for seconds in one VM step by guarded calls of the originals.

        The originals run on a private in-memory connection with the same length limit, so results are sqlite's own.
        """
        original = sqlite3.connect(":memory:")
        original.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        self._original = original

        def guarded(name: str, arity: int, check) -> None:
            def call(*args: object) -> object:
                if time.monotonic() > self._deadline:
                    self._refused = "deadline"
                    raise _Refused("deadline")
                if (reason := check(args)) is not None:
                    self._refused = f"{name}() refused: {reason}"
                    raise _Refused(reason)
                return original.execute(f"SELECT {name}({', '.join('?' * len(args))})", args).fetchone()[0]
            self.connection.create_function(name, arity, call, deterministic=True)

        def quadratic(args: tuple) -> str | None:
            work = _text_size(args[0]) * _text_size(args[1])
            return None if work <= MAX_CALL_WORK else (
                f"length {_text_size(args[0]):,} x {_text_size(args[1]):,} exceeds {MAX_CALL_WORK:,} steps")

        def printf(args: tuple) -> str | None:
            too_big = [size for size in _printf_sizes(args[0] if args else None, args[1:]) if size > MAX_VALUE_BYTES]
            return f"width/precision {too_big[0]:,} exceeds {MAX_VALUE_BYTES:,} bytes" if too_big else None

        for name in ("printf", "format"):
            guarded(name, -1, printf)
        for name in ("trim", "ltrim", "rtrim", "instr"):
            guarded(name, 2, quadratic)
        guarded("replace", 3, quadratic)

    def close(self) -> None:
        self.connection.close()
        self._original.close()

    # ------------------------------------------------------------ running
    def run(self, sql: str, *, timeout_s: float = 2.0, max_rows: int = 100_000,
            max_bytes: int = MAX_RESULT_BYTES, deadline: Deadline | None = None) -> ExecResult:
        """Run one query within the budget: every failure of the query comes back as ExecResult.error, never raised.

        The query stops at ``timeout_s`` or at ``deadline`` (the row's), whichever comes first. A database that
        cannot be read raises UnreadableDatabaseError (not the query's fault).
        """
        statement, reason = single_statement(sql)
        if statement is None:
            return ExecResult(None, [], reason)
        if deadline is not None and deadline.expired:
            return ExecResult(None, [], self._row_timeout(deadline))
        self._denied = self._refused = None
        own_deadline = time.monotonic() + timeout_s
        self._deadline = min(own_deadline, deadline.at) if deadline is not None else own_deadline
        cursor = self.connection.cursor()
        try:
            cursor.execute(statement)
            rows: list[tuple] = []
            size = 0
            for row in cursor:  # one row at a time: a chunk of big rows could pass the byte budget many times over
                rows.append(row)
                size += sys.getsizeof(row) + sum(map(sys.getsizeof, row))
                if len(rows) > max_rows:
                    return ExecResult(None, [], f"too many rows (>{max_rows})")
                if size > max_bytes:
                    return ExecResult(None, [], f"result too large (> {max_bytes:,} bytes after {len(rows):,} rows)")
            return ExecResult(rows, [column[0] for column in cursor.description or ()])
        except (sqlite3.Error, ValueError, OverflowError, MemoryError) as error:
            return ExecResult(None, [], self._explain(error, timeout_s, own_deadline, deadline))
        finally:
            self._deadline = math.inf
            cursor.close()

    def _row_timeout(self, deadline: Deadline) -> str:
        return f"timeout: the row's time budget ({deadline.budget_s:g}s) is spent"

    def _explain(self, error: Exception, timeout_s: float, own_deadline: float, deadline: Deadline | None) -> str:
        message = str(error)
        name = getattr(error, "sqlite_errorname", "") or ""
        if "_".join(name.split("_")[:2]) in _DATABASE_FAULTS:  # SQLITE_IOERR_SHORT_READ -> SQLITE_IOERR
            raise UnreadableDatabaseError(message) from error
        if isinstance(error, UnicodeEncodeError):  # a lone surrogate in a model's output: sqlite takes only UTF-8
            return f"not valid Unicode: {error.reason} (character {error.start})"
        if self._denied is not None or "not authorized" in message:
            return f"denied: {self._denied or message}"
        if ("interrupted" in message or self._refused == "deadline") and time.monotonic() > self._deadline:
            if deadline is not None and deadline.at < own_deadline:
                return self._row_timeout(deadline)
            return f"timeout after {timeout_s:g}s"
        if self._refused is not None:
            return self._refused
        if isinstance(error, MemoryError) or name == "SQLITE_NOMEM":
            return f"out of memory (sqlite may hold {heap_limit() / 2**20:.0f} MiB; the query needs more)"
        if name == "SQLITE_TOOBIG" or "too big" in message:
            return f"result too large: {message} (limit {MAX_VALUE_BYTES:,} bytes per value)"
        if any(marker in message for marker in ("syntax error", "unrecognized token", "incomplete input")):
            return f"syntax error: {message}"
        if "readonly" in message or "query_only" in message:
            return f"denied: {message}"
        return f"error: {message}"


def open_readonly(db_path: Path) -> sqlite3.Connection:
    """A plain read-only, immutable connection to a database file (no sandbox: for trusted schema reading).

    Raises UnreadableDatabaseError when the file is not a readable sqlite database.
    """
    uri = f"{Path(db_path).resolve().as_uri()}?mode=ro&immutable=1"
    try:
        connection = sqlite3.connect(uri, uri=True)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header and the schema
    except sqlite3.Error as error:
        raise UnreadableDatabaseError(f"{db_path}: {error}") from error
    return connection


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
            cache.pop(stale).close()
        while len(cache) >= MAX_CACHED_CONNECTIONS:  # oldest first (dicts keep insertion order)
            cache.pop(next(iter(cache))).close()
        cache[key] = Sandbox(open_readonly(resolved))
    return cache[key]


def close_connections() -> None:
    """Close this thread's cached connections (tests use it to prove nothing stays open)."""
    while _connections.by_key:
        _connections.by_key.popitem()[1].close()


def execute(db_path: Path, sql: str, *, timeout_s: float = 2.0, max_rows: int = 100_000,
            deadline: Deadline | None = None) -> ExecResult:
    """Run one model-written query on a database file, sandboxed (see the module docstring).

    A missing database is an error result: the caller decides whether that is the prediction's fault. A file that
    is not a readable sqlite database raises UnreadableDatabaseError.
    """
    if not Path(db_path).is_file():
        return ExecResult(None, [], f"database missing: {db_path}")
    try:
        return sandbox_for_file(Path(db_path)).run(sql, timeout_s=timeout_s, max_rows=max_rows, deadline=deadline)
    except UnreadableDatabaseError as error:
        message = str(error)
        raise UnreadableDatabaseError(message if message.startswith(str(db_path)) else f"{db_path}: {message}") from None
