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
from apply.sync import SyncOptions, hold_lock, run_sync
from connectors.base import TableFilter, open_database
from connectors.endpoint import Endpoint
from connectors.errors import LockedError
from connectors.model import TableId

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
