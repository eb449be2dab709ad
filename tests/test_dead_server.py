"""The test harness notices a session server that died (tests/conftest.py: _check_servers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

INNER = """
import os
import signal
import time

import psycopg
import pymysql


def test_kills_the_server(mariadb_server):
    os.kill(mariadb_server.pid, signal.SIGKILL)
    os.waitpid(mariadb_server.pid, 0)


def test_next_one_runs(mysql_db):
    conn = pymysql.connect(host="127.0.0.1", port=mysql_db.port, user="root")
    with conn.cursor() as cur:
        cur.execute("SELECT 6 * 7")
        assert cur.fetchone() == (42,)
    conn.close()


def test_kills_postgres(postgres_server):
    os.kill(postgres_server.pid, signal.SIGKILL)
    while postgres_server.alive():  # (the signal lands asynchronously)
        time.sleep(0.05)


def test_postgres_is_back(pg_db):
    dsn = f"host=127.0.0.1 port={pg_db.port} user=postgres dbname={pg_db.database}"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 6 * 7").fetchone() == (42,)
"""


def test_a_killed_server_fails_its_test_with_the_log_and_is_restarted(tmp_path: Path) -> None:
    """A private pytest session (its own MariaDB, so this session's servers are untouched):
    the test that SIGKILLs the server fails naming the death and the log's end, the next
    test gets a restarted server and passes."""
    (tmp_path / "test_inner.py").write_text(INNER)
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'inner'}",
            f"--rootdir={tmp_path}",
            "-q",
            str(tmp_path / "test_inner.py"),
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "2 failed, 2 passed" in out, out
    assert "test_inner.py::test_kills_the_server" in out, out
    assert "test_inner.py::test_kills_postgres" in out, out
    assert "test_inner.py::test_next_one_runs" not in out, out
    assert "test_inner.py::test_postgres_is_back" not in out, out
    assert "mariadb server" in out and "died during this test; restarted it" in out, out
    assert "postgresql server" in out, out
    # the log's end is shown (a SIGKILL leaves no line of its own: the last ones before it)
    assert "ready for connections" in out, out
    assert "Connection refused" not in out, out
