"""`redoline demo`: replication end to end on throwaway servers, in well under two minutes.

Starts MariaDB and PostgreSQL in a temporary directory, keeps a workload writing on MariaDB,
snapshots it into DuckDB and PostgreSQL while the writes go on, captures the binlog into a
trail, catches up and streams, then checks every target with ``redoline verify``'s engine
(:func:`verify.run_verify`: chunk checksums computed on both sides) and, as a second opinion,
an independent row-by-row comparison, and prints what happened. Everything is stopped and
removed at the end.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from apply.options import ApplyOptions
from apply.snapshot import SnapshotOptions, run_snapshot
from apply.trail_apply import apply_trail
from capture.runner import CaptureOptions, run_capture
from capture.trail import trail_info
from connectors import devservers
from connectors.base import TableFilter, open_database
from connectors.endpoint import Endpoint
from connectors.model import TableId
from toolkit_cli.output import console
from verify import TablePair, VerifyOptions, run_verify
from verify.catchup import wait_for_apply

__all__ = ["register"]

#: default size: a table big enough for the snapshot to be parallel and chunked, a stream long
#: enough to see catch-up, and the whole run well under two minutes on a 2-core machine
ROWS, STREAM_SECONDS = 200_000, 10.0
QUICK_ROWS, QUICK_STREAM_SECONDS = 5_000, 3.0


def _say(text: str) -> None:
    # one line per fact, never wrapped at the console width (piped output is 80 columns)
    console.print(text, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def _workload(
    conn: Any, stop: threading.Event, counter: list[int], next_id: int, unchanged: list[int]
) -> None:
    """Random orders traffic; ``unchanged`` counts transactions that changed no row (an update
    or delete of an id that is gone): they leave no row event in the binlog, so no trail entry."""
    rnd = random.Random(1)
    with conn.cursor() as cur:
        while not stop.is_set():
            cur.execute("BEGIN")
            changed = 0
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
                changed += max(0, cur.rowcount)
            cur.execute("COMMIT")
            counter[0] += 1
            if not changed:
                unchanged[0] += 1
            time.sleep(0.002)


def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(sql)
    return [tuple(str(v) for v in r) for r in cur.fetchall()]


def _compare_rows(conn: Any, db: Any) -> tuple[bool, int]:
    """The independent second opinion: every row of source and target, as text."""
    sql = "SELECT id, customer, amount, status, created FROM shop.orders ORDER BY id"
    want = _rows(conn, sql)
    writer = db.open_writer()  # its session reads times in UTC, on every engine
    try:
        got = [tuple(str(v) for v in r) for r in writer.query(sql)]
    finally:
        writer.close()
    return got == want, len(got)


def _differences(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "differs"


@dataclass
class _Demo:
    """What the demo's steps share."""

    base: Path
    rows: int
    stream_seconds: float
    started: float = field(default_factory=time.monotonic)
    servers: list[devservers.DevServer] = field(default_factory=list)
    conn: Any = None
    source: Any = None
    targets: dict[str, Any] = field(default_factory=dict)


def demo(
    quick: Annotated[
        bool, typer.Option("--quick", help="A smaller table and a shorter stream (tests).")
    ] = False,
) -> None:
    """Start MariaDB + PostgreSQL, replicate a live workload into DuckDB and PostgreSQL."""
    rows, stream_seconds = (QUICK_ROWS, QUICK_STREAM_SECONDS) if quick else (ROWS, STREAM_SECONDS)
    run = _Demo(Path(tempfile.mkdtemp(prefix="redoline-demo-")), rows, stream_seconds)
    # the numbered report goes to stdout; the stages' progress lines would interleave with it
    # on a terminal: only warnings unless -v asked for more
    root = logging.getLogger()
    saved_level = root.level
    if root.level > logging.DEBUG:
        root.setLevel(logging.WARNING)
    try:
        _servers(run)
        lag_ok = _replicate(run)
        ok = _consistency(run, lag_ok)
        _say(
            "[bold]result[/]: "
            + ("[green]OK[/]" if ok else "[red]FAILED[/]")
            + f"; total {time.monotonic() - run.started:.1f} s"
        )
        run.conn.close()
        if not ok:
            raise typer.Exit(1)
    finally:
        root.setLevel(saved_level)
        for server in reversed(run.servers):
            devservers.stop(server)
        shutil.rmtree(run.base, ignore_errors=True)


def _servers(run: _Demo) -> None:
    """Step 1: the two servers, the source table, the target databases."""
    import psycopg
    import pymysql

    _say(f"[bold]1. servers[/]: throwaway MariaDB and PostgreSQL in {run.base}")
    maria = devservers.start_mariadb(run.base / "mariadb")
    run.servers.append(maria)
    pg = devservers.start_postgres(run.base / "postgres")
    run.servers.append(pg)
    run.conn = pymysql.connect(host="127.0.0.1", port=maria.port, user="root", autocommit=True)
    with run.conn.cursor() as cur:
        cur.execute("CREATE DATABASE shop")
        cur.execute(
            "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, customer INT NOT NULL, "
            "amount DECIMAL(10,2), status VARCHAR(10), created DATETIME(6) NOT NULL "
            "DEFAULT CURRENT_TIMESTAMP(6))"
        )
        cur.execute(
            "INSERT INTO shop.orders (id, customer, amount, status) SELECT seq, seq % 500, "
            f"(seq % 10000) / 100, 'new' FROM shop.seq_1_to_{run.rows}"
        )
    with psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres", autocommit=True) as pconn:
        pconn.execute("CREATE DATABASE replica")
    _say(
        f"   ready after {time.monotonic() - run.started:.1f} s; shop.orders has {run.rows:,} rows"
    )
    run.source = open_database(Endpoint.parse(f"mariadb://root@127.0.0.1:{maria.port}/shop"))
    run.targets = {
        "duckdb": open_database(Endpoint.parse(f"duckdb://{run.base}/replica.duckdb")),
        "postgresql": open_database(
            Endpoint.parse(f"postgresql://postgres@127.0.0.1:{pg.port}/replica")
        ),
    }


def _replicate(run: _Demo) -> dict[str, bool]:
    """Steps 2 and 3: snapshot while a workload writes, then catch up and stream; whether
    each target ended with no lag."""
    import pymysql

    source, targets, trail = run.source, run.targets, run.base / "trail"
    stop_work, stop_all, stop_apply = threading.Event(), threading.Event(), threading.Event()
    counter, unchanged = [0], [0]
    work_conn = pymysql.connect(
        host="127.0.0.1", port=run.servers[0].port, user="root", database="shop", autocommit=True
    )
    # capture starts at the log's end *before* the workload and the snapshots: every
    # workload transaction is after it, so the figures reported add up exactly
    options = CaptureOptions(
        source_id="shop", start_position=source.end_position(), stop_event=stop_all
    )
    worker = threading.Thread(
        target=_workload,
        args=(work_conn, stop_work, counter, run.rows + 1, unchanged),
        daemon=True,
    )
    worker.start()
    capture_result: dict[str, Any] = {}
    cap_thread = threading.Thread(
        target=lambda: capture_result.update(r=run_capture(source, trail, options)), daemon=True
    )
    cap_thread.start()
    _snapshots(source, targets)
    stats: dict[str, Any] = {}

    def apply(name: str) -> None:
        writer = targets[name].open_writer()
        try:
            stats[name] = apply_trail(
                writer,
                trail,
                ApplyOptions(source_id="shop", target_id=name),
                follow=True,
                stop=stop_apply.is_set,
            )
        finally:
            writer.close()

    appliers = [threading.Thread(target=apply, args=(n,), daemon=True) for n in targets]
    for t in appliers:
        t.start()
    _say(
        f"[bold]3. catch-up and streaming[/] for {run.stream_seconds:.0f} s "
        "(capture -> trail -> apply into both targets)"
    )
    time.sleep(run.stream_seconds)
    stop_work.set()
    worker.join()
    work_conn.close()
    caught = _wait_caught_up(source, targets, trail)
    stop_apply.set()
    for t in appliers:
        t.join()
    stop_all.set()
    cap_thread.join()
    return _report_streaming(
        trail, counter[0], unchanged[0], capture_result.get("r"), stats, caught
    )


def _snapshots(source: Any, targets: dict[str, Any]) -> None:
    _say("[bold]2. snapshot[/] while the workload writes (no global lock on MariaDB)")
    for name, db in targets.items():
        rep = run_snapshot(
            source,
            db,
            SnapshotOptions(source_id="shop", workers=2, tables=TableFilter(("shop.*",))),
        )
        lock = rep.point.lock_seconds * 1000 if rep.point else 0.0
        tables = ", ".join(f"{t.target_table} {t.rows:,} rows" for t in rep.tables)
        _say(
            f"   into {name}: {tables} in {rep.seconds:.1f} s "
            f"({rep.rows_per_second:,.0f} rows/s, lock {lock:.1f} ms, "
            f"{rep.point.method if rep.point else ''})"
        )


def _wait_caught_up(source: Any, targets: dict[str, Any], trail: Path) -> dict[str, float | None]:
    """Seconds after the workload stopped until each target had applied everything (None:
    not seen)."""
    stopped = time.monotonic()
    end = source.end_position()
    deadline = stopped + 60
    while time.monotonic() < deadline:
        info = trail_info(trail)
        if info.last_position and source.compare_positions(info.last_position, end) >= 0:
            break
        time.sleep(0.1)
    info = trail_info(trail)
    caught: dict[str, float | None] = {}
    for name, db in targets.items():
        # the target's checkpoint says when apply got there (DuckDB's cannot be read
        # while its applier holds the file: then a short drain, and the lag below)
        ok_wait = info.last_position is not None and wait_for_apply(
            source, db, info.last_position, 0.1
        )
        caught[name] = time.monotonic() - stopped if ok_wait else None
    if None in caught.values():
        time.sleep(1.5)
    return caught


def _report_streaming(
    trail: Path,
    committed: int,
    unchanged: int,
    cap: Any,
    stats: dict[str, Any],
    caught: dict[str, float | None],
) -> dict[str, bool]:
    info = trail_info(trail)
    captured = getattr(cap, "transactions", 0)
    trail_changes = getattr(cap, "changes", 0)
    _say(
        f"   workload committed {committed:,} transactions; {unchanged:,} of them changed no "
        "row (an update or delete of a missing id leaves nothing in the binlog); capture wrote "
        f"the other {captured:,} ({trail_changes:,} row changes, {info.bytes_on_disk:,} bytes "
        "of trail)"
    )
    lag_ok: dict[str, bool] = {}
    for name, when in caught.items():
        st = stats.get(name)
        lag = info.last_op - getattr(st, "applied_op", 0)
        lag_ok[name] = lag == 0
        applied = getattr(st, "changes", 0)
        _say(
            f"   {name}: applied {applied:,} of the trail's {trail_changes:,} changes (the "
            f"other {trail_changes - applied:,} were already in its snapshot, taken while the "
            f"workload ran; {getattr(st, 'collisions', 0)} reconciled in the snapshot's "
            f"catch-up window); lag {lag} operations"
            + (f", caught up {when:.1f} s after the workload stopped" if when else "")
        )
    return lag_ok


def _consistency(run: _Demo, lag_ok: dict[str, bool]) -> bool:
    """Step 4: verify's engine, then row by row; True when every target is identical."""
    _say("[bold]4. consistency[/] (redoline verify's engine, then row by row)")
    pair = TablePair(source=TableId("shop", "orders"), target=TableId("shop", "orders"))
    ok = True
    for name, db in run.targets.items():
        # everything is quiet now: one pass is the answer, no re-check wait needed
        result = run_verify(run.source, db, [pair], VerifyOptions(recheck=False))
        for tr in result.tables:
            _say(
                f"   verify {name}: {tr.source_table} {tr.source_rows:,} rows vs "
                f"{tr.target_rows:,} in {tr.chunks} chunks: "
                + (
                    "[green]equal[/]"
                    if tr.equal
                    else f"[red]{tr.error or _differences(tr.counts)}[/]"
                )
            )
        same, count = _compare_rows(run.conn, db)
        _say(
            f"   row by row {name}: {count:,} rows "
            + ("[green]identical[/]" if same else "[red]DIFFERENT[/]")
        )
        ok &= result.equal and same and not any(result.totals.values()) and lag_ok[name]
    return ok
