"""A continuous `redoline sync` outlives its source or its target restarting.

Both run as a service would: the CLI in a subprocess, stopped at the end with SIGTERM (exit
130). While it runs, a private server (source or target) is shut down and started again on
the same port; the run must reconnect, resume exactly (the checkpoint is in the target), and
end with the target equal to the source row by row.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest

from connectors import devservers
from connectors.endpoint import Endpoint

pytestmark = pytest.mark.slow


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[devservers.DevServer]:
    server = devservers.start_postgres(tmp_path / "pg")
    yield server
    devservers.stop(server)


def _restart_pg(server: devservers.DevServer, down_seconds: float) -> None:
    devservers.stop(server)
    time.sleep(down_seconds)
    base = Path(server.datadir).parent
    again = devservers.start_postgres(base, port=server.port)
    server.pid = again.pid


def _sync(tmp_path: Path, source: str, target: str) -> subprocess.Popen[str]:
    cfg = tmp_path / "redoline.toml"
    cfg.write_text(
        f'[source]\nurl = "{source}"\n[target]\nurl = "{target}"\n'
        f'[trail]\ndir = "{tmp_path / "trail"}"\n[state]\ndir = "{tmp_path / "state"}"\n'
    )
    return subprocess.Popen(
        [sys.executable, "-c", "from toolkit_cli.app import main; main()", "sync", "-c", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    err = out + err
    assert "Traceback" not in err, err
    return err


def _retrying(tmp_path: Path) -> str:
    """The stage `redoline status` reports as retrying ("" when none), checking its exit."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from toolkit_cli.app import main; main()",
            "status",
            "--json",
            "-c",
            str(tmp_path / "redoline.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    import json

    runs = json.loads(proc.stdout)["last_runs"]
    stages = [r["retrying"]["stage"] for r in runs.values() if r.get("retrying")]
    if stages:
        assert proc.returncode == 1, proc.stderr
    return ",".join(stages)


def _wait_for(predicate, seconds: float = 90) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError("timed out waiting for the replica")


def test_target_restart_during_continuous_sync(
    mysql_db: Endpoint, private_pg: devservers.DevServer, tmp_path: Path
) -> None:
    src = pymysql.connect(
        host=mysql_db.host,
        port=mysql_db.port,
        user="root",
        database=mysql_db.database,
        autocommit=True,
    )
    with src.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.executemany("INSERT INTO t VALUES (%s, 'a')", [(i,) for i in range(100)])
    pg_url = f"postgresql://postgres@127.0.0.1:{private_pg.port}/postgres"
    proc = _sync(
        tmp_path, f"mariadb://root@{mysql_db.host}:{mysql_db.port}/{mysql_db.database}", pg_url
    )

    def target_rows() -> list[tuple[int, str]]:
        try:
            with psycopg.connect(f"host=127.0.0.1 port={private_pg.port} user=postgres") as c:
                return [
                    tuple(r)
                    for r in c.execute(  # type: ignore[misc]
                        f'SELECT id, v FROM "{mysql_db.database}".t ORDER BY id'
                    ).fetchall()
                ]
        except psycopg.Error:
            return []

    try:
        _wait_for(lambda: len(target_rows()) == 100)
        with src.cursor() as cur:
            cur.executemany("INSERT INTO t VALUES (%s, 'b')", [(i,) for i in range(100, 150)])
        devservers.stop(private_pg)  # while those may be in flight
        # while the target is down, status says which stage retries, and exits 1
        _wait_for(lambda: "apply" in _retrying(tmp_path), seconds=60)
        private_pg.pid = devservers.start_postgres(
            Path(private_pg.datadir).parent, port=private_pg.port
        ).pid
        with src.cursor() as cur:
            cur.executemany("INSERT INTO t VALUES (%s, 'c')", [(i,) for i in range(150, 200)])
            cur.execute("UPDATE t SET v = 'u' WHERE id % 7 = 0")
            cur.execute("DELETE FROM t WHERE id % 11 = 0")
            cur.execute("SELECT id, v FROM t ORDER BY id")
            expected = [tuple(r) for r in cur.fetchall()]
        _wait_for(lambda: target_rows() == expected)
        assert _retrying(tmp_path) == ""  # working again: no longer reported
    finally:
        err = _stop(proc)
    assert "apply: " in err and "retrying in" in err  # the outage was seen and survived


def test_postgres_source_restart_during_continuous_sync(
    private_pg: devservers.DevServer, pg_db: Endpoint, tmp_path: Path
) -> None:
    dsn = f"host=127.0.0.1 port={private_pg.port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        c.execute("INSERT INTO t SELECT g, 'a' FROM generate_series(0, 99) g")
    target_dsn = f"host={pg_db.host} port={pg_db.port} user=postgres dbname={pg_db.database}"
    proc = _sync(
        tmp_path,
        f"postgresql://postgres@127.0.0.1:{private_pg.port}/postgres",
        f"postgresql://postgres@{pg_db.host}:{pg_db.port}/{pg_db.database}",
    )

    def target_rows() -> list[tuple[int, str]]:
        try:
            with psycopg.connect(target_dsn) as c:
                rows = c.execute("SELECT id, v FROM public.t ORDER BY id").fetchall()
                return [(int(i), str(v)) for i, v in rows]
        except psycopg.Error:
            return []

    try:
        _wait_for(lambda: len(target_rows()) == 100)
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("INSERT INTO t SELECT g, 'b' FROM generate_series(100, 149) g")
        # "terminating connection due to administrator command" ended the run with exit 3
        _restart_pg(private_pg, down_seconds=2)
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("INSERT INTO t SELECT g, 'c' FROM generate_series(150, 199) g")
            c.execute("UPDATE t SET v = 'u' WHERE id % 7 = 0")
            c.execute("DELETE FROM t WHERE id % 11 = 0")
            rows = c.execute("SELECT id, v FROM t ORDER BY id").fetchall()
            expected = [(int(i), str(v)) for i, v in rows]
        _wait_for(lambda: target_rows() == expected)
    finally:
        err = _stop(proc)
    assert "retrying" in err  # the outage was seen and survived, not missed
