"""The ODBC source's URL handling and snapshot consistency, through Debian's psqlODBC driver
against the session's PostgreSQL server (user flows: tests/toolkit_cli/test_odbc_cli.py)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from connectors.base import open_database
from connectors.endpoint import Endpoint
from connectors.errors import ConfigError
from connectors.model import TableId
from connectors.odbc import ODBC, column_kind
from connectors.odbc.snapshot import open_snapshot
from connectors.odbc.url import connection_string, scrub

pytestmark = pytest.mark.postgres


def odbc_pg(pg: Endpoint, **extra: str) -> str:
    """An odbc:// URL for ``pg`` through psqlODBC (DSN-less)."""
    params = "&".join(f"{k}={v}" for k, v in extra.items())
    return (
        f"odbc://{pg.user}@/?driver=PostgreSQL Unicode&server={pg.host}&port={pg.port}"
        f"&database={pg.database}&BoolsAsChar=0" + (f"&{params}" if params else "")
    )


def test_url_forms_and_no_password() -> None:
    dsn = Endpoint.parse("odbc://scott@Sales_DB?Port=50000", password="s3;cr}t")
    assert dsn.engine == "odbc" and dsn.host == "Sales_DB"  # DSN case kept
    assert connection_string(dsn) == "DSN=Sales_DB;Port=50000;UID=scott;PWD={s3;cr}}t}"
    assert "s3" not in repr(dsn) and "s3" not in dsn.display and "s3" not in dsn.url()
    bare = Endpoint.parse("odbc:///?driver=PostgreSQL Unicode&server=h&consistency=none")
    assert connection_string(bare) == "DRIVER={PostgreSQL Unicode};server=h"
    assert bare.display == "odbc:///?driver=PostgreSQL+Unicode&server=h&consistency=none"
    for url in ("odbc://u:pw@DSN", "odbc://DSN?PWD=pw", "odbc:///?driver=x&Password=pw"):
        with pytest.raises(ConfigError, match="must not hold a password") as err:
            Endpoint.parse(url)
        assert "pw" not in str(err.value).replace("password", "")
    with pytest.raises(ConfigError, match="needs a DSN"):
        Endpoint.parse("odbc://")
    with pytest.raises(ConfigError, match="consistency"):
        Endpoint.parse("odbc://DSN?consistency=sometimes")


def test_scrub_removes_the_password_from_driver_text() -> None:
    ep = Endpoint.parse("odbc://u@DSN", password="hunter2")
    text = "login failed for DSN=DSN;UID=u;PWD={hunter2}; and again hunter2 PWD=x;y"
    out = scrub(text, ep)
    assert "hunter2" not in out and "PWD=x" not in out


def test_column_kinds_from_odbc_types() -> None:
    assert column_kind(4, "int4", 10, 0)["kind"] == "int"
    assert column_kind(-5, "BIGINT UNSIGNED", 20, 0) == {
        "kind": "int",
        "bits": 64,
        "unsigned": True,
    }
    assert column_kind(12, "bool", 5, 0) == {"kind": "bool"}  # psqlODBC BoolsAsChar
    assert column_kind(-7, "BIT", 1, None) == {"kind": "bool"}
    assert column_kind(-2, "BIT", 3, None)["kind"] == "bytes"
    assert column_kind(-9, "json", 255, None) == {"kind": "json"}
    assert column_kind(2, "numeric", 12, 3) == {"kind": "decimal", "precision": 12, "scale": 3}
    assert column_kind(-10, "text", 8190, None)["length"] is None
    assert column_kind(-11, "uuid", 37, None) == {"kind": "uuid"}
    assert column_kind(2014, "xml", 0, None) == {"kind": "other"}


def _setup(pg: Endpoint) -> None:
    with psycopg.connect(
        host=pg.host, port=pg.port, user=pg.user, dbname=pg.database, autocommit=True
    ) as conn:
        conn.execute("CREATE TABLE a (id int PRIMARY KEY, v text)")
        conn.execute("CREATE TABLE b (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 50) g")
        conn.execute("INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 50) g")


def _write_b(pg: Endpoint) -> None:
    with psycopg.connect(
        host=pg.host, port=pg.port, user=pg.user, dbname=pg.database, autocommit=True
    ) as conn:
        conn.execute("INSERT INTO b VALUES (1000, 'late')")
        conn.execute("DELETE FROM b WHERE id = 1")


def _read(session: object, db: ODBC, table: str, chunk_rows: int = 10) -> list[bytes]:
    schema = db.table_schema(TableId("public", table))
    out = []
    for chunk in session.plan_chunks(schema, chunk_rows):  # type: ignore[attr-defined]
        for data, _n in session.read_chunk(0, schema, chunk, "csv", ("id", "v")):  # type: ignore[attr-defined]
            out.extend(data.splitlines())
    return out


def test_serializable_snapshot_does_not_see_later_writes(pg_db: Endpoint) -> None:
    """One transaction: what commits after the first read is invisible to every later read
    (the other table included); consistency=none sees it (drift, said loudly)."""
    _setup(pg_db)
    db = open_database(Endpoint.parse(odbc_pg(pg_db)))
    assert isinstance(db, ODBC)
    session = open_snapshot(db, 4, capture=False)
    try:
        assert session.workers == 1
        assert "serializable" in session.point.method
        assert len(_read(session, db, "a")) == 50  # the snapshot begins here
        _write_b(pg_db)
        b = _read(session, db, "b")
        assert len(b) == 50 and b'"1000","late"' not in b and b'"1","b1"' in b
    finally:
        session.close()
    drift = open_database(Endpoint.parse(odbc_pg(pg_db, consistency="none")))
    assert isinstance(drift, ODBC)
    loose = open_snapshot(drift, 3, capture=False)
    try:
        assert loose.workers == 3 and "NOT consistent" in loose.point.method
        b = _read(loose, drift, "b")
        assert b'"1000","late"' in b and b'"1","b1"' not in b
    finally:
        loose.close()


def test_snapshot_with_capture_is_refused(pg_db: Endpoint) -> None:
    db = open_database(Endpoint.parse(odbc_pg(pg_db)))
    with pytest.raises(ConfigError, match="odbc engine has no log reader role"):
        open_snapshot(db, 1, capture=True)


def test_dsn_from_an_odbc_ini(
    pg_db: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``odbc://DSN``: driver, server and user come from odbc.ini (ODBCINI names the file)."""
    _setup(pg_db)
    ini = tmp_path / "odbc.ini"
    ini.write_text(
        "[Shop_PG]\nDriver = PostgreSQL Unicode\nServername = 127.0.0.1\n"
        f"Port = {pg_db.port}\nDatabase = {pg_db.database}\nUsername = {pg_db.user}\n"
        "BoolsAsChar = 0\n"
    )
    monkeypatch.setenv("ODBCINI", str(ini))
    db = open_database(Endpoint.parse("odbc://Shop_PG"))
    assert db.list_tables() == [TableId("public", "a"), TableId("public", "b")]
    schema = db.table_schema(TableId("public", "a"))
    assert schema.primary_key == ("id",)
    assert [(c.name, c.kind) for c in schema.columns] == [("id", "int"), ("v", "str")]


def test_where_predicates_take_the_drivers_quoting() -> None:
    from connectors.odbc.snapshot import source_predicate

    generic = "\"qty\" > 5 AND \"name\" = 'O''Brien'"
    assert source_predicate(generic, "") == generic
    mysql = source_predicate(generic, "mysql")
    assert "`qty` > 5" in mysql and '"' not in mysql and "Brien" in mysql
    assert "[qty] > 5" in source_predicate(generic, "tsql")
