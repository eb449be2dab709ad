"""SQL_REDO into row images: LogMiner's reconstructed SQL parsed with sqlglot's Oracle dialect.

LogMiner renders each row change as a statement (Oracle Database Utilities, "LogMiner"):

    insert into "HR"."JOBS"("JOB_ID","MIN_SALARY") values ('IT_WT',4000);
    update "HR"."JOBS" set "MIN_SALARY" = '4500' where "JOB_ID" = 'IT_WT' and
        "MIN_SALARY" = '4000' and ROWID = 'AAAHSeAABAAAY+CAAX';
    delete from "HR"."JOBS" where "JOB_ID" = 'IT_WT' and "MIN_SALARY" = '4500' and
        ROWID = 'AAAHSeAABAAAY+CAAX';

Values are literals or the functions that spell a typed value: ``TO_DATE``, ``TO_TIMESTAMP``,
``TO_TIMESTAMP_TZ`` (in the formats the mining session sets, :data:`NLS`), ``HEXTORAW``,
``UNISTR`` (national character text as UTF-16 escapes), ``TO_BINARY_FLOAT`` /
``TO_BINARY_DOUBLE``, ``NULL`` / ``IS NULL``, and ``EMPTY_CLOB()`` / ``EMPTY_BLOB()`` for a LOB
whose content follows in LOB_WRITE rows (:func:`parse_lob`). A number may come quoted
(``'4000'``): the column's type decides what a value is. An update's SET lists the changed
columns, its WHERE the logged old values (the key, the changed columns, every column under
ALL COLUMNS logging) and the ROWID.

Anything else is refused with :class:`UnsupportedRedo`, which the reader turns into a stop
that names the table, operation and SCN: a change is never skipped silently.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import zoneinfo
from dataclasses import dataclass, field
from typing import Any, Final, cast

import sqlglot
from sqlglot import exp

from connectors.model import UNCHANGED, Column, Op, Row, TableSchema, Value

__all__ = ["NLS", "LobOp", "ParsedRow", "UnsupportedRedo", "parse_lob", "parse_row", "value_of"]

#: what the mining session sets (ALTER SESSION), so dates and timestamps parse unambiguously
NLS: Final = {
    "NLS_DATE_FORMAT": "YYYY-MM-DD HH24:MI:SS",
    "NLS_TIMESTAMP_FORMAT": "YYYY-MM-DD HH24:MI:SS.FF",
    "NLS_TIMESTAMP_TZ_FORMAT": "YYYY-MM-DD HH24:MI:SS.FF TZH:TZM",
    "NLS_NUMERIC_CHARACTERS": ".,",
}


class UnsupportedRedo(ValueError):
    """A SQL_REDO statement or value this reader cannot turn into a row image."""


@dataclass
class ParsedRow:
    """One row change: the images as far as the redo carries them."""

    op: Op
    owner: str
    table: str
    #: the logged old values (update/delete WHERE), by column
    before: Row = field(default_factory=dict)
    #: the new values (insert VALUES, update SET), by column
    after: Row = field(default_factory=dict)
    row_id: str | None = None


def _fail(what: str, sql: str) -> UnsupportedRedo:
    return UnsupportedRedo(f"{what} in SQL_REDO {sql[:200]!r}")


def _parse(sql: str) -> exp.Expression:
    try:
        tree = cast(exp.Expression, sqlglot.parse_one(sql.strip().rstrip(";"), read="oracle"))
    except sqlglot.errors.ParseError as exc:
        raise _fail(f"unparsable statement ({str(exc).splitlines()[0]})", sql) from None
    return tree


def _table(node: exp.Expression, sql: str) -> tuple[str, str]:
    table = node if isinstance(node, exp.Table) else node.find(exp.Table)
    if table is None or not table.db:
        raise _fail("no owner-qualified table", sql)
    return table.db, table.name


def _conditions(
    where: exp.Expression | None, sql: str
) -> tuple[dict[str, exp.Expression], str | None]:
    """``col = value`` / ``col IS NULL`` terms of an AND chain, and the ROWID term."""
    out: dict[str, exp.Expression] = {}
    row_id = None
    if where is None:
        return out, None
    node = where.this if isinstance(where, exp.Where) else where
    terms = list(node.flatten()) if isinstance(node, exp.And) else [node]
    for term in terms:
        if isinstance(term, exp.Paren):
            term = term.this
        if not isinstance(term, exp.EQ | exp.Is) or not isinstance(term.this, exp.Column):
            raise _fail(f"a condition other than column = value ({term.sql('oracle')})", sql)
        ident = term.this.this
        if isinstance(ident, exp.Identifier) and not ident.quoted and ident.name.upper() == "ROWID":
            row_id = term.expression.name
            continue
        out[term.this.name] = exp.Null() if isinstance(term, exp.Is) else term.expression
    return out, row_id


def parse_row(sql: str, schema: TableSchema) -> ParsedRow:
    """An INSERT/UPDATE/DELETE SQL_REDO as typed images of ``schema``'s columns.

    LogMiner's own shapes go through a scanner of exactly those shapes (:func:`_scan`, some
    ten times faster); anything it does not recognise goes through sqlglot's Oracle dialect,
    which parses it or names what it cannot take. Both give the same answer on the corpus
    (tests/connectors/oracle/test_redo.py).
    """
    scanned = _scan(sql)
    if scanned is None:
        return parse_row_sqlglot(sql, schema)
    op, owner, name, sets, conds, row_id = scanned
    after = {c: value_of(t, _col(schema, c, sql), sql) for c, t in sets}
    before = {c: value_of(t, _col(schema, c, sql), sql) for c, t in conds}
    return ParsedRow(op, owner, name, before, after, row_id)


def parse_row_sqlglot(sql: str, schema: TableSchema) -> ParsedRow:
    """:func:`parse_row` through sqlglot alone."""
    tree = _parse(sql)
    if isinstance(tree, exp.Insert):
        owner, name = _table(tree.this, sql)
        cols = [i.name for i in tree.this.expressions] if isinstance(tree.this, exp.Schema) else []
        values = tree.expression
        if not isinstance(values, exp.Values) or len(values.expressions) != 1:
            raise _fail("an INSERT without one VALUES row", sql)
        row = values.expressions[0].expressions
        if len(row) != len(cols):
            raise _fail("an INSERT whose columns and values differ in number", sql)
        after = {c: value_of(v, _col(schema, c, sql), sql) for c, v in zip(cols, row, strict=True)}
        return ParsedRow(Op.INSERT, owner, name, after=after)
    if isinstance(tree, exp.Update):
        owner, name = _table(tree.this, sql)
        after = {}
        for eq in tree.expressions:
            if not isinstance(eq, exp.EQ) or not isinstance(eq.this, exp.Column):
                raise _fail("a SET term other than column = value", sql)
            after[eq.this.name] = value_of(eq.expression, _col(schema, eq.this.name, sql), sql)
        conds, row_id = _conditions(tree.args.get("where"), sql)
        before = {c: value_of(v, _col(schema, c, sql), sql) for c, v in conds.items()}
        return ParsedRow(Op.UPDATE, owner, name, before, after, row_id)
    if isinstance(tree, exp.Delete):
        owner, name = _table(tree.this, sql)
        conds, row_id = _conditions(tree.args.get("where"), sql)
        before = {c: value_of(v, _col(schema, c, sql), sql) for c, v in conds.items()}
        return ParsedRow(Op.DELETE, owner, name, before=before, row_id=row_id)
    raise _fail(f"a {type(tree).__name__} statement where a row change was expected", sql)


def _col(schema: TableSchema, name: str, sql: str) -> Column:
    try:
        return schema.column(name)
    except KeyError:
        raise _fail(
            f"column {name!r} that {schema.table}'s current definition lacks (the table "
            "changed after this redo was written)",
            sql,
        ) from None


# --------------------------------------------------------------------------- values

_DATE_FMT: Final = "%Y-%m-%d %H:%M:%S"
_TS_TEXT: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{0,9}))?"
    r"(?: (?:([+-])(\d{1,2}):(\d{2})|([A-Za-z_/]+[A-Za-z_/+-]*)))?$"
)
_UNISTR: Final = re.compile(r"\\([0-9A-Fa-f]{4})|\\\\")
_FLOAT_WORDS: Final = {
    "nan": float("nan"),
    "inf": float("inf"),
    "+inf": float("inf"),
    "-inf": float("-inf"),
    "infinity": float("inf"),
    "-infinity": float("-inf"),
}


def _literal(node: exp.Expression, sql: str) -> str:
    if isinstance(node, exp.Literal):
        return str(node.this)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        return "-" + str(node.this.this)
    raise _fail(f"a value {node.sql('oracle')!r} where a literal was expected", sql)


def _args(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    return [a for a in (node.args.get("this"), node.args.get("format")) if a is not None]


def _timestamp(text: str, sql: str) -> dt.datetime:
    m = _TS_TEXT.match(text.strip())
    if not m:
        raise _fail(f"a date/time {text!r} not in the session's format", sql)
    y, mo, d, h, mi, s, frac, sign, tzh, tzm, region = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz: dt.tzinfo | None = None
    if sign:
        offset = dt.timedelta(hours=int(tzh), minutes=int(tzm))
        tz = dt.timezone(-offset if sign == "-" else offset)
    elif region:
        try:
            tz = zoneinfo.ZoneInfo(region)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise _fail(f"an unknown time zone region {region!r}", sql) from None
    return dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=tz)


def _unistr(text: str) -> str:
    units = bytearray()
    pos = 0
    for m in _UNISTR.finditer(text):
        units += text[pos : m.start()].encode("utf-16-be")
        units += bytes.fromhex(m.group(1)) if m.group(1) else "\\".encode("utf-16-be")
        pos = m.end()
    units += text[pos:].encode("utf-16-be")
    return units.decode("utf-16-be")  # surrogate pairs join here


def _function(node: exp.Expression) -> str | None:
    if isinstance(node, exp.StrToDate):
        return "TO_DATE"
    if isinstance(node, exp.StrToTime):
        return "TO_TIMESTAMP"
    if isinstance(node, exp.Anonymous):
        return str(node.this).upper()
    if isinstance(node, exp.Func):
        return node.sql_name().upper()
    return None


@dataclass(frozen=True, slots=True)
class Term:
    """A value as SQL_REDO spells it: a literal (``fn`` None), ``NULL``, or a function of
    literals (``TO_DATE``, ``HEXTORAW``...). Both parsers (:func:`_scan`, sqlglot) make these."""

    fn: str | None
    args: tuple[str, ...] = ()


_NULL: Final = Term("NULL")


def _term(node: exp.Expression, sql: str) -> Term:
    if isinstance(node, exp.Null):
        return _NULL
    if isinstance(node, exp.Paren):
        return _term(node.this, sql)
    fn = _function(node)
    if fn is None:
        return Term(None, (_literal(node, sql),))
    return Term(fn, tuple(_literal(a, sql) for a in _args(node)))


def value_of(node: exp.Expression | Term, col: Column, sql: str = "") -> Value:
    """The typed value of one SQL_REDO value for column ``col``."""
    term = node if isinstance(node, Term) else _term(node, sql)
    fn, kind = term.fn, col.kind
    if fn == "NULL":
        return None
    if fn is None:
        return _plain(term.args[0], col, sql)
    if fn in ("EMPTY_CLOB", "EMPTY_BLOB"):
        return b"" if kind == "bytes" else ""
    if not term.args:
        raise _fail(f"{fn}() without arguments", sql)
    text = term.args[0]
    if fn == "HEXTORAW" and kind == "bytes":
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise _fail(f"HEXTORAW of non-hex text {text[:40]!r}", sql) from None
    if fn == "UNISTR" and kind == "str":
        return _unistr(text)
    if fn in ("TO_DATE", "TO_TIMESTAMP", "TO_TIMESTAMP_TZ") and kind in (
        "datetime",
        "timestamptz",
    ):
        value = _timestamp(text, sql)
        if kind == "timestamptz" and value.tzinfo is None:
            raise _fail(f"a time zone missing from {text!r} for {col.name}", sql)
        if kind == "datetime" and value.tzinfo is not None:
            raise _fail(f"a time zone in {text!r} for the naive column {col.name}", sql)
        return value
    if fn in ("TO_BINARY_FLOAT", "TO_BINARY_DOUBLE", "TO_NUMBER") and kind in (
        "float",
        "double",
        "decimal",
        "int",
    ):
        return _plain(text, col, sql)
    raise _fail(f"{fn}(...) for column {col.name} of type {col.source_type}", sql)


def _plain(text: str, col: Column, sql: str) -> Value:
    kind = col.kind
    try:
        if kind == "int":
            d = decimal.Decimal(text)
            if d == d.to_integral_value():
                return int(d)
        if kind == "decimal":
            return decimal.Decimal(text)
        if kind in ("float", "double"):
            word = _FLOAT_WORDS.get(text.strip().lower())
            return word if word is not None else float(text)
    except (decimal.InvalidOperation, ValueError):
        raise _fail(f"a non-numeric value {text!r} for column {col.name}", sql) from None
    if kind == "int":
        raise _fail(f"a fraction {text!r} in integer column {col.name}", sql)
    if kind == "str":
        return text
    raise _fail(f"a plain literal for column {col.name} of type {col.source_type}", sql)


# --------------------------------------------------------------------------- the scanner

_TOKEN: Final = re.compile(
    r"""\s*(?:"((?:[^"]|"")*)"|'((?:[^']|'')*)'|(-?(?:\d+(?:\.\d*)?|\.\d+)(?:[Ee][+-]?\d+)?)"""
    r"|([A-Za-z_][A-Za-z0-9_$#]*)|([(),=;.]))"
)
Scanned = tuple[Op, str, str, list[tuple[str, Term]], list[tuple[str, Term]], "str | None"]


class _Tokens:
    """(kind, text) tokens: id (a quoted identifier), str, num, word (upper case), p."""

    def __init__(self, sql: str) -> None:
        self.items: list[tuple[str, str]] = []
        pos, end = 0, len(sql)
        while pos < end:
            m = _TOKEN.match(sql, pos)
            if m is None:
                if sql[pos:].strip():
                    raise LookupError(pos)
                break
            ident, text, num, word, punct = m.groups()
            if ident is not None:
                self.items.append(("id", ident.replace('""', '"')))
            elif text is not None:
                self.items.append(("str", text.replace("''", "'")))
            elif num is not None:
                self.items.append(("num", num))
            elif word is not None:
                self.items.append(("word", word.upper()))
            else:
                self.items.append(("p", punct))
            pos = m.end()
        self.i = 0

    def take(self, kind: str, text: str | None = None) -> str:
        k, t = self.items[self.i] if self.i < len(self.items) else ("", "")
        if k != kind or (text is not None and t != text):
            raise LookupError(self.i)
        self.i += 1
        return t

    def peek(self, kind: str, text: str | None = None) -> bool:
        if self.i >= len(self.items):
            return False
        k, t = self.items[self.i]
        return k == kind and (text is None or t == text)

    def table(self) -> tuple[str, str]:
        owner = self.take("id")
        self.take("p", ".")
        return owner, self.take("id")

    def value(self) -> Term:
        if self.peek("str") or self.peek("num"):
            self.i += 1
            return Term(None, (self.items[self.i - 1][1],))
        word = self.take("word")
        if word == "NULL":
            return _NULL
        self.take("p", "(")
        args: list[str] = []
        while not self.peek("p", ")"):
            if args:
                self.take("p", ",")
            args.append(self.take("str") if self.peek("str") else self.take("num"))
        self.take("p", ")")
        return Term(word, tuple(args))

    def conditions(self) -> tuple[list[tuple[str, Term]], str | None]:
        conds: list[tuple[str, Term]] = []
        row_id = None
        while True:
            if self.peek("word", "ROWID"):
                self.take("word")
                self.take("p", "=")
                row_id = self.take("str")
            else:
                col = self.take("id")
                if self.peek("word", "IS"):
                    self.take("word")
                    self.take("word", "NULL")
                    conds.append((col, _NULL))
                else:
                    self.take("p", "=")
                    conds.append((col, self.value()))
            if not self.peek("word", "AND"):
                return conds, row_id
            self.take("word")

    def end(self) -> None:
        if self.peek("p", ";"):
            self.take("p")
        if self.i != len(self.items):
            raise LookupError(self.i)


def _scan(sql: str) -> Scanned | None:
    """LogMiner's INSERT/UPDATE/DELETE shapes, or None for anything else."""
    try:
        tok = _Tokens(sql)
        first = tok.take("word")
        if first == "INSERT":
            tok.take("word", "INTO")
            owner, name = tok.table()
            tok.take("p", "(")
            cols = [tok.take("id")]
            while tok.peek("p", ","):
                tok.take("p")
                cols.append(tok.take("id"))
            tok.take("p", ")")
            tok.take("word", "VALUES")
            tok.take("p", "(")
            values = [tok.value()]
            while tok.peek("p", ","):
                tok.take("p")
                values.append(tok.value())
            tok.take("p", ")")
            tok.end()
            if len(cols) != len(values):
                return None
            return Op.INSERT, owner, name, list(zip(cols, values, strict=True)), [], None
        if first == "UPDATE":
            owner, name = tok.table()
            tok.take("word", "SET")
            sets: list[tuple[str, Term]] = []
            while True:
                col = tok.take("id")
                tok.take("p", "=")
                sets.append((col, tok.value()))
                if not tok.peek("p", ","):
                    break
                tok.take("p")
            tok.take("word", "WHERE")
            conds, row_id = tok.conditions()
            tok.end()
            return Op.UPDATE, owner, name, sets, conds, row_id
        if first == "DELETE":
            tok.take("word", "FROM")
            owner, name = tok.table()
            tok.take("word", "WHERE")
            conds, row_id = tok.conditions()
            tok.end()
            return Op.DELETE, owner, name, [], conds, row_id
    except LookupError:
        return None
    return None


# --------------------------------------------------------------------------- LOBs


@dataclass
class LobOp:
    """One piece of a LOB change spread over LogMiner rows (SEL_LOB_LOCATOR, LOB_WRITE,
    LOB_TRIM): which column of which row, and what is written where."""

    kind: str  # "locator", "write", "trim"
    column: str = ""
    owner: str = ""
    table: str = ""
    key: Row = field(default_factory=dict)
    row_id: str | None = None
    #: write: 1-based offset (characters for CLOB, bytes for BLOB) and the data
    offset: int = 0
    data: str | bytes = ""
    #: trim: the new length
    length: int = 0


_LOCATOR: Final = re.compile(
    r'select\s+"((?:[^"]|"")+)"\s+into\s+loc_\w\s+from\s+(.+?)\s+for\s+update\s*;', re.I | re.S
)
_WRITE: Final = re.compile(
    r"buf_\w\s*:=\s*(HEXTORAW\(\s*'([0-9A-Fa-f]*)'\s*\)|'((?:[^']|'')*)')\s*;\s*"
    r"dbms_lob\.write\(\s*loc_\w\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*buf_\w\s*\)\s*;",
    re.I | re.S,
)
_TRIM: Final = re.compile(r"dbms_lob\.trim\(\s*loc_\w\s*,\s*(\d+)\s*\)\s*;", re.I)


def parse_lob(op_code: int, sql: str, schema_of: Any) -> LobOp:
    """A SEL_LOB_LOCATOR (9), LOB_WRITE (10) or LOB_TRIM (11) row's PL/SQL text.

    ``schema_of(owner, table)`` gives the table's definition (for the locator's key values).
    """
    if op_code == 9:
        m = _LOCATOR.search(sql)
        if not m:
            raise _fail("a LOB locator selection in an unknown form", sql)
        column = m.group(1).replace('""', '"')
        tree = _parse(f"select 1 from {m.group(2)}")
        owner, name = _table(tree, sql)
        schema: TableSchema = schema_of(owner, name)
        conds, row_id = _conditions(tree.args.get("where"), sql)
        key = {c: value_of(v, _col(schema, c, sql), sql) for c, v in conds.items()}
        _col(schema, column, sql)
        return LobOp("locator", column, owner, name, key, row_id)
    if op_code == 10:
        m = _WRITE.search(sql)
        if not m:
            raise _fail("a LOB write in an unknown form", sql)
        data: str | bytes
        if m.group(2) is not None:
            data = bytes.fromhex(m.group(2))
        else:
            data = m.group(3).replace("''", "'")
        amount, offset = int(m.group(4)), int(m.group(5))
        if amount != len(data):
            raise _fail(f"a LOB write of {amount} units carrying {len(data)}", sql)
        return LobOp("write", offset=offset, data=data)
    if op_code == 11:
        m = _TRIM.search(sql)
        if not m:
            raise _fail("a LOB trim in an unknown form", sql)
        return LobOp("trim", length=int(m.group(1)))
    raise _fail(f"operation code {op_code} where a LOB operation was expected", sql)


def apply_lob(current: Any, op: LobOp) -> str | bytes:
    """``current`` (str or bytes; UNCHANGED/None: unknown, taken as empty) after ``op``."""
    if op.kind == "write":
        blank: str | bytes = b"" if isinstance(op.data, bytes) else ""
        value = current if isinstance(current, str | bytes) else blank
        start = op.offset - 1
        pad = (b"\0" if isinstance(value, bytes) else " ") * max(0, start - len(value))
        return value[:start] + pad + op.data + value[start + len(op.data) :]  # type: ignore[operator]
    if op.kind == "trim":
        value = current if isinstance(current, str | bytes) else ""
        return value[: op.length]
    raise ValueError(op.kind)


def images(row: ParsedRow, schema: TableSchema) -> tuple[Row | None, Row | None]:
    """(before, after) for the change model: an update's after image is its before image
    with the SET applied, columns the redo does not carry marked UNCHANGED."""
    if row.op is Op.INSERT:
        return None, {c: row.after.get(c) for c in schema.column_names}
    if row.op is Op.DELETE:
        return dict(row.before), None
    after: dict[str, Any] = {}
    for c in schema.column_names:
        if c in row.after:
            after[c] = row.after[c]
        elif c in row.before:
            after[c] = row.before[c]
        else:
            after[c] = UNCHANGED
    return dict(row.before), after
