"""Checks every source must pass, the counterpart of ``writer_cases.py``.

Each case drives the source with its own driver (a :class:`Harness` per engine: how to open a
session and write a statement), captures through the engine-neutral capture loop
(:func:`capture.runner.run_capture`, as ``redoline capture`` does) and judges the trail with
the trail reader: what the test committed is the oracle, nothing of the capture path is.
``test_source_conformance.py`` runs every case against every source.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capture.filters import CaptureFilter
from capture.runner import CaptureOptions, run_capture
from capture.trail import TrailReader
from connectors.base import HEARTBEAT_TABLE, Database, TableFilter, open_database
from connectors.endpoint import Endpoint
from connectors.model import Op, TableId, Transaction
from connectors.snapshot import open_snapshot

__all__ = [
    "CASES",
    "Harness",
    "KindColumn",
    "check_caught_up_heartbeat",
    "check_commit_only_and_rollback",
    "check_ddl_is_announced_before_its_rows",
    "check_every_column_kind",
    "check_interleaved_transactions_in_commit_order",
    "check_positions_and_exact_resume",
    "check_snapshot_continuity",
]


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class KindColumn:
    """One column of the every-kind table, as the engine writes and its driver reads it."""

    name: str
    #: the column's type in the engine's SQL
    ddl: str
    #: the kind the trail's definition must give it
    kind: str
    #: SQL expressions, one per row (row ids 1, 2, ...); "NULL" for a NULL
    values: tuple[str, ...]
    #: what the driver reads (``{c}``: the quoted column); default the column itself
    read: str = "{c}"
    #: the driver's value as the change model's value (docs: connectors/model.py)
    model: Callable[[Any], Any] = _same


@dataclass
class Harness:
    """One source engine as the cases need it."""

    endpoint: Endpoint
    #: the schema (MySQL: database) the cases' tables live in
    schema: str
    #: a new DB-API connection, not autocommit
    connect: Callable[[], Any]
    #: the placeholder of its driver
    mark: str = "%s"
    #: the every-kind table: one column per kind the engine produces as a source
    kinds: Sequence[KindColumn] = ()
    #: statements the every-kind table needs first (PostgreSQL: its enum type)
    kinds_setup: Sequence[str] = ()
    #: statements a reading session runs first (MariaDB: UTC, for TIMESTAMP)
    read_setup: Sequence[str] = field(default_factory=tuple)

    @property
    def db(self) -> Database:
        return open_database(self.endpoint)

    def table(self, name: str) -> TableId:
        return TableId(self.schema, name)

    def qt(self, name: str) -> str:
        return self.db.qualified(self.table(name))

    def run(self, *statements: str | tuple[str, tuple[Any, ...]]) -> None:
        """``statements`` in one transaction, committed."""
        conn = self.connect()
        try:
            cur = conn.cursor()
            for stmt in statements:
                sql, params = (stmt, ()) if isinstance(stmt, str) else stmt
                cur.execute(sql, params or None)
            conn.commit()
        finally:
            conn.close()

    def create(self, name: str, extra: str = "") -> None:
        """A keyed table ``name (id INT PRIMARY KEY, v VARCHAR(20){extra})``; its rows are
        captured in full (PostgreSQL: REPLICA IDENTITY FULL, so deletes carry the image)."""
        q = self.db.quote
        stmts = [
            f"CREATE TABLE {self.qt(name)} ({q('id')} INT PRIMARY KEY, {q('v')} VARCHAR(20){extra})"
        ]
        if not self.db.schema_is_database:
            stmts.append(f"ALTER TABLE {self.qt(name)} REPLICA IDENTITY FULL")
        self.run(*stmts)

    def insert(self, name: str, *rows: tuple[int, str]) -> tuple[str, tuple[Any, ...]]:
        marks = ", ".join(f"({self.mark}, {self.mark})" for _ in rows)
        return (f"INSERT INTO {self.qt(name)} VALUES {marks}", tuple(x for r in rows for x in r))


def capture(h: Harness, trail: Path, start: str | None = None) -> list[Transaction]:
    """Capture until caught up (the first run fixes the trail's start, ``start`` when given);
    the whole trail."""
    options = CaptureOptions(
        source_id="src",
        filters=CaptureFilter(TableFilter((f"{h.schema}.*",))),
        until_caught_up=True,
        start_position=start,
        stop_event=threading.Event(),
        max_retries=0,
        reader_options={"slot_timeout": 30.0},
    )
    run_capture(h.db, trail, options)
    return list(TrailReader(trail).transactions())


def _rows(txns: list[Transaction], table: TableId) -> list[list[tuple[str, Any, Any]]]:
    """Per transaction touching ``table``: (op, id, v) of each row change, in log order."""
    out = []
    for txn in txns:
        rows = []
        for ch in txn.changes:
            if ch.table != table or ch.op is Op.DDL:
                continue
            image = ch.after if ch.op is not Op.DELETE else ch.before
            assert image is not None
            rows.append((ch.op.value, image["id"], image.get("v")))
        if rows:
            out.append(rows)
    return out


def check_commit_only_and_rollback(h: Harness, trail: Path) -> None:
    """Committed transactions arrive whole and in order; a rolled-back one never does."""
    h.create("c")
    capture(h, trail)  # fixes the start: everything below is after it
    h.run(h.insert("c", (1, "a"), (2, "b")))
    conn = h.connect()
    cur = conn.cursor()
    cur.execute(*h.insert("c", (3, "never")))
    cur.execute(f"UPDATE {h.qt('c')} SET {h.db.quote('v')} = 'gone' WHERE {h.db.quote('id')} = 1")
    conn.rollback()
    conn.close()
    h.run(
        (
            f"UPDATE {h.qt('c')} SET {h.db.quote('v')} = {h.mark} WHERE {h.db.quote('id')} = 2",
            ("B",),
        ),
        (f"DELETE FROM {h.qt('c')} WHERE {h.db.quote('id')} = {h.mark}", (1,)),
    )
    got = _rows(capture(h, trail), h.table("c"))
    assert got == [
        [("insert", 1, "a"), ("insert", 2, "b")],
        [("update", 2, "B"), ("delete", 1, "a")],
    ], got


def check_interleaved_transactions_in_commit_order(h: Harness, trail: Path) -> None:
    """Two sessions interleave their statements: each transaction arrives whole, in the order
    the transactions committed, not the order their statements ran."""
    h.create("i")
    capture(h, trail)
    first, second = h.connect(), h.connect()
    c1, c2 = first.cursor(), second.cursor()
    c1.execute(*h.insert("i", (1, "first")))
    c2.execute(*h.insert("i", (2, "second")))
    c2.execute(*h.insert("i", (3, "second")))
    second.commit()
    c1.execute(*h.insert("i", (4, "first")))
    first.commit()
    first.close()
    second.close()
    got = _rows(capture(h, trail), h.table("i"))
    assert got == [
        [("insert", 2, "second"), ("insert", 3, "second")],
        [("insert", 1, "first"), ("insert", 4, "first")],
    ], got


def check_positions_and_exact_resume(h: Harness, trail: Path) -> None:
    """Commit positions strictly increase in the engine's order; a second run resumes right
    after the first: nothing twice, nothing lost."""
    h.create("p")
    capture(h, trail)
    for i in range(1, 6):
        h.run(h.insert("p", (i, f"r{i}")))
    first = capture(h, trail)
    for i in range(6, 11):
        h.run(h.insert("p", (i, f"r{i}")))
    txns = capture(h, trail)
    ids = [r[1] for rows in _rows(txns, h.table("p")) for r in rows]
    assert ids == list(range(1, 11)), ids
    assert len(_rows(first, h.table("p"))) == 5
    positions = [t.position for t in txns]
    for a, b in itertools.pairwise(positions):
        assert h.db.compare_positions(a, b) < 0, (a, b)
    ops = [t.first_op for t in txns]
    assert ops == sorted(ops) and len(set(ops)) == len(ops)


def check_ddl_is_announced_before_its_rows(h: Harness, trail: Path) -> None:
    """A column added while capture runs is in the recorded definition before the first row
    change that carries it, and that row carries its value."""
    h.create("d")
    capture(h, trail)
    h.run(h.insert("d", (1, "before")))
    q = h.db.quote
    h.run(f"ALTER TABLE {h.qt('d')} ADD COLUMN {q('n')} INT")
    h.run((f"INSERT INTO {h.qt('d')} VALUES ({h.mark}, {h.mark}, {h.mark})", (2, "after", 7)))
    txns = capture(h, trail)
    defined: set[str] = set()
    seen_new = False
    for txn in txns:
        for ch in txn.changes:
            if ch.table != h.table("d"):
                continue
            if ch.op is Op.DDL and ch.table_schema is not None:
                defined = set(ch.table_schema.column_names)
            elif ch.op is Op.INSERT and ch.after is not None and ch.after["id"] == 2:
                assert "n" in defined, defined
                assert ch.after["n"] == 7
                seen_new = True
    assert seen_new


def _equal(got: Any, want: Any) -> bool:
    """Equal in value and in type (NaN equals NaN; a list element by element)."""
    if type(got) is not type(want):
        return False
    if isinstance(got, list):
        return len(got) == len(want) and all(map(_equal, got, want))
    if isinstance(got, float) and math.isnan(got):
        return math.isnan(want)
    if hasattr(got, "is_nan") and got.is_nan():
        return bool(want.is_nan())
    return bool(got == want)


def check_every_column_kind(h: Harness, trail: Path) -> None:
    """A table with a column of every kind the engine produces: the trail's definition gives
    each its kind, and each row's values (NULL, non-ASCII, large and edge values) are what
    the engine's own driver reads back from the table."""
    assert h.kinds, "the harness lists no column kinds"
    q = h.db.quote
    cols = ", ".join(f"{q(c.name)} {c.ddl}" for c in h.kinds)
    h.run(*h.kinds_setup, f"CREATE TABLE {h.qt('k')} ({q('id')} INT PRIMARY KEY, {cols})")
    capture(h, trail)
    nrows = max(len(c.values) for c in h.kinds)
    names = ", ".join(q(c.name) for c in h.kinds)
    for i in range(nrows):
        values = ", ".join(c.values[i] if i < len(c.values) else "NULL" for c in h.kinds)
        h.run(f"INSERT INTO {h.qt('k')} ({q('id')}, {names}) VALUES ({i + 1}, {values})")
    txns = capture(h, trail)
    conn = h.connect()
    try:
        cur = conn.cursor()
        for stmt in h.read_setup:
            cur.execute(stmt)
        reads = ", ".join(c.read.format(c=q(c.name)) for c in h.kinds)
        cur.execute(f"SELECT {q('id')}, {reads} FROM {h.qt('k')} ORDER BY {q('id')}")
        oracle = {int(r[0]): r[1:] for r in cur.fetchall()}
    finally:
        conn.close()
    assert sorted(oracle) == list(range(1, nrows + 1))
    schema = None
    after: dict[int, dict[str, Any]] = {}
    for txn in txns:
        for ch in txn.changes:
            if ch.table != h.table("k"):
                continue
            if ch.op is Op.DDL:
                schema = ch.table_schema
            else:
                assert ch.op is Op.INSERT and ch.after is not None, ch
                rid = ch.after["id"]
                assert isinstance(rid, int), ch.after
                after[rid] = ch.after
    assert schema is not None
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {"id": "int", **{c.name: c.kind for c in h.kinds}}, kinds
    assert sorted(after) == sorted(oracle)
    wrong = []
    for rid, read in oracle.items():
        for col, raw in zip(h.kinds, read, strict=True):
            want = None if raw is None else col.model(raw)
            if not _equal(after[rid][col.name], want):
                wrong.append((rid, col.name, after[rid][col.name], want))
    assert not wrong, wrong
    nulls = {c.name for c in h.kinds if "NULL" in c.values}
    assert nulls == {c.name for c in h.kinds}, "every column needs a NULL row"


def _beats(txns: list[Transaction], since_us: int) -> list[int]:
    """This source's heartbeat values written since ``since_us``, in trail order."""
    out = []
    for txn in txns:
        for ch in txn.changes:
            image = ch.after if ch.table == HEARTBEAT_TABLE else None
            if image is not None and image["source_id"] == "src":
                beat = image["beat_us"]
                assert isinstance(beat, int), image
                if beat >= since_us:
                    out.append(beat)
    return out


def check_caught_up_heartbeat(h: Harness, trail: Path) -> None:
    """With ``[source] heartbeat`` set, a capture that has caught up and sees no other change
    still writes beats: each reaches the trail, newer than the one before, and nothing else
    does."""
    h.create("h")
    capture(h, trail)  # caught up: the source is idle from here on
    since = int(time.time() * 1_000_000)
    stop = threading.Event()
    options = CaptureOptions(
        source_id="src",
        filters=CaptureFilter(TableFilter((f"{h.schema}.*",))),
        stop_event=stop,
        max_retries=0,
        heartbeat=0.2,
        reader_options={"slot_timeout": 30.0},
    )
    failed: list[BaseException] = []

    def run() -> None:
        try:
            run_capture(h.db, trail, options)
        except BaseException as exc:  # the assertion below reports it
            failed.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    time.sleep(3.0)
    stop.set()
    worker.join(30)
    assert not worker.is_alive() and not failed, failed
    until = int(time.time() * 1_000_000)
    txns = list(TrailReader(trail).transactions())
    beats = _beats(txns, since)
    assert len(beats) >= 2, beats
    assert beats == sorted(set(beats)) and beats[-1] <= until, beats
    assert _rows(txns, h.table("h")) == []


def check_snapshot_continuity(h: Harness, trail: Path) -> None:
    """Rows committed before, during and after a snapshot: each is in the snapshot or in the
    trail captured from the snapshot's point, never lost; one in both committed in the
    point's window (between ``start`` and ``end``), never outside it."""
    h.create("s")
    h.run(h.insert("s", *((i, "before") for i in range(1, 51))))
    done = threading.Event()
    written: list[int] = []

    def write() -> None:
        after = 0  # rows committed once the snapshot is closed
        for i in itertools.count(51):
            h.run(h.insert("s", (i, "during")))
            written.append(i)
            after += done.is_set()
            if after >= 20:
                return
            time.sleep(0.005)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    while len(written) < 10:
        time.sleep(0.01)
    table = h.table("s")
    session = open_snapshot(
        h.db, 1, tables=[table], options={"trail_dir": str(trail), "source_id": "src"}
    )
    try:
        point = session.point
        schema = h.db.table_schema(table)
        text = b""
        for chunk in session.plan_chunks(schema, 1_000_000):
            for batch, _n in session.read_chunk(0, schema, chunk, "csv", ("id",)):
                text += batch
    finally:
        session.close()
    done.set()
    writer.join(60)
    assert not writer.is_alive()
    snapped = [int(r[0]) for r in csv.reader(io.StringIO(text.decode()))]
    assert len(snapped) == len(set(snapped)) and set(range(1, 51)) <= set(snapped)
    txns = capture(h, trail, point.start)
    in_trail: dict[int, str] = {}
    for txn in txns:
        for ch in txn.changes:
            if ch.table == table and ch.op is Op.INSERT and ch.after is not None:
                rid = ch.after["id"]
                assert isinstance(rid, int) and rid not in in_trail, rid
                in_trail[rid] = txn.position
    everything = set(range(1, 51)) | set(written)
    assert set(snapped) | set(in_trail) == everything
    assert set(snapped) < everything and in_trail, "the writes did not straddle the snapshot"
    cmp = h.db.compare_positions
    for rid in set(snapped) & set(in_trail):
        position = in_trail[rid]
        assert cmp(position, point.start) > 0 and cmp(position, point.end) <= 0, (rid, point)


CASES = [
    check_commit_only_and_rollback,
    check_interleaved_transactions_in_commit_order,
    check_positions_and_exact_resume,
    check_ddl_is_announced_before_its_rows,
    check_every_column_kind,
    check_caught_up_heartbeat,
    check_snapshot_continuity,
]
