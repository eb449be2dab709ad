"""`redoline demo`: replication end to end on throwaway servers, in about a minute.

Starts MariaDB and PostgreSQL in a temporary directory, keeps a workload writing on MariaDB,
snapshots it into DuckDB and PostgreSQL while the writes go on, captures the binlog into a
trail, catches up and streams, then compares source and targets row by row (an independent
comparison, not ``redoline verify``) and prints what happened. Everything is stopped and
removed at the end.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from apply.snapshot import SnapshotOptions, run_snapshot
from apply.sync import apply_with_catchup
from capture.runner import CaptureOptions, run_capture
from connectors import devservers
from connectors.base import TableFilter, open_database
from connectors.endpoint import Endpoint
from toolkit_cli.output import console

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def _workload(conn: Any, stop: threading.Event, counter: list[int], next_id: int) -> None:
    rnd = random.Random(1)
    with conn.cursor() as cur:
        while not stop.is_set():
            cur.execute("BEGIN")
            for _ in range(rnd.randint(1, 3)):
                r = rnd.random()
                if r < 0.5:
                    cur.execute(
                        "INSERT INTO orders (id, customer, amount, status) "
                        "VALUES (%s, %s, %s, 'new')",
                        (next_id, rnd.randint(1, 500), rnd.randint(100, 99999) / 100),
                    )
                    next_id += 1
                elif r < 0.85:
                    cur.execute(
                        "UPDATE orders SET status = 'paid', amount = amount + 1 WHERE id = %s",
                        (rnd.randint(1, next_id),),
                    )
                else:
                    cur.execute("DELETE FROM orders WHERE id = %s", (rnd.randint(1, next_id),))
            cur.execute("COMMIT")
            counter[0] += 1
            time.sleep(0.002)


def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(sql)
    return [tuple(str(v) for v in r) for r in cur.fetchall()]


def demo(
    quick: Annotated[
        bool, typer.Option("--quick", help="A smaller table and a shorter stream (tests).")
    ] = False,
) -> None:
    """Start MariaDB + PostgreSQL, replicate a live workload into DuckDB and PostgreSQL."""
    import pymysql

    started = time.monotonic()
    rows, stream_seconds = (5_000, 3.0) if quick else (200_000, 15.0)
    base = Path(tempfile.mkdtemp(prefix="redoline-demo-"))
    servers: list[devservers.DevServer] = []
    try:
        console.print(f"starting throwaway MariaDB and PostgreSQL in {base} ...")
        maria = devservers.start_mariadb(base / "mariadb")
        servers.append(maria)
        pg = devservers.start_postgres(base / "postgres")
        servers.append(pg)
        conn = pymysql.connect(host="127.0.0.1", port=maria.port, user="root", autocommit=True)
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE shop")
            cur.execute(
                "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, customer INT NOT NULL, "
                "amount DECIMAL(10,2), status VARCHAR(10), created DATETIME(6) NOT NULL "
                "DEFAULT CURRENT_TIMESTAMP(6))"
            )
            cur.execute(
                "INSERT INTO shop.orders (id, customer, amount, status) SELECT seq, seq % 500, "
                f"(seq % 10000) / 100, 'new' FROM shop.seq_1_to_{rows}"
            )
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={pg.port} user=postgres", autocommit=True
        ) as pconn:
            pconn.execute("CREATE DATABASE replica")
        source = open_database(Endpoint.parse(f"mariadb://root@127.0.0.1:{maria.port}/shop"))
        targets = {
            "duckdb": open_database(Endpoint.parse(f"duckdb://{base}/replica.duckdb")),
            "postgresql": open_database(
                Endpoint.parse(f"postgresql://postgres@127.0.0.1:{pg.port}/replica")
            ),
        }
        trail = base / "trail"
        stop_work, stop_all = threading.Event(), threading.Event()
        counter = [0]
        work_conn = pymysql.connect(
            host="127.0.0.1", port=maria.port, user="root", database="shop", autocommit=True
        )
        worker = threading.Thread(
            target=_workload, args=(work_conn, stop_work, counter, rows + 1), daemon=True
        )
        worker.start()
        console.print(f"workload writing on MariaDB; snapshot of {rows} rows under way ...")
        start_position = source.end_position()
        capture_result: dict[str, Any] = {}

        def capture() -> None:
            capture_result["r"] = run_capture(
                source,
                trail,
                CaptureOptions(
                    source_id="shop", start_position=start_position, stop_event=stop_all
                ),
            )

        cap_thread = threading.Thread(target=capture, daemon=True)
        cap_thread.start()
        snaps = {}
        for name, db in targets.items():
            snaps[name] = run_snapshot(
                source,
                db,
                SnapshotOptions(source_id="shop", workers=2, tables=TableFilter(("shop.*",))),
            )
            rep = snaps[name]
            lock = rep.point.lock_seconds * 1000 if rep.point else 0.0
            console.print(
                f"  snapshot into {name}: {rep.rows} rows in {rep.seconds:.1f} s "
                f"({rep.rows_per_second:,.0f} rows/s, lock {lock:.1f} ms)"
            )
        stats: dict[str, Any] = {}
        stop_apply = threading.Event()

        def apply(name: str) -> None:
            stats[name] = apply_with_catchup(
                source,
                targets[name],
                trail,
                source_id="shop",
                target_id=name,
                follow=True,
                stop=stop_apply,
            )

        appliers = [threading.Thread(target=apply, args=(n,), daemon=True) for n in targets]
        for t in appliers:
            t.start()
        console.print(f"streaming changes for {stream_seconds:.0f} s ...")
        time.sleep(stream_seconds)
        stop_work.set()
        worker.join()
        end = source.end_position()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            from capture.trail import trail_info

            info = trail_info(trail)
            if info.last_position and source.compare_positions(info.last_position, end) >= 0:
                break
            time.sleep(0.2)
        time.sleep(1.5)  # appliers tail the trail; let them drain it
        stop_apply.set()
        for t in appliers:
            t.join()
        stop_all.set()
        cap_thread.join()
        info = trail_info(trail)
        source_rows = _rows(
            conn, "SELECT id, customer, amount, status FROM shop.orders ORDER BY id"
        )
        ok = True
        for name, db in targets.items():
            tconn = db.connect()
            got = [
                tuple(str(v) for v in r)
                for r in tconn.execute(
                    "SELECT id, customer, amount, status FROM shop.orders ORDER BY id"
                ).fetchall()
            ]
            tconn.close()
            same = got == source_rows
            ok &= same
            st = stats.get(name)
            lag = info.last_op - getattr(st, "applied_op", 0)
            console.print(
                f"  {name}: applied {getattr(st, 'transactions', 0)} transactions "
                f"({getattr(st, 'changes', 0)} changes, {getattr(st, 'collisions', 0)} "
                f"collisions in the catch-up window); lag {lag} "
                f"operations; rows {len(got)} vs source {len(source_rows)}: "
                + ("[green]identical[/]" if same else "[red]DIFFERENT[/]")
            )
        console.print(
            f"workload committed {counter[0]} transactions during the run; trail holds "
            f"{info.last_op} operations ({info.bytes_on_disk:,} bytes)."
        )
        console.print(
            "consistency check: independent row-by-row comparison of source and targets: "
            + ("[green]OK[/]" if ok else "[red]FAILED[/]")
            + f"  (total {time.monotonic() - started:.0f} s)"
        )
        conn.close()
        work_conn.close()
        if not ok:
            raise typer.Exit(1)
    finally:
        for server in reversed(servers):
            devservers.stop(server)
        shutil.rmtree(base, ignore_errors=True)
