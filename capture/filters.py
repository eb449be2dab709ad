"""Capture-side filters: which tables, which columns, which rows go into the trail.

* tables — include/exclude ``schema.table`` globs (:class:`connectors.base.TableFilter`);
* columns — ``[tables.columns] "shop.users" = ["id", "email"]`` keeps only those columns in
  row images, keys and recorded definitions (identity columns are always kept);
* rows — ``[tables.where] "shop.orders" = "status <> 'test' AND total >= 10"``: a SQL boolean
  parsed with sqlglot and evaluated in Python on the row image (the after image for inserts and
  updates, the before image for deletes). Supported: comparisons, AND/OR/NOT, IN, IS [NOT]
  NULL, LIKE, BETWEEN, parentheses, literals (numbers, strings, TRUE/FALSE/NULL). SQL
  three-valued logic: a comparison with NULL is unknown, and unknown rows are dropped.

Renames (``[tables.rename]``) are *not* applied here: the trail keeps source names so several
targets can map them differently; apply renames.

DDL of selected tables always passes (never filtered by a row predicate).
"""

from __future__ import annotations

import datetime as dt
import decimal
import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import sqlglot
from sqlglot import exp

from connectors.base import TableFilter
from connectors.errors import ConfigError
from connectors.model import Change, Op, Row, TableId, TableSchema, Value

__all__ = ["CaptureFilter", "Predicate", "compile_predicate"]

Predicate = Callable[[Mapping[str, Value]], bool | None]


def compile_predicate(text: str, *, key: str = "tables.where") -> Predicate:
    """Parse ``text`` (a SQL boolean) into a function of a row image; ConfigError if unsupported."""
    try:
        tree = sqlglot.parse_one(text, read="mysql")
    except sqlglot.errors.ParseError as exc:
        raise ConfigError(f"cannot parse the row predicate {text!r}: {exc}", key=key) from None
    try:
        return _compile(tree)
    except _Unsupported as exc:
        raise ConfigError(
            f"the row predicate {text!r} uses {exc}, which capture cannot evaluate",
            key=key,
            hint="use comparisons, AND/OR/NOT, IN, IS NULL, LIKE, BETWEEN on column values",
        ) from None


class _Unsupported(Exception):
    pass


def _like(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    # MySQL's default collations compare case-insensitively
    return re.compile("".join(out), re.S | re.I)


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    """Bring a row value and a literal to comparable types (as SQL would cast)."""
    if isinstance(a, bool):
        a = int(a)
    if isinstance(b, bool):
        b = int(b)
    if isinstance(a, str) and isinstance(b, str):
        return a.lower(), b.lower()  # case-insensitive like MySQL's default collations
    if isinstance(a, decimal.Decimal) and isinstance(b, float):
        return float(a), b
    if isinstance(a, float) and isinstance(b, decimal.Decimal):
        return a, float(b)
    if isinstance(a, dt.datetime | dt.date) and isinstance(b, str):
        return a, _parse_time(b, a)
    if isinstance(b, dt.datetime | dt.date) and isinstance(a, str):
        return _parse_time(a, b), b
    if isinstance(a, int | float | decimal.Decimal) and isinstance(b, str):
        return a, decimal.Decimal(b)
    if isinstance(b, int | float | decimal.Decimal) and isinstance(a, str):
        return decimal.Decimal(a), b
    return a, b


def _parse_time(text: str, like: dt.date) -> Any:
    if isinstance(like, dt.datetime):
        value = dt.datetime.fromisoformat(text)
        if like.tzinfo is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value
    return dt.date.fromisoformat(text)


_CMP: dict[type[exp.Expression], Callable[[Any, Any], bool]] = {
    exp.EQ: lambda a, b: a == b,
    exp.NEQ: lambda a, b: a != b,
    exp.GT: lambda a, b: a > b,
    exp.GTE: lambda a, b: a >= b,
    exp.LT: lambda a, b: a < b,
    exp.LTE: lambda a, b: a <= b,
}


def _compile(node: Any) -> Callable[[Mapping[str, Value]], Any]:
    inner = _compile_node(node)
    if not node.args.get("negate"):
        return inner

    def negated(row: Mapping[str, Value]) -> bool | None:  # sqlglot's NOT LIKE
        v = inner(row)
        return None if v is None else not v

    return negated


def _compile_node(node: Any) -> Callable[[Mapping[str, Value]], Any]:
    if isinstance(node, exp.Paren):
        return _compile(node.this)
    if isinstance(node, exp.And | exp.Or):
        left, right = _compile(node.left), _compile(node.right)
        if isinstance(node, exp.And):

            def and_(row: Mapping[str, Value]) -> bool | None:
                a = left(row)
                if a is False:
                    return False
                b = right(row)
                if b is False:
                    return False
                return None if a is None or b is None else True

            return and_

        def or_(row: Mapping[str, Value]) -> bool | None:
            a = left(row)
            if a is True:
                return True
            b = right(row)
            if b is True:
                return True
            return None if a is None or b is None else False

        return or_
    if isinstance(node, exp.Not):
        inner = _compile(node.this)

        def not_(row: Mapping[str, Value]) -> bool | None:
            v = inner(row)
            return None if v is None else not v

        return not_
    if type(node) in _CMP:
        op = _CMP[type(node)]
        left, right = _compile(node.left), _compile(node.right)

        def cmp(row: Mapping[str, Value]) -> bool | None:
            a, b = left(row), right(row)
            if a is None or b is None:
                return None
            return op(*_comparable(a, b))

        return cmp
    if isinstance(node, exp.Is):
        inner = _compile(node.this)
        target = node.expression
        if isinstance(target, exp.Null):
            return lambda row: inner(row) is None
        if isinstance(target, exp.Boolean):
            want = target.this
            return lambda row: inner(row) is not None and bool(inner(row)) == want
        raise _Unsupported(f"IS {target.sql()}")
    if isinstance(node, exp.In):
        inner = _compile(node.this)
        if node.args.get("query") is not None:
            raise _Unsupported("IN (subquery)")
        options = [_compile(e) for e in node.expressions]

        def in_(row: Mapping[str, Value]) -> bool | None:
            a = inner(row)
            if a is None:
                return None
            unknown = False
            for opt in options:
                b = opt(row)
                if b is None:
                    unknown = True
                elif (lambda x, y: x == y)(*_comparable(a, b)):
                    return True
            return None if unknown else False

        return in_
    if isinstance(node, exp.Between):
        inner, low, high = (
            _compile(node.this),
            _compile(node.args["low"]),
            _compile(node.args["high"]),
        )

        def between(row: Mapping[str, Value]) -> bool | None:
            a, lo, hi = inner(row), low(row), high(row)
            if a is None or lo is None or hi is None:
                return None
            x, y = _comparable(a, lo)
            x2, z = _comparable(a, hi)
            return bool(y <= x and x2 <= z)

        return between
    if isinstance(node, exp.Like):
        inner = _compile(node.this)
        pattern = node.expression
        if not isinstance(pattern, exp.Literal) or not pattern.is_string:
            raise _Unsupported("LIKE with a non-literal pattern")
        rx = _like(pattern.this)

        def like(row: Mapping[str, Value]) -> bool | None:
            a = inner(row)
            if a is None:
                return None
            return rx.fullmatch(a if isinstance(a, str) else str(a)) is not None

        return like
    if isinstance(node, exp.Column):
        name = node.name

        def column(row: Mapping[str, Value]) -> Any:
            try:
                return row[name]
            except KeyError:
                raise ConfigError(
                    f"the row predicate names column {name!r}, which the table does not have",
                    key="tables.where",
                ) from None

        return column
    if isinstance(node, exp.Literal):
        if node.is_string:
            text = node.this
            return lambda row: text
        number = decimal.Decimal(node.this)
        value: Any = (
            int(number) if number == number.to_integral_value() and "." not in node.this else number
        )
        return lambda row: value
    if isinstance(node, exp.Boolean):
        flag = bool(node.this)
        return lambda row: flag
    if isinstance(node, exp.Null):
        return lambda row: None
    if isinstance(node, exp.Neg):
        inner = _compile(node.this)
        return lambda row: None if inner(row) is None else -inner(row)
    raise _Unsupported(node.key.upper() if node.key else type(node).__name__)


def _match(patterns: Mapping[str, Any], table: TableId) -> Any:
    """The value of the first ``schema.table`` glob in ``patterns`` that matches ``table``."""
    name = str(table)
    if name in patterns:
        return patterns[name]
    for pattern, value in patterns.items():
        if fnmatch.fnmatchcase(name, pattern):
            return value
    return None


@dataclass
class CaptureFilter:
    """Everything capture filters, built from the ``[tables]`` configuration."""

    tables: TableFilter = field(default_factory=TableFilter)
    #: ``schema.table`` (glob allowed) -> columns to keep
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: ``schema.table`` (glob allowed) -> SQL boolean on the row image
    where: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._predicates = {
            pattern: compile_predicate(text, key=f"tables.where.{pattern}")
            for pattern, text in self.where.items()
        }
        self._cache: dict[TableId, tuple[Predicate | None, frozenset[str] | None]] = {}

    @classmethod
    def from_config(cls, tables: Any) -> CaptureFilter:
        """From a :class:`toolkit_cli.config.TablesConfig`-like object (include, exclude,
        columns, where)."""
        return cls(
            TableFilter(tuple(tables.include), tuple(tables.exclude)),
            dict(tables.columns),
            dict(tables.where),
        )

    @property
    def trivial(self) -> bool:
        """No column subsets and no row predicates: changes pass unchanged."""
        return not self.columns and not self.where

    def _rules(self, table: TableId) -> tuple[Predicate | None, frozenset[str] | None]:
        rules = self._cache.get(table)
        if rules is None:
            cols = _match(self.columns, table)
            rules = self._cache[table] = (
                _match(self._predicates, table),
                frozenset(cols) if cols is not None else None,
            )
        return rules

    def apply(self, change: Change) -> Change | None:
        """The change as it goes into the trail, or None when the row predicate drops it."""
        if change.op is Op.DDL or change.op is Op.TRUNCATE:
            if change.table_schema is not None:
                _, keep = self._rules(change.table)
                if keep is not None:
                    change.table_schema = _project_schema(change.table_schema, keep)
            return change
        predicate, keep = self._rules(change.table)
        if predicate is not None:
            image = change.after if change.after is not None else change.before
            if image is None or predicate(image) is not True:
                return None
        if keep is not None:
            change.before = _project(change.before, keep, change.key)
            change.after = _project(change.after, keep, change.key)
        return change


def _project(row: Row | None, keep: frozenset[str], key: Row | None) -> Row | None:
    if row is None:
        return None
    return {k: v for k, v in row.items() if k in keep or (key is not None and k in key)}


def _project_schema(schema: TableSchema, keep: frozenset[str]) -> TableSchema:
    always = set(schema.identity)
    cols = tuple(c for c in schema.columns if c.name in keep or c.name in always)
    names = {c.name for c in cols}
    uniques = tuple(u for u in schema.unique_keys if all(n in names for n in u))
    return replace(schema, columns=cols, unique_keys=uniques)
