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
id = "shop"

[target]
url = "{target.url}"
id = "replica"

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


# --------------------------------------------------------------------------- streaming alone


@pytest.mark.parametrize("kind", ["mariadb", "postgres"])
def test_capture_and_apply_move_rows_across_the_predicate(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """`redoline capture` + `redoline apply` (no snapshot): an update leaving the predicate
    deletes the row on the target, one entering it inserts the row."""
    source = (
        _mariadb(request.getfixturevalue("mysql_db"))
        if kind == "mariadb"
        else _postgres(request.getfixturevalue("pg_db"))
    )
    target = _duckdb(tmp_path / "replica.duckdb")
    source.execute(f"CREATE TABLE {_src(source)} ({COLUMNS_SQL})")
    if kind == "postgres":
        source.execute("ALTER TABLE public.orders REPLICA IDENTITY FULL")
    config = _config(tmp_path, source, target)
    t = _src(source)

    def step() -> None:
        for command in ("capture", "apply"):
            run = _cli(tmp_path, command, "-c", str(config), "--until-caught-up")
            assert run.returncode == 0, command + run.stdout + run.stderr

    step()  # fixes the trail's start point (PostgreSQL: creates the slot)
    values = ", ".join(
        "(" + ", ".join(f"'{v}'" if isinstance(v, str) else str(v) for v in _row(i)) + ")"
        for i in range(200)
    )
    source.execute(f"INSERT INTO {t} VALUES {values}")
    step()
    assert _replica(target) == (list(VIEW), _expected(source))
    in_rows = _first(source, "status = 'paid' AND total >= 150", 3)
    out_rows = _first(source, "status = 'new'", 3)
    for sql in (
        f"UPDATE {t} SET status = 'void' WHERE id = {in_rows[0]}",
        f"UPDATE {t} SET id = 900, total = 1 WHERE id = {in_rows[1]}",
        f"UPDATE {t} SET status = 'paid', total = 123 WHERE id = {out_rows[0]}",
        f"UPDATE {t} SET id = 901, status = 'shipped', total = 300 WHERE id = {out_rows[1]}",
        f"UPDATE {t} SET note = 'out' WHERE id = {out_rows[2]}",
    ):
        source.execute(sql)
    step()
    cols, got = _replica(target)
    assert (cols, got) == (list(VIEW), _expected(source))
    ids = {r[0] for r in got}
    assert {out_rows[0], 901} <= ids and not {in_rows[0], in_rows[1], 900} & ids


# --------------------------------------------------------------------------- verify alone


@pytest.mark.parametrize("kind", ["mariadb", "postgres"])
def test_verify_and_repair_compare_the_view(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A replica built by hand (plain SQL) of the view: verify finds it equal, reports exactly
    the k planted differences, and repair fixes them without leaving the view. The config uses
    globs and a backquoted identifier (translated into PostgreSQL's SQL)."""
    source = (
        _mariadb(request.getfixturevalue("mysql_db"))
        if kind == "mariadb"
        else _postgres(request.getfixturevalue("pg_db"))
    )
    target = _duckdb(tmp_path / "replica.duckdb")
    _seed(source)
    want = _expected(source)
    target.execute("CREATE SCHEMA sales")
    target.execute(
        "CREATE TABLE sales.orders (id INTEGER PRIMARY KEY, status VARCHAR(10) NOT NULL, "
        "total DECIMAL(10,2) NOT NULL)"
    )
    target.execute(
        "INSERT INTO sales.orders VALUES " + ", ".join(f"({i}, '{s}', {tot})" for i, s, tot in want)
    )
    config = tmp_path / "verify.toml"
    config.write_text(
        f"""
[source]
url = "{source.url}"

[target]
url = "{target.url}"

[tables]
include = ["{source.schema}.orders"]

[tables.columns]
"{source.schema}.ord*" = ["id", "status", "total"]

[tables.where]
"{source.schema}.ord*" = "`status` IN ('paid', 'shipped') AND total >= 100"

[tables.rename]
"{source.schema}" = "sales"
""",
        encoding="utf-8",
    )
    run = _cli(tmp_path, "verify", "-c", str(config), "--no-recheck")
    assert run.returncode == 0, run.stdout + run.stderr
    (outside,) = _first(source, "status = 'test'", 1)
    target.execute(f"DELETE FROM sales.orders WHERE id = {want[5][0]}")
    target.execute(
        "UPDATE sales.orders SET status = CASE WHEN status = 'paid' THEN 'shipped' ELSE 'paid' "
        f"END WHERE id = {want[6][0]}"
    )
    target.execute(f"INSERT INTO sales.orders VALUES ({outside}, 'paid', 500)")
    target.execute(f"UPDATE sales.orders SET total = total + 1 WHERE id = {want[7][0]}")
    run = _cli(tmp_path, "verify", "-c", str(config), "--no-recheck", "--json")
    assert run.returncode == 1, run.stdout + run.stderr
    (table,) = json.loads(run.stdout)["tables"]
    assert table["counts"] == {"missing": 1, "extra": 1, "different": 2}
    run = _cli(tmp_path, "repair", "-c", str(config), "--no-recheck", "--execute")
    assert run.returncode == 0, run.stdout + run.stderr
    got = _canon(target.query("SELECT * FROM sales.orders"))
    assert got == want
    cols = target.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders'"
    )
    assert sorted(c[0] for c in cols) == sorted(VIEW)


# --------------------------------------------------------------------------- refusals


def test_predicate_beyond_a_key_only_before_image_is_refused(
    pg_db: Endpoint, tmp_path: Path
) -> None:
    """PostgreSQL's default replica identity logs only the key before an update: a predicate
    on another column cannot be decided, so check and sync refuse it and name the fix."""
    source = _postgres(pg_db)
    source.execute(f"CREATE TABLE public.orders ({COLUMNS_SQL})")
    source.execute(
        "INSERT INTO public.orders VALUES (1, 'paid', 200, 'r', 'n', 1, 2, 'c', 1, 'd', 0, 'e')"
    )
    target = _duckdb(tmp_path / "replica.duckdb")
    config = _config(tmp_path, source, target)
    run = _cli(tmp_path, "check", "-c", str(config), "--json")
    assert run.returncode == 1, run.stdout + run.stderr
    (src,) = [e for e in json.loads(run.stdout)["endpoints"] if e["role"] == "source"]
    # blocking ones: "undo possible" is advice (not blocking) about the same missing identity
    bad = [i for i in src["items"] if not i["ok"] and i["blocking"]]
    assert [i["name"] for i in bad] == ["filtered view public.orders"]
    assert 'ALTER TABLE "public"."orders" REPLICA IDENTITY FULL' in bad[0]["hint"]
    run = _cli(tmp_path, "capture", "-c", str(config), "--until-caught-up")
    assert run.returncode == 2, run.stdout + run.stderr
    assert 'ALTER TABLE "public"."orders" REPLICA IDENTITY FULL' in run.stderr
    slots = "SELECT 1 FROM pg_replication_slots WHERE database = current_database()"
    assert not source.query(slots)  # refused before reading the log
    run = _cli(tmp_path, "sync", "-c", str(config), "--until-caught-up")
    assert run.returncode == 2, run.stdout + run.stderr
    message = " ".join(run.stderr.split())
    assert "public.orders" in message and "REPLICA IDENTITY FULL" in message
    assert "it reads status, total" in message  # the columns the predicate reads beyond the key
    assert not (tmp_path / "replica.duckdb").exists() or not target.query(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = 'sales'"
    )
    # once the table logs whole before images, the same configuration runs
    source.execute("ALTER TABLE public.orders REPLICA IDENTITY FULL")
    run = _cli(tmp_path, "sync", "-c", str(config), "--until-caught-up")
    assert run.returncode == 0, run.stdout + run.stderr
    assert _replica(target) == (list(VIEW), _expected(source))


def test_column_subset_without_the_key_is_refused(mysql_db: Endpoint, tmp_path: Path) -> None:
    source = _mariadb(mysql_db)
    source.execute(f"CREATE TABLE orders ({COLUMNS_SQL})")
    target = _duckdb(tmp_path / "replica.duckdb")
    config = _config(tmp_path, source, target)
    text = config.read_text().replace('["id", "status", "total"]', '["status", "total"]')
    config.write_text(text)
    run = _cli(tmp_path, "sync", "-c", str(config), "--until-caught-up")
    assert run.returncode == 2, run.stdout + run.stderr
    message = " ".join(run.stderr.split())
    assert f"{source.schema}.orders leaves out its row identity column(s) id" in message


@pytest.mark.parametrize("kind", ["mariadb", "postgres"])
def test_snapshot_no_follow_pushes_a_like_predicate(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """`snapshot --no-follow` (a one-off copy) with a LIKE pattern: the % reaches the source's
    SQL intact (MariaDB's driver formats statements with %-placeholders)."""
    source = (
        _mariadb(request.getfixturevalue("mysql_db"))
        if kind == "mariadb"
        else _postgres(request.getfixturevalue("pg_db"))
    )
    target = _duckdb(tmp_path / "replica.duckdb")
    _seed(source)
    config = _config(tmp_path, source, target)
    config.write_text(config.read_text().replace(PREDICATE, "status LIKE 'sh%' AND total < 50"))
    # small chunks: bounded middle chunks take the grouped read, the open-ended ones the plain
    run = _cli(tmp_path, "snapshot", "-c", str(config), "--no-follow", "--chunk-rows", "500")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = source.query(f"SELECT id, status, total FROM {_src(source)}")
    want = _canon([r for r in rows if r[1].startswith("sh") and r[2] < 50])
    assert want and _replica(target) == (list(VIEW), want)
