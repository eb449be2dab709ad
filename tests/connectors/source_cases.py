"""Checks every source must pass, the counterpart of ``writer_cases.py``.

Each case drives the source with its own driver (a :class:`Harness` per engine: how to open a
session and write a statement), captures through the engine-neutral capture loop
(:func:`capture.runner.run_capture`, as ``redoline capture`` does) and judges the trail with
the trail reader: what the test committed is the oracle, nothing of the capture path is.
``test_source_conformance.py`` runs every case against every source.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capture.filters import CaptureFilter
from capture.runner import CaptureOptions, run_capture
from capture.trail import TrailReader
from connectors.base import Database, TableFilter, open_database
from connectors.endpoint import Endpoint
from connectors.model import Op, TableId, Transaction

__all__ = [
    "CASES",
    "Harness",
    "check_commit_only_and_rollback",
    "check_ddl_is_announced_before_its_rows",
    "check_interleaved_transactions_in_commit_order",
    "check_positions_and_exact_resume",
]


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


def capture(h: Harness, trail: Path) -> list[Transaction]:
    """Capture until caught up (the first run fixes the trail's start); the whole trail."""
    options = CaptureOptions(
        source_id="src",
        filters=CaptureFilter(TableFilter((f"{h.schema}.*",))),
        until_caught_up=True,
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


CASES = [
    check_commit_only_and_rollback,
    check_interleaved_transactions_in_commit_order,
    check_positions_and_exact_resume,
    check_ddl_is_announced_before_its_rows,
]
