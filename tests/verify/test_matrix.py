"""Verify agrees with a plain row comparison on replicas that redoline itself built.

For every engine pair and every column kind its source produces (the rows of the type table
in docs/apply.md), the source table is loaded through the real replication path: `redoline
sync --until-caught-up` in a subprocess takes the snapshot, then changes made on the source
are captured and applied by a second run. An oracle that shares no code with verify/ or the
connectors' checksum modules (plain driver SELECTs, normalised below) must find the replica
equal, and `redoline verify` must exit 0; then k differences are planted on the target and
verify must report exactly k.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import re
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest

from connectors.endpoint import Endpoint

pytestmark = [pytest.mark.slow]

UTC = dt.UTC

# --------------------------------------------------------------------------- source tables

# name, source DDL type, oracle tag, target engines the column is replicated to (None: all).
# Columns whose kind has no type on a target (docs/apply.md: SchemaError) are left out there.
MYSQL_COLUMNS: list[tuple[str, str, str, tuple[str, ...] | None]] = [
    ("ti", "TINYINT", "int", None),
    ("si", "SMALLINT", "int", None),
    ("mi", "MEDIUMINT", "int", None),
    ("ii", "INT", "int", None),
    ("bi", "BIGINT", "int", None),
    ("ui", "INT UNSIGNED", "int", None),
    ("ubi", "BIGINT UNSIGNED", "int", None),
    ("flag", "BOOLEAN", "int", None),
    ("amount", "DECIMAL(14,4)", "dec", None),
    ("flt", "FLOAT", "f32", None),
    ("dbl", "DOUBLE", "f64", None),
    ("ch", "CHAR(10)", "str", None),
    ("vc", "VARCHAR(40)", "str", None),
    ("txt", "TEXT", "str", None),
    ("bn", "BINARY(4)", "bytes", None),
    ("vb", "VARBINARY(16)", "bytes", None),
    ("bl", "BLOB", "bytes", None),
    ("d", "DATE", "date", None),
    ("tm", "TIME(6)", "dur", None),
    ("dtm", "DATETIME(6)", "dt", None),
    ("ts", "TIMESTAMP(6) NULL", "dt", None),
    ("doc", "JSON", "json", None),
    ("uid", "UUID", "uuid", None),
    ("color", "ENUM('red','green','blue')", "str", None),
    ("tags", "SET('a','b','c')", "set", None),
    ("bits", "BIT(8)", "bits", None),
    ("yr", "YEAR", "int", None),
    # kind "other": no type on another engine (SchemaError), verbatim on the same one
    ("addr", "INET6", "str", ("mysql",)),
]

PG_COLUMNS: list[tuple[str, str, str, tuple[str, ...] | None]] = [
    ("si", "SMALLINT", "int", None),
    ("ii", "INTEGER", "int", None),
    ("bi", "BIGINT", "int", None),
    ("flag", "BOOLEAN", "int", None),
    ("amount", "NUMERIC(14,4)", "dec", None),
    ("num", "NUMERIC", "dec", None),
    ("flt", "REAL", "f32", None),
    ("dbl", "DOUBLE PRECISION", "f64", None),
    ("ch", "CHAR(10)", "str", None),
    ("vc", "VARCHAR(40)", "str", None),
    ("txt", "TEXT", "str", None),
    ("byt", "BYTEA", "bytes", None),
    ("d", "DATE", "date", None),
    ("tm", "TIME(6)", "time", None),
    ("ttz", "TIMETZ(6)", "timetz", ("postgresql", "duckdb")),  # MySQL TIME has no zone
    ("dtm", "TIMESTAMP(6)", "dt", None),
    ("ts", "TIMESTAMPTZ(6)", "dt", None),
    ("iv", "INTERVAL", "interval", None),
    ("js", "JSON", "json", None),
    ("jb", "JSONB", "json", None),
    ("uid", "UUID", "uuid", None),
    ("color", "mood", "str", None),
    ("bits", "BIT(8)", "bits", None),
    ("vbits", "VARBIT(16)", "bits", ("postgresql", "duckdb")),  # MySQL BIT needs a width
    ("arr", "INTEGER[]", "array", None),
    ("tarr", "TEXT[]", "array", None),
]

CHARS = ["", "a", "ab ", "héllo", "x y", "日本語", "  lead", "0123456789"]
DOCS = [
    '{"b": 1, "a": [1, 2.5, "x"], "n": null}',
    '{"z":1,"a":{"y":true,"bb":"é"}}',
    "[]",
    '  {"k" :  "v"}  ',
    '"just a string"',
    "3",
]


def mysql_row(i: int) -> dict[str, Any]:
    """Row ``i`` of the MariaDB source: edge values on the first rows, NULLs on every 13th."""
    if i % 13 == 0:
        return {"id": i}
    return {
        "id": i,
        "ti": -128 if i == 1 else i % 128,
        "si": -32768 if i == 1 else (i * 37) % 32767,
        "mi": -8388608 if i == 1 else i * 1000,
        "ii": -(2**31) if i == 1 else i * 65537,
        "bi": -(2**63) if i == 1 else (2**63 - 1 if i == 2 else i * 10**12),
        "ui": 2**32 - 1 if i == 1 else i,
        "ubi": 2**64 - 1 if i == 1 else i * 10**15,
        "flag": i % 2,
        "amount": decimal.Decimal(i * 12345 - 600_000) / 10_000,
        "flt": [0.1, 1e20, -2.5, 1 / 3][i % 4] * i,
        "dbl": [0.1, 1e20, 1.7976931348623157e308, 1 / 7, -0.0][i % 5] if i < 5 else i / 7,
        "ch": CHARS[i % len(CHARS)],
        "vc": ["", "   ", "trailing  ", "v|~", "ü 世界"][i % 5] + str(i),
        "txt": "line\nbreak\ttab 'q' \\ " * (i % 3),
        "bn": bytes([i % 256, 0]) if i % 2 else bytes([i % 256, 1, 2, 3]),
        "vb": bytes([i % 256, 0, 255]),
        "bl": bytes(range(i % 40)),
        "d": dt.date(2000, 1, 1) + dt.timedelta(days=i * 17),
        "tm": [
            dt.timedelta(hours=-838, minutes=-59, seconds=-59),
            dt.timedelta(hours=100, microseconds=500000),
            dt.timedelta(seconds=i * 7, microseconds=i),
            dt.timedelta(hours=-1, microseconds=-1),
        ][i % 4],
        "dtm": dt.datetime(2024, 3, 10, 2, 30) + dt.timedelta(seconds=i * 3601, microseconds=i),
        "ts": dt.datetime(2021, 1, 1) + dt.timedelta(seconds=i * 86399, microseconds=i),
        "doc": DOCS[i % len(DOCS)],
        "uid": str(uuid.UUID(int=i * 2**70 + i)),
        "color": ["red", "green", "blue"][i % 3],
        "tags": ["", "a", "a,c", "a,b,c"][i % 4],
        "bits": i % 256,
        "yr": 1901 + i % 254,
        "addr": f"2001:db8::{i:x}",
    }


def pg_row(i: int) -> dict[str, Any]:
    """Row ``i`` of the PostgreSQL source."""
    if i % 13 == 0:
        return {"id": i}
    return {
        "id": i,
        "si": -32768 if i == 1 else (i * 37) % 32767,
        "ii": -(2**31) if i == 1 else i * 65537,
        "bi": -(2**63) if i == 1 else (2**63 - 1 if i == 2 else i * 10**12),
        "flag": bool(i % 2),
        "amount": decimal.Decimal(i * 12345 - 600_000) / 10_000,
        "num": decimal.Decimal(i) / 8 + decimal.Decimal("1e10"),
        "flt": [0.1, 1e20, -2.5, 1 / 3][i % 4] * i,
        "dbl": [0.1, 1e20, 1.7976931348623157e308, 1 / 7, -0.0][i % 5] if i < 5 else i / 7,
        "ch": CHARS[i % len(CHARS)],
        "vc": ["", "   ", "trailing  ", "v|~", "ü 世界"][i % 5] + str(i),
        "txt": "line\nbreak\ttab 'q' \\ " * (i % 3),
        "byt": bytes([i % 256, 0, 255]) * (i % 3),
        "d": dt.date(2000, 1, 1) + dt.timedelta(days=i * 17),
        "tm": dt.time(i % 24, i % 60, (i * 7) % 60, i * 13 % 1_000_000),
        "ttz": dt.time(i % 24, 5, 6, 7, tzinfo=dt.timezone(dt.timedelta(hours=i % 12 - 5))),
        "dtm": dt.datetime(2024, 3, 10, 2, 30) + dt.timedelta(seconds=i * 3601, microseconds=i),
        "ts": dt.datetime(2021, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=i * 86399),
        "iv": ["1 mon 2 days 00:00:00.000003", "-3 days 04:05:06", "1 year", "00:00:01.5"][i % 4],
        "js": DOCS[i % len(DOCS)],
        "jb": DOCS[i % len(DOCS)],
        "uid": uuid.UUID(int=i * 2**70 + i),
        "color": ["sad", "ok", "happy"][i % 3],
        "bits": format(i % 256, "08b"),
        "vbits": format(i, "b"),
        "arr": [i, None, -i] if i % 2 else [],
        "tarr": ["a b", "", '"q"', "é \\"] if i % 2 else ["x"],
    }


# --------------------------------------------------------------------------- engines


def _mysql(ep: Endpoint) -> Any:
    conn = pymysql.connect(host=ep.host, port=ep.port or 3306, user="root", database=ep.database)
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
    conn.autocommit(True)
    return conn


def _pg(ep: Endpoint) -> psycopg.Connection[Any]:
    conn = psycopg.connect(
        f"host={ep.host} port={ep.port} user=postgres dbname={ep.database}", autocommit=True
    )
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def _run(ep: Endpoint, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    if ep.engine == "mysql":
        conn = _mysql(ep)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()
    if ep.engine == "postgresql":
        with _pg(ep) as pconn:
            cur = pconn.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
    with duckdb.connect(ep.path) as dconn:
        dconn.execute("SET TimeZone = 'UTC'")
        res = dconn.execute(sql, params)
        return list(res.fetchall()) if res.description else []


def _source_table(ep: Endpoint) -> str:
    if ep.engine == "mysql":
        return f"`{ep.database}`.`kinds`"
    return "public.kinds"


def _insert(ep: Endpoint, columns: list[tuple[str, str, str, Any]], rows: list[dict[str, Any]]):
    names = ["id"] + [c[0] for c in columns]
    sql = (
        f"INSERT INTO {_source_table(ep)} ({', '.join(names)}) "
        f"VALUES ({', '.join(['%s'] * len(names))})"
    )
    data = [[row.get(n) for n in names] for row in rows]
    if ep.engine == "mysql":
        conn = _mysql(ep)
        with conn.cursor() as cur:
            cur.executemany(sql, data)
        conn.close()
    else:
        with _pg(ep) as pconn, pconn.cursor() as cur:
            cur.executemany(sql, data)


def _create_source(ep: Endpoint, columns: list[tuple[str, str, str, Any]]) -> None:
    cols = ", ".join(f"{c[0]} {c[1]}" for c in columns)
    if ep.engine == "postgresql":
        _run(ep, "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
    _run(ep, f"CREATE TABLE {_source_table(ep)} (id INT PRIMARY KEY, {cols})")


# --------------------------------------------------------------------------- the oracle


def _select(ep: Endpoint, table: str, columns: list[tuple[str, str, str, Any]]) -> dict[int, Any]:
    """Every row by id, each value normalised by its column's oracle tag."""
    exprs = ["id"]
    for name, _type, tag, _ in columns:
        q = f"`{name}`" if ep.engine == "mysql" else f'"{name}"'
        if tag == "f32" and ep.engine == "mysql":
            q = f"CAST({q} AS DOUBLE)"  # MariaDB prints FLOAT with 6 digits
        elif tag == "interval" and ep.engine != "mysql":
            q = f"CAST({q} AS VARCHAR)"  # drivers fold months into days
        elif tag == "dt" and ep.engine == "duckdb":
            q = f"CAST({q} AS VARCHAR)"  # TIMESTAMPTZ needs pytz in the driver
        elif tag == "json" and ep.engine == "postgresql":
            q = f"{q}::text"  # psycopg decodes json, so a JSON string would look like text
        elif tag == "timetz" and ep.engine == "duckdb":
            q = f"CAST({q} AS VARCHAR)"
        exprs.append(q)
    rows = _run(ep, f"SELECT {', '.join(exprs)} FROM {table} ORDER BY id")
    tags = [c[2] for c in columns]
    return {r[0]: tuple(_norm(v, t) for v, t in zip(r[1:], tags, strict=True)) for r in rows}


def _micros(delta: dt.timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


_IV = re.compile(r"(-?\d+) (year|mon|month|day|microsecond)s?|(-?)(\d+):(\d\d):(\d\d)(?:\.(\d+))?")


def _interval(text: str) -> tuple[int, int, int]:
    months = days = micros = 0
    for m in _IV.finditer(text):
        if m.group(1):
            n, unit = int(m.group(1)), m.group(2)
            if unit == "year":
                months += 12 * n
            elif unit in ("mon", "month"):
                months += n
            elif unit == "day":
                days += n
            else:
                micros += n
        else:
            sign = -1 if m.group(3) else 1
            frac = int((m.group(7) or "0").ljust(6, "0"))
            secs = int(m.group(4)) * 3600 + int(m.group(5)) * 60 + int(m.group(6))
            micros += sign * (secs * 1_000_000 + frac)
    return months, days, micros


def _norm(v: Any, tag: str) -> Any:
    if v is None:
        return None
    if tag == "int":
        return int(v)
    if tag == "dec":
        return decimal.Decimal(str(v)).normalize()
    if tag == "f32":
        return struct.unpack("<f", struct.pack("<f", float(v)))[0]
    if tag == "f64":
        return float(v) + 0.0
    if tag == "str":
        return str(v)
    if tag == "bytes":
        return bytes(v)
    if tag == "date":
        return v
    if tag == "dur":
        return _micros(v)
    if tag == "time":
        if isinstance(v, dt.timedelta):
            return _micros(v)
        return ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond
    if tag == "timetz":
        if isinstance(v, str):
            v = dt.time.fromisoformat(v if len(v) > 11 else v + ":00")
        return (v.replace(tzinfo=None), v.utcoffset())
    if tag == "dt":
        if isinstance(v, str):
            v = dt.datetime.fromisoformat(v)
        if v.tzinfo is not None:
            v = v.astimezone(UTC).replace(tzinfo=None)
        return v
    if tag == "interval":
        return _interval(str(v))
    if tag in ("json", "array"):
        return json.loads(v) if isinstance(v, str) else v
    if tag == "uuid":
        return str(v).lower()
    if tag == "set":
        return frozenset(x for x in (v.split(",") if isinstance(v, str) else v) if x)
    if tag == "bits":
        return int.from_bytes(v, "big") if isinstance(v, bytes) else int(str(v), 2)
    raise AssertionError(tag)


# --------------------------------------------------------------------------- the CLI


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDOLINE_CONFIG": str(tmp_path / "redoline.toml"), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-c", "from toolkit_cli.app import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )


def _config(tmp_path: Path, src: Endpoint, tgt: Endpoint, src_schema: str, tgt_schema: str):
    rename = f'[tables.rename]\n{src_schema} = "{tgt_schema}"\n' if src_schema != tgt_schema else ""
    (tmp_path / "redoline.toml").write_text(
        f'[source]\nurl = "{src.url()}"\nid = "s{tmp_path.name[-40:]}"\n'
        f'[target]\nurl = "{tgt.url()}"\nid = "{tmp_path.name[-40:]}"\n'
        f'[trail]\ndir = "{tmp_path / "trail"}"\n'
        f'[state]\ndir = "{tmp_path / "state"}"\n'
        f'[tables]\ninclude = ["{src_schema}.*"]\n{rename}'
        "[verify]\nrecheck_wait = 0\n"
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def second_mysql(mysql_db: Endpoint) -> Iterator[Endpoint]:
    name = mysql_db.database + "_b"
    conn = pymysql.connect(host=mysql_db.host, port=mysql_db.port or 3306, user="root")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    yield mysql_db.with_database(name)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


@pytest.fixture
def second_pg(pg_db: Endpoint) -> Iterator[Endpoint]:
    name = pg_db.database + "_b"
    dsn = f"host={pg_db.host} port={pg_db.port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_db.with_database(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


PAIRS = [
    ("mysql", "postgresql"),
    ("mysql", "duckdb"),
    ("mysql", "mysql"),
    ("postgresql", "mysql"),
    ("postgresql", "duckdb"),
    ("postgresql", "postgresql"),
]

SNAPSHOT_ROWS = 600
STREAM_ROWS = 400


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{s}-{t}" for s, t in PAIRS])
def test_verify_agrees_with_the_oracle(
    request: pytest.FixtureRequest, tmp_path: Path, source: str, target: str
) -> None:
    src: Endpoint = request.getfixturevalue("mysql_db" if source == "mysql" else "pg_db")
    if target == source:
        tgt: Endpoint = request.getfixturevalue(
            "second_mysql" if target == "mysql" else "second_pg"
        )
    elif target == "mysql":
        tgt = request.getfixturevalue("mysql_db")
    elif target == "postgresql":
        tgt = request.getfixturevalue("pg_db")
    else:
        tgt = Endpoint.parse(f"duckdb://{tmp_path / 'replica.duckdb'}")
    if source == "mysql":
        all_columns, make_row, src_schema = MYSQL_COLUMNS, mysql_row, src.database
    else:
        all_columns, make_row, src_schema = PG_COLUMNS, pg_row, "public"
    columns = [c for c in all_columns if c[3] is None or target in c[3]]
    tgt_schema = tgt.database if target == "mysql" else src_schema
    if target == "postgresql" and source == "postgresql":
        tgt_schema = "public"
    _create_source(src, columns)
    _insert(src, columns, [make_row(i) for i in range(1, SNAPSHOT_ROWS + 1)])
    _config(tmp_path, src, tgt, src_schema, tgt_schema)

    # snapshot, then the streaming path: inserts, updates and deletes captured and applied
    res = _cli(tmp_path, "sync", "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr
    stream_rows = [make_row(i) for i in range(SNAPSHOT_ROWS + 1, SNAPSHOT_ROWS + STREAM_ROWS + 1)]
    _insert(src, columns, stream_rows)
    stab = _source_table(src)
    q = "`" if source == "mysql" else '"'
    # each updated row takes the values of another row
    for i in range(SNAPSHOT_ROWS + 2, SNAPSHOT_ROWS + 40, 3):
        other = make_row(i + 7)
        changed = columns
        sets = ", ".join(f"{q}{c[0]}{q} = %s" for c in changed)
        _run(
            src, f"UPDATE {stab} SET {sets} WHERE id = %s", [other.get(c[0]) for c in changed] + [i]
        )
    _run(src, f"DELETE FROM {stab} WHERE id IN (50, 51, 650)")
    res = _cli(tmp_path, "sync", "--until-caught-up")
    assert res.returncode == 0, res.stdout + res.stderr

    if target == "mysql":
        ttab = f"`{tgt_schema}`.`kinds`"
    else:
        ttab = f'"{tgt_schema}".kinds'
    want = _select(src, stab, columns)
    got = _select(tgt, ttab, columns)
    assert len(want) == SNAPSHOT_ROWS + STREAM_ROWS - 3
    bad = {i: (want.get(i), got.get(i)) for i in set(want) | set(got) if want.get(i) != got.get(i)}
    assert not bad, _explain(bad, columns)

    started = time.monotonic()
    res = _cli(tmp_path, "verify", "--json", "--no-recheck")
    seconds = time.monotonic() - started
    assert res.returncode == 0, _summary(res)
    report = json.loads(res.stdout)
    (table,) = report["tables"]
    assert table["mismatched_chunks"] == 0, table
    assert seconds < 30

    # plant differences: a changed value, a missing row, an extra row, and where the target
    # keeps trailing spaces, padding an application would see
    tq = "`" if target == "mysql" else '"'
    _run(tgt, f"UPDATE {ttab} SET {tq}vc{tq} = 'changed' WHERE id = 7")
    _run(tgt, f"DELETE FROM {ttab} WHERE id = 8")
    _run(tgt, f"INSERT INTO {ttab} (id) VALUES (5000)")
    planted = {7: "different", 8: "missing", 5000: "extra"}
    if source != target:
        # PostgreSQL's char(n) pads, MariaDB's CHAR does not: take the padding away / add some
        pad = "rtrim(ch)" if source == "postgresql" else "ch || ' '"
        _run(tgt, f"UPDATE {ttab} SET ch = {pad} WHERE id = 10")
        planted[10] = "different"
    res = _cli(tmp_path, "verify", "--json", "--no-recheck")
    assert res.returncode == 1, _summary(res)
    (table,) = json.loads(res.stdout)["tables"]
    found = {d["key"]["id"]: d["kind"] for d in table["diffs"]}
    assert found == planted, _summary(res)
    columns_named = {
        d["key"]["id"]: d["columns"] for d in table["diffs"] if d["kind"] == "different"
    }
    assert columns_named == {7: ["vc"], **({10: ["ch"]} if 10 in planted else {})}


def _summary(res: subprocess.CompletedProcess[str]) -> str:
    """What verify reported, shortly: differences by kind and columns, one sample each."""
    try:
        (table,) = json.loads(res.stdout)["tables"]
    except ValueError:
        return res.stdout[-3000:] + res.stderr
    seen: dict[tuple[str, tuple[str, ...]], Any] = {}
    counts: dict[tuple[str, tuple[str, ...]], int] = {}
    for d in table["diffs"]:
        k = (d["kind"], tuple(d.get("columns") or ()))
        counts[k] = counts.get(k, 0) + 1
        if k not in seen and d["source"] and d["target"]:
            seen[k] = [(c, d["source"][c], d["target"][c]) for c in k[1]]
    return f"{table.get('error')} {counts} {seen}"


def _explain(bad: dict[int, Any], columns: list[tuple[str, str, str, Any]]) -> str:
    lines = []
    for i, (w, g) in sorted(bad.items())[:5]:
        if w is None or g is None:
            lines.append(f"row {i}: source {w!r} target {g!r}")
            continue
        for c, a, b in zip(columns, w, g, strict=True):
            if a != b:
                lines.append(f"row {i} {c[0]}: source {a!r} target {b!r}")
    return f"{len(bad)} rows differ:\n" + "\n".join(lines)
