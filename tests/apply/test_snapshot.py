"""Snapshot + catch-up while the source keeps writing, compared row by row (not via verify)."""

from __future__ import annotations

import datetime as dt
import decimal
import random
import threading
from pathlib import Path
from typing import Any

import pymysql
import pytest

from apply.snapshot import SnapshotOptions, load_table_states, run_snapshot
from connectors.base import TableFilter, open_database
from connectors.endpoint import Endpoint
from connectors.errors import ConfigError, LockedError
from connectors.model import TableId
from toolkit_cli.sync import SyncOptions, hold_lock, run_sync

DDL = [
    "CREATE TABLE items (id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(60), n INT, "
    "amount DECIMAL(12,3), at DATETIME(6), ts TIMESTAMP(6) NULL, data VARBINARY(16), "
    "note TEXT)",
    "CREATE TABLE pairs (a VARCHAR(20) NOT NULL, b INT NOT NULL, v DOUBLE, PRIMARY KEY (a, b))",
]


def _conn(ep: Endpoint) -> Any:
    return pymysql.connect(
        host=ep.host, port=ep.port, user="root", database=ep.database, autocommit=True
    )


def _seed(ep: Endpoint, rows: int) -> None:
    conn = _conn(ep)
    with conn.cursor() as cur:
        for stmt in DDL:
            cur.execute(stmt)
        cur.executemany(
            "INSERT INTO items VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [_item(i) for i in range(1, rows + 1)],
        )
        cur.executemany(
            "INSERT INTO pairs VALUES (%s, %s, %s)",
            [(f"k{i % 50}", i, i / 3) for i in range(rows // 2)],
        )
    conn.close()


def _item(i: int) -> tuple[Any, ...]:
    return (
        i,
        f"name {i} \t'\"\\ é" if i % 7 == 0 else f"name {i}",
        i * 3,
        decimal.Decimal(i) / 1000,
        dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i, microseconds=i),
        None if i % 5 == 0 else dt.datetime(2024, 2, 1) + dt.timedelta(minutes=i),
        bytes([i % 256, 0, 10, 9, 92]),
        None if i % 3 else f"line\nbreak {i}",
    )


class Workload:
    """Small random transactions on the source until stopped."""

    def __init__(self, ep: Endpoint, first_id: int) -> None:
        self.ep = ep
        self.next_id = first_id
        self.stop = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        conn = _conn(self.ep)
        rnd = random.Random(7)
        with conn.cursor() as cur:
            while not self.stop.is_set():
                cur.execute("BEGIN")
                for _ in range(rnd.randint(1, 4)):
                    what = rnd.random()
                    target = rnd.randint(1, self.next_id)
                    if what < 0.4:
                        cur.execute(
                            "INSERT INTO items VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                            _item(self.next_id),
                        )
                        self.next_id += 1
                    elif what < 0.75:
                        cur.execute(
                            "UPDATE items SET n = n + 1, name = CONCAT('u', id), "
                            "note = NULL WHERE id = %s",
                            (target,),
                        )
                    elif what < 0.9:
                        cur.execute("DELETE FROM items WHERE id = %s", (target,))
                    else:
                        cur.execute(
                            "INSERT INTO pairs VALUES (%s, %s, 1.5) ON DUPLICATE KEY UPDATE "
                            "v = v + 1",
                            (f"k{target % 50}", target % 900),
                        )
                cur.execute("COMMIT")
                self.count += 1
        conn.close()

    def __enter__(self) -> Workload:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def _norm(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, decimal.Decimal):
        return value.normalize()
    if isinstance(value, float):
        return round(value, 9)
    return value


def _rows_source(ep: Endpoint, table: str, order: str) -> list[tuple[Any, ...]]:
    conn = _conn(ep)
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(f"SELECT * FROM {table} ORDER BY {order}")
        rows = [tuple(_norm(v) for v in r) for r in cur.fetchall()]
    conn.close()
    return rows


def _rows_target(url: str, table: str, order: str) -> list[tuple[Any, ...]]:
    db = open_database(Endpoint.parse(url))
    conn = db.connect()
    try:
        select = "*"
        if db.engine == "duckdb":
            conn.execute("SET TimeZone = 'UTC'")
            schema, name = table.split(".")
            tz = [
                c
                for (c,) in conn.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND "
                    "table_name = ? AND data_type = 'TIMESTAMP WITH TIME ZONE'",
                    [schema, name],
                ).fetchall()
            ]
            if tz:  # aware values need pytz in DuckDB's Python API: compare as UTC text-free
                select = "* REPLACE (" + ", ".join(f"{c}::TIMESTAMP AS {c}" for c in tz) + ")"
        rows = conn.execute(f"SELECT {select} FROM {table} ORDER BY {order}").fetchall()
    finally:
        conn.close()
    return [tuple(_norm(v) for v in r) for r in rows]


@pytest.fixture(params=["postgresql", "duckdb"])
def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return f"duckdb://{tmp_path}/replica.duckdb"
    ep: Endpoint = request.getfixturevalue("pg_db")
    return ep.url()


def test_snapshot_and_catchup_under_writes(
    mysql_db: Endpoint, target_url: str, tmp_path: Path
) -> None:
    _seed(mysql_db, 6000)
    source = open_database(mysql_db)
    target = open_database(Endpoint.parse(target_url))
    opts = SyncOptions(
        trail_dir=tmp_path / "trail",
        state_dir=tmp_path / "state",
        source_id="src",
        target_id="tgt",
        snapshot=SnapshotOptions(
            workers=2, chunk_rows=700, tables=TableFilter((f"{mysql_db.database}.*",))
        ),
        until_caught_up=True,
    )
    with Workload(mysql_db, 6001) as work:
        first = run_sync(source, target, opts)
        assert first.snapshot is not None and first.snapshot.rows > 6000
        while work.count < 50:
            threading.Event().wait(0.05)
    # the workload is stopped: one more cron-style run catches up with everything
    run_sync(source, target, opts)
    schema = mysql_db.database
    for table, order in (("items", "id"), ("pairs", "a, b")):
        src = _rows_source(mysql_db, table, order)
        tgt = _rows_target(target_url, f"{schema}.{table}", order)
        assert len(src) == len(tgt)
        assert src == tgt
    states = load_table_states(target, "src")
    assert {s.state for s in states} == {"loaded"}
    assert all(s.chunks_done == s.chunks_total for s in states)


def test_snapshot_resumes_per_chunk(mysql_db: Endpoint, pg_db: Endpoint) -> None:
    _seed(mysql_db, 3000)
    source = open_database(mysql_db)
    target = open_database(pg_db)
    calls = {"n": 0}

    def crash(table: str, rows: int, estimate: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # a crash after two committed chunks

    tables = TableFilter((f"{mysql_db.database}.items",))
    with pytest.raises(KeyboardInterrupt):
        run_snapshot(
            source,
            target,
            SnapshotOptions(
                source_id="s", workers=1, chunk_rows=500, tables=tables, progress=crash
            ),
        )
    (state,) = load_table_states(target, "s")
    assert state.state == "loading" and 0 < state.chunks_done < state.chunks_total
    report = run_snapshot(
        source, target, SnapshotOptions(source_id="s", workers=2, chunk_rows=500, tables=tables)
    )
    assert report.rows == 3000
    assert report.tables[0].chunks_total == state.chunks_total
    src = _rows_source(mysql_db, "items", "id")
    assert src == _rows_target(pg_db.url(), f"{mysql_db.database}.items", "id")


def test_second_run_is_locked(tmp_path: Path) -> None:
    with (
        hold_lock(tmp_path, "sync-a-b"),
        pytest.raises(LockedError) as err,
        hold_lock(tmp_path, "sync-a-b"),
    ):
        pass
    assert err.value.exit_code == 8
    assert TableId("a", "b")


# --------------------------------------------------------------------------- PostgreSQL source

PG_DDL = [
    "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(60), n INT, amount NUMERIC(12,3), "
    "at TIMESTAMP(6), ts TIMESTAMPTZ, data BYTEA, note TEXT, flag BOOLEAN)",
    "CREATE TABLE pairs (a VARCHAR(20) NOT NULL, b INT NOT NULL, v DOUBLE PRECISION, "
    "PRIMARY KEY (a, b))",
]


def _pg_item(i: int) -> tuple[Any, ...]:
    row = _item(i)
    ts = row[5].replace(tzinfo=dt.UTC) if row[5] is not None else None
    name = row[1].replace("\t", "\t\f") if i % 14 == 0 else row[1]  # \f: not a MySQL escape
    return (i, name, row[2], row[3], row[4], ts, row[6], row[7], None if i % 4 == 0 else i % 2 == 0)


def _pg_conn(ep: Endpoint) -> Any:
    import psycopg

    return psycopg.connect(
        host=ep.host, port=ep.port, user="postgres", dbname=ep.database, autocommit=True
    )


def _pg_seed(ep: Endpoint, rows: int) -> None:
    with _pg_conn(ep) as conn:
        for stmt in PG_DDL:
            conn.execute(stmt)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO items VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [_pg_item(i) for i in range(1, rows + 1)],
            )
            cur.executemany(
                "INSERT INTO pairs VALUES (%s, %s, %s)",
                [(f"k{i % 50}", i, i / 3) for i in range(rows // 2)],
            )


class PgWorkload(Workload):
    """The same mix of small transactions, on PostgreSQL."""

    def run(self) -> None:
        conn = _pg_conn(self.ep)
        rnd = random.Random(7)
        while not self.stop.is_set():
            with conn.transaction():
                for _ in range(rnd.randint(1, 4)):
                    what = rnd.random()
                    target = rnd.randint(1, self.next_id)
                    if what < 0.4:
                        conn.execute(
                            "INSERT INTO items VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                            _pg_item(self.next_id),
                        )
                        self.next_id += 1
                    elif what < 0.75:
                        conn.execute(
                            "UPDATE items SET n = n + 1, name = 'u' || id, note = NULL, "
                            "flag = NOT flag WHERE id = %s",
                            (target,),
                        )
                    elif what < 0.9:
                        conn.execute("DELETE FROM items WHERE id = %s", (target,))
                    else:
                        conn.execute(
                            "INSERT INTO pairs VALUES (%s, %s, 1.5) ON CONFLICT (a, b) DO "
                            "UPDATE SET v = pairs.v + 1",
                            (f"k{target % 50}", target % 900),
                        )
            self.count += 1
        conn.close()


def _pg_rows(ep: Endpoint, table: str, order: str) -> list[tuple[Any, ...]]:
    with _pg_conn(ep) as conn:
        rows = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
    return [tuple(_norm(v) for v in r) for r in rows]


def _mysql_rows(ep: Endpoint, table: str, order: str) -> list[tuple[Any, ...]]:
    conn = pymysql.connect(host=ep.host, port=ep.port, user="root", autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(f"SELECT * FROM {table} ORDER BY {order}")
        rows = [tuple(_norm(v) for v in r) for r in cur.fetchall()]
    conn.close()
    return rows


def _same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> None:
    # MySQL has no boolean: TINYINT(1) 0/1 against True/False
    def fix(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [tuple(int(v) if isinstance(v, bool) else v for v in r) for r in rows]

    assert len(a) == len(b)
    assert fix(a) == fix(b)


@pytest.mark.parametrize("slot_exists", [False, True], ids=["new-slot", "existing-slot"])
@pytest.mark.parametrize("engine", ["duckdb", "mariadb"])
def test_pg_source_snapshot_and_catchup_under_writes(
    pg_db: Endpoint,
    engine: str,
    slot_exists: bool,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """A new slot gives an exact point; an existing one a window applied in collision mode.
    Either way the target ends equal to the source, row by row."""
    from connectors.postgres.slots import init_slot

    _pg_seed(pg_db, 5000)
    source = open_database(pg_db)
    if engine == "duckdb":
        target_ep = Endpoint.parse(f"duckdb://{tmp_path}/replica.duckdb")
        rename: Any = lambda t: t  # noqa: E731
        names = {"items": "public.items", "pairs": "public.pairs"}
    else:
        target_ep = request.getfixturevalue("mysql_db")
        rename = lambda t: TableId(target_ep.database, t.name)  # noqa: E731
        names = {t: f"`{target_ep.database}`.{t}" for t in ("items", "pairs")}
    target = open_database(target_ep)
    if slot_exists:
        # `redoline init` for this pipeline: the slot is recorded in its trail
        init_slot(
            source,
            source.list_tables(),
            trail_dir=tmp_path / "trail",
            source_id=f"s{tmp_path.name}",
        )
    opts = SyncOptions(
        trail_dir=tmp_path / "trail",
        state_dir=tmp_path / "state",
        # ids of their own: the MariaDB server's checkpoint and progress tables are shared
        source_id=f"s{tmp_path.name}",
        target_id=f"t{tmp_path.name}",
        snapshot=SnapshotOptions(
            workers=2, chunk_rows=600, tables=TableFilter(("public.*",)), rename=rename
        ),
        apply_options={"rename": rename},
        until_caught_up=True,
    )
    with PgWorkload(pg_db, 5001) as work:
        while work.count < 20:
            threading.Event().wait(0.02)
        first = run_sync(source, target, opts)
        assert first.snapshot is not None and first.snapshot.rows > 7000
        point = first.snapshot.point
        # an existing slot too: the snapshot comes from a temporary slot's export, so its
        # point is exact (no collision window)
        assert point is not None and point.start == point.end
        assert ("temporary slot" in point.method) == slot_exists
        while work.count < 100:
            threading.Event().wait(0.05)
    run_sync(source, target, opts)
    for table, order in (("items", "id"), ("pairs", "a, b")):
        src = _pg_rows(pg_db, table, order)
        if engine == "duckdb":
            tgt = _rows_target(target_ep.url(), names[table], order)
        else:
            tgt = _mysql_rows(target_ep, names[table], order)
        _same(src, tgt)
    states = load_table_states(target, f"s{tmp_path.name}")
    assert {s.state for s in states} == {"loaded"}


def test_mariadb_to_mariadb_snapshot_and_catchup(
    mysql_db: Endpoint, tmp_path: Path, mariadb_server: Any
) -> None:
    """LOAD DATA LOCAL INFILE into another database of the same server, under writes."""
    _seed(mysql_db, 4000)
    other = f"{mysql_db.database}_copy"
    source = open_database(mysql_db)
    source.query(f"CREATE DATABASE `{other}`")
    target_ep = Endpoint.parse(f"mariadb://root@127.0.0.1:{mariadb_server.port}/{other}")
    target = open_database(target_ep)

    def rename(t: TableId) -> TableId:
        return TableId(other, t.name)

    opts = SyncOptions(
        trail_dir=tmp_path / "trail",
        state_dir=tmp_path / "state",
        # ids of their own: the MariaDB server's checkpoint and progress tables are shared
        source_id=f"s{tmp_path.name}",
        target_id=f"t{tmp_path.name}",
        snapshot=SnapshotOptions(
            workers=2,
            chunk_rows=700,
            tables=TableFilter((f"{mysql_db.database}.*",)),
            rename=rename,
        ),
        apply_options={"rename": rename},
        until_caught_up=True,
    )
    try:
        with Workload(mysql_db, 4001) as work:
            first = run_sync(source, target, opts)
            assert first.snapshot is not None and first.snapshot.rows > 6000
            while work.count < 50:
                threading.Event().wait(0.05)
        run_sync(source, target, opts)
        for table, order in (("items", "id"), ("pairs", "a, b")):
            src = _rows_source(mysql_db, table, order)
            assert src == _mysql_rows(target_ep, f"`{other}`.{table}", order)
        # loading a table into itself is refused before anything is emptied
        with pytest.raises(ConfigError):
            run_snapshot(
                source,
                source,
                SnapshotOptions(source_id="x", tables=TableFilter((f"{mysql_db.database}.*",))),
            )
        assert len(_rows_source(mysql_db, "items", "id")) > 4000
    finally:
        target.query(f"DROP DATABASE IF EXISTS `{other}`")
