"""Benchmark: binlog -> durable trail, beside mysql-replication's raw iteration rate.

    python bench/capture_mysql/run.py [--rows 300000] [--runs 3] [--profile]

Starts a throwaway MariaDB (binlog ROW, FULL image, FULL metadata), generates an OLTP mix in
10-row transactions (4 inserts, 4 updates, 2 deletes), then measures over that same binlog:

* raw  — mysql-replication's BinLogStreamReader, every row event's values read;
* ours — ``run_capture(..., until_caught_up=True)`` into a fresh trail (fsync per transaction
  commit batch, as in production).

Prints rows/s and binlog MB/s for each run and the medians, as JSON on the last line.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from capture.filters import CaptureFilter  # noqa: E402
from capture.runner import CaptureOptions, run_capture  # noqa: E402
from connectors import devservers  # noqa: E402
from connectors.base import TableFilter  # noqa: E402
from connectors.endpoint import Endpoint  # noqa: E402
from connectors.mysql import MySQL  # noqa: E402
from connectors.mysql.positions import BinlogPosition  # noqa: E402

DDL = """CREATE TABLE bench.orders (
  id BIGINT PRIMARY KEY, customer INT NOT NULL, status VARCHAR(16) NOT NULL,
  total DECIMAL(12,2) NOT NULL, qty SMALLINT, created DATETIME(6) NOT NULL,
  note VARCHAR(200), score DOUBLE
) CHARSET utf8mb4"""


def generate(db: MySQL, rows: int) -> tuple[str, str]:
    conn = db.connect()
    rng = random.Random(1)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE bench")
        cur.execute(DDL)
        start = db.end_position()
        next_id, live = 1, []
        made = 0
        ins = "INSERT INTO bench.orders VALUES (%s, %s, %s, %s, %s, NOW(6), %s, %s)"
        while made < rows:
            cur.execute("BEGIN")
            for _ in range(4):
                cur.execute(
                    ins,
                    (
                        next_id,
                        rng.randint(1, 10_000),
                        "new",
                        rng.randint(100, 99_999) / 100,
                        rng.randint(1, 9),
                        "n" * rng.randint(10, 120),
                        rng.random(),
                    ),
                )
                live.append(next_id)
                next_id += 1
            for _ in range(4):
                cur.execute(
                    "UPDATE bench.orders SET status='paid', total=total+1 WHERE id=%s",
                    (live[rng.randrange(len(live))],),
                )
            for _ in range(2):
                victim = live.pop(rng.randrange(len(live)))
                cur.execute("DELETE FROM bench.orders WHERE id=%s", (victim,))
            cur.execute("COMMIT")
            made += 10
    conn.close()
    return start, db.end_position()


def binlog_bytes(db: MySQL, start: str, end: str) -> int:
    s, e = BinlogPosition.parse(start), BinlogPosition.parse(end)
    total = 0
    for name, size, *_ in db.query("SHOW BINARY LOGS"):
        key = BinlogPosition("", str(name), 0).file_key[1]
        lo, hi = s.file_key[1], e.file_key[1]
        if key < lo or key > hi:
            continue
        first = s.pos if key == lo else 4
        last = e.pos if key == hi else int(size)
        total += last - first
    return total


def _plain_connect(**kwargs: object) -> object:
    import pymysql

    kwargs.setdefault("database", kwargs.pop("db", None))
    kwargs.setdefault("password", kwargs.pop("passwd", ""))
    return pymysql.connect(**kwargs)  # type: ignore[arg-type]


def raw_rate(endpoint: Endpoint, start: str, rows: int) -> tuple[int, float]:
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

    pos = BinlogPosition.parse(start)
    stream = BinLogStreamReader(
        {"host": endpoint.host, "port": endpoint.port, "user": "root", "password": ""},
        server_id=91_001,
        is_mariadb=True,
        auto_position=pos.gtid,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        enable_logging=False,
        pymysql_wrapper=_plain_connect,
        blocking=True,
    )
    t0 = time.perf_counter()
    n = 0
    sink = 0
    for ev in stream:
        for row in ev.rows:
            n += 1
            for image in row.values():
                if isinstance(image, dict):
                    sink += len(image)  # every value was decoded by .rows
        if n >= rows:
            break
    stream.close()
    return n, time.perf_counter() - t0


def our_rate(db: MySQL, start: str, trail: Path) -> tuple[int, float]:
    opts = CaptureOptions(
        source_id="bench",
        filters=CaptureFilter(TableFilter(("bench.*",))),
        until_caught_up=True,
        start_position=start,
        stop_event=threading.Event(),
        reader_options={"server_id": 91_002},
    )
    t0 = time.perf_counter()
    result = run_capture(db, trail, opts)
    return result.changes, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="redoline-bench-"))
    server = devservers.start_mariadb(base / "mariadb")
    try:
        endpoint = Endpoint.parse(server.url)
        db = MySQL(endpoint)
        t0 = time.perf_counter()
        start, end = generate(db, args.rows)
        size = binlog_bytes(db, start, end)
        print(
            f"generated {args.rows} row changes in {time.perf_counter() - t0:.1f}s, "
            f"binlog {size / 1e6:.1f} MB",
            flush=True,
        )
        raws, ours = [], []
        for i in range(args.runs):
            n, secs = raw_rate(endpoint, start, args.rows)
            raws.append((n / secs, size / secs / 1e6))
            trail = base / f"trail{i}"
            m, secs2 = our_rate(db, start, trail)
            ours.append((m / secs2, size / secs2 / 1e6))
            print(
                f"run {i + 1}: raw {n} rows {n / secs:,.0f} rows/s | ours {m} changes "
                f"{m / secs2:,.0f} rows/s {size / secs2 / 1e6:.1f} MB/s",
                flush=True,
            )
            shutil.rmtree(trail)
        raw_med = statistics.median(r for r, _ in raws)
        our_med = statistics.median(r for r, _ in ours)
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            our_rate(db, start, base / "trail-prof")
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(18)
            print(out.getvalue())
        print(
            json.dumps(
                {
                    "rows": args.rows,
                    "binlog_mb": round(size / 1e6, 2),
                    "raw_rows_per_s": round(raw_med),
                    "ours_rows_per_s": round(our_med),
                    "ours_binlog_mb_per_s": round(statistics.median(b for _, b in ours), 2),
                    "ours_vs_raw": round(our_med / raw_med, 3),
                }
            )
        )
    finally:
        devservers.stop(server)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
