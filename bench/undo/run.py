"""Undo benchmark: `redoline undo`'s set-based path beside reversing one statement at a time.

A random OLTP trail (tests/apply/workload.py: 60% insert, 30% update, 10% delete, a keyed and
a keyless table with duplicate rows) is applied into two schemas of a throwaway MariaDB and
PostgreSQL (``fast=False``: fsync on, as bench/apply). Then, in the same run:

- ours: :func:`apply.undo.plan_undo` + :func:`apply.undo.execute_undo` of the whole range
  (reading the trail, the conflict check and the writes all counted), one transaction;
- one by one: the same range reversed newest first, one statement per change through the
  writer's ``apply_row`` (no conflict check), one transaction: what executing binlog2sql's
  output gets you (``--naive-changes N``: only the newest N, to save time).

Each round loads two fresh schemas and times both; ``--repeat`` rounds, medians reported, in
reversed changes per second.

    python bench/undo/run.py --changes 200000 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from apply.options import ApplyOptions
from apply.trail_apply import apply_trail
from apply.undo import UndoSelection, execute_undo, plan_undo
from capture.trail import TrailReader, TrailWriter
from connectors import devservers
from connectors.base import Database, open_database
from connectors.endpoint import Endpoint
from connectors.model import Op, TableId
from tests.apply.workload import Workload


def write_trail(path: Path, changes: int) -> tuple[int, int]:
    """The trail; returns (operation of the announcement's end, last operation)."""
    wl = Workload(seed=2024)
    with TrailWriter(path, source_id="bench") as writer:
        writer.append(wl.announce())
        announced = wl.op
        while wl.op < changes + announced:
            writer.append(wl.transaction(10))
        writer.flush()
    return announced, wl.op


def load(db: Database, trail: Path, schema: str) -> None:
    writer = db.open_writer()
    try:
        apply_trail(
            writer,
            trail,
            ApplyOptions(target_id=schema, rename=lambda t: TableId(schema, t.name)),
        )
    finally:
        writer.close()


def ours(db: Database, trail: Path, schema: str, after_op: int) -> tuple[int, float]:
    writer = db.open_writer()
    try:
        started = time.perf_counter()
        plan = plan_undo(trail, UndoSelection(to_op=after_op))
        execute_undo(plan, writer, rename=lambda t: TableId(schema, t.name))
        return plan.changes, time.perf_counter() - started
    finally:
        writer.close()


def one_by_one(db: Database, trail: Path, schema: str, limit: int) -> tuple[int, float]:
    """The reverse statements of the newest ``limit`` changes, newest first, one each."""
    reader = TrailReader(trail)
    changes = [
        (reader.schema(c.table, c.schema_version), c)
        for txn in reader.transactions(1)
        for c in txn.changes
        if c.op is not Op.DDL
    ][-limit:]
    writer = db.open_writer()
    try:
        started = time.perf_counter()
        for s, c in reversed(changes):
            s = replace(s, table=TableId(schema, s.table.name))
            if c.op is Op.INSERT:
                writer.apply_row(s, s.identity, Op.DELETE, c.after, None)
            elif c.op is Op.DELETE:
                writer.apply_row(s, s.identity, Op.INSERT, None, c.before)
            else:
                writer.apply_row(s, s.identity, Op.UPDATE, c.after, c.before)
        writer.commit()
        return len(changes), time.perf_counter() - started
    finally:
        writer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=200_000)
    ap.add_argument(
        "--naive-changes",
        type=int,
        default=0,
        help="reverse only the newest N one by one (default 0: the whole range, as ours)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="rounds per engine (medians)")
    ap.add_argument("--targets", default="mariadb,postgres")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="redoline-bench-undo-"))
    trail = base / "trail"
    announced, last = write_trail(trail, args.changes)
    print(f"trail: {last - announced} changes in {trail}")
    rows = []
    for name in args.targets.split(","):
        if name == "postgres":
            server = devservers.start_postgres(base / "pg", fast=False)
            url = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        else:
            server = devservers.start_mariadb(base / "maria", fast=False)
            url = f"mariadb://root@127.0.0.1:{server.port}/"
        try:
            db = open_database(Endpoint.parse(url))
            naive_rates, our_rates = [], []
            for r in range(args.repeat):
                load(db, trail, f"ours{r}")
                load(db, trail, f"naive{r}")
                n, secs = ours(db, trail, f"ours{r}", announced)
                m, msecs = one_by_one(db, trail, f"naive{r}", args.naive_changes or n)
                print(
                    f"{name} round {r + 1}: ours {n} changes in {secs:.1f}s = {n / secs:,.0f}/s; "
                    f"one by one {m} in {msecs:.1f}s = {m / msecs:,.0f}/s",
                    flush=True,
                )
                naive_rates.append(m / msecs)
                our_rates.append(n / secs)
            rows.append((name, statistics.median(naive_rates), statistics.median(our_rates)))
        finally:
            devservers.stop(server)
    print(f"\nmedians of {args.repeat} round(s), {last - announced} changes undone")
    print("\n| target | one by one changes/s | ours changes/s | speed-up |")
    print("| --- | --- | --- | --- |")
    for name, naive_rate, our_rate in rows:
        print(f"| {name} | {naive_rate:,.0f} | {our_rate:,.0f} | {our_rate / naive_rate:.1f}x |")


if __name__ == "__main__":
    main()
