"""``redoline snapshot --no-follow`` and ``redoline verify`` from an ``odbc://`` source, in a
subprocess, through Debian's psqlODBC and MariaDB Connector/ODBC drivers.

The oracle reads the source and each target with their own Python drivers (psycopg, pymysql,
duckdb) and compares normalised values; it shares no code with redoline's ODBC reader or its
verify. Every column kind, NULLs, non-ASCII text and 1 MB values go through each target.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest

from connectors.endpoint import Endpoint
from tests.clirun import first_error, redoline

BIG_TEXT = "é€😀" * (1 << 17)  # 1.1 MB of UTF-8 in characters of 2, 3 and 4 bytes
BIG_BYTES = bytes(range(256)) * 4096  # 1 MiB with every byte value
TRICKY = 'tab\there, new\nline, cr\rback\\slash "quoted", comma; \\N not null'


def odbc_url(ep: Endpoint, **extra: str) -> str:
    if ep.scheme.startswith("postgres"):
        base = (
            f"odbc://{ep.user}@/?driver=PostgreSQL Unicode&server={ep.host}&port={ep.port}"
            f"&database={ep.database}&BoolsAsChar=0"
        )
    else:
        base = (
            f"odbc://{ep.user}@/?driver=MariaDB Unicode&server={ep.host}&port={ep.port}"
            f"&database={ep.database}"
        )
    return base + "".join(f"&{k}={v}" for k, v in extra.items())


# --------------------------------------------------------------------------- sources

PG_DDL = """
CREATE TABLE kinds (
  id integer PRIMARY KEY, si smallint, bi bigint, n numeric(14,4), r real,
  d double precision, v varchar(40), tx text, ch char(4), b bytea, dt date, tm time(6),
  ts timestamp(6), bo boolean, j json, u uuid
)"""
MARIA_DDL = """
CREATE TABLE kinds (
  id int PRIMARY KEY, si smallint, bi bigint unsigned, n decimal(14,4), r float, d double,
  v varchar(40), tx longtext, ch char(4), b longblob, dt date, tm time, ts datetime(6),
  bo boolean, j longtext
) CHARACTER SET utf8mb4"""


def _rows(pg: bool) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = [
        (
            1,
            -32768,
            9007199254740993 if pg else 18446744073709551615,
            decimal.Decimal("-1234567890.1234"),
            1.5,
            0.1,
            "héllo wörld ñ 中文",
            TRICKY,
            "ab",
            b"\x00\x01\\\t\n\xff",
            dt.date(2024, 2, 29),
            dt.time(23, 59, 59, 999999) if pg else dt.time(23, 59, 59),
            dt.datetime(1999, 12, 31, 23, 59, 59, 123456),
            True,
            '{"k": [1, 2.50, "ü"], "z": null}',
        ),
        (2, *([None] * 14)),
        (
            3,
            7,
            0,
            decimal.Decimal("0.0001"),
            -2.25,
            -1e300,
            "",
            BIG_TEXT,
            "    ",
            BIG_BYTES,
            dt.date(1, 1, 1) if pg else dt.date(1000, 1, 1),
            dt.time(0, 0),
            dt.datetime(2038, 1, 19, 3, 14, 8),
            False,
            "[]",
        ),
    ]
    rows += [
        (
            i,
            i,
            i * 1000,
            decimal.Decimal(i) / 8,
            i / 4,
            i / 3,
            f"row {i}",
            "x" * i,
            "c",
            bytes([i % 256]),
            dt.date(2020, 1, 1) + dt.timedelta(days=i),
            dt.time(i % 24, i % 60),
            dt.datetime(2020, 1, 1) + dt.timedelta(seconds=i),
            i % 2 == 0,
            json.dumps({"i": i}),
        )
        for i in range(10, 400)
    ]
    if pg:
        rows = [(*r, None if r[1] is None else uuid.UUID(int=r[0] * 7919)) for r in rows]
    return rows


def _pg_conn(ep: Endpoint) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=ep.host, port=ep.port, user=ep.user, dbname=ep.database, autocommit=True
    )


def _maria_conn(ep: Endpoint, db: str | None = None) -> pymysql.Connection[Any]:
    return pymysql.connect(
        host=ep.host,
        port=ep.port or 3306,
        user=ep.user,
        database=db or ep.database,
        autocommit=True,
        charset="utf8mb4",
    )


def _fill_pg(ep: Endpoint, schema: str) -> None:
    """The PostgreSQL source table, in a schema named like the MariaDB test database: the
    target database on MariaDB is then this test's own (MariaDB databases are server-wide)."""
    with _pg_conn(ep) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path = "{schema}"')
        conn.execute(PG_DDL)
        cols = ", ".join(["%s"] * 16)
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO kinds VALUES ({cols})", _rows(True))


def _fill_maria(ep: Endpoint) -> None:
    conn = _maria_conn(ep)
    with conn.cursor() as cur:
        cur.execute(MARIA_DDL)
        cols = ", ".join(["%s"] * 15)
        cur.executemany(f"INSERT INTO kinds VALUES ({cols})", _rows(False))
    conn.close()


# --------------------------------------------------------------------------- oracle


def _norm(value: Any, kind: str) -> Any:
    """One value as the oracle compares it, whatever driver and engine type it came from."""
    if value is None:
        return None
    if kind == "bool":
        return bool(value)
    if kind == "bytes":
        return bytes(value)
    if kind == "json":
        return json.loads(value) if isinstance(value, str) else value
    if kind == "uuid":
        return str(value).lower()
    if kind == "decimal":
        return decimal.Decimal(value).normalize()
    if kind == "float":
        return float(value)
    if kind == "time" and isinstance(value, dt.timedelta):
        return (dt.datetime.min + value).time()
    if kind == "ch":
        return str(value).rstrip(" ")  # MariaDB CHAR reads without its padding
    return value


KINDS = [
    "int",
    "int",
    "int",
    "decimal",
    "float",
    "float",
    "str",
    "str",
    "ch",
    "bytes",
    "date",
    "time",
    "datetime",
    "bool",
    "json",
    "uuid",
]


def _table(rows: list[tuple[Any, ...]], ncols: int) -> dict[int, tuple[Any, ...]]:
    return {
        int(r[0]): tuple(_norm(v, k) for v, k in zip(r[:ncols], KINDS[:ncols], strict=True))
        for r in rows
    }


def _read_pg(ep: Endpoint, schema: str, names: str) -> list[tuple[Any, ...]]:
    with _pg_conn(ep) as conn:
        return list(conn.execute(f'SELECT {names} FROM "{schema}".kinds ORDER BY id').fetchall())


def _read_maria(ep: Endpoint, schema: str, names: str) -> list[tuple[Any, ...]]:
    conn = _maria_conn(ep, schema)
    with conn.cursor() as cur:
        cur.execute(f"SELECT {names} FROM `{schema}`.kinds ORDER BY id")
        rows = list(cur.fetchall())
    conn.close()
    return rows


def _read_duck(path: Path, schema: str, names: str) -> list[tuple[Any, ...]]:
    conn = duckdb.connect(str(path), read_only=True)
    try:
        return list(conn.execute(f'SELECT {names} FROM "{schema}".kinds ORDER BY id').fetchall())
    finally:
        conn.close()


def _verify(tmp: Path, source: str, target: str, env: dict[str, str]) -> dict[str, Any]:
    proc = redoline(
        "verify",
        "--source",
        source,
        "--target",
        target,
        "--json",
        "--recheck-wait",
        "0",
        "--chunk-rows",
        "100",
        cwd=tmp,
        env=env,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    out = json.loads(proc.stdout)
    out["exit"] = proc.returncode
    return out


@pytest.mark.parametrize("source_kind", ["postgres", "mariadb"])
def test_snapshot_into_every_target_and_verify(
    source_kind: str,
    pg_db: Endpoint,
    mysql_db: Endpoint,
    postgres_server: Any,
    mariadb_server: Any,
    tmp_path: Path,
) -> None:
    pg = source_kind == "postgres"
    source_ep = pg_db if pg else mysql_db
    if pg:
        _fill_pg(source_ep, mysql_db.database)
    else:
        _fill_maria(source_ep)
    ncols = 16 if pg else 15
    names = "id, si, bi, n, r, d, v, tx, ch, b, dt, tm, ts, bo, j" + (", u" if pg else "")
    src_schema = mysql_db.database
    truth = _table((_read_pg if pg else _read_maria)(source_ep, src_schema, names), ncols)
    assert len(truth) == 393
    url = odbc_url(source_ep)
    duck = tmp_path / "t.duckdb"
    # the other server is the relational target (a target beside its own source is refused)
    targets = {
        "duckdb": f"duckdb://{duck}",
        "postgresql": str(pg_db) if not pg else "",
        "mariadb": str(mysql_db) if pg else "",
    }
    targets = {k: v for k, v in targets.items() if v}
    for name, target in targets.items():
        proc = redoline(
            "snapshot",
            "--no-follow",
            "--source",
            url,
            "--target",
            target,
            "--chunk-rows",
            "50",
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        assert "393 rows" in proc.stdout
        if name == "duckdb":
            got = _read_duck(duck, src_schema, names)
        elif name == "postgresql":
            got = _read_pg(pg_db, src_schema, names)
        else:
            got = _read_maria(mysql_db, src_schema, names)
        table = _table(got, ncols)
        for key in truth:
            assert table[key] == truth[key], (name, key)
        assert table.keys() == truth.keys()
        # verify agrees with the oracle: equal, exit 0
        result = _verify(tmp_path, url, target, {})
        assert result["exit"] == 0 and result["equal"], (name, result)


def test_verify_reports_exactly_the_planted_differences(
    pg_db: Endpoint, mysql_db: Endpoint, tmp_path: Path
) -> None:
    _fill_pg(pg_db, mysql_db.database)
    with _pg_conn(pg_db) as conn:
        # verify's other modes: a text key (hash buckets) and no key at all (whole rows)
        conn.execute(f'SET search_path = "{mysql_db.database}"')
        conn.execute("CREATE TABLE tk (k varchar(20) PRIMARY KEY, v text)")
        conn.execute("INSERT INTO tk SELECT 'k' || g, 'ü' || g FROM generate_series(1, 300) g")
        conn.execute("CREATE TABLE nk (a int, v text)")
        conn.execute("INSERT INTO nk SELECT g % 50, 'dup' FROM generate_series(1, 300) g")
    url = odbc_url(pg_db, consistency="none")
    proc = redoline(
        "snapshot",
        "--no-follow",
        "--source",
        url,
        "--target",
        str(mysql_db),
        "--workers",
        "3",
        "--chunk-rows",
        "40",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "NOT consistent" in proc.stderr and "quiesce" in proc.stderr  # said loudly
    conn = _maria_conn(mysql_db)
    with conn.cursor() as cur:
        cur.execute("UPDATE kinds SET v = 'changed' WHERE id = 10")  # different
        cur.execute("UPDATE kinds SET b = x'00' WHERE id = 3")  # different (a 1 MB value)
        cur.execute("DELETE FROM kinds WHERE id = 200")  # missing
        cur.execute("INSERT INTO kinds (id) VALUES (100000)")  # extra
        cur.execute("UPDATE kinds SET ts = '2020-01-01 00:00:00.000001' WHERE id = 399")
        cur.execute("UPDATE tk SET v = 'other' WHERE k = 'k77'")  # different
        cur.execute("DELETE FROM nk WHERE a = 7 LIMIT 1")  # missing (one of 6 copies)
    conn.close()
    result = _verify(tmp_path, url, str(mysql_db), {})
    assert result["exit"] == 1 and not result["equal"]
    assert result["totals"] == {"missing": 2, "extra": 1, "different": 4, "transient": 0}
    modes = {t["source_table"].split(".")[1]: t["mode"] for t in result["tables"]}
    assert modes == {"kinds": "range", "tk": "hash", "nk": "keyless"}


def test_capture_and_sync_are_refused_in_one_line(pg_db: Endpoint, tmp_path: Path) -> None:
    url = odbc_url(pg_db)
    for args in (
        ("sync", "--until-caught-up", "--target", f"duckdb://{tmp_path}/x.duckdb"),
        ("snapshot", "--target", f"duckdb://{tmp_path}/x.duckdb"),
        ("capture",),
    ):
        proc = redoline(*args, "--source", url, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        line = first_error(proc)
        assert "odbc" in line and ("log reader" in line or "cannot capture" in line), line
    assert not (tmp_path / "x.duckdb").exists()


def test_password_from_the_environment_and_never_shown(mysql_db: Endpoint, tmp_path: Path) -> None:
    conn = _maria_conn(mysql_db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE kinds (id int PRIMARY KEY, v text)")
        cur.execute("INSERT INTO kinds VALUES (1, 'x')")
        cur.execute("CREATE USER IF NOT EXISTS 'odbcuser'@'%' IDENTIFIED BY 'Sekr3t;pw}'")
        cur.execute(f"GRANT SELECT ON `{mysql_db.database}`.* TO 'odbcuser'@'%'")
    conn.close()
    url = odbc_url(Endpoint.parse(f"mariadb://odbcuser@{mysql_db.host}:{mysql_db.port}/x"))
    url = url.replace("database=x", f"database={mysql_db.database}")
    target = f"duckdb://{tmp_path}/p.duckdb"
    ok = redoline(
        "snapshot",
        "--no-follow",
        "--source",
        url,
        "--target",
        target,
        cwd=tmp_path,
        env={"REDOLINE_SOURCE_PASSWORD": "Sekr3t;pw}"},
    )
    assert ok.returncode == 0, ok.stderr
    assert "Sekr3t" not in ok.stdout + ok.stderr
    bad = redoline(
        "verify",
        "--source",
        url,
        "--target",
        target,
        cwd=tmp_path,
        env={"REDOLINE_SOURCE_PASSWORD": "wrong-Sekr3t"},
    )
    assert bad.returncode == 3, bad.stderr
    assert "refused the login" in first_error(bad)
    assert "Sekr3t" not in bad.stdout + bad.stderr
    leak = redoline(
        "verify",
        "--source",
        url.replace("odbcuser@", "odbcuser:Sekr3t@"),
        "--target",
        target,
        cwd=tmp_path,
    )
    assert leak.returncode == 2 and "must not hold a password" in first_error(leak)
    assert "Sekr3t" not in leak.stdout + leak.stderr
