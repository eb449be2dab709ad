"""Two bugs the randomized campaign found (tests/campaign), replayed as plain scenarios.

* A TRUNCATE that is a table's first change in the trail (its rows came by snapshot, so no
  row event ever announced its definition) stopped apply with exit 7.
* DDL on a table while the snapshot's consistent-read transaction had not read it yet made
  MariaDB answer 1412 ("Table definition has changed") and sync crash with exit 70.

The CLI runs in a subprocess; the data is judged by plain driver SELECTs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from connectors.endpoint import Endpoint

pytestmark = [pytest.mark.mariadb, pytest.mark.postgres]


def _sync(tmp_path: Path, source: Endpoint, target: Endpoint, tables: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from toolkit_cli.app import main; main()",
        "sync",
        "--source",
        source.url(),
        "--target",
        target.url(),
        "--trail",
        str(tmp_path / "trail"),
        "--tables",
        tables,
        "--until-caught-up",
    ]


def _run(cmd: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("REDOLINE_CONFIG", None)
    return subprocess.run(
        cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )


def _my(ep: Endpoint) -> Any:
    return pymysql.connect(
        host=ep.host, port=ep.port, user="root", database=ep.database, autocommit=True
    )


def _my_rows(ep: Endpoint, table: str) -> list[tuple[Any, ...]]:
    conn = _my(ep)
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM `{table}` ORDER BY 1")
        rows = [tuple(r) for r in cur.fetchall()]
    conn.close()
    return rows


def _pg_rows(ep: Endpoint, schema: str, table: str) -> list[tuple[Any, ...]]:
    dsn = f"host={ep.host} port={ep.port} user=postgres dbname={ep.database}"
    with psycopg.connect(dsn) as conn:
        return [tuple(r) for r in conn.execute(f'SELECT * FROM "{schema}"."{table}" ORDER BY 1')]


def test_truncate_as_first_change_after_snapshot(
    mysql_db: Endpoint, pg_db: Endpoint, tmp_path: Path
) -> None:
    """MariaDB -> PostgreSQL: rows by snapshot, then TRUNCATE is all the trail says of it."""
    conn = _my(mysql_db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE gone (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute("CREATE TABLE kept (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.executemany("INSERT INTO gone VALUES (%s, %s)", [(i, f"g{i}") for i in range(20)])
        cur.executemany("INSERT INTO kept VALUES (%s, %s)", [(i, f"k{i}") for i in range(5)])
    cmd = _sync(tmp_path, mysql_db, pg_db, f"{mysql_db.database}.*")
    first = _run(cmd, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(_pg_rows(pg_db, mysql_db.database, "gone")) == 20
    with conn.cursor() as cur:
        cur.execute("TRUNCATE TABLE gone")
        cur.execute("INSERT INTO kept VALUES (5, 'k5')")
    conn.close()
    second = _run(cmd, tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert _pg_rows(pg_db, mysql_db.database, "gone") == []
    assert _pg_rows(pg_db, mysql_db.database, "kept") == _my_rows(mysql_db, "kept")
    assert len(_my_rows(mysql_db, "kept")) == 6


def _wait_blocked(conn: Any, table: str, proc: subprocess.Popen[str]) -> None:
    """Until a session of ``proc`` waits for ``table``'s lock (the snapshot reading it)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.processlist "
                "WHERE state LIKE 'Waiting for table%%' AND info LIKE %s",
                (f"%{table}%",),
            )
            ((n,),) = cur.fetchall()
        if n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError(f"the snapshot never waited for {table}")


def test_ddl_while_the_snapshot_reads(mysql_db: Endpoint, pg_db: Endpoint, tmp_path: Path) -> None:
    """MariaDB 1412 on a TRUNCATEd and a rebuilt table: each is loaded again on a new
    snapshot in the same run (the rebuilt one into a target table created again), exit 0."""
    conn = _my(mysql_db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE a_first (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute("CREATE TABLE b_changed (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.executemany("INSERT INTO a_first VALUES (%s, %s)", [(i, f"a{i}") for i in range(9)])
        cur.executemany("INSERT INTO b_changed VALUES (%s, %s)", [(i, f"b{i}") for i in range(9)])
        cur.execute("CREATE TABLE c_altered (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.executemany("INSERT INTO c_altered VALUES (%s, %s)", [(i, f"c{i}") for i in range(9)])
        # the snapshot opens its consistent read, then waits for these locks to read them
        cur.execute("LOCK TABLES b_changed WRITE, c_altered WRITE")
    cmd = _sync(tmp_path, mysql_db, pg_db, f"{mysql_db.database}.*")
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("REDOLINE_CONFIG", None)
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_blocked(conn, "b_changed", proc)
        with conn.cursor() as cur:
            # a new table id: the snapshot's consistent read can no longer read it (1412)
            cur.execute("TRUNCATE TABLE b_changed")
            cur.execute("INSERT INTO b_changed VALUES (100, 'new')")
            # a rebuilt table with another column: its target table is created again
            cur.execute("ALTER TABLE c_altered ADD COLUMN w INT NULL, ALGORITHM=COPY")
            cur.execute("UPDATE c_altered SET w = id * 2 WHERE id < 3")
            cur.execute("UNLOCK TABLES")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the table is loaded again on a new snapshot in the same run; no rerun needed
    assert proc.returncode == 0, out + err
    assert "b_changed" in err and "new snapshot" in err, err
    assert _pg_rows(pg_db, mysql_db.database, "b_changed") == [(100, "new")]
    assert _pg_rows(pg_db, mysql_db.database, "b_changed") == _my_rows(mysql_db, "b_changed")
    assert _pg_rows(pg_db, mysql_db.database, "a_first") == _my_rows(mysql_db, "a_first")
    assert _pg_rows(pg_db, mysql_db.database, "c_altered") == _my_rows(mysql_db, "c_altered")
    again = _run(cmd, tmp_path)  # and a later run has nothing left to load or fix
    assert again.returncode == 0, again.stdout + again.stderr
    assert _pg_rows(pg_db, mysql_db.database, "b_changed") == _my_rows(mysql_db, "b_changed")
    conn.close()
