"""The AS OF SCN snapshot: its point and the mining start agree exactly."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from capture.filters import CaptureFilter
from capture.runner import CaptureOptions, run_capture
from capture.trail import TrailReader
from connectors.base import TableFilter
from connectors.errors import SchemaError
from connectors.model import ROW_KEY, TableId
from connectors.oracle import Oracle
from connectors.oracle.positions import OraclePosition
from connectors.snapshot import open_snapshot
from tests.connectors.oracle.fake import FakeOracle

ITEMS = TableId("SHOP", "ITEMS")


def test_snapshot_point_and_catch_up_meet_exactly(
    oracle: Oracle, fake: FakeOracle, tmp_path: Path
) -> None:
    t = fake.txn()
    for i in range(1, 8):
        t.insert("SHOP", "ITEMS", {"ID": i, "NAME": f"r{i}"})
    t.commit()
    open_txn = fake.txn()
    open_txn.insert("SHOP", "ITEMS", {"ID": 100, "NAME": "in flight"})
    snap = open_snapshot(oracle, 2, tables=[ITEMS])
    point = OraclePosition.parse(snap.point.start)
    assert snap.point.start == snap.point.end  # exact
    assert point.restart == fake.open[open_txn.xid]  # the open transaction is mined whole
    # a change after the snapshot's SCN is not in it
    late = fake.txn()
    late.update("SHOP", "ITEMS", {"ID": 1}, NAME="late")
    late.commit()
    open_txn.commit()
    schema = oracle.table_schema(ITEMS)
    chunks = snap.plan_chunks(schema, 3)
    assert len(chunks) >= 3
    text = b"".join(
        b
        for n, ch in enumerate(chunks)
        for b, _ in snap.read_chunk(n % 2, schema, ch, "csv", ("ID", "NAME"))
    ).decode()
    assert sorted(text.splitlines()) == sorted(f'"{i}","r{i}"' for i in range(1, 8))
    assert all("AS OF SCN :scn" in s for s in fake.statements if 'FROM "SHOP"' in s)
    snap.close()
    # catch-up from the snapshot's point: the late update and the in-flight transaction
    options = CaptureOptions(
        source_id="src",
        filters=CaptureFilter(TableFilter(("SHOP.*",))),
        until_caught_up=True,
        stop_event=threading.Event(),
        max_retries=0,
        start_position=snap.point.start,
    )
    run_capture(oracle, tmp_path / "t", options)
    got = [
        (c.op.value, (c.after or {}).get("ID"), (c.after or {}).get("NAME"))
        for txn in TrailReader(tmp_path / "t").transactions()
        for c in txn.changes
        if c.op.value != "ddl"
    ]
    assert got == [("update", 1, "late"), ("insert", 100, "in flight")]


def test_snapshot_values_in_bulk_text(oracle: Oracle, fake: FakeOracle) -> None:
    import datetime as dt
    import decimal

    fake.create(
        "SHOP",
        "KINDS",
        [
            ("ID", "NUMBER", 22, None, 10, 0, "N"),
            ("AMOUNT", "NUMBER", 22, None, 12, 2, "Y"),
            ("AT", "DATE", 7, None, None, None, "Y"),
            ("TZ", "TIMESTAMP(6) WITH TIME ZONE", 13, None, None, 6, "Y"),
            ("RAWV", "RAW", 8, None, None, None, "Y"),
            ("DBL", "BINARY_DOUBLE", 8, None, None, None, "Y"),
            ("TXT", "VARCHAR2", 20, 20, None, None, "Y"),
        ],
        ["ID"],
    )
    t = fake.txn()
    plus2 = dt.timezone(dt.timedelta(hours=2))
    t.insert(
        "SHOP",
        "KINDS",
        {
            "ID": 1,
            "AMOUNT": decimal.Decimal("12.50"),
            "AT": dt.datetime(2024, 1, 2, 3, 4, 5),
            "TZ": dt.datetime(2024, 1, 2, 3, 4, 5, 600, tzinfo=plus2),
            "RAWV": b"\x00\xff",
            "DBL": 1.5,
            "TXT": "tab\there",
        },
    )
    t.insert("SHOP", "KINDS", {"ID": 2})
    t.commit()
    snap = open_snapshot(oracle, 1, tables=[TableId("SHOP", "KINDS")])
    schema = oracle.table_schema(TableId("SHOP", "KINDS"))
    (chunk,) = snap.plan_chunks(schema, 100)
    text = b"".join(b for b, _ in snap.read_chunk(0, schema, chunk, "pgcopy", schema.column_names))
    snap.close()
    assert text.decode().splitlines() == [
        "1\t12.50\t2024-01-02 03:04:05\t2024-01-02 01:04:05.000600+00:00"  # the instant, in UTC
        "\t\\\\x00ff\t1.5\ttab\\there",
        "2\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N",
    ]


def test_a_keyless_table_is_read_with_its_rowids_as_keys(oracle: Oracle, fake: FakeOracle) -> None:
    t = fake.txn()
    rids = [t.insert("SHOP", "NOTES", {"BODY": "dup"}) for _ in range(2)]
    t.commit()
    seen: list[str] = []

    def key(rowid: str) -> int:
        seen.append(rowid)
        return 100 + len(seen)

    snap = open_snapshot(oracle, 1, tables=[TableId("SHOP", "NOTES")])
    schema = oracle.table_schema(TableId("SHOP", "NOTES"))
    (chunk,) = snap.plan_chunks(schema, 100)
    cols = (ROW_KEY, "BODY")
    text = b"".join(b for b, _ in snap.read_chunk(0, schema, chunk, "csv", cols, row_ids=key))
    with pytest.raises(ValueError, match="first column"):
        list(snap.read_chunk(0, schema, chunk, "csv", cols))
    snap.close()
    assert sorted(seen) == sorted(rids)
    assert text.decode().splitlines() == ['"101","dup"', '"102","dup"']


def test_a_value_the_bulk_text_cannot_take_fails_the_table_with_its_name(
    oracle: Oracle, fake: FakeOracle
) -> None:
    t = fake.txn()
    t.insert("SHOP", "ITEMS", {"ID": 1, "NAME": "ok", "PRICE": 1})
    t.commit()
    # a driver that hands over what the column's type cannot be (the fake's row, changed)
    (_, _, values), *_ = fake.tables[ITEMS].history
    assert values is not None
    values["PRICE"] = "not a number"
    schema = oracle.table_schema(ITEMS)
    with open_snapshot(oracle, 1, tables=[ITEMS]) as snap:
        (chunk,) = snap.plan_chunks(schema, 100)
        with pytest.raises(SchemaError, match=r"SHOP\.ITEMS: cannot write a value"):
            list(snap.read_chunk(0, schema, chunk, "tsv", ("ID", "PRICE")))
