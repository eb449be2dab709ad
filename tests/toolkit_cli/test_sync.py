"""`redoline sync --until-caught-up` for cron, `snapshot --no-follow`, and `status`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql

from connectors.endpoint import Endpoint
from toolkit_cli.sync import hold_lock


def _seed(ep: Endpoint) -> None:
    conn = pymysql.connect(host=ep.host, port=ep.port, user="root", database=ep.database)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.executemany("INSERT INTO t VALUES (%s, %s)", [(i, f"v{i}") for i in range(500)])
    conn.commit()
    conn.close()


def test_sync_cron_status_and_lock(
    cli: Callable[..., Any], mysql_db: Endpoint, tmp_path: Path, monkeypatch: Any
) -> None:
    _seed(mysql_db)
    monkeypatch.chdir(tmp_path)
    args = [
        "--source",
        mysql_db.url(),
        "--target",
        f"duckdb://{tmp_path}/r.duckdb",
        "--trail",
        str(tmp_path / "trail"),
    ]
    res = cli("sync", *args, "--until-caught-up", "--tables", f"{mysql_db.database}.*")
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "500 rows" in res.stdout
    res = cli("status", *args, "--json")
    assert res.exit_code == 0, res.stdout + res.stderr
    status = json.loads(res.stdout)
    (target,) = status["targets"]
    assert target["tables"][0]["state"] == "loaded"
    assert target["lag_operations"] == 0
    with hold_lock(tmp_path / ".redoline", "sync-default-default"):
        res = cli("sync", *args, "--until-caught-up")
    assert res.exit_code == 8
    res = cli("snapshot", *args, "--no-follow", "--tables", f"{mysql_db.database}.t", "--json")
    assert res.exit_code == 0, res.stdout + res.stderr


def test_sync_from_postgres_until_caught_up(
    cli: Callable[..., Any], pg_db: Endpoint, tmp_path: Path, monkeypatch: Any
) -> None:
    """The first run creates the slot with the snapshot; the second captures what followed."""
    import duckdb
    import psycopg

    dsn = f"host={pg_db.host} port={pg_db.port} user=postgres dbname={pg_db.database}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t SELECT i, 'v' || i FROM generate_series(0, 499) i")
    monkeypatch.chdir(tmp_path)
    args = [
        "--source",
        pg_db.url(),
        "--target",
        f"duckdb://{tmp_path}/r.duckdb",
        "--trail",
        str(tmp_path / "trail"),
        "--tables",
        "public.*",
    ]
    res = cli("sync", *args, "--until-caught-up")
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "500 rows" in res.stdout and "exported snapshot" in res.stdout
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO t SELECT i, 'w' || i FROM generate_series(500, 599) i")
        conn.execute("UPDATE t SET v = 'u' WHERE id < 10")
        conn.execute("DELETE FROM t WHERE id BETWEEN 20 AND 29")
        want = conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    res = cli("sync", *args, "--until-caught-up")
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "captured 3 transactions" in res.stdout
    with duckdb.connect(str(tmp_path / "r.duckdb")) as conn:
        got = conn.execute("SELECT id, v FROM public.t ORDER BY id").fetchall()
    assert got == want
    res = cli("status", *args[:6], "--json")
    assert res.exit_code == 0, res.stdout + res.stderr
    (target,) = json.loads(res.stdout)["targets"]
    assert target["tables"][0]["state"] == "loaded"
    assert target["lag_operations"] == 0


def test_second_cron_run_of_an_empty_trail_misses_nothing(
    cli: Callable[..., Any], mysql_db: Endpoint, tmp_path: Path, monkeypatch: Any
) -> None:
    """The first run captures nothing (the source was quiet): the next run still starts
    where the first one fixed the trail's start, not at the source's end of then."""
    import duckdb

    _seed(mysql_db)
    monkeypatch.chdir(tmp_path)
    args = [
        "--source",
        mysql_db.url(),
        "--target",
        f"duckdb://{tmp_path}/r.duckdb",
        "--trail",
        str(tmp_path / "trail"),
        "--tables",
        f"{mysql_db.database}.*",
    ]
    res = cli("sync", *args, "--until-caught-up")
    assert res.exit_code == 0, res.stdout + res.stderr
    conn = pymysql.connect(
        host=mysql_db.host, port=mysql_db.port or 3306, user="root", database=mysql_db.database
    )
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO t VALUES (%s, %s)", [(i, f"n{i}") for i in range(500, 520)])
        cur.execute("UPDATE t SET v = 'u' WHERE id < 5")
    conn.commit()
    conn.close()
    res = cli("sync", *args, "--until-caught-up")
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "captured 1 transactions" in res.stdout
    with duckdb.connect(str(tmp_path / "r.duckdb")) as db:
        ((rows, updated),) = db.execute(
            f"SELECT count(*), count(*) FILTER (WHERE v = 'u') FROM {mysql_db.database}.t"
        ).fetchall()
    assert (rows, updated) == (520, 5)
