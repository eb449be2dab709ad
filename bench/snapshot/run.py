"""Snapshot throughput: redoline vs mysqldump|mariadb, pgloader and a plain Python read+COPY.

    python -m bench.snapshot.run [--rows 1000000] [--runs 3] [--workers 2]

Starts its own MariaDB and PostgreSQL (connectors.devservers), generates ``bench.items``
(mixed types, ~143 bytes a row) and loads it with each tool in the same run; prints rows/s
medians and the global lock time of redoline's snapshot.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pymysql

from apply.snapshot import SnapshotOptions, run_snapshot
from bench.snapshot import data
from connectors import devservers
from connectors.base import TableFilter, open_database
from connectors.endpoint import Endpoint


def _fresh_pg(port: int, name: str) -> str:
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:{port}/{name}"


def redoline(maria: Any, pg: Any, base: Path, target: str, workers: int) -> tuple[float, float]:
    src = open_database(Endpoint.parse(f"mariadb://root@127.0.0.1:{maria.port}/bench"))
    if target == "postgresql":
        url = _fresh_pg(pg.port, "r")
    else:
        path = base / "r.duckdb"
        path.unlink(missing_ok=True)
        url = f"duckdb://{path}"
    t = time.monotonic()
    rep = run_snapshot(
        src,
        open_database(Endpoint.parse(url)),
        SnapshotOptions(source_id="b", workers=workers, tables=TableFilter(("bench.*",))),
    )
    return time.monotonic() - t, rep.point.lock_seconds if rep.point else 0.0


def mysqldump(maria: Any) -> float:
    sock = os.path.join(maria.socket_dir, "mysqld.sock")
    subprocess.run(
        [
            "mariadb",
            "-S",
            sock,
            "-uroot",
            "-e",
            "DROP DATABASE IF EXISTS copy; CREATE DATABASE copy",
        ],
        check=True,
    )
    t = time.monotonic()
    subprocess.run(
        f"mysqldump -S {sock} -uroot --single-transaction bench items "
        f"| mariadb -S {sock} -uroot copy",
        shell=True,
        check=True,
    )
    return time.monotonic() - t


def pgloader(maria: Any, pg: Any) -> float | None:
    if not shutil.which("pgloader"):
        return None
    url = _fresh_pg(pg.port, "pgl")
    t = time.monotonic()
    res = subprocess.run(
        [
            "pgloader",
            f"mysql://root@127.0.0.1:{maria.port}/bench",
            url.replace("postgresql", "pgsql"),
        ],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        print("pgloader failed:", res.stdout[-500:], res.stderr[-500:])
        return None
    return time.monotonic() - t


def python_copy(maria: Any, pg: Any) -> float:
    """A plain single-stream baseline: pymysql unbuffered read, psycopg COPY write_row."""
    url = _fresh_pg(pg.port, "py")
    src = open_database(Endpoint.parse(f"mariadb://root@127.0.0.1:{maria.port}/bench"))
    from apply.typemap import create_table_sql
    from connectors.model import TableId

    schema = src.table_schema(TableId("bench", "items"))
    t = time.monotonic()
    with psycopg.connect(url.replace("postgresql://", "postgresql://", 1)) as pconn:
        pconn.execute("CREATE SCHEMA bench")
        pconn.execute(create_table_sql(schema, "postgres"))
        conn = pymysql.connect(
            host="127.0.0.1", port=maria.port, user="root", cursorclass=pymysql.cursors.SSCursor
        )
        with conn.cursor() as cur, pconn.cursor().copy("COPY bench.items FROM STDIN") as copy:
            cur.execute("SELECT * FROM bench.items")
            for row in cur:
                copy.write_row(row)
        conn.close()
    return time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="redoline-bench-"))
    maria = devservers.start_mariadb(base / "m")
    pg = devservers.start_postgres(base / "p")
    try:
        conn = pymysql.connect(host="127.0.0.1", port=maria.port, user="root")
        data.create(conn, "bench", args.rows)
        results: dict[str, list[float]] = {}
        locks: list[float] = []
        for _ in range(args.runs):
            for target in ("postgresql", "duckdb"):
                secs, lock = redoline(maria, pg, base, target, args.workers)
                results.setdefault(f"redoline MariaDB->{target}", []).append(secs)
                locks.append(lock)
            results.setdefault("mysqldump | mariadb", []).append(mysqldump(maria))
            pgl = pgloader(maria, pg)
            if pgl is not None:
                results.setdefault("pgloader MariaDB->PostgreSQL", []).append(pgl)
            results.setdefault("python read + COPY (single stream)", []).append(
                python_copy(maria, pg)
            )
        print(f"{args.rows} rows, {args.runs} runs, medians (workers={args.workers}):")
        for name, times in results.items():
            med = statistics.median(times)
            print(f"  {name:40s} {args.rows / med:>10,.0f} rows/s  ({med:.2f} s)")
        print(f"  global lock held by redoline snapshots: max {max(locks) * 1000:.1f} ms")
    finally:
        devservers.stop(pg)
        devservers.stop(maria)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
