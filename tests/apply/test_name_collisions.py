"""Names that one target folds into one: refused before loading, naming both (CLI subprocess)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pymysql

from connectors.endpoint import Endpoint
from tests.clirun import first_error
from tests.clirun import redoline as run_cli


def redoline(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd)


def test_tables_differing_in_case_into_duckdb(mysql_db: Endpoint, tmp_path: Path) -> None:
    conn = pymysql.connect(
        host=mysql_db.host,
        port=mysql_db.port,
        user="root",
        database=mysql_db.database,
        autocommit=True,
    )
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE `Dup` (id INT PRIMARY KEY)")
        cur.execute("CREATE TABLE `dup` (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO `Dup` VALUES (1)")
    src = f"mariadb://root@{mysql_db.host}:{mysql_db.port}/{mysql_db.database}"
    # snapshot path
    proc = redoline(
        tmp_path,
        "sync",
        "--source",
        src,
        "--target",
        f"duckdb://{tmp_path}/a.duckdb",
        "--trail",
        "t1",
        "--until-caught-up",
    )
    assert proc.returncode == 6, proc.stderr
    line = first_error(proc)
    assert ".Dup" in line and ".dup" in line and "case" in line
    assert "[tables.rename]" in proc.stderr
    # streaming path: the tables appear after the first run
    with conn.cursor() as cur:
        cur.execute("DROP TABLE `Dup`, `dup`")
    assert (
        redoline(
            tmp_path, "capture", "--source", src, "--trail", "t2", "--until-caught-up"
        ).returncode
        == 0
    )
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE `Dup` (id INT PRIMARY KEY)")
        cur.execute("CREATE TABLE `dup` (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO `dup` VALUES (2)")
        cur.execute("INSERT INTO `Dup` VALUES (3)")
    conn.close()
    assert (
        redoline(
            tmp_path, "capture", "--source", src, "--trail", "t2", "--until-caught-up"
        ).returncode
        == 0
    )
    proc = redoline(
        tmp_path,
        "apply",
        "--trail",
        "t2",
        "--target",
        f"duckdb://{tmp_path}/b.duckdb",
        "--until-caught-up",
    )
    assert proc.returncode == 6, proc.stderr
    line = first_error(proc)
    assert ".Dup" in line and ".dup" in line


def test_columns_differing_in_case_into_mariadb(
    pg_db: Endpoint, mysql_db: Endpoint, tmp_path: Path
) -> None:
    with psycopg.connect(
        f"host={pg_db.host} port={pg_db.port} user=postgres dbname={pg_db.database}",
        autocommit=True,
    ) as conn:
        conn.execute('CREATE TABLE t (id int PRIMARY KEY, "A" int, "a" int)')
        conn.execute("INSERT INTO t VALUES (1, 2, 3)")
    proc = redoline(
        tmp_path,
        "sync",
        "--source",
        f"postgresql://postgres@{pg_db.host}:{pg_db.port}/{pg_db.database}",
        "--target",
        f"mariadb://root@{mysql_db.host}:{mysql_db.port}/{mysql_db.database}",
        "--trail",
        "t",
        "--until-caught-up",
    )
    assert proc.returncode == 6, proc.stderr
    line = first_error(proc)
    assert "'A'" in line and "'a'" in line and "public.t" in line


def test_apply_alone_refuses_an_unfinished_snapshot(mysql_db: Endpoint, tmp_path: Path) -> None:
    """A sync killed during its snapshot leaves a table half loaded; `apply` run alone then
    must not write the trail's changes onto it (campaign seed 20003: "the row to delete is
    not in" the target)."""
    import duckdb

    from apply.snapshot import STATE_SCHEMA, TABLES

    conn = pymysql.connect(
        host=mysql_db.host,
        port=mysql_db.port,
        user="root",
        database=mysql_db.database,
        autocommit=True,
    )
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO t VALUES (1), (2)")
    src = f"mariadb://root@{mysql_db.host}:{mysql_db.port}/{mysql_db.database}"
    target = f"duckdb://{tmp_path}/a.duckdb"
    first = redoline(
        tmp_path, "sync", "--source", src, "--target", target, "--trail", "t", "--until-caught-up"
    )
    assert first.returncode == 0, first.stderr
    # as a kill -9 in the middle of the snapshot leaves it
    with duckdb.connect(str(tmp_path / "a.duckdb")) as db:
        db.execute(f"UPDATE {STATE_SCHEMA}.{TABLES} SET state = 'loading'")
    with conn.cursor() as cur:
        cur.execute("DELETE FROM t WHERE id = 1")
    conn.close()
    assert (
        redoline(
            tmp_path, "capture", "--source", src, "--trail", "t", "--until-caught-up"
        ).returncode
        == 0
    )
    proc = redoline(tmp_path, "apply", "--trail", "t", "--target", target, "--until-caught-up")
    assert proc.returncode == 6, proc.stderr
    line = first_error(proc)
    assert "did not finish" in line and ".t (loading)" in line
    # sync finishes the snapshot and then applies
    again = redoline(
        tmp_path, "sync", "--source", src, "--target", target, "--trail", "t", "--until-caught-up"
    )
    assert again.returncode == 0, again.stderr
    with duckdb.connect(str(tmp_path / "a.duckdb"), read_only=True) as db:
        rows = db.execute(f'SELECT id FROM "{mysql_db.database}".t ORDER BY id').fetchall()
    assert rows == [(2,)]


def test_a_url_database_is_what_sync_replicates(mysql_db: Endpoint, tmp_path: Path) -> None:
    """`mariadb://h/shop` replicates shop: not the other databases of the server, and never
    redoline's own state database, which a MariaDB target on the same server keeps (found when
    the full suite ran: a DuckDB target received other tests' checkpoints)."""
    import duckdb

    conn = pymysql.connect(
        host=mysql_db.host,
        port=mysql_db.port,
        user="root",
        database=mysql_db.database,
        autocommit=True,
    )
    other = f"{mysql_db.database}_other"
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO t VALUES (1)")
        cur.execute(f"CREATE DATABASE `{other}`")
        cur.execute(f"CREATE TABLE `{other}`.o (id INT PRIMARY KEY)")
        cur.execute("CREATE DATABASE IF NOT EXISTS redoline")
        cur.execute("CREATE TABLE IF NOT EXISTS redoline.not_data (id INT PRIMARY KEY)")
    try:
        src = f"mariadb://root@{mysql_db.host}:{mysql_db.port}/{mysql_db.database}"
        target = f"duckdb://{tmp_path}/a.duckdb"
        cron_sync = (
            "sync",
            "--source",
            src,
            "--target",
            target,
            "--trail",
            "t",
            "--until-caught-up",
        )
        proc = redoline(tmp_path, *cron_sync)
        assert proc.returncode == 0, proc.stderr
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{other}`.o VALUES (1)")
            cur.execute("INSERT INTO t VALUES (2)")
        proc = redoline(tmp_path, *cron_sync)
        assert proc.returncode == 0, proc.stderr
        with duckdb.connect(str(tmp_path / "a.duckdb"), read_only=True) as db:
            tables = db.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema <> 'redoline' ORDER BY 1, 2"
            ).fetchall()
            ours = db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'redoline'"
            ).fetchall()
            rows = db.execute(f'SELECT id FROM "{mysql_db.database}".t ORDER BY id').fetchall()
        assert tables == [(mysql_db.database, "t")]
        assert ("not_data",) not in ours
        assert rows == [(1,), (2,)]
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{other}`")
            cur.execute("DROP TABLE IF EXISTS redoline.not_data")
        conn.close()
