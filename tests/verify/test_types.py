"""Every column kind compares equal across engines when the values are the same, and a change
to any one value is found and named (real servers)."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from typing import Any

import pytest

from connectors.endpoint import Endpoint
from tests.verify.conftest import execute, qualified, verify

UTC = dt.UTC
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
PST = dt.timezone(dt.timedelta(hours=-8))

# name, MySQL type, PostgreSQL type, DuckDB type
COLUMNS: list[tuple[str, str, str, str]] = [
    ("i8", "TINYINT", "SMALLINT", "TINYINT"),
    ("i64", "BIGINT", "BIGINT", "BIGINT"),
    ("u64", "BIGINT UNSIGNED", "NUMERIC(20,0)", "UBIGINT"),
    ("flag", "BOOLEAN", "BOOLEAN", "BOOLEAN"),
    ("amt", "DECIMAL(14,4)", "NUMERIC(14,4)", "DECIMAL(14,4)"),
    ("dbl", "DOUBLE", "DOUBLE PRECISION", "DOUBLE"),
    ("flt", "FLOAT", "REAL", "FLOAT"),
    ("vc", "VARCHAR(40)", "VARCHAR(40)", "VARCHAR"),
    ("txt", "TEXT", "TEXT", "VARCHAR"),
    # MariaDB CHAR(n) is replicated to varchar(n): PostgreSQL's char(n) would pad the value
    ("ch", "CHAR(6)", "VARCHAR(6)", "VARCHAR"),
    ("bin", "VARBINARY(16)", "BYTEA", "BLOB"),
    ("d", "DATE", "DATE", "DATE"),
    ("t", "TIME(6)", "TIME(6)", "TIME"),
    ("naive", "DATETIME(6)", "TIMESTAMP(6)", "TIMESTAMP"),
    ("instant", "TIMESTAMP(6) NULL", "TIMESTAMPTZ(6)", "TIMESTAMPTZ"),
    ("doc", "JSON", "JSON", "VARCHAR"),
    ("uid", "UUID", "UUID", "UUID"),
    ("color", "ENUM('red','green','blue')", "color", "VARCHAR"),
    ("tags", "SET('a','b','c')", "TEXT", "VARCHAR"),
    ("yr", "YEAR", "SMALLINT", "SMALLINT"),
]

ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "i8": -128,
        "i64": -(2**63),
        "u64": 2**64 - 1,
        "flag": True,
        "amt": decimal.Decimal("-1234567890.1234"),
        "dbl": 0.1,
        "flt": 0.1,
        "vc": "plain",
        "txt": "x" * 300,
        "ch": "ab",
        "bin": b"\x00\x01\xfe\xff",
        "d": dt.date(2024, 2, 29),
        "t": dt.time(23, 59, 59, 999999),
        "naive": dt.datetime(2024, 3, 10, 2, 30, 0, 1),
        "instant": dt.datetime(2024, 3, 10, 2, 30, 0, 1, tzinfo=UTC),
        "doc": '{"b": 1, "a": [1, 2]}',
        "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "color": "green",
        "tags": "a,c",
        "yr": 2024,
    },
    {"id": 2},  # every other column NULL
    {
        "id": 3,
        "i8": 0,
        "i64": 2**63 - 1,
        "u64": 0,
        "flag": False,
        "amt": decimal.Decimal("0.0001"),
        "dbl": 1e20,
        "flt": -2.5,
        "vc": "",  # empty, not NULL
        "txt": "trailing  ",
        "ch": "",
        "bin": b"",
        "d": dt.date(1000, 1, 1),
        "t": dt.time(0, 0),
        "naive": dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        "instant": dt.datetime(2021, 1, 1, 5, 30, 0, 500000, tzinfo=IST),
        "doc": "[]",
        "uid": uuid.UUID("00000000-0000-0000-0000-000000000000"),
        "color": "red",
        "tags": "",
        "yr": 1901,
    },
    {
        "id": 4,
        "dbl": 1.7976931348623157e308,
        "flt": 3.4028234663852886e38,
        "vc": "héllo wörld 世界 🎉",
        "txt": "line\nbreak\ttab 'quote' \\ backslash | pipe ~",
        "ch": "日本",
        "bin": bytes(range(16)),
        "instant": dt.datetime(1999, 12, 31, 16, 0, 0, tzinfo=PST),
        "amt": decimal.Decimal("99999999.9999"),
    },
    {"id": 5, "dbl": 1e-7, "flt": 1e-7, "vc": "   ", "txt": "~", "naive": dt.datetime(2000, 1, 1)},
    {"id": 6, "dbl": 2.0**53, "vc": "|", "txt": "1:x"},
    {"id": 7, "dbl": 0.30000000000000004, "txt": ""},
    {"id": 8, "dbl": -0.0, "i64": 0},
    {"id": 9, "dbl": 1e15, "amt": decimal.Decimal("-0.5000")},
    {"id": 10, "dbl": 123456789.125, "flt": 16777216.0},
    {"id": 11, "dbl": 2.2250738585072014e-308},
    {"id": 12, "dbl": 1e-300},
    {"id": 13, "dbl": 4.9406564584124654e-324},
    {"id": 14, "dbl": 2.0**-1, "flt": 2.0**-126},
    {"id": 15, "dbl": 4503599627370495.5},
]

PAIRS = [
    ("mysql_db", "pg_db"),
    ("pg_db", "mysql_db"),
    ("mysql_db", "duck_db"),
    ("pg_db", "duck_db"),
    ("duck_db", "pg_db"),
    ("mysql_db", "mysql_db2"),
    ("pg_db", "pg_db2"),
]


def _adapt(engine: str, name: str, value: Any) -> Any:
    """The value as each driver wants it for the column's type on that engine."""
    if value is None:
        return None
    if engine == "mysql":
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)
        if isinstance(value, uuid.UUID | bool):
            return str(value) if isinstance(value, uuid.UUID) else int(value)
    if engine == "duckdb" and isinstance(value, uuid.UUID):
        return str(value)
    return value


def create(ep: Endpoint, name: str, rows: list[dict[str, Any]]) -> None:
    col = {"mysql": 1, "postgresql": 2, "duckdb": 3}[ep.engine]
    ddl = []
    if ep.engine == "postgresql":
        ddl.append("DROP TYPE IF EXISTS color")
        ddl.append("CREATE TYPE color AS ENUM ('red', 'green', 'blue')")
    cols = ", ".join(f"{c[0]} {c[col]}" for c in COLUMNS)
    ddl.append(f"CREATE TABLE {qualified(ep, name)} (id INT PRIMARY KEY, {cols})")
    names = ["id"] + [c[0] for c in COLUMNS]
    insert = (
        f"INSERT INTO {qualified(ep, name)} ({', '.join(names)}) "
        f"VALUES ({', '.join(['%s'] * len(names))})"
    )
    data = [[_adapt(ep.engine, n, row.get(n)) for n in names] for row in rows]
    execute(ep, ddl, data, insert)


@pytest.fixture
def mysql_db2(mysql_db: Endpoint, mariadb_server: Any) -> Endpoint:
    import pymysql

    name = mysql_db.database + "_b"
    conn = pymysql.connect(host="127.0.0.1", port=mariadb_server.port, user="root")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    conn.close()
    return mysql_db.with_database(name)


@pytest.fixture
def pg_db2(postgres_server: Any, tmp_path: Any) -> Any:
    import psycopg

    name = f"verify_b_{tmp_path.name[-20:]}".lower().replace("-", "_")
    dsn = f"host=127.0.0.1 port={postgres_server.port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield Endpoint.parse(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/{name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize(("src_fixture", "tgt_fixture"), PAIRS)
def test_every_kind_equal_then_each_change_found(
    request: pytest.FixtureRequest, src_fixture: str, tgt_fixture: str
) -> None:
    src: Endpoint = request.getfixturevalue(src_fixture)
    tgt: Endpoint = request.getfixturevalue(tgt_fixture)
    create(src, "kinds", ROWS)
    # the target gets the rows in another order: order must not matter
    create(tgt, "kinds", list(reversed(ROWS)))
    result = verify(src, tgt, ["kinds"], chunk_rows=4, leaf_rows=2)
    table = result.tables[0]
    assert table.error is None, table.error
    assert table.diffs == [], [(d.key, d.columns, d.source, d.target) for d in table.diffs]
    assert result.equal
    assert table.source_rows == table.target_rows == len(ROWS)

    # one changed value per column kind, each on its own row so the columns are named
    changed = [dict(r) for r in reversed(ROWS)]
    by_id = {r["id"]: r for r in changed}
    by_id[2]["vc"] = ""  # NULL -> empty string
    by_id[3]["vc"] = None  # empty string -> NULL
    by_id[5]["vc"] = "    "  # one more trailing space
    by_id[7]["dbl"] = math.nextafter(0.30000000000000004, 1.0)  # one ulp
    by_id[1]["instant"] = dt.datetime(2024, 3, 10, 2, 30, 0, 2, tzinfo=UTC)  # one microsecond
    by_id[4]["bin"] = bytes(range(15)) + b"\x10"
    by_id[9]["amt"] = decimal.Decimal("-0.5001")
    execute(tgt, [f"DROP TABLE {qualified(tgt, 'kinds')}"])
    create(tgt, "kinds", changed)
    result = verify(src, tgt, ["kinds"], chunk_rows=4, leaf_rows=2)
    table = result.tables[0]
    assert table.error is None, table.error
    found = {d.key["id"]: (d.kind, d.columns) for d in table.diffs if d.key}
    assert found == {
        2: ("different", ["vc"]),
        3: ("different", ["vc"]),
        5: ("different", ["vc"]),
        7: ("different", ["dbl"]),
        1: ("different", ["instant"]),
        4: ("different", ["bin"]),
        9: ("different", ["amt"]),
    }


def test_nan_and_infinity_pg_duckdb(pg_db: Endpoint, duck_db: Endpoint) -> None:
    for ep in (pg_db, duck_db):
        execute(
            ep,
            [f"CREATE TABLE {qualified(ep, 'f')} (id INT PRIMARY KEY, x DOUBLE PRECISION)"],
            [(1, float("nan")), (2, float("inf")), (3, float("-inf")), (4, None), (5, 0.0)],
            f"INSERT INTO {qualified(ep, 'f')} VALUES (%s, %s)",
        )
    assert verify(pg_db, duck_db, ["f"]).equal
    execute(duck_db, [f"UPDATE {qualified(duck_db, 'f')} SET x = 'inf' WHERE id = 1"])
    result = verify(pg_db, duck_db, ["f"])
    assert [(d.kind, d.key, d.columns) for d in result.tables[0].diffs] == [
        ("different", {"id": 1}, ["x"])
    ]


@pytest.mark.parametrize(
    ("src_fixture", "tgt_fixture", "tgt_type", "equal"),
    [
        # PostgreSQL's char(n) reads padded; the padded text in a VARCHAR is the same value
        ("pg_db", "duck_db", "VARCHAR", True),
        ("pg_db", "mysql_db", "VARCHAR(10)", True),
        # MariaDB's CHAR strips the padding PostgreSQL's applications read: a difference
        ("pg_db", "mysql_db", "CHAR(10)", False),
        # PostgreSQL's char(n) pads what MariaDB's applications read unpadded: a difference
        ("mysql_db", "pg_db", "CHAR(10)", False),
        ("mysql_db", "pg_db", "VARCHAR(10)", True),
        ("mysql_db", "duck_db", "VARCHAR", True),
    ],
)
def test_char_compares_as_applications_read_it(
    request: pytest.FixtureRequest, src_fixture: str, tgt_fixture: str, tgt_type: str, equal: bool
) -> None:
    """CHAR(n) compares with the padding each engine returns (docs/verify.md: CHAR padding)."""
    src: Endpoint = request.getfixturevalue(src_fixture)
    tgt: Endpoint = request.getfixturevalue(tgt_fixture)
    values = [(1, "ab"), (2, ""), (3, None), (4, "0123456789"), (5, "日本 ")]
    execute(
        src,
        [f"CREATE TABLE {qualified(src, 'c')} (id INT PRIMARY KEY, ch CHAR(10))"],
        values,
        f"INSERT INTO {qualified(src, 'c')} VALUES (%s, %s)",
    )
    # the target gets what the source's driver returns, as replication writes it
    pad = src.engine == "postgresql"
    copied = [
        (i, None if v is None else (v.ljust(10) if pad else v.rstrip(" "))) for i, v in values
    ]
    execute(
        tgt,
        [f"CREATE TABLE {qualified(tgt, 'c')} (id INT PRIMARY KEY, ch {tgt_type})"],
        copied,
        f"INSERT INTO {qualified(tgt, 'c')} VALUES (%s, %s)",
    )
    result = verify(src, tgt, ["c"])
    (table,) = result.tables
    assert table.error is None, table.error
    if equal:
        assert table.diffs == [], [(d.key, d.source, d.target) for d in table.diffs]
    else:
        # every non-NULL value shorter than n reads differently (id 4 fills all 10)
        assert sorted(d.key["id"] for d in table.diffs if d.key) == [1, 2, 5]
        assert all(d.columns == ["ch"] for d in table.diffs)


def test_json_against_jsonb_compares_documents(mysql_db: Endpoint, pg_db: Endpoint) -> None:
    """A jsonb target reorders keys and respaces: not a difference; a changed value is."""
    docs = ['{"b": 1, "a": [1, 2.5]}', '{"z":1,"aa":{"y":true}}', "[]", ' {"k" :  "é"} ', "3"]
    rows = [(i, docs[i % len(docs)]) for i in range(1, 41)]
    execute(
        mysql_db,
        [f"CREATE TABLE {qualified(mysql_db, 'j')} (id INT PRIMARY KEY, doc JSON)"],
        rows,
        f"INSERT INTO {qualified(mysql_db, 'j')} VALUES (%s, %s)",
    )
    changed = [(i, '{"b": 1, "a": [1, 2.5, 3]}' if i == 6 else d) for i, d in rows]
    execute(
        pg_db,
        [f"CREATE TABLE {qualified(pg_db, 'j')} (id INT PRIMARY KEY, doc JSONB)"],
        changed,
        f"INSERT INTO {qualified(pg_db, 'j')} VALUES (%s, %s)",
    )
    execute(pg_db, [f"UPDATE {qualified(pg_db, 'j')} SET doc = 'true' WHERE id = 5"])
    execute(pg_db, [f"UPDATE {qualified(pg_db, 'j')} SET doc = '3.0' WHERE id = 4"])
    result = verify(mysql_db, pg_db, ["j"], chunk_rows=8, leaf_rows=4)
    (table,) = result.tables
    assert table.error is None, table.error
    # row 4's 3 spelled 3.0 is the same number; row 5's object became true: a difference
    assert {d.key["id"]: d.columns for d in table.diffs if d.key} == {5: ["doc"], 6: ["doc"]}


DURATIONS = [
    dt.timedelta(hours=-838, minutes=-59, seconds=-59),
    dt.timedelta(hours=100, microseconds=500000),
    dt.timedelta(hours=-1, microseconds=-1),
    dt.timedelta(0),
    dt.timedelta(seconds=59, microseconds=999999),
    None,
]


@pytest.mark.parametrize(
    ("tgt_fixture", "tgt_type"), [("pg_db", "INTERVAL"), ("duck_db", "INTERVAL")]
)
def test_mysql_time_against_an_interval(
    request: pytest.FixtureRequest, mysql_db: Endpoint, tgt_fixture: str, tgt_type: str
) -> None:
    """MySQL TIME replicated to an interval (docs/apply.md) compares as a length of time."""
    tgt: Endpoint = request.getfixturevalue(tgt_fixture)
    rows = list(enumerate(DURATIONS, 1))
    execute(
        mysql_db,
        [f"CREATE TABLE {qualified(mysql_db, 'd')} (id INT PRIMARY KEY, tm TIME(6))"],
        rows,
        f"INSERT INTO {qualified(mysql_db, 'd')} VALUES (%s, %s)",
    )
    changed = [(i, v + dt.timedelta(microseconds=1) if i == 2 else v) for i, v in rows]
    execute(
        tgt,
        [f"CREATE TABLE {qualified(tgt, 'd')} (id INT PRIMARY KEY, tm {tgt_type})"],
        changed,
        f"INSERT INTO {qualified(tgt, 'd')} VALUES (%s, %s)",
    )
    (table,) = verify(mysql_db, tgt, ["d"]).tables
    assert table.error is None, table.error
    assert [(d.key, d.columns) for d in table.diffs] == [({"id": 2}, ["tm"])]


INTERVALS = [
    "1 year 2 mons 3 days 04:05:06.000007",
    "-3 days 04:05:06",
    "-1 mons -00:00:00.000001",
    "00:00:00",
    None,
]


@pytest.mark.parametrize("tgt_fixture", ["duck_db", "mysql_db"])
def test_interval_against_interval_and_its_mysql_text(
    request: pytest.FixtureRequest, pg_db: Endpoint, tgt_fixture: str
) -> None:
    """PostgreSQL intervals compare as months, days and microseconds: against DuckDB's
    INTERVAL, and against the text apply keeps in MySQL's VARCHAR(100)."""
    tgt: Endpoint = request.getfixturevalue(tgt_fixture)
    rows = list(enumerate(INTERVALS, 1))
    execute(
        pg_db,
        [f"CREATE TABLE {qualified(pg_db, 'iv')} (id INT PRIMARY KEY, iv INTERVAL)"],
        rows,
        f"INSERT INTO {qualified(pg_db, 'iv')} VALUES (%s, %s::interval)",
    )
    # the value as apply writes it: months, days and microseconds
    texts = [
        "14 months 3 days 14706000007 microseconds",
        "0 months -3 days 14706000000 microseconds",
        "-1 months 0 days -1 microseconds",
        "0 months 0 days 0 microseconds",
        None,
    ]
    texts[1] = "0 months -3 days 14706000001 microseconds"  # one microsecond off
    ddl_type = "VARCHAR(100)" if tgt.engine == "mysql" else "INTERVAL"
    execute(
        tgt,
        [f"CREATE TABLE {qualified(tgt, 'iv')} (id INT PRIMARY KEY, iv {ddl_type})"],
        list(enumerate(texts, 1)),
        f"INSERT INTO {qualified(tgt, 'iv')} VALUES (%s, %s)",
    )
    (table,) = verify(pg_db, tgt, ["iv"]).tables
    assert table.error is None, table.error
    assert [(d.key, d.columns) for d in table.diffs] == [({"id": 2}, ["iv"])]
