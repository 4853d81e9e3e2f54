"""SQL metrics: normalization properties, structural canonicalization, execution comparison, synthesized databases.

Queries come from a small generator over a two-table schema; each is rendered in many equivalent styles (keyword
case, whitespace, aliases, select-list and AND-term order, flipped comparisons) and mutated (operator changed,
WHERE dropped) to check what each metric must and must not tell apart.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from benchmarks.metrics.sql import (
    GoldQueryError,
    IncompleteSchemaError,
    Verdict,
    build_databases,
    exact_match,
    execution_match,
    normalize_sql,
    results_equal,
    score_sql,
    structural_match,
    synthesized_match,
)
from benchmarks.metrics.sql.text import orders_rows, single_statement, strip_distinct

CONTEXT = (
    "CREATE TABLE singer (singer_id INTEGER, name VARCHAR, country VARCHAR, age INTEGER); "
    "CREATE TABLE concert (concert_id INTEGER, singer_id INTEGER, year INTEGER)"
)
SINGERS = [(1, "Joe", "France", 52), (2, "Ann", "Spain", 30), (3, "Bo", "France", 29), (4, "Kim", "Korea", 41),
           (5, "Lu", "Spain", 30), (6, "Max", "Peru", 18), (7, "Ola", "France", 66), (8, "Pia", "Korea", 35)]
CONCERTS = [(10, 1, 2014), (11, 1, 2015), (12, 2, 2014), (13, 4, 2016), (14, 4, 2014), (15, 7, 2013), (16, 8, 2015)]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "concert_singer.sqlite"
    connection = sqlite3.connect(path)
    connection.executescript(CONTEXT.replace("; ", ";\n") + ";")
    connection.executemany("INSERT INTO singer VALUES (?, ?, ?, ?)", SINGERS)
    connection.executemany("INSERT INTO concert VALUES (?, ?, ?)", CONCERTS)
    connection.commit()
    connection.close()
    return path


# ---------------------------------------------------------------- a small query generator


@dataclass(frozen=True)
class Condition:
    table: str
    column: str
    op: str
    value: int | str


@dataclass(frozen=True)
class Query:
    columns: tuple[tuple[str, str], ...]
    conditions: tuple[Condition, ...]
    join: bool
    order_by: str | None


@dataclass(frozen=True)
class Style:
    keyword_case: str = "upper"
    spacing: str = " "
    aliases: bool = True
    alias_names: tuple[str, str] = ("T1", "T2")
    column_order: tuple[int, ...] | None = None
    condition_order: tuple[int, ...] | None = None
    flipped: frozenset[int] = frozenset()


FLIP = {">": "<", "<": ">", ">=": "<=", "<=": ">=", "=": "=", "!=": "!="}
NUMERIC = {("singer", "age"): st.sampled_from([18, 29, 30, 35, 41, 52]),
           ("concert", "year"): st.sampled_from([2013, 2014, 2015])}
TEXT = {("singer", "country"): st.sampled_from(["France", "Spain", "Korea"])}


@st.composite
def conditions(draw, join: bool) -> Condition:
    choices = list(NUMERIC) + list(TEXT)
    if not join:
        choices = [choice for choice in choices if choice[0] == "singer"]
    table, column = draw(st.sampled_from(choices))
    if (table, column) in TEXT:
        return Condition(table, column, draw(st.sampled_from(["=", "!="])), draw(TEXT[(table, column)]))
    return Condition(table, column, draw(st.sampled_from(list(FLIP))), draw(NUMERIC[(table, column)]))


@st.composite
def queries(draw) -> Query:
    join = draw(st.booleans())
    available = [("singer", "name"), ("singer", "country"), ("singer", "age")] + ([("concert", "year")] if join else [])
    columns = tuple(draw(st.lists(st.sampled_from(available), min_size=1, max_size=3, unique=True)))
    where = tuple(draw(st.lists(conditions(join), min_size=0, max_size=2)))
    order_by = None if join else draw(st.sampled_from([None, "name", "singer_id"]))  # unique keys: no ties
    return Query(columns, where, join, order_by)


def render(query: Query, style: Style = Style()) -> str:
    def kw(word: str) -> str:
        return {"upper": word.upper(), "lower": word.lower(), "title": word.title()}[style.keyword_case]

    alias = dict(zip(("singer", "concert"), style.alias_names if style.aliases else ("singer", "concert")))

    def ref(table: str, column: str) -> str:
        return f"{alias[table]}.{column}" if query.join or style.aliases else column

    def literal(value: int | str) -> str:
        return f"'{value}'" if isinstance(value, str) else str(value)

    columns = [query.columns[i] for i in (style.column_order or range(len(query.columns)))]
    terms = [query.conditions[i] for i in (style.condition_order or range(len(query.conditions)))]
    rendered_terms = []
    for index, term in enumerate(terms):
        if index in style.flipped:
            rendered_terms.append(f"{literal(term.value)} {FLIP[term.op]} {ref(term.table, term.column)}")
        else:
            rendered_terms.append(f"{ref(term.table, term.column)} {term.op} {literal(term.value)}")
    sql = f"{kw('select')} {', '.join(ref(t, c) for t, c in columns)} {kw('from')} singer"
    if style.aliases:
        sql += f" {kw('as')} {alias['singer']}"
    if query.join:
        sql += f" {kw('join')} concert {kw('as')} {alias['concert']} {kw('on')} "
        sql += f"{ref('singer', 'singer_id')} = {ref('concert', 'singer_id')}"
    if rendered_terms:
        sql += f" {kw('where')} " + f" {kw('and')} ".join(rendered_terms)
    if query.order_by:
        sql += f" {kw('order by')} {ref('singer', query.order_by)}"
    return sql.replace(" ", style.spacing)


@st.composite
def styles(draw, query: Query, text_only: bool = False) -> Style:
    style = Style(keyword_case=draw(st.sampled_from(["upper", "lower", "title"])),
                  spacing=draw(st.sampled_from([" ", "  ", " \n ", "\t"])))
    if text_only:
        return style
    return replace(
        style,
        aliases=query.join or draw(st.booleans()),
        alias_names=draw(st.sampled_from([("T1", "T2"), ("s", "c"), ("a", "b")])),
        column_order=tuple(draw(st.permutations(range(len(query.columns))))),
        condition_order=tuple(draw(st.permutations(range(len(query.conditions))))),
        flipped=frozenset(draw(st.sets(st.integers(0, max(0, len(query.conditions) - 1))))),
    )


# ---------------------------------------------------------------- normalize_sql and exact match

CODE_TOKENS = st.sampled_from(["select", "FROM", "Where", "t", "a", "b1", "count", "(", ")", "*", ",", "=", ">", ".",
                               ";", "+", "-", "and", "OR", "1", "42"])
LITERALS = st.text(alphabet=st.characters(blacklist_characters="'", blacklist_categories=("Cs",)), max_size=8).map(
    lambda text: f"'{text}'")


@given(st.text())
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize_sql(text)
    assert normalize_sql(once) == once


@given(st.lists(st.one_of(CODE_TOKENS, LITERALS), min_size=1, max_size=12), st.data())
def test_normalize_ignores_case_and_whitespace_outside_literals_and_keeps_literals(tokens: list[str], data) -> None:
    def spell(token: str) -> str:
        if token.startswith("'"):
            return token
        return data.draw(st.sampled_from([token.lower(), token.upper(), token.title()]))

    def join(parts: list[str]) -> str:
        return "".join(part + data.draw(st.sampled_from([" ", "  ", "\n", "\t "])) for part in parts)

    plain = join(tokens)
    restyled = join([spell(token) for token in tokens])
    assert normalize_sql(plain) == normalize_sql(restyled)
    for literal in (token for token in tokens if token.startswith("'")):
        assert literal in normalize_sql(plain)


def test_exact_match_examples() -> None:
    assert exact_match("SELECT count(*) FROM head WHERE age  >  56", "select count( * ) from HEAD where age>56").correct
    assert exact_match("SELECT a FROM t WHERE b = 'X'", "SELECT a FROM t WHERE b = 'x'") == Verdict(
        False, "text differs")
    assert exact_match("SELECT a FROM t", " \n") == Verdict(False, "empty prediction")


def test_statement_helpers() -> None:
    assert single_statement("SELECT 1 -- trailing; comment") == ("SELECT 1", None)
    assert strip_distinct("SELECT DISTINCT a FROM t") == "SELECT a FROM t"
    assert orders_rows("SELECT a FROM t UNION SELECT b FROM u ORDER BY a")


# ---------------------------------------------------------------- properties over generated queries


@FAST
@given(queries())
def test_a_query_matches_itself_under_every_metric(database: Path, query: Query) -> None:
    sql = render(query)
    verdicts = score_sql(sql, sql, db_path=database, context=CONTEXT)
    assert all(verdict is not None and verdict.correct for verdict in verdicts.values()), verdicts


@FAST
@given(st.data())
def test_case_and_whitespace_keep_every_verdict(database: Path, data) -> None:
    query = data.draw(queries())
    gold, pred = render(query), render(query, data.draw(styles(query, text_only=True)))
    verdicts = score_sql(gold, pred, db_path=database, context=CONTEXT)
    assert all(verdict is not None and verdict.correct for verdict in verdicts.values()), (gold, pred, verdicts)


@FAST
@given(st.data())
def test_semantics_preserving_rewrites_keep_structural_and_execution_verdicts(database: Path, data) -> None:
    query = data.draw(queries())
    gold, pred = render(query), render(query, data.draw(styles(query)))
    verdicts = score_sql(gold, pred, db_path=database, context=CONTEXT)
    for metric in ("structural", "execution", "execution_synth"):
        assert verdicts[metric] is not None and verdicts[metric].correct, (metric, gold, pred, verdicts[metric])


def _mutations(query: Query) -> list[Query]:
    mutated = [replace(query, conditions=())] if query.conditions else []
    for index, term in enumerate(query.conditions):
        for op in {"=": ["!=", ">"], "!=": ["="], ">": [">=", "<"], ">=": [">", "<="], "<": ["<=", ">"],
                   "<=": ["<", ">="]}[term.op]:
            terms = list(query.conditions)
            terms[index] = replace(term, op=op)
            mutated.append(replace(query, conditions=tuple(terms)))
    return mutated


def _denotation(connection: sqlite3.Connection, sql: str, ordered: bool) -> object:
    rows = connection.execute(sql).fetchall()
    return rows if ordered else Counter(rows)


@FAST
@given(st.data())
def test_changed_operator_or_dropped_where_fails_whenever_a_database_tells_them_apart(data) -> None:
    query = data.draw(queries())
    assume(query.conditions)
    gold = render(query)
    pred = render(data.draw(st.sampled_from(_mutations(query))))
    ordered = query.order_by is not None
    told_apart = any(
        _denotation(connection, gold, ordered) != _denotation(connection, pred, ordered)
        for connection in build_databases(CONTEXT, [gold, pred])
    )
    verdict = synthesized_match(gold, pred, CONTEXT)
    assert verdict.correct is not told_apart, (gold, pred, verdict)
    assert not structural_match(gold, pred).correct


def test_boundary_operator_change_and_dropped_where_are_caught() -> None:
    gold = "SELECT name FROM singer WHERE age > 30"
    assert not synthesized_match(gold, "SELECT name FROM singer WHERE age >= 30", CONTEXT).correct
    assert not synthesized_match(gold, "SELECT name FROM singer", CONTEXT).correct
    assert not synthesized_match(gold, "SELECT name FROM singer WHERE 30 < age", CONTEXT).reason


# ---------------------------------------------------------------- structural match


@pytest.mark.parametrize(("gold", "pred"), [
    ("SELECT T1.name FROM singer AS T1", "SELECT singer.name FROM singer"),
    ("SELECT T1.name FROM singer AS T1", "select NAME from SINGER"),
    ("SELECT name, age FROM singer WHERE age > 5 AND country = 'x'",
     "SELECT age, name FROM singer WHERE country = 'y' AND 7 < age"),
    ("SELECT count(*) FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id",
     "SELECT count(*) FROM concert AS a JOIN singer AS b ON b.singer_id = a.singer_id"),
    ("SELECT T2.name FROM concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.singer_id GROUP BY T1.singer_id",
     "SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id GROUP BY T1.singer_id"),
    ("SELECT a FROM singer JOIN concert ON singer.singer_id = concert.singer_id",
     "SELECT a FROM singer, concert WHERE concert.singer_id = singer.singer_id"),
    ("SELECT name FROM singer WHERE age BETWEEN 1 AND 9", "SELECT name FROM singer WHERE age >= 2 AND age <= 3"),
    ("SELECT country, count(*) AS n FROM singer GROUP BY country ORDER BY n DESC LIMIT 1",
     "SELECT country, COUNT(*) FROM singer GROUP BY country ORDER BY count(*) DESC LIMIT 3"),
    ("SELECT name FROM singer WHERE age IN (1, 2, 3)", "SELECT name FROM singer WHERE age IN (4)"),
    ("SELECT name FROM singer UNION SELECT name FROM concert",
     "SELECT name FROM concert UNION SELECT name FROM singer"),
    ('SELECT name FROM singer WHERE country = "France"', "SELECT name FROM singer WHERE country = 'Spain'"),
    ("SELECT name FROM singer WHERE singer_id NOT IN (SELECT T1.singer_id FROM concert AS T1)",
     "SELECT name FROM singer WHERE singer_id NOT IN (SELECT singer_id FROM concert)"),
])
def test_structurally_equal(gold: str, pred: str) -> None:
    assert structural_match(gold, pred) == Verdict(True)


@pytest.mark.parametrize(("gold", "pred", "component"), [
    ("SELECT name FROM singer", "SELECT name, age FROM singer", "select"),
    ("SELECT name FROM singer WHERE age > 5", "SELECT name FROM singer WHERE age < 5", "where"),
    ("SELECT name FROM singer WHERE a = 1 AND b = 2", "SELECT name FROM singer WHERE a = 1 OR b = 2", "where"),
    ("SELECT name FROM singer ORDER BY age", "SELECT name FROM singer ORDER BY age DESC", "order"),
    ("SELECT name FROM singer ORDER BY age LIMIT 1", "SELECT name FROM singer ORDER BY age", "limit"),
    ("SELECT name FROM singer EXCEPT SELECT name FROM concert",
     "SELECT name FROM concert EXCEPT SELECT name FROM singer", "operands"),
    ("SELECT name FROM singer UNION SELECT name FROM concert", "SELECT name FROM singer", "setop"),
    ("SELECT count(*) FROM singer GROUP BY country", "SELECT count(*) FROM singer GROUP BY age", "group"),
    ("SELECT a FROM singer JOIN concert ON singer.x = concert.y",
     "SELECT a FROM singer JOIN concert ON singer.x = concert.z", "where"),
])
def test_structurally_different(gold: str, pred: str, component: str) -> None:
    verdict = structural_match(gold, pred)
    assert not verdict.correct and component in verdict.reason


def test_structural_failures_of_the_prediction_are_verdicts() -> None:
    assert structural_match("SELECT a FROM t", "The query selects a.").reason.startswith("syntax error")
    assert structural_match("SELECT a FROM t", "") == Verdict(False, "empty prediction")
    assert structural_match("SELECT a FROM t", "SELECT 1; SELECT 2") == Verdict(False, "multiple statements (2)")
    with pytest.raises(GoldQueryError, match="gold query does not parse"):
        structural_match("SELECT FROM WHERE (", "SELECT 1")


# ---------------------------------------------------------------- execution comparison


@pytest.mark.parametrize(("gold", "pred", "ordered", "equal"), [
    ([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], False, True),
    ([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], True, False),
    ([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], True, True),
    ([(1, 1), (2, 2)], [(1, 1), (2, 2)], False, True),
    ([(1, 2), (2, 1)], [(2, 1), (1, 2)], False, True),  # identical column multisets: the permutation search decides
    ([(1, 2), (3, 4)], [(2, 3), (4, 1)], False, False),
    ([(1,), (1,), (2,)], [(1,), (2,), (2,)], False, False),  # multisets, not sets
    ([(0.1 + 0.2,)], [(0.3,)], False, True),
    ([(2,)], [(2.0,)], False, True),
    ([(2,)], [("2",)], False, False),
    ([], [], False, True),
    ([(1,)], [], False, False),
    ([(1, 2)], [(1,)], False, False),
])
def test_results_equal(gold, pred, ordered: bool, equal: bool) -> None:
    assert results_equal(gold, pred, ordered=ordered) is equal


def test_execution_distinct_modes(database: Path) -> None:
    gold, pred = "SELECT DISTINCT country FROM singer", "SELECT country FROM singer"
    assert execution_match(gold, pred, database).correct  # official default strips DISTINCT from both
    assert not execution_match(gold, pred, database, distinct="keep").correct
    with pytest.raises(ValueError, match="distinct must be one of"):
        execution_match(gold, pred, database, distinct="sometimes")


def test_execution_orders_only_under_gold_order_by(database: Path) -> None:
    assert execution_match("SELECT name FROM singer", "SELECT name FROM singer ORDER BY name DESC", database).correct
    assert not execution_match("SELECT name FROM singer ORDER BY name", "SELECT name FROM singer ORDER BY name DESC",
                               database).correct


def test_failing_gold_raises_naming_query_and_database(database: Path) -> None:
    with pytest.raises(GoldQueryError, match=r"concert_singer\.sqlite.*no such table: nope"):
        execution_match("SELECT * FROM nope", "SELECT 1", database)


# ---------------------------------------------------------------- synthesized databases and score_sql


def test_synthesized_databases_are_deterministic_and_seeded() -> None:
    queries = ["SELECT name FROM singer WHERE age > 30"]

    def dump(seed: int) -> list[list[tuple]]:
        databases = build_databases(CONTEXT, queries, seed=seed)
        return [connection.execute("SELECT * FROM singer").fetchall() for connection in databases]

    assert dump(0) == dump(0)
    assert dump(0) != dump(1)


def test_synthesized_values_hit_the_where_clause_and_the_join() -> None:
    gold = "SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id WHERE T2.year = 2014"
    hits = [connection.execute(gold).fetchall() for connection in build_databases(CONTEXT, [gold])]
    assert sum(bool(rows) for rows in hits) >= 4


def test_synthesized_names_outside_the_context_are_wrong_with_reason() -> None:
    verdict = synthesized_match("SELECT name FROM singer", "SELECT nickname FROM singer", CONTEXT)
    assert verdict == Verdict(False, "not in schema: no such column: nickname")


def test_synthesized_gold_that_is_always_empty_is_flagged() -> None:
    gold = "SELECT name FROM singer WHERE age > 5 AND age < 5"
    verdict = synthesized_match(gold, gold, CONTEXT)
    assert verdict.correct and verdict.reason.startswith("weak: gold returns no rows")


def test_synthesized_databases_are_sandboxed_too() -> None:
    endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    assert synthesized_match("SELECT 1", endless, CONTEXT, timeout_s=0.2) == Verdict(False, "timeout after 0.2s")
    assert synthesized_match("SELECT name FROM singer", "DELETE FROM singer", CONTEXT).reason.startswith("denied")


def test_score_sql_keys_and_missing_inputs(tmp_path: Path) -> None:
    verdicts = score_sql("SELECT name FROM singer", "SELECT name FROM singer", db_path=tmp_path / "missing.sqlite",
                         context=None)
    assert list(verdicts) == ["exact", "structural", "execution", "execution_synth"]
    assert verdicts["execution"] is None and verdicts["execution_synth"] is None


def test_score_sql_falls_back_to_the_database_schema(database: Path) -> None:
    gold = "SELECT name FROM singer WHERE age > 30"
    incomplete = "CREATE TABLE singer (name VARCHAR)"
    with pytest.raises(IncompleteSchemaError, match="no such column: age"):
        synthesized_match(gold, gold, incomplete)
    assert score_sql(gold, gold, db_path=None, context=incomplete)["execution_synth"] is None
    verdict = score_sql(gold, gold, db_path=database, context=incomplete)["execution_synth"]
    assert verdict.correct and "schema from the database" in verdict.reason


@pytest.mark.parametrize("pred", ["", "The answer is 42.", "DROP TABLE singer", "SELECT 1; SELECT 2"])
def test_bad_predictions_are_wrong_verdicts_under_every_metric(database: Path, pred: str) -> None:
    verdicts = score_sql("SELECT name FROM singer", pred, db_path=database, context=CONTEXT)
    assert all(verdict and not verdict.correct and verdict.reason for verdict in verdicts.values()), verdicts
    assert re.match(r"(empty prediction|syntax error|denied|multiple statements|text differs|structure differs)",
                    verdicts["structural"].reason)


@pytest.mark.parametrize("depth", [50, 120, 400])
def test_a_runaway_nested_prediction_is_a_wrong_verdict_not_a_crash(depth):
    """A small model's runaway output (found on real Spider data): sqlglot's recursive parser cannot follow it."""
    pred = "SELECT name FROM head WHERE age IN " + "(" * depth + "1" + ")" * depth
    verdicts = score_sql("SELECT name FROM head WHERE age > 56", pred, db_path=None,
                         context="CREATE TABLE head (age INTEGER, name VARCHAR)")
    assert verdicts["structural"] == Verdict(False, verdicts["structural"].reason)
    assert "nested too deeply" in verdicts["structural"].reason or "syntax error" in verdicts["structural"].reason
    assert verdicts["exact"].correct is False and verdicts["execution_synth"].correct is False
