"""Structural match: Spider's "exact set match" idea on sqlglot's parse tree (dialect sqlite).

Each query becomes a dict of components, each a canonical string; two queries match when all components are equal:

- ``select``: the select items as a multiset (order free, duplicates count), aliases dropped;
- ``from``: the tables as a multiset (self-joins count twice); a derived table counts by its own structure;
- ``where``: the AND-terms of WHERE *and of inner-join ON/USING conditions* as a set (``USING (c)`` is the
  equality it stands for, ``x BETWEEN a AND b`` is ``x >= a AND x <= b``);
- ``outer joins``: LEFT/RIGHT/FULL joins with their table and ON terms;
- ``group``, ``having`` (AND-terms as a set), ``order`` (a list: expression + direction), ``limit`` (presence);
- set operations: UNION/INTERSECT compare their two operands as an unordered pair, EXCEPT as an ordered one,
  UNION ALL differs from UNION; ORDER BY/LIMIT on a set operation count too;
- CTEs: by their structure, with references to them resolved to it.

Inside a component: literals are '?' (values ignored; an IN list of literals is one '?'), ``a > 5`` equals
``5 < a`` and ``a = b`` equals ``b = a``, nested AND/OR are order-free, keyword and identifier case are free,
subqueries are compared recursively, DISTINCT is ignored (the official default), select aliases are resolved where
ORDER BY/GROUP BY/HAVING use them. Columns resolve to ``table.column``: ``T1.name`` with ``FROM singer AS T1``,
``singer.name`` and a bare ``name`` are the same column when one table in scope has ``name`` (from the schema when
given, else inferred from the two queries); an unresolvable bare column stays ``?.name``. Columns that a top-level
``a = b`` (join condition or WHERE term) makes equal are interchangeable in the rest of that SELECT, so
``GROUP BY T1.id`` equals ``GROUP BY T2.id`` after ``ON T1.id = T2.id``. A double-quoted name that is no known
column is a string literal, as sqlite (and Spider's gold) read it.

Deliberate differences from the official evaluator (``evaluation.py``, which works on its own parse, needs
tables.json, and maps columns through foreign keys):

- the official ignores JOIN ON conditions (only the table list counts); here inner-join conditions are WHERE terms,
  so ``FROM a JOIN b ON a.x = b.y`` equals ``FROM a, b WHERE a.x = b.y`` and differs from a join on other columns;
- the official compares WHERE conditions as a list of units plus the set of AND/OR connectives; here the boolean
  structure itself is compared (AND-terms as a set, OR-terms as a set inside), and BETWEEN is two comparisons;
- the official drops the table of GROUP BY columns (``T1.id`` == ``T2.id`` whatever the tables); here tables are
  resolved and only join-equal columns are interchangeable;
- the official treats UNION/INTERSECT as ordered (main query vs. nested one); here they are commutative;
- the official accepts only the SQL subset its parser knows (it fails on e.g. CTEs); sqlglot reads full sqlite.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.errors import SqlglotError

from benchmarks.metrics.sql.text import first_line, parse_query, single_statement
from benchmarks.metrics.sql.verdict import GoldQueryError, Verdict

Schema = Mapping[str, Iterable[str]]
"""table name -> column names (any case)."""

COMPONENTS = ("with", "setop", "operands", "select", "from", "outer joins", "where", "group", "having", "order",
              "limit")
_FLIPPED = {exp.GT: "lt", exp.GTE: "lte", exp.LT: "gt", exp.LTE: "gte"}
_SYMMETRIC = (exp.EQ, exp.NEQ, exp.NullSafeEQ, exp.NullSafeNEQ)


def _arg(node: exp.Expression, name: str) -> object:
    """node.args[name] across sqlglot versions (v30 renamed 'from'/'with' to 'from_'/'with_')."""
    value = node.args.get(name)
    return value if value is not None else node.args.get(f"{name}_")


@dataclass
class _Scope:
    """Names visible in one SELECT: its sources (alias or name -> table key), and its select-list aliases."""

    sources: dict[str, str] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)
    select_aliases: dict[str, exp.Expression] = field(default_factory=dict)
    ctes: dict[str, str] = field(default_factory=dict)
    equal: dict[str, str] = field(default_factory=dict)
    """column -> representative of the columns an inner-join/WHERE equality makes interchangeable."""
    parent: _Scope | None = None

    def representative(self, column: str) -> str:
        scope: _Scope | None = self
        while scope is not None:
            column = scope.equal.get(column, column)
            scope = scope.parent
        return column

    def lookup_source(self, name: str) -> str | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.sources:
                return scope.sources[name]
            scope = scope.parent
        return None

    def lookup_cte(self, name: str) -> str | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.ctes:
                return scope.ctes[name]
            scope = scope.parent
        return None


class _Canonicalizer:
    def __init__(self, schema: dict[str, set[str]]) -> None:
        self.schema = schema
        self.all_columns = set().union(*schema.values()) if schema else set()

    # ------------------------------------------------------------ queries
    def components(self, node: exp.Expression, parent: _Scope | None = None) -> dict[str, str]:
        while isinstance(node, (exp.Subquery, exp.Paren)):
            node = node.this
        scope = _Scope(parent=parent)
        parts: dict[str, str] = {}
        with_ = _arg(node, "with")
        if isinstance(with_, exp.With):
            cte_signatures = []
            for cte in with_.expressions:
                signature = self.signature(cte.this, scope)
                scope.ctes[cte.alias_or_name.lower()] = f"cte#{_short_hash(signature)}"
                cte_signatures.append(signature)
            parts["with"] = " | ".join(sorted(cte_signatures))
        if isinstance(node, exp.SetOperation):
            parts.update(self._set_operation(node, scope))
        elif isinstance(node, exp.Select):
            parts.update(self._select(node, scope))
        else:
            parts["select"] = f"not a query: {node.key}"
        return parts

    def signature(self, node: exp.Expression, parent: _Scope | None) -> str:
        return "; ".join(f"{name}: {value}" for name, value in self.components(node, parent).items())

    def _set_operation(self, node: exp.SetOperation, scope: _Scope) -> dict[str, str]:
        left, right = self.signature(node.this, scope), self.signature(node.expression, scope)
        operands = [left, right] if isinstance(node, exp.Except) else sorted([left, right])
        all_rows = "" if node.args.get("distinct", True) else " all"
        parts = {"setop": f"{node.key}{all_rows}", "operands": " || ".join(f"({operand})" for operand in operands)}
        parts.update(self._order_and_limit(node, _Scope(parent=scope)))
        return parts

    def _select(self, node: exp.Select, scope: _Scope) -> dict[str, str]:
        where_terms: list[exp.Expression] = []
        using_pairs: list[tuple[str, str]] = []
        outer_joins: list[tuple[exp.Join, str]] = []
        from_ = _arg(node, "from")
        if isinstance(from_, exp.From):
            self._add_source(from_.this, scope)
        for join in node.args.get("joins") or []:
            key = self._add_source(join.this, scope)
            if join.side:  # LEFT/RIGHT/FULL: its condition is not a filter
                outer_joins.append((join, key))
                continue
            where_terms += _and_terms(join.args.get("on"))
            using_pairs += [self._using_pair(identifier.name.lower(), key, scope)
                            for identifier in join.args.get("using") or []]
        for item in node.expressions:
            if isinstance(item, exp.Alias):
                scope.select_aliases.setdefault(item.alias.lower(), item.this)
        where = node.args.get("where")
        if where is not None:
            where_terms += _and_terms(where.this)
        defining_terms = self._learn_equalities(where_terms, using_pairs, scope)
        group = node.args.get("group")
        having = node.args.get("having")
        having_terms = _and_terms(having.this if having else None)
        parts = {
            "select": _multiset(self.canon(item, scope) for item in node.expressions),
            "from": _multiset(scope.tables),
            "outer joins": _multiset(self._outer_join(join, key, scope) for join, key in outer_joins),
            "where": _set(defining_terms + [self.canon(term, scope) for term in where_terms]),
            "group": _set(self.canon(item, scope, use_aliases=True) for item in (group.expressions if group else [])),
            "having": _set(self.canon(term, scope, use_aliases=True) for term in having_terms),
        }
        parts.update(self._order_and_limit(node, scope))
        return parts

    def _outer_join(self, join: exp.Join, key: str, scope: _Scope) -> str:
        on_terms = _set(self.canon(term, scope) for term in _and_terms(join.args.get("on")))
        return f"{join.side.lower()} join {key} on {on_terms}"

    def _using_pair(self, column: str, right_key: str, scope: _Scope) -> tuple[str, str]:
        """``JOIN r USING (c)`` as the equality it stands for, with the left table having c (else the previous one)."""
        earlier = [table for table in scope.tables[:-1] if table != right_key] or scope.tables[:1]
        left_key = next((table for table in earlier if column in self.schema.get(table, ())), earlier[-1])
        return f"{left_key}.{column}", f"{right_key}.{column}"

    def _learn_equalities(
        self, where_terms: list[exp.Expression], pairs: list[tuple[str, str]], scope: _Scope
    ) -> list[str]:
        """Top-level ``a = b`` between columns make a and b interchangeable in this SELECT (GROUP BY T1.id equals
        GROUP BY T2.id after ``ON T1.id = T2.id``). Moves those terms out of where_terms; returns them canonical."""
        pairs = list(pairs)
        for term in list(where_terms):
            is_column_equality = isinstance(term, exp.EQ) and isinstance(term.this, exp.Column)
            if is_column_equality and isinstance(term.expression, exp.Column):
                left, right = self.canon(term.this, scope), self.canon(term.expression, scope)
                if "?" not in (left, right):
                    pairs.append((left, right))
                    where_terms.remove(term)
        parent: dict[str, str] = {}

        def find(column: str) -> str:
            while parent.get(column, column) != column:
                column = parent[column]
            return column

        for left, right in pairs:
            root_left, root_right = find(left), find(right)
            if root_left != root_right:
                parent[max(root_left, root_right)] = min(root_left, root_right)
        scope.equal = {column: find(column) for pair in pairs for column in pair}
        return [f"eq({_multiset_items(pair)})" for pair in pairs]

    def _order_and_limit(self, node: exp.Expression, scope: _Scope) -> dict[str, str]:
        order = node.args.get("order")
        items = [
            self.canon(item.this, scope, use_aliases=True, aliases_first=True)
            + (" desc" if item.args.get("desc") else " asc")
            for item in (order.expressions if order else [])
        ]
        return {"order": ", ".join(items), "limit": "yes" if node.args.get("limit") is not None else "no"}

    def _add_source(self, source: exp.Expression, scope: _Scope) -> str:
        alias = source.alias.lower() if source.alias else ""
        if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
            name = source.name.lower()
            key = scope.lookup_cte(name) or name
            scope.sources.setdefault(name, key)
        else:  # derived table, table function, ...
            inner = source.this if isinstance(source, exp.Subquery) else source
            shape = self.signature(inner, scope.parent) if isinstance(inner, exp.Query) else self.canon(inner, scope)
            key = f"derived#{_short_hash(shape)}"
        if alias:
            scope.sources[alias] = key
        scope.tables.append(key)
        return key

    # ------------------------------------------------------------ expressions
    def canon(self, node: exp.Expression | None, scope: _Scope, *, use_aliases: bool = False,
              aliases_first: bool = False) -> str:
        if node is None:
            return ""
        def again(child: exp.Expression) -> str:
            return self.canon(child, scope, use_aliases=use_aliases, aliases_first=aliases_first)

        if isinstance(node, exp.Query):
            return f"query({self.signature(node, scope)})"
        if isinstance(node, exp.Subquery):
            return f"query({self.signature(node.this, scope)})"
        if isinstance(node, (exp.Paren, exp.Alias)):
            return again(node.this)
        if isinstance(node, exp.Distinct):
            return ", ".join(again(item) for item in node.expressions)
        if isinstance(node, (exp.Literal, exp.Boolean, exp.Placeholder)) or (
            isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal)
        ):
            return "?"
        if isinstance(node, exp.Null):
            return "null"
        if isinstance(node, exp.Star):
            return "*"
        if isinstance(node, exp.Column):
            return self._column(node, scope, use_aliases, aliases_first)
        if isinstance(node, (exp.And, exp.Or)):
            return f"{node.key}({_set(again(term) for term in _flatten(node, type(node)))})"
        if isinstance(node, _SYMMETRIC):
            return f"{node.key}({_multiset_items([again(node.this), again(node.expression)])})"
        if type(node) in _FLIPPED:
            left, right = again(node.this), again(node.expression)
            return min(f"{node.key}({left}, {right})", f"{_FLIPPED[type(node)]}({right}, {left})")
        if isinstance(node, exp.In) and node.expressions and all(again(item) == "?" for item in node.expressions):
            return f"in({again(node.this)}, ?)"
        return self._generic(node, again)

    def _generic(self, node: exp.Expression, again) -> str:
        name = node.name.lower() if isinstance(node, exp.Anonymous) else node.key
        arguments = []
        for key, value in node.args.items():
            if value is None or value is False or value == [] or (isinstance(node, exp.Anonymous) and key == "this"):
                continue
            if isinstance(value, list):
                rendered = ", ".join(
                    again(item) if isinstance(item, exp.Expression) else str(item).lower() for item in value
                )
            elif isinstance(value, exp.Expression):
                rendered = again(value)
            else:
                rendered = str(value).lower()
            arguments.append(f"{key}={rendered}")
        return f"{name}({', '.join(arguments)})"

    def _column(self, node: exp.Column, scope: _Scope, use_aliases: bool, aliases_first: bool) -> str:
        name = node.name.lower()
        if node.table:
            qualifier = node.table.lower()
            return scope.representative(f"{scope.lookup_source(qualifier) or qualifier}.{name}")
        if node.this.args.get("quoted") and name not in self.all_columns:
            return "?"  # "Alice": sqlite reads a double-quoted non-column as a string
        alias = scope.select_aliases.get(name) if use_aliases else None
        if alias is not None and (aliases_first or not self._owners(name, scope)):
            return self.canon(alias, scope)
        return scope.representative(f"{self._resolve_bare(name, scope)}.{name}")

    def _owners(self, name: str, scope: _Scope) -> list[str]:
        return [table for table in dict.fromkeys(scope.tables) if name in self.schema.get(table, ())]

    def _resolve_bare(self, name: str, scope: _Scope) -> str:
        current: _Scope | None = scope
        while current is not None:
            owners = self._owners(name, current)
            if len(owners) == 1:
                return owners[0]
            if len(owners) > 1:
                return "?"
            current = current.parent
        distinct_tables = set(scope.tables)
        return next(iter(distinct_tables)) if len(distinct_tables) == 1 else "?"


def _flatten(node: exp.Expression, kind: type) -> list[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, kind):
        return _flatten(node.this, kind) + _flatten(node.expression, kind)
    return [node]


def _and_terms(node: exp.Expression | None) -> list[exp.Expression]:
    """Conjuncts, with ``x BETWEEN a AND b`` as its two comparisons (copies: the parse tree is cached, not ours)."""
    terms = []
    for term in [] if node is None else _flatten(node, exp.And):
        if isinstance(term, exp.Between):
            low, high = term.args.get("low"), term.args.get("high")
            terms += [exp.GTE(this=term.this.copy(), expression=low.copy()),
                      exp.LTE(this=term.this.copy(), expression=high.copy())]
        else:
            terms.append(term)
    return terms


def _set(items: Iterable[str]) -> str:
    return "{" + ", ".join(sorted(set(items))) + "}"


def _multiset(items: Iterable[str]) -> str:
    return "[" + _multiset_items(items) + "]"


def _multiset_items(items: Iterable[str]) -> str:
    return ", ".join(sorted(items))


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def _own_columns(select: exp.Select) -> Iterable[exp.Column]:
    """Columns of this SELECT, not of the queries nested in it. One pass, without a find_ancestor per column: that
    is quadratic on a runaway prediction (6,000 AND-terms took 10 s)."""
    stack = list(select.iter_expressions())
    while stack:
        node = stack.pop()
        if isinstance(node, exp.Column):
            yield node
        elif not isinstance(node, exp.Select):
            stack.extend(node.iter_expressions())


def _infer_schema(trees: Iterable[exp.Expression]) -> dict[str, set[str]]:
    """table -> columns seen in the queries: qualified references, and bare ones in single-table SELECTs."""
    inferred: dict[str, set[str]] = {}
    for tree in trees:
        for select in tree.find_all(exp.Select):
            sources: dict[str, str] = {}
            tables = []
            from_ = _arg(select, "from")
            for source in ([from_.this] if isinstance(from_, exp.From) else []) + [
                join.this for join in select.args.get("joins") or []
            ]:
                if isinstance(source, exp.Table):
                    sources[source.name.lower()] = source.name.lower()
                    if source.alias:
                        sources[source.alias.lower()] = source.name.lower()
                    tables.append(source.name.lower())
            for column in _own_columns(select):
                if column.table and column.table.lower() in sources:
                    inferred.setdefault(sources[column.table.lower()], set()).add(column.name.lower())
                elif not column.table and len(set(tables)) == 1 and not column.this.args.get("quoted"):
                    inferred.setdefault(tables[0], set()).add(column.name.lower())
    return inferred


def _merged_schema(schema: Schema | None, trees: Iterable[exp.Expression]) -> dict[str, set[str]]:
    merged = _infer_schema(trees)
    for table, columns in (schema or {}).items():
        merged.setdefault(table.lower(), set()).update(column.lower() for column in columns)
    return merged


def query_components(sql: str, schema: Schema | None = None) -> dict[str, str]:
    """The canonical components of one query (for debugging a structural verdict).

    >>> query_components("SELECT T1.name FROM singer AS T1 WHERE 56 < T1.age")["where"]
    '{gt(singer.age, ?)}'
    """
    tree = parse_query(sql)
    return _Canonicalizer(_merged_schema(schema, [tree])).components(tree)


def structural_match(gold: str, pred: str, *, schema: Schema | None = None) -> Verdict:
    """Spider-style exact set match on sqlglot trees (see the module docstring for the rules).

    >>> structural_match("SELECT T1.name FROM singer AS T1 WHERE T1.age > 5",
    ...                  "select name from SINGER where 10 < age")
    Verdict(correct=True, reason=None)
    >>> structural_match("SELECT name FROM singer WHERE age > 5", "SELECT name FROM singer WHERE age >= 5")
    Verdict(correct=False, reason='structure differs in: where')
    """
    try:
        gold_tree = parse_query(gold)
    except SqlglotError as error:
        raise GoldQueryError(f"gold query does not parse ({first_line(error)}): {gold!r}; fix the gold data") from error
    statement, reason = single_statement(pred)
    if statement is None:
        return Verdict(False, reason)
    try:
        pred_tree = parse_query(statement)
    except SqlglotError as error:
        return Verdict(False, f"syntax error: {first_line(error)}")
    if not isinstance(pred_tree, exp.Query):
        return Verdict(False, f"not a query: {pred_tree.key.upper()}")
    canonicalizer = _Canonicalizer(_merged_schema(schema, [gold_tree, pred_tree]))
    gold_parts, pred_parts = canonicalizer.components(gold_tree), canonicalizer.components(pred_tree)
    differing = [name for name in COMPONENTS if gold_parts.get(name) != pred_parts.get(name)]
    if "setop" in differing:  # a set operation against a plain SELECT differs everywhere: say the one thing
        differing = ["setop"]
    if not differing:
        return Verdict(True)
    return Verdict(False, f"structure differs in: {', '.join(differing)}")
