"""DDL the campaign (tests/campaign) found applied wrongly, replayed as plain scenarios on every
target (PostgreSQL, MariaDB, DuckDB) from a MariaDB source, the CLI in subprocesses:

* a table created and renamed between two cron runs: the second run's snapshot loads the new
  name, and catch-up replayed the rename onto it ("already exists");
* an ALTER of a table the target does not have (capture and apply with no snapshot);
* ``RENAME TABLE a TO tmp, b TO a, tmp TO b`` (capture's bookkeeping lost both tables), and
  ``DROP TABLE x, y`` with only x selected (the target lost y);
* a kill -9 of apply between a DDL statement and its checkpoint, on a target whose DDL
  commits on its own (MariaDB): the statement ran again at restart ("already exists").

Judged by plain driver SELECTs on both sides (not by ``redoline verify``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest

from connectors.endpoint import Endpoint

pytestmark = [pytest.mark.mariadb]

_CLI = [sys.executable, "-c", "from toolkit_cli.app import main; main()"]


@dataclass
class Pipe:
    """One source database, one target, one config file."""

    source: Endpoint
    kind: str  # postgresql | mariadb | duckdb
    url: str
    #: the target's schema (PostgreSQL/DuckDB) or database (MariaDB) the tables land in
    schema: str
    workdir: Path
    #: the target server's endpoint (None for DuckDB)
    target: Endpoint | None = None

    @property
    def ids(self) -> tuple[str, str]:
        """Source and target ids (MariaDB's checkpoint database is server-wide)."""
        return f"s_{self.source.database}", f"d_{self.source.database}"

    @property
    def config(self) -> Path:
        return self.workdir / "redoline.toml"

    def write_config(self, include: list[str], exclude: Sequence[str] = ()) -> None:
        rename = (
            f'rename = {{ "{self.source.database}" = "{self.schema}" }}\n'
            if self.kind == "mariadb"
            else ""
        )
        tables = ", ".join(f'"{t}"' for t in include)
        self.config.write_text(
            f'[source]\nurl = "{self.source.url()}"\nid = "{self.ids[0]}"\n'
            f'[target]\nurl = "{self.url}"\nid = "{self.ids[1]}"\n'
            f'[trail]\ndir = "{self.workdir / "trail"}"\n'
            f'[state]\ndir = "{self.workdir / "state"}"\n'
            f"[tables]\ninclude = [{tables}]\n{rename}"
            f"exclude = [{', '.join(repr(t) for t in exclude)}]\n"
        )

    def cmd(self, *args: str) -> list[str]:
        return [*_CLI, *args, "-c", str(self.config)]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.cmd(*args),
            cwd=self.workdir,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        res = self.run(*args)
        assert res.returncode == 0, f"redoline {' '.join(args)}: {res.stdout}{res.stderr}"
        assert "Traceback" not in res.stderr, res.stderr
        return res

    # ---- the two sides, read through their drivers

    def source_sql(self, *statements: str) -> None:
        conn = _maria(self.source, self.source.database)
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
        conn.close()

    def source_rows(self, table: str) -> list[tuple[Any, ...]]:
        conn = _maria(self.source, self.source.database)
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM `{table}` ORDER BY 1")
            rows = [tuple(r) for r in cur.fetchall()]
        conn.close()
        return rows

    def target_query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.kind == "mariadb":
            assert self.target is not None
            conn = _maria(self.target, self.schema)
            with conn.cursor() as cur:
                cur.execute(sql.replace('"', "`"))
                rows = [tuple(r) for r in cur.fetchall()]
            conn.close()
            return rows
        if self.kind == "postgresql":
            assert self.target is not None
            dsn = f"host={self.target.host} port={self.target.port} user=postgres "
            with psycopg.connect(dsn + f"dbname={self.target.database}") as pconn:
                return [tuple(r) for r in pconn.execute(sql).fetchall()]
        with duckdb.connect(self.url.removeprefix("duckdb://"), read_only=True) as dconn:
            return [tuple(r) for r in dconn.execute(sql).fetchall()]

    def target_rows(self, table: str) -> list[tuple[Any, ...]]:
        return self.target_query(f'SELECT * FROM "{self.schema}"."{table}" ORDER BY 1')

    def target_tables(self) -> set[str]:
        rows = self.target_query(
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{self.schema}'"
        )
        return {str(r[0]) for r in rows}

    def target_columns(self, table: str) -> list[str]:
        rows = self.target_query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            f"'{self.schema}' AND table_name = '{table}' ORDER BY ordinal_position"
        )
        return [str(r[0]) for r in rows]

    def same(self, *tables: str) -> None:
        for table in tables:
            assert self.target_rows(table) == self.source_rows(table), table


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDOLINE_")}
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return env


def _maria(ep: Endpoint, database: str) -> Any:
    return pymysql.connect(
        host=ep.host, port=ep.port, user="root", database=database, autocommit=True
    )


@contextlib.contextmanager
def _pipe(
    kind: str, request: pytest.FixtureRequest, mysql_db: Endpoint, tmp_path: Path
) -> Iterator[Pipe]:
    if kind == "postgresql":
        pg: Endpoint = request.getfixturevalue("pg_db")
        yield Pipe(mysql_db, kind, pg.url(), mysql_db.database, tmp_path, pg)
        return
    if kind == "duckdb":
        yield Pipe(mysql_db, kind, f"duckdb://{tmp_path / 't.duckdb'}", mysql_db.database, tmp_path)
        return
    name = f"{mysql_db.database}_dst"
    admin = _maria(mysql_db, mysql_db.database)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    url = f"mariadb://root@{mysql_db.host}:{mysql_db.port}/{name}"
    try:
        yield Pipe(mysql_db, kind, url, name, tmp_path, Endpoint.parse(url))
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(params=["postgresql", "mariadb", "duckdb"])
def pipe(request: pytest.FixtureRequest, mysql_db: Endpoint, tmp_path: Path) -> Iterator[Pipe]:
    with _pipe(request.param, request, mysql_db, tmp_path) as p:
        yield p


def test_table_created_and_renamed_between_cron_runs(pipe: Pipe) -> None:
    """The second run snapshots the new name; the old one, which catch-up creates from the
    trail (or an earlier run created), is gone on the target too (campaign seeds 2008 and
    20017: "relation new1_r2 already exists")."""
    pipe.write_config([f"{pipe.source.database}.*"])
    pipe.source_sql(
        "CREATE TABLE base (id INT PRIMARY KEY, v VARCHAR(20))",
        "INSERT INTO base VALUES (1, 'a'), (2, 'b')",
    )
    pipe.ok("sync", "--until-caught-up")
    # created and renamed while no run was going
    pipe.source_sql(
        "CREATE TABLE n1 (id INT PRIMARY KEY, v VARCHAR(20))",
        "INSERT INTO n1 VALUES (1, 'one'), (2, 'two')",
        "UPDATE n1 SET v = 'TWO' WHERE id = 2",
        "RENAME TABLE n1 TO n2",
        "INSERT INTO n2 VALUES (3, 'three')",
        "INSERT INTO base VALUES (3, 'c')",
    )
    pipe.ok("sync", "--until-caught-up")
    pipe.same("base", "n2")
    assert "n1" not in pipe.target_tables()
    # a table the target has from an earlier run, renamed before the next one
    pipe.source_sql("INSERT INTO n2 VALUES (4, 'four')", "RENAME TABLE n2 TO n3")
    pipe.ok("sync", "--until-caught-up")
    pipe.same("base", "n3")
    assert {"n1", "n2"}.isdisjoint(pipe.target_tables())
    pipe.source_sql("INSERT INTO n3 VALUES (5, 'five')", "DELETE FROM n3 WHERE id = 1")
    pipe.ok("sync", "--until-caught-up")
    pipe.same("base", "n3")


def test_alter_of_a_table_the_target_does_not_have(pipe: Pipe) -> None:
    """capture then apply with no snapshot: an ALTER of a table apply never created (it has
    rows only from before capture started) is not an error; the table comes from the trail's
    definition, with what capture saw, and the warning says the older rows need a snapshot."""
    pipe.write_config([f"{pipe.source.database}.*"])
    pipe.source_sql(
        "CREATE TABLE old (id INT PRIMARY KEY, v VARCHAR(20))",
        "INSERT INTO old VALUES (1, 'before capture')",
    )
    pipe.ok("capture", "--until-caught-up")
    pipe.source_sql(
        "ALTER TABLE old ADD COLUMN w INT",
        "INSERT INTO old VALUES (2, 'after', 7)",
        "ALTER TABLE old RENAME COLUMN v TO v2",
        "INSERT INTO old VALUES (3, 'later', 8)",
    )
    pipe.ok("capture", "--until-caught-up")
    res = pipe.ok("apply", "--until-caught-up")
    assert "NOT on the target" in res.stderr and "redoline snapshot" in res.stderr, res.stderr
    assert pipe.target_columns("old") == ["id", "v2", "w"]
    assert pipe.target_rows("old") == [r for r in pipe.source_rows("old") if r[0] >= 2]
    # the snapshot the warning names brings the rest
    pipe.ok("sync", "--until-caught-up")
    pipe.same("old")


def test_rename_swap_chain_and_partly_selected_drop(pipe: Pipe) -> None:
    """``RENAME TABLE a TO tmp, b TO a, tmp TO b`` swaps the two tables on the target, and
    ``DROP TABLE gone, mine`` with ``mine`` outside [tables] leaves the target's ``mine``."""
    db = pipe.source.database
    pipe.write_config([f"{db}.*"], exclude=[f"{db}.mine"])
    pipe.source_sql(
        "CREATE TABLE a (id INT PRIMARY KEY, x VARCHAR(20))",
        "CREATE TABLE b (id INT PRIMARY KEY, y INT, z VARCHAR(20))",
        "CREATE TABLE gone (id INT PRIMARY KEY)",
        "CREATE TABLE mine (id INT PRIMARY KEY)",
        "INSERT INTO a VALUES (1, 'a1'), (2, 'a2')",
        "INSERT INTO b VALUES (1, 10, 'b1')",
        "INSERT INTO gone VALUES (1)",
    )
    pipe.ok("sync", "--until-caught-up")
    # the target's own table of that name, which replication must not touch
    if pipe.kind == "duckdb":
        with duckdb.connect(pipe.url.removeprefix("duckdb://")) as conn:
            conn.execute(f'CREATE TABLE "{pipe.schema}"."mine" (id INTEGER)')
            conn.execute(f'INSERT INTO "{pipe.schema}"."mine" VALUES (42)')
    elif pipe.kind == "postgresql":
        assert pipe.target is not None
        dsn = f"host={pipe.target.host} port={pipe.target.port} user=postgres "
        with psycopg.connect(dsn + f"dbname={pipe.target.database}", autocommit=True) as pconn:
            pconn.execute(f'CREATE TABLE "{pipe.schema}"."mine" (id integer)')
            pconn.execute(f'INSERT INTO "{pipe.schema}"."mine" VALUES (42)')
    else:
        assert pipe.target is not None
        conn = _maria(pipe.target, pipe.schema)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE mine (id INT)")
            cur.execute("INSERT INTO mine VALUES (42)")
        conn.close()
    pipe.source_sql(
        "RENAME TABLE a TO tmp, b TO a, tmp TO b",
        "INSERT INTO a VALUES (2, 20, 'now a')",
        "UPDATE b SET x = 'a1 in b' WHERE id = 1",
        "DROP TABLE gone, mine",
    )
    pipe.ok("sync", "--until-caught-up")
    assert pipe.target_columns("a") == ["id", "y", "z"]
    assert pipe.target_columns("b") == ["id", "x"]
    pipe.same("a", "b")
    tables = pipe.target_tables()
    assert "tmp" not in tables and "gone" not in tables
    assert pipe.target_rows("mine") == [(42,)]
    # and replication goes on under the swapped names
    pipe.source_sql("INSERT INTO a VALUES (3, 30, 'a3')", "DELETE FROM b WHERE id = 2")
    pipe.ok("sync", "--until-caught-up")
    pipe.same("a", "b")


# --------------------------------------------------------------------------- kill -9 mid-DDL


@contextlib.contextmanager
def _checkpoint_locked(pipe: Pipe) -> Iterator[None]:
    """Hold the checkpoint row's lock from another session: apply's DDL runs, then its
    checkpoint UPDATE waits, which is the instant a kill -9 lands in."""
    sql = (
        "SELECT applied_op FROM redoline.redoline_checkpoint "
        f"WHERE source_id = '{pipe.ids[0]}' AND target_id = '{pipe.ids[1]}' FOR UPDATE"
    )
    assert pipe.target is not None
    if pipe.kind == "mariadb":
        conn = pymysql.connect(host=pipe.target.host, port=pipe.target.port, user="root")
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(sql)
        try:
            yield
        finally:
            conn.rollback()
            conn.close()
        return
    dsn = f"host={pipe.target.host} port={pipe.target.port} user=postgres "
    with psycopg.connect(dsn + f"dbname={pipe.target.database}") as pconn:
        pconn.execute(sql)
        try:
            yield
        finally:
            pconn.rollback()


def _waiting_for_checkpoint(pipe: Pipe) -> bool:
    if pipe.kind == "mariadb":
        rows = pipe.target_query(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE command = 'Query' AND "
            "info LIKE 'UPDATE %redoline_checkpoint%'"
        )
    else:
        rows = pipe.target_query(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
            "query LIKE 'UPDATE %redoline_checkpoint%'"
        )
    return bool(rows[0][0])


@pytest.mark.postgres
@pytest.mark.parametrize("target", ["mariadb", "postgresql"])
def test_kill_9_between_ddl_and_checkpoint(
    target: str, mysql_db: Endpoint, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Each DDL kind, apply killed while its checkpoint waits after the statement ran: the
    rerun neither runs it again (MariaDB: it committed) nor leaves it out (PostgreSQL: it
    rolled back with the checkpoint), and exits 0 with the target equal to the source.
    (DuckDB's DDL is transactional like PostgreSQL's; its file lock keeps this test's
    second session out, so tests/apply/test_applier.py covers it in process.)"""
    with _pipe(target, request, mysql_db, tmp_path) as p:
        _kill_rounds(p)


def _kill_rounds(p: Pipe) -> None:
    p.write_config([f"{p.source.database}.*"])
    p.source_sql(
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))",
        "CREATE TABLE u (id INT PRIMARY KEY, n INT)",
        "INSERT INTO t VALUES (1, 'one')",
        "INSERT INTO u VALUES (1, 1)",
    )
    p.ok("sync", "--until-caught-up")
    # (DDL, a row after it, the table and the columns it has once the DDL ran)
    rounds = [
        ("ALTER TABLE t ADD COLUMN w INT", "INSERT INTO t VALUES (2, 'two', 2)", "t", "id v w"),
        ("ALTER TABLE t RENAME COLUMN v TO v2", "INSERT INTO t VALUES (3, 'x', 3)", "t", "id v2 w"),
        ("ALTER TABLE t CHANGE w w3 BIGINT", "INSERT INTO t VALUES (4, 'y', 4)", "t", "id v2 w3"),
        ("ALTER TABLE t DROP COLUMN w3", "INSERT INTO t VALUES (5, 'five')", "t", "id v2"),
        ("RENAME TABLE t TO t2", "INSERT INTO t2 VALUES (6, 'six')", "t2", "id v2"),
        (
            "RENAME TABLE t2 TO tmp, u TO t2, tmp TO u",
            "INSERT INTO u VALUES (7, 'z')",
            "u",
            "id v2",
        ),
    ]
    for ddl, after, table, columns in rounds:
        p.source_sql(ddl, after)
        p.ok("capture", "--until-caught-up")
        err = p.workdir / "apply-killed.err"
        with _checkpoint_locked(p), open(err, "w") as errf:
            proc = subprocess.Popen(
                p.cmd("apply", "--until-caught-up"),
                cwd=p.workdir,
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=errf,
            )
            try:
                deadline = time.monotonic() + 60
                while not _waiting_for_checkpoint(p):
                    assert proc.poll() is None, err.read_text()
                    assert time.monotonic() < deadline, f"apply never reached {ddl!r}"
                    time.sleep(0.05)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            # MariaDB committed the statement before the checkpoint; PostgreSQL did not
            ran = p.target_columns(table) == columns.split()
            assert ran == (p.kind == "mariadb"), (ddl, p.target_columns(table))
        res = p.run("apply", "--until-caught-up")
        assert res.returncode == 0, f"after {ddl!r}: {res.stderr}"
    assert p.target_columns("t2") == ["id", "n"]
    assert p.target_columns("u") == ["id", "v2"]
    assert "t" not in p.target_tables() and "tmp" not in p.target_tables()
    p.same("t2", "u")


# ------------------------------------------------------------- the same instant, in process


def test_crash_after_the_ddl_before_its_checkpoint(
    target: Any, options: dict[str, Any], schema_name: str
) -> None:
    """Every target: a crash between a DDL statement and the checkpoint's commit. PostgreSQL
    and DuckDB roll the statement back with the checkpoint; MariaDB commits it on its own and
    the restarted applier sees its mark and the column, and does not run it again."""
    from dataclasses import replace

    from apply.applier import Applier
    from apply.options import ApplyOptions
    from connectors.model import Change, Column, Op, TableId, TableSchema, Transaction
    from tests.apply.test_applier import content

    t = TableId("src", "t")
    v1 = TableSchema(
        t, (Column("id", "int", nullable=False), Column("v", "str", length=20)), ("id",)
    )
    v2 = replace(v1, columns=(*v1.columns, Column("w", "int", bits=32)), version=2)

    def txn(first: int, *changes: Change) -> Transaction:
        return Transaction(
            str(first), f"p{first}", dt.datetime(2024, 1, 1), "src", list(changes), first
        )

    txns = [
        txn(
            1,
            Change(Op.DDL, t, 1, table_schema=v1),
            Change(Op.INSERT, t, 1, after={"id": 1, "v": "a"}),
        ),
        txn(
            3, Change(Op.DDL, t, 2, ddl="ALTER TABLE `src`.`t` ADD COLUMN `w` INT", table_schema=v2)
        ),
        txn(4, Change(Op.INSERT, t, 2, after={"id": 2, "v": "b", "w": 7})),
    ]

    class Crash(Exception):
        pass

    opts = ApplyOptions(source_dialect="mysql", **options)
    writer = target.open_writer()
    real = writer.save_checkpoint

    def crash(source_id: str, target_id: str, op: int, *rest: Any) -> None:
        if op == 3:
            raise Crash
        real(source_id, target_id, op, *rest)

    writer.save_checkpoint = crash
    first = Applier(writer, None, opts)
    first.start()
    with pytest.raises(Crash):
        first.run(txns)
    writer.close()  # the process died: its open transaction is rolled back
    writer = target.open_writer()
    try:
        ran = "w" in writer.column_names(TableId(schema_name, "t"))
        writer.commit()
        assert ran == (not writer.transactional_ddl)
        second = Applier(writer, None, opts)
        assert second.start() == 2
        stats = second.run(txns)
        assert stats.applied_op == 4
        assert content(writer, TableId(schema_name, "t")) == [(1, "a", None), (2, "b", 7)]
    finally:
        writer.close()
