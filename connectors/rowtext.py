"""Driver rows as bulk-load text: one formatter per column, for sources whose rows are read
through a Python driver (ODBC, Oracle, SQL Server) rather than dumped as text by the server.

``row_writer(columns, fmt)`` turns one fetched tuple into one line of ``fmt`` (one of
:data:`connectors.snapshot.FORMATS`): CSV (DuckDB), PostgreSQL COPY text, MySQL LOAD DATA text;
``text_batches`` gathers the lines of a chunk's rows into the batches the bulk loader takes, and
``fetched`` reads a DB-API cursor's rows for it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

from connectors.errors import SchemaError
from connectors.model import Column, TableId

__all__ = [
    "BATCH_BYTES",
    "Format",
    "RowWriter",
    "as_bool",
    "fetched",
    "formatter",
    "row_writer",
    "text_batches",
]

#: characters of bulk text handed to the loader at a time (about)
BATCH_BYTES: Final = 1 << 20

_COPY_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_SPECIAL: Final = re.compile(r"[\\\t\n\r]")

Format = Callable[[Any], str]
#: one fetched row as one line of bulk text, newline included
RowWriter = Callable[[Sequence[Any]], str]


def as_bool(value: Any) -> bool:
    """A driver's boolean (or its text: 1/t/true/y/yes, 0/f/false/n/no) as a bool."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "t", "true", "y", "yes"):
            return True
        if text in ("0", "f", "false", "n", "no"):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    return bool(value)


def _float(value: Any) -> str:
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


def _decimal(col: Column) -> Format:
    scale = col.scale or 0
    digits = (col.precision or 0) - scale  # integer digits the column holds

    def fmt(value: Any) -> str:
        d = value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value))
        if not d.is_finite():
            return "NaN"
        exponent = d.as_tuple().exponent
        assert isinstance(exponent, int)
        # the driver reported the column's precision; a value it cannot hold would be
        # rounded or refused by the target: say so instead (an unconstrained decimal, such
        # as Oracle's NUMBER or FLOAT, holds any value)
        if col.precision is None and col.scale is None:
            return format(d, "f")
        if -exponent > scale or (col.precision and d.adjusted() >= digits and d != 0):
            raise SchemaError(
                f"column {col.name!r}: value {d} does not fit the DECIMAL({col.precision},"
                f"{scale}) the driver reported",
                hint="the driver reports the column narrower than its values (psqlODBC: an "
                "unbounded numeric is numeric(28,6)); declare its precision on the source or "
                "leave the column out with [tables.columns]",
            )
        return format(d, "f")

    return fmt


def formatter(col: Column, fmt: str) -> Format:
    """How a non-NULL value of ``col`` is written in bulk format ``fmt`` (before escaping)."""
    kind = col.kind
    if kind == "bool":
        words = {"pgcopy": ("t", "f"), "tsv": ("1", "0"), "csv": ("true", "false")}[fmt]
        return lambda v: words[0] if as_bool(v) else words[1]
    if kind == "int":
        return lambda v: str(int(v))
    if kind == "decimal":
        return _decimal(col)
    if kind in ("float", "double"):
        return _float
    if kind == "bytes":
        if fmt == "pgcopy":
            return lambda v: "\\x" + bytes(v).hex()  # escaped for COPY text by _cell
        return lambda v: bytes(v).hex()
    if kind == "uuid":
        return lambda v: str(v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)))
    if kind == "datetime":
        return lambda v: v.isoformat(sep=" ") if isinstance(v, dt.datetime) else str(v)
    if kind in ("date", "time"):
        return lambda v: v.isoformat() if isinstance(v, dt.date | dt.time) else str(v)
    return str


def _copy_text(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return text.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(text) else text


def _csv_text(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return '"' + text.replace('"', '""') + '"'


#: kinds whose text never holds a delimiter, quote, backslash or line break
_PLAIN: Final = frozenset(
    {"bool", "int", "decimal", "float", "double", "bytes", "uuid", "date", "time", "datetime"}
)


def _cell(col: Column, fmt: str) -> Format:
    """``formatter`` with the format's escaping (text kinds) or quoting (CSV) applied."""
    f = formatter(col, fmt)
    if col.kind in _PLAIN:
        if fmt == "csv":
            return lambda v: '"' + f(v) + '"'
        if col.kind == "bytes" and fmt == "pgcopy":
            return lambda v: "\\" + f(v)  # the backslash of bytea's \\x, escaped for COPY
        return f
    return _csv_text if fmt == "csv" else _copy_text


def row_writer(columns: Sequence[Column], fmt: str) -> RowWriter:
    """One row (a driver's tuple) as one line of ``fmt``, newline included (CSV: NULL is an
    empty unquoted field, every value quoted; COPY/LOAD DATA text: NULL is ``\\N``)."""
    cells = [_cell(c, fmt) for c in columns]
    null = "" if fmt == "csv" else "\\N"
    sep = "," if fmt == "csv" else "\t"

    def write(row: Sequence[Any]) -> str:
        return (
            sep.join([null if v is None else f(v) for f, v in zip(cells, row, strict=True)]) + "\n"
        )

    return write


def text_batches(
    rows: Iterable[Sequence[Any]],
    write: RowWriter,
    table: TableId,
    batch_bytes: int = BATCH_BYTES,
) -> Iterator[tuple[bytes, int]]:
    """``rows`` as ``write`` (a :func:`row_writer`) writes them, in batches of about
    ``batch_bytes``: ``(bytes, row count)``, whole lines each, as a snapshot's ``read_chunk``
    yields them. A value ``write`` cannot take stops the read with an error naming ``table``
    (the table fails, not the run)."""
    parts: list[str] = []
    size = count = 0
    for row in rows:
        try:
            line = write(row)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise SchemaError(f"{table}: cannot write a value: {exc}") from None
        parts.append(line)
        size += len(line)
        count += 1
        if size >= batch_bytes:
            yield "".join(parts).encode(), count
            parts, size, count = [], 0, 0
    if count:
        yield "".join(parts).encode(), count


def fetched(
    cursor: Any, size: int, mapped: Callable[[Exception], Exception]
) -> Iterator[Sequence[Any]]:
    """The rows of an executed DB-API ``cursor``, fetched ``size`` at a time; an error while
    fetching is raised as ``mapped(error)`` (the driver's mapped to redoline's)."""
    while True:
        try:
            rows = cursor.fetchmany(size)
        except Exception as exc:
            raise mapped(exc) from None
        if not rows:
            return
        yield from rows
