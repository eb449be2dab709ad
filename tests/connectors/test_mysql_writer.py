"""The MariaDB/MySQL target writer: every column kind in and out (LOAD DATA, executemany and
row-by-row paths), TableBatch merges, the checkpoint."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.base import RowRejected, TableBatch, Writer, open_database
from connectors.endpoint import Endpoint
from connectors.model import Op
from tests.connectors.writer_cases import (
    ALL_COLUMNS,
    EDGE_ROW,
    SAMPLE,
    TZ_UTC,
    assert_values,
    check_checkpoint_round_trip,
    check_keyed_merge,
    check_keyed_rejects_and_collisions,
    check_keyless_every_kind,
    check_keyless_merge,
    check_unchanged_row_by_row,
    make_table,
    round_trip,
    write_rows,
)


@pytest.fixture
def writer(mysql_db: Endpoint) -> Iterator[Writer]:
    w = open_database(mysql_db).open_writer()
    yield w
    w.close()


@pytest.fixture
def schema_name(mysql_db: Endpoint) -> str:
    """On MySQL a schema is a server-wide database: use the test's fresh one."""
    assert mysql_db.database
    return mysql_db.database


def _path(writer: Writer, path: str) -> str:
    """``executemany`` is the staging fallback when the server refuses LOAD DATA LOCAL."""
    if path == "executemany":
        writer._load_data = False  # type: ignore[attr-defined]
        return "merge"
    return path


#: what MySQL reads back: TIME comes as timedelta, BIT as bytes, arrays as JSON text
EXPECTED: dict[str, Any] = {
    **SAMPLE,
    "b": 1,  # TINYINT(1)
    "t": dt.timedelta(hours=23, minutes=59, seconds=59, microseconds=999999),
    "tz": TZ_UTC,
    "iv": "14 months 3 days 4000005 microseconds",
    "j": SAMPLE["j"].text,  # type: ignore[union-attr]
    "u": str(SAMPLE["u"]),
    "st": "a,c",
    "bt": b"\x02\x01",
    # compact, as the snapshot's array_to_json writes them
    "ai": "[1,null,-3]",
    "at": '["x",null,"y z"]',
}


@pytest.mark.parametrize("path", ["merge", "executemany", "row"])
def test_every_kind_round_trips(
    writer: Writer, schema_name: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = make_table(schema_name, f"kinds_{path}", list(ALL_COLUMNS))
    # TIME has no LOAD DATA text converter: a batch with one goes through executemany, so the
    # text path is checked on rows without durations and durations on their own below
    no_du = {k: v for k, v in SAMPLE.items() if k != "du"}
    second = {**EDGE_ROW, "f": -1.25, "d": 1e308}
    loaded: list[bool] = []
    load = writer._load  # type: ignore[attr-defined]

    def spy(*args: Any) -> bool:
        loaded.append(load(*args))
        return loaded[-1]

    monkeypatch.setattr(writer, "_load", spy)
    got = round_trip(writer, schema, [{"id": 1, **no_du}, second, {"id": 3}], _path(writer, path))
    if path == "merge":
        assert loaded == [True], "the batch did not take the LOAD DATA path"
    assert_values(got[0], {"id": 1, **EXPECTED, "du": None})
    assert_values(
        got[1],
        {
            **second,
            "b": 0,
            "bt": b"\x02\x01",
            "ai": "[null]",
            "at": "[]",
            "dec": None,
            "j": "{}",
            "st": "",
        },
    )
    assert_values(got[2], dict.fromkeys(EXPECTED) | {"id": 3})


@pytest.mark.parametrize("path", ["merge", "row"])
def test_durations_negative_and_beyond_24h(writer: Writer, schema_name: str, path: str) -> None:
    schema = make_table(schema_name, f"du_{path}", ["du", "s"])
    values = [
        dt.timedelta(hours=30, minutes=1, seconds=2, microseconds=3),
        -dt.timedelta(hours=30, microseconds=1),
        -dt.timedelta(microseconds=1),
        dt.timedelta(hours=838, minutes=59, seconds=59),
        -dt.timedelta(hours=838, minutes=59, seconds=59),
        dt.timedelta(0),
    ]
    rows: list[dict[str, Any]] = [{"id": i, "du": v, "s": "x"} for i, v in enumerate(values)]
    got = round_trip(writer, schema, rows, _path(writer, path))
    assert [r["du"] for r in got] == values


@pytest.mark.parametrize("path", ["merge", "executemany", "row"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_not_mangled(
    writer: Writer, schema_name: str, path: str, value: float
) -> None:
    """MySQL has no NaN or infinity: writing one is a RowRejected naming it, and the table
    keeps nothing of the batch (never a 0, NULL or truncated value in its place)."""
    schema = make_table(schema_name, "nan", ["d", "f"])
    write_rows(writer, schema, [], "merge")
    path = _path(writer, path)
    writer.begin()
    with pytest.raises(RowRejected, match=r"(?i)nan|inf|warning"):
        if path == "merge":
            writer.merge(TableBatch(schema, ("id",), inserts=[(1, 1.0, 1.0), (2, value, None)]))
        else:
            after = {"id": 2, "d": value, "f": None}
            writer.apply_row(schema, ("id",), Op.INSERT, None, after)
    writer.rollback()
    assert writer.query(f"SELECT COUNT(*) FROM {writer.database.qualified(schema.table)}") == [(0,)]
    writer.commit()


def test_keyed_merge(writer: Writer, schema_name: str) -> None:
    check_keyed_merge(writer, schema_name)


def test_keyed_rejects_and_collisions(writer: Writer, schema_name: str) -> None:
    check_keyed_rejects_and_collisions(writer, schema_name)


def test_keyless_merge(writer: Writer, schema_name: str) -> None:
    check_keyless_merge(writer, schema_name)


def test_unchanged_row_by_row(writer: Writer, schema_name: str) -> None:
    check_unchanged_row_by_row(writer, schema_name)


def test_checkpoint_round_trip(writer: Writer, schema_name: str) -> None:
    check_checkpoint_round_trip(writer, schema_name)


def test_keyless_every_kind(writer: Writer, schema_name: str) -> None:
    check_keyless_every_kind(writer, schema_name, list(ALL_COLUMNS))


def _tmp_tables(writer: Writer) -> int:
    """Internal temporary tables this session's statements have created so far."""
    rows = dict(writer.query("SHOW SESSION STATUS LIKE 'Created_tmp%tables'"))
    return int(rows["Created_tmp_tables"]) + int(rows["Created_tmp_disk_tables"])


@pytest.mark.parametrize("second_unique", [False, True])
def test_updates_use_no_internal_temporary_table(
    writer: Writer, schema_name: str, second_unique: bool
) -> None:
    """`UPDATE t JOIN staging` made MariaDB build an Aria temporary table per statement (the
    code path of an intermittent signal 11 in create_tmp_table / ha_maria::drop_table): the
    update goes through INSERT ... ON DUPLICATE KEY UPDATE instead, with the same result,
    including missing rows in collision mode. A table with a second unique key keeps the
    join (an upsert could hit the other key's row)."""
    from connectors.model import Column

    schema = make_table(
        schema_name,
        f"upd_{int(second_unique)}",
        [Column("name", "str", length=40), Column("big", "str"), Column("qty", "int", bits=32)],
    )
    write_rows(
        writer,
        schema,
        [{"id": i, "name": f"n{i}", "big": "x" * 300, "qty": i} for i in range(1, 2001)],
        "merge",
    )
    if second_unique:
        writer.execute(f"ALTER TABLE {writer.database.qualified(schema.table)} ADD UNIQUE (qty)")
        writer.commit()
        writer.invalidate(schema.table)  # as apply does after DDL
    writer.begin()
    before = _tmp_tables(writer)
    batch = TableBatch(schema, ("id",))
    batch.updates = [(i, f"u{i}", "y" * 400, -i) for i in range(1, 2001, 2)]
    assert writer.merge(batch) == 0
    created = _tmp_tables(writer) - before
    # collision mode: 3000 is missing (inserted), 2 exists (an insert becomes an update)
    collide = TableBatch(schema, ("id",), collision=True)
    collide.updates = [(3000, "new", None, 3000), (4, "four", None, 4)]
    collide.inserts = [(2, "two", None, 2)]
    assert writer.merge(collide) == 2
    writer.commit()
    rows = writer.query(
        f"SELECT id, name, big, qty FROM {writer.database.qualified(schema.table)} ORDER BY id"
    )
    writer.commit()
    expected = []
    for i in range(1, 2001):
        if i % 2:
            expected.append((i, f"u{i}", "y" * 400, -i))
        elif i in (2, 4):
            expected.append((i, {2: "two", 4: "four"}[i], None, i))
        else:
            expected.append((i, f"n{i}", "x" * 300, i))
    expected.append((3000, "new", None, 3000))
    assert [tuple(r) for r in rows] == expected
    # the join path does build temporary tables: the counter sees them
    assert (created > 0) if second_unique else (created == 0)
    # a missing row outside collision mode is still refused
    writer.begin()
    with pytest.raises(RowRejected, match="not found"):
        writer.merge(TableBatch(schema, ("id",), updates=[(9999, "z", None, 9999)]))
    writer.rollback()
