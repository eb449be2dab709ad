"""Capture-side filters: which tables, which columns, which rows go into the trail.

* tables — include/exclude ``schema.table`` globs (:class:`connectors.base.TableFilter`);
* columns — ``[tables.columns] "shop.users" = ["id", "email"]`` keeps only those columns in
  row images, keys and recorded definitions (identity columns are always kept);
* rows — ``[tables.where] "shop.orders" = "status <> 'test' AND total >= 10"``: a SQL boolean
  parsed with sqlglot and evaluated in Python on the row image (the after image for inserts,
  the before image for deletes, both images for updates: an update that leaves the predicate
  becomes a delete, one that enters it an insert). Supported: comparisons, AND/OR/NOT, IN, IS
  [NOT] NULL, LIKE, BETWEEN, parentheses, literals (numbers, strings, TRUE/FALSE/NULL). SQL
  three-valued logic: a comparison with NULL is unknown, and unknown rows are dropped.

:class:`CaptureFilter` is the one definition of the filtered view: snapshot pushes its column
list and its predicate (translated into the source's SQL) into the source query, verify and
repair compare exactly that view, apply renames with it. Renames (``[tables.rename]``) are
*not* applied to the trail: it keeps source names so several targets can map them
differently; apply renames.

DDL of selected tables always passes (never filtered by a row predicate).
"""

from __future__ import annotations

import collections
import contextvars
import datetime as dt
import decimal
import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import sqlglot
from sqlglot import exp

from connectors.base import Database, TableFilter
from connectors.errors import ConfigError, SchemaError
from connectors.model import UNCHANGED, Change, Op, Row, TableId, TableSchema, Value

__all__ = [
    "CaptureFilter",
    "FilterStats",
    "Predicate",
    "compile_predicate",
    "parse_predicate",
    "rename_table",
]

Predicate = Callable[[Mapping[str, Value]], bool | None]


#: the dialect a ``[tables.where]`` predicate is read in (single-quoted strings, backquoted
#: or bare identifiers); it is translated from this into each engine's SQL
PREDICATE_DIALECT = "mysql"


def parse_predicate(text: str, *, key: str = "tables.where") -> Any:
    """The predicate's sqlglot tree; ConfigError when it does not parse."""
    try:
        tree = sqlglot.parse_one(text, read=PREDICATE_DIALECT)
    except sqlglot.errors.ParseError as exc:
        raise ConfigError(f"cannot parse the row predicate {text!r}: {exc}", key=key) from None
    if tree is None:
        raise ConfigError(f"the row predicate {text!r} is empty", key=key)
    return tree


def compile_predicate(
    text: str, *, key: str = "tables.where", case_insensitive: bool = True
) -> Predicate:
    """Parse ``text`` (a SQL boolean) into a function of a row image; ConfigError if unsupported.

    ``case_insensitive``: text compares as the source's SQL compares it (MySQL's default
    collations ignore case, PostgreSQL's do not), so the snapshot's SQL and streaming's
    Python agree on which rows are in.
    """
    tree = parse_predicate(text, key=key)
    token = _CASE.set(case_insensitive)
    try:
        return _compile(tree)
    except _Unsupported as exc:
        raise ConfigError(
            f"the row predicate {text!r} uses {exc}, which capture cannot evaluate",
            key=key,
            hint="use comparisons, AND/OR/NOT, IN, IS NULL, LIKE, BETWEEN on column values",
        ) from None
    finally:
        _CASE.reset(token)


class _Unsupported(Exception):
    pass


# whether the predicate being compiled compares text case-insensitively (compile time only)
_CASE: contextvars.ContextVar[bool] = contextvars.ContextVar("_CASE", default=True)


def _like(pattern: str, case_insensitive: bool) -> re.Pattern[str]:
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
    return re.compile("".join(out), re.S | (re.I if case_insensitive else 0))


def _comparable(a: Any, b: Any, case_insensitive: bool = True) -> tuple[Any, Any]:
    """Bring a row value and a literal to comparable types (as SQL would cast)."""
    if isinstance(a, bool):
        a = int(a)
    if isinstance(b, bool):
        b = int(b)
    if isinstance(a, str) and isinstance(b, str):
        # case-insensitive like MySQL's default collations; PostgreSQL compares exactly
        return (a.lower(), b.lower()) if case_insensitive else (a, b)
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
    for part in (_compile_logic, _compile_test, _compile_value):
        compiled = part(node)
        if compiled is not None:
            return compiled
    raise _Unsupported(node.key.upper() if node.key else type(node).__name__)


#: a compiled (sub)expression: row -> value, None for SQL NULL / unknown
_Compiled = Callable[[Mapping[str, Value]], Any]


def _compile_logic(node: Any) -> _Compiled | None:
    """Parentheses, AND, OR and NOT (three-valued); None: not one of them."""
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
    return None


def _compile_test(node: Any) -> _Compiled | None:
    """Comparisons, IS, IN, BETWEEN and LIKE; None: not one of them."""
    ci = _CASE.get()
    if type(node) in _CMP:
        op = _CMP[type(node)]
        left, right = _compile(node.left), _compile(node.right)

        def cmp(row: Mapping[str, Value]) -> bool | None:
            a, b = left(row), right(row)
            if a is None or b is None:
                return None
            return op(*_comparable(a, b, ci))

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
                elif (lambda x, y: x == y)(*_comparable(a, b, ci)):
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
            x, y = _comparable(a, lo, ci)
            x2, z = _comparable(a, hi, ci)
            return bool(y <= x and x2 <= z)

        return between
    if isinstance(node, exp.Like):
        inner = _compile(node.this)
        pattern = node.expression
        if not isinstance(pattern, exp.Literal) or not pattern.is_string:
            raise _Unsupported("LIKE with a non-literal pattern")
        rx = _like(pattern.this, ci)

        def like(row: Mapping[str, Value]) -> bool | None:
            a = inner(row)
            if a is None:
                return None
            return rx.fullmatch(a if isinstance(a, str) else str(a)) is not None

        return like
    return None


def _compile_value(node: Any) -> _Compiled | None:
    """Columns, literals, NULL and negation; None: not one of them."""
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
    return None


def _match(patterns: Mapping[str, Any], table: TableId) -> Any:
    """The value of the first ``schema.table`` glob in ``patterns`` that matches ``table``."""
    name = str(table)
    if name in patterns:
        return patterns[name]
    for pattern, value in patterns.items():
        if fnmatch.fnmatchcase(name, pattern):
            return value
    return None


def rename_table(rename: Mapping[str, str], table: TableId) -> TableId:
    """The name ``table`` gets on the target under ``[tables.rename]`` (a whole
    ``schema.table``, else its schema)."""
    whole = rename.get(str(table))
    if whole:
        return TableId.parse(whole)
    schema = rename.get(table.schema)
    return TableId(schema, table.name) if schema else table


@dataclass
class FilterStats:
    """What the row predicates did to the stream, per source table (``schema.table``)."""

    #: inserts, deletes and out→out updates outside the predicate: not written
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    #: updates that moved a row out of the predicate: written as deletes
    moved_out: collections.Counter[str] = field(default_factory=collections.Counter)
    #: updates that moved a row into the predicate: written as inserts
    moved_in: collections.Counter[str] = field(default_factory=collections.Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "dropped": dict(self.dropped),
            "updates_to_deletes": dict(self.moved_out),
            "updates_to_inserts": dict(self.moved_in),
        }

    def summary(self) -> str:
        """One line for the log and the CLI; empty when nothing was filtered."""
        parts = []
        if self.dropped:
            parts.append(f"{sum(self.dropped.values())} changes outside [tables.where] dropped")
        if self.moved_out:
            parts.append(f"{sum(self.moved_out.values())} updates left the predicate (deletes)")
        if self.moved_in:
            parts.append(f"{sum(self.moved_in.values())} updates entered the predicate (inserts)")
        return "; ".join(parts)


@dataclass
class CaptureFilter:
    """The filtered view of the source, built once from ``[tables]`` and used by every path:
    capture (rows and columns of the stream), snapshot (the source query and the target
    table), verify and repair (what is compared), apply (renames)."""

    tables: TableFilter = field(default_factory=TableFilter)
    #: ``schema.table`` (glob allowed) -> columns to keep
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: ``schema.table`` (glob allowed) -> SQL boolean on the row image
    where: Mapping[str, str] = field(default_factory=dict)
    #: ``schema.table`` -> ``schema.table``, or ``schema`` -> ``schema`` (the target's names)
    rename: Mapping[str, str] = field(default_factory=dict)
    #: text compares case-insensitively in the predicates (the source's SQL semantics;
    #: :meth:`bind` sets it from the source)
    case_insensitive: bool = True

    def __post_init__(self) -> None:
        self._compile()
        self.stats = FilterStats()

    def _compile(self) -> None:
        self._predicates = {
            pattern: compile_predicate(
                text, key=f"tables.where.{pattern}", case_insensitive=self.case_insensitive
            )
            for pattern, text in self.where.items()
        }
        self._cache: dict[TableId, tuple[Predicate | None, frozenset[str] | None]] = {}

    @classmethod
    def from_config(cls, tables: Any, *, table_filter: TableFilter | None = None) -> CaptureFilter:
        """From a :class:`toolkit_cli.config.TablesConfig`-like object (include, exclude,
        columns, where, rename); ``table_filter`` replaces include/exclude (``--tables``)."""
        return cls(
            table_filter or TableFilter(tuple(tables.include), tuple(tables.exclude)),
            dict(tables.columns),
            dict(tables.where),
            dict(getattr(tables, "rename", {}) or {}),
        )

    def bind(self, source: Database) -> CaptureFilter:
        """Evaluate predicates with ``source``'s text comparison (see ``compile_predicate``)."""
        ci = source.text_compare_ci
        if ci != self.case_insensitive:
            self.case_insensitive = ci
            self._compile()
        return self

    @property
    def trivial(self) -> bool:
        """No column subsets and no row predicates: changes pass unchanged."""
        return not self.columns and not self.where

    # ------------------------------------------------------------------ the view of a table

    def target_name(self, table: TableId) -> TableId:
        """The name ``table`` gets on the target after renames."""
        return rename_table(self.rename, table)

    def column_subset(self, table: TableId) -> tuple[str, ...] | None:
        """``table``'s ``[tables.columns]`` list as configured (None: every column)."""
        cols = _match(self.columns, table)
        return tuple(cols) if cols is not None else None

    def where_text(self, table: TableId) -> str | None:
        """``table``'s row predicate as configured, or None."""
        text = _match(self.where, table)
        return str(text) if text is not None else None

    def where_sql(self, table: TableId, dialect: str) -> str | None:
        """``table``'s row predicate as SQL of ``dialect`` (identifiers quoted), or None."""
        text = self.where_text(table)
        if text is None:
            return None
        tree = parse_predicate(text, key=f"tables.where.{table}")
        return str(tree.sql(dialect=dialect, identify=True))

    def predicate_columns(self, table: TableId) -> frozenset[str]:
        """The columns ``table``'s row predicate reads."""
        text = self.where_text(table)
        if text is None:
            return frozenset()
        tree = parse_predicate(text, key=f"tables.where.{table}")
        return frozenset(c.name for c in tree.find_all(exp.Column))

    def view_columns(self, schema: TableSchema) -> tuple[str, ...] | None:
        """The columns of ``schema`` the view keeps, in table order (None: all of them).

        ConfigError when the subset names a column the table lacks, or leaves out a row
        identity column (without it a change could not find its row on the target).
        """
        wanted = _match(self.columns, schema.table)
        if wanted is None:
            return None
        names = set(schema.column_names)
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise ConfigError(
                f"[tables.columns] for {schema.table} names column(s) {', '.join(unknown)}, "
                "which the table does not have",
                key=f"tables.columns.{schema.table}",
            )
        missing = [c for c in schema.identity if c not in wanted]
        if missing:
            raise ConfigError(
                f"[tables.columns] for {schema.table} leaves out its row identity column(s) "
                f"{', '.join(missing)}",
                key=f"tables.columns.{schema.table}",
                hint="a column subset must keep the primary key (or the unique key that "
                "identifies rows): add " + ", ".join(repr(c) for c in missing),
            )
        keep = set(wanted)
        return tuple(c for c in schema.column_names if c in keep)

    def project_schema(self, schema: TableSchema) -> TableSchema:
        """``schema`` with only the view's columns (the target table's definition)."""
        cols = self.view_columns(schema)
        return schema if cols is None else _project_schema(schema, frozenset(cols))

    def problems(
        self, source: Database, tables: Iterable[TableId]
    ) -> list[tuple[TableId, str, str]]:
        """(table, what is wrong, how to fix it) for every selected table whose view cannot
        be replicated exactly: a bad column subset, a predicate on a missing column, or a
        predicate on non-key columns while the source logs only the key as an update's
        before image (then whether the row was in the view before cannot be decided)."""
        out: list[tuple[TableId, str, str]] = []
        for table in tables:
            if _match(self.columns, table) is None and _match(self.where, table) is None:
                continue
            schema = source.table_schema(table)
            try:
                self.view_columns(schema)
            except ConfigError as exc:
                out.append((table, exc.message, exc.hint or ""))
            used = self.predicate_columns(table)
            absent = sorted(used - set(schema.column_names))
            if absent:
                out.append(
                    (
                        table,
                        f"[tables.where] for {table} names column(s) {', '.join(absent)}, "
                        "which the table does not have",
                        "fix the predicate",
                    )
                )
            beyond_key = sorted(used - set(schema.identity))
            if beyond_key and not schema.full_before_image:
                out.append(
                    (
                        table,
                        f"{table}: the source logs only the key as an update's before image, so "
                        f"whether a row was inside [tables.where] (it reads "
                        f"{', '.join(beyond_key)}) cannot be decided",
                        source.full_before_image_fix(table),
                    )
                )
        return out

    def check_source(self, source: Database, tables: Iterable[TableId]) -> None:
        """Raise ConfigError naming every table of :meth:`problems`."""
        found = self.problems(source, tables)
        if found:
            raise ConfigError(
                "the filtered view cannot be replicated exactly: "
                + "; ".join(message for _, message, _ in found),
                key="tables",
                hint="; ".join(dict.fromkeys(h for _, _, h in found if h)),
            )

    # ------------------------------------------------------------------ the stream

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
        """The change as it goes into the trail, or None when it lies outside the view.

        An update is judged on both images: in→in stays an update, in→out becomes a delete
        (by the before image's key), out→in an insert of the after image, out→out is dropped
        (counted in :attr:`stats`), so the target's rows always equal the view.
        """
        if change.op is Op.DDL or change.op is Op.TRUNCATE:
            if change.table_schema is not None:
                _, keep = self._rules(change.table)
                if keep is not None:
                    change.table_schema = _project_schema(change.table_schema, keep)
                    if (change.ddl or "").lstrip()[:5].upper() == "ALTER":
                        # the view's columns are listed explicitly: a column the source adds,
                        # drops or retypes outside them is not the target's business, and the
                        # projected definition is what apply keeps (a rename of a listed
                        # column breaks the view: docs/configuration.md)
                        change.ddl = None
            return change
        predicate, keep = self._rules(change.table)
        if predicate is not None:
            kept = self._transition(change, predicate)
            if kept is None:
                self.stats.dropped[str(change.table)] += 1
                return None
            change = kept
        if keep is not None:
            change.before = _project(change.before, keep, change.key)
            change.after = _project(change.after, keep, change.key)
        return change

    def _transition(self, change: Change, predicate: Predicate) -> Change | None:
        if change.op is Op.INSERT:
            return change if change.after is not None and predicate(change.after) is True else None
        if change.op is Op.DELETE:
            image = change.before if change.before is not None else change.key
            return change if image is not None and predicate(image) is True else None
        # update: the before image may be the key alone (PostgreSQL's default identity); a
        # predicate reading more than the key is refused at start (check_source)
        before = change.before if change.before is not None else change.key
        after = _complete(change.after, change.before)
        was_in = before is not None and predicate(before) is True
        now_in = after is not None and predicate(after) is True
        if was_in and now_in:
            return change
        if not was_in and not now_in:
            return None
        name = str(change.table)
        if was_in:
            self.stats.moved_out[name] += 1
            return Change(
                Op.DELETE,
                change.table,
                change.schema_version,
                key=change.key,
                before=change.before if change.before is not None else change.key,
                row_id=change.row_id,
            )
        assert after is not None
        unknown = sorted(k for k, v in after.items() if v is UNCHANGED)
        if unknown:
            raise SchemaError(
                f"an update of {change.table} moved a row into [tables.where], but the source "
                f"did not log its unchanged large value(s) {', '.join(unknown)}",
                hint="log full before images for the table (PostgreSQL: ALTER TABLE ... "
                "REPLICA IDENTITY FULL) and snapshot it again",
            )
        self.stats.moved_in[name] += 1
        key = {k: after[k] for k in change.key} if change.key else None
        return Change(
            Op.INSERT, change.table, change.schema_version, key=key, after=after, row_id=None
        )


def _complete(after: Row | None, before: Row | None) -> Row | None:
    """``after`` with unchanged large values (TOAST) taken from the full ``before`` image."""
    if after is None or before is None:
        return after
    if not any(v is UNCHANGED for v in after.values()):
        return after
    return {k: (before.get(k, v) if v is UNCHANGED else v) for k, v in after.items()}


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
