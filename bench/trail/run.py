"""Trail throughput on a realistic OLTP change mix, beside a naive JSON-lines baseline.

Mix: 60% insert, 30% update (full before and after image), 10% delete; 10 changes per
transaction; 8 columns of mixed types (int, str, Decimal, datetime, bool, None). The writer
fsyncs after every ``--flush-every`` transactions, as capture does.

    python -m bench.trail.run [--txns 30000] [--repeat 3] [--key]
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from capture.trail import TrailReader, TrailWriter, trail_info
from connectors.model import Change, Op, TableId, Transaction

__all__ = ["main", "make_workload"]

STATUSES = ("new", "paid", "shipped", "delivered", "cancelled")


def _row(rng: random.Random, row_id: int, base: dt.datetime) -> dict[str, object]:
    return {
        "id": row_id,
        "customer_id": rng.randrange(1, 50_000),
        "status": rng.choice(STATUSES),
        "amount": decimal.Decimal(rng.randrange(100, 10_000_000)) / 100,
        "quantity": rng.randrange(1, 20),
        "created_at": base + dt.timedelta(microseconds=rng.randrange(10**12)),
        "note": None if rng.random() < 0.5 else f"gift wrap, ring bell {rng.randrange(1000)}",
        "paid": rng.random() < 0.7,
    }


def make_workload(txns: int, seed: int = 7) -> list[Transaction]:
    """``txns`` transactions of 10 changes each, 60/30/10 insert/update/delete."""
    rng = random.Random(seed)
    tables = [TableId("shop", "orders"), TableId("shop", "order_items"), TableId("crm", "events")]
    base = dt.datetime(2025, 1, 1, 8, 0, 0)
    commit = dt.datetime(2025, 6, 1, 10, 0, 0, tzinfo=dt.UTC)
    next_id = 1
    live: list[dict[str, object]] = []
    out = []
    for t in range(txns):
        changes = []
        for _ in range(10):
            table = rng.choice(tables)
            roll = rng.random()
            if roll < 0.6 or len(live) < 100:
                row = _row(rng, next_id, base)
                next_id += 1
                live.append(row)
                changes.append(Change(Op.INSERT, table, 1, {"id": row["id"]}, None, row))
            elif roll < 0.9:
                before = live[rng.randrange(len(live))]
                after = dict(before)
                after["status"] = rng.choice(STATUSES)
                after["quantity"] = rng.randrange(1, 20)
                changes.append(Change(Op.UPDATE, table, 1, {"id": before["id"]}, before, after))
            else:
                row = live.pop(rng.randrange(len(live)))
                changes.append(Change(Op.DELETE, table, 1, {"id": row["id"]}, row, None))
        out.append(
            Transaction(
                str(1000 + t),
                f"mysql-bin.000001:{4 + t * 977}",
                commit + dt.timedelta(milliseconds=t),
                "bench",
                changes,
            )
        )
    return out


def _bench_trail(
    work: list[Transaction], directory: Path, flush_every: int, key: bytes | None
) -> dict[str, float]:
    rows = sum(len(t.changes) for t in work)
    for txn in work:
        txn.first_op = 0
    start = time.perf_counter()
    with TrailWriter(directory, source_id="bench", key=key) as writer:
        for i, txn in enumerate(work, 1):
            writer.append(txn)
            if i % flush_every == 0:
                writer.flush()
    write_s = time.perf_counter() - start
    info = trail_info(directory, key=key)
    start = time.perf_counter()
    count = 0
    for txn in TrailReader(directory, key=key).transactions():
        count += len(txn.changes)
    read_s = time.perf_counter() - start
    assert count == rows, (count, rows)
    return {
        "rows": rows,
        "write_rows_s": rows / write_s,
        "read_rows_s": rows / read_s,
        "write_mb_s": info.raw_bytes / write_s / 1e6,
        "read_mb_s": info.raw_bytes / read_s / 1e6,
        "disk_mb": info.bytes_on_disk / 1e6,
        "raw_mb": info.raw_bytes / 1e6,
        "ratio": info.raw_bytes / info.bytes_on_disk,
    }


def _json_default(value: object) -> object:
    return str(value)


def _bench_json(work: list[Transaction], path: Path, flush_every: int) -> dict[str, float]:
    rows = sum(len(t.changes) for t in work)
    start = time.perf_counter()
    with open(path, "w", encoding="utf-8") as f:
        for i, txn in enumerate(work, 1):
            for c in txn.changes:
                f.write(
                    json.dumps(
                        [txn.xid, txn.position, c.op, str(c.table), c.key, c.before, c.after],
                        default=_json_default,
                    )
                )
                f.write("\n")
            if i % flush_every == 0:
                f.flush()
                os.fsync(f.fileno())
        f.flush()
        os.fsync(f.fileno())
    write_s = time.perf_counter() - start
    size = path.stat().st_size
    start = time.perf_counter()
    count = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            json.loads(line)
            count += 1
    read_s = time.perf_counter() - start
    return {
        "rows": rows,
        "write_rows_s": rows / write_s,
        "read_rows_s": rows / read_s,
        "write_mb_s": size / write_s / 1e6,
        "read_mb_s": size / read_s / 1e6,
        "disk_mb": size / 1e6,
        "raw_mb": size / 1e6,
        "ratio": 1.0,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txns", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--flush-every", type=int, default=1000)
    parser.add_argument("--key", action="store_true", help="encrypt (AES-256-GCM)")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory")
    args = parser.parse_args(argv)
    work = make_workload(args.txns)
    key = os.urandom(32) if args.key else None
    results: dict[str, list[dict[str, float]]] = {"trail": [], "json lines": []}
    for _ in range(args.repeat):
        scratch = Path(tempfile.mkdtemp(prefix="trail-bench-", dir=args.dir))
        try:
            results["trail"].append(_bench_trail(work, scratch / "trail", args.flush_every, key))
            results["json lines"].append(
                _bench_json(work, scratch / "naive.jsonl", args.flush_every)
            )
        finally:
            shutil.rmtree(scratch)
    rows = results["trail"][0]["rows"]
    print(
        f"{rows:,} rows ({args.txns:,} txns x 10; 60/30/10 insert/update/delete; 8 columns), "
        f"fsync every {args.flush_every} txns, median of {args.repeat}"
        + (", encrypted" if key else "")
    )
    header = ("", "write rows/s", "read rows/s", "write MB/s", "read MB/s", "disk MB", "ratio")
    print("{:<11}{:>14}{:>14}{:>12}{:>11}{:>10}{:>8}".format(*header))
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"{name:<11}{med['write_rows_s']:>14,.0f}{med['read_rows_s']:>14,.0f}"
            f"{med['write_mb_s']:>12.1f}{med['read_mb_s']:>11.1f}{med['disk_mb']:>10.1f}"
            f"{med['ratio']:>8.2f}"
        )
    print("(MB/s of uncompressed record bytes for the trail, of file bytes for json lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
