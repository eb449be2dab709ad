"""The source conformance suite (``source_cases.py``) against every source engine."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pymysql
import pytest

from connectors.endpoint import Endpoint
from connectors.model import Interval, Json
from tests.connectors.source_cases import CASES, Harness, KindColumn

#: a value past any row, page or packet size that matters, with non-ASCII text in it
_LARGE = "repeat('é✓x', 40000)"


def _mysql_set(value: str | set[str]) -> frozenset[str]:
    if isinstance(value, set):
        return frozenset(value)
    return frozenset(value.split(",")) if value else frozenset()


#: MariaDB: every kind its binlog reader produces (connectors/mysql/schema.py)
MARIADB_KINDS = (
    KindColumn("i8", "TINYINT", "int", ("-128", "127", "NULL")),
    KindColumn("u64", "BIGINT UNSIGNED", "int", ("18446744073709551615", "0", "NULL")),
    KindColumn(
        "dec", "DECIMAL(65,30)", "decimal", ("-99999999999999999999999999999999999.5", "0", "NULL")
    ),
    KindColumn("f", "FLOAT", "float", ("1.5", "-0.25", "NULL")),
    KindColumn("d", "DOUBLE", "double", ("1e308", "-2.2250738585072014e-308", "NULL")),
    KindColumn("s", "VARCHAR(300)", "str", ("'héllo ✓ 日本'", "''", "NULL")),
    KindColumn("big", "LONGTEXT", "str", (_LARGE, "'x'", "NULL")),
    KindColumn("bn", "BINARY(4)", "bytes", ("x'00000000'", "x'ff00'", "NULL")),
    KindColumn("blob", "LONGBLOB", "bytes", ("repeat(x'00ff', 70000)", "x''", "NULL")),
    KindColumn("dte", "DATE", "date", ("'1000-01-01'", "'9999-12-31'", "NULL")),
    KindColumn(
        "tm",
        "TIME(6)",
        "duration",
        ("'-838:59:59.000000'", "'-00:00:00.250000'", "NULL"),
    ),
    KindColumn(
        "dtm", "DATETIME(6)", "datetime", ("'9999-12-31 23:59:59.999999'", "'1000-01-01'", "NULL")
    ),
    KindColumn(
        "ts",
        "TIMESTAMP(6) NULL",
        "timestamptz",
        ("'2038-01-19 03:14:07.999999'", "'1970-01-01 00:00:01'", "NULL"),
        model=lambda v: v.replace(tzinfo=dt.UTC),
    ),
    KindColumn("js", "JSON", "json", ('\'{"a": [1, 2.5, "é"]}\'', "'[]'", "NULL"), model=Json),
    KindColumn(
        "u",
        "UUID",
        "uuid",
        (
            "'123e4567-e89b-12d3-a456-426614174000'",
            "'00000000-0000-0000-0000-000000000000'",
            "NULL",
        ),
        model=lambda v: uuid.UUID(str(v)),
    ),
    KindColumn("en", "ENUM('a','b','c ✓')", "enum", ("'c ✓'", "'a'", "NULL")),
    KindColumn("st", "SET('x','y','z')", "set", ("'x,z'", "''", "NULL"), model=_mysql_set),
    KindColumn(
        "bt", "BIT(10)", "bit", ("b'1010101010'", "b'0'", "NULL"), model=lambda v: int.from_bytes(v)
    ),
    KindColumn("yr", "YEAR", "year", ("2155", "1901", "NULL")),
)

#: PostgreSQL: every kind its pgoutput reader produces (connectors/postgres/__init__.py)
POSTGRES_KINDS = (
    KindColumn("b", "boolean", "bool", ("true", "false", "NULL")),
    KindColumn("i2", "smallint", "int", ("-32768", "32767", "NULL")),
    KindColumn("i8", "bigint", "int", ("-9223372036854775808", "9223372036854775807", "NULL")),
    KindColumn(
        "num", "numeric(38,10)", "decimal", ("'-1234567890123456789.0123456789'", "0", "NULL")
    ),
    KindColumn("nan", "numeric", "decimal", ("'NaN'", "'1e-100'", "NULL")),
    KindColumn("r", "real", "float", ("'3.4028235e+38'", "'-Infinity'", "NULL")),
    KindColumn("d", "double precision", "double", ("'NaN'", "'2.2250738585072014e-308'", "NULL")),
    KindColumn("s", "text", "str", ("'héllo ✓ 日本'", _LARGE, "NULL")),
    KindColumn("c", "char(5)", "str", ("'ab'", "'é✓'", "NULL")),
    KindColumn(
        "by", "bytea", "bytes", ("'\\x00ff'::bytea", "decode(repeat('00ff', 70000), 'hex')", "NULL")
    ),
    KindColumn("dte", "date", "date", ("'0001-01-01'", "'9999-12-31'", "NULL")),
    KindColumn("tm", "time(6)", "time", ("'23:59:59.999999'", "'00:00'", "NULL")),
    KindColumn("tz", "timetz", "time", ("'12:00:00+05:30'", "'00:00:00-11'", "NULL")),
    KindColumn(
        "tsp",
        "timestamp",
        "datetime",
        ("'0001-01-01 00:00'", "'9999-12-31 23:59:59.999999'", "NULL"),
    ),
    KindColumn(
        "tsz",
        "timestamptz",
        "timestamptz",
        ("'2000-01-01 00:00:00.000001+00'", "'1970-01-01 00:00+05:30'", "NULL"),
    ),
    KindColumn(
        "iv",
        "interval",
        "interval",
        ("'1 year 2 mons -3 days 04:05:06.5'", "'-00:00:00.000001'", "NULL"),
        # the interval's three fields, read by the server, not parsed here
        read="CASE WHEN {c} IS NOT NULL THEN ARRAY[extract(year FROM {c}) * 12 + "
        "extract(month FROM {c}), extract(day FROM {c}), extract(hour FROM {c}) * 3600000000 "
        "+ extract(minute FROM {c}) * 60000000 + extract(microseconds FROM {c})]::bigint[] END",
        model=lambda v: Interval(*v),
    ),
    KindColumn(
        "js",
        "json",
        "json",
        ('\'{"a" : [1, 2.5, "é"]}\'', "'[]'", "NULL"),
        read="{c}::text",
        model=Json,
    ),
    KindColumn(
        "jb",
        "jsonb",
        "json",
        ('\'{"b": 1, "a": "✓"}\'', "'null'", "NULL"),
        read="{c}::text",
        model=Json,
    ),
    KindColumn(
        "u",
        "uuid",
        "uuid",
        (
            "'123e4567-e89b-12d3-a456-426614174000'",
            "'00000000-0000-0000-0000-000000000000'",
            "NULL",
        ),
    ),
    KindColumn("ai", "int[]", "array", ("'{1,NULL,3}'", "'{{1,2},{3,4}}'", "NULL")),
    KindColumn("at", "text[]", "array", ('\'{"a,b",é,NULL,"\\"q"}\'', "'{}'", "NULL")),
    KindColumn("en", "mood", "enum", ("'happy ✓'", "'sad'", "NULL")),
    KindColumn("bt", "bit(3)", "bit", ("B'101'", "B'000'", "NULL")),
    KindColumn("vb", "varbit(8)", "bit", ("B'1'", "B''", "NULL")),
)


def mariadb(request: pytest.FixtureRequest) -> Harness:
    ep: Endpoint = request.getfixturevalue("mysql_db")
    return Harness(
        ep,
        ep.database,
        lambda: pymysql.connect(
            host=ep.host,
            port=ep.port,
            user=ep.user,
            database=ep.database,
            autocommit=False,
            charset="utf8mb4",
        ),
        kinds=MARIADB_KINDS,
        read_setup=("SET time_zone = '+00:00'",),
    )


def postgres(request: pytest.FixtureRequest) -> Harness:
    ep: Endpoint = request.getfixturevalue("pg_db")
    return Harness(
        ep,
        "public",
        lambda: psycopg.connect(
            host=ep.host, port=ep.port, user=ep.user, dbname=ep.database, autocommit=False
        ),
        kinds=POSTGRES_KINDS,
        kinds_setup=("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy ✓')",),
    )


SOURCES: dict[str, Callable[[pytest.FixtureRequest], Harness]] = {
    "mariadb": mariadb,
    "postgresql": postgres,
}


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.removeprefix("check_") for c in CASES])
@pytest.mark.parametrize("source", list(SOURCES))
def test_source(
    source: str,
    case: Callable[[Harness, Path], None],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    case(SOURCES[source](request), tmp_path / "trail")
