"""Databases synthesized from a CREATE TABLE context, for execution checks where no real database exists.

The idea of Zhong et al. 2020 ("Semantic Evaluation for Text-to-SQL with Distilled Test Suites"): run gold and
prediction on several small random databases and call the prediction correct only when it agrees with the gold on
all of them. Values are chosen so that queries select something, and so that the databases look like real ones:

- columns are grouped by name (and by ``a = b`` conditions in either query); a group shares one value pool, so
  joins hit;
- literals of both queries go into the pool of the column they are compared with (``age > 56`` -> 55, 56, 57;
  ``name LIKE '%ab%'`` -> 'ab', 'xab', 'aby', ...); generated numbers straddle the literals; literals not next to a
  column go into every pool of their kind; so WHERE clauses are true for some rows and false for others;
- a column holds numbers when its declared type is numeric or only numbers are compared with it, else text; tables
  keep the declared types, so sqlite's type affinity behaves as it would on the real schema;
- keys are unique: a declared single-column PRIMARY KEY, or a column named ``id``, ``<table>_id`` or ``<table>id``
  (the contexts of sql-create-context declare no keys); other columns of a key's group take their values from the
  keys (foreign-key integrity), so a join on a key never duplicates or loses rows the way it cannot on real data;
- columns used in ORDER BY get distinct values, so ties do not decide the row order;
- pools are small otherwise (repeats make GROUP BY, COUNT and DISTINCT matter); a table has between half and all
  of 3, 6, 10 or 15 rows depending on the database (now and then none); no NULLs by default
  (``null_probability``): real Spider data has few, and COUNT(col) vs COUNT(*) would otherwise fail predictions
  that the real database accepts.

Everything is deterministic for (seed, context, literals of both queries). A prediction that names a table or
column missing from the context fails on these databases with a 'not in schema' reason. A gold query that fails
because the context lacks a name it uses raises IncompleteSchemaError (a GoldQueryError): score_sql then retries with
the database's schema, and reports None when none fits.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from benchmarks.metrics.sql.compare import describe_difference, gold_failed, prepare_pair, results_equal
from benchmarks.metrics.sql.sandbox import Deadline, Sandbox, open_readonly
from benchmarks.metrics.sql.text import DIALECT, orders_rows, parse_query, too_long
from benchmarks.metrics.sql.verdict import IncompleteSchemaError, UnreadableDatabaseError, Verdict

NUMERIC_AFFINITIES = ("INTEGER", "REAL", "NUMERIC")
TABLE_SIZES = (3, 6, 10, 15)  # most rows per table, by database index: small ones and ones where counts differ
GENERATED_VALUES_PER_POOL = 4
LITERAL_PROBABILITY = 0.5


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    """(column name, declared type) in declaration order."""
    keys: frozenset[str] = frozenset()
    """Lower-case name of a single-column PRIMARY KEY, when the schema declares one."""


def affinity(declared_type: str) -> str:
    """sqlite's type-affinity rules (section 3.1 of https://www.sqlite.org/datatype3.html).

    >>> [affinity(t) for t in ("INT", "VARCHAR(20)", "", "DOUBLE", "DECIMAL(10,2)", "blob")]
    ['INTEGER', 'TEXT', 'BLOB', 'REAL', 'NUMERIC', 'BLOB']
    """
    upper = declared_type.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in upper or not upper.strip():
        return "BLOB"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


@functools.lru_cache(maxsize=2048)
def parse_schema(context: str) -> tuple[Table, ...]:
    """Tables of a ``CREATE TABLE t (col TYPE, ...); CREATE TABLE u (...)`` text (repeated tables are merged).

    >>> parse_schema("CREATE TABLE head (age INTEGER, name VARCHAR); CREATE TABLE t (x VARCHAR)")[0].columns
    (('age', 'INTEGER'), ('name', 'TEXT'))
    >>> parse_schema("CREATE TABLE t (id INTEGER PRIMARY KEY, x VARCHAR)")[0].keys
    frozenset({'id'})
    """
    try:
        statements = sqlglot.parse(context, read=DIALECT)
    except SqlglotError as error:
        raise ValueError(f"cannot read the CREATE TABLE context {context[:200]!r}: {error}") from error
    columns_by_table: dict[str, dict[str, tuple[str, str]]] = {}
    keys_by_table: dict[str, set[str]] = {}
    names: dict[str, str] = {}
    for statement in statements:
        if not isinstance(statement, exp.Create) or not isinstance(statement.this, exp.Schema):
            continue
        table_name = statement.this.this.name
        names.setdefault(table_name.lower(), table_name)
        columns = columns_by_table.setdefault(table_name.lower(), {})
        keys = keys_by_table.setdefault(table_name.lower(), set())
        for column in statement.this.expressions:
            if isinstance(column, exp.ColumnDef):
                kind = column.args.get("kind")
                declared = kind.sql(dialect=DIALECT) if kind is not None else ""
                columns.setdefault(column.name.lower(), (column.name, declared))
                if column.find(exp.PrimaryKeyColumnConstraint):
                    keys.add(column.name.lower())
            elif isinstance(column, exp.PrimaryKey) and len(column.expressions) == 1:
                keys.add(column.expressions[0].name.lower())
    if not columns_by_table:
        raise ValueError(f"no CREATE TABLE statement in the context {context[:200]!r}")
    single_keys = {table: frozenset(keys) if len(keys) == 1 else frozenset() for table, keys in keys_by_table.items()}
    return tuple(Table(names[key], tuple(columns.values()), single_keys[key]) 
                 for key, columns in columns_by_table.items())


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def schema_to_context(tables: Iterable[Table]) -> str:
    """CREATE TABLE text for tables, in the sql-create-context style (names quoted, a primary key marked).

    >>> schema_to_context([Table("t", (("a", "INTEGER"), ("b c", "")), frozenset({"a"}))])
    'CREATE TABLE "t" ("a" INTEGER PRIMARY KEY, "b c")'
    """
    def column(table: Table, name: str, declared: str) -> str:
        key = " PRIMARY KEY" if name.lower() in table.keys else ""
        return f"{quote(name)} {declared}".rstrip() + key

    return "; ".join(
        f"CREATE TABLE {quote(table.name)} (" + ", ".join(column(table, *pair) for pair in table.columns) + ")"
        for table in tables
    )


@functools.lru_cache(maxsize=256)
def _schema_of_file(resolved: str, _mtime_ns: int) -> str:
    connection = open_readonly(Path(resolved))
    try:
        table_names = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        ]
        tables = []
        for name in table_names:
            info = connection.execute(f"PRAGMA table_info({quote(name)})").fetchall()
            keys = [row[1].lower() for row in info if row[5]]
            columns = tuple((row[1], affinity(row[2] or "")) for row in info)
            tables.append(Table(name, columns, frozenset(keys) if len(keys) == 1 else frozenset()))
    except sqlite3.Error as error:  # a schema that the header check let through but that cannot be read
        raise UnreadableDatabaseError(f"{resolved}: {error}") from error
    finally:
        connection.close()
    return schema_to_context(tables)


def schema_from_database(db_path: Path) -> str:
    """CREATE TABLE text (context style, types reduced to their affinity) read from a sqlite file's schema.

    Raises UnreadableDatabaseError when the file is not a readable sqlite database."""
    resolved = Path(db_path).resolve()
    return _schema_of_file(str(resolved), resolved.stat().st_mtime_ns)


# ---------------------------------------------------------------- literals and joins of the queries


@dataclass
class _Evidence:
    """What the queries say about values: literals per column name, loose literals, joined column names."""

    by_column: dict[str, list[object]] = field(default_factory=dict)
    loose: list[object] = field(default_factory=list)
    joins: list[tuple[str, str]] = field(default_factory=list)
    ordered: set[str] = field(default_factory=set)
    """Columns sorted on (ORDER BY): their values are made distinct, so ties do not decide the row order."""


def _literal_value(node: exp.Expression, known_columns: set[str]) -> object | None:
    """The Python value of a literal node (also -5, and "x" that sqlite reads as a string), else None.
    Text that is not valid Unicode (a lone surrogate from a model's output) cannot be stored: None."""
    value = _raw_literal_value(node, known_columns)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return value


def _raw_literal_value(node: exp.Expression, known_columns: set[str]) -> object | None:
    if isinstance(node, exp.Paren):
        return _raw_literal_value(node.this, known_columns)
    if isinstance(node, exp.Neg):
        inner = _raw_literal_value(node.this, known_columns)
        return -inner if isinstance(inner, (int, float)) else None
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        try:
            return int(node.this)
        except ValueError:  # also an int of more than 4,300 digits
            try:
                number = float(node.this)
            except ValueError:
                return None
            return number if math.isfinite(number) else None  # 1e999: no range of values straddles it
    if _is_string_identifier(node, known_columns):
        return node.name
    return None


def _is_string_identifier(node: exp.Expression, known_columns: set[str]) -> bool:
    """A double-quoted name that is no column: sqlite (and Spider's gold) read it as a string."""
    return (
        isinstance(node, exp.Column)
        and not node.table
        and node.this.args.get("quoted", False)
        and node.name.lower() not in known_columns
    )


def _column_name(node: exp.Expression, known_columns: set[str]) -> str | None:
    if isinstance(node, exp.Column) and not _is_string_identifier(node, known_columns):
        return node.name.lower()
    return None


def _like_variants(pattern: str) -> list[str]:
    core = pattern.replace("%", "").replace("_", "")
    return [pattern, core, f"x{core}", f"{core}y", f"x{core}y"]


def _collect_evidence(trees: Iterable[exp.Expression], known_columns: set[str]) -> _Evidence:
    evidence = _Evidence()
    used: set[int] = set()

    def tie(column_node: exp.Expression, value_node: exp.Expression | None, like: bool = False) -> None:
        column = _column_name(column_node, known_columns)
        value = _literal_value(value_node, known_columns) if value_node is not None else None
        if column is None or value is None:
            return
        values = _like_variants(value) if like and isinstance(value, str) else [value]
        evidence.by_column.setdefault(column, []).extend(values)
        used.add(id(value_node))

    for tree in trees:
        for node in tree.walk():
            if isinstance(node, (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ILike, exp.Glob)):
                like = isinstance(node, (exp.Like, exp.ILike, exp.Glob))
                left, right = node.this, node.expression
                tie(left, right, like)
                tie(right, left, like)
                left_column, right_column = _column_name(left, known_columns), _column_name(right, known_columns)
                if left_column and right_column:
                    evidence.joins.append((left_column, right_column))
            elif isinstance(node, exp.In):
                for value_node in node.expressions:
                    tie(node.this, value_node)
            elif isinstance(node, exp.Between):
                tie(node.this, node.args.get("low"))
                tie(node.this, node.args.get("high"))
            elif isinstance(node, exp.Ordered) and isinstance(node.this, exp.Column):
                evidence.ordered.add(node.this.name.lower())
        for node in tree.walk():
            if id(node) not in used and isinstance(node, exp.Literal):
                value = _literal_value(node, known_columns)
                if value is not None:
                    evidence.loose.append(value)
    return evidence


# ---------------------------------------------------------------- value pools and databases


def _neighbours(value: object) -> list[object]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return [value]
    return [value - 1, value, value + 1]


def _as_number(value: object) -> int | float | None:
    if isinstance(value, (int, float)):
        return value
    try:
        return int(str(value))
    except ValueError:
        try:
            return float(str(value))
        except ValueError:
            return None


def _sorted_unique(values: Iterable[object]) -> list[object]:
    """Deterministic order for a mix of types (sets of mixed values have no stable order)."""
    unique = {(type(value).__name__, repr(value)): value for value in values}
    return [unique[key] for key in sorted(unique)]


def _looks_like_key(table: Table, column: str) -> bool:
    """A declared single-column primary key, or a name that says so: id, <table>_id, <table>id (singular too).

    >>> _looks_like_key(Table("stadium", ()), "Stadium_ID"), _looks_like_key(Table("concert", ()), "stadium_id")
    (True, False)
    """
    name, table_name = column.lower(), table.name.lower()
    stems = {table_name, table_name.removesuffix("s")}
    return name in table.keys or name == "id" or any(name in (f"{stem}_id", f"{stem}id") for stem in stems)


class _Groups:
    """Union-find over lower-case column names: columns that must share values (same name, or joined)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.parent = {name: name for name in names}

    def find(self, name: str) -> str:
        while self.parent[name] != name:
            self.parent[name] = self.parent[self.parent[name]]
            name = self.parent[name]
        return name

    def union(self, a: str, b: str) -> None:
        if a in self.parent and b in self.parent:
            root_a, root_b = sorted((self.find(a), self.find(b)))
            self.parent[root_b] = root_a


@dataclass(frozen=True)
class _Pool:
    literal_values: tuple[object, ...]
    """From the queries' literals (and their neighbours): drawn half of the time."""
    common_values: tuple[object, ...]
    """A few generated values: drawn the other half, so values repeat."""
    spare_values: tuple[object, ...]
    """More generated values, for columns whose values must be unique."""


def _number_range(numbers: Sequence[int | float]) -> range:
    """Generated numbers straddle the literals, so comparisons with them go both ways."""
    if not numbers:
        return range(0, 40)
    low, high = int(min(numbers)), int(max(numbers))
    span = max(10, high - low)
    return range(low - span, high + span + 1)


def _pool(root: str, literals: list[object], loose: list[object], numeric_declared: bool, size: int,
          rng: random.Random) -> _Pool:
    numbers = [value for value in literals if isinstance(value, (int, float))]
    strings = [value for value in literals if isinstance(value, str)]
    textual = [value for value in strings if _as_number(value) is None]
    if not textual and (numbers or strings or numeric_declared):  # nothing textual compared, something numeric
        numbers += [number for number in map(_as_number, strings) if number is not None]
        loose_numbers = [value for value in loose if isinstance(value, (int, float))]
        literal_values = [value for number in numbers + loose_numbers for value in _neighbours(number)]
        candidates = _number_range(numbers)
        generated = rng.sample(candidates, min(len(candidates), size + GENERATED_VALUES_PER_POOL))
    else:
        literal_values = strings + [value for value in loose if isinstance(value, str)] + list(map(str, numbers))
        generated = [f"{root[:12]}{index}" for index in rng.sample(range(size * 3), size + GENERATED_VALUES_PER_POOL)]
    common = generated[:GENERATED_VALUES_PER_POOL]
    return _Pool(tuple(_sorted_unique(literal_values)), tuple(common), tuple(generated[GENERATED_VALUES_PER_POOL:]))


@dataclass(frozen=True)
class _Plan:
    """How to fill one database: value pools per column group, which columns are unique, which reference a key."""

    groups: _Groups
    pools: dict[str, _Pool]
    unique: set[tuple[str, str]]
    """(table, column) pairs whose values are distinct within the table: keys and ORDER BY columns."""
    keyed_groups: set[str]
    """Groups holding a key column: their other columns take values from the keys (foreign-key integrity)."""


def _plan(tables: Sequence[Table], evidence: _Evidence, rng: random.Random, size: int) -> _Plan:
    declared: dict[str, list[str]] = {}
    for table in tables:
        for name, declared_type in table.columns:
            declared.setdefault(name.lower(), []).append(affinity(declared_type))
    groups = _Groups(declared)
    for a, b in evidence.joins:
        groups.union(a, b)
    members: dict[str, list[str]] = {}
    for name in sorted(declared):
        members.setdefault(groups.find(name), []).append(name)
    pools = {
        root: _pool(root, [value for name in names for value in evidence.by_column.get(name, [])], evidence.loose,
                    any(kind in NUMERIC_AFFINITIES for name in names for kind in declared[name]), size, rng)
        for root, names in members.items()
    }
    keys = {(table.name, name) for table in tables for name, _ in table.columns if _looks_like_key(table, name)}
    ordered = {(table.name, name) for table in tables for name, _ in table.columns if name.lower() in evidence.ordered}
    keyed_groups = {groups.find(name.lower()) for _, name in keys}
    return _Plan(groups, pools, keys | ordered, keyed_groups)


def _distinct_values(pool: _Pool, count: int, rng: random.Random) -> list[object]:
    candidates = list(pool.literal_values + pool.common_values + pool.spare_values)
    rng.shuffle(candidates)
    return (candidates * (count // max(1, len(candidates)) + 1))[:count]


def _fill(connection: sqlite3.Connection, tables: Sequence[Table], plan: _Plan, rng: random.Random,
          max_rows: int, null_probability: float) -> None:
    row_counts = {
        table.name: 0 if rng.random() < 0.05 else rng.randint(max(1, max_rows // 2), max_rows) for table in tables
    }
    columns: dict[tuple[str, str], list[object]] = {}
    key_values: dict[str, list[object]] = {}
    for table in tables:  # unique columns first: the values other columns may reference
        for name, _ in table.columns:
            if (table.name, name) in plan.unique:
                root = plan.groups.find(name.lower())
                values = _distinct_values(plan.pools[root], row_counts[table.name], rng)
                columns[(table.name, name)] = values
                key_values.setdefault(root, []).extend(values)
    for table in tables:
        for name, _ in table.columns:
            if (table.name, name) in columns:
                continue
            root = plan.groups.find(name.lower())
            referenced = _sorted_unique(key_values.get(root, [])) if root in plan.keyed_groups else []
            columns[(table.name, name)] = [
                rng.choice(referenced) if referenced else _draw(plan.pools[root], rng, null_probability)
                for _ in range(row_counts[table.name])
            ]
    for table in tables:
        declarations = ", ".join(f"{quote(name)} {affinity(declared)}" for name, declared in table.columns)
        connection.execute(f"CREATE TABLE {quote(table.name)} ({declarations})")
        rows = list(zip(*(columns[(table.name, name)] for name, _ in table.columns)))
        placeholders = ", ".join("?" for _ in table.columns)
        connection.executemany(f"INSERT INTO {quote(table.name)} VALUES ({placeholders})", rows)
    connection.commit()


def _draw(pool: _Pool, rng: random.Random, null_probability: float) -> object:
    if null_probability and rng.random() < null_probability:
        return None
    if pool.literal_values and rng.random() < LITERAL_PROBABILITY:
        return rng.choice(pool.literal_values)
    return rng.choice(pool.common_values)


def _parse_all(queries: Iterable[str]) -> list[exp.Expression]:
    trees = []
    for query in queries:
        try:
            trees.append(parse_query(query))
        except SqlglotError:
            pass  # an unparsable prediction contributes no literals; it fails on execution with its own reason
    return trees


def build_databases(context: str, queries: Sequence[str], *, n_databases: int = 8, seed: int = 0,
                    null_probability: float = 0.0) -> list[sqlite3.Connection]:
    """n small random in-memory databases for the context, with values drawn from the queries' literals.

    Deterministic for (context, queries' literals, seed). Plain connections; sandbox them before running model SQL.
    """
    return list(iter_databases(context, queries, n_databases=n_databases, seed=seed, null_probability=null_probability))


def iter_databases(context: str, queries: Sequence[str], *, n_databases: int = 8, seed: int = 0,
                   null_probability: float = 0.0) -> Iterator[sqlite3.Connection]:
    """build_databases, one at a time (a prediction that fails on the first costs one database, not n)."""
    tables = parse_schema(context)
    known_columns = {name.lower() for table in tables for name, _ in table.columns}
    evidence = _collect_evidence(_parse_all(queries), known_columns)
    digest = hashlib.sha256(repr((seed, context, sorted(map(repr, evidence.by_column.items())),
                                  sorted(map(repr, evidence.loose)), sorted(evidence.joins),
                                  sorted(evidence.ordered))).encode()).hexdigest()
    for index in range(n_databases):
        rng = random.Random(f"{digest}:{index}")
        max_rows = TABLE_SIZES[index % len(TABLE_SIZES)]
        plan = _plan(tables, evidence, rng, max_rows)
        connection = sqlite3.connect(":memory:")
        _fill(connection, tables, plan, rng, max_rows, null_probability)
        yield connection


_SCHEMA_ERRORS = ("error: no such table", "error: no such column", "error: ambiguous column name")


def _raise_gold_failure(gold: str, context: str, index: int, error: str | None) -> None:
    if error and error.startswith(_SCHEMA_ERRORS):
        raise IncompleteSchemaError(
            f"the schema lacks a name the gold query uses ({error.removeprefix('error: ')}): gold {gold!r}, "
            f"schema {context[:300]!r}; give a complete CREATE TABLE context or the real database"
        )
    raise gold_failed(gold, f"synthesized database {index + 1} of context {context[:300]!r}", error)


def _pred_failure(error: str | None) -> str:
    if error and error.startswith("error: no such"):
        return f"not in schema: {error.removeprefix('error: ')}"
    return error or "error"


def synthesized_match(
    gold: str,
    pred: str,
    context: str,
    *,
    n_databases: int = 8,
    seed: int = 0,
    distinct: str = "strip",
    timeout_s: float = 2.0,
    max_rows: int = 100_000,
    null_probability: float = 0.0,
    deadline: Deadline | None = None,
) -> Verdict:
    """Correct when the prediction's result equals the gold's (execution_match's comparison) on all databases.

    When the gold returns no rows on every database the verdict is still given, with a reason that says it is weak.
    Raises IncompleteSchemaError when the context lacks a table/column the gold uses, GoldQueryError when the gold
    fails otherwise. Each query stops at ``timeout_s``; the prediction's runs together stop at ``deadline``.
    """
    if not pred.strip():
        return Verdict(False, "empty prediction")
    if reason := too_long(pred):
        return Verdict(False, reason)
    gold_sql, pred_sql = prepare_pair(gold, pred, distinct)
    ordered = orders_rows(gold)
    gold_ever_nonempty = False
    for index, connection in enumerate(
        iter_databases(context, [gold, pred], n_databases=n_databases, seed=seed, null_probability=null_probability)
    ):
        sandbox = Sandbox(connection)
        try:
            gold_result = sandbox.run(gold_sql, timeout_s=timeout_s, max_rows=max_rows)
            if not gold_result.ok:
                _raise_gold_failure(gold, context, index, gold_result.error)
            pred_result = sandbox.run(pred_sql, timeout_s=timeout_s, max_rows=max_rows, deadline=deadline)
        finally:
            sandbox.close()
        if not pred_result.ok:
            return Verdict(False, _pred_failure(pred_result.error))
        if not results_equal(gold_result.rows or [], pred_result.rows or [], ordered=ordered):
            return Verdict(False, f"{describe_difference(gold_result, pred_result)} "
                                  f"on synthesized database {index + 1} of {n_databases}")
        gold_ever_nonempty = gold_ever_nonempty or bool(gold_result.rows)
    if not gold_ever_nonempty:
        return Verdict(True, f"weak: gold returns no rows on all {n_databases} synthesized databases")
    return Verdict(True)


__all__ = [
    "IncompleteSchemaError",
    "Table",
    "build_databases",
    "iter_databases",
    "parse_schema",
    "schema_from_database",
    "schema_to_context",
    "synthesized_match",
]
