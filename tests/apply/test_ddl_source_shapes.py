"""MariaDB DDL shapes end to end (binlog capture -> trail -> apply to PostgreSQL, DuckDB and
MariaDB): tables named by reserved words (bare after a dot, as MariaDB allows, and
backquoted) or non-ASCII names, and CHANGE/MODIFY COLUMN. Each statement is applied on the
target, or stops naming it; none is dropped."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from apply.options import ApplyOptions
from apply.trail_apply import apply_trail
from capture.filters import CaptureFilter
from capture.runner import CaptureOptions, run_capture
from connectors.base import Database, TableFilter, open_database
from connectors.endpoint import Endpoint
from connectors.errors import ReplicationError
from connectors.model import TableId
from connectors.mysql.binlog import classify_query

_server_ids = itertools.count(4_199_810)


@dataclass
class Target:
    db: Database
    #: source table -> target table
    rename: Callable[[TableId], TableId]

    def columns(self, table: TableId) -> list[tuple[str, str, str]]:
        """(name, data type, nullable) of ``table``'s columns in order, from the catalog."""
        t = self.rename(table)
        sql = (
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE "
            f"table_schema = '{t.schema}' AND table_name = '{t.name}' ORDER BY ordinal_position"
        )
        return [(str(a), str(b).lower(), str(c)) for a, b, c in _query(self.db, sql)]

    def rows(self, table: TableId, columns: list[str]) -> list[tuple[Any, ...]]:
        q = self.db.quote
        name = self.db.qualified(self.rename(table))
        sql = f"SELECT {', '.join(q(c) for c in columns)} FROM {name}"
        return sorted(tuple(r) for r in _query(self.db, sql))

    def exists(self, table: TableId) -> bool:
        t = self.rename(table)
        sql = (
            "SELECT COUNT(*) FROM information_schema.tables WHERE "
            f"table_schema = '{t.schema}' AND table_name = '{t.name}'"
        )
        return bool(_query(self.db, sql)[0][0])


def _query(db: Database, sql: str) -> list[Any]:
    conn = db.connect()
    try:
        if db.engine == "mysql":
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()


@pytest.fixture(params=["postgresql", "duckdb", "mariadb"])
def target(request: pytest.FixtureRequest, tmp_path: Path, mysql_db: Endpoint) -> Iterator[Target]:
    if request.param == "duckdb":
        db = open_database(Endpoint.parse(f"duckdb://{tmp_path / 'shapes.duckdb'}"))
        yield Target(db, lambda t: t)
    elif request.param == "postgresql":
        yield Target(open_database(request.getfixturevalue("pg_db")), lambda t: t)
    else:
        # the same server: the target is another database
        other = f"{mysql_db.database}_target"
        _run(mysql_db, f"CREATE DATABASE `{other}`")
        ep = Endpoint.parse(f"mariadb://root@{mysql_db.host}:{mysql_db.port}/{other}")
        yield Target(open_database(ep), lambda t: TableId(other, t.name))
        _run(mysql_db, f"DROP DATABASE IF EXISTS `{other}`")


def _run(ep: Endpoint, *statements: str) -> None:
    conn = pymysql.connect(
        host=ep.host, port=ep.port, user="root", database=ep.database, autocommit=True
    )
    with conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)
    conn.close()


def _pipeline(source_ep: Endpoint, target: Target, trail: Path) -> Callable[..., None]:
    source = open_database(source_ep)
    capture = CaptureOptions(
        source_id="maria",
        filters=CaptureFilter(TableFilter((f"{source_ep.database}.*",))),
        until_caught_up=True,
        start_position=source.end_position(),
        reader_options={"server_id": next(_server_ids)},
    )
    tag = f"shapes-{source_ep.database}"

    def step(*statements: str) -> None:
        _run(source_ep, *statements)
        run_capture(source, trail, capture)
        writer = target.db.open_writer()
        try:
            # (a MariaDB target keeps its checkpoint server-wide: one target id per test)
            opts = ApplyOptions(target_id=tag, source_dialect="mysql", rename=target.rename)
            apply_trail(writer, trail, opts)
        finally:
            writer.close()

    return step


#: reserved words MariaDB takes bare after `db.`, and a non-ASCII name (bare everywhere)
NAMES = ["select", "from", "where", "key", "order", "group", "tést"]


def test_ddl_on_tables_named_by_reserved_words(
    mysql_db: Endpoint, target: Target, tmp_path: Path
) -> None:
    """TRUNCATE/ALTER/RENAME/DROP of `db.select` & co were dropped by capture without a word
    (sqlglot refuses the bare reserved word): now each is applied on every target."""
    db = mysql_db.database
    assert db
    step = _pipeline(mysql_db, target, tmp_path / "trail")
    tables = {n: TableId(db, n) for n in NAMES}
    step(
        *(f"CREATE TABLE `{n}` (id INT PRIMARY KEY, v INT)" for n in NAMES),
        *(f"INSERT INTO `{n}` VALUES (1, 1), (2, 2)" for n in NAMES),
    )
    for t in tables.values():
        assert target.rows(t, ["id", "v"]) == [(1, 1), (2, 2)]
    # bare names after the database, as MariaDB accepts them
    step(
        *(f"TRUNCATE {db}.{n}" for n in NAMES),
        *(f"INSERT INTO `{n}` VALUES (3, 3)" for n in NAMES),
        *(f"ALTER TABLE {db}.{n} ADD COLUMN w INT" for n in NAMES),
        *(f"INSERT INTO `{n}` VALUES (4, 4, 4)" for n in NAMES),
    )
    for t in tables.values():
        assert [c[0] for c in target.columns(t)] == ["id", "v", "w"]
        assert target.rows(t, ["id", "v", "w"]) == [(3, 3, None), (4, 4, 4)]
    step(
        # one statement renaming them all (RENAME TABLE a TO b, c TO d, ...)
        "RENAME TABLE " + ", ".join(f"{db}.{n} TO {db}.`{n}_2`" for n in NAMES),
        *(f"ALTER TABLE {db}.`{n}_2` RENAME TO {db}.{n}" for n in NAMES),
        *(f"INSERT INTO `{n}` VALUES (5, 5, 5)" for n in NAMES),
    )
    for n, t in tables.items():
        assert not target.exists(TableId(db, f"{n}_2"))
        assert target.rows(t, ["id", "v", "w"]) == [(3, 3, None), (4, 4, 4), (5, 5, 5)]
    # backquoted
    step(
        *(f"TRUNCATE TABLE `{n}`" for n in NAMES),
        *(f"ALTER TABLE `{n}` DROP COLUMN w" for n in NAMES),
        *(f"INSERT INTO `{n}` VALUES (6, 6)" for n in NAMES),
    )
    for t in tables.values():
        assert target.rows(t, ["id", "v"]) == [(6, 6)]
    half = len(NAMES) // 2
    step(
        *(f"DROP TABLE {db}.{n}" for n in NAMES[:half]),
        f"DROP TABLE {', '.join(f'`{n}`' for n in NAMES[half:])}",
    )
    for t in tables.values():
        assert not target.exists(t)


def _source_rows(ep: Endpoint, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    conn = pymysql.connect(host=ep.host, port=ep.port, user="root", database=ep.database)
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(columns)} FROM `{table}`")
        rows = sorted(tuple(r) for r in cur.fetchall())
    conn.close()
    return rows


def test_change_and_modify_column(mysql_db: Endpoint, target: Target, tmp_path: Path) -> None:
    """CHANGE [COLUMN] old new TYPE (with and without a rename) and MODIFY [COLUMN] stopped
    apply ("CHANGE COLUMN is not supported in this dialect"): now a rename plus a type and
    nullability change on every target."""
    db = mysql_db.database
    assert db
    step = _pipeline(mysql_db, target, tmp_path / "trail")
    c = TableId(db, "c")
    step(
        "CREATE TABLE c (id INT PRIMARY KEY, a INT, s VARCHAR(10), n INT NOT NULL)",
        "INSERT INTO c VALUES (1, 10, 'x', 1)",
    )
    step(
        "ALTER TABLE c CHANGE a a2 BIGINT",
        "INSERT INTO c VALUES (2, 9000000000, 'y', 2)",
        "ALTER TABLE c CHANGE COLUMN s s VARCHAR(40) NOT NULL",
        "INSERT INTO c VALUES (3, 3, 'thirty characters long, yes..', 3)",
        "ALTER TABLE c MODIFY n BIGINT NULL",
        "INSERT INTO c VALUES (4, 4, 'z', NULL)",
    )
    cols = target.columns(c)
    assert [x[0] for x in cols] == ["id", "a2", "s", "n"]
    nullable = {name: flag for name, _t, flag in cols}
    assert (nullable["s"], nullable["n"]) == ("NO", "YES")
    assert "big" in dict((n, t) for n, t, _f in cols)["a2"]
    names = ["id", "a2", "s", "n"]
    assert target.rows(c, names) == _source_rows(mysql_db, "c", names)
    step(
        "ALTER TABLE c MODIFY COLUMN a2 DECIMAL(20,2), CHANGE n n_renamed INT, ADD COLUMN e INT",
        "INSERT INTO c VALUES (5, 12.5, 'w', 5, 7)",
    )
    names = ["id", "a2", "s", "n_renamed", "e"]
    assert [x[0] for x in target.columns(c)] == names
    assert target.rows(c, names) == _source_rows(mysql_db, "c", names)
    # MariaDB's CREATE OR REPLACE TABLE replaces the table: the target's went unchanged
    step(
        "CREATE OR REPLACE TABLE c (id INT PRIMARY KEY, z VARCHAR(5))",
        "INSERT INTO c VALUES (9, 'new')",
    )
    assert [x[0] for x in target.columns(c)] == ["id", "z"]
    assert target.rows(c, ["id", "z"]) == [(9, "new")]


@pytest.mark.parametrize(
    ("sql", "kind", "tables"),
    [
        ("TRUNCATE acc.select", "truncate", ["acc.select"]),
        ("TRUNCATE TABLE `where`", "truncate", ["acc.where"]),
        ("ALTER TABLE acc.key ADD x INT", "alter", ["acc.key"]),
        ("ALTER ONLINE IGNORE TABLE IF EXISTS acc.order ADD x INT", "alter", ["acc.order"]),
        (
            "DROP TABLE IF EXISTS acc.group, `from` /* generated by server */",
            "drop",
            ["acc.group", "acc.from"],
        ),
        (
            "RENAME TABLE acc.order TO acc.o2, a TO b",
            "rename",
            ["acc.order", "acc.o2", "acc.a", "acc.b"],
        ),
        ("ALTER TABLE acc.select RENAME TO acc.where", "rename", ["acc.select", "acc.where"]),
        ("CREATE UNIQUE INDEX ix ON acc.key (a)", "alter", ["acc.key"]),
        ("DROP INDEX ix ON acc.select", "alter", ["acc.select"]),
        ("/* c */ CREATE TABLE tést (id INT)", "create", ["acc.tést"]),
        ("ALTER TABLE (", "unknown", []),
        ("DROP TABLE", "unknown", []),
    ],
)
def test_classify_names_every_table(sql: str, kind: str, tables: list[str]) -> None:
    ddl = classify_query(sql, "acc")
    assert ddl is not None
    assert (ddl.kind, [str(t) for t in ddl.tables]) == (kind, tables)


@pytest.mark.parametrize(
    "sql", ["CREATE USER u", "DROP VIEW v", "CREATE DATABASE d", "ALTER USER u", "SET x = 1"]
)
def test_classify_statements_about_no_table(sql: str) -> None:
    assert classify_query(sql, "acc") is None


def test_unreadable_ddl_stops_capture(mysql_db: Endpoint) -> None:
    """A DDL whose table names cannot be read stops capture naming the statement (it may
    touch a captured table), instead of going by."""
    import types

    reader = open_database(mysql_db).open_log(None, tables=TableFilter())
    event = types.SimpleNamespace(query="DROP TABLE", schema=mysql_db.database)
    reader._here = 4  # type: ignore[attr-defined]  # (set by the event loop)
    try:
        with pytest.raises(ReplicationError, match=r"'DROP TABLE'.*stopping rather than drop"):
            reader._query(event, reader_txn())  # type: ignore[attr-defined]
    finally:
        reader.close()


def reader_txn() -> Any:
    from connectors.mysql.binlog import _Txn

    return _Txn()


def test_drop_database_drops_its_captured_tables(mysql_db: Endpoint, tmp_path: Path) -> None:
    """DROP DATABASE went by as "no table": it is recorded as a DROP TABLE of each table of
    that database the trail knows."""
    import threading

    from capture.trail import TrailReader
    from connectors.model import Op

    db = f"{mysql_db.database}_x"  # (capture itself connects to the fixture's database)
    source = open_database(mysql_db)
    trail = tmp_path / "trail"
    opts = CaptureOptions(
        source_id="maria",
        filters=CaptureFilter(TableFilter((f"{db}.*",))),
        until_caught_up=True,
        start_position=source.end_position(),
        stop_event=threading.Event(),
        max_retries=0,
        reader_options={"server_id": next(_server_ids)},
    )
    _run(
        mysql_db,
        f"CREATE DATABASE `{db}`",
        f"CREATE TABLE `{db}`.a (id INT PRIMARY KEY)",
        f"CREATE TABLE `{db}`.`order` (id INT PRIMARY KEY)",
        f"INSERT INTO `{db}`.a VALUES (1)",
        f"DROP DATABASE `{db}`",
    )
    run_capture(source, trail, opts)
    dropped = [
        (c.table.name, c.ddl)
        for t in TrailReader(trail).transactions()
        for c in t.changes
        if c.op is Op.DDL and c.ddl and c.table_schema is None
    ]
    text = f"DROP TABLE IF EXISTS `{db}`.`a`, `{db}`.`order`"
    assert sorted(dropped) == [("a", text), ("order", text)]
