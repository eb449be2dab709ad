"""Shared builders for the capture tests: sample values, schemas and transactions."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import struct
import uuid
from typing import Any

from connectors.model import (
    UNCHANGED,
    Change,
    Column,
    Interval,
    Json,
    Op,
    TableId,
    TableSchema,
    Transaction,
    Value,
)

__all__ = [
    "ORDERS",
    "ORDERS_V1",
    "ORDERS_V2",
    "SAMPLE_VALUES",
    "make_txn",
    "same",
    "same_txns",
    "sample_workload",
]

ORDERS = TableId("shop", "orders")
ORDERS_V1 = TableSchema(
    ORDERS,
    (
        Column("id", "int", "bigint unsigned", nullable=False, bits=64, unsigned=True),
        Column("amount", "decimal", "decimal(12,2)", precision=12, scale=2),
        Column("status", "enum", "enum('new','paid')", labels=("new", "paid")),
    ),
    primary_key=("id",),
    version=1,
)
ORDERS_V2 = TableSchema(
    ORDERS,
    (*ORDERS_V1.columns, Column("note", "str", "varchar(200)", length=200)),
    primary_key=("id",),
    version=2,
)

UTC = dt.UTC
SAMPLE_VALUES: dict[str, Any] = {
    "none": None,
    "true": True,
    "false": False,
    "zero": 0,
    "u64max": 2**64 - 1,
    "i64min": -(2**63),
    "bigneg": -(2**80) + 7,
    "bigpos": 2**100,
    "dec": decimal.Decimal("123.4500"),
    "dec_nan": decimal.Decimal("NaN"),
    "dec_neg_zero": decimal.Decimal("-0.00"),
    "dec_exp": decimal.Decimal("1E+30"),
    "nan": math.nan,
    "inf": math.inf,
    "ninf": -math.inf,
    "negzero": -0.0,
    "float": 0.1,
    "text": "naïve ☃ \x00 zero",
    "empty": "",
    "bytes": b"\x00\x01\xff\x00",
    "date": dt.date(1, 1, 1),
    "time": dt.time(23, 59, 59, 999999),
    "timetz": dt.time(12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))),
    "naive": dt.datetime(2024, 2, 29, 23, 59, 59, 1),
    "aware": dt.datetime(
        2024, 2, 29, 23, 59, 59, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=45))
    ),
    "utc": dt.datetime(1970, 1, 1, tzinfo=UTC),
    "duration_neg": dt.timedelta(hours=-838, minutes=-59, seconds=-59),
    "duration_long": dt.timedelta(hours=838, microseconds=5),
    "interval": Interval(months=-14, days=3, microseconds=-1),
    "json": Json('{"b": 1, "a": [1.50, null]}'),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "array": [1, None, [2, None], "x"],
    "empty_array": [],
    "set": frozenset({"a", "b"}),
    "empty_set": frozenset(),
    "unchanged": UNCHANGED,
}


def same(a: Any, b: Any) -> bool:
    """Exact equality, stricter than ==: type, float bits, Decimal digits, tz offsets."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, decimal.Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, dt.datetime | dt.time):
        return a.replace(tzinfo=None) == b.replace(tzinfo=None) and a.utcoffset() == b.utcoffset()
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def _same_change(a: Change, b: Change) -> bool:
    return (
        a.op == b.op
        and a.table == b.table
        and a.schema_version == b.schema_version
        and same(a.key, b.key)
        and same(a.before, b.before)
        and same(a.after, b.after)
        and a.row_id == b.row_id
        and a.ddl == b.ddl
        and a.table_schema == b.table_schema
    )


def same_txns(a: list[Transaction], b: list[Transaction]) -> bool:
    """Transactions equal field by field, values compared with :func:`same`."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if (x.xid, x.position, x.origin, x.first_op) != (y.xid, y.position, y.origin, y.first_op):
            return False
        if not same(x.commit_time, y.commit_time):
            return False
        if len(x.changes) != len(y.changes):
            return False
        if not all(_same_change(c, d) for c, d in zip(x.changes, y.changes, strict=True)):
            return False
    return True


def make_txn(i: int, n: int = 3, *, table: TableId = ORDERS, version: int = 1) -> Transaction:
    """Transaction ``i`` with ``n`` changes cycling insert/update/delete."""
    changes = []
    for j in range(n):
        row_id = i * 1000 + j
        row: dict[str, Value] = {
            "id": row_id,
            "amount": decimal.Decimal(f"{j}.50"),
            "status": "new",
        }
        kind = j % 3
        if kind == 0:
            changes.append(Change(Op.INSERT, table, version, {"id": row_id}, None, row))
        elif kind == 1:
            after = dict(row, status="paid")
            changes.append(Change(Op.UPDATE, table, version, {"id": row_id}, row, after))
        else:
            changes.append(Change(Op.DELETE, table, version, {"id": row_id}, row, None))
    return Transaction(
        f"x{i}",
        f"binlog.000001:{1000 + i}",
        dt.datetime(2025, 6, 1, 10, 0, 0, tzinfo=UTC) + dt.timedelta(seconds=i),
        "src",
        changes,
    )


def sample_workload(count: int = 20) -> list[Transaction]:
    """A DDL announcement, row changes, an ALTER (v2), a value zoo, truncate, and a drop."""
    t0 = dt.datetime(2025, 6, 1, 9, 0, 0, tzinfo=UTC)
    out = [
        Transaction(
            "ddl1",
            "binlog.000001:100",
            t0,
            "src",
            [Change(Op.DDL, ORDERS, 1, table_schema=ORDERS_V1)],
        )
    ]
    out += [make_txn(i) for i in range(1, count)]
    out.append(
        Transaction(
            "ddl2",
            "binlog.000001:5000",
            t0 + dt.timedelta(hours=2),
            "src",
            [
                Change(
                    Op.DDL,
                    ORDERS,
                    2,
                    ddl="ALTER TABLE shop.orders ADD note varchar(200)",
                    table_schema=ORDERS_V2,
                )
            ],
        )
    )
    zoo = TableId("lab", "zoo")
    out.append(
        Transaction(
            "zoo",
            "binlog.000001:6000",
            dt.datetime(2025, 6, 1, 11, 0),
            "other-origin",
            [
                Change(Op.INSERT, zoo, 1, {"id": 1}, None, dict(SAMPLE_VALUES), row_id="AAAB"),
                Change(Op.UPDATE, ORDERS, 2, {"id": 5}, {"id": 5}, {"id": 5, "note": None}),
                Change(Op.TRUNCATE, zoo, 1),
                Change(Op.DDL, zoo, 1, ddl="DROP TABLE lab.zoo", table_schema=None),
            ],
        )
    )
    return out
