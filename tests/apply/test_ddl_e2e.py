"""DDL end to end: MariaDB statements captured from the binlog, translated and applied to
PostgreSQL and DuckDB; untranslatable DDL stops apply naming it, ``skip_ddl`` skips it loudly.
"""

from __future__ import annotations

import logging
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
from connectors.errors import ApplyError, SchemaError
from connectors.model import TableId
from tests.apply.test_e2e import read_rows


@pytest.fixture(params=["postgresql", "duckdb"])
def ddl_target(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "duckdb":
        return open_database(Endpoint.parse(f"duckdb://{tmp_path / 'ddl.duckdb'}"))
    return open_database(request.getfixturevalue("pg_db"))


def _run(ep: Endpoint, *statements: str) -> None:
    conn = pymysql.connect(
        host=ep.host, port=ep.port, user="root", database=ep.database, autocommit=True
    )
    with conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)
    conn.close()


def _columns(db: Database, table: TableId) -> list[str]:
    conn = db.connect()
    try:
        sql = (
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            f"'{table.schema}' AND table_name = '{table.name}' ORDER BY ordinal_position"
        )
        rows = conn.execute(sql).fetchall()
    finally:
        conn.close()
    return [r[0] for r in rows]


def _exists(db: Database, table: TableId) -> bool:
    writer = db.open_writer()
    try:
        return writer.table_exists(table)
    finally:
        writer.close()


def test_mariadb_ddl_to_postgres_and_duckdb(
    mysql_db: Endpoint, ddl_target: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = open_database(mysql_db)
    schema = mysql_db.database
    trail = tmp_path / "trail"
    capture = CaptureOptions(
        source_id="maria",
        filters=CaptureFilter(TableFilter((f"{schema}.*",))),
        until_caught_up=True,
        start_position=source.end_position(),
        reader_options={"server_id": 4_199_707},
    )

    def step(*statements: str, skip_ddl: bool = False) -> Any:
        _run(mysql_db, *statements)
        run_capture(source, trail, capture)
        writer = ddl_target.open_writer()
        try:
            opts = ApplyOptions(target_id="ddl", source_dialect="mysql", skip_ddl=skip_ddl)
            return apply_trail(writer, trail, opts)
        finally:
            writer.close()

    t = TableId(schema, "t")
    step(
        "CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(10), b INT)",
        "INSERT INTO t VALUES (1, 'x', 10), (2, 'y', 20)",
    )
    assert _columns(ddl_target, t) == ["id", "a", "b"]
    step(
        "ALTER TABLE t ADD COLUMN c DECIMAL(8,3) NULL, ADD COLUMN u BIGINT UNSIGNED",
        "INSERT INTO t VALUES (3, 'z', 30, 1.250, 18446744073709551615)",
        "ALTER TABLE t DROP COLUMN b",
        "UPDATE t SET c = 2.5 WHERE id = 1",
        "ALTER TABLE t RENAME COLUMN a TO name",
        "INSERT INTO t VALUES (4, 'w', NULL, NULL)",
    )
    assert _columns(ddl_target, t) == ["id", "name", "c", "u"]
    cols = ["id", "name", "c", "u"]
    assert read_rows(ddl_target, t, cols, {}) == read_rows(source, t, cols, {})
    step("RENAME TABLE t TO t2", "INSERT INTO t2 VALUES (5, 'v', 1, 1)")
    t2 = TableId(schema, "t2")
    assert not _exists(ddl_target, t) and _exists(ddl_target, t2)
    assert read_rows(ddl_target, t2, cols, {}) == read_rows(source, t2, cols, {})
    step("TRUNCATE TABLE t2", "INSERT INTO t2 VALUES (6, 'after', NULL, NULL)")
    assert [r[0] for r in read_rows(ddl_target, t2, cols, {})] == [6]
    step("DROP TABLE t2")
    assert not _exists(ddl_target, t2)

    # untranslatable: stops, naming the statement; nothing after it is applied
    k = TableId(schema, "k")
    step("CREATE TABLE k (id INT PRIMARY KEY, v VARCHAR(20))")
    with pytest.raises(SchemaError, match="CONVERT TO CHARACTER SET"):
        step("ALTER TABLE k CONVERT TO CHARACTER SET latin1", "INSERT INTO k VALUES (1, 'a')")
    assert read_rows(ddl_target, k, ["id", "v"], {}) == []
    # --skip-ddl: skipped with a warning naming it, and apply goes on
    with caplog.at_level(logging.WARNING, logger="redoline.apply"):
        assert step(skip_ddl=True).ddl_skipped == 1
    assert any("SKIPPED DDL" in r.message and "CONVERT TO" in r.message for r in caplog.records)
    assert read_rows(ddl_target, k, ["id", "v"], {}) == [(1, "a")]
    # translated, but refused by the target (a MySQL-only clause sqlglot passes through)
    with pytest.raises(ApplyError, match="ENGINE=Aria"):
        step("ALTER TABLE k ENGINE=Aria", "INSERT INTO k VALUES (2, 'b')")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="redoline.apply"):
        assert step(skip_ddl=True).ddl_skipped == 1
    assert any("SKIPPED DDL" in r.message and "ENGINE=Aria" in r.message for r in caplog.records)
    assert read_rows(ddl_target, k, ["id", "v"], {}) == [(1, "a"), (2, "b")]
