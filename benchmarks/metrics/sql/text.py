"""Text-level SQL helpers: normalization, exact match, statement splitting, DISTINCT stripping, cached parsing.

Statement splitting and DISTINCT stripping work on sqlglot's tokenizer, so a ';' or the word DISTINCT inside a string
literal is never touched.
"""

from __future__ import annotations

import functools
import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import Token, TokenType

from benchmarks.metrics.sql.verdict import Verdict

DIALECT = "sqlite"

# Longest query any metric reads. Spider's longest gold (train + dev, 9,693 queries) is 577 characters; sqlglot (pure
# Python here) needs about 1 s per 100 KB, and some of its passes grow faster than linearly, so a runaway generation
# longer than this is judged wrong unread. Also sqlite's SQLITE_LIMIT_SQL_LENGTH in the sandbox.
MAX_QUERY_BYTES = 20_000

# A quoted run: '...' (with '' escapes), "..." or `...`; an unterminated quote runs to the end of the text.
_QUOTED = re.compile(r"'(?:[^']|'')*(?:'|$)|\"(?:[^\"]|\"\")*(?:\"|$)|`[^`]*(?:`|$)")
_SPACE_BEFORE_PUNCT = re.compile(r" (?=[(),;.=<>!+\-*/%|])")
_SPACE_AFTER_PUNCT = re.compile(r"(?<=[(,;.=<>!+\-*/%|]) ")  # not after ')': "count(*) from" keeps its space
_WHITESPACE = re.compile(r"\s+")

# First keywords of statements that are not queries: refused before sqlite sees them (the authorizer is the backstop).
NON_QUERY_KEYWORDS = frozenset(
    "INSERT UPDATE DELETE REPLACE UPSERT MERGE DROP CREATE ALTER ATTACH DETACH PRAGMA VACUUM REINDEX ANALYZE "
    "BEGIN COMMIT END ROLLBACK SAVEPOINT RELEASE EXPLAIN TRUNCATE GRANT REVOKE".split()
)


def _normalize_code(code: str) -> str:
    code = _WHITESPACE.sub(" ", code.casefold())
    return _SPACE_AFTER_PUNCT.sub("", _SPACE_BEFORE_PUNCT.sub("", code))


def normalize_sql(sql: str) -> str:
    """Canonical text of a query for exact comparison.

    Case-folds and collapses whitespace outside quoted text, removes spaces around punctuation and operators,
    and strips trailing semicolons. Quoted text ('...', "...", `...`) is kept byte for byte.

    >>> normalize_sql("SELECT name ,  country FROM Singer WHERE age  >  56 ;")
    'select name,country from singer where age>56'
    >>> normalize_sql("select count( * ) from t where name = 'Bob  SMITH'")
    "select count(*) from t where name='Bob  SMITH'"
    >>> normalize_sql('SELECT "Ab"  ,  x')
    'select "Ab",x'
    >>> normalize_sql("  ;; ")
    ''
    """
    parts: list[str] = []
    position = 0
    for match in _QUOTED.finditer(sql):
        parts.append(_normalize_code(sql[position : match.start()]))
        parts.append(match.group())
        position = match.end()
    tail = _normalize_code(sql[position:])
    tail = re.sub(r"[\s;]+$", "", tail)
    parts.append(tail)
    if not tail:  # the text ended in a quoted run: trailing code was only ';'/spaces
        while parts and parts[-1] == "":
            parts.pop()
    text = "".join(parts)
    return re.sub(r"^\s+", "", text)


def too_long(sql: str, what: str = "prediction") -> str | None:
    """The reason a query is too long to read (more than MAX_QUERY_BYTES of UTF-8), else None.

    >>> too_long("SELECT 1"), too_long("SELECT " + "1," * 20_000 + "1")
    (None, 'prediction too long (40,008 bytes > 20,000): a runaway generation? It is not parsed or run')
    """
    if len(sql) <= MAX_QUERY_BYTES // 4 or len(size := sql.encode("utf-8", "surrogatepass")) <= MAX_QUERY_BYTES:
        return None
    return f"{what} too long ({len(size):,} bytes > {MAX_QUERY_BYTES:,}): a runaway generation? It is not parsed or run"


def exact_match(gold: str, pred: str) -> Verdict:
    """Equality of the normalized texts (the blog's "character-level comparison", made robust to case and spacing).

    >>> exact_match("SELECT count(*) FROM head WHERE age  >  56", "select COUNT(*) from head where age > 56;")
    Verdict(correct=True, reason=None)
    >>> exact_match("SELECT a FROM t", "")
    Verdict(correct=False, reason='empty prediction')
    """
    if not pred.strip():
        return Verdict(False, "empty prediction")
    if reason := too_long(pred):
        return Verdict(False, reason)
    if normalize_sql(gold) == normalize_sql(pred):
        return Verdict(True)
    return Verdict(False, "text differs")


@functools.lru_cache(maxsize=1024)
def _tokens(sql: str) -> tuple[Token, ...]:
    """sqlglot's tokens (cached: the same prediction is split and DISTINCT-stripped once per database it runs on)."""
    return tuple(sqlglot.tokenize(sql, read=DIALECT))


def single_statement(sql: str) -> tuple[str | None, str | None]:
    """(statement, None) for exactly one query statement, else (None, reason). Trailing ';' are dropped.

    >>> single_statement("SELECT 'a;b' ;")
    ("SELECT 'a;b'", None)
    >>> single_statement("SELECT 1; SELECT 2")
    (None, 'multiple statements (2)')
    >>> single_statement("DROP TABLE t")
    (None, 'denied: DROP statement (only a single SELECT query may run)')
    >>> single_statement("  ")
    (None, 'empty prediction')
    """
    if not sql.strip():
        return None, "empty prediction"
    if reason := too_long(sql):
        return None, reason
    try:
        tokens = _tokens(sql)
    except SqlglotError:
        return sql, None  # sqlglot cannot tokenize it: let sqlite decide (it runs one statement at most)
    statements: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            statements.append([])
        else:
            statements[-1].append(token)
    statements = [statement for statement in statements if statement]
    if not statements:
        return None, "empty prediction"
    if len(statements) > 1:
        return None, f"multiple statements ({len(statements)})"
    first, last = statements[0][0], statements[0][-1]
    keyword = first.text.upper()
    if keyword in NON_QUERY_KEYWORDS:
        return None, f"denied: {keyword} statement (only a single SELECT query may run)"
    return sql[first.start : last.end + 1], None


def strip_distinct(sql: str) -> str:
    """Remove every DISTINCT keyword, as the official evaluator does by default (also inside COUNT(DISTINCT x)).

    >>> strip_distinct("SELECT DISTINCT name, count(DISTINCT age) FROM t WHERE x = 'distinct'")
    "SELECT name, count(age) FROM t WHERE x = 'distinct'"
    """
    if too_long(sql):
        return sql  # refused unread by single_statement
    try:
        tokens = _tokens(sql)
    except SqlglotError:
        return sql
    spans = [(token.start, token.end + 1) for token in tokens if token.token_type == TokenType.DISTINCT]
    for start, end in reversed(spans):
        end += len(sql[end:]) - len(sql[end:].lstrip(" "))  # swallow the space after the keyword
        sql = sql[:start] + sql[end:]
    return sql


@functools.lru_cache(maxsize=8192)
def parse_query(sql: str) -> exp.Expression:
    """sqlglot tree of one statement (cached: callers must not mutate it). Raises sqlglot's ParseError/TokenError,
    also for SQL nested deeper than sqlglot's recursive parser can follow (a runaway model writes `((((...`), and for
    SQL longer than MAX_QUERY_BYTES."""
    if reason := too_long(sql, "query"):
        raise sqlglot.errors.ParseError(reason)
    try:
        tree = sqlglot.parse_one(sql, read=DIALECT)
    except RecursionError:
        raise sqlglot.errors.ParseError(f"nested too deeply to parse ({sql.count('(')} parentheses)") from None
    if tree is None:
        raise sqlglot.errors.ParseError(f"no statement in {sql!r}")
    return tree


def orders_rows(gold: str) -> bool:
    """True when the gold query's outermost result is ordered (a top-level ORDER BY).

    The official evaluator checks for the substring 'order by' anywhere, so an ORDER BY inside a subquery also makes
    it compare in order; here only the outermost query counts (its row order is the only one SQL defines).

    >>> orders_rows("SELECT a FROM t ORDER BY a")
    True
    >>> orders_rows("SELECT a FROM t WHERE b = (SELECT b FROM u ORDER BY c LIMIT 1)")
    False
    """
    try:
        tree = parse_query(gold)
    except SqlglotError:
        return "order by" in normalize_sql(gold)
    return tree.args.get("order") is not None


def first_line(error: Exception) -> str:
    """The first line of an error message (sqlglot's carry a multi-line, ANSI-highlighted excerpt)."""
    text = str(error).strip().splitlines()
    return re.sub(r"\x1b\[[0-9;]*m", "", text[0]) if text else type(error).__name__
