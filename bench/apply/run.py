"""Apply benchmark: our set-based applier beside a naive per-row applier, same trail, same run.

One OLTP mix (60% insert, 30% update, 10% delete, 10-row transactions, a keyed and a keyless
table) is written to a trail, then applied into a throwaway PostgreSQL and MariaDB (fsync on:
``fast=False``, and MariaDB's ``sync_binlog`` set to 1 — its default is 0, which let the naive
applier's commits skip the binlog fsync) and a DuckDB file. The durability settings in force
are printed. Rows/s include reading and decoding the trail. The naive
applier replays the same trail one statement per change and commits per source transaction;
it gets a prefix of the trail (``--naive-changes``) because rows/s is what is compared.

    python bench/apply/run.py --changes 300000 --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from apply.options import ApplyOptions
from apply.trail_apply import apply_trail
from capture.trail import TrailReader, TrailWriter
from connectors import devservers
from connectors.base import Database, open_database
from connectors.endpoint import Endpoint
from connectors.model import Op
from tests.apply.workload import Workload


def write_trail(path: Path, changes: int) -> int:
    wl = Workload(seed=2024)
    with TrailWriter(path, source_id="bench") as writer:
        writer.append(wl.announce())
        while wl.op < changes:
            writer.append(wl.transaction(10))
        writer.flush()
    return wl.op


def ours(db: Database, trail: Path, target_id: str) -> tuple[int, float]:
    writer = db.open_writer()
    try:
        started = time.perf_counter()
        stats = apply_trail(writer, trail, ApplyOptions(target_id=target_id))
        return stats.changes, time.perf_counter() - started
    finally:
        writer.close()


def naive(db: Database, trail: Path, limit: int, schema: str) -> tuple[int, float]:
    """One statement per change, commit per source transaction (what a simple tool does)."""
    from apply.typemap import ensure_table

    writer = db.open_writer()
    reader = TrailReader(trail)
    done = 0
    started = time.perf_counter()
    try:
        for txn in reader.transactions(1):
            for change in txn.changes:
                if change.op is Op.DDL:
                    assert change.table_schema is not None
                    from dataclasses import replace

                    from connectors.model import TableId

                    s = replace(
                        change.table_schema, table=TableId(schema, change.table_schema.table.name)
                    )
                    ensure_table(writer, s)
                    writer.commit()
                    continue
                s = reader.schema(change.table, change.schema_version)
                from dataclasses import replace

                from connectors.model import TableId

                s = replace(s, table=TableId(schema, s.table.name))
                before = change.before if change.before is not None else change.key
                writer.apply_row(s, s.identity, change.op, before, change.after)
                done += 1
            writer.commit()
            if done >= limit:
                break
        return done, time.perf_counter() - started
    finally:
        writer.close()


def durability(server: devservers.DevServer) -> str:
    """Make commits durable the same way on both servers, and say what is in force."""
    if server.engine == "postgresql":
        import psycopg

        dsn = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as c:
            names = ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method")
            shown = [(n, c.execute(f"SHOW {n}").fetchone()) for n in names]
            return ", ".join(f"{n}={row[0] if row else '?'}" for n, row in shown)
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root", autocommit=True)
    with conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL sync_binlog = 1")
        cur.execute(
            "SHOW VARIABLES WHERE Variable_name IN ('innodb_flush_log_at_trx_commit', "
            "'sync_binlog', 'log_bin', 'innodb_doublewrite', 'innodb_flush_method')"
        )
        return ", ".join(f"{n}={v}" for n, v in cur.fetchall())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=300_000)
    ap.add_argument("--naive-changes", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--targets", default="postgres,mariadb,duckdb")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="redoline-bench-apply-"))
    trail = base / "trail"
    n = write_trail(trail, args.changes)
    print(f"trail: {n} changes in {trail}")
    servers = []
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for name in args.targets.split(","):
            if name == "postgres":
                server = devservers.start_postgres(base / "pg", fast=False)
                servers.append(server)
            elif name == "mariadb":
                server = devservers.start_mariadb(base / "maria", fast=False)
                servers.append(server)
            if name in ("postgres", "mariadb"):
                print(f"{name}: {durability(server)}", flush=True)
            for run in range(args.runs):
                if name == "duckdb":
                    url = f"duckdb://{base / f'ours{run}.duckdb'}"
                    naive_url = f"duckdb://{base / f'naive{run}.duckdb'}"
                elif name == "postgres":
                    import psycopg

                    with psycopg.connect(
                        f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres",
                        autocommit=True,
                    ) as c:
                        c.execute(f"CREATE DATABASE ours{run}")
                        c.execute(f"CREATE DATABASE naive{run}")
                    url = f"postgresql://postgres@127.0.0.1:{server.port}/ours{run}"
                    naive_url = f"postgresql://postgres@127.0.0.1:{server.port}/naive{run}"
                else:
                    url = f"mariadb://root@127.0.0.1:{server.port}/"
                    naive_url = url
                db = open_database(Endpoint.parse(url))
                changes, secs = ours(db, trail, f"ours{run}")
                ndb = open_database(Endpoint.parse(naive_url))
                nchanges, nsecs = naive(
                    ndb, trail, args.naive_changes, f"naive{run}" if name != "duckdb" else "nv"
                )
                r = results.setdefault(name, {"ours": [], "naive": []})
                r["ours"].append(changes / secs)
                r["naive"].append(nchanges / nsecs)
                print(
                    f"{name} run {run + 1}: ours {changes} changes in {secs:.1f}s = "
                    f"{changes / secs:,.0f}/s; naive {nchanges} in {nsecs:.1f}s = "
                    f"{nchanges / nsecs:,.0f}/s",
                    flush=True,
                )
                if name == "mariadb":
                    w = db.open_writer()
                    w.execute("DROP DATABASE IF EXISTS shop")
                    w.execute(f"DROP DATABASE IF EXISTS naive{run}")
                    w.close()
    finally:
        for server in servers:
            devservers.stop(server)
    print(f"\nmedians of {args.runs} runs (ratio: of the medians; per run: ours/naive of that run)")
    print("| target | naive rows/s | ours rows/s | speed-up | per-run ratios |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        o, nv = statistics.median(r["ours"]), statistics.median(r["naive"])
        per_run = ", ".join(f"{a / b:.1f}x" for a, b in zip(r["ours"], r["naive"], strict=True))
        print(f"| {name} | {nv:,.0f} | {o:,.0f} | {o / nv:.1f}x | {per_run} |")


if __name__ == "__main__":
    main()
