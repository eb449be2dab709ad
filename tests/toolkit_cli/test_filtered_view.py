"""`[tables.columns]`, `[tables.where]` and `[tables.rename]` hold on every path.

The CLI runs in subprocesses with a TOML config written exactly as docs/configuration.md
documents the keys: `redoline sync --until-caught-up` (snapshot, then streaming with updates
that move rows into and out of the predicate, key changes included), `redoline verify` (0 on
the filtered replica, exactly k after k planted differences) and `redoline repair --execute`
(fixes them inside the view). The oracle is plain driver SELECTs that apply the predicate and
the column list themselves; it shares no code with capture/, apply/ or verify/.
"""

from __future__ import annotations

import decimal
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from connectors import devservers
from connectors.endpoint import Endpoint

ROWS = 2000
#: the view: 3 of the table's 12 columns, the rows the predicate selects
VIEW = ("id", "status", "total")
PREDICATE = "status IN ('paid', 'shipped') AND total >= 100"
STATUSES = ("new", "paid", "shipped", "test", "void")


def _row(i: int) -> tuple[Any, ...]:
    status = STATUSES[(i * 7) % 5]
    total = decimal.Decimal((i * 37) % 400) + decimal.Decimal("0.25")
    return (
        i,
        status,
        total,
        f"region{i % 9}",
        f"note {i}",
        i % 13,
        i * 3,
        f"c{i % 17}",
        decimal.Decimal(i % 50) / 4,
        f"d{i}",
        i % 2,
        f"e{i % 3}",
    )


def _in_view(status: str, total: decimal.Decimal) -> bool:
    """The predicate, written out by hand for the oracle."""
    return status in ("paid", "shipped") and total >= 100


COLUMNS_SQL = (
    "id INT PRIMARY KEY, status VARCHAR(10) NOT NULL, total DECIMAL(10,2) NOT NULL, "
    "region VARCHAR(20), note VARCHAR(40), c1 INT, c2 BIGINT, c3 VARCHAR(10), "
    "c4 DECIMAL(8,2), c5 VARCHAR(20), c6 SMALLINT, c7 VARCHAR(5)"
)


# --------------------------------------------------------------------------- the servers


@dataclass
class Side:
    """One database as the test drives it with its own driver."""

    url: str
    schema: str  # where the source table lives (MariaDB: the database)
    query: Callable[[str], list[tuple[Any, ...]]]
    execute: Callable[[str], None]


def _mariadb(ep: Endpoint) -> Side:
    def connect() -> Any:
        return pymysql.connect(
            host=ep.host, port=ep.port, user="root", database=ep.database, autocommit=True
        )

    def query(sql: str) -> list[tuple[Any, ...]]:
        conn = connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()

    def execute(sql: str) -> None:
        conn = connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    assert ep.database is not None
    return Side(ep.url(), ep.database, query, execute)


def _postgres(ep: Endpoint) -> Side:
    dsn = f"host={ep.host} port={ep.port} user=postgres dbname={ep.database}"

    def query(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            return list(conn.execute(sql).fetchall())

    def execute(sql: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql)

    return Side(ep.url(), "public", query, execute)


def _duckdb(path: Path) -> Side:
    import duckdb

    def query(sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(path)) as conn:
            return list(conn.execute(sql).fetchall())

    def execute(sql: str) -> None:
        with duckdb.connect(str(path)) as conn:
            conn.execute(sql)

    return Side(f"duckdb://{path}", "", query, execute)


@pytest.fixture
def pg_target(postgres_server: devservers.DevServer) -> Iterator[Endpoint]:
    """A second PostgreSQL database (the target of a PostgreSQL source)."""
    name = f"tgt_{os.getpid()}_{id(postgres_server) % 10_000}"
    dsn = f"host=127.0.0.1 port={postgres_server.port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield Endpoint.parse(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/{name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sides(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Side, Side]:
    source_kind, target_kind = request.param
    source_ep = request.getfixturevalue("mysql_db" if source_kind == "mariadb" else "pg_db")
    source = _mariadb(source_ep) if source_kind == "mariadb" else _postgres(source_ep)
    if target_kind == "duckdb":
        target = _duckdb(tmp_path / "replica.duckdb")
    elif source_kind == "postgres":
        target = _postgres(request.getfixturevalue("pg_target"))
    else:
        target = _postgres(request.getfixturevalue("pg_db"))
    return source, target


@pytest.fixture(
    params=[
        ("mariadb", "duckdb"),
        ("mariadb", "postgres"),
        ("postgres", "duckdb"),
        ("postgres", "postgres"),
    ],
    ids=lambda p: f"{p[0]}-to-{p[1]}",
)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Side, Side]:
    return _sides(request, tmp_path)


# --------------------------------------------------------------------------- helpers


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", "from toolkit_cli.app import main; main()", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _config(tmp_path: Path, source: Side, target: Side) -> Path:
    table = f"{source.schema}.orders"
    path = tmp_path / "redoline.toml"
    path.write_text(
        f"""
[source]
url = "{source.url}"

[target]
url = "{target.url}"

[trail]
dir = "{tmp_path / "trail"}"

[tables]
include = ["{table}"]

[tables.columns]
"{table}" = {json.dumps(list(VIEW))}

[tables.where]
"{table}" = "{PREDICATE}"

[tables.rename]
"{table}" = "sales.big_orders"
""",
        encoding="utf-8",
    )
    return path


def _canon(rows: list[tuple[Any, ...]]) -> list[tuple[int, str, str]]:
    return sorted((int(r[0]), str(r[1]), f"{decimal.Decimal(r[2]):.2f}") for r in rows)


def _expected(source: Side) -> list[tuple[int, str, str]]:
    """The oracle: every source row, filtered and cut to the view's columns here."""
    rows = source.query(f"SELECT id, status, total FROM {_src(source)}")
    return _canon([r for r in rows if _in_view(r[1], decimal.Decimal(r[2]))])


def _src(source: Side) -> str:
    return "orders" if source.schema != "public" else "public.orders"


def _replica(target: Side) -> tuple[list[str], list[tuple[int, str, str]]]:
    """The target table's column names and rows (under the renamed name)."""
    cols = target.query(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'sales' "
        "AND table_name = 'big_orders' ORDER BY ordinal_position"
    )
    rows = target.query("SELECT * FROM sales.big_orders")
    return [str(c[0]) for c in cols], _canon(rows)


def _seed(source: Side) -> None:
    source.execute(f"CREATE TABLE {_src(source)} ({COLUMNS_SQL})")
    values = ", ".join(
        "(" + ", ".join(f"'{v}'" if isinstance(v, str) else str(v) for v in _row(i)) + ")"
        for i in range(ROWS)
    )
    source.execute(f"INSERT INTO {_src(source)} VALUES {values}")
    if source.schema == "public":
        # the predicate reads non-key columns: the before image of an update must be whole
        source.execute("ALTER TABLE public.orders REPLICA IDENTITY FULL")


def _first(source: Side, where: str, n: int) -> list[int]:
    rows = source.query(f"SELECT id FROM {_src(source)} WHERE {where} ORDER BY id LIMIT {n}")
    return [int(r[0]) for r in rows]


# --------------------------------------------------------------------------- the test


def test_filtered_view_snapshot_stream_verify_repair(
    pair: tuple[Side, Side], tmp_path: Path
) -> None:
    source, target = pair
    _seed(source)
    config = _config(tmp_path, source, target)
    t = _src(source)

    # -- snapshot: only the view's columns, only its rows, under the renamed name
    run = _cli(tmp_path, "sync", "-c", str(config), "--until-caught-up")
    assert run.returncode == 0, run.stdout + run.stderr
    want = _expected(source)
    assert 0 < len(want) < ROWS // 2
    cols, got = _replica(target)
    assert cols == list(VIEW)
    assert got == want

    # -- streaming: every transition of the predicate, key changes included
    in_rows = _first(source, "status = 'paid' AND total >= 150", 6)
    out_rows = _first(source, "status = 'test'", 6)
    assert len(in_rows) == 6 and len(out_rows) == 6
    a, b, c, d, e, f = in_rows
    p, q, r, s, u, v = out_rows
    statements = [
        f"UPDATE {t} SET status = 'test' WHERE id = {a}",  # in -> out: delete
        f"UPDATE {t} SET total = 5 WHERE id = {b}",  # in -> out: delete
        f"UPDATE {t} SET status = 'shipped', total = 250 WHERE id = {p}",  # out -> in: insert
        f"UPDATE {t} SET total = 120, note = 'x' WHERE id = {c}",  # in -> in: update
        f"UPDATE {t} SET note = 'still out' WHERE id = {q}",  # out -> out: dropped
        f"UPDATE {t} SET id = {ROWS + 10}, status = 'void' WHERE id = {d}",  # key: in -> out
        f"UPDATE {t} SET id = {ROWS + 11}, status = 'paid', total = 300 WHERE id = {r}",
        f"UPDATE {t} SET id = {ROWS + 12}, total = 199 WHERE id = {e}",  # key: in -> in
        f"UPDATE {t} SET id = {ROWS + 13} WHERE id = {s}",  # key: out -> out
        f"INSERT INTO {t} VALUES ({ROWS + 20}, 'paid', 400, 'r', 'n', 1, 2, 'c', 1, 'd', 0, 'e')",
        f"INSERT INTO {t} VALUES ({ROWS + 21}, 'new', 400, 'r', 'n', 1, 2, 'c', 1, 'd', 0, 'e')",
        f"DELETE FROM {t} WHERE id = {f}",  # delete in
        f"DELETE FROM {t} WHERE id = {u}",  # delete out: dropped
        f"UPDATE {t} SET status = 'paid', total = 100 WHERE id = {v}",  # out -> in (edge)
    ]
    for sql in statements:
        source.execute(sql)
    run = _cli(tmp_path, "sync", "-c", str(config), "--until-caught-up")
    assert run.returncode == 0, run.stdout + run.stderr
    # the predicate's work is said, with counts: 4 drops (q, s, the 'new' insert, u),
    # 3 updates out of the view (a, b, d) and 3 into it (p, r, v)
    assert "4 changes outside [tables.where] dropped" in run.stdout, run.stdout
    assert "3 updates left the predicate (deletes)" in run.stdout, run.stdout
    assert "3 updates entered the predicate (inserts)" in run.stdout, run.stdout
    want = _expected(source)
    cols, got = _replica(target)
    assert cols == list(VIEW)
    assert got == want
    ids = {row[0] for row in got}
    assert {p, ROWS + 11, v, ROWS + 12, c, ROWS + 20} <= ids
    assert not {a, b, d, e, f, q, r, s, u, ROWS + 13, ROWS + 21} & ids

    # -- verify: equal on the filtered replica
    run = _cli(tmp_path, "verify", "-c", str(config), "--no-recheck", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    (table,) = report["tables"]
    assert table["columns"] == list(VIEW) and table["source_rows"] == len(want)

    # -- k planted differences inside the view: exactly k reported
    missing, changed = got[0][0], got[1][0]
    (outside,) = _first(source, "status = 'void'", 1)  # never inside the predicate
    target.execute(f"DELETE FROM sales.big_orders WHERE id = {missing}")
    target.execute(f"UPDATE sales.big_orders SET total = 1 WHERE id = {changed}")
    # a row the source has but outside the predicate: extra on the target
    target.execute(f"INSERT INTO sales.big_orders VALUES ({outside}, 'paid', 777)")
    run = _cli(tmp_path, "verify", "-c", str(config), "--no-recheck", "--json")
    assert run.returncode == 1, run.stdout + run.stderr
    (table,) = json.loads(run.stdout)["tables"]
    kinds = sorted((d["kind"], d["key"]["id"]) for d in table["diffs"])
    assert kinds == sorted([("missing", missing), ("different", changed), ("extra", outside)])

    # -- repair inside the view: no row outside the predicate, no column outside the subset
    run = _cli(tmp_path, "repair", "-c", str(config), "--no-recheck", "--execute")
    assert run.returncode == 0, run.stdout + run.stderr
    cols, got = _replica(target)
    assert cols == list(VIEW)
    assert got == _expected(source)
    run = _cli(tmp_path, "verify", "-c", str(config), "--no-recheck")
    assert run.returncode == 0, run.stdout + run.stderr
