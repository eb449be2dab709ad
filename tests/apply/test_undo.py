"""Replay to a point and undo, on every target, against a random workload's recorded states.

The workload (tests/apply/workload.py: a keyed table with key changes, a keyless one full of
identical rows) is written to a real trail; its expected content is recorded at random
moments. For each moment: a target replayed to it (by operation, commit time, transaction id)
equals the recorded state, and a fully applied copy undone back to it equals it too. The
target is read back with a plain SELECT and compared with the workload's own bookkeeping.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from apply.options import ApplyOptions
from apply.point import PointError, PointOutcome, StopPoint, parse_time
from apply.trail_apply import apply_trail
from apply.undo import UndoConflict, UndoSelection, execute_undo, plan_undo, render_undo
from capture.trail import TrailWriter
from connectors.base import Writer, open_database
from connectors.errors import SchemaError
from connectors.model import Change, Column, Op, TableId, TableSchema
from tests.apply.test_applier import content
from tests.apply.workload import KEYED, KEYLESS, Workload

Moment = tuple[int, dt.datetime, str, list[tuple[Any, ...]], list[tuple[Any, ...]]]


def _workload(tmp_path: Path, seed: int = 3) -> tuple[Path, Workload, list[Moment]]:
    wl = Workload(seed=seed)
    txns = [wl.announce()]
    moments: list[Moment] = []
    marks = set(random.Random(seed).sample(range(5, 115), 3))
    for i in range(120):
        txns.append(wl.transaction(size=8))
        if i in marks:
            t = txns[-1]
            state = (copy.copy(wl.keyed), Counter(wl.keyless))
            moments.append((t.last_op, t.commit_time, t.xid, *_expected(*state)))
    trail = tmp_path / "trail"
    with TrailWriter(trail, source_id="src") as tw:
        for t in txns:
            tw.append(t)
    return trail, wl, moments


def _expected(
    keyed: dict[int, dict[str, Any]], keyless: Counter[tuple[Any, ...]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    rows = sorted((tuple(r.values()) for r in keyed.values()), key=repr)
    images = sorted((img for img, n in keyless.items() for _ in range(n)), key=repr)
    return rows, images


def _names(schema_name: str, suffix: str) -> Any:
    return lambda t: TableId(schema_name, f"{t.name}{suffix}")


def _state(writer: Writer, schema_name: str, suffix: str) -> tuple[list[Any], list[Any]]:
    return (
        content(writer, TableId(schema_name, KEYED.table.name + suffix)),
        content(writer, TableId(schema_name, KEYLESS.table.name + suffix)),
    )


def test_replay_to_each_moment_then_refuse_going_back(
    writer: Writer, tmp_path: Path, options: dict[str, Any], schema_name: str
) -> None:
    trail, _wl, moments = _workload(tmp_path)
    opts = ApplyOptions(rename=_names(schema_name, ""), target_id=options["target_id"])
    points = [
        StopPoint(op=moments[0][0]),
        StopPoint(time=moments[1][1]),
        StopPoint(xid=moments[2][2]),
    ]
    for (op, _t, _x, keyed, keyless), point in zip(moments, points, strict=True):
        outcome = PointOutcome()
        stats = apply_trail(writer, trail, opts, until=point, outcome=outcome)
        assert outcome.reached and stats.applied_op == op, point
        assert _state(writer, schema_name, "") == (keyed, keyless), point
    # replay only goes forward: the first moment is behind the target now
    with pytest.raises(PointError, match=f"earliest point it can be brought to is operation {op}"):
        apply_trail(writer, trail, opts, until=StopPoint(op=moments[0][0]))
    # an operation inside a transaction: stops before it, says so
    outcome = PointOutcome()
    stats = apply_trail(writer, trail, opts, until=StopPoint(op=op + 3), outcome=outcome)
    assert outcome.straddled is not None and stats.applied_op == op
    assert not outcome.reached


def test_undo_back_to_each_moment(
    writer: Writer, tmp_path: Path, options: dict[str, Any], schema_name: str
) -> None:
    trail, _wl, moments = _workload(tmp_path, seed=5)
    for k, (op, commit, _xid, keyed, keyless) in enumerate(moments):
        suffix = f"_{k}"
        rename = _names(schema_name, suffix)
        opts = ApplyOptions(rename=rename, target_id=f"{options['target_id']}{k}")
        apply_trail(writer, trail, opts)
        sel = UndoSelection(to_op=op) if k != 1 else UndoSelection(to_time=commit)
        plan = plan_undo(trail, sel)
        assert plan.first_op == op + 1
        if k == 2:
            # the printed script, run statement by statement, does the same
            _run_script(writer, render_undo(plan, writer.database, rename=rename))
        else:
            result = execute_undo(plan, writer, rename=rename)
            assert result.overridden == 0
        assert _state(writer, schema_name, suffix) == (keyed, keyless), sel


def _run_script(writer: Writer, script: str) -> None:
    assert script.rstrip().endswith("COMMIT;")
    for chunk in script.split(";\n"):
        stmt = "\n".join(x for x in chunk.splitlines() if not x.startswith("--")).strip()
        if stmt and stmt not in ("BEGIN", "COMMIT"):
            writer.execute(stmt)
    writer.commit()


def test_undo_conflict_changes_nothing_force_reports(
    writer: Writer, tmp_path: Path, options: dict[str, Any], schema_name: str
) -> None:
    trail, wl, moments = _workload(tmp_path, seed=9)
    rename = _names(schema_name, "")
    apply_trail(writer, trail, ApplyOptions(rename=rename, target_id=options["target_id"]))
    before = _state(writer, schema_name, "")
    # a row the undone range leaves in place is changed behind the trail's back
    some_id = max(wl.keyed)
    t = writer.database.qualified(rename(KEYED.table))
    writer.execute(f"UPDATE {t} SET note = 'changed since' WHERE id = {some_id}")
    writer.commit()
    changed = _state(writer, schema_name, "")
    assert changed != before
    plan = plan_undo(trail, UndoSelection(to_op=moments[0][0]))
    with pytest.raises(
        UndoConflict, match=rf"(?s)1 row\(s\) .*nothing was changed.*\(id={some_id}\): changed"
    ):
        execute_undo(plan, writer, rename=rename)
    assert _state(writer, schema_name, "") == changed
    result = execute_undo(plan, writer, rename=rename, force=True)
    assert result.overridden == 1 and f"id={some_id}" in result.conflicts[0]
    assert _state(writer, schema_name, "") == moments[0][3:]


def test_ddl_and_missing_before_images_are_refused(tmp_path: Path) -> None:
    """Needs no database: the plan refuses before anything runs."""
    wl = Workload(seed=2)
    txns = [wl.announce(), wl.transaction(), wl.transaction()]
    alter = "ALTER TABLE shop.orders ADD COLUMN extra int"
    txns.append(wl._txn([Change(Op.DDL, KEYED.table, 1, ddl=alter, table_schema=KEYED)]))
    txns.append(wl.transaction())
    trail = tmp_path / "trail"
    with TrailWriter(trail, source_id="src") as tw:
        for t in txns:
            tw.append(t)
    with pytest.raises(SchemaError, match=f"operation {txns[3].first_op} .*DDL.*{alter}"):
        plan_undo(trail, UndoSelection(to_op=txns[1].last_op))
    # after the DDL: fine
    plan = plan_undo(trail, UndoSelection(to_op=txns[3].last_op))
    assert plan.changes == len(txns[4].changes)
    with pytest.raises(PointError, match="not found in the retained trail"):
        plan_undo(trail, UndoSelection(xids=("nope",)))
    partial = tmp_path / "partial"
    upd = Change(Op.UPDATE, KEYED.table, key={"id": 1}, before={"id": 1}, after={"id": 1})
    fresh = Workload(seed=2)
    with TrailWriter(partial, source_id="src") as tw:
        tw.append(fresh.announce())
        tw.append(fresh._txn([upd]))
    with pytest.raises(SchemaError, match="no full before image"):
        plan_undo(partial, UndoSelection(to_op=2))


def test_parse_time() -> None:
    now = dt.datetime(2026, 12, 2, 14, 2, tzinfo=dt.UTC)
    assert parse_time("-15m", now=now) == dt.datetime(2026, 12, 2, 13, 47, tzinfo=dt.UTC)
    assert parse_time("2026-12-02T14:01:00+01:00") == dt.datetime(2026, 12, 2, 13, 1, tzinfo=dt.UTC)
    assert parse_time("2026-12-02 14:01") == dt.datetime(2026, 12, 2, 14, 1, tzinfo=dt.UTC)


PARENT = TableSchema(
    TableId("shop", "parent"),
    (Column("id", "int", "integer", nullable=False, bits=32), Column("name", "str", "text")),
    primary_key=("id",),
)
CHILD = TableSchema(
    TableId("shop", "child"),
    (
        Column("id", "int", "integer", nullable=False, bits=32),
        Column("parent_id", "int", "integer", bits=32),
    ),
    primary_key=("id",),
)


@pytest.mark.parametrize("server", ["pg_db", "mysql_db"])
def test_undo_puts_parents_back_before_children(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A transaction deleted children then their parents: undo re-inserts parents first (and
    the filter on --tables is counted)."""
    db = open_database(request.getfixturevalue(server))
    schema = db.endpoint.database if db.engine == "mysql" else "shop"
    rename = _names(schema, "")
    writer = db.open_writer()
    try:
        writer.create_schema(schema)
        p, c = (
            writer.database.qualified(rename(PARENT.table)),
            writer.database.qualified(rename(CHILD.table)),
        )
        writer.execute(f"CREATE TABLE {p} (id integer PRIMARY KEY, name varchar(20))")
        writer.execute(
            f"CREATE TABLE {c} (id integer PRIMARY KEY, parent_id integer REFERENCES {p} (id))"
        )
        writer.commit()
        wl = Workload(seed=1)
        rows_p = [{"id": i, "name": f"p{i}"} for i in range(1, 4)]
        rows_c = [{"id": i, "parent_id": 1 + i % 3} for i in range(1, 7)]
        txns = [
            wl._txn([Change(Op.DDL, s.table, 1, table_schema=s) for s in (PARENT, CHILD)]),
            wl._txn(
                [Change(Op.INSERT, PARENT.table, after=r) for r in rows_p]
                + [Change(Op.INSERT, CHILD.table, after=r) for r in rows_c]
            ),
            wl._txn(
                [Change(Op.DELETE, CHILD.table, before=r) for r in rows_c]
                + [Change(Op.DELETE, PARENT.table, before=r) for r in rows_p]
            ),
        ]
        trail = tmp_path / "trail"
        with TrailWriter(trail, source_id="src") as tw:
            for t in txns:
                tw.append(t)
        apply_trail(writer, trail, ApplyOptions(rename=rename, target_id="fk"))
        assert writer.query(f"SELECT count(*) FROM {p}")[0][0] == 0
        writer.commit()
        plan = plan_undo(trail, UndoSelection(xids=(txns[2].xid,)))
        script = render_undo(plan, db, rename=rename, writer=writer)
        back = "rows to put back"
        assert script.index(f"{rename(PARENT.table)}: {back}") < script.index(
            f"{rename(CHILD.table)}: {back}"
        )
        result = execute_undo(plan, writer, rename=rename)
        assert result.inserted == 9
        assert sorted(writer.query(f"SELECT id, parent_id FROM {c}")) == [
            (r["id"], r["parent_id"]) for r in rows_c
        ]
        writer.commit()
        only = plan_undo(trail, UndoSelection(xids=(txns[2].xid,), tables=("shop.child",)))
        assert only.filtered_out == 3 and list(only.tables) == [CHILD.table]
    finally:
        writer.close()
