"""Row history and per-table counts from the trail, and a restore point taken while a capture
runs, on real MariaDB and PostgreSQL sources (the CLI in subprocesses)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest

from connectors.endpoint import Endpoint


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from toolkit_cli.app import main; main()", "-q", *args]


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cmd(*args), env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("engine", ["mariadb", "postgres"])
def test_row_history_counts_and_a_mark_during_capture(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ep: Endpoint = request.getfixturevalue("mysql_db" if engine == "mariadb" else "pg_db")
    if engine == "mariadb":
        conn: Any = pymysql.connect(
            host=ep.host, port=ep.port or 3306, user="root", database=ep.database
        )
        schema = ep.database
    else:
        conn = psycopg.connect(f"host={ep.host} port={ep.port} user=postgres dbname={ep.database}")
        schema = "public"

    def run(*sql: str) -> None:
        with conn.cursor() as cur:
            for s in sql:
                cur.execute(s)
        conn.commit()

    def rows() -> list[tuple[Any, ...]]:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM acct ORDER BY id")
            out = [tuple(r) for r in cur.fetchall()]
        conn.commit()
        return out

    (tmp_path / "r.toml").write_text(f'[tables]\ninclude = ["{schema}.*"]\n')
    env = {
        **os.environ,
        "REDOLINE_CONFIG": str(tmp_path / "r.toml"),
        "REDOLINE_SOURCE_URL": ep.url(),
        "REDOLINE_TRAIL_DIR": str(tmp_path / "trail"),
        "NO_COLOR": "1",
    }
    capture: subprocess.Popen[str] | None = None
    try:
        run("CREATE TABLE acct (id INT PRIMARY KEY, owner VARCHAR(20), bal INT)")
        if engine == "postgres":
            run("ALTER TABLE acct REPLICA IDENTITY FULL")
        assert _run(env, "capture", "--until-caught-up").returncode == 0
        capture = subprocess.Popen(
            _cmd("capture"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        run("INSERT INTO acct VALUES (1, 'ann', 10), (7, 'noise', 0)")
        run("UPDATE acct SET bal = 20 WHERE id = 1")
        run("UPDATE acct SET id = 2, owner = 'bob' WHERE id = 1")  # a key change
        run("UPDATE acct SET bal = 5 WHERE id = 7")
        at_mark = rows()
        # a restore point while capture runs (it may not have read all of the above yet)
        res = _run(env, "mark", "mid")
        assert res.returncode == 0, res.stderr
        run("UPDATE acct SET bal = 30 WHERE id = 2")
        run("DELETE FROM acct WHERE id = 2")
        time.sleep(2)
        capture.send_signal(signal.SIGTERM)
        _out, err = capture.communicate(timeout=60)
        assert capture.returncode in (0, 130), err
        capture = None
        assert _run(env, "capture", "--until-caught-up").returncode == 0
        res = _run(env, "trail", "check")
        assert res.returncode == 0, res.stdout + res.stderr

        res = _run(env, "trail", "history", f"{schema}.acct", "--key", "id=1", "--json")
        assert res.returncode == 0, res.stderr
        got = json.loads(res.stdout)["changes"]
        assert [(c["op"], c["changed"]) for c in got] == [
            ("insert", ["id", "owner", "bal"]),
            ("update", ["bal"]),
            ("update", ["id", "owner"]),
            ("update", ["bal"]),
            ("delete", ["id", "owner", "bal"]),
        ]
        assert got[2]["before"] == {"id": 1, "owner": "ann", "bal": 20}
        assert got[2]["after"] == {"id": 2, "owner": "bob", "bal": 20}
        assert len({c["xid"] for c in got}) == 5 and all(c["commit_time"] for c in got)
        res = _run(env, "trail", "history", f"{schema}.acct", "--key", "id=1")
        assert "id: 1 -> 2" in res.stdout and 'owner: "ann" -> "bob"' in res.stdout
        res = _run(env, "trail", "history", f"{schema}.acct", "--key", "nope=1")
        assert res.returncode == 2 and "no column nope" in res.stderr

        # counts per table and op in a time range
        res = _run(env, "trail", "history", "--since", "-1h", "--json")
        counts = json.loads(res.stdout)["tables"][f"{schema}.acct"]
        assert (counts["insert"], counts["update"], counts["delete"]) == (2, 4, 1)
        future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
        res = _run(env, "trail", "history", "--since", future, "--json")
        assert json.loads(res.stdout)["tables"] == {}

        # the mark replays to exactly what the source held when it was taken
        target = tmp_path / "asof.duckdb"
        res = _run(
            env, "apply", "--target", f"duckdb://{target}", "--to-mark", "mid", "--until-caught-up"
        )
        assert res.returncode == 0, res.stdout + res.stderr
        with duckdb.connect(str(target)) as db:
            replayed = db.execute(f'SELECT * FROM "{schema}".acct ORDER BY id').fetchall()
        assert [tuple(r) for r in replayed] == at_mark
        res = _run(env, "trail", "stats", "--json")
        (mark,) = json.loads(res.stdout)["marks"]
        assert mark["name"] == "mid" and mark["after_op"] is not None
    finally:
        if capture is not None:
            capture.kill()
            capture.communicate()
        conn.close()
