"""The recovery stories the way a DBA runs them: real sources, `redoline` in a subprocess.

On MariaDB and PostgreSQL: 12,000 rows, an unrelated change, an accidental DELETE of 10,000
rows in one transaction, later good work. Then: a fresh target replayed to just before the
DELETE (by operation and by time) equals the source as it was then; `undo --xid` of the DELETE
refuses while one of its rows exists again (nothing changed, the row listed, exit 1) and,
once that row is gone, restores the 10,000 rows and keeps the later work. States are read with
the drivers and compared as plain tuples.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest

from capture.trail import TrailReader
from connectors.endpoint import Endpoint
from connectors.model import Op

State = dict[str, list[tuple[Any, ...]]]


def _redoline(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from toolkit_cli.app import main; main()", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


class _Source:
    """Run SQL on the source and read its tables, through the plain driver."""

    def __init__(self, engine: str, ep: Endpoint) -> None:
        self.engine, self.ep = engine, ep
        if engine == "mariadb":
            self.conn: Any = pymysql.connect(
                host=ep.host, port=ep.port or 3306, user="root", database=ep.database
            )
            self.schema = ep.database
        else:
            self.conn = psycopg.connect(
                f"host={ep.host} port={ep.port} user=postgres dbname={ep.database}",
                autocommit=False,
            )
            self.schema = "public"

    def run(self, *sql: str) -> None:
        with self.conn.cursor() as cur:
            for s in sql:
                cur.execute(s)
        self.conn.commit()

    def state(self) -> State:
        out = {}
        with self.conn.cursor() as cur:
            for t in ("t", "other"):
                cur.execute(f"SELECT * FROM {t} ORDER BY id")
                out[t] = [tuple(r) for r in cur.fetchall()]
        self.conn.commit()
        return out


def _duck_state(path: Path, schema: str) -> State:
    with duckdb.connect(str(path)) as conn:
        return {
            t: [
                tuple(r)
                for r in conn.execute(f'SELECT * FROM "{schema}".{t} ORDER BY id').fetchall()
            ]
            for t in ("t", "other")
        }


@pytest.mark.parametrize("engine", ["mariadb", "postgres"])
def test_bad_delete_replayed_around_and_undone(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ep: Endpoint = request.getfixturevalue("mysql_db" if engine == "mariadb" else "pg_db")
    src = _Source(engine, ep)
    try:
        _story(engine, ep, src, tmp_path)
    finally:
        src.conn.close()


def _story(engine: str, ep: Endpoint, src: _Source, tmp_path: Path) -> None:
    src.run(
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40))",
        "CREATE TABLE other (id INT PRIMARY KEY, n INT)",
    )
    if engine == "postgres":
        src.run("ALTER TABLE t REPLICA IDENTITY FULL", "ALTER TABLE other REPLICA IDENTITY FULL")
    trail = tmp_path / "trail"
    (tmp_path / "r.toml").write_text(f'[tables]\ninclude = ["{src.schema}.*"]\n')
    env = {
        **os.environ,
        "REDOLINE_CONFIG": str(tmp_path / "r.toml"),
        "REDOLINE_SOURCE_URL": ep.url(),
        "REDOLINE_TRAIL_DIR": str(trail),
    }

    def capture() -> None:
        res = _redoline(env, "-q", "capture", "--until-caught-up")
        assert res.returncode == 0, res.stderr

    capture()  # fixes the trail's start before any row exists
    # the first transaction on a table carries its definition and is applied on its own, row
    # by row: keep it small so the bulk below goes the set-based way
    src.run("INSERT INTO t VALUES (0, 'first')", "INSERT INTO other VALUES (0, 0)")
    ids = ", ".join(f"({i}, 'v{i}')" for i in range(1, 12_001))
    src.run(
        f"INSERT INTO t VALUES {ids}",
        "INSERT INTO other VALUES " + ", ".join(f"({i}, {i})" for i in range(1, 101)),
    )
    seeded = src.state()
    time.sleep(1.2)  # MariaDB's binlog stamps commits to the second
    after_seed = dt.datetime.now(dt.UTC)
    time.sleep(1.2)
    src.run("UPDATE other SET n = n + 1000 WHERE id < 10")  # unrelated, before the accident
    before_delete = src.state()
    src.run("DELETE FROM t WHERE id BETWEEN 1 AND 10000")  # the accident: one transaction
    src.run(  # good work after it
        "UPDATE other SET n = 0 WHERE id >= 50",
        "INSERT INTO t VALUES (20000, 'late')",
        "UPDATE t SET v = 'later' WHERE id = 11000",
    )
    capture()
    final = src.state()
    (bad,) = [
        txn
        for txn in TrailReader(trail).transactions()
        if sum(c.op is Op.DELETE for c in txn.changes) == 10_000
    ]

    # replay a fresh copy to just before the accident, by operation and by time
    for flag, value, want in (
        ("--until-op", str(bad.first_op - 1), before_delete),
        ("--until-time", after_seed.isoformat(), seeded),
    ):
        target = tmp_path / f"replay{flag}.duckdb"
        res = _redoline(
            env, "apply", "--target", f"duckdb://{target}", flag, value, "--until-caught-up"
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert "stopped at" in res.stdout
        assert _duck_state(target, src.schema) == want, flag
    # the retained trail cannot go back before its start
    res = _redoline(env, "undo", "--to-time", "2001-01-01T00:00:00Z", "--on", "source")
    assert res.returncode == 11 and "earliest point undo can restore" in res.stderr

    # undo of the accident: printed first, then executed
    res = _redoline(env, "undo", "--xid", bad.xid, "--on", "source")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("INSERT INTO") == 20 and res.stdout.rstrip().endswith("COMMIT;")
    assert src.state() == final  # printing changes nothing
    src.run("INSERT INTO t VALUES (5, 'again')")
    res = _redoline(env, "undo", "--xid", bad.xid, "--on", "source", "--execute")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "1 row(s)" in res.stderr and "(id=5): exists again" in res.stderr
    assert "nothing was changed" in res.stderr
    src.run("DELETE FROM t WHERE id = 5")
    assert src.state() == final
    res = _redoline(env, "undo", "--xid", bad.xid, "--on", "source", "--execute")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "10000 inserted" in res.stdout
    restored = src.state()
    assert restored["other"] == final["other"]  # the later work stays
    assert restored["t"] == sorted(before_delete["t"][1:10_001] + final["t"])
    assert (11000, "later") in restored["t"] and (20000, "late") in restored["t"]


def test_undo_needs_on(cli: Callable[..., Any], tmp_path: Path) -> None:
    res = cli("undo", "--trail", str(tmp_path), "--to-op", "3")
    assert res.exit_code == 2 and "--on source|target is required" in res.stderr


def test_sync_until_a_point_and_snapshots_after_it_refused(
    mysql_db: Endpoint, tmp_path: Path
) -> None:
    """`sync --until-op` stops there; a target a snapshot loads after the point is refused
    (before loading, for sync; after catch-up, for apply on a copy loaded later)."""
    src = _Source("mariadb", mysql_db)
    try:
        src.run(
            "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40))",
            "CREATE TABLE other (id INT PRIMARY KEY, n INT)",
            "INSERT INTO t VALUES " + ", ".join(f"({i}, 'v{i}')" for i in range(1, 101)),
        )
        (tmp_path / "r.toml").write_text(f'[tables]\ninclude = ["{src.schema}.*"]\n')
        env = {
            **os.environ,
            "REDOLINE_CONFIG": str(tmp_path / "r.toml"),
            "REDOLINE_SOURCE_URL": mysql_db.url(),
            "REDOLINE_TRAIL_DIR": str(tmp_path / "trail"),
        }
        a = f"duckdb://{tmp_path}/a.duckdb"
        res = _redoline(env, "sync", "--target", a, "--until-caught-up")
        assert res.returncode == 0, res.stdout + res.stderr
        # operations 1..11: the table's definition, then its 10 rows
        src.run("INSERT INTO t VALUES " + ", ".join(f"({i}, 'n')" for i in range(101, 111)))
        at_point = src.state()
        src.run("DELETE FROM t WHERE id <= 50")
        res = _redoline(env, "sync", "--target", a, "--until-caught-up", "--until-op", "11")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "stopped at operation 11" in res.stdout
        assert _duck_state(tmp_path / "a.duckdb", src.schema)["t"] == at_point["t"]
        # replay only goes forward
        res = _redoline(env, "apply", "--target", a, "--until-op", "5", "--until-caught-up")
        assert res.returncode == 11, res.stdout + res.stderr
        assert "earliest point it can be brought to is operation 11" in res.stderr
        # a fresh target would be loaded now, after the point: refused before loading
        b = tmp_path / "b.duckdb"
        res = _redoline(
            env, "sync", "--target", f"duckdb://{b}", "--until-caught-up", "--until-op", "11"
        )
        assert res.returncode == 11 and "earliest restorable point for it is now" in res.stderr
        # a copy loaded by a snapshot after the point: apply refuses after its catch-up
        c = f"duckdb://{tmp_path}/c.duckdb"
        res = _redoline(env, "snapshot", "--target", c, "--no-follow")
        assert res.returncode == 0, res.stdout + res.stderr
        res = _redoline(env, "apply", "--target", c, "--until-op", "11", "--until-caught-up")
        assert res.returncode == 11, res.stdout + res.stderr
        assert "before the end of the snapshot" in res.stderr
    finally:
        src.conn.close()


def test_check_says_per_table_whether_undo_is_possible(pg_db: Endpoint, tmp_path: Path) -> None:
    src = _Source("postgres", pg_db)
    try:
        src.run(
            "CREATE TABLE full_t (id INT PRIMARY KEY)",
            "ALTER TABLE full_t REPLICA IDENTITY FULL",
            "CREATE TABLE key_t (id INT PRIMARY KEY)",
        )
    finally:
        src.conn.close()
    (tmp_path / "r.toml").write_text('[tables]\ninclude = ["public.*"]\n')
    env = {**os.environ, "REDOLINE_CONFIG": str(tmp_path / "r.toml")}
    res = _redoline(env, "check", "--source", pg_db.url(), "--json")
    report = json.loads(res.stdout)
    items = {i["name"]: i for r in report["endpoints"] for i in r["items"]}
    assert items["undo possible public.full_t"]["ok"] is True
    key_t = items["undo possible public.key_t"]
    assert key_t["ok"] is False and key_t["blocking"] is False
    assert key_t["hint"] == 'ALTER TABLE "public"."key_t" REPLICA IDENTITY FULL'


def test_postgres_toast_values_come_back_from_the_before_image(
    pg_db: Endpoint, tmp_path: Path
) -> None:
    """An update that leaves a large (TOASTed) value alone: PostgreSQL does not resend it,
    but with REPLICA IDENTITY FULL the old row holds it, so the trail and undo have the real
    value (never a guess). Without FULL, undo refuses (exit 6) and names the fix."""
    import random as _random

    big = "".join(_random.Random(1).choices("abcdefghijklmnopqrstuvwxyz", k=20_000))
    src = _Source("postgres", pg_db)
    try:
        src.run(
            "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40))",
            "CREATE TABLE other (id INT PRIMARY KEY, n INT)",
            "ALTER TABLE t ADD COLUMN doc TEXT",
            "ALTER TABLE t REPLICA IDENTITY FULL",
        )
        (tmp_path / "r.toml").write_text('[tables]\ninclude = ["public.*"]\n')
        env = {
            **os.environ,
            "REDOLINE_CONFIG": str(tmp_path / "r.toml"),
            "REDOLINE_SOURCE_URL": pg_db.url(),
            "REDOLINE_TRAIL_DIR": str(tmp_path / "trail"),
        }
        assert _redoline(env, "-q", "capture", "--until-caught-up").returncode == 0
        src.run(
            f"INSERT INTO t VALUES (1, 'a', '{big}'), (2, 'b', '{big}')",
            "INSERT INTO other VALUES (1, 1)",
        )
        kept = src.state()
        src.run("UPDATE t SET v = 'changed'")  # doc is not touched: not resent
        src.run("UPDATE other SET n = 2")  # other keeps the default identity (key only)
        assert _redoline(env, "-q", "capture", "--until-caught-up").returncode == 0
        reader = TrailReader(tmp_path / "trail")
        txns = list(reader.transactions())
        upd_t, upd_other = txns[-2], txns[-1]
        res = _redoline(env, "undo", "--xid", upd_t.xid, "--on", "source", "--execute")
        assert res.returncode == 0, res.stdout + res.stderr
        with src.conn.cursor() as cur:
            cur.execute("SELECT id, v, length(doc), doc = %s FROM t ORDER BY id", (big,))
            assert cur.fetchall() == [(1, "a", 20_000, True), (2, "b", 20_000, True)]
        src.conn.commit()
        assert src.state()["t"] == kept["t"]
        res = _redoline(env, "undo", "--xid", upd_other.xid, "--on", "source", "--execute")
        assert res.returncode == 6, res.stdout + res.stderr
        assert "no full before image" in res.stderr and "REPLICA IDENTITY FULL" in res.stderr
    finally:
        src.conn.close()
