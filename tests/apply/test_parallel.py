"""``--parallel 2``: FK-linked tables share a group, and the result equals a serial apply."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from apply.options import ApplyOptions
from apply.parallel import TableGroups, apply_parallel
from apply.trail_apply import apply_trail
from capture.trail import TrailWriter
from connectors.base import open_database
from connectors.endpoint import Endpoint
from connectors.model import Change, Column, Op, TableId, TableSchema, Transaction
from tests.apply.test_applier import content
from tests.apply.workload import KEYED, KEYLESS, Workload

PARENT = TableSchema(
    TableId("shop", "parent"),
    (Column("id", "int", nullable=False, bits=32), Column("name", "str")),
    primary_key=("id",),
)
CHILD = TableSchema(
    TableId("shop", "child"),
    (
        Column("id", "int", nullable=False, bits=32),
        Column("parent_id", "int", nullable=False, bits=32),
    ),
    primary_key=("id",),
)
FK_DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.parent (id integer PRIMARY KEY, name text);
CREATE TABLE {s}.child (id integer PRIMARY KEY,
  parent_id integer NOT NULL REFERENCES {s}.parent (id));
"""


def _trail(path: Path) -> Workload:
    """The random keyed/keyless workload interleaved with parent/child transactions in which a
    child only ever exists while its parent does (any reordering across them breaks the FK)."""
    wl = Workload(seed=11)
    rng = random.Random(11)
    live: dict[int, list[int]] = {}
    next_id = 1
    with TrailWriter(path, source_id="src") as tw:
        ann = wl.announce()
        ann.changes += [Change(Op.DDL, s.table, 1, table_schema=s) for s in (PARENT, CHILD)]
        wl.op += 2
        tw.append(ann)
        for _ in range(150):
            tw.append(wl.transaction(6))
            changes: list[Change] = []
            if live and rng.random() < 0.3:
                pid = rng.choice(sorted(live))
                for cid in live.pop(pid):
                    changes.append(
                        Change(Op.DELETE, CHILD.table, key={"id": cid}, before={"id": cid})
                    )
                changes.append(Change(Op.DELETE, PARENT.table, key={"id": pid}, before={"id": pid}))
            else:
                pid = next_id
                kids = list(range(next_id + 1, next_id + 1 + rng.randint(0, 3)))
                next_id += 1 + len(kids)
                live[pid] = kids
                changes.append(
                    Change(Op.INSERT, PARENT.table, after={"id": pid, "name": f"p{pid}"})
                )
                changes += [
                    Change(Op.INSERT, CHILD.table, after={"id": c, "parent_id": pid}) for c in kids
                ]
            txn = Transaction(
                f"fk{wl.op}", f"0/{wl.op:08X}", dt.datetime(2024, 1, 1), "src", changes, wl.op + 1
            )
            wl.op += len(changes)
            tw.append(txn)
        tw.flush()
    return wl


def test_parallel_keeps_fk_groups_and_equals_serial(pg_db: Endpoint, tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(
        host=pg_db.host, port=pg_db.port, user="postgres", dbname=pg_db.database, autocommit=True
    ) as conn:
        for schema in ("px", "ser"):
            conn.execute(FK_DDL.format(s=schema))
    trail = tmp_path / "trail"
    wl = _trail(trail)
    db = open_database(pg_db)

    def opts(schema: str, target_id: str) -> ApplyOptions:
        return ApplyOptions(
            target_id=target_id,
            rename=lambda t: TableId(schema, t.name),
            batch_rows=40,
            batch_ms=10**6,
        )

    results = apply_parallel(db, trail, opts("px", "px"), 2)
    assert len(results) == 2 and all(r.applied_op == wl.op for r in results)
    writer = db.open_writer()
    try:
        groups = TableGroups(2, writer.foreign_key_pairs())  # type: ignore[attr-defined]
        assert groups.group(TableId("px", "parent")) == groups.group(TableId("px", "child"))
        spread = {groups.group(TableId("px", t)) for t in ("orders", "events", "parent")}
        assert len(spread) == 2, "the test should exercise two groups"
        serial = apply_trail(writer, trail, opts("ser", "ser"))
        assert serial.applied_op == wl.op
        for name in ("orders", "events", "parent", "child"):
            par = content(writer, TableId("px", name))
            assert par == content(writer, TableId("ser", name)), name
        assert content(writer, TableId("px", KEYED.table.name)) == sorted(
            wl.expected_keyed(), key=repr
        )
        assert content(writer, TableId("px", KEYLESS.table.name)) == wl.expected_keyless()
        rows = writer.query(
            "SELECT target_id, applied_op FROM redoline.redoline_checkpoint ORDER BY 1"
        )
        writer.commit()
    finally:
        writer.close()
    assert rows == [("px#0/2", wl.op), ("px#1/2", wl.op), ("ser", wl.op)]
