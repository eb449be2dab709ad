"""The source workload: a schema model and the SQL that changes it, through pymysql / psycopg.

The model (``Model``) is what the schedule believes the source holds: tables, their columns
with a *kind* each (how to generate a value, and how the oracle reads one back on any
engine), the key, and the next key value. DML and DDL steps change the source and the model
together, so the oracle knows every column's kind without asking redoline.

Values cover every kind with its empty and boundary values; on a "stock" MariaDB (latin1
server default) a column without an explicit character set only gets latin1 text, since the
server would reject anything else (that is the application's problem, not replication's).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pymysql

__all__ = ["Col", "Model", "Source", "Table", "initial_model"]

D = decimal.Decimal


@dataclass
class Col:
    name: str
    kind: str
    sql: str
    #: the column's character set is latin1 (stock MariaDB default): only latin1 text fits
    latin1: bool = False


@dataclass
class Table:
    name: str
    cols: list[Col]
    key: str | None  # None: keyless (a multiset of rows)
    next_id: int = 1

    def col(self, name: str) -> Col:
        return next(c for c in self.cols if c.name == name)

    @property
    def non_key(self) -> list[Col]:
        return [c for c in self.cols if c.name != self.key]


@dataclass
class Model:
    engine: str  # source engine: "mariadb" | "postgresql"
    target: str  # target engine, for the values it cannot hold (NaN in MariaDB, year 1)
    tables: dict[str, Table] = field(default_factory=dict)
    #: tables the schedule created (candidates for drop / rename)
    created: list[str] = field(default_factory=list)
    counter: int = 0
    #: value features left out (schedule.FEATURES names)
    off: frozenset[str] = frozenset()
    #: MariaDB: tables declare DEFAULT CHARSET=utf8mb4 (else the server's default applies)
    utf8_tables: bool = False

    def fresh(self) -> int:
        self.counter += 1
        return self.counter


# --------------------------------------------------------------------------- initial schema

_MARIA_KINDS = [
    ("id", "int", "INT NOT NULL PRIMARY KEY"),
    ("ti", "tinyint", "TINYINT"),
    ("ui", "uint", "INT UNSIGNED"),
    ("bi", "bigint", "BIGINT"),
    ("ub", "ubigint", "BIGINT UNSIGNED"),
    ("bo", "bool", "BOOLEAN"),
    ("dc", "dec3", "DECIMAL(12,3)"),
    ("f4", "f4", "FLOAT"),
    ("f8", "f8", "DOUBLE"),
    ("vc", "str", "VARCHAR(30)"),
    ("ch", "char", "CHAR(6)"),
    ("tx", "text", "TEXT"),
    ("u8", "str", "VARCHAR(30) CHARACTER SET utf8mb4"),
    ("vb", "bytes16", "VARBINARY(16)"),
    ("bl", "blob", "BLOB"),
    ("d", "date", "DATE"),
    ("tm", "duration", "TIME(6)"),
    ("dtm", "datetime", "DATETIME(6)"),
    ("ts", "tstz", "TIMESTAMP(6) NULL DEFAULT NULL"),
    ("j", "json", "JSON"),
    ("e", "enum", "ENUM('red','green','blue')"),
    ("st", "set", "SET('a','b','c')"),
    ("bt", "bit5", "BIT(5)"),
    ("y", "year", "YEAR"),
]

_PG_KINDS = [
    ("id", "bigint", "bigint PRIMARY KEY"),
    ("i2", "smallint", "smallint"),
    ("i4", "int", "integer"),
    ("i8", "bigint", "bigint"),
    ("n", "dec4", "numeric(14,4)"),
    ("f4", "f4", "real"),
    ("f8", "f8", "double precision"),
    ("t", "text", "text"),
    ("vc", "str", "varchar(30)"),
    ("c", "char", "char(6)"),
    ("b", "blob", "bytea"),
    ("bo", "bool", "boolean"),
    ("d", "date", "date"),
    ("tm", "time", "time(6)"),
    ("ts", "datetime", "timestamp(6)"),
    ("tstz", "tstz", "timestamptz(6)"),
    ("iv", "interval", "interval"),
    ("u", "uuid", "uuid"),
    ("j", "json", "json"),
    ("jb", "json", "jsonb"),
    ("ai", "intarr", "integer[]"),
    ("at", "textarr", "text[]"),
    ("e", "pgenum", "mood"),
]

_TEXT_KINDS = {"str", "char", "text"}


def initial_model(
    engine: str, target: str, profile: str, off: frozenset[str] = frozenset()
) -> Model:
    latin1 = engine == "mariadb" and profile == "stock" and "latin1_tables" not in off
    m = Model(engine=engine, target=target, off=off, utf8_tables=engine == "mariadb" and not latin1)
    specs = _MARIA_KINDS if engine == "mariadb" else _PG_KINDS

    def cols(items: list[tuple[str, str, str]]) -> list[Col]:
        return [
            Col(n, k, s, latin1=latin1 and k in _TEXT_KINDS and "CHARACTER SET" not in s)
            for n, k, s in items
        ]

    if engine == "mariadb":
        pk, vc, dec = "INT NOT NULL PRIMARY KEY", "VARCHAR(20)", "DECIMAL(8,2)"
    else:
        pk, vc, dec = "integer PRIMARY KEY", "varchar(20)", "numeric(8,2)"
    m.tables["kinds"] = Table("kinds", cols(specs), "id")
    m.tables["heap"] = Table(
        "heap",
        cols(
            [
                ("a", "str", vc + " NOT NULL"),
                ("n", "int", "INT" if engine == "mariadb" else "integer"),
            ]
        ),
        None,
    )
    # reserved words and non-ASCII identifiers, as tables and columns
    m.tables["select"] = Table(
        "select",
        cols([("order", "int", pk), ("group", "str", vc), ("key", "dec2", dec)]),
        "order",
    )
    m.tables["café"] = Table(
        "café",
        cols(
            [
                ("naïve", "int", pk),
                ("größe", "str", vc),
                ("ñ", "int", "INT" if engine == "mariadb" else "integer"),
            ]
        ),
        "naïve",
    )
    m.tables["evo"] = Table(
        "evo",
        cols(
            [
                ("id", "int", pk),
                ("a", "int", "INT" if engine == "mariadb" else "integer"),
                ("b", "str", vc),
            ]
        ),
        "id",
    )
    return m


# --------------------------------------------------------------------------- values

_LATIN1_TEXT = ["", " ", "plain", "trail  ", " lead", "q'\"\\\t\nx", "naïve café ß ÿ", "%s %%"]
_UTF8_TEXT = ["☃ 中文", "emoji 😀", "Ωmega ǅ"]


def _text(rng: random.Random, col: Col, max_len: int, edge: bool, m: Model) -> str:
    pool = _LATIN1_TEXT if col.latin1 else _LATIN1_TEXT + _UTF8_TEXT
    if col.latin1 and "latin1_nonascii" in m.off:
        pool = [x for x in pool if x.isascii()]
    if edge:
        pool = [*pool, "x" * max_len]
    else:
        pool = [*pool, f"v{rng.randint(0, 10**6)}"]
    return rng.choice(pool)[:max_len]


def value(kind: str, rng: random.Random, col: Col, m: Model, edge: bool = False) -> Any:
    """A value of ``kind``; ``edge`` picks among the empty and boundary ones."""
    if rng.random() < 0.08 and not edge:
        return None
    v = _value(kind, rng, col, m, edge)
    if v == b"" and "empty_bytes" in m.off:
        return b"\x01"
    return v


def _value(kind: str, rng: random.Random, col: Col, m: Model, edge: bool) -> Any:
    to_maria = m.target == "mariadb"
    pool: list[Any]
    match kind:
        case "int":
            return rng.choice([0, -(2**31), 2**31 - 1]) if edge else rng.randint(-9999, 9999)
        case "tinyint":
            return rng.choice([-128, 127, 0]) if edge else rng.randint(-100, 100)
        case "smallint":
            return rng.choice([-32768, 32767, 0]) if edge else rng.randint(-999, 999)
        case "uint":
            return rng.choice([0, 2**32 - 1]) if edge else rng.randint(0, 10**6)
        case "bigint":
            return rng.choice([-(2**63), 2**63 - 1, 0]) if edge else rng.randint(-(10**12), 10**12)
        case "ubigint":
            return rng.choice([0, 2**64 - 1, 2**63]) if edge else rng.randint(0, 10**15)
        case "bool":
            return rng.choice([True, False])
        case "dec2":
            if edge:
                return rng.choice([D("0.00"), D("999999.99"), D("-999999.99"), D("0.01")])
            return D(rng.randint(-(10**7), 10**7)) / 100
        case "dec3":
            if edge:
                return rng.choice([D("0.000"), D("999999999.999"), D("-999999999.999")])
            return D(rng.randint(-(10**9), 10**9)) / 1000
        case "dec4":
            if edge:
                return rng.choice([D("9999999999.9999"), D("-9999999999.9999"), D("0.0001")])
            return D(rng.randint(-(10**9), 10**9)) / 10000
        case "f4":
            if edge:
                return rng.choice([0.0, -1.5, 1e38, -2.5e-10])
            return rng.choice([0.25, -3.75, 0.1, 1234.5])
        case "f8":
            if edge:
                pool = [0.0, -0.0, 1.7976931348623157e308, -2.2250738585072014e-308, 0.1]
                if m.engine == "postgresql" and not to_maria:
                    pool += [float("nan"), float("inf"), float("-inf")]
                return rng.choice(pool)
            return rng.choice([1 / 3, -2.5e-300, 1e300, rng.uniform(-1e6, 1e6)])
        case "str":
            return _text(rng, col, 20 if "20" in col.sql else 30, edge, m)
        case "char":
            text = _text(rng, col, 6, edge, m)
            return text.rstrip(" ") if "char_trailing_space" in m.off else text
        case "text":
            if edge:
                return rng.choice(["", "y" * 5000, "line\nbreak\r\n"])
            return _text(rng, col, 200, False, m) * rng.randint(1, 3)
        case "bytes16":
            if edge:
                return rng.choice([b"", b"\x00", b"\x00\xff\n\x00\\'", bytes(range(16))])
            return rng.randbytes(rng.randint(1, 16))
        case "blob":
            if edge:
                return rng.choice([b"", b"\x00", bytes(range(256)) * 4])
            return rng.randbytes(rng.randint(1, 300))
        case "date":
            if edge:
                pool = [dt.date(1000, 1, 1), dt.date(9999, 12, 31), dt.date(2024, 2, 29)]
                if m.engine == "postgresql" and not to_maria:
                    pool.append(dt.date(1, 1, 1))
                return rng.choice(pool)
            return dt.date(2000, 1, 1) + dt.timedelta(days=rng.randint(0, 20000))
        case "duration":
            if edge:
                big = dt.timedelta(hours=838, minutes=59, seconds=59)
                return rng.choice([big, -big, dt.timedelta(0), dt.timedelta(microseconds=-1)])
            return dt.timedelta(
                seconds=rng.randint(-86400, 86400), microseconds=rng.randint(0, 999999)
            )
        case "time":
            if edge:
                return rng.choice([dt.time(0, 0), dt.time(23, 59, 59, 999999)])
            return dt.time(rng.randint(0, 23), rng.randint(0, 59), 0, rng.randint(0, 999999))
        case "datetime":
            if edge:
                return rng.choice(
                    [
                        dt.datetime(1000, 1, 1),
                        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
                        dt.datetime(1970, 1, 1, 0, 0, 0, 1),
                    ]
                )
            return dt.datetime(2020, 1, 1) + dt.timedelta(microseconds=rng.randint(0, 10**14))
        case "tstz":
            if m.engine == "mariadb":  # TIMESTAMP: 1970 .. 2038, written in a UTC session
                if edge:
                    return rng.choice(
                        [
                            dt.datetime(1970, 1, 1, 0, 0, 1),
                            dt.datetime(2038, 1, 19, 3, 14, 7, 999999),
                        ]
                    )
                return dt.datetime(2001, 1, 1) + dt.timedelta(microseconds=rng.randint(0, 10**15))
            tz = dt.timezone(dt.timedelta(hours=rng.choice([0, 5, -8])))
            if edge:
                return rng.choice(
                    [
                        dt.datetime(1000, 1, 2, tzinfo=dt.UTC),
                        dt.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=tz),
                    ]
                )
            return dt.datetime(2020, 1, 1, tzinfo=tz) + dt.timedelta(
                microseconds=rng.randint(0, 10**14)
            )
        case "interval":
            if edge:
                return rng.choice(
                    [dt.timedelta(0), dt.timedelta(days=-1), dt.timedelta(days=36500)]
                )
            return dt.timedelta(days=rng.randint(0, 400), microseconds=rng.randint(0, 10**10))
        case "uuid":
            if edge:
                return rng.choice([uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)])
            return uuid.UUID(int=rng.getrandbits(128))
        case "json":
            pool = [
                {"a": [1, 2, {"x": None}], "b": "é☃", "n": rng.randint(0, 9)},
                [True, False, 1.5],
                "text",
                {"nested": {"k": [[], {}]}},
            ]
            if edge:
                pool = [{}, [], 0, "", {"k": "x" * 300}]
            return json.dumps(rng.choice(pool), ensure_ascii=rng.random() < 0.5)
        case "enum":
            return rng.choice(["red", "green", "blue"])
        case "pgenum":
            return rng.choice(["sad", "ok", "happy"])
        case "set":
            return rng.choice(["", "a", "a,c", "a,b,c", "b"])
        case "bit5":
            return rng.choice([0, 31, 0b10101]) if edge else rng.randint(0, 31)
        case "year":
            return rng.choice([1901, 2155, 2000]) if edge else rng.randint(1950, 2100)
        case "intarr":
            if edge:
                return rng.choice([[], [-(2**31), 2**31 - 1], [None]])
            return [rng.randint(-9, 9) for _ in range(rng.randint(1, 4))]
        case "textarr":
            if edge:
                return rng.choice([[], ["x,y", None, "NULL", "q'\"\\", "", "☃"]])
            return [f"s{rng.randint(0, 99)}" for _ in range(rng.randint(1, 3))]
    raise AssertionError(f"no generator for kind {kind}")


# --------------------------------------------------------------------------- the source


class Source:
    """Runs the model's changes on the source database (one connection per step)."""

    def __init__(self, engine: str, host: str, port: int, database: str) -> None:
        self.engine = engine
        self.host, self.port, self.database = host, port, database

    def q(self, name: str) -> str:
        if self.engine == "mariadb":
            return "`" + name.replace("`", "``") + "`"
        return '"' + name.replace('"', '""') + '"'

    @contextmanager
    def connect(self) -> Iterator[Any]:
        if self.engine == "mariadb":
            conn = pymysql.connect(
                host=self.host,
                port=self.port,
                user="root",
                database=self.database,
                autocommit=True,
                charset="utf8mb4",
            )
            try:
                with conn.cursor() as cur:
                    cur.execute("SET time_zone = '+00:00'")
                yield _MariaCursor(conn)
            finally:
                conn.close()
        else:
            with psycopg.connect(
                host=self.host,
                port=self.port,
                user="postgres",
                dbname=self.database,
                autocommit=True,
            ) as pconn:
                yield _PgCursor(pconn)

    # ----------------------------------------------------------------- schema

    def create_initial(self, m: Model) -> None:
        with self.connect() as cur:
            if self.engine == "postgresql":
                cur.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
            for t in m.tables.values():
                self.create_table(cur, t, m)

    def create_table(self, cur: Any, t: Table, m: Model) -> None:
        body = ", ".join(f"{self.q(c.name)} {c.sql}" for c in t.cols)
        tail = " DEFAULT CHARSET=utf8mb4" if m.utf8_tables and self.engine == "mariadb" else ""
        cur.execute(f"CREATE TABLE {self.q(t.name)} ({body}){tail}")
        if self.engine == "postgresql" and t.key is None:
            cur.execute(f"ALTER TABLE {self.q(t.name)} REPLICA IDENTITY FULL")

    # ----------------------------------------------------------------- DML

    def insert(self, cur: Any, m: Model, t: Table, rng: random.Random, edge: bool = False) -> None:
        row = []
        for c in t.cols:
            if c.name == t.key:
                row.append(t.next_id)
                t.next_id += 1
            else:
                row.append(value(c.kind, rng, c, m, edge))
        cols = ", ".join(self.q(c.name) for c in t.cols)
        marks = ", ".join(["%s"] * len(t.cols))
        cur.execute(f"INSERT INTO {self.q(t.name)} ({cols}) VALUES ({marks})", row)

    def insert_copies(self, cur: Any, m: Model, t: Table, rng: random.Random, n: int) -> None:
        """``n`` identical rows in a keyless table."""
        row = [value(c.kind, rng, c, m) for c in t.cols]
        if t.cols[0].sql.endswith("NOT NULL") and row[0] is None:
            row[0] = "x"
        cols = ", ".join(self.q(c.name) for c in t.cols)
        marks = ", ".join(["%s"] * len(t.cols))
        for _ in range(n):
            cur.execute(f"INSERT INTO {self.q(t.name)} ({cols}) VALUES ({marks})", row)

    def update(self, cur: Any, m: Model, t: Table, rng: random.Random) -> None:
        cols = rng.sample(t.non_key, min(len(t.non_key), rng.randint(1, 3)))
        if not cols:
            return
        sets = ", ".join(f"{self.q(c.name)} = %s" for c in cols)
        vals = [value(c.kind, rng, c, m, edge=rng.random() < 0.2) for c in cols]
        if t.key is None:
            for c, v in zip(cols, vals, strict=True):
                if v is None and c.sql.endswith("NOT NULL"):
                    vals[cols.index(c)] = "y"
            self._one_keyless(cur, t, f"UPDATE {self.q(t.name)} SET {sets}", vals)
            return
        key = rng.randint(1, max(1, t.next_id - 1))
        cur.execute(f"UPDATE {self.q(t.name)} SET {sets} WHERE {self.q(t.key)} = %s", [*vals, key])

    def delete(self, cur: Any, t: Table, rng: random.Random) -> None:
        if t.key is None:
            self._one_keyless(cur, t, f"DELETE FROM {self.q(t.name)}", [])
            return
        key = rng.randint(1, max(1, t.next_id - 1))
        cur.execute(f"DELETE FROM {self.q(t.name)} WHERE {self.q(t.key)} = %s", [key])

    def change_key(self, cur: Any, t: Table, rng: random.Random) -> None:
        assert t.key is not None
        old = rng.randint(1, max(1, t.next_id - 1))
        new = t.next_id
        t.next_id += 1
        k = self.q(t.key)
        cur.execute(f"UPDATE {self.q(t.name)} SET {k} = %s WHERE {k} = %s", [new, old])

    def _one_keyless(self, cur: Any, t: Table, stmt: str, vals: list[Any]) -> None:
        """Change one of possibly identical rows (the first by physical order)."""
        if self.engine == "mariadb":
            cur.execute(f"{stmt} LIMIT 1", vals)
        else:
            name = self.q(t.name)
            cur.execute(f"{stmt} WHERE ctid = (SELECT ctid FROM {name} LIMIT 1)", vals)

    def truncate(self, cur: Any, t: Table) -> None:
        cur.execute(f"TRUNCATE TABLE {self.q(t.name)}")


class _MariaCursor:
    def __init__(self, conn: pymysql.connections.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)


class _PgCursor:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        self.conn.execute(sql, params)
