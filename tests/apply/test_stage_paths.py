"""The writers' bulk staging paths with awkward values: what a merge writes reads back exactly.

MySQL/MariaDB stage through ``LOAD DATA LOCAL`` text (escapes, NULL against the string
``\\N``, hex for bytes, numbers for BIT) and fall back to ``executemany``; both paths must
store the same rows, and a value the target refuses must reject the batch, not be truncated.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest

from apply.typemap import ensure_table
from connectors.base import RowRejected, TableBatch, Writer
from connectors.model import Column, TableId, TableSchema

_AWKWARD = [
    "tab\there",
    "line\nbreak",
    "cr\rhere",
    "back\\slash",
    "\\N",
    "N",
    "",
    "dée ✓ 𝄞",
    None,
]


def _schema(table: TableId) -> TableSchema:
    return TableSchema(
        table,
        (
            Column("id", "int", "bigint", nullable=False, bits=64),
            Column("s", "str", "varchar(40)", length=40),
            Column("b", "bytes", "varbinary(20)", length=20),
            Column("d", "decimal", "numeric(12,2)", precision=12, scale=2),
            Column("f", "float", "double precision", bits=64),
            Column("ts", "datetime", "timestamp", precision=6),
            Column("day", "date", "date"),
            Column("ok", "bool", "boolean"),
        ),
        primary_key=("id",),
    )


def _rows(dialect: str) -> list[tuple[Any, ...]]:
    rows = []
    # PostgreSQL text cannot hold NUL at all
    for i, s in enumerate([*_AWKWARD, "nul\x00byte"] if dialect == "mysql" else _AWKWARD):
        rows.append(
            (
                i + 1,
                s,
                None if i % 3 == 0 else bytes([0, 9, 10, 92, 255, i]),
                None if i % 4 == 0 else decimal.Decimal(f"{i * 1000}.{i:02d}"),
                None if i % 5 == 0 else i + 0.5,
                dt.datetime(2024, 2, 29, 23, 59, 59, i * 1111),
                dt.date(1999 + i, 1, 31),
                i % 2 == 0,
            )
        )
    return rows


def _content(writer: Writer, table: TableId) -> list[tuple[Any, ...]]:
    rows = writer.query(f"SELECT * FROM {writer.database.qualified(table)} ORDER BY id")
    writer.commit()
    out = []
    for row in rows:
        values = list(row)
        if values[7] is not None:
            values[7] = bool(values[7])  # MySQL BOOLEAN is TINYINT(1)
        if values[2] is not None:
            values[2] = bytes(values[2])
        out.append(tuple(values))
    return out


@pytest.mark.parametrize("load_data", [True, False])
def test_merge_stores_awkward_values_exactly(
    writer: Writer, schema_name: str, load_data: bool
) -> None:
    # (only MySQL has a second staging path; the others simply run twice)
    table = TableId(schema_name, f"awkward_{int(load_data)}")
    schema = _schema(table)
    ensure_table(writer, schema)
    writer.commit()
    if writer.dialect == "mysql":
        writer._load_data = load_data  # type: ignore[attr-defined]
    rows = _rows(writer.dialect)
    writer.merge(TableBatch(schema, ("id",), inserts=rows))
    writer.commit()
    assert _content(writer, table) == rows
    # updates and deletes go through the same staging table
    changed = [(r[0], _AWKWARD[-2 - i], *r[2:]) for i, r in enumerate(rows[:5])]
    writer.merge(TableBatch(schema, ("id",), deletes=[(8,), (9,)], updates=changed))
    writer.commit()
    assert _content(writer, table) == changed + rows[5:7] + rows[9:]


def test_refused_value_rejects_the_batch(writer: Writer, schema_name: str) -> None:
    table = TableId(schema_name, "too_long")
    schema = _schema(table)
    ensure_table(writer, schema)
    writer.commit()
    bad: list[tuple[Any, ...]] = []
    if writer.dialect == "mysql":
        bad.append((1, "x" * 41, None, None, None, None, None, None))  # LOAD DATA warns only
        bad.append((1, "x", None, None, float("inf"), None, None, None))
    else:
        bad.append((None, "x", None, None, None, None, None, None))
    for row in bad:
        with pytest.raises(RowRejected):
            writer.merge(TableBatch(schema, ("id",), inserts=[row]))
        writer.rollback()
    assert _content(writer, table) == []
