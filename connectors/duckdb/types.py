"""Column kinds to DuckDB types (the ``types`` role; docs/apply.md: Type mapping)."""

from __future__ import annotations

from typing import Final

from connectors._types import time_tz, unmappable
from connectors.model import Column

__all__ = ["TABLE_OPTIONS", "column_type", "source_type"]

#: what every CREATE TABLE redoline writes ends with
TABLE_OPTIONS: Final = ""


def source_type(col: Column, in_key: bool = False) -> str | None:
    """The DuckDB source column's own type (DuckDB is no source today)."""
    return col.source_type or None


def _int_type(col: Column) -> str:
    names = {8: "TINYINT", 16: "SMALLINT", 24: "INTEGER", 32: "INTEGER", 64: "BIGINT"}
    name = names.get(col.bits or 64, "HUGEINT")
    return ("U" + name) if col.unsigned else name


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def column_type(col: Column, in_key: bool = False) -> str:
    """``col``'s DuckDB type (docs/apply.md: Type mapping)."""
    kind = col.kind
    if kind == "bool":
        return "BOOLEAN"
    if kind == "int":
        return _int_type(col)
    if kind == "decimal":
        if col.precision and col.precision <= 38:
            return f"DECIMAL({col.precision},{col.scale or 0})"
        # wider than DuckDB's DECIMAL(38): keep the exact digits as text
        return "VARCHAR"
    if kind == "float":
        return "FLOAT"
    if kind == "double":
        return "DOUBLE"
    if kind in ("str", "set"):
        return "VARCHAR"
    if kind == "enum":
        if col.labels:
            return "ENUM(" + ",".join(_literal(x) for x in col.labels) + ")"
        return "VARCHAR"
    if kind == "bytes":
        return "BLOB"
    if kind == "date":
        return "DATE"
    if kind == "time":
        return "TIMETZ" if time_tz(col) else "TIME"
    if kind in ("duration", "interval"):
        return "INTERVAL"
    if kind == "datetime":
        return "TIMESTAMP"
    if kind == "timestamptz":
        return "TIMESTAMPTZ"
    if kind == "json":
        return "JSON"
    if kind == "uuid":
        return "UUID"
    if kind == "bit":
        return "BIT"
    if kind == "year":
        return "SMALLINT"
    if kind == "array":
        element = Column(col.name, col.element or "other")
        if element.kind in ("array", "other"):
            raise unmappable(col, "duckdb", f"array of {element.kind}")
        return column_type(element) + "[]"
    raise unmappable(col, "duckdb")
