"""SQL Server column types and the values pyodbc hands back, in the change model's terms.

:func:`column` turns a catalog row (type name, max_length, precision, scale) into a
:class:`~connectors.model.Column`; :func:`converter` returns the function that turns a value
pyodbc fetched for that column into a change-model value. The same converters serve the
change tables (CDC keeps the source column's type, except ``timestamp``/``rowversion`` which
it stores as ``binary(8)``) and the snapshot.

What pyodbc returns (Microsoft's driver and FreeTDS alike), and what we keep:

==========================================  ================================================
SQL Server type                             value
==========================================  ================================================
bit                                         bool
tinyint (unsigned), smallint, int, bigint   int
decimal, numeric, money, smallmoney         Decimal (scale kept: money has 4)
real / float                                float
char, varchar, nchar, nvarchar, text,       str
ntext, xml
binary, varbinary, image, timestamp         bytes
date / time / datetime, datetime2,          date / time / naive datetime (time and datetime2
smalldatetime                               hold 100 ns; Python keeps microseconds: truncated)
datetimeoffset                              aware datetime (read through the output converter
                                            :func:`datetimeoffset` registered on every
                                            connection: pyodbc has no native one)
uniqueidentifier                            uuid.UUID
==========================================  ================================================

``sql_variant``, ``hierarchyid``, ``geometry``, ``geography`` and user CLR types are refused
with the column named (:class:`~connectors.errors.SchemaError`), never passed on as bytes
nobody can read.
"""

from __future__ import annotations

import datetime as dt
import decimal
import struct
import uuid
from collections.abc import Callable
from typing import Any, Final

from connectors.errors import SchemaError
from connectors.model import Column, Json, Value

__all__ = [
    "LOB_TYPES",
    "SQL_SS_TIMESTAMPOFFSET",
    "column",
    "converter",
    "datetimeoffset",
    "max_length_text",
]

#: ODBC type code of datetimeoffset (msodbcsql.h): pyodbc needs an output converter for it
SQL_SS_TIMESTAMPOFFSET: Final = -155

_INT_BITS: Final = {"tinyint": 8, "smallint": 16, "int": 32, "bigint": 64}
_TEXT: Final = frozenset({"char", "varchar", "nchar", "nvarchar", "text", "ntext", "xml"})
_BINARY: Final = frozenset({"binary", "varbinary", "image", "timestamp", "rowversion"})
#: large-object types: CDC leaves them NULL in the "update old" row unless they changed
LOB_TYPES: Final = frozenset({"varchar(max)", "nvarchar(max)", "varbinary(max)", "xml"})
#: types whose value CDC never logs in a delete or "update old" row (always NULL there)
DEPRECATED_LOBS: Final = frozenset({"text", "ntext", "image"})
_REFUSED: Final = frozenset({"sql_variant", "hierarchyid", "geometry", "geography"})


def max_length_text(type_name: str, max_length: int) -> str:
    """``varchar(20)``, ``nvarchar(max)``: the declared form of a sized type."""
    if max_length == -1:
        return f"{type_name}(max)"
    chars = max_length // 2 if type_name in ("nchar", "nvarchar") else max_length
    return f"{type_name}({chars})"


def column(
    name: str,
    type_name: str,
    *,
    max_length: int | None = None,
    precision: int | None = None,
    scale: int | None = None,
    nullable: bool = True,
    computed: bool = False,
) -> Column:
    """The :class:`Column` of a ``sys.columns`` row (``type_name`` is the base type)."""
    t = type_name.lower()
    fields: dict[str, Any]
    source = t
    if t == "bit":
        fields = {"kind": "bool"}
    elif t in _INT_BITS:
        fields = {"kind": "int", "bits": _INT_BITS[t], "unsigned": t == "tinyint"}
    elif t in ("decimal", "numeric"):
        fields = {"kind": "decimal", "precision": precision, "scale": scale or 0}
        source = f"{t}({precision},{scale or 0})"
    elif t in ("money", "smallmoney"):
        fields = {"kind": "decimal", "precision": 19 if t == "money" else 10, "scale": 4}
    elif t == "real":
        fields = {"kind": "float"}
    elif t == "float":
        # float(n): n <= 24 is a 4-byte real
        fields = {"kind": "float" if (precision or 53) <= 24 else "double"}
    elif t in _TEXT:
        sized = t in ("char", "varchar", "nchar", "nvarchar")
        length = None
        if sized and max_length not in (None, -1):
            assert max_length is not None
            length = max_length // 2 if t.startswith("n") else max_length
        if sized and max_length is not None:
            source = max_length_text(t, max_length)
        fields = {
            "kind": "str",
            "length": length,
            "fixed": t in ("char", "nchar"),
        }
    elif t in _BINARY:
        length = None
        if t in ("binary", "varbinary") and max_length not in (None, -1):
            length = max_length
        if t in ("timestamp", "rowversion"):
            length, source = 8, "binary(8)"  # CDC stores a rowversion as binary(8)
        elif t in ("binary", "varbinary") and max_length is not None:
            source = max_length_text(t, max_length)
        fields = {"kind": "bytes", "length": length, "fixed": t in ("binary", "timestamp")}
    elif t == "date":
        fields = {"kind": "date"}
    elif t == "time":
        fields = {"kind": "time", "precision": min(scale if scale is not None else 7, 6)}
    elif t in ("datetime2", "datetime", "smalldatetime"):
        digits = {"datetime": 3, "smalldatetime": 0}.get(t, scale if scale is not None else 7)
        fields = {"kind": "datetime", "precision": min(digits, 6)}
    elif t == "datetimeoffset":
        fields = {"kind": "timestamptz", "precision": min(scale if scale is not None else 7, 6)}
    elif t == "uniqueidentifier":
        fields = {"kind": "uuid"}
    elif t in _REFUSED:
        fields = {"kind": "other"}
    else:
        fields = {"kind": "other"}
    return Column(
        name=name,
        source_type=source,
        nullable=nullable,
        generated=computed,
        **fields,
    )


def refuse_other(table: object, columns: list[Column]) -> None:
    """A :class:`SchemaError` naming every column of a type redoline cannot carry."""
    bad = [c for c in columns if c.kind == "other"]
    if bad:
        names = ", ".join(f"{c.name} ({c.source_type})" for c in bad)
        raise SchemaError(
            f"{table}: column(s) of SQL Server types redoline cannot replicate: {names}",
            hint="leave them out with [tables.columns], or CAST them in a view you snapshot",
        )


def datetimeoffset(raw: bytes) -> dt.datetime:
    """pyodbc output converter for ``datetimeoffset`` (SQL_SS_TIMESTAMPOFFSET_STRUCT: year,
    month, day, hour, minute, second as shorts, fraction in ns as an unsigned int, then the
    offset's hours and minutes)."""
    year, month, day, hour, minute, second, ns, oh, om = struct.unpack("<6hI2h", raw)
    tz = dt.timezone(dt.timedelta(hours=oh, minutes=om))
    return dt.datetime(year, month, day, hour, minute, second, ns // 1000, tzinfo=tz)


def _decimal(scale: int) -> Callable[[Any], Value]:
    quantum = decimal.Decimal(1).scaleb(-scale)

    def convert(v: Any) -> Value:
        d = v if isinstance(v, decimal.Decimal) else decimal.Decimal(str(v))
        # pyodbc builds the Decimal from the driver's text, which drops trailing zeros on
        # some drivers (FreeTDS): the column's scale is the value's
        return d.quantize(quantum) if d.is_finite() else d

    return convert


def _uuid(v: Any) -> Value:
    return v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))


def _aware(v: Any) -> Value:
    if isinstance(v, bytes | bytearray):
        v = datetimeoffset(bytes(v))
    if not isinstance(v, dt.datetime) or v.tzinfo is None:
        raise ValueError(f"datetimeoffset value {v!r} carries no offset")
    return v


def _bool(v: Any) -> Value:
    return bool(v)


def _int(v: Any) -> Value:
    return int(v)


def _float(v: Any) -> Value:
    return float(v)


def _str(v: Any) -> Value:
    return v if isinstance(v, str) else str(v)


def _bytes(v: Any) -> Value:
    return bytes(v)


def _same(v: Any) -> Value:
    result: Value = v
    return result


def converter(col: Column) -> Callable[[Any], Value]:
    """How a non-NULL value pyodbc fetched for ``col`` becomes a change-model value."""
    kind = col.kind
    if kind == "bool":
        return _bool
    if kind == "int":
        return _int
    if kind == "decimal":
        return _decimal(col.scale or 0)
    if kind in ("float", "double"):
        return _float
    if kind == "str":
        return _str
    if kind == "bytes":
        return _bytes
    if kind == "uuid":
        return _uuid
    if kind == "timestamptz":
        return _aware
    if kind == "json":
        return lambda v: Json(str(v))
    if kind in ("date", "time", "datetime"):
        return _same
    raise SchemaError(f"column {col.name!r}: type {col.source_type} cannot be read")


def row_converter(columns: list[Column]) -> Callable[[tuple[Any, ...]], list[Value]]:
    """One fetched row (values in ``columns`` order) as change-model values."""
    convs = [converter(c) for c in columns]

    def convert(row: tuple[Any, ...]) -> list[Value]:
        return [None if v is None else f(v) for f, v in zip(convs, row, strict=True)]

    return convert
