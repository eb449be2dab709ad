"""Column DDL on a PostgreSQL source reaches every target (pgoutput carries no DDL: capture
turns a changed Relation message into ALTER TABLE, the catalog's attnum tells a rename from a
drop plus an add), through the CLI in a subprocess; judged by plain driver SELECTs."""

from __future__ import annotations

import json
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

from connectors import devservers
from connectors.endpoint import Endpoint

CLI = [sys.executable, "-c", "from toolkit_cli.app import main; main()"]


def _dsn(ep: Endpoint) -> str:
    return f"host={ep.host} port={ep.port} user=postgres dbname={ep.database}"


def _source(ep: Endpoint) -> tuple[list[str], list[tuple[str, ...]]]:
    with psycopg.connect(_dsn(ep)) as conn:
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "'public' AND table_name = 't' ORDER BY ordinal_position"
            )
        ]
        rows = conn.execute("SELECT * FROM public.t ORDER BY id").fetchall()
    return cols, [tuple("" if v is None else str(v) for v in r) for r in rows]


def _target(kind: str, url: str, cols_of: str = "t") -> tuple[list[str], list[tuple[str, ...]]]:
    if kind == "duckdb":
        conn: Any = duckdb.connect(url.removeprefix("duckdb://"), read_only=True)
        cur = conn
        q = "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
        q += f"AND table_name = '{cols_of}' ORDER BY ordinal_position"
        cols = [r[0] for r in cur.execute(q).fetchall()]
        rows = cur.execute(f"SELECT * FROM public.{cols_of} ORDER BY id").fetchall()
        conn.close()
    elif kind == "postgresql":
        ep = Endpoint.parse(url)
        with psycopg.connect(_dsn(ep)) as conn:
            q = "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            q += f"'public' AND table_name = '{cols_of}' ORDER BY ordinal_position"
            cols = [r[0] for r in conn.execute(q)]
            rows = conn.execute(f"SELECT * FROM public.{cols_of} ORDER BY id").fetchall()
    else:
        ep = Endpoint.parse(url)
        conn = pymysql.connect(host=ep.host, port=ep.port, user="root")
        with conn.cursor() as cur:
            cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                f"'public' AND table_name = '{cols_of}' ORDER BY ordinal_position"
            )
            cols = [r[0] for r in cur.fetchall()]
            cur.execute(f"SELECT * FROM `public`.`{cols_of}` ORDER BY id")
            rows = list(cur.fetchall())
        conn.close()
    return cols, [tuple("" if v is None else str(v) for v in r) for r in rows]


#: table t with ten rows, the start of most tests here
_TEN_ROWS = (
    "CREATE TABLE t (id INT PRIMARY KEY, a TEXT)",
    "INSERT INTO t SELECT i, 'a' || i FROM generate_series(1, 10) i",
)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _prepared(pg_db: Endpoint, target: str, tmp_path: Path, *statements: str) -> list[str]:
    """Run ``statements`` on the source; the sync arguments for ``target``."""
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)
    args = ["--source", pg_db.url(), "--target", target, "--trail", str(tmp_path / "trail")]
    return [*args, "--tables", "public.*"]


def _synced(pg_db: Endpoint, target: str, tmp_path: Path, *statements: str) -> list[str]:
    """:func:`_prepared`, then a first `sync --until-caught-up` (snapshot) that must succeed."""
    args = _prepared(pg_db, target, tmp_path, *statements)
    res = _run(["sync", *args, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    return args


def _pg_target(server: devservers.DevServer, name: str) -> str:
    dsn = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:{server.port}/{name}"


def _target_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path, tag: str) -> str:
    if kind == "duckdb":
        return f"duckdb://{tmp_path}/r.duckdb"
    if kind == "postgresql":
        return _pg_target(request.getfixturevalue("postgres_server"), f"tgt_{tag}")
    server = request.getfixturevalue("mariadb_server")
    conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root")
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS `public`")  # the source schema's database
        # the session's MariaDB is every MariaDB test's target: redoline's state database is
        # server-wide, so forget what earlier tests recorded under the default ids
        cur.execute(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = 'redoline' AND column_name = 'source_id'"
        )
        for (table,) in cur.fetchall():
            cur.execute(f"DELETE FROM redoline.`{table}` WHERE source_id = 'default'")
    conn.commit()
    conn.close()
    return f"mariadb://root@127.0.0.1:{server.port}/mysql"


@pytest.mark.parametrize("kind", ["postgresql", "mariadb", "duckdb"])
def test_column_ddl_between_cron_runs(
    kind: str, pg_db: Endpoint, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """add / rename (confirmed by attnum) / drop + add at the same position / retype, each
    with rows before and after, between two `sync --until-caught-up` runs."""
    target = _target_url(kind, request, tmp_path, "cron")
    args = _synced(
        pg_db,
        target,
        tmp_path,
        "CREATE TABLE t (id INT PRIMARY KEY, a TEXT, b INT, c TEXT)",
        "INSERT INTO t SELECT i, 'a' || i, i, 'c' || i FROM generate_series(1, 20) i",
    )
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (21, 'a21', 21, 'c21')")
        conn.execute("ALTER TABLE t ADD COLUMN d INT")
        conn.execute("INSERT INTO t VALUES (22, 'a22', 22, 'c22', 22)")
        conn.execute("UPDATE t SET d = id WHERE id < 5")
        conn.execute("ALTER TABLE t RENAME COLUMN b TO bb")
        conn.execute("UPDATE t SET bb = bb + 100 WHERE id BETWEEN 5 AND 8")
        conn.execute("ALTER TABLE t RENAME COLUMN d TO dd")  # the last column, renamed
        conn.execute("INSERT INTO t VALUES (23, 'a23', 23, 'c23', 23)")
        conn.execute("ALTER TABLE t DROP COLUMN c")
        conn.execute("DELETE FROM t WHERE id = 3")
        conn.execute("ALTER TABLE t DROP COLUMN dd, ADD COLUMN e INT")  # same spot, new column
        conn.execute("INSERT INTO t VALUES (24, 'a24', 24, 24)")
        conn.execute("ALTER TABLE t ALTER COLUMN bb TYPE BIGINT")
        conn.execute("INSERT INTO t VALUES (25, 'a25', 5000000000, 25)")
    res = _run(["sync", *args, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    want = _source(pg_db)
    assert want[0] == ["id", "a", "bb", "e"]
    assert _target(kind, target) == want


def test_column_ddl_during_continuous_sync(
    pg_db: Endpoint, postgres_server: devservers.DevServer, tmp_path: Path
) -> None:
    """A continuous `redoline sync` sees add, rename and drop while it runs; SIGTERM ends it."""
    target = _pg_target(postgres_server, "tgt_cont")
    args = _prepared(
        pg_db,
        target,
        tmp_path,
        "CREATE TABLE t (id INT PRIMARY KEY, a TEXT, b INT)",
        "INSERT INTO t SELECT i, 'a' || i, i FROM generate_series(1, 10) i",
    )
    proc = subprocess.Popen(
        [*CLI, "sync", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        loaded = _wait(target, _source(pg_db), proc)
        assert loaded == _source(pg_db)  # the snapshot is in: what follows is captured
        with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
            conn.execute("INSERT INTO t VALUES (11, 'a11', 11)")
            conn.execute("ALTER TABLE t ADD COLUMN c TEXT")
            conn.execute("INSERT INTO t VALUES (12, 'a12', 12, 'c12')")
            conn.execute("ALTER TABLE t RENAME COLUMN b TO bb")
            conn.execute("UPDATE t SET bb = -bb WHERE id < 4")
            conn.execute("ALTER TABLE t DROP COLUMN a")
            conn.execute("INSERT INTO t VALUES (13, 13, 'c13')")
        want = _source(pg_db)
        assert _wait(target, want, proc) == want
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err  # documented exit code of SIGTERM
    assert "captured" in out


def _wait(target: str, want: Any, proc: subprocess.Popen[str]) -> Any:
    deadline = time.monotonic() + 30
    got: Any = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            got = _target("postgresql", target)
        except psycopg.Error:
            got = None
        if got == want:
            break
        time.sleep(0.3)
    return got


def test_table_created_during_continuous_sync(
    pg_db: Endpoint, postgres_server: devservers.DevServer, tmp_path: Path
) -> None:
    """A table created while `redoline sync` runs is loaded without stopping it (capture
    snapshots it at an exact point of the stream and carries its rows in the trail; it used
    to stop with exit 6); later runs keep it, and tables created between cron runs are
    snapshotted by the next run."""
    target = _pg_target(postgres_server, "tgt_newtable")
    args = _prepared(
        pg_db,
        target,
        tmp_path,
        *_TEN_ROWS,
    )
    proc = subprocess.Popen(
        [*CLI, "sync", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait(target, _source(pg_db), proc) == _source(pg_db)
        with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
            conn.execute("INSERT INTO t VALUES (11, 'a11')")
            conn.execute("CREATE TABLE t2 (id INT PRIMARY KEY, v TEXT)")
            conn.execute("INSERT INTO t2 SELECT i, 'v' || i FROM generate_series(1, 30) i")
        want_t2 = (["id", "v"], [(str(i), f"v{i}") for i in range(1, 31)])
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if _target("postgresql", target, "t2") == want_t2:
                    break
            except psycopg.Error:
                pass
            time.sleep(0.3)
        assert proc.poll() is None, proc.communicate()
        got_t2 = _target("postgresql", target, "t2")
        if got_t2 != want_t2:
            proc.send_signal(signal.SIGTERM)
            pytest.fail(f"t2 on the target: {got_t2}; sync said: {proc.communicate(timeout=60)}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("INSERT INTO t2 VALUES (31, 'v31')")
        conn.execute("UPDATE t2 SET v = 'u' WHERE id < 5")
    res = _run(["sync", *args, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _target("postgresql", target) == _source(pg_db)
    with psycopg.connect(_dsn(pg_db)) as conn:
        want2 = [(str(i), str(v)) for i, v in conn.execute("SELECT * FROM t2 ORDER BY id")]
    tgt = Endpoint.parse(target)
    with psycopg.connect(_dsn(tgt)) as conn:
        got2 = [(str(i), str(v)) for i, v in conn.execute("SELECT * FROM public.t2 ORDER BY id")]
    assert len(want2) == 31 and got2 == want2
    # a table created between two cron runs: the run snapshots it, then captures it
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE t3 (id INT PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t3 SELECT i, 'x' || i FROM generate_series(1, 7) i")
    res = _run(["sync", *args, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("INSERT INTO t3 VALUES (8, 'x8')")
    res = _run(["sync", *args, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    with psycopg.connect(_dsn(tgt)) as conn:
        got3 = [(str(i), str(v)) for i, v in conn.execute("SELECT * FROM public.t3 ORDER BY id")]
    assert got3 == [(str(i), f"x{i}") for i in range(1, 9)]


def test_column_added_before_the_first_captured_change(
    pg_db: Endpoint, postgres_server: devservers.DevServer, tmp_path: Path
) -> None:
    """The table's rows came by snapshot, so the trail's first definition of it already has
    the new column: apply adds what the target lacks (campaign seed 110)."""
    target = _pg_target(postgres_server, "tgt_first")
    args = _synced(
        pg_db,
        target,
        tmp_path,
        *_TEN_ROWS,
    )
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("ALTER TABLE t ADD COLUMN d TIMESTAMP(6)")
        conn.execute("UPDATE t SET d = '1970-01-01 00:00:00.000001' WHERE id = 4")
    res = _run(["sync", *args, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _target("postgresql", target) == _source(pg_db)


@pytest.mark.parametrize("kind", ["postgresql", "mariadb", "duckdb"])
def test_column_ddl_with_no_row_change_after_it(
    kind: str, pg_db: Endpoint, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """pgoutput announces a new column list only with the table's next row change: a column
    dropped (and another added) on a table that then takes no writes reached no target, and
    every cron run ended "caught up" (campaign seed 30007). Capture now writes the table's
    definition into the WAL itself, under a lock that holds ALTER back."""
    target = _target_url(kind, request, tmp_path, "quiet")
    args = _synced(
        pg_db,
        target,
        tmp_path,
        "CREATE TABLE t (id INT PRIMARY KEY, a TEXT, b INT)",
        "CREATE TABLE busy (id INT PRIMARY KEY)",
        "INSERT INTO t SELECT i, 'a' || i, i FROM generate_series(1, 5) i",
    )
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("ALTER TABLE t DROP COLUMN b")
        conn.execute("INSERT INTO busy VALUES (1)")  # other tables keep changing
    res = _run(["sync", *args, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _target(kind, target) == _source(pg_db)
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("ALTER TABLE t ADD COLUMN c TIMESTAMP(6)")
    # the stage-by-stage flow too
    trail = ["--trail", str(tmp_path / "trail")]
    res = _run(["capture", "--source", pg_db.url(), *trail, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    res = _run(["apply", "--target", target, *trail, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    want = _source(pg_db)
    assert want[0] == ["id", "a", "c"]
    assert _target(kind, target) == want
    # nothing changed since: further runs write nothing new
    stats = ["trail", "stats", *trail, "--json"]
    before = json.loads(_run(stats, tmp_path).stdout)["last_op"]
    for _ in range(2):
        res = _run(["sync", *args, "--until-caught-up"], tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(_run(stats, tmp_path).stdout)["last_op"] == before


def test_a_column_added_and_dropped_between_two_runs(
    pg_db: Endpoint, postgres_server: devservers.DevServer, tmp_path: Path
) -> None:
    """A column added with a row change (announced by its Relation) then dropped with none,
    both before one `sync --until-caught-up`: the start-up look saw the trail and the catalog
    agree (neither had it), the stream then announced the ADD, and nothing the DROP (campaign
    seed 34094). The run looks again once it reaches its end."""
    target = _pg_target(postgres_server, "tgt_add_drop")
    args = _synced(
        pg_db,
        target,
        tmp_path,
        "CREATE TABLE t (id INT PRIMARY KEY, a TEXT)",
        "INSERT INTO t SELECT i, 'a' || i FROM generate_series(1, 5) i",
    )
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("ALTER TABLE t ADD COLUMN c2 TIMESTAMP(6)")
        conn.execute("UPDATE t SET c2 = '2001-02-03 04:05:06' WHERE id = 2")
        conn.execute("ALTER TABLE t DROP COLUMN c2")
    res = _run(["sync", *args, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    want = _source(pg_db)
    assert want[0] == ["id", "a"]
    assert _target("postgresql", target) == want


def test_a_rename_after_an_earlier_drop_keeps_its_values(
    pg_db: Endpoint, postgres_server: devservers.DevServer, tmp_path: Path
) -> None:
    """A column dropped, a cron run, then another column renamed, with rows changed after:
    the dropped column's slot sits between the renamed column and the one before it, so the
    catalog alone cannot tell the rename from DROP + ADD; the attnums recorded with the
    definition can (campaign seed 50057: the renamed column's values became NULL)."""
    target = _pg_target(postgres_server, "tgt_rename_after_drop")
    args = _synced(
        pg_db,
        target,
        tmp_path,
        "CREATE TABLE t (id INT PRIMARY KEY, a TEXT, b TEXT)",
        "INSERT INTO t SELECT i, 'a' || i, 'b' || i FROM generate_series(1, 5) i",
    )
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("ALTER TABLE t DROP COLUMN a")
        conn.execute("UPDATE t SET b = 'b1!' WHERE id = 1")
    res = _run(["sync", *args, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("ALTER TABLE t RENAME COLUMN b TO b_r1")
        conn.execute("INSERT INTO t VALUES (6, 'six')")
    res = _run(["sync", *args, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    want = _source(pg_db)
    assert want[0] == ["id", "b_r1"]
    assert _target("postgresql", target) == want
    assert "DROP + ADD" not in res.stderr


def test_a_drop_and_a_rename_in_one_stretch(
    pg_db: Endpoint, postgres_server: devservers.DevServer, tmp_path: Path
) -> None:
    """One column dropped and the next renamed with no capture between: the renamed column
    moves one place left, so it is no positional twin of its old self; the recorded attnums
    still pair them (campaign seed 34083: the renamed column's values became NULL)."""
    target = _pg_target(postgres_server, "tgt_drop_and_rename")
    args = _synced(
        pg_db,
        target,
        tmp_path,
        "CREATE TABLE t (id INT PRIMARY KEY, a TEXT, b NUMERIC(10,2))",
        "INSERT INTO t SELECT i, 'a' || i, i * 1.5 FROM generate_series(1, 5) i",
    )
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("ALTER TABLE t DROP COLUMN a")
        conn.execute("ALTER TABLE t RENAME COLUMN b TO b_r1")
        conn.execute("UPDATE t SET b_r1 = -1 WHERE id = 5")
    res = _run(["sync", *args, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    want = _source(pg_db)
    assert want[0] == ["id", "b_r1"]
    assert _target("postgresql", target) == want


def test_table_created_before_a_capture_run_is_snapshotted_into_the_trail(
    pg_db: Endpoint, postgres_server: devservers.DevServer, tmp_path: Path
) -> None:
    """A table that matches [tables] but is not in the publication yet when `redoline capture`
    starts (created after the slot's snapshot, e.g. between sync's snapshot and its capture,
    CI failure) has rows in no log capture reads: capture snapshots it into the trail at an
    exact point, and apply loads it (it used to add it to the publication "from now on", and
    its rows never reached the target)."""
    target = _pg_target(postgres_server, "tgt_beforecap")
    args = _synced(
        pg_db,
        target,
        tmp_path,
        *_TEN_ROWS,
    )
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE t2 (id INT PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t2 SELECT i, 'v' || i FROM generate_series(1, 30) i")
    (tmp_path / "redoline.toml").write_text('[tables]\ninclude = ["public.*"]\n')
    source, trail = args[:2], args[4:6]
    res = _run(["capture", *source, *trail, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "new table(s) public.t2" in res.stderr
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("UPDATE t2 SET v = 'u' WHERE id < 5")
    res = _run(["capture", *source, *trail, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    res = _run(["apply", "--target", target, *trail, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    want = [(str(i), "u" if i < 5 else f"v{i}") for i in range(1, 31)]
    assert _target("postgresql", target, "t2") == (["id", "v"], want)


#: `redoline` whose capture never starts: a sync that stops right after its snapshot, as a
#: kill at that moment would (deterministically)
_STOP_AFTER_SNAPSHOT = """
import capture.runner
def stop(*args, **kwargs):
    raise SystemExit(99)
capture.runner.run_capture = stop
from toolkit_cli.app import main
main()
"""


def test_column_renamed_between_the_snapshot_and_capture_keeps_its_values(
    pg_db: Endpoint, postgres_server: devservers.DevServer, tmp_path: Path
) -> None:
    """A sync stops after its snapshot, before capture wrote any definition of the table; a
    column is renamed; the next sync's first definition of the table is announced with the
    RENAME against the definition the snapshot loaded (recorded beside the trail), so the
    loaded rows keep their values (campaign seed 43004: the column was dropped and added
    again, and the snapshot's rows held NULL in it, with a warning and exit 0). A dropped
    column's slot below the renamed one keeps the catalog alone from telling."""
    target = _pg_target(postgres_server, "tgt_snaprename")
    args = _prepared(
        pg_db,
        target,
        tmp_path,
        "CREATE TABLE t (id INT PRIMARY KEY, a TEXT, x INT, b TEXT)",
        "ALTER TABLE t DROP COLUMN x",
        "INSERT INTO t SELECT i, 'a' || i, 'b' || i FROM generate_series(1, 10) i",
    )
    loaded = _source(pg_db)
    res = subprocess.run(
        [sys.executable, "-c", _STOP_AFTER_SNAPSHOT, "sync", *args, "--until-caught-up"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 99, res.stdout + res.stderr
    assert _target("postgresql", target) == loaded
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("ALTER TABLE t RENAME COLUMN b TO bb")
        conn.execute("INSERT INTO t VALUES (11, 'a11', 'b11')")
    res = _run(["sync", *args, "--until-caught-up"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    want = _source(pg_db)
    assert want[0] == ["id", "a", "bb"] and len(want[1]) == 11
    assert _target("postgresql", target) == want
