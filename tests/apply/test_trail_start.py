"""A trail's start point, identity and the one apply path, driven as users run them.

Every test runs the CLI in subprocesses against real MariaDB/PostgreSQL servers and judges
the target with plain driver SELECTs (no code shared with ``verify``):

* cron-mode ``sync --until-caught-up`` with writes between an idle first run and the second;
* ``kill -9`` of a continuous ``sync`` before its first transaction, repeatedly, with writes;
* ``kill -9`` of ``sync`` during the snapshot while a workload updates the table, then rerun;
* the README's stage-by-stage ``capture`` then ``apply`` with no ids configured;
* ``apply`` alone after ``snapshot`` honours the catch-up windows;
* one retention consumer name per target; a new trail against an old checkpoint refused.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest

from capture.trail import consumers, register_consumer, trail_info
from connectors.endpoint import Endpoint

pytestmark = [pytest.mark.mariadb]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from toolkit_cli.app import main; main()", *args]


def _env(tmp_path: Path) -> dict[str, str]:
    # no configuration file from the machine or the working directory
    (tmp_path / "none.toml").write_text("")
    env = {**os.environ, "REDOLINE_CONFIG": str(tmp_path / "none.toml"), "NO_COLOR": "1"}
    return {**env, "COLUMNS": "250"}  # one line per message, for the assertions


def _run(tmp_path: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cmd(*args),
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _my(ep: Endpoint) -> Any:
    return pymysql.connect(
        host=ep.host, port=ep.port, user="root", database=ep.database, autocommit=True
    )


def _my_rows(ep: Endpoint, table: str = "t") -> list[tuple[Any, ...]]:
    conn = _my(ep)
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, v FROM `{table}` ORDER BY id")
        rows = [(int(a), str(b)) for a, b in cur.fetchall()]
    conn.close()
    return rows


def _duck_rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute(f"SELECT id, v FROM {table} ORDER BY id").fetchall()
    return [(int(a), str(b)) for a, b in rows]


def _seed(ep: Endpoint, n: int, table: str = "t") -> None:
    conn = _my(ep)
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{table}` (id INT PRIMARY KEY, v VARCHAR(40))")
        for lo in range(0, n, 5000):
            cur.executemany(
                f"INSERT INTO `{table}` VALUES (%s, %s)",
                [(i, f"v{i}") for i in range(lo, min(n, lo + 5000))],
            )
    conn.close()


def _writes(ep: Endpoint, start: int, n: int, tag: str) -> None:
    """Inserts ``start..start+n``, and an update and a delete of older rows."""
    conn = _my(ep)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO t VALUES (%s, %s)", [(i, tag) for i in range(start, start + n)]
        )
        cur.execute("UPDATE t SET v = %s WHERE id < 10", (tag + "!",))
        cur.execute("DELETE FROM t WHERE id >= 10 ORDER BY id LIMIT 1")
    conn.close()


def _args(ep: Endpoint, tmp_path: Path, target: str | None = None) -> list[str]:
    return [
        "--source",
        ep.url(),
        "--target",
        target or f"duckdb://{tmp_path}/r.duckdb",
        "--trail",
        str(tmp_path / "trail"),
    ]


# --------------------------------------------------------------------------- item 1


def test_cron_sync_keeps_what_an_idle_first_run_did_not_see(
    mysql_db: Endpoint, tmp_path: Path
) -> None:
    """Run 1 snapshots an idle source and leaves an empty trail; the source then takes
    writes; run 2 must capture and apply every one of them (it used to take the source's
    end position again and lose them, exiting 0)."""
    _seed(mysql_db, 300)
    args = [*_args(mysql_db, tmp_path), "--tables", f"{mysql_db.database}.*"]
    res = _run(tmp_path, "sync", *args, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "300 rows" in res.stdout
    _writes(mysql_db, 1000, 50, "second")
    res = _run(tmp_path, "sync", *args, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "captured 3 transactions" in res.stdout, res.stdout
    table = f'"{mysql_db.database}".t'
    assert _duck_rows(tmp_path / "r.duckdb", table) == _my_rows(mysql_db)
    # idle again, then a third run: nothing twice
    _writes(mysql_db, 2000, 5, "third")
    res = _run(tmp_path, "sync", *args, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    assert _duck_rows(tmp_path / "r.duckdb", table) == _my_rows(mysql_db)
    # the start point the first run fixed, durably, before its snapshot
    assert json.loads((tmp_path / "trail" / "trail-start.json").read_text())["start_position"]


def test_kill_9_of_sync_before_its_first_transaction(mysql_db: Endpoint, tmp_path: Path) -> None:
    """A continuous sync killed early, again and again, while the source takes writes (a
    workload thread, and a batch before each start): nothing may be lost."""
    _seed(mysql_db, 200)
    args = [*_args(mysql_db, tmp_path), "--tables", f"{mysql_db.database}.*"]
    res = _run(tmp_path, "sync", *args, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    stop = threading.Event()

    def workload() -> None:
        conn = _my(mysql_db)
        n = 100_000
        with conn.cursor() as cur:
            while not stop.is_set():
                n += 1
                cur.execute("INSERT INTO t VALUES (%s, 'w')", (n,))
                time.sleep(0.02)
        conn.close()

    rng = random.Random(11)
    kills = 0
    for i in range(6):
        _writes(mysql_db, 10_000 * (i + 1), 20, f"batch{i}")
        worker = threading.Thread(target=workload) if i == 3 else None
        if worker is not None:
            worker.start()
        proc = subprocess.Popen(
            _cmd("sync", *args),
            env=_env(tmp_path),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    stop.set()
    res = _run(tmp_path, "sync", *args, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    assert kills == 6
    want = _my_rows(mysql_db)
    assert _duck_rows(tmp_path / "r.duckdb", f'"{mysql_db.database}".t') == want


def test_kill_9_of_sync_during_the_snapshot(
    mysql_db: Endpoint, pg_db: Endpoint, tmp_path: Path
) -> None:
    """Chunks loaded before the kill hold the first snapshot's values; the rerun's catch-up
    must bring them forward from that point (rows kept their old values before)."""
    _seed(mysql_db, 40_000)
    target = pg_db.url()
    args = [
        *_args(mysql_db, tmp_path, target),
        "--tables",
        f"{mysql_db.database}.t",
        "--workers",
        "1",
        "--chunk-rows",
        "1000",
    ]
    stop = threading.Event()
    updates = [0]

    def workload() -> None:
        conn = _my(mysql_db)
        rng = random.Random(5)
        with conn.cursor() as cur:
            while not stop.is_set():
                lo = rng.randrange(0, 40_000, 100)
                cur.execute(
                    "UPDATE t SET v = CONCAT('u', id, '-', %s) WHERE id BETWEEN %s AND %s",
                    (updates[0], lo, lo + 20),
                )
                updates[0] += 1
                time.sleep(0.005)
        conn.close()

    worker = threading.Thread(target=workload)
    worker.start()
    dsn = f"host={pg_db.host} port={pg_db.port} user=postgres dbname={pg_db.database}"
    try:
        proc = subprocess.Popen(
            _cmd("sync", *args, "--until-caught-up"),
            env=_env(tmp_path),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        done = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    row = conn.execute(
                        "SELECT count(*) FILTER (WHERE done = 1), count(*) "
                        "FROM redoline.snapshot_chunks"
                    ).fetchone()
                    done, total = (int(row[0]), int(row[1])) if row else (0, 0)
            except psycopg.Error:
                done, total = 0, 0
            if total and 5 <= done < total - 5:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the snapshot finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert done >= 5
        time.sleep(1.0)  # the workload goes on between the runs
        res = _run(tmp_path, "sync", *args, "--until-caught-up", timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        stop.set()
        worker.join()
    assert updates[0] > 50
    res = _run(tmp_path, "sync", *args, "--until-caught-up", timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    with psycopg.connect(dsn, autocommit=True) as conn:
        got = conn.execute(f'SELECT id, v FROM "{mysql_db.database}".t ORDER BY id').fetchall()
    want = _my_rows(mysql_db)
    stale = [w for w, g in zip(want, got, strict=False) if w != g]
    assert len(got) == len(want) and not stale, f"{len(stale)} rows differ, e.g. {stale[:3]}"


# --------------------------------------------------------------------------- item 2, 4, 13(d)


def test_readme_capture_then_apply_with_no_ids(mysql_db: Endpoint, tmp_path: Path) -> None:
    """Both ids are "default": a loop guard on by default skipped every transaction and
    created nothing, exit 0. Off by default; when configured and it skips everything, loud."""
    conn = _my(mysql_db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40))")
    conn.close()
    src = ["--source", mysql_db.url(), "--trail", str(tmp_path / "trail")]
    tgt = ["--target", f"duckdb://{tmp_path}/r.duckdb", "--trail", str(tmp_path / "trail")]
    res = _run(tmp_path, "capture", *src, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    _writes(mysql_db, 1, 30, "a")
    res = _run(tmp_path, "capture", *src, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "capture caught up: 3 transactions" in res.stdout, res.stdout
    res = _run(tmp_path, "apply", *tgt, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 transactions" in res.stdout and "0 skipped by origin" in res.stdout, res.stdout
    assert _duck_rows(tmp_path / "r.duckdb", f'"{mysql_db.database}".t') == _my_rows(mysql_db)
    # one consumer name for the target, whatever applied to it
    last_op = trail_info(tmp_path / "trail").last_op
    assert consumers(tmp_path / "trail") == {"target.default": last_op}

    # a loop guard that drops every transaction it reads says so and fails the run
    _writes(mysql_db, 100, 5, "b")
    res = _run(tmp_path, "capture", *src, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    res = _run(tmp_path, "apply", *tgt, "--until-caught-up", "--ignore-origin", "default")
    assert res.returncode == 10, res.stdout + res.stderr
    assert "applied nothing: all 3 transaction(s) read were skipped" in res.stderr


def test_consumer_names_and_prune_dry_run(mysql_db: Endpoint, tmp_path: Path) -> None:
    """sync, apply and parallel apply register one name per target; names of earlier
    versions are dropped when the target registers, and `trail prune --dry-run` shows who
    holds what."""
    _seed(mysql_db, 100)
    args = [*_args(mysql_db, tmp_path), "--tables", f"{mysql_db.database}.*"]
    trail = tmp_path / "trail"
    res = _run(tmp_path, "sync", *args, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    _writes(mysql_db, 1000, 10, "x")
    res = _run(
        tmp_path, "capture", "--source", mysql_db.url(), "--trail", str(trail), "--until-caught-up"
    )
    assert res.returncode == 0, res.stdout + res.stderr
    # what earlier versions left behind: sync's "<id>", apply's "apply.<id>", parallel's
    # "apply.<id>.<i>of<n>", and a consumer of another target
    for name in ("default", "apply.default", "apply.default.0of2", "apply.other"):
        register_consumer(trail, name, 0)
    res = _run(tmp_path, "trail", "prune", "--trail", str(trail), "--dry-run")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "apply.default.0of2" in res.stdout and "applied through operation 0" in res.stdout
    res = _run(tmp_path, "apply", *args[:6][2:], "--until-caught-up", "--parallel", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert consumers(trail) == {"target.default": trail_info(trail).last_op, "apply.other": 0}
    res = _run(tmp_path, "trail", "prune", "--trail", str(trail), "--dry-run")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "target.default" in res.stdout and "apply.other" in res.stdout


def test_a_new_trail_against_an_old_checkpoint_is_refused(
    mysql_db: Endpoint, tmp_path: Path
) -> None:
    _seed(mysql_db, 50)
    old = [*_args(mysql_db, tmp_path), "--tables", f"{mysql_db.database}.*"]
    res = _run(tmp_path, "sync", *old, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    for i in range(4):
        _writes(mysql_db, 1000 + 100 * i, 10, f"old{i}")
    res = _run(tmp_path, "sync", *old, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    # a new trail directory for the same source and target: operations restart at 1
    new_trail = tmp_path / "trail2"
    src = ["--source", mysql_db.url(), "--trail", str(new_trail)]
    res = _run(tmp_path, "capture", *src, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    _writes(mysql_db, 5000, 10, "new")
    res = _run(tmp_path, "capture", *src, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    tgt = ["--target", f"duckdb://{tmp_path}/r.duckdb", "--trail", str(new_trail)]
    res = _run(tmp_path, "apply", *tgt, "--until-caught-up")
    assert res.returncode == 7, res.stdout + res.stderr
    assert "belongs to trail" in res.stderr and "--adopt-trail" in res.stderr, res.stderr
    res = _run(tmp_path, "apply", *tgt, "--until-caught-up", "--adopt-trail")
    assert res.returncode == 0, res.stdout + res.stderr
    assert _duck_rows(tmp_path / "r.duckdb", f'"{mysql_db.database}".t') == _my_rows(mysql_db)
    # bound now: the next run goes on without the flag, and the old trail is refused
    res = _run(tmp_path, "apply", *tgt, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    res = _run(tmp_path, "apply", *old[2:6], "--until-caught-up")
    assert res.returncode == 7, res.stdout + res.stderr


# --------------------------------------------------------------------------- item 3


def test_apply_alone_after_snapshot_honours_the_windows(mysql_db: Endpoint, tmp_path: Path) -> None:
    """capture runs from before the snapshot, so the trail holds changes the snapshot
    already loaded; `apply` alone must drop them (it used to insert them again and stop on
    the duplicate key)."""
    conn = _my(mysql_db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40))")
    conn.close()
    trail = ["--trail", str(tmp_path / "trail")]
    src = ["--source", mysql_db.url(), *trail]
    res = _run(tmp_path, "capture", *src, "--until-caught-up")  # fixes the trail's start
    assert res.returncode == 0, res.stdout + res.stderr
    _writes(mysql_db, 1, 40, "before")
    res = _run(
        tmp_path,
        "snapshot",
        *_args(mysql_db, tmp_path),
        "--tables",
        f"{mysql_db.database}.t",
        "--no-follow",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    _writes(mysql_db, 500, 40, "after")
    res = _run(tmp_path, "capture", *src, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    res = _run(
        tmp_path, "apply", "--target", f"duckdb://{tmp_path}/r.duckdb", *trail, "--until-caught-up"
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert _duck_rows(tmp_path / "r.duckdb", f'"{mysql_db.database}".t') == _my_rows(mysql_db)
    last_op = trail_info(tmp_path / "trail").last_op
    assert consumers(tmp_path / "trail") == {"target.default": last_op}


def test_trail_describes_its_source(mysql_db: Endpoint, pg_db: Endpoint, tmp_path: Path) -> None:
    """The header names engine, dialect and position scheme; `trail stats --json` shows them."""
    for ep, engine in ((mysql_db, "mysql"), (pg_db, "postgresql")):
        pg = f"host={ep.host} port={ep.port} user=postgres dbname={ep.database}"
        if engine == "mysql":
            conn = _my(ep)
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40))")
            conn.close()
        else:
            with psycopg.connect(pg, autocommit=True) as pconn:
                pconn.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        trail = tmp_path / engine
        res = _run(
            tmp_path, "capture", "--source", ep.url(), "--trail", str(trail), "--until-caught-up"
        )
        assert res.returncode == 0, res.stdout + res.stderr
        start = json.loads((trail / "trail-start.json").read_text())
        assert start["source_engine"] == engine and start["trail_id"]
        assert (start["start_position"] is None) == (engine == "postgresql")
        # once a segment exists, its header says the same
        if engine == "mysql":
            _writes(ep, 1, 3, "x")
        else:
            with psycopg.connect(pg, autocommit=True) as pconn:
                pconn.execute("INSERT INTO t VALUES (1, 'a')")
        res = _run(
            tmp_path, "capture", "--source", ep.url(), "--trail", str(trail), "--until-caught-up"
        )
        assert res.returncode == 0, res.stdout + res.stderr
        res = _run(tmp_path, "trail", "stats", "--trail", str(trail), "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        stats = json.loads(res.stdout)
        assert stats["segments"] >= 1 and stats["format_version"] == 2
        assert stats["trail_id"] == start["trail_id"] and stats["source_engine"] == engine
        dialect, scheme = {
            "mysql": ("mysql", "mysql-binlog"),
            "postgresql": ("postgres", "pg-lsn"),
        }[engine]
        assert (stats["source_dialect"], stats["position_scheme"]) == (dialect, scheme)


def test_kill_9_of_sync_during_a_postgres_snapshot(pg_db: Endpoint, tmp_path: Path) -> None:
    """The same with a PostgreSQL source: the slot made with the first snapshot keeps the
    start, and the rerun's window covers the chunks loaded before the kill."""
    dsn = f"host={pg_db.host} port={pg_db.port} user=postgres"
    target_db = f"{pg_db.database}_tgt"
    with psycopg.connect(f"{dsn} dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{target_db}"')
    src_dsn, tgt_dsn = f"{dsn} dbname={pg_db.database}", f"{dsn} dbname={target_db}"
    with psycopg.connect(src_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t SELECT i, 'v' || i FROM generate_series(0, 39999) i")
    args = [
        *_args(pg_db, tmp_path, f"postgresql://postgres@{pg_db.host}:{pg_db.port}/{target_db}"),
        "--tables",
        "public.t",
        "--workers",
        "1",
        "--chunk-rows",
        "1000",
    ]
    stop = threading.Event()
    updates = [0]

    def workload() -> None:
        rng = random.Random(5)
        with psycopg.connect(src_dsn, autocommit=True) as conn:
            while not stop.is_set():
                lo = rng.randrange(0, 40_000, 100)
                conn.execute(
                    "UPDATE t SET v = 'u' || id || '-' || %s WHERE id BETWEEN %s AND %s",
                    (updates[0], lo, lo + 20),
                )
                updates[0] += 1
                time.sleep(0.005)

    worker = threading.Thread(target=workload)
    worker.start()
    try:
        proc = subprocess.Popen(
            _cmd("sync", *args, "--until-caught-up"),
            env=_env(tmp_path),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        done, total = 0, 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with psycopg.connect(tgt_dsn, autocommit=True) as conn:
                    row = conn.execute(
                        "SELECT count(*) FILTER (WHERE done = 1), count(*) "
                        "FROM redoline.snapshot_chunks"
                    ).fetchone()
                    done, total = (int(row[0]), int(row[1])) if row else (0, 0)
            except psycopg.Error:
                done, total = 0, 0
            if total and 5 <= done < total - 5:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the snapshot finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(1.0)
        res = _run(tmp_path, "sync", *args, "--until-caught-up", timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        stop.set()
        worker.join()
    assert updates[0] > 50
    res = _run(tmp_path, "sync", *args, "--until-caught-up", timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    with psycopg.connect(src_dsn, autocommit=True) as conn:
        want = conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    with psycopg.connect(tgt_dsn, autocommit=True) as conn:
        got = conn.execute("SELECT id, v FROM public.t ORDER BY id").fetchall()
    stale = [w for w, g in zip(want, got, strict=False) if w != g]
    assert len(got) == len(want) and not stale, f"{len(stale)} rows differ, e.g. {stale[:3]}"
    with psycopg.connect(f"{dsn} dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)')


def test_checkpoint_from_before_trail_ids_is_bound_or_refused(tmp_path: Path) -> None:
    """A checkpoint written before checkpoints named their trail: the trail that holds its
    operation at its position is adopted silently; another trail (whose numbers also reach
    that far) is refused instead of being skipped up to the checkpoint."""
    from apply.options import ApplyOptions
    from apply.trail_apply import apply_trail
    from capture.trail import TrailWriter
    from connectors.base import open_database
    from connectors.errors import TrailError
    from tests.apply.workload import Workload

    def trail(name: str, size: int) -> Path:
        wl = Workload(seed=size)
        with TrailWriter(tmp_path / name, source_id="src") as tw:
            tw.append(wl.announce())
            for _ in range(20):
                tw.append(wl.transaction(size))
            tw.flush()
        return tmp_path / name

    # the second trail reaches past the first one's end, with other transactions
    first, second = trail("a", 5), trail("b", 9)
    target = open_database(Endpoint.parse(f"duckdb://{tmp_path}/t.duckdb"))
    opts = ApplyOptions(target_id="dw", source_dialect="postgres")
    writer = target.open_writer()
    try:
        stats = apply_trail(writer, first, opts)
        assert stats.applied_op > 50
        # what an older version left: the checkpoint, no record of its trail
        writer.execute("DELETE FROM redoline.redoline_checkpoint_trail")
        writer.commit()
        with pytest.raises(TrailError, match="belongs to trail"):
            apply_trail(writer, second, opts)
        again = apply_trail(writer, first, opts)  # the same trail: adopted, nothing twice
        assert again.transactions == 0
        rows = writer.query("SELECT trail_id FROM redoline.redoline_checkpoint_trail")
        writer.commit()
        assert len(rows) == 1 and rows[0][0] == trail_info(first).trail_id
    finally:
        writer.close()


def test_a_table_dropped_before_the_snapshot_is_not_replayed(
    mysql_db: Endpoint, tmp_path: Path
) -> None:
    """Capture runs first (the trail's start is fixed), a table takes updates and is then
    dropped, apply without a snapshot stops on rows it never loaded; `sync` snapshots the
    source (which no longer has the table) and must catch up without replaying the table's
    updates onto rows no snapshot loaded (CI campaign seed 33003: exit 6)."""
    _seed(mysql_db, 50)
    _seed(mysql_db, 30, table="gone")
    cfg = tmp_path / "r.toml"
    cfg.write_text(f'[tables]\ninclude = ["{mysql_db.database}.*"]\n')
    trail = ["--config", str(cfg), "--trail", str(tmp_path / "trail")]
    src = [*trail, "--source", mysql_db.url()]
    tgt = [*trail, "--target", f"duckdb://{tmp_path}/r.duckdb"]
    res = _run(tmp_path, "capture", *src, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    conn = _my(mysql_db)
    with conn.cursor() as cur:
        cur.execute("UPDATE gone SET v = 'changed' WHERE id < 10")
        cur.execute("UPDATE t SET v = 'changed' WHERE id < 5")
    res = _run(tmp_path, "capture", *src, "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    # apply before any snapshot: the target holds no row of either table, documented exit 6
    res = _run(tmp_path, "apply", *tgt, "--until-caught-up")
    assert res.returncode == 6, res.stdout + res.stderr
    with conn.cursor() as cur:
        cur.execute("DROP TABLE gone")
        cur.execute("INSERT INTO t VALUES (1000, 'after the drop')")
    conn.close()
    res = _run(
        tmp_path, "sync", *src, "--target", f"duckdb://{tmp_path}/r.duckdb", "--until-caught-up"
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert _duck_rows(tmp_path / "r.duckdb", f'"{mysql_db.database}".t') == _my_rows(mysql_db)
    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as duck:
        names = {
            r[0]
            for r in duck.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                [mysql_db.database],
            ).fetchall()
        }
    assert names == {"t"}, names
