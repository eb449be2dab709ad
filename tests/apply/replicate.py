"""One table through every replication path into every target, judged by plain driver reads.

Shared by the boundary-value and charset tests. A :class:`Pair` is a source endpoint and a
target database (the source's own engine in another database); :func:`replicate` moves the
source's tables to the target by ``snapshot`` (bulk load), ``stream`` (capture the log into a
trail, apply it) or ``repair`` (empty target table, verify, execute the repair). The oracle
(:func:`read_table`) reads both sides with their drivers and shares no code with ``verify``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from apply.options import ApplyOptions
from apply.snapshot import SnapshotOptions, run_snapshot
from apply.trail_apply import apply_trail
from apply.typemap import ensure_table
from capture.filters import CaptureFilter
from capture.runner import CaptureOptions, run_capture
from connectors.base import Database, TableFilter, open_database
from connectors.endpoint import Endpoint
from connectors.model import TableId
from verify import TablePair, VerifyOptions, run_verify
from verify.repair import execute_repair, repair_plan

PATHS = ("snapshot", "stream", "repair")
TARGETS = ("duckdb", "postgres", "mariadb")


def mysql_exec(ep: Endpoint, statements: Sequence[str], database: str | None = None) -> None:
    conn = pymysql.connect(
        host=ep.host,
        port=ep.port,
        user="root",
        database=(ep.database if database is None else database) or None,
        charset="utf8mb4",
        autocommit=True,
    )
    try:
        with conn.cursor() as cur:
            for stmt in statements:
                cur.execute(stmt)
    finally:
        conn.close()


def mysql_insert(ep: Endpoint, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    conn = pymysql.connect(
        host=ep.host, port=ep.port, user="root", database=ep.database, charset="utf8mb4"
    )
    try:
        with conn.cursor() as cur:
            cur.executemany(sql, list(rows))
        conn.commit()
    finally:
        conn.close()


def pg_exec(ep: Endpoint, sql: str, rows: Sequence[Sequence[Any]] = (), db: str = "") -> None:
    with psycopg.connect(
        host=ep.host, port=ep.port, user="postgres", dbname=db or ep.database, autocommit=True
    ) as conn:
        if rows:
            with conn.cursor() as cur:
                cur.executemany(sql, list(rows))
        else:
            conn.execute(sql)


@dataclass
class Pair:
    """A source endpoint and a fresh target database of ``target_engine``."""

    source_ep: Endpoint
    target: Database
    rename: Callable[[TableId], TableId]
    source_schema: str
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def source(self) -> Database:
        return open_database(self.source_ep)


@pytest.fixture
def make_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Pair]]:
    """``make_pair(source_engine, target_engine)`` -> a :class:`Pair` (dropped afterwards)."""
    made: list[Pair] = []

    def make(source_engine: str, target_engine: str) -> Pair:
        if source_engine == "mariadb":
            src: Endpoint = request.getfixturevalue("mysql_db")
            schema = src.database
        else:
            src = request.getfixturevalue("pg_db")
            schema = "public"
        cleanup: list[Callable[[], None]] = []
        rename: Callable[[TableId], TableId] = lambda t: t  # noqa: E731
        if target_engine == "duckdb":
            target = open_database(Endpoint.parse(f"duckdb://{tmp_path / 'target.duckdb'}"))
        elif target_engine == "postgres":
            if source_engine == "postgres":
                other = src.database + "_copy"
                pg_exec(src, f'CREATE DATABASE "{other}"', db="postgres")
                cleanup.append(
                    lambda: pg_exec(src, f'DROP DATABASE "{other}" WITH (FORCE)', db="postgres")
                )
                ep = Endpoint.parse(src.url().rsplit("/", 1)[0] + "/" + other)
            else:
                ep = request.getfixturevalue("pg_db")
            target = open_database(ep)
        else:
            if source_engine == "mariadb":
                name = src.database + "_copy"
                mysql_exec(src, [f"CREATE DATABASE `{name}`"])
                cleanup.append(lambda: mysql_exec(src, [f"DROP DATABASE `{name}`"], database=""))
                ep = Endpoint.parse(src.url().rsplit("/", 1)[0] + "/" + name)
            else:
                ep = request.getfixturevalue("mysql_db")
                name = ep.database
            target = open_database(ep)
            rename = lambda t: TableId(name, t.name)  # noqa: E731
        pair = Pair(src, target, rename, schema, cleanup)
        made.append(pair)
        return pair

    yield make
    for pair in made:
        for fn in pair.cleanup:
            fn()


def start_stream(pair: Pair, trail: Path) -> CaptureOptions:
    """Fix the capture start point before the rows are written (a PostgreSQL slot)."""
    source = pair.source
    filters = CaptureFilter(TableFilter((f"{pair.source_schema}.*",)))
    if source.engine == "postgresql":
        opts = CaptureOptions(
            source_id="src",
            filters=filters,
            until_caught_up=True,
            reader_options={"slot": f"s_{pair.source_ep.database}", "publication": "p_test"},
        )
        # creates the slot; its one transaction holds the tables' definitions (schemaprobe)
        assert run_capture(source, trail, opts).transactions == 1
        return opts
    return CaptureOptions(
        source_id="src",
        filters=filters,
        until_caught_up=True,
        start_position=source.end_position(),
        reader_options={"server_id": 4_200_000 + abs(hash(str(trail))) % 100_000},
    )


def finish_stream(pair: Pair, trail: Path, opts: CaptureOptions) -> None:
    source = pair.source
    assert run_capture(source, trail, opts).transactions > 0
    writer = pair.target.open_writer()
    try:
        stats = apply_trail(
            writer,
            trail,
            ApplyOptions(
                target_id=f"t{abs(hash(str(trail))) % 10**9}",
                source_dialect=source.dialect,
                rename=pair.rename,
                batch_ms=10**6,
            ),
        )
    finally:
        writer.close()
    assert stats.rejected_transactions == 0


def snapshot(pair: Pair, tables: Sequence[str], tmp_path: Path) -> None:
    report = run_snapshot(
        pair.source,
        pair.target,
        SnapshotOptions(
            source_id=f"s{tmp_path.name}",
            tables=TableFilter(tuple(f"{pair.source_schema}.{t}" for t in tables)),
            rename=pair.rename,
            capture=False,
        ),
    )
    assert not report.failed


def repair(pair: Pair, tables: Sequence[str], unverifiable: Sequence[str] = ()) -> None:
    """Create the target tables empty, verify, execute the repair; verify again: equal but
    for the ``unverifiable`` columns (docs/verify.md: Limits)."""
    source = pair.source
    pairs = []
    writer = pair.target.open_writer()
    try:
        for name in tables:
            table = TableId(pair.source_schema, name)
            schema = source.table_schema(table)
            ensure_table(writer, schema, pair.rename(table), source_dialect=source.dialect)
            writer.commit()
            pairs.append(TablePair(table, pair.rename(table)))
    finally:
        writer.close()
    opts = VerifyOptions(recheck=False, leaf_rows=2)
    result = run_verify(source, pair.target, pairs, opts)
    assert not result.equal
    assert execute_repair(repair_plan(result, pair.target), pair.target) > 0
    again = run_verify(source, pair.target, pairs, opts)
    left = [
        d
        for t in again.tables
        for d in t.diffs
        if d.kind != "different" or set(d.columns) - set(unverifiable)
    ]
    assert not left and all(t.error is None for t in again.tables), left


# --------------------------------------------------------------------------- the oracle


def read_table(db: Database, table: TableId, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """``columns`` of every row ordered by the first one, as the engine's driver returns them
    (DuckDB instants as UTC wall time; MySQL sessions in UTC)."""
    q = db.quote
    conn = db.connect()
    try:
        cols = ", ".join(q(c) for c in columns)
        sql = f"SELECT {cols} FROM {db.qualified(table)} ORDER BY {q(columns[0])}"
        if db.engine == "mysql":
            with conn.cursor() as cur:
                cur.execute("SET time_zone = '+00:00'")
                cur.execute(sql)
                return list(cur.fetchall())
        if db.engine == "duckdb":
            conn.execute("SET TimeZone = 'UTC'")
            return list(conn.execute(sql).fetchall())
        conn.execute("SET TIME ZONE 'UTC'")
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()


def canon(value: Any, hint: str = "") -> Any:
    """A comparable form of one value read by any driver, keeping what matters here: the
    type family, empty vs NULL, the sign of zero."""
    if value is None:
        return None
    if hint == "json":
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str):
            value = json.loads(value)
        return ("json", json.dumps(value, sort_keys=True))
    if hint == "array":
        if isinstance(value, str):
            value = json.loads(value)  # MariaDB keeps arrays as JSON
        return ("array", tuple(value))
    if hint == "set":
        if isinstance(value, str):
            value = [x for x in value.split(",") if x]
        return ("set", frozenset(value))
    if hint == "char" and isinstance(value, str):
        return value.rstrip(" ")  # CHAR(n): PostgreSQL pads, MySQL strips, DuckDB has none
    if hint == "bool" or isinstance(value, bool):
        return ("int", int(value))
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, decimal.Decimal):
        if value == value.to_integral_value():
            return ("int", int(value))  # a numeric(20) holding BIGINT UNSIGNED
        return ("dec", value.normalize())
    if isinstance(value, float):
        digits = 6 if hint == "float4" else 15
        return ("float", float(f"{value:.{digits}g}"), math.copysign(1.0, value))
    if isinstance(value, memoryview | bytearray | bytes):
        return ("bytes", bytes(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def rows_of(
    db: Database, table: TableId, columns: Sequence[str], hints: dict[str, str]
) -> list[tuple[Any, ...]]:
    rows = read_table(db, table, columns)
    return [
        tuple(canon(v, hints.get(c, "")) for c, v in zip(columns, r, strict=True)) for r in rows
    ]
