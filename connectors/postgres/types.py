"""Column kinds to PostgreSQL types (the ``types`` role; docs/apply.md: Type mapping)."""

from __future__ import annotations

from typing import Final

from connectors._types import frac, time_tz, unmappable
from connectors.model import Column

__all__ = ["TABLE_OPTIONS", "column_type", "source_type"]

#: what every CREATE TABLE redoline writes ends with
TABLE_OPTIONS: Final = ""


#: built-in types of kind "other" recreated verbatim from a PostgreSQL source: self-contained
#: (no user-defined type behind them), printed and read back the same whatever the server's
#: settings (money is not: lc_monetary), and with an equality operator (a keyless row is found
#: by its full image; point and xml have none)
_VERBATIM: Final = frozenset(
    {
        "inet",
        "cidr",
        "macaddr",
        "macaddr8",
        "tsvector",
        "tsquery",
        "pg_lsn",
        "int4range",
        "int8range",
        "numrange",
        "daterange",
        "tsrange",
        "tstzrange",
        "int4multirange",
        "int8multirange",
        "nummultirange",
        "datemultirange",
        "tsmultirange",
        "tstzmultirange",
    }
)


def source_type(col: Column, in_key: bool = False) -> str | None:
    """The source column's own type, when a PostgreSQL source's declaration stands alone here
    (an enum or another named type does not: it lives in the source's catalog; of the
    "other" kind only the built-ins in ``_VERBATIM``)."""
    if not col.source_type or col.kind == "enum":
        return None
    if col.kind == "other" and col.source_type.strip().lower() not in _VERBATIM:
        return None
    return col.source_type


def _int_type(col: Column) -> str:
    # PostgreSQL has only signed 16/32/64-bit integers: unsigned ones take the next size up
    bits = col.bits or 64
    effective = bits + (1 if col.unsigned else 0)
    if effective <= 16:
        return "smallint"
    if effective <= 32:
        return "integer"
    if effective <= 64:
        return "bigint"
    return "numeric(20)" if bits == 64 else "numeric(39)"


def column_type(col: Column, in_key: bool = False) -> str:
    """``col``'s PostgreSQL type (docs/apply.md: Type mapping)."""
    kind = col.kind
    if kind == "bool":
        return "boolean"
    if kind == "int":
        return _int_type(col)
    if kind == "decimal":
        if col.precision:
            return f"numeric({col.precision},{col.scale or 0})"
        return "numeric"
    if kind == "float":
        return "real"
    if kind == "double":
        return "double precision"
    if kind in ("str", "enum", "set"):
        # CHAR(n) too becomes varchar(n): char(n) would hand applications a MariaDB value
        # padded with blanks, where varchar keeps each value as the source returned it
        # (PostgreSQL's padded, MariaDB's without padding)
        if kind == "str" and col.length:
            return f"varchar({col.length})"
        return "text"
    if kind == "bytes":
        return "bytea"
    if kind == "date":
        return "date"
    if kind == "time":
        tz = " with time zone" if time_tz(col) else ""
        return f"time({frac(col)}){tz}"
    if kind == "duration" or kind == "interval":
        return "interval"
    if kind == "datetime":
        return f"timestamp({frac(col)})"
    if kind == "timestamptz":
        return f"timestamptz({frac(col)})"
    if kind == "json":
        # json, not jsonb: jsonb reorders keys and respaces the document, so applications
        # would read another text than the source gave them (and verify could not compare
        # the texts on the servers)
        return "json"
    if kind == "uuid":
        return "uuid"
    if kind == "bit":
        return f"bit({col.bits})" if col.bits else "varbit"
    if kind == "year":
        return "smallint"
    if kind == "array":
        element = Column(col.name, col.element or "other")
        if element.kind in ("array", "other"):
            raise unmappable(col, "postgres", f"array of {element.kind}")
        return column_type(element) + "[]"
    raise unmappable(col, "postgres")
