"""Replay to a moment and undo back to it, from real MariaDB and PostgreSQL sources into every
target, through `redoline` in subprocesses.

A random workload runs on the source through its driver: a keyed table with key changes and
multi-row statements, a keyless table full of identical rows. At k random moments the test reads
the source's whole state with a plain SELECT and records a restore point (`redoline mark`).
Then a bulk table gets 12,000 rows, one transaction deletes 10,000 of them by accident, and
unrelated work follows. For each moment: a fresh target replayed `--until-mark` equals the
recorded state; a copy undone back to it (`undo --to-mark`, then `--ops` for the earlier ones)
equals it too. On a second copy, `undo --xid` of the accident refuses while one of its rows
exists again (nothing changed, exit 1) and then restores the 10,000 rows alone. The oracle is
the source's own state read through its driver, and the target's read through its driver.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
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
TABLES = ("acct", "log", "bulk")

#: moments recorded per run: keep the subprocess count (and the runtime) modest
K = 3


def redoline(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from toolkit_cli.app import main; main()", "-q", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


class Source:
    """SQL on the source and its state, through the plain driver."""

    def __init__(self, engine: str, ep: Endpoint) -> None:
        self.engine = engine
        if engine == "mariadb":
            self.conn: Any = pymysql.connect(
                host=ep.host, port=ep.port or 3306, user="root", database=ep.database
            )
            self.schema = ep.database or ""
        else:
            self.conn = psycopg.connect(
                f"host={ep.host} port={ep.port} user=postgres dbname={ep.database}"
            )
            self.schema = "public"

    def run(self, *sql: str) -> None:
        with self.conn.cursor() as cur:
            for s in sql:
                cur.execute(s)
        self.conn.commit()

    def state(self) -> State:
        with self.conn.cursor() as cur:
            out = {}
            for t in TABLES:
                cur.execute(f"SELECT * FROM {t}")
                out[t] = sorted(tuple(r) for r in cur.fetchall())
        self.conn.commit()
        return out

    def one_copy(self, verb: str, where: str) -> str:
        """``verb`` (``DELETE FROM log`` / ``UPDATE log SET ...``) on one of identical rows."""
        if self.engine == "mariadb":
            return f"{verb} WHERE {where} LIMIT 1"
        return f"{verb} WHERE ctid = (SELECT ctid FROM log WHERE {where} LIMIT 1)"


class Target:
    """A target engine: its URL for a given copy (a renamed schema) and its state."""

    def __init__(self, engine: str, ep: Endpoint | None, tmp: Path) -> None:
        self.engine, self.ep, self.tmp = engine, ep, tmp
        self.made: list[str] = []

    def url(self, copy: str) -> str:
        if self.engine == "duckdb":
            return f"duckdb://{self.tmp / copy}-copy.duckdb"
        assert self.ep is not None
        return self.ep.url()

    def schema(self, base: str, copy: str) -> str:
        # MariaDB: a schema is a database, server-wide: prefix it with the test's own
        name = f"{base}_{copy}" if self.engine == "mariadb" else copy
        self.made.append(name)
        return name

    def state(self, copy: str, schema: str) -> State:
        """Every table's rows; a table apply has not created yet (no row changed before the
        point) reads as empty."""
        listing = "SELECT table_name FROM information_schema.tables WHERE table_schema = "
        if self.engine == "duckdb":
            with duckdb.connect(str(self.tmp / f"{copy}-copy.duckdb")) as conn:
                return self._read(lambda sql: conn.execute(sql).fetchall(), listing, schema, '"')
        assert self.ep is not None
        if self.engine == "postgres":
            with psycopg.connect(
                f"host={self.ep.host} port={self.ep.port} user=postgres dbname={self.ep.database}"
            ) as conn:
                return self._read(lambda sql: conn.execute(sql).fetchall(), listing, schema, '"')
        conn = pymysql.connect(host=self.ep.host, port=self.ep.port or 3306, user="root")
        try:
            with conn.cursor() as cur:

                def fetch(sql: str) -> list[Any]:
                    cur.execute(sql)
                    return list(cur.fetchall())

                return self._read(fetch, listing, schema, "`")
        finally:
            conn.close()

    @staticmethod
    def _read(fetch: Callable[[str], list[Any]], listing: str, schema: str, q: str) -> State:
        present = {str(r[0]) for r in fetch(f"{listing}'{schema}'")}
        return {
            t: sorted(tuple(r) for r in fetch(f"SELECT * FROM {q}{schema}{q}.{q}{t}{q}"))
            if t in present
            else []
            for t in TABLES
        }

    def run(self, copy: str, sql: str) -> None:
        if self.engine == "duckdb":
            with duckdb.connect(str(self.tmp / f"{copy}-copy.duckdb")) as conn:
                conn.execute(sql)
            return
        assert self.ep is not None
        if self.engine == "postgres":
            with psycopg.connect(
                f"host={self.ep.host} port={self.ep.port} user=postgres dbname={self.ep.database}"
            ) as conn:
                conn.execute(sql)
            return
        conn = pymysql.connect(host=self.ep.host, port=self.ep.port or 3306, user="root")
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
            conn.commit()
        finally:
            conn.close()

    def quoted(self, schema: str, table: str) -> str:
        return f"`{schema}`.`{table}`" if self.engine == "mariadb" else f'"{schema}"."{table}"'

    def drop_made(self) -> None:
        if self.engine != "mariadb" or self.ep is None:
            return
        conn = pymysql.connect(host=self.ep.host, port=self.ep.port or 3306, user="root")
        try:
            with conn.cursor() as cur:
                for name in set(self.made):
                    cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()


def _workload(
    src: Source, rng: random.Random, moments: list[int], mark: Callable[[int], None]
) -> None:
    """Random transactions on acct (keyed; key changes) and log (keyless duplicates); after
    the transactions numbered in ``moments``, ``mark(i)``."""
    next_id = 61
    ids = list(range(1, 61))
    for n in range(30):
        stmts: list[str] = []
        for _ in range(rng.randint(1, 5)):
            roll = rng.random()
            if roll < 0.25 or not ids:
                stmts.append(f"INSERT INTO acct VALUES ({next_id}, 'o{rng.randint(0, 9)}', 0)")
                ids.append(next_id)
                next_id += 1
            elif roll < 0.45:
                i = rng.choice(ids)
                stmts.append(f"UPDATE acct SET bal = bal + {rng.randint(1, 99)} WHERE id = {i}")
            elif roll < 0.5:
                # a key change: the row moves to a new key
                i = rng.choice(ids)
                stmts.append(f"UPDATE acct SET id = {next_id}, owner = 'moved' WHERE id = {i}")
                ids.remove(i)
                ids.append(next_id)
                next_id += 1
            elif roll < 0.55:
                stmts.append(f"UPDATE acct SET bal = bal - 1 WHERE id % 7 = {rng.randint(0, 6)}")
            elif roll < 0.62:
                i = rng.choice(ids)
                stmts.append(f"DELETE FROM acct WHERE id = {i}")
                ids.remove(i)
            elif roll < 0.8:
                kind, k = rng.choice("ab"), rng.randint(1, 2)
                stmts.append(f"INSERT INTO log VALUES ('{kind}', {k}), ('{kind}', {k})")
            elif roll < 0.9:
                where = f"kind = '{rng.choice('ab')}' AND n = {rng.randint(1, 2)}"
                stmts.append(src.one_copy("DELETE FROM log", where))
            else:
                where = f"kind = '{rng.choice('ab')}' AND n = {rng.randint(1, 2)}"
                stmts.append(src.one_copy("UPDATE log SET n = 3", where))
        src.run(*stmts)
        if n in moments:
            mark(moments.index(n))


@pytest.mark.parametrize("target_engine", ["duckdb", "postgres", "mariadb"])
@pytest.mark.parametrize("source_engine", ["mariadb", "postgres"])
def test_replay_and_undo_to_recorded_moments(
    source_engine: str, target_engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    src_ep: Endpoint = request.getfixturevalue(
        "mysql_db" if source_engine == "mariadb" else "pg_db"
    )
    tgt_ep: Endpoint | None = None
    if target_engine == "postgres":
        tgt_ep = request.getfixturevalue("pg_db")
    elif target_engine == "mariadb":
        tgt_ep = request.getfixturevalue("mysql_db")
    src = Source(source_engine, src_ep)
    tgt = Target(target_engine, tgt_ep, tmp_path)
    try:
        _scenario(src, src_ep, tgt, tmp_path, seed=hash((source_engine, target_engine)) % 1000)
    finally:
        src.conn.close()
        tgt.drop_made()


def _scenario(src: Source, src_ep: Endpoint, tgt: Target, tmp: Path, seed: int) -> None:
    src.run(
        "CREATE TABLE acct (id INT PRIMARY KEY, owner VARCHAR(20), bal INT)",
        "CREATE TABLE log (kind VARCHAR(10) NOT NULL, n INT NOT NULL)",
        "CREATE TABLE bulk (id INT PRIMARY KEY, v VARCHAR(20))",
    )
    if src.engine == "postgres":
        src.run(*(f"ALTER TABLE {t} REPLICA IDENTITY FULL" for t in TABLES))
    trail = tmp / "trail"
    base = {
        **os.environ,
        "REDOLINE_SOURCE_URL": src_ep.url(),
        "REDOLINE_TRAIL_DIR": str(trail),
        "NO_COLOR": "1",
    }

    def env_for(copy: str) -> tuple[dict[str, str], str]:
        """A configuration whose target is a fresh copy (its own id and schema; MariaDB keeps
        checkpoints and snapshot states server-wide, so both ids carry the test's own database
        name: another test's states under the default source id were read as this one's)."""
        schema = tgt.schema(src.schema, copy)
        cfg = tmp / f"{copy}.toml"
        cfg.write_text(
            f'[source]\nurl = "{src_ep.url()}"\nid = "{src_ep.database}"\n'
            f'[target]\nurl = "{tgt.url(copy)}"\nid = "{src_ep.database}-{copy}"\n'
            f'[tables]\ninclude = ["{src.schema}.*"]\n'
            f'[tables.rename]\n"{src.schema}" = "{schema}"\n'
        )
        return {**base, "REDOLINE_CONFIG": str(cfg)}, schema

    capture_env, _ = env_for("capture")

    def ok(res: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
        assert res.returncode == 0, res.stdout + res.stderr
        return res

    ok(redoline(capture_env, "capture", "--until-caught-up"))  # the trail starts here
    src.run(
        "INSERT INTO acct VALUES " + ", ".join(f"({i}, 'o{i % 10}', {i})" for i in range(1, 61)),
        "INSERT INTO log VALUES " + ", ".join(f"('{'ab'[i % 2]}', {i % 3})" for i in range(30)),
    )
    rng = random.Random(seed)
    moments = sorted(rng.sample(range(30), K))
    states: list[State] = []

    def mark(i: int) -> None:
        states.append(src.state())
        ok(redoline(capture_env, "mark", f"m{i}"))

    _workload(src, rng, moments, mark)
    # the accident, between unrelated work
    src.run("INSERT INTO bulk VALUES " + ", ".join(f"({i}, 'v{i}')" for i in range(1, 12_001)))
    src.run("UPDATE acct SET bal = 0 WHERE id % 5 = 0")
    before_accident = src.state()
    src.run("DELETE FROM bulk WHERE id <= 10000")
    src.run(
        "UPDATE bulk SET v = 'later' WHERE id = 11000",
        "INSERT INTO bulk VALUES (20000, 'late')",
        "INSERT INTO log VALUES ('c', 9), ('c', 9)",
        "UPDATE acct SET owner = 'after' WHERE id % 4 = 1",
    )
    final = src.state()
    ok(redoline(capture_env, "capture", "--until-caught-up"))
    stats = json.loads(ok(redoline(capture_env, "trail", "stats", "--json")).stdout)
    after_op = {m["name"]: m["after_op"] for m in stats["marks"]}
    assert sorted(after_op) == [f"m{i}" for i in range(K)] and None not in after_op.values()
    (accident,) = [
        txn
        for txn in TrailReader(trail).transactions()
        if sum(c.op is Op.DELETE for c in txn.changes) == 10_000
    ]

    # a fresh target replayed to each moment equals the source as it was then
    for i, want in enumerate(states):
        env, schema = env_for(f"r{i}")
        res = ok(redoline(env, "apply", "--until-mark", f"m{i}", "--until-caught-up"))
        assert f"stopped at mark 'm{i}'" in res.stdout, res.stdout
        assert tgt.state(f"r{i}", schema) == want, f"replay to m{i}"

    # a copy undone back to each moment, newest first, equals it too
    env, schema = env_for("cp")
    ok(redoline(env, "apply", "--until-caught-up"))
    assert tgt.state("cp", schema) == final
    ok(redoline(env, "undo", "--to-mark", f"m{K - 1}", "--on", "target", "--execute"))
    assert tgt.state("cp", schema) == states[K - 1], f"undo to m{K - 1}"
    for i in range(K - 2, -1, -1):
        span = f"{after_op[f'm{i}'] + 1}..{after_op[f'm{i + 1}']}"
        ok(redoline(env, "undo", "--ops", span, "--on", "target", "--execute"))
        assert tgt.state("cp", schema) == states[i], f"undo to m{i}"

    # the accident alone, on another copy: a row of it exists again -> nothing changes
    env, schema = env_for("x")
    ok(redoline(env, "apply", "--until-caught-up"))
    tgt.run("x", f"INSERT INTO {tgt.quoted(schema, 'bulk')} VALUES (5, 'again')")
    again = tgt.state("x", schema)
    res = redoline(env, "undo", "--xid", accident.xid, "--on", "target", "--execute")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "(id=5): exists again" in res.stderr and "nothing was changed" in res.stderr
    assert tgt.state("x", schema) == again
    tgt.run("x", f"DELETE FROM {tgt.quoted(schema, 'bulk')} WHERE id = 5")
    res = ok(redoline(env, "undo", "--xid", accident.xid, "--on", "target", "--execute"))
    assert "10000 inserted" in res.stdout
    restored = tgt.state("x", schema)
    assert restored["acct"] == final["acct"] and restored["log"] == final["log"]
    assert restored["bulk"] == sorted(before_accident["bulk"][:10_000] + final["bulk"])


@pytest.mark.parametrize("engine", ["mariadb", "postgres"])
def test_ddl_inside_the_undone_range_is_refused_naming_it(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Undo across an ALTER TABLE is refused with the statement (exit 6, nothing changed);
    the changes after it undo fine."""
    ep: Endpoint = request.getfixturevalue("mysql_db" if engine == "mariadb" else "pg_db")
    src = Source(engine, ep)
    try:
        src.run("CREATE TABLE acct (id INT PRIMARY KEY, owner VARCHAR(20), bal INT)")
        if engine == "postgres":
            src.run("ALTER TABLE acct REPLICA IDENTITY FULL")
        (tmp_path / "r.toml").write_text(f'[tables]\ninclude = ["{src.schema}.*"]\n')
        env = {
            **os.environ,
            "REDOLINE_CONFIG": str(tmp_path / "r.toml"),
            "REDOLINE_SOURCE_URL": ep.url(),
            "REDOLINE_TRAIL_DIR": str(tmp_path / "trail"),
        }
        assert redoline(env, "capture", "--until-caught-up").returncode == 0
        src.run("INSERT INTO acct VALUES (1, 'a', 1), (2, 'b', 2)")
        assert redoline(env, "mark", "before-ddl").returncode == 0
        src.run("UPDATE acct SET bal = 10 WHERE id = 1")
        src.run("ALTER TABLE acct ADD COLUMN extra INT")
        src.run("UPDATE acct SET bal = 20, extra = 7 WHERE id = 2")
        res = redoline(env, "capture", "--until-caught-up")
        assert res.returncode == 0, res.stderr
        # MariaDB logs the statement; PostgreSQL's is derived when the table is next written
        ddl_op = max(
            op
            for txn in TrailReader(tmp_path / "trail").transactions()
            for op, c in enumerate(txn.changes, txn.first_op)
            if c.op is Op.DDL and c.ddl
        )
        with src.conn.cursor() as cur:
            cur.execute("SELECT * FROM acct ORDER BY id")
            now = cur.fetchall()
        src.conn.commit()
        res = redoline(env, "undo", "--to-mark", "before-ddl", "--on", "source", "--execute")
        assert res.returncode == 6, res.stdout + res.stderr
        assert f"operation {ddl_op} " in res.stderr
        assert re.search(r"ADD COLUMN [`\"]?extra", res.stderr), res.stderr
        with src.conn.cursor() as cur:
            cur.execute("SELECT * FROM acct ORDER BY id")
            assert cur.fetchall() == now
        src.conn.commit()
        # after the DDL: reversed
        res = redoline(env, "undo", "--to-op", str(ddl_op), "--on", "source", "--execute")
        assert res.returncode == 0, res.stdout + res.stderr
        with src.conn.cursor() as cur:
            cur.execute("SELECT id, owner, bal, extra FROM acct ORDER BY id")
            assert [tuple(r) for r in cur.fetchall()] == [(1, "a", 10, None), (2, "b", 2, None)]
        src.conn.commit()
    finally:
        src.conn.close()
