"""The rowid map (DESIGN.md: Row identity) on every target, with synthetic row-id trails.

None of our capture connectors has row ids yet (Oracle ROWID, SQL Server locator), so the
trails here are made by hand. The check is stronger than comparing multisets: through the map
each source row id must lead to the target row holding exactly that row's image, so an update
of one of several identical rows must have hit the row the source meant.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import pytest

from apply.applier import Applier
from apply.options import ApplyOptions
from apply.rowid import MAP_TABLE, ROW_KEY
from apply.trail_apply import apply_trail
from capture.trail import TrailWriter
from connectors.base import Writer
from connectors.errors import ApplyError
from connectors.model import Change, Column, Op, TableId, TableSchema, Transaction

HEAP = TableSchema(
    TableId("ora", "heap"),
    (
        Column("kind", "str", "VARCHAR2(10)", nullable=False, length=10),
        Column("qty", "int", "NUMBER(9)", bits=32),
    ),
)


class RowidWorkload:
    """Random inserts/updates/deletes/truncates on a keyless table, tracked per row id."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rows: dict[str, dict[str, Any]] = {}
        self.next_rowid = 1
        self.op = 0
        self.txns = 0

    def txn(self, changes: list[Change]) -> Transaction:
        self.txns += 1
        t = Transaction(
            str(self.txns),
            f"scn:{self.txns}",
            dt.datetime(2024, 1, 1) + dt.timedelta(seconds=self.txns),
            "ora",
            changes,
            self.op + 1,
        )
        self.op += len(changes)
        return t

    def announce(self) -> Transaction:
        return self.txn([Change(Op.DDL, HEAP.table, 1, table_schema=HEAP)])

    def _image(self) -> dict[str, Any]:
        # two kinds, two quantities: identical rows are the rule, not the exception
        return {"kind": self.rng.choice("ab"), "qty": self.rng.choice([1, None])}

    def random_txn(self, size: int = 6, truncate: float = 0.0) -> Transaction:
        r = self.rng
        if r.random() < truncate:
            self.rows.clear()
            return self.txn([Change(Op.TRUNCATE, HEAP.table, 1)])
        changes = []
        for _ in range(size):
            roll = r.random()
            if roll < 0.5 or not self.rows:
                rid = f"AAAR{self.next_rowid:06d}"
                self.next_rowid += 1
                self.rows[rid] = self._image()
                changes.append(Change(Op.INSERT, HEAP.table, after=self.rows[rid], row_id=rid))
            elif roll < 0.8:
                rid = r.choice(sorted(self.rows))
                before, after = self.rows[rid], self._image()
                self.rows[rid] = after
                changes.append(
                    Change(Op.UPDATE, HEAP.table, before=before, after=after, row_id=rid)
                )
            else:
                rid = r.choice(sorted(self.rows))
                before = self.rows.pop(rid)
                changes.append(Change(Op.DELETE, HEAP.table, before=before, row_id=rid))
        return self.txn(changes)


def by_rowid(writer: Writer, table: TableId, target_id: str) -> dict[str, tuple[Any, ...]]:
    """Row id -> the image of the target row the map leads to."""
    q = writer.database.quote
    rows = writer.query(
        f"SELECT m.row_id, t.{q('kind')}, t.{q('qty')} FROM {writer.database.qualified(MAP_TABLE)}"
        f" m JOIN {writer.database.qualified(table)} t ON t.{q(ROW_KEY)} = m.target_key "
        f"WHERE m.target_id = '{target_id}' AND m.source_table = 'ora.heap'"
    )
    count = writer.query(f"SELECT COUNT(*) FROM {writer.database.qualified(table)}")[0][0]
    writer.commit()
    out = {str(r[0]): (r[1], r[2]) for r in rows}
    assert count == len(out), "target rows without a mapping (or mappings without a row)"
    return out


def expected(wl: RowidWorkload) -> dict[str, tuple[Any, ...]]:
    return {rid: (row["kind"], row["qty"]) for rid, row in wl.rows.items()}


@pytest.mark.parametrize("batch_rows", [1, 10_000])
def test_rowid_map_identifies_identical_rows(
    writer: Writer, batch_rows: int, options: dict[str, Any], schema_name: str
) -> None:
    wl = RowidWorkload(seed=batch_rows)
    txns = [wl.announce()] + [wl.random_txn(truncate=0.03) for _ in range(120)]
    opts = ApplyOptions(batch_rows=batch_rows, batch_ms=10**6, row_ids=True, **options)
    applier = Applier(writer, None, opts)
    applier.start()
    stats = applier.run(txns)
    assert stats.replayed_groups == 0 and stats.applied_op == wl.op
    table = TableId(schema_name, "heap")
    assert by_rowid(writer, table, options["target_id"]) == expected(wl)
    # the surrogate key is the target table's primary key: a keyed merge, not an image join
    assert applier.target_schema(HEAP.table, 1).primary_key == (ROW_KEY,)


def test_rowid_map_survives_restart_and_replay(
    writer: Writer, options: dict[str, Any], schema_name: str
) -> None:
    wl = RowidWorkload(seed=3)
    txns = [wl.announce()] + [wl.random_txn() for _ in range(40)]
    first = Applier(writer, None, ApplyOptions(batch_rows=25, row_ids=True, **options))
    first.start()
    first.run(txns[:20])
    # a delete of a row id nobody inserted makes the set-based write fail inside a group:
    # the group is replayed row by row and the map must come back exactly as committed
    bogus = wl.txn([Change(Op.DELETE, HEAP.table, before={"kind": "a", "qty": 1}, row_id="nope")])
    second = Applier(writer, None, ApplyOptions(batch_rows=10**6, row_ids=True, **options))
    assert second.start() == txns[19].last_op
    with pytest.raises(ApplyError, match="not in the rowid map"):
        second.run([*txns, bogus])
    # everything before the bogus transaction was applied once, and the map agrees with it
    third = Applier(writer, None, ApplyOptions(batch_rows=7, row_ids=True, **options))
    assert third.start() == txns[-1].last_op
    assert by_rowid(writer, TableId(schema_name, "heap"), options["target_id"]) == expected(wl)


def test_rowid_collision_mode(writer: Writer, options: dict[str, Any], schema_name: str) -> None:
    wl = RowidWorkload(seed=4)
    row = {"kind": "a", "qty": 1}
    txns = [
        wl.announce(),
        wl.txn([Change(Op.UPDATE, HEAP.table, before=row, after=row, row_id="R1")]),
        wl.txn([Change(Op.DELETE, HEAP.table, before=row, row_id="R2")]),
        wl.txn([Change(Op.INSERT, HEAP.table, after={"kind": "b", "qty": 2}, row_id="R1")]),
    ]
    applier = Applier(
        writer, None, ApplyOptions(batch_rows=1, collision=True, row_ids=True, **options)
    )
    applier.start()
    stats = applier.run(txns)
    # update of an unknown row id: inserted; delete of one: ignored; insert of a known one:
    # becomes an update of that row
    assert stats.collisions == 3
    got = by_rowid(writer, TableId(schema_name, "heap"), options["target_id"])
    assert got == {"R1": ("b", 2)}


def test_rowid_through_a_trail_and_drop(
    writer: Writer, options: dict[str, Any], schema_name: str, tmp_path: Path
) -> None:
    wl = RowidWorkload(seed=5)
    trail = tmp_path / "trail"
    with TrailWriter(trail, source_id="ora") as tw:
        tw.append(wl.announce())
        for _ in range(30):
            tw.append(wl.random_txn())
        tw.flush()
    # a bare writer does not know the source: say its dialect (the DROP below is translated)
    opts = ApplyOptions(row_ids=True, source_dialect="oracle", **options)
    stats = apply_trail(writer, trail, opts)
    assert stats.applied_op == wl.op
    table = TableId(schema_name, "heap")
    mapped = by_rowid(writer, table, options["target_id"])
    assert mapped == expected(wl) and mapped
    # DROP TABLE: the mappings go with the table
    with TrailWriter(trail, source_id="ora") as tw:
        tw.append(wl.txn([Change(Op.DDL, HEAP.table, 1, ddl="DROP TABLE ora.heap")]))
        tw.flush()
    apply_trail(writer, trail, opts)
    left = writer.query(
        f"SELECT COUNT(*) FROM {writer.database.qualified(MAP_TABLE)} "
        f"WHERE target_id = '{options['target_id']}'"
    )
    writer.commit()
    assert left == [(0,)]
    assert not writer.table_exists(table)
