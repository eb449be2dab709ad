"""Operating a pipeline: heartbeat lag, progress records, `status` beside a running sync, and
the Prometheus endpoint and textfile, driven through the CLI in subprocesses on real servers.

The oracle is the databases themselves (rows read with their own drivers) and the metrics
endpoint read over HTTP; nothing here asks redoline whether it worked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from connectors.endpoint import Endpoint
from tests.clirun import redoline


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    (cwd / "none.toml").touch()
    return subprocess.Popen(
        [sys.executable, "-c", "from toolkit_cli.app import main; main()", *args],
        cwd=cwd,
        env={**os.environ, "REDOLINE_CONFIG": str(cwd / "none.toml")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _scrape(port: int) -> dict[str, float]:
    """``name{labels}`` -> value, from the endpoint over HTTP."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _metric(metrics: dict[str, float], name: str, **labels: str) -> float | None:
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            return value
    return None


def _wait(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # not up yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def _listens_on_loopback_only(port: int) -> bool:
    """From /proc/net/tcp*: the listening socket on ``port`` is bound to 127.0.0.1."""
    addresses = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:
                addresses.append(addr)
    return addresses == ["0100007F"]


def test_sync_heartbeat_status_and_metrics(mysql_db: Endpoint, tmp_path: Path) -> None:
    """A continuous MariaDB -> DuckDB sync with a heartbeat: status reads its progress records
    (never the locked DuckDB file), lag is measured and small both under writes and idle, the
    metrics endpoint counts what the source committed, and the heartbeat never reaches the
    target."""
    import duckdb

    db = mysql_db.database
    conn = pymysql.connect(host=mysql_db.host, port=mysql_db.port, user="root", database=db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.executemany("INSERT INTO t VALUES (%s, %s)", [(i, f"v{i}") for i in range(100)])
    conn.commit()
    port = _free_port()
    cfg = tmp_path / "shop.toml"
    cfg.write_text(
        f'[source]\nurl = "{mysql_db.url()}"\nid = "shop"\nheartbeat = "200ms"\n'
        f'[target]\nurl = "duckdb://{tmp_path}/r.duckdb"\n'
        f'[trail]\ndir = "{tmp_path}/trail"\n[tables]\ninclude = ["{db}.*"]\n'
    )
    # a fresh pipeline: nothing started, said in words, not "None"
    res = redoline("status", "-c", str(cfg), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "None" not in res.stdout and "not started" in res.stdout
    # `init` on a MariaDB source: only the heartbeat table (no slot to make)
    res = redoline("init", "-c", str(cfg), cwd=tmp_path)
    assert res.returncode == 0 and "heartbeat table" in res.stdout, res.stdout + res.stderr
    with conn.cursor() as cur:
        cur.execute("SHOW CREATE TABLE redoline.redoline_heartbeat")
        assert "beat_us" in cur.fetchall()[0][1]
    proc = _start("sync", "-c", str(cfg), "--metrics", f"127.0.0.1:{port}", cwd=tmp_path)
    try:
        # the snapshot first (the table's 100 rows), then apply follows the trail
        _wait(
            "apply to run",
            lambda: (
                _metric(_scrape(port), "redoline_stage_state", stage="apply", state="running")
                == 1.0
            ),
        )
        assert _listens_on_loopback_only(port)
        snap = _scrape(port)
        assert _metric(snap, "redoline_snapshot_rows", stage="apply", kind="copied") == 100
        # writes while running: 300 single-row transactions
        with conn.cursor() as cur:
            for i in range(100, 400):
                cur.execute("INSERT INTO t VALUES (%s, %s)", (i, f"n{i}"))
                conn.commit()
            cur.execute("UPDATE t SET v = 'u' WHERE id < 50")
            conn.commit()

        def applied() -> dict[str, float] | None:
            m = _scrape(port)
            n = _metric(m, "redoline_rows_total", stage="apply", table=f"{db}.t", op="insert")
            return m if n is not None and n >= 300 else None

        metrics = _wait("apply to count 300 inserts", applied)
        assert (
            _metric(metrics, "redoline_rows_total", stage="capture", table=f"{db}.t", op="insert")
            == 300
        )
        assert (
            _metric(
                metrics, "redoline_transactions_total", stage="apply", table=f"{db}.t", op="insert"
            )
            == 300
        )
        _wait(
            "the update to be counted",
            lambda: _metric(_scrape(port), "redoline_rows_total", stage="apply", op="update") == 50,
        )
        metrics = _scrape(port)
        assert _metric(metrics, "redoline_lag_estimated", stage="apply", target="default") == 0
        assert _metric(metrics, "redoline_trail_segments", stage="capture") == 1
        assert (_metric(metrics, "redoline_trail_bytes", stage="capture") or 0) > 0
        assert _metric(metrics, "redoline_stage_state", stage="apply", state="running") == 1.0
        # idle: the heartbeat keeps lag honest and small (no growing "lag" on a quiet source)
        time.sleep(3)
        metrics = _scrape(port)
        lag = _metric(metrics, "redoline_lag_seconds", stage="apply", target="default")
        assert lag is not None and lag < 1.5, lag
        beat = _metric(metrics, "redoline_heartbeat_timestamp_seconds", stage="apply")
        assert beat is not None and time.time() - beat < 2
        # status while sync holds the DuckDB file: from the records, exit 0, lag measured
        res = redoline("status", "-c", str(cfg), "--json", cwd=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "lock" not in res.stdout + res.stderr
        status = json.loads(res.stdout)
        (target,) = status["targets"]
        assert target["source"] == "progress record" and target["state"] == "running"
        assert target["lag_method"] == "heartbeat" and target["lag_seconds"] < 1.5
        # only heartbeats are in flight: a few operations at most
        assert target["lag_operations"] < 20
        assert status["capture"]["lag_method"] == "heartbeat"
        res = redoline("status", "-c", str(cfg), cwd=tmp_path)
        assert "None" not in res.stdout and "(heartbeat)" in res.stdout, res.stdout
        record = json.loads((tmp_path / ".redoline/progress/apply-default.json").read_text())
        counts = record["rows"][f"{db}.t"]
        assert (counts["insert"], counts["update"]) == (300, 50), counts
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    # after the run: the records say it stopped; status opens the (now free) target
    res = redoline("status", "-c", str(cfg), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    (target,) = json.loads(res.stdout)["targets"]
    assert target["source"] == "checkpoint" and target["state"] == "stopped"
    # the oracle: the rows, read by each database's own driver; no heartbeat table anywhere
    with conn.cursor() as cur:
        cur.execute("SELECT id, v FROM t ORDER BY id")
        want = [tuple(r) for r in cur.fetchall()]
        cur.execute("SELECT beat_us FROM redoline.redoline_heartbeat WHERE source_id = 'shop'")
        ((beat_us,),) = cur.fetchall()
    conn.close()
    assert abs(time.time() - beat_us / 1e6) < 60
    target_db = duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True)
    try:
        got = [
            tuple(r)
            for r in target_db.execute(f'SELECT id, v FROM "{db}".t ORDER BY id').fetchall()
        ]
        tables = {
            r[0] for r in target_db.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
    finally:
        target_db.close()
    assert got == want and len(got) == 400
    assert "redoline_heartbeat" not in tables


def test_status_fails_on_unreadable_or_failed_stage(mysql_db: Endpoint, tmp_path: Path) -> None:
    """`status` exits 1 when a stage's record cannot be read or says it failed."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[source]\nurl = "{mysql_db.url()}"\n[target]\nurl = "duckdb://{tmp_path}/r.duckdb"\n'
        f'[trail]\ndir = "{tmp_path}/trail"\n'
    )
    progress = tmp_path / ".redoline" / "progress"
    progress.mkdir(parents=True)
    (progress / "apply-default.json").write_text('{"stage": "apply", "na')
    res = redoline("status", "-c", str(cfg), cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "unreadable" in res.stdout
    (progress / "apply-default.json").write_text(
        json.dumps(
            {
                "stage": "apply",
                "name": "default",
                "pid": 1,
                "state": "failed",
                "last_error": "target rejected a row",
                "last_error_at": "2026-12-02T10:00:00+00:00",
            }
        )
    )
    res = redoline("status", "-c", str(cfg), cwd=tmp_path)
    assert res.returncode == 1 and "target rejected a row" in res.stdout, res.stdout
    (progress / "apply-default.json").unlink()
    res = redoline("status", "-c", str(cfg), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.postgres
def test_postgres_heartbeat_advances_slot_and_metrics_file(pg_db: Endpoint, tmp_path: Path) -> None:
    """PostgreSQL source: `init` creates the heartbeat table and publishes it; an idle source's
    slot keeps advancing under continuous capture; a cron-style `apply --until-caught-up
    --metrics-file` leaves a node_exporter textfile; the target never gets the heartbeat."""
    dsn = f"host={pg_db.host} port={pg_db.port} user=postgres dbname={pg_db.database}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
    cfg = tmp_path / "pg.toml"
    cfg.write_text(
        f'[source]\nurl = "{pg_db.url()}"\nheartbeat = "300ms"\n'
        f'[target]\nurl = "duckdb://{tmp_path}/r.duckdb"\n'
        f'[trail]\ndir = "{tmp_path}/trail"\n[tables]\ninclude = ["public.*"]\n'
    )
    res = redoline("init", "-c", str(cfg), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "heartbeat" in res.stdout
    with psycopg.connect(dsn, autocommit=True) as c:
        published = {
            (r[0], r[1])
            for r in c.execute("SELECT schemaname, tablename FROM pg_publication_tables")
        }
        assert ("redoline", "redoline_heartbeat") in published, published

    def confirmed() -> int:
        with psycopg.connect(dsn, autocommit=True) as c:
            row = c.execute(
                "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots "
                "WHERE database = current_database()"
            ).fetchone()
        assert row is not None
        return int(row[0])

    proc = _start("capture", "-c", str(cfg), cwd=tmp_path)
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 20) i")
        time.sleep(3)
        first = confirmed()
        time.sleep(4)  # idle: only the heartbeat writes
        assert confirmed() > first
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    prom = tmp_path / "textfile" / "redoline.prom"
    res = redoline(
        "apply", "-c", str(cfg), "--until-caught-up", "--metrics-file", str(prom), cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    text = prom.read_text()
    parsed = {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert (
        _metric(parsed, "redoline_rows_total", stage="apply", table="public.t", op="insert") == 20
    ), text
    assert "redoline_lag_seconds" in text and oct(prom.stat().st_mode & 0o777) == "0o644"
    assert _metric(parsed, "redoline_stage_state", stage="apply", state="finished") == 1.0
    import duckdb

    target_db = duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True)
    try:
        rows = target_db.execute("SELECT count(*) FROM public.t").fetchone()
        tables = {
            r[0] for r in target_db.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
    finally:
        target_db.close()
    assert rows == (20,) and "redoline_heartbeat" not in tables


def test_without_heartbeat_lag_is_an_estimate_and_idle_is_zero(
    mysql_db: Endpoint, tmp_path: Path
) -> None:
    """No [source] heartbeat: lag is computed from positions, says so, and an idle source
    whose changes are all applied shows 0, not the time since its last commit."""
    db = mysql_db.database
    conn = pymysql.connect(host=mysql_db.host, port=mysql_db.port, user="root", database=db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    conn.commit()
    port = _free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[source]\nurl = "{mysql_db.url()}"\n[target]\nurl = "duckdb://{tmp_path}/r.duckdb"\n'
        f'[trail]\ndir = "{tmp_path}/trail"\n[tables]\ninclude = ["{db}.*"]\n'
    )
    proc = _start("sync", "-c", str(cfg), "--metrics", str(port), cwd=tmp_path)
    try:
        _wait(
            "apply to run",
            lambda: (
                _metric(_scrape(port), "redoline_stage_state", stage="apply", state="running")
                == 1.0
            ),
        )
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO t VALUES (%s)", [(i,) for i in range(10)])
        conn.commit()
        _wait(
            "the inserts to be applied",
            lambda: _metric(_scrape(port), "redoline_rows_total", stage="apply", op="insert") == 10,
        )
        time.sleep(4)  # idle, longer than the lag the issue saw grow
        metrics = _scrape(port)
        assert _metric(metrics, "redoline_lag_estimated", stage="apply") == 1
        assert _metric(metrics, "redoline_lag_seconds", stage="apply") == 0
        assert (_metric(metrics, "redoline_lag_seconds", stage="capture") or 0) < 2.5
        res = redoline("status", "-c", str(cfg), cwd=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "(estimate)" in res.stdout and "(heartbeat)" not in res.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        conn.close()
    assert proc.returncode == 130, out + err
