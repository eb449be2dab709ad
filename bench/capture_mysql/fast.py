"""Benchmark: the fast row decoder beside the library and the transport floor, same binlog.

    python bench/capture_mysql/fast.py [--rows 300000] [--runs 3] [--profile]

Starts a throwaway MariaDB (binlog ROW, FULL image, FULL metadata), writes the OLTP mix of
``run.py`` (10-row transactions: 4 inserts, 4 updates, 2 deletes) once, then in each run reads
that same binlog seven ways:

* floor   — raw COM_BINLOG_DUMP packets through pymysql, nothing decoded (the transport);
* floor_packets — the same through the fast path's PacketReader (the transport as we read it);
* library — mysql-replication's BinLogStreamReader with every row value read (``.rows``);
* reader/library, reader/fast — ``BinlogReader.events()`` alone (no trail) per decoder;
* e2e/library, e2e/fast — ``run_capture(..., until_caught_up=True)`` into a fresh trail
  (binlog -> durable trail, fsync per commit batch, as in production).

Prints each run (rows/s and this process' CPU per row) and the medians; the last line is JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.capture_mysql.run import binlog_bytes, generate, raw_rate  # noqa: E402
from capture.filters import CaptureFilter  # noqa: E402
from capture.runner import CaptureOptions, run_capture  # noqa: E402
from connectors import devservers  # noqa: E402
from connectors.base import TableFilter  # noqa: E402
from connectors.endpoint import Endpoint  # noqa: E402
from connectors.log import RowEvent  # noqa: E402
from connectors.mysql import MySQL  # noqa: E402
from connectors.mysql.packets import PacketReader, stream_connect  # noqa: E402
from connectors.mysql.positions import BinlogPosition  # noqa: E402


def floor_rate(
    endpoint: Endpoint, start: str, end: str, rows: int, ours: bool = False
) -> tuple[int, float]:
    """Raw dump packets until the end position; only the header's next-position is read
    (``ours``: through the fast path's PacketReader instead of pymysql's ``_read_packet``)."""
    from pymysqlreplication import BinLogStreamReader

    pos, stop = BinlogPosition.parse(start), BinlogPosition.parse(end)
    stream = BinLogStreamReader(
        {"host": endpoint.host, "port": endpoint.port, "user": "root", "password": ""},
        server_id=91_101,
        is_mariadb=True,
        auto_position=pos.gtid,
        blocking=True,
        enable_logging=False,
        pymysql_wrapper=stream_connect,
    )
    t0 = time.perf_counter()
    stream.fetchone()  # connects and starts the dump (the first, fake ROTATE event)
    conn = stream._stream_connection
    read = PacketReader(conn).read if ours else lambda: conn._read_packet()._data
    last_file = stop.file
    seen_file = str(stream.log_file)  # the first event was the dump's ROTATE
    while True:
        data = read()
        if data[5] == 4:  # ROTATE: the file name follows the 8-byte position (then a CRC)
            seen_file = last_file if data[28:].startswith(last_file.encode()) else "?"
        if seen_file == last_file and int.from_bytes(data[14:18], "little") >= stop.pos:
            break
    secs = time.perf_counter() - t0
    stream.close()
    return rows, secs


def reader_rate(db: MySQL, start: str, decoder: str) -> tuple[int, float]:
    reader = db.open_log(
        start,
        tables=TableFilter(("bench.*",)),
        until_caught_up=True,
        options={"decoder": decoder, "server_id": 91_102},
    )
    t0 = time.perf_counter()
    n = sum(1 for ev in reader.events() if isinstance(ev, RowEvent))
    secs = time.perf_counter() - t0
    reader.close()
    return n - 1, secs  # minus the table definition announced first


def e2e_rate(db: MySQL, start: str, trail: Path, decoder: str) -> tuple[int, float]:
    opts = CaptureOptions(
        source_id="bench",
        filters=CaptureFilter(TableFilter(("bench.*",))),
        until_caught_up=True,
        start_position=start,
        stop_event=threading.Event(),
        reader_options={"server_id": 91_103, "decoder": decoder},
    )
    t0 = time.perf_counter()
    result = run_capture(db, trail, opts)
    secs = time.perf_counter() - t0
    shutil.rmtree(trail)
    return result.changes - 1, secs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="profile one fast end-to-end run")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="redoline-bench-fast-"))
    server = devservers.start_mariadb(base / "mariadb")
    try:
        endpoint = Endpoint.parse(server.url)
        db = MySQL(endpoint)
        start, end = generate(db, args.rows)
        size = binlog_bytes(db, start, end)
        print(f"{args.rows} row changes, binlog {size / 1e6:.1f} MB", flush=True)
        paths: dict[str, Callable[[int], tuple[int, float]]] = {
            "floor": lambda i: floor_rate(endpoint, start, end, args.rows),
            "floor_packets": lambda i: floor_rate(endpoint, start, end, args.rows, ours=True),
            "library": lambda i: raw_rate(endpoint, start, args.rows),
            "reader_library": lambda i: reader_rate(db, start, "library"),
            "reader_fast": lambda i: reader_rate(db, start, "fast"),
            "e2e_library": lambda i: e2e_rate(db, start, base / f"t{i}", "library"),
            "e2e_fast": lambda i: e2e_rate(db, start, base / f"t{i}", "fast"),
        }
        rates: dict[str, list[float]] = {k: [] for k in paths}
        # client CPU per row (this process, every thread): steadier than wall clock on a
        # shared machine, where the wall figures move with whatever else runs
        cpu: dict[str, list[float]] = {k: [] for k in paths}
        for i in range(args.runs):
            parts = []
            for name, fn in paths.items():
                c0 = time.process_time()
                n, secs = fn(i)
                used = time.process_time() - c0
                if n != args.rows:
                    raise SystemExit(f"{name} saw {n} rows, not {args.rows}")
                rates[name].append(n / secs)
                cpu[name].append(used / n * 1e6)
                parts.append(f"{name} {n / secs:,.0f} ({used / n * 1e6:.2f} us CPU)")
            print(f"run {i + 1} rows/s: " + " | ".join(parts), flush=True)
        med = {k: round(statistics.median(v)) for k, v in rates.items()}
        cpu_med = {k: round(statistics.median(v), 2) for k, v in cpu.items()}
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            e2e_rate(db, start, base / "tprof", "fast")
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(20)
            print(out.getvalue())
        med["binlog_mb"] = round(size / 1e6, 1)  # type: ignore[assignment]
        med["fast_vs_library_e2e"] = round(med["e2e_fast"] / med["e2e_library"], 2)  # type: ignore[assignment]
        summary = {"rows": args.rows, "runs": args.runs, "median_rows_per_s": med}
        summary["median_cpu_us_per_row"] = cpu_med
        print(json.dumps(summary))
    finally:
        devservers.stop(server)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
