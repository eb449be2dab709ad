"""Checks every target writer must pass, shared by ``test_{postgres,mysql,duckdb}_writer.py``.

The value round trips differ per target (each engine reads values back in its own types), so
each test module states its own expectations; what a :class:`TableBatch` means (merge
semantics, collision counts, the checkpoint in the same transaction) is the same on every
target and lives here once.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from apply.typemap import ensure_table
from connectors.base import RowRejected, TableBatch, Writer
from connectors.model import UNCHANGED, Column, Interval, Json, Op, TableId, TableSchema, Value

__all__ = [
    "ALL_COLUMNS",
    "SAMPLE",
    "TZ_UTC",
    "assert_values",
    "check_checkpoint_round_trip",
    "check_keyed_merge",
    "check_keyed_rejects_and_collisions",
    "check_keyless_every_kind",
    "check_keyless_merge",
    "check_unchanged_row_by_row",
    "content",
    "make_table",
    "round_trip",
    "write_rows",
]

#: one column per kind of :data:`connectors.model.KINDS` (``other`` has no target type by
#: design: typemap raises SchemaError for it), plus the widths that hit edge cases
ALL_COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        Column("b", "bool"),
        Column("i8", "int", bits=8),
        Column("i64", "int", bits=64),
        Column("u64", "int", bits=64, unsigned=True),
        Column("dec", "decimal", precision=65, scale=30),
        Column("dec2", "decimal", precision=12, scale=2),
        Column("f", "float"),
        Column("d", "double"),
        Column("s", "str"),
        Column("by", "bytes"),
        Column("da", "date"),
        Column("t", "time", precision=6),
        Column("du", "duration", precision=6),
        Column("ts", "datetime", precision=6),
        Column("tz", "timestamptz", precision=6),
        Column("iv", "interval"),
        Column("j", "json"),
        Column("u", "uuid"),
        Column("e", "enum", labels=("small", "medium", "large")),
        Column("st", "set", labels=("a", "b", "c")),
        Column("bt", "bit", bits=10),
        Column("y", "year"),
        Column("ai", "array", element="int"),
        Column("at", "array", element="str"),
    )
}

_PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))

#: values every target must keep (each module adds the ones only some targets hold)
SAMPLE: dict[str, Value] = {
    "b": True,
    "i8": -128,
    "i64": -9223372036854775808,
    "u64": 18446744073709551615,
    "dec": decimal.Decimal("-12345678901234567890123456789012345.123456789012345678901234567890"),
    "dec2": decimal.Decimal("-0.50"),
    "f": 1.5,
    "d": 0.1,
    "s": "h\u00e9llo \U0001f389 tab\there\nline \\ back 'q'  ",
    "by": b"\x00a\x00\xff\x00",
    "da": dt.date(2024, 2, 29),
    "t": dt.time(23, 59, 59, 999999),
    "du": dt.timedelta(hours=30, minutes=1, seconds=2, microseconds=3),
    "ts": dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
    "tz": dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=_PLUS_0530),
    "iv": Interval(months=14, days=3, microseconds=4_000_005),
    "j": Json('{"b": 1, "a": [1, 2.5, null], "s": "\u00e9"}'),
    "u": uuid.UUID("12345678-1234-5678-9abc-def012345678"),
    "e": "medium",
    "st": frozenset({"c", "a"}),
    "bt": 513,
    "y": 2024,
    "ai": [1, None, -3],
    "at": ["x", None, "y z"],
}

#: the instant of ``SAMPLE["tz"]`` in UTC, as naive and aware values
TZ_UTC = dt.datetime(2024, 1, 1, 21, 34, 5, 678901)

#: a second row at the edges every target takes (empty values are not NULL; each test reads
#: "j" and "st" back as text); each test adds the floats (and durations) its engine can store
EDGE_ROW: dict[str, Value] = {
    "id": 2,
    "b": False,
    "i8": 127,
    "i64": 9223372036854775807,
    "u64": 0,
    "dec2": decimal.Decimal("0.00"),
    "s": "",
    "by": b"",
    "j": Json("{}"),
    "st": frozenset(),
    "ai": [None],
    "at": [],
    "bt": b"\x02\x01",  # a MySQL source sends BIT as bytes
    "tz": dt.datetime(2024, 1, 1, 21, 34, 5),  # naive: a MySQL TIMESTAMP is UTC
}


def make_table(
    schema_name: str, name: str, columns: Sequence[str] | Sequence[Column], key: bool = True
) -> TableSchema:
    """A table ``id`` (bigint key, unless keyless) + the given columns of :data:`ALL_COLUMNS`."""
    cols = [ALL_COLUMNS[c] if isinstance(c, str) else c for c in columns]
    if key:
        cols.insert(0, Column("id", "int", "bigint", nullable=False, bits=64))
    return TableSchema(TableId(schema_name, name), tuple(cols), primary_key=("id",) if key else ())


def write_rows(
    writer: Writer, schema: TableSchema, rows: list[dict[str, Value]], path: str
) -> None:
    """Create ``schema``'s table and insert ``rows`` set-based (``merge``) or one by one."""
    ensure_table(writer, schema)
    writer.commit()
    writer.begin()
    names = [c.name for c in schema.columns]
    if path == "merge":
        batch = TableBatch(schema, schema.primary_key)
        batch.inserts = [tuple(r.get(n) for n in names) for r in rows]
        assert writer.merge(batch) == 0
    else:
        for r in rows:
            after = {n: r.get(n) for n in names}
            assert writer.apply_row(schema, schema.primary_key, Op.INSERT, None, after) == 0
    writer.commit()


def content(writer: Writer, table: TableId, exprs: str = "*", order: str = "") -> list[Any]:
    """Rows of ``table`` (committed read, sorted by ``order`` or by their repr)."""
    sql = f"SELECT {exprs} FROM {writer.database.qualified(table)}"
    rows = writer.query(sql + (f" ORDER BY {order}" if order else ""))
    writer.commit()
    return rows if order else sorted(rows, key=repr)


def round_trip(
    writer: Writer,
    schema: TableSchema,
    rows: list[dict[str, Value]],
    path: str,
    read: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Write ``rows`` through ``path`` and read them back by ``id``, each column through its
    SQL expression in ``read`` (default: the column itself)."""
    write_rows(writer, schema, rows, path)
    names = [c.name for c in schema.columns]
    q = writer.database.quote
    exprs = ", ".join((read or {}).get(n, q(n)) for n in names)
    got = content(writer, schema.table, exprs, order=q("id"))
    return [dict(zip(names, r, strict=True)) for r in got]


def _same(got: Any, expected: Any) -> bool:
    # types must match too (True is not 1, Decimal('0.5') is not Decimal('0.50'))
    if type(got) is not type(expected):
        return False
    if isinstance(expected, decimal.Decimal):
        return str(got) == str(expected)
    if isinstance(expected, float) and math.isnan(expected):
        return math.isnan(got)
    if isinstance(expected, float) and expected == 0:
        return math.copysign(1, got) == math.copysign(1, expected)
    if isinstance(expected, list):
        return len(got) == len(expected) and all(map(_same, got, expected))
    return bool(got == expected)


def assert_values(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Column by column, so a failure names the column; types must match, NaN equals NaN."""
    bad = {n: (got.get(n), v) for n, v in expected.items() if not _same(got.get(n), v)}
    assert not bad, f"(got, expected) per column: {bad}"


# --------------------------------------------------------------------------- keyed merges

_KEYED_COLS = (
    Column("name", "str", length=40),
    Column("big", "str"),
    Column("qty", "int", bits=32),
)


def _keyed(schema_name: str, name: str = "k") -> TableSchema:
    return make_table(schema_name, name, _KEYED_COLS)


def _seed(writer: Writer, schema: TableSchema, ids: range) -> None:
    write_rows(
        writer,
        schema,
        [{"id": i, "name": f"n{i}", "big": f"big{i}" * 3, "qty": i * 10} for i in ids],
        "merge",
    )


def check_keyed_merge(writer: Writer, schema_name: str) -> None:
    """Deletes by key, full updates, partial updates (UNCHANGED columns kept) and inserts."""
    schema = _keyed(schema_name)
    _seed(writer, schema, range(1, 6))
    writer.begin()
    batch = TableBatch(schema, ("id",))
    batch.deletes = [(1,), (5,)]
    batch.updates = [(2, "two", None, 20)]  # full image: big becomes NULL
    # partial image (TOAST): name and big unchanged, qty changes
    batch.patches = {("id", "qty"): [(3, 333)], ("id", "name"): [(4, "four")]}
    batch.inserts = [(6, "six", "b6", None), (7, None, "b7", 70)]
    assert writer.merge(batch) == 0
    writer.commit()
    assert content(writer, schema.table, order="id") == [
        (2, "two", None, 20),
        (3, "n3", "big3big3big3", 333),
        (4, "four", "big4big4big4", 40),
        (6, "six", "b6", None),
        (7, None, "b7", 70),
    ]
    # a row updated to identical values still counts as found (no false "missing")
    writer.begin()
    same = TableBatch(schema, ("id",), updates=[(2, "two", None, 20)])
    assert writer.merge(same) == 0
    writer.commit()
    # a key change arrives as a delete of the old key + insert of the new, in one batch
    writer.begin()
    move = TableBatch(schema, ("id",), deletes=[(6,)], inserts=[(60, "six", "b6", None)])
    assert writer.merge(move) == 0
    writer.commit()
    assert [r[0] for r in content(writer, schema.table, order="id")] == [2, 3, 4, 7, 60]


def check_keyed_rejects_and_collisions(writer: Writer, schema_name: str) -> None:
    """Without collision mode a missing or existing row rejects the batch (and rolling back
    leaves the table as it was); with it each one is reconciled and counted."""
    schema = _keyed(schema_name, "kc")
    _seed(writer, schema, range(1, 4))
    before = content(writer, schema.table, order="id")
    refused: list[tuple[TableBatch, bool]] = [
        (TableBatch(schema, ("id",), deletes=[(1,), (99,)]), True),
        (TableBatch(schema, ("id",), updates=[(1, "x", None, 1), (98, "y", None, 2)]), True),
        (TableBatch(schema, ("id",), patches={("id", "qty"): [(97, 1)]}), True),
        (TableBatch(schema, ("id",), inserts=[(4, "new", None, 4), (2, "dup", None, 0)]), False),
    ]
    for batch, missing in refused:
        writer.begin()
        with pytest.raises(RowRejected) as info:
            writer.merge(batch)
        assert info.value.missing is missing, batch
        writer.rollback()
        assert content(writer, schema.table, order="id") == before, batch
    writer.begin()
    batch = TableBatch(
        schema,
        ("id",),
        deletes=[(1,), (99,)],  # 99 missing: ignored, 1 collision
        updates=[(2, "upd", None, 22), (98, "ins", None, 98)],  # 98 missing: inserted, 1
        patches={("id", "qty"): [(3, 33), (97, 97)]},  # 97 missing: inserted, 1
        inserts=[(2, "again", "b", 222), (5, "five", None, 5)],  # 2 exists: updated, 1
        collision=True,
    )
    # statements run deletes, updates, inserts, then patches: 2 is updated twice
    assert writer.merge(batch) == 4
    writer.commit()
    assert content(writer, schema.table, "id, name, qty", order="id") == [
        (2, "again", 222),
        (3, "n3", 33),
        (5, "five", 5),
        (97, None, 97),
        (98, "ins", 98),
    ]
    # an insert-only table (every column in the key) counts existing rows as collisions
    only_key = make_table(schema_name, "ko", [])
    write_rows(writer, only_key, [{"id": 1}], "merge")
    writer.begin()
    assert writer.merge(TableBatch(only_key, ("id",), inserts=[(1,), (2,)], collision=True)) == 1
    writer.commit()
    assert content(writer, only_key.table, order="id") == [(1,), (2,)]


# --------------------------------------------------------------------------- keyless merges

_KEYLESS_COLS = (
    Column("kind", "str", length=20, nullable=False),
    Column("qty", "int", bits=32),
    Column("tag", "str", length=20),
)


def check_keyless_merge(writer: Writer, schema_name: str) -> None:
    """Deletes by full image remove exactly the requested number of identical copies (NULLs
    compare equal), whether some or all copies go; a missing copy rejects or is counted."""
    schema = make_table(schema_name, "kl", _KEYLESS_COLS, key=False)
    a, b, c, d = ("a", 1, "x"), ("b", 2, "y"), ("c", None, None), ("d", 4, "z")
    write_rows(writer, schema, [], "merge")
    writer.begin()
    assert writer.merge(TableBatch(schema, (), inserts=[a, a, a, b, c, c, d, d])) == 0
    writer.commit()
    writer.begin()
    batch = TableBatch(schema, (), deletes=[a, c, d], delete_counts=[2, 1, 2])
    assert writer.merge(batch) == 0
    writer.commit()
    assert content(writer, schema.table) == sorted([a, b, c], key=repr)
    # more copies asked than exist: rejected as missing, nothing deleted after rollback
    writer.begin()
    with pytest.raises(RowRejected) as info:
        writer.merge(TableBatch(schema, (), deletes=[b], delete_counts=[2]))
    assert info.value.missing
    writer.rollback()
    assert content(writer, schema.table) == sorted([a, b, c], key=repr)
    # collision mode: the copies that are there go, the others are counted
    writer.begin()
    batch = TableBatch(
        schema, (), deletes=[b, d], delete_counts=[3, 1], inserts=[d, d], collision=True
    )
    assert writer.merge(batch) == 3
    writer.commit()
    assert content(writer, schema.table) == sorted([a, c, d, d], key=repr)
    # row by row: an update or delete of one of several identical rows touches one of them
    writer.begin()
    names = ("kind", "qty", "tag")
    full, c_row = dict(zip(names, d, strict=True)), dict(zip(names, c, strict=True))
    assert writer.apply_row(schema, (), Op.UPDATE, full, {**full, "qty": 5}) == 0
    assert writer.apply_row(schema, (), Op.DELETE, c_row, None) == 0
    writer.commit()
    assert content(writer, schema.table) == sorted([a, d, ("d", 5, "z")], key=repr)
    writer.begin()
    with pytest.raises(RowRejected):
        writer.apply_row(schema, (), Op.DELETE, c_row, None)
    writer.rollback()


def check_keyless_every_kind(writer: Writer, schema_name: str, columns: Sequence[str]) -> None:
    """A keyless table finds its rows by every column's value, set-based (join with staging)
    and row by row (a parameter per column): every kind must compare equal to itself, a
    4-byte float too (0.1 is not a float4 value: compared as a double it matches nothing)."""
    schema = make_table(schema_name, "kl_kinds", columns, key=False)
    names = [c.name for c in schema.columns]
    image = tuple({**SAMPLE, "f": 0.1}.get(n) for n in names)
    other = tuple(None if n != "s" else "other" for n in names)
    write_rows(writer, schema, [], "merge")
    writer.begin()
    assert writer.merge(TableBatch(schema, (), inserts=[image, image, image, other])) == 0
    writer.commit()
    writer.begin()
    # one of three copies: the partial path (MySQL: DELETE ... WHERE <params> LIMIT n)
    assert writer.merge(TableBatch(schema, (), deletes=[image], delete_counts=[1])) == 0
    writer.commit()
    writer.begin()
    row = dict(zip(names, image, strict=True))
    assert writer.apply_row(schema, (), Op.UPDATE, row, {**row, "s": "changed"}) == 0
    assert writer.apply_row(schema, (), Op.DELETE, row, None) == 0
    writer.commit()
    q = writer.database.quote
    assert content(writer, schema.table, q("s")) == [("changed",), ("other",)]
    # every copy of an image: the join path
    writer.begin()
    gone = tuple({**row, "s": "changed"}.values())
    assert writer.merge(TableBatch(schema, (), deletes=[gone, other], delete_counts=[1, 1])) == 0
    writer.commit()
    assert content(writer, schema.table) == []


def check_unchanged_row_by_row(writer: Writer, schema_name: str) -> None:
    """apply_row leaves UNCHANGED columns as they are on the target."""
    schema = _keyed(schema_name, "ku")
    _seed(writer, schema, range(1, 2))
    writer.begin()
    after = {"id": 1, "name": "new", "big": UNCHANGED, "qty": 11}
    assert writer.apply_row(schema, ("id",), Op.UPDATE, {"id": 1}, after) == 0
    writer.commit()
    assert content(writer, schema.table) == [(1, "new", "big1big1big1", 11)]


# --------------------------------------------------------------------------- checkpoint


def check_checkpoint_round_trip(writer: Writer, schema_name: str) -> None:
    """The checkpoint commits with the data, and a rollback keeps the old one (and no data)."""
    schema = _keyed(schema_name, "cp")
    _seed(writer, schema, range(1, 2))
    assert writer.load_checkpoint("src", "tgt") == (0, None)
    assert writer.load_checkpoint("src", "other") == (0, None)
    commit_time = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=_PLUS_0530)
    writer.begin()
    writer.merge(TableBatch(schema, ("id",), inserts=[(2, "two", None, 2)]))
    writer.save_checkpoint("src", "tgt", 41, "0/16B3748", commit_time)
    writer.commit()
    assert writer.load_checkpoint("src", "tgt") == (41, "0/16B3748")
    assert writer.load_checkpoint("src", "other") == (0, None)
    writer.begin()
    writer.merge(TableBatch(schema, ("id",), inserts=[(3, "three", None, 3)]))
    writer.save_checkpoint("src", "tgt", 99, "0/FFFFFFF", commit_time)
    writer.rollback()
    assert writer.load_checkpoint("src", "tgt") == (41, "0/16B3748")
    assert [r[0] for r in content(writer, schema.table, order="id")] == [1, 2]
    ((stored,),) = writer.query(
        "SELECT commit_time FROM "
        + writer.database.qualified(TableId("redoline", "redoline_checkpoint"))
        + " WHERE source_id = 'src' AND target_id = 'tgt'"
    )
    writer.commit()
    # stored as naive UTC, whatever the offset of the source's commit time
    assert stored.replace(tzinfo=None) == dt.datetime(2024, 5, 6, 1, 38, 9, 123456)
    # the checkpoint row gone (someone dropped it) is an error, not a silent no-op
    writer.begin()
    with pytest.raises(RowRejected, match="checkpoint row"):
        writer.save_checkpoint("src", "never-loaded", 1, "p", commit_time)
    writer.rollback()
