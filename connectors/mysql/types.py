"""Column kinds to MySQL/MariaDB types (the ``types`` role; docs/apply.md: Type mapping)."""

from __future__ import annotations

import re
from typing import Final

from connectors._types import frac, time_tz, unmappable
from connectors.model import Column
from connectors.mysql import TABLE_OPTIONS

__all__ = ["TABLE_OPTIONS", "column_type", "source_type"]

#: MySQL limits an index entry to 3072 bytes: 768 utf8mb4 characters. Unbounded text and
#: binary key columns get this length so the primary key can be created at all.
_KEY_CHARS: Final = 768
#: widest VARCHAR we declare on MySQL before switching to LONGTEXT (row size limit 65535)
_MAX_VARCHAR: Final = 4000
#: kinds whose MySQL type takes a CHARACTER SET
_CHARSET_KINDS: Final = frozenset({"str", "enum", "set"})


def source_type(col: Column, in_key: bool = False) -> str | None:
    """The MySQL source column's own type (with its character set: a latin1 column stays
    latin1 rather than taking the table's utf8mb4), except unbounded text in a key."""
    if not col.source_type or (in_key and col.kind in ("str", "bytes")):
        return None
    if col.kind in _CHARSET_KINDS and col.charset:
        return f"{col.source_type} CHARACTER SET {_charset_name(col)}"
    return col.source_type


def _charset_name(col: Column) -> str:
    name = col.charset or ""
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise unmappable(col, "mysql", f"unknown character set {name!r}")
    return name


def _int_type(col: Column) -> str:
    bits = col.bits or 64
    name = {8: "TINYINT", 16: "SMALLINT", 24: "MEDIUMINT", 32: "INT", 64: "BIGINT"}.get(bits)
    if name is None:  # 128-bit (DuckDB HUGEINT)
        return "DECIMAL(39,0)" + (" UNSIGNED" if col.unsigned else "")
    return name + (" UNSIGNED" if col.unsigned else "")


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def column_type(col: Column, in_key: bool = False) -> str:
    """``col``'s MySQL/MariaDB type; ``in_key`` shortens unbounded text so an index can
    hold it (docs/apply.md: Type mapping)."""
    kind = col.kind
    if kind == "bool":
        return "TINYINT(1)"
    if kind == "int":
        return _int_type(col)
    if kind == "decimal":
        if col.precision and col.precision <= 65:
            return f"DECIMAL({col.precision},{min(col.scale or 0, 30)})"
        # PostgreSQL's unbounded numeric: the widest MySQL has (documented as lossy beyond)
        return "DECIMAL(65,30)"
    if kind == "float":
        return "FLOAT"
    if kind == "double":
        return "DOUBLE"
    if kind == "str":
        # no CHAR(n): MySQL strips trailing blanks when it reads CHAR, so a PostgreSQL char(n)
        # value would lose the padding its applications see; VARCHAR keeps it
        if col.length and (col.length <= _MAX_VARCHAR or in_key):
            return f"VARCHAR({min(col.length, _KEY_CHARS) if in_key else col.length})"
        return f"VARCHAR({_KEY_CHARS})" if in_key else "LONGTEXT"
    if kind == "bytes":
        if col.length and col.fixed and col.length <= 255:
            return f"BINARY({col.length})"
        if col.length and (col.length <= _MAX_VARCHAR or in_key):
            return f"VARBINARY({min(col.length, 3072) if in_key else col.length})"
        return "VARBINARY(3072)" if in_key else "LONGBLOB"
    if kind == "date":
        return "DATE"
    if kind == "time":
        if time_tz(col):
            raise unmappable(col, "mysql", "MySQL TIME cannot keep a time zone offset")
        return f"TIME({frac(col)})"
    if kind == "duration":
        return f"TIME({frac(col)})"
    if kind == "datetime":
        return f"DATETIME({frac(col)})"
    if kind == "timestamptz":
        # TIMESTAMP stops in 2038 and follows the session zone: store UTC in a DATETIME
        return f"DATETIME({frac(col)})"
    if kind == "interval":
        return "VARCHAR(100)"
    if kind in ("json", "array"):
        return "JSON"
    if kind == "uuid":
        return "CHAR(36)"
    if kind == "enum":
        return "ENUM(" + ",".join(_literal(x) for x in col.labels) + ")" if col.labels else "TEXT"
    if kind == "set":
        if not col.labels:
            return "TEXT"
        return "SET(" + ",".join(_literal(x) for x in col.labels) + ")"
    if kind == "bit":
        if col.bits and col.bits <= 64:
            return f"BIT({col.bits})"
        raise unmappable(col, "mysql", "BIT holds at most 64 bits")
    if kind == "year":
        return "YEAR"
    raise unmappable(col, "mysql")
