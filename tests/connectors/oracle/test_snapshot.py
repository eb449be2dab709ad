"""The AS OF SCN snapshot: its point and the mining start agree exactly."""

from __future__ import annotations

import threading
from pathlib import Path

from capture.filters import CaptureFilter
from capture.runner import CaptureOptions, run_capture
from capture.trail import TrailReader
from connectors.base import TableFilter
from connectors.model import TableId
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
