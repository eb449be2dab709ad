"""The SQL Server snapshot (one SNAPSHOT isolation transaction, its point bracketed by the log's
end) against the scripted server: what it sees, where it stands, and how catch-up joins it."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest

from connectors.base import TableFilter, open_database
from connectors.endpoint import Endpoint
from connectors.errors import PrerequisiteError
from connectors.log import Commit, RowEvent
from connectors.model import TableId
from connectors.snapshot import open_snapshot
from connectors.sqlserver import SqlServer
from connectors.sqlserver.positions import compare
from connectors.sqlserver.snapshot import SqlServerSnapshot
from tests.connectors.sqlserver_fake import FakeServer, install


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    s = FakeServer()
    install(monkeypatch, s)
    s.enable_db()
    s.connect().cursor().execute(
        "CREATE TABLE [dbo].[t] ([id] INT PRIMARY KEY, [v] NVARCHAR(20), [p] DECIMAL(8,3), "
        "[at] DATETIMEOFFSET(7), [b] VARBINARY(8))"
    )
    s.enable_table("dbo", "t", None)
    return s


@pytest.fixture
def db(server: FakeServer) -> SqlServer:
    found = open_database(Endpoint.parse("sqlserver://reader@db.example/shop"))
    assert isinstance(found, SqlServer)
    return found


def insert(server: FakeServer, i: int, v: str = "x") -> None:
    tz = dt.timezone(dt.timedelta(hours=2))
    server.connect().cursor().execute(
        "INSERT INTO [dbo].[t] VALUES (?, ?, ?, ?, ?)",
        i,
        v,
        decimal.Decimal("1.5"),
        dt.datetime(2026, 1, 5, 12, 0, 0, 250000, tzinfo=tz),
        b"\x01\x02",
    )


def rows(snap: Any, db: SqlServer, fmt: str = "pgcopy", chunk_rows: int = 1000) -> list[str]:
    schema = db.table_schema(TableId("dbo", "t"))
    out = []
    for chunk in snap.plan_chunks(schema, chunk_rows):
        for data, _n in snap.read_chunk(0, schema, chunk, fmt, schema.column_names):
            out += data.decode().splitlines()
    return out


def commits(db: SqlServer, start: str) -> list[Commit]:
    reader = db.open_log(start, tables=TableFilter(("dbo.*",)), until_caught_up=True)
    return [e for e in reader.events() if isinstance(e, Commit)]


def test_snapshot_sees_its_start_and_catch_up_joins_exactly(
    server: FakeServer, db: SqlServer
) -> None:
    trail_start = db.end_position()
    insert(server, 1)
    insert(server, 2)
    with open_snapshot(db, 4) as snap:
        assert isinstance(snap, SqlServerSnapshot) and snap.workers == 1
        point = snap.point
        assert point.start == point.end  # nothing logged while it began: exact
        insert(server, 3)  # after the snapshot began: not in it
        got = rows(snap, db)
    assert got == [
        "1\tx\t1.500\t2026-01-05 10:00:00.250000+00\t\\\\x0102",
        "2\tx\t1.500\t2026-01-05 10:00:00.250000+00\t\\\\x0102",
    ]
    before, after = [], []
    for c in commits(db, trail_start):
        (before if compare(c.position, point.start) <= 0 else after).append(c)
    assert len(before) == 2 and len(after) == 1  # catch-up applies exactly the third insert


def test_a_commit_while_the_snapshot_begins_falls_in_the_window(
    server: FakeServer, db: SqlServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail_start = db.end_position()
    insert(server, 1)
    calls = []
    log_end = SqlServerSnapshot._log_end

    def racing(self: SqlServerSnapshot) -> Any:
        calls.append(1)
        if len(calls) == 2:
            insert(server, 2)  # commits after the snapshot is fixed, before the log end is read
        return log_end(self)

    monkeypatch.setattr(SqlServerSnapshot, "_log_end", racing)
    with open_snapshot(db, 1) as snap:
        point = snap.point
        got = rows(snap, db, "tsv")
    assert [r.split("\t")[0] for r in got] == ["1"]
    assert got[0].split("\t")[3] == "2026-01-05 10:00:00.250000"  # tsv: UTC without offset
    assert compare(point.start, point.end) < 0 and "window" in point.method
    first, second = commits(db, trail_start)
    assert compare(first.position, point.start) <= 0  # in the snapshot
    # not in the snapshot, yet not after its end: catch-up applies it in collision mode
    assert compare(point.start, second.position) < 0 <= compare(point.end, second.position)


def test_chunks_by_integer_key_cover_every_row(server: FakeServer, db: SqlServer) -> None:
    for i in range(1, 26):
        insert(server, i, f"v{i}")
    with open_snapshot(db, 1) as snap:
        schema = db.table_schema(TableId("dbo", "t"))
        chunks = snap.plan_chunks(schema, 7)
        assert len(chunks) > 3
        got = rows(snap, db, "csv", chunk_rows=7)
        assert snap.estimate_rows(schema) == 25
    assert sorted(int(r.split(",")[0].strip('"')) for r in got) == list(range(1, 26))
    assert got[0].split(",")[3] == '"2026-01-05 10:00:00.250000+00"'


def test_snapshot_needs_snapshot_isolation(server: FakeServer, db: SqlServer) -> None:
    server.snapshot_isolation = 0
    with pytest.raises(PrerequisiteError, match="ALLOW_SNAPSHOT_ISOLATION ON"):
        open_snapshot(db, 1)


def test_trail_definitions_continue_after_a_snapshot(server: FakeServer, db: SqlServer) -> None:
    start = db.end_position()
    insert(server, 1)
    reader = db.open_log(start, tables=TableFilter(("dbo.*",)), until_caught_up=True)
    events = list(reader.events())
    ddl = [e.change for e in events if isinstance(e, RowEvent) and e.change.table_schema]
    assert len(ddl) == 1
    # the instance's definition is the table's: the snapshot and capture agree on columns
    assert ddl[0].table_schema is not None
    assert ddl[0].table_schema.columns == db.table_schema(TableId("dbo", "t")).columns
