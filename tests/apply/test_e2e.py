"""End to end with the real capture connectors (issue 6): source → capture → trail → apply.

MariaDB (binlog) and PostgreSQL (pgoutput) sources run a workload of inserts, updates (key
changes included) and deletes on a keyed table with every common type, a keyless table full of
identical rows, and a table whose identity is a unique NOT NULL key without a primary key.
``capture.runner.run_capture`` writes the trail; ``apply.trail_apply.apply_trail`` applies it to
the three target engines (the source's own engine in another database). The check reads both
sides with their own drivers and compares row by row after a per-type normalisation — not
through ``verify``.

Two rounds (workload, capture, apply) so apply also resumes from its checkpoint, once with
small groups (the set-based merge of many groups) and once with one big group.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import random
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from apply.options import ApplyOptions
from apply.trail_apply import apply_trail
from capture.filters import CaptureFilter
from capture.runner import CaptureOptions, run_capture
from connectors.base import Database, TableFilter, open_database
from connectors.endpoint import Endpoint
from connectors.model import TableId

# --------------------------------------------------------------------------- normalisation

#: column name -> how to read it on any engine (the rest: generic rules in canon)
Hints = dict[str, str]


def _interval_text(text: str) -> dt.timedelta:
    m = re.fullmatch(r"(-?\d+) months (-?\d+) days (-?\d+) microseconds", text)
    assert m, text
    return dt.timedelta(days=int(m[1]) * 30 + int(m[2]), microseconds=int(m[3]))


def canon(value: Any, hint: str | None = None) -> Any:
    """One comparable form per value, whatever engine and driver produced it."""
    if value is None:
        return None
    if hint == "json":
        if isinstance(value, str | bytes):
            value = json.loads(value)
        return json.dumps(value, sort_keys=True)
    if hint == "array" and isinstance(value, str):
        value = json.loads(value)  # MySQL targets keep arrays as JSON
    if hint == "set":
        if isinstance(value, str):
            return frozenset(x for x in value.split(",") if x)
        return frozenset(value)
    if hint == "bit":
        if isinstance(value, bytes):
            return int.from_bytes(value, "big")
        if isinstance(value, str):
            return int(value, 2)
    if hint == "char" and isinstance(value, str):
        return value.rstrip(" ")  # CHAR(n): PostgreSQL pads, MySQL strips, DuckDB has none
    if hint == "interval" and isinstance(value, str):
        return _interval_text(value)
    if hint == "time" and isinstance(value, dt.timedelta):
        return (dt.datetime.min + value).time()  # MySQL TIME comes back as a timedelta
    if isinstance(value, list):
        return tuple(canon(v) for v in value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else value.normalize()
    if isinstance(value, float):
        return float(f"{value:.6g}")  # FLOAT/real: single precision on every engine
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def read_rows(db: Database, table: TableId, columns: list[str], hints: Hints) -> list[Any]:
    """``columns`` of every row of ``table``, normalised and sorted (a multiset)."""
    q = db.quote
    conn = db.connect()
    try:
        if db.engine == "duckdb":
            conn.execute("SET TimeZone = 'UTC'")
            types = dict(
                conn.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ? "
                    "AND table_name = ?",
                    [table.schema, table.name],
                ).fetchall()
            )
            # aware values need pytz in DuckDB's Python API: read instants as UTC wall time
            cols = [
                f"{q(c)}::TIMESTAMP" if types[c] == "TIMESTAMP WITH TIME ZONE" else q(c)
                for c in columns
            ]
            rows = conn.execute(f"SELECT {', '.join(cols)} FROM {db.qualified(table)}").fetchall()
        else:
            sql = f"SELECT {', '.join(q(c) for c in columns)} FROM {db.qualified(table)}"
            if db.engine == "mysql":
                with conn.cursor() as cur:
                    cur.execute("SET time_zone = '+00:00'")
                    cur.execute(sql)
                    rows = list(cur.fetchall())
            else:
                conn.execute("SET TIME ZONE 'UTC'")
                rows = conn.execute(sql).fetchall()
    finally:
        conn.close()
    out = [tuple(canon(v, hints.get(c)) for c, v in zip(columns, r, strict=True)) for r in rows]
    return sorted(out, key=repr)


def assert_same(
    source: Database,
    target: Database,
    tables: dict[str, tuple[list[str], Hints]],
    target_name: Callable[[TableId], TableId],
    source_schema: str,
) -> None:
    for name, (columns, hints) in tables.items():
        src_table = TableId(source_schema, name)
        src = read_rows(source, src_table, columns, hints)
        tgt = read_rows(target, target_name(src_table), columns, hints)
        assert src, f"{name}: the workload left no rows to compare"
        if name == "heap":
            assert len(set(src)) < len(src), "the keyless table should hold identical rows"
        assert len(tgt) == len(src), f"{target.engine} {name}: {len(tgt)} rows vs {len(src)}"
        for a, b in zip(src, tgt, strict=True):
            diff = {c: (x, y) for c, x, y in zip(columns, a, b, strict=True) if x != y}
            assert not diff, f"{target.engine} {name} row {a[0]!r}: (source, target) {diff}"


# --------------------------------------------------------------------------- targets


class Targets:
    """The three target engines for one source; the source's own engine in another database."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path, source_engine: str):
        self.items: list[tuple[Database, Callable[[TableId], TableId]]] = []
        self._cleanup: list[Callable[[], None]] = []
        duck = open_database(Endpoint.parse(f"duckdb://{tmp_path / 'e2e.duckdb'}"))
        self.items.append((duck, lambda t: t))
        if source_engine == "mysql":
            pg: Endpoint = request.getfixturevalue("pg_db")
            self.items.append((open_database(pg), lambda t: t))
            src: Endpoint = request.getfixturevalue("mysql_db")
            other = src.database + "_copy"
            self._mysql(src, f"CREATE DATABASE `{other}`")
            self._cleanup.append(lambda: self._mysql(src, f"DROP DATABASE `{other}`"))
            self.items.append((open_database(src), lambda t: TableId(other, t.name)))
        else:
            my: Endpoint = request.getfixturevalue("mysql_db")
            self.items.append((open_database(my), lambda t: TableId(my.database, t.name)))
            src = request.getfixturevalue("pg_db")
            other = src.database + "_copy"
            self._pg(src, f'CREATE DATABASE "{other}"')
            self._cleanup.append(lambda: self._pg(src, f'DROP DATABASE "{other}" WITH (FORCE)'))
            url = src.url().rsplit("/", 1)[0] + "/" + other
            self.items.append((open_database(Endpoint.parse(url)), lambda t: t))

    @staticmethod
    def _mysql(ep: Endpoint, sql: str) -> None:
        conn = pymysql.connect(host=ep.host, port=ep.port, user="root", autocommit=True)
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.close()

    @staticmethod
    def _pg(ep: Endpoint, sql: str) -> None:
        with psycopg.connect(
            host=ep.host, port=ep.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)

    def close(self) -> None:
        for fn in self._cleanup:
            fn()


def apply_all(
    targets: Targets, trail: Path, source_dialect: str, batch_rows: int
) -> list[tuple[str, int]]:
    """Apply the trail to every target; (engine, applied op) per target."""
    done = []
    for db, rename in targets.items:
        writer = db.open_writer()
        try:
            opts = ApplyOptions(
                target_id="e2e",
                source_dialect=source_dialect,
                rename=rename,
                batch_rows=batch_rows,
                batch_ms=10**6,
            )
            stats = apply_trail(writer, trail, opts)
        finally:
            writer.close()
        assert stats.rejected_transactions == 0
        done.append((db.engine, stats.applied_op))
    return done


# --------------------------------------------------------------------------- MariaDB source

MYSQL_DDL = [
    "CREATE TABLE keyed (id BIGINT PRIMARY KEY, ti TINYINT, si SMALLINT UNSIGNED, "
    "mi MEDIUMINT, ii INT, bi BIGINT, ub BIGINT UNSIGNED, bo BOOLEAN, dc DECIMAL(14,4), "
    "f4 FLOAT, f8 DOUBLE, vc VARCHAR(40), ch CHAR(5), tx TEXT, vb VARBINARY(20), bl BLOB, "
    "d DATE, tm TIME(6), dtm DATETIME(6), ts TIMESTAMP(6) NULL, j JSON, "
    "e ENUM('red','green','blue'), st SET('a','b','c'), bt BIT(5), y YEAR)",
    "CREATE TABLE heap (a VARCHAR(10) NOT NULL, n INT)",
    "CREATE TABLE uniq (code VARCHAR(20) NOT NULL, v INT, UNIQUE KEY (code))",
]
MYSQL_KEYED_COLS = [
    "id",
    "ti",
    "si",
    "mi",
    "ii",
    "bi",
    "ub",
    "bo",
    "dc",
    "f4",
    "f8",
    "vc",
    "ch",
    "tx",
    "vb",
    "bl",
    "d",
    "tm",
    "dtm",
    "ts",
    "j",
    "e",
    "st",
    "bt",
    "y",
]
MYSQL_TABLES: dict[str, tuple[list[str], Hints]] = {
    "keyed": (
        MYSQL_KEYED_COLS,
        {"j": "json", "st": "set", "bt": "bit", "ch": "char"},
    ),
    "heap": (["a", "n"], {}),
    "uniq": (["code", "v"], {}),
}


def _mysql_row(rng: random.Random, i: int) -> tuple[Any, ...]:
    edge = i % 4 == 0
    return (
        i,
        -128 if edge else rng.randint(-100, 100),
        65535 if edge else rng.randint(0, 1000),
        -8388608 if edge else rng.randint(-1000, 1000),
        rng.randint(-(2**31), 2**31 - 1),
        -(2**63) if edge else rng.randint(-(10**12), 10**12),
        18446744073709551615 if edge else rng.randint(0, 2**63),
        rng.choice([True, False, None]),
        decimal.Decimal(rng.randint(-(10**13), 10**13)) / 10000,
        rng.choice([0.25, -1.5, 3.125e10, None]),
        rng.choice([1 / 3, -2.5e-300, 1e300, 0.1]),
        rng.choice(["plain", "tab\tquote'\"back\\slash", "naïve ☃", "", None]),
        rng.choice(["ab", "abcde", None]),
        "line\nbreak " * rng.randint(0, 30),
        bytes([0, 255, 10, 0]) if edge else bytes(rng.randrange(256) for _ in range(6)),
        rng.randbytes(rng.randint(0, 300)),
        dt.date(2024, 2, 29) if edge else dt.date(1999, 12, 31),
        rng.choice(
            [
                dt.timedelta(hours=-1, microseconds=-250000),
                dt.timedelta(hours=838, minutes=59, seconds=59),
                dt.timedelta(seconds=rng.randint(0, 86399), microseconds=rng.randint(0, 999999)),
            ]
        ),
        dt.datetime(2024, 1, 1) + dt.timedelta(microseconds=rng.randint(0, 10**13)),
        None if edge else dt.datetime(2030, 6, 1, 12) + dt.timedelta(seconds=rng.randint(0, 10**6)),
        json.dumps({"a": [1, 2, {"x": None}], "b": "é", "n": rng.randint(0, 9)}),
        rng.choice(["red", "green", "blue", None]),
        rng.choice(["", "a", "a,c", "a,b,c"]),
        rng.choice([0, 0b10101, 31]),
        rng.choice([1901, 2024, 2155, None]),
    )


def mysql_workload(ep: Endpoint, rng: random.Random, first_id: int, rounds: int) -> int:
    conn = pymysql.connect(
        host=ep.host, port=ep.port, user="root", database=ep.database, autocommit=True
    )
    marks = ", ".join(["%s"] * len(MYSQL_KEYED_COLS))
    next_id = first_id
    with conn.cursor() as cur:
        for _ in range(rounds):
            cur.execute("BEGIN")
            for _ in range(rng.randint(1, 6)):
                roll = rng.random()
                target = rng.randint(1, next_id)
                if roll < 0.35:
                    cur.execute(f"INSERT INTO keyed VALUES ({marks})", _mysql_row(rng, next_id))
                    next_id += 1
                elif roll < 0.5:
                    cur.execute(
                        "UPDATE keyed SET vc = %s, dc = dc + 1, tm = %s, st = %s, j = %s "
                        "WHERE id = %s",
                        ("upd", dt.timedelta(seconds=5), "b", '{"u": true}', target),
                    )
                elif roll < 0.55:
                    # a key change: the row moves
                    cur.execute("UPDATE IGNORE keyed SET id = %s WHERE id = %s", (next_id, target))
                    next_id += 1
                elif roll < 0.6:
                    cur.execute("DELETE FROM keyed WHERE id = %s", (target,))
                elif roll < 0.75:
                    cur.executemany("INSERT INTO heap VALUES (%s, %s)", [(rng.choice("xy"), 1)] * 3)
                elif roll < 0.82:
                    cur.execute(
                        "UPDATE heap SET n = n + 1 WHERE a = %s LIMIT 1", (rng.choice("xy"),)
                    )
                elif roll < 0.87:
                    cur.execute("DELETE FROM heap WHERE a = %s LIMIT 1", (rng.choice("xy"),))
                elif roll < 0.93:
                    cur.execute(
                        "INSERT INTO uniq VALUES (%s, %s) ON DUPLICATE KEY UPDATE v = v + 1",
                        (f"c{target % 20}", target),
                    )
                elif roll < 0.97:
                    cur.execute(
                        "UPDATE IGNORE uniq SET code = %s WHERE code = %s",
                        (f"c{next_id}", f"c{target % 20}"),
                    )
                    next_id += 1
                else:
                    cur.execute("DELETE FROM uniq WHERE code = %s", (f"c{target % 20}",))
            cur.execute("COMMIT")
    conn.close()
    return next_id


def test_mariadb_source_to_every_target(
    mysql_db: Endpoint, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = open_database(mysql_db)
    conn = pymysql.connect(
        host=mysql_db.host, port=mysql_db.port, user="root", database=mysql_db.database
    )
    with conn.cursor() as cur:
        for stmt in MYSQL_DDL:
            cur.execute(stmt)
    conn.close()
    trail = tmp_path / "trail"
    capture = CaptureOptions(
        source_id="maria",
        filters=CaptureFilter(TableFilter((f"{mysql_db.database}.*",))),
        until_caught_up=True,
        start_position=source.end_position(),
        reader_options={"server_id": 4_199_606},
    )
    targets = Targets(request, tmp_path, "mysql")
    try:
        rng = random.Random(6)
        next_id = mysql_workload(mysql_db, rng, 1, 60)
        first = run_capture(source, trail, capture)
        assert first.transactions >= 40
        apply_all(targets, trail, "mysql", batch_rows=7)
        mysql_workload(mysql_db, rng, next_id, 60)
        second = run_capture(source, trail, capture)
        assert second.last_op > first.last_op
        done = apply_all(targets, trail, "mysql", batch_rows=100_000)
        assert {op for _, op in done} == {second.last_op}
        for db, rename in targets.items:
            assert_same(source, db, MYSQL_TABLES, rename, mysql_db.database)
    finally:
        targets.close()


# --------------------------------------------------------------------------- PostgreSQL source

PG_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE keyed (
  id bigint PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, n numeric(14,4), f4 real,
  f8 double precision, t text, vc varchar(40), c char(5), b bytea, bo boolean, d date,
  tm time(6), ts timestamp(6), tstz timestamptz(6), iv interval, u uuid, j json, jb jsonb,
  ai integer[], at text[], e mood
);
CREATE TABLE heap (a text NOT NULL, n integer);
ALTER TABLE heap REPLICA IDENTITY FULL;
CREATE TABLE uniq (code varchar(20) NOT NULL, v integer);
CREATE UNIQUE INDEX uniq_code ON uniq (code);
ALTER TABLE uniq REPLICA IDENTITY USING INDEX uniq_code;
"""
PG_KEYED_COLS = [
    "id",
    "i2",
    "i4",
    "i8",
    "n",
    "f4",
    "f8",
    "t",
    "vc",
    "c",
    "b",
    "bo",
    "d",
    "tm",
    "ts",
    "tstz",
    "iv",
    "u",
    "j",
    "jb",
    "ai",
    "at",
    "e",
]
PG_TABLES: dict[str, tuple[list[str], Hints]] = {
    "keyed": (
        PG_KEYED_COLS,
        {
            "j": "json",
            "jb": "json",
            "ai": "array",
            "at": "array",
            "iv": "interval",
            "tm": "time",
            "c": "char",
        },
    ),
    "heap": (["a", "n"], {}),
    "uniq": (["code", "v"], {}),
}


def _pg_row(rng: random.Random, i: int) -> tuple[Any, ...]:
    edge = i % 4 == 0
    return (
        i,
        -32768 if edge else rng.randint(-100, 100),
        rng.randint(-(2**31), 2**31 - 1),
        -(2**63) if edge else rng.randint(-(10**12), 10**12),
        decimal.Decimal(rng.randint(-(10**13), 10**13)) / 10000,
        rng.choice([0.25, -1.5, 3.125e10, None]),
        rng.choice([1 / 3, -2.5e-300, 1e300, 0.1]),
        rng.choice(["plain", "tab\tquote'\"back\\slash", "naïve ☃", "", None]),
        rng.choice(["abc", "x" * 40, None]),
        rng.choice(["ab", "abcde", None]),
        bytes([0, 255, 10, 0]) if edge else rng.randbytes(rng.randint(0, 40)),
        rng.choice([True, False, None]),
        dt.date(2024, 2, 29) if edge else dt.date(1999, 12, 31),
        dt.time(23, 59, 59, 999999) if edge else dt.time(rng.randint(0, 23), 30, 0, 5),
        dt.datetime(2024, 1, 1) + dt.timedelta(microseconds=rng.randint(0, 10**13)),
        None if edge else dt.datetime(2030, 6, 1, 12, tzinfo=dt.UTC) + dt.timedelta(hours=i),
        dt.timedelta(days=rng.randint(-5, 400), microseconds=rng.randint(0, 10**10)),
        uuid.UUID(int=rng.getrandbits(128)),
        json.dumps({"a": [1, 2, {"x": None}], "b": "é"}),
        json.dumps({"k": rng.randint(0, 9), "z": [True, False]}),
        [1, None, rng.randint(0, 9)],
        ["x,y", None, "NULL", "q'\"\\"],
        rng.choice(["sad", "ok", "happy", None]),
    )


def pg_workload(ep: Endpoint, rng: random.Random, first_id: int, rounds: int) -> int:
    marks = ", ".join(["%s"] * len(PG_KEYED_COLS))
    next_id = first_id
    with psycopg.connect(
        host=ep.host, port=ep.port, user="postgres", dbname=ep.database, autocommit=True
    ) as conn:
        for _ in range(rounds):
            with conn.transaction():
                for _ in range(rng.randint(1, 6)):
                    roll = rng.random()
                    target = rng.randint(1, next_id)
                    if roll < 0.35:
                        conn.execute(f"INSERT INTO keyed VALUES ({marks})", _pg_row(rng, next_id))
                        next_id += 1
                    elif roll < 0.5:
                        conn.execute(
                            "UPDATE keyed SET vc = 'upd', n = n + 1, iv = iv + interval '1 day', "
                            "jb = '{\"u\": 1}', ai = array_append(ai, 7) WHERE id = %s",
                            (target,),
                        )
                    elif roll < 0.55:
                        conn.execute(
                            "UPDATE keyed SET id = %s WHERE id = %s AND NOT EXISTS "
                            "(SELECT 1 FROM keyed WHERE id = %s)",
                            (next_id, target, next_id),
                        )
                        next_id += 1
                    elif roll < 0.6:
                        conn.execute("DELETE FROM keyed WHERE id = %s", (target,))
                    elif roll < 0.75:
                        for _ in range(3):
                            conn.execute("INSERT INTO heap VALUES (%s, 1)", (rng.choice("xy"),))
                    elif roll < 0.82:
                        conn.execute(
                            "UPDATE heap SET n = n + 1 WHERE ctid = (SELECT ctid FROM heap "
                            "WHERE a = %s LIMIT 1)",
                            (rng.choice("xy"),),
                        )
                    elif roll < 0.87:
                        conn.execute(
                            "DELETE FROM heap WHERE ctid = (SELECT ctid FROM heap WHERE a = %s "
                            "LIMIT 1)",
                            (rng.choice("xy"),),
                        )
                    elif roll < 0.93:
                        conn.execute(
                            "INSERT INTO uniq VALUES (%s, %s) ON CONFLICT (code) DO UPDATE "
                            "SET v = uniq.v + 1",
                            (f"c{target % 20}", target),
                        )
                    elif roll < 0.97:
                        conn.execute(
                            "UPDATE uniq SET code = %s WHERE code = %s",
                            (f"c{next_id}", f"c{target % 20}"),
                        )
                        next_id += 1
                    else:
                        conn.execute("DELETE FROM uniq WHERE code = %s", (f"c{target % 20}",))
    return next_id


@pytest.fixture
def pg_source(pg_db: Endpoint) -> Iterator[Endpoint]:
    with psycopg.connect(
        host=pg_db.host, port=pg_db.port, user="postgres", dbname=pg_db.database, autocommit=True
    ) as conn:
        conn.execute(PG_DDL)
    yield pg_db


def test_postgres_source_to_every_target(
    pg_source: Endpoint, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = open_database(pg_source)
    trail = tmp_path / "trail"
    capture = CaptureOptions(
        source_id="pg",
        filters=CaptureFilter(TableFilter(("public.*",))),
        until_caught_up=True,
        reader_options={"slot": f"e2e_{pg_source.database}", "publication": "e2e"},
    )
    targets = Targets(request, tmp_path, "postgres")
    try:
        # creates the slot; its one transaction holds the tables' definitions (schemaprobe)
        assert run_capture(source, trail, capture).transactions == 1
        rng = random.Random(7)
        next_id = pg_workload(pg_source, rng, 1, 60)
        first = run_capture(source, trail, capture)
        assert first.transactions >= 40
        apply_all(targets, trail, "postgres", batch_rows=7)
        pg_workload(pg_source, rng, next_id, 60)
        second = run_capture(source, trail, capture)
        assert second.last_op > first.last_op
        done = apply_all(targets, trail, "postgres", batch_rows=100_000)
        assert {op for _, op in done} == {second.last_op}
        for db, rename in targets.items:
            assert_same(source, db, PG_TABLES, rename, "public")
    finally:
        targets.close()
