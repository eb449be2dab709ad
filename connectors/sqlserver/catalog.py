"""Table definitions and capture instances, read from SQL Server's catalog views.

A source table's definition comes from ``sys.columns`` and its unique indexes. What CDC
delivers for it comes from its capture instance: the columns captured when the instance was
created (``cdc.captured_columns``, fixed for the instance's life: a column added later is not
in it, a column dropped later reads NULL) and the unique index it identifies rows by
(``cdc.index_columns``). A table has at most two instances; the second is how a DBA makes
CDC see a schema change (docs/capture-sqlserver.md#schema-changes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.errors import MissingObjectError
from connectors.model import Column, TableId, TableSchema
from connectors.sqlserver import sql
from connectors.sqlserver.positions import Lsn
from connectors.sqlserver.values import DEPRECATED_LOBS, column, refuse_other

__all__ = ["CaptureInstance", "capture_instances", "instance_schema", "table_schema"]

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


@dataclass(frozen=True)
class CaptureInstance:
    """One row of ``cdc.change_tables``."""

    name: str
    table: TableId
    #: low endpoint of its validity interval (None: the capture job has not started it yet)
    start_lsn: Lsn | None
    created: dt.datetime | None


def capture_instances(query: Query) -> dict[TableId, list[CaptureInstance]]:
    """Every table's capture instances, oldest first."""
    out: dict[TableId, list[CaptureInstance]] = {}
    for name, schema, table, start, created in query(sql.INSTANCES, ()):
        tid = TableId(str(schema), str(table))
        out.setdefault(tid, []).append(
            CaptureInstance(str(name), tid, Lsn.from_bytes(start), created)
        )
    for instances in out.values():
        instances.sort(key=lambda i: (i.created or dt.datetime.min, i.name))
    return out


def _columns(query: Query, table: TableId) -> dict[str, Column]:
    rows = query(sql.COLUMNS, (table.schema, table.name))
    return {
        str(name): column(
            str(name),
            str(type_name),
            max_length=max_length,
            precision=precision,
            scale=scale,
            nullable=bool(nullable),
            computed=bool(computed),
        )
        for name, type_name, max_length, precision, scale, nullable, computed in rows
    }


def table_schema(query: Query, table: TableId) -> TableSchema:
    """``table``'s current definition (MissingObjectError when it does not exist)."""
    cols = _columns(query, table)
    if not cols:
        raise MissingObjectError(f"table {table} does not exist")
    columns = list(cols.values())
    refuse_other(table, [c for c in columns if not c.generated])
    keys: dict[int, tuple[bool, list[str]]] = {}
    for index_id, is_pk, name in query(sql.KEYS, (table.schema, table.name)):
        keys.setdefault(int(index_id), (bool(is_pk), []))[1].append(str(name))
    primary: tuple[str, ...] = ()
    uniques: list[tuple[str, ...]] = []
    for is_pk, names in keys.values():
        if is_pk:
            primary = tuple(names)
        elif all(not cols[n].nullable for n in names if n in cols):
            uniques.append(tuple(names))
    return TableSchema(
        table,
        tuple(columns),
        primary,
        tuple(uniques),
        full_before_image=not any(c.source_type in DEPRECATED_LOBS for c in columns),
    )


def instance_schema(query: Query, instance: CaptureInstance) -> TableSchema:
    """The definition of the rows ``instance`` delivers: its captured columns, typed as the
    source table declares them (a column dropped since keeps the type CDC recorded), keyed by
    the index CDC identifies rows by."""
    current = _columns(query, instance.table)
    columns = []
    for name, _ordinal, type_name in query(sql.CAPTURED_COLUMNS, (instance.name,)):
        col = current.get(str(name))
        if col is None or col.source_type.split("(")[0] != str(type_name).lower():
            col = column(str(name), str(type_name))  # dropped or retyped since
        columns.append(col)
    if not columns:
        raise MissingObjectError(f"capture instance {instance.name} has no captured columns")
    refuse_other(instance.table, columns)
    key = tuple(str(r[0]) for r in query(sql.INDEX_COLUMNS, (instance.name,)))
    return TableSchema(
        instance.table,
        tuple(columns),
        key,
        (),
        full_before_image=not any(c.source_type in DEPRECATED_LOBS for c in columns),
    )


def same_shape(a: TableSchema, b: TableSchema) -> bool:
    """Two definitions deliver the same rows (names, types, key), whatever their version."""
    return (
        a.columns == b.columns
        and a.primary_key == b.primary_key
        and a.full_before_image == b.full_before_image
    )
