"""The SQL Server CDC reader against the scripted server (tests/connectors/sqlserver_fake.py):
transactions by commit LSN in commit order, update pairs, pages that cut transactions, exact
resume, the capture job's lag, the cleanup job passing our position, a second capture
instance after a schema change."""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import TableFilter, open_database
from connectors.endpoint import Endpoint
from connectors.errors import ReplicationError
from connectors.log import Begin, Commit, Heartbeat, LogEvent, RowEvent
from connectors.model import Op, TableId
from connectors.sqlserver import SqlServer
from connectors.sqlserver.positions import Position, compare
from tests.connectors.sqlserver_fake import FakeServer, install


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    s = FakeServer()
    install(monkeypatch, s)
    s.enable_db()
    return s


@pytest.fixture
def db(server: FakeServer) -> SqlServer:
    found = open_database(Endpoint.parse("sqlserver://reader@db.example:1433/shop"))
    assert isinstance(found, SqlServer)
    return found


def run(server: FakeServer, *statements: str | tuple[str, tuple[Any, ...]]) -> None:
    """``statements`` in one transaction of the application, committed."""
    conn = server.connect()
    conn.autocommit = False
    cur = conn.cursor()
    for stmt in statements:
        text, params = (stmt, ()) if isinstance(stmt, str) else stmt
        cur.execute(text, *params)
    conn.commit()


def table(
    server: FakeServer, name: str, columns: str = "[id] INT PRIMARY KEY, [v] VARCHAR(20)"
) -> None:
    run(server, f"CREATE TABLE [dbo].[{name}] ({columns})")
    server.enable_table("dbo", name, None)


def read(
    db: SqlServer, start: str, *, batch: int = 5000, catalog: dict[Any, Any] | None = None
) -> list[LogEvent]:
    reader = db.open_log(
        start,
        tables=TableFilter(("dbo.*",)),
        until_caught_up=True,
        options={"catalog": catalog or {}, "page_rows": batch, "poll_interval": 0.01},
    )
    return list(reader.events())


def transactions(events: list[LogEvent]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """(commit position, [(op, table, before, after)]) per transaction, DDL left out."""
    out: list[tuple[str, list[tuple[Any, ...]]]] = []
    rows: list[tuple[Any, ...]] = []
    open_xid = None
    for ev in events:
        if isinstance(ev, Begin):
            assert open_xid is None
            open_xid, rows = ev.xid, []
        elif isinstance(ev, RowEvent):
            assert ev.xid == open_xid
            ch = ev.change
            if ch.op is not Op.DDL:
                rows.append((ch.op.value, ch.table.name, ch.before, ch.after))
        elif isinstance(ev, Commit):
            assert ev.xid == open_xid
            out.append((ev.position, rows))
            open_xid = None
    assert open_xid is None
    return out


def test_transactions_in_commit_order_with_update_pairs(server: FakeServer, db: SqlServer) -> None:
    table(server, "a")
    table(server, "b")
    start = db.end_position()
    first, second = server.connect(), server.connect()
    first.autocommit = second.autocommit = False
    c1, c2 = first.cursor(), second.cursor()
    c1.execute("INSERT INTO [dbo].[a] VALUES (?, ?)", 1, "one")
    c2.execute("INSERT INTO [dbo].[b] VALUES (?, ?)", 10, "ten")
    c2.execute("INSERT INTO [dbo].[a] VALUES (?, ?)", 2, "two")
    second.commit()
    c1.execute("INSERT INTO [dbo].[b] VALUES (?, ?)", 11, "eleven")
    first.commit()
    run(
        server,
        ("UPDATE [dbo].[a] SET [v] = ? WHERE [id] = ?", ("TWO", 2)),
        ("DELETE FROM [dbo].[b] WHERE [id] = ?", (10,)),
    )
    events = read(db, start)
    got = transactions(events)
    assert [rows for _, rows in got] == [
        [
            ("insert", "b", None, {"id": 10, "v": "ten"}),
            ("insert", "a", None, {"id": 2, "v": "two"}),
        ],
        [
            ("insert", "a", None, {"id": 1, "v": "one"}),
            ("insert", "b", None, {"id": 11, "v": "eleven"}),
        ],
        [
            ("update", "a", {"id": 2, "v": "two"}, {"id": 2, "v": "TWO"}),
            ("delete", "b", {"id": 10, "v": "ten"}, None),
        ],
    ]
    positions = [p for p, _ in got]
    assert all(compare(x, y) < 0 for x, y in itertools.pairwise(positions))
    assert compare(start, positions[0]) < 0
    # each table is announced once, before its first row, with its captured columns and key
    ddl = [e.change for e in events if isinstance(e, RowEvent) and e.change.op is Op.DDL]
    assert [(c.table.name, c.schema_version) for c in ddl] == [("b", 1), ("a", 1)]
    assert ddl[0].table_schema is not None and ddl[0].table_schema.primary_key == ("id",)
    # commit times are the mapping's local times in UTC (the fake runs at UTC+1)
    commits = [e for e in events if isinstance(e, Commit)]
    assert all(c.commit_time.tzinfo is dt.UTC for c in commits)
    assert commits[0].commit_time.replace(tzinfo=None) == server.mapping[0][2] - dt.timedelta(
        hours=1
    )
    assert isinstance(events[-1], Heartbeat) and events[-1].caught_up


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 7])
def test_pages_that_cut_transactions_and_update_pairs(
    server: FakeServer, db: SqlServer, batch: int
) -> None:
    table(server, "a")
    table(server, "b")
    start = db.end_position()
    run(
        server,
        *[("INSERT INTO [dbo].[a] VALUES (?, ?)", (i, f"a{i}")) for i in range(5)],
        ("INSERT INTO [dbo].[b] VALUES (?, ?)", (1, "b1")),
    )
    run(server, *[("UPDATE [dbo].[a] SET [v] = ? WHERE [id] = ?", (f"A{i}", i)) for i in range(3)])
    run(server, ("INSERT INTO [dbo].[b] VALUES (?, ?)", (2, "b2")))
    whole = transactions(read(db, start))
    paged = transactions(read(db, start, batch=batch))
    assert paged == whole
    assert [len(rows) for _, rows in paged] == [6, 3, 1]
    assert paged[1][1][0] == ("update", "a", {"id": 0, "v": "a0"}, {"id": 0, "v": "A0"})


def test_resume_after_any_commit_is_exact(server: FakeServer, db: SqlServer) -> None:
    table(server, "a")
    start = db.end_position()
    for i in range(6):
        run(
            server,
            ("INSERT INTO [dbo].[a] VALUES (?, ?)", (i, "x")),
            ("INSERT INTO [dbo].[a] VALUES (?, ?)", (100 + i, "y")),
        )
    everything = transactions(read(db, start))
    assert len(everything) == 6
    for n, (position, _) in enumerate(everything):
        rest = transactions(read(db, position, catalog=None))
        assert rest == everything[n + 1 :]


def test_capture_job_lag_reads_only_what_it_harvested(server: FakeServer, db: SqlServer) -> None:
    table(server, "a")
    start = db.end_position()
    server.auto_capture = False
    for i in range(4):
        run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?)", (i, "x")))
    assert transactions(read(db, start)) == []  # nothing harvested yet: nothing to read
    server.capture_job(transactions=2)
    got = transactions(read(db, start))
    assert [rows[0][3]["id"] for _, rows in got] == [0, 1]
    server.capture_job()
    more = transactions(read(db, got[-1][0]))
    assert [rows[0][3]["id"] for _, rows in more] == [2, 3]


def test_cleanup_past_our_position_stops_with_resnapshot(server: FakeServer, db: SqlServer) -> None:
    table(server, "a")
    start = db.end_position()
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?)", (1, "x")))
    events = read(db, start)
    position = transactions(events)[-1][0]
    catalog = {
        e.change.table: e.change.table_schema
        for e in events
        if isinstance(e, RowEvent) and e.change.op is Op.DDL
    }
    server.tick(3600)
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?)", (2, "x")))
    server.tick(3600)
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?)", (3, "x")))
    # within retention: the reader goes on
    assert len(transactions(read(db, position, catalog=catalog))) == 2
    server.retention = 90  # minutes: the second insert is older than that now
    server.tick(60)
    server.cleanup_job()
    with pytest.raises(ReplicationError, match=r"dbo\.a .*gone.*cleanup") as info:
        read(db, position, catalog=catalog)
    assert "new snapshot" in str(info.value)


def test_cleanup_while_a_window_is_read_is_error_313(
    server: FakeServer, db: SqlServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    table(server, "a")
    start = db.end_position()
    for i in range(3):
        run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?)", (i, "x")))
    catalog = {TableId("dbo", "a"): db.table_schema(TableId("dbo", "a"))}
    from connectors.sqlserver import cdc

    plan = cdc.CdcReader._plan

    def plan_then_cleanup(self: Any, after: Any, to: Any) -> Any:
        sources = plan(self, after, to)
        server.cleanup_job(low_water=server.mapping[-1][0])  # the cleanup job runs meanwhile
        return sources

    monkeypatch.setattr(cdc.CdcReader, "_plan", plan_then_cleanup)
    with pytest.raises(ReplicationError, match="error 313"):
        read(db, start, catalog=catalog)


def test_a_second_capture_instance_takes_over_with_the_new_column(
    server: FakeServer, db: SqlServer
) -> None:
    table(server, "a")
    start = db.end_position()
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?)", (1, "old")))
    run(server, "ALTER TABLE [dbo].[a] ADD [n] INT")
    # the old instance does not see n: a row written now carries no n there
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?, ?)", (2, "between", 5)))
    server.enable_table("dbo", "a", "dbo_a_v2")
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?, ?)", (3, "new", 7)))
    run(server, ("UPDATE [dbo].[a] SET [n] = ? WHERE [id] = ?", (8, 1)))
    events = read(db, start)
    got = transactions(events)
    assert [rows[0][3] for _, rows in got] == [
        {"id": 1, "v": "old"},
        {"id": 2, "v": "between"},
        {"id": 3, "v": "new", "n": 7},
        {"id": 1, "v": "old", "n": 8},
    ]
    ddl = [e.change for e in events if isinstance(e, RowEvent) and e.change.op is Op.DDL]
    assert [(c.schema_version, c.table_schema.column_names) for c in ddl if c.table_schema] == [
        (1, ("id", "v")),
        (2, ("id", "v", "n")),
    ]
    # once past the switch the old instance may go: reading on needs only the new one
    last = got[-1][0]
    server.disable_instance("dbo_a")
    run(server, ("DELETE FROM [dbo].[a] WHERE [id] = ?", (3,)))
    catalog = {TableId("dbo", "a"): ddl[-1].table_schema}
    assert transactions(read(db, last, catalog=catalog)) == [
        (
            transactions(read(db, last, catalog=catalog))[0][0],
            [("delete", "a", {"id": 3, "v": "new", "n": 7}, None)],
        )
    ]
    # but a table captured before whose instances no longer cover our position is lost
    with pytest.raises(ReplicationError, match="gone"):
        read(db, start, catalog={TableId("dbo", "a"): ddl[0].table_schema})


def test_unchanged_large_values_keep_their_before_value(server: FakeServer, db: SqlServer) -> None:
    table(server, "doc", "[id] INT PRIMARY KEY, [title] NVARCHAR(50), [body] NVARCHAR(MAX)")
    start = db.end_position()
    run(server, ("INSERT INTO [dbo].[doc] VALUES (?, ?, ?)", (1, "t", "long text " * 100)))
    run(server, ("UPDATE [dbo].[doc] SET [title] = ? WHERE [id] = ?", ("T", 1)))
    run(server, ("UPDATE [dbo].[doc] SET [body] = ? WHERE [id] = ?", ("short", 1)))
    got = transactions(read(db, start))
    first_update = got[1][1][0]
    assert server.instances["dbo_doc"].rows[1][4]["body"] is None  # CDC left it out of row 3
    assert first_update[2] == {"id": 1, "title": "t", "body": "long text " * 100}
    assert first_update[3] == {"id": 1, "title": "T", "body": "long text " * 100}
    second = got[2][1][0]
    assert second[2]["body"] == "long text " * 100 and second[3]["body"] == "short"


def test_values_through_the_change_tables(server: FakeServer, db: SqlServer) -> None:
    cols = (
        "[id] BIGINT PRIMARY KEY, [flag] BIT, [tiny] TINYINT, [price] DECIMAL(10,2), "
        "[cash] MONEY, [ratio] REAL, [big] FLOAT, [name] NVARCHAR(20), [code] CHAR(3), "
        "[raw] VARBINARY(16), [day] DATE, [at] DATETIME2(6), [at_tz] DATETIMEOFFSET(7), "
        "[tod] TIME(3), [guid] UNIQUEIDENTIFIER"
    )
    table(server, "v", cols)
    start = db.end_position()
    tz = dt.timezone(dt.timedelta(hours=-5, minutes=-30))
    row = (
        2**62,
        True,
        255,
        decimal.Decimal("12.5"),
        decimal.Decimal("3.1"),
        1.5,
        float("inf"),
        "Zürich ✓",
        "ab ",
        b"\x00\xff",
        dt.date(2026, 1, 5),
        dt.datetime(2026, 1, 5, 10, 11, 12, 123456),
        dt.datetime(2026, 1, 5, 10, 11, 12, 654321, tzinfo=tz),
        dt.time(1, 2, 3, 4000),
        "6F9619FF-8B86-D011-B42D-00C04FC964FF",
    )
    marks = ", ".join("?" for _ in row)
    run(server, (f"INSERT INTO [dbo].[v] VALUES ({marks})", row))
    run(server, ("UPDATE [dbo].[v] SET [name] = NULL WHERE [id] = ?", (2**62,)))
    events = read(db, start)
    ddl = next(e.change for e in events if isinstance(e, RowEvent) and e.change.op is Op.DDL)
    assert ddl.table_schema is not None
    kinds = {c.name: (c.kind, c.source_type) for c in ddl.table_schema.columns}
    assert kinds["price"] == ("decimal", "decimal(10,2)")
    assert kinds["cash"] == ("decimal", "money")
    assert kinds["name"] == ("str", "nvarchar(20)")
    assert kinds["at_tz"][0] == "timestamptz" and kinds["guid"][0] == "uuid"
    assert kinds["ratio"][0] == "float" and kinds["big"][0] == "double"
    insert = transactions(events)[0][1][0][3]
    assert insert["price"] == decimal.Decimal("12.50") and str(insert["price"]) == "12.50"
    assert str(insert["cash"]) == "3.1000"
    assert insert["flag"] is True and insert["tiny"] == 255 and insert["id"] == 2**62
    assert insert["at_tz"] == row[12] and insert["at_tz"].utcoffset() == row[12].utcoffset()
    assert str(insert["guid"]) == "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    assert (
        insert["raw"] == b"\x00\xff"
        and insert["name"] == "Zürich ✓"
        and insert["big"] == float("inf")
    )
    update = transactions(events)[1][1][0]
    assert update[2]["name"] == "Zürich ✓" and update[3]["name"] is None


def test_unsupported_types_are_refused_naming_the_column(server: FakeServer, db: SqlServer) -> None:
    from connectors.errors import SchemaError

    table(server, "odd", "[id] INT PRIMARY KEY, [anything] SQL_VARIANT")
    start = db.end_position()
    run(server, ("INSERT INTO [dbo].[odd] VALUES (?, ?)", (1, 5)))
    with pytest.raises(SchemaError, match=r"anything \(sql_variant\)"):
        read(db, start)


def test_idle_source_heartbeats_and_until_caught_up_ends(server: FakeServer, db: SqlServer) -> None:
    table(server, "a")
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?)", (1, "x")))
    end = db.end_position()
    events = read(db, end)
    assert events == [Heartbeat(end, caught_up=True)]
    assert Position.parse(end).whole


def test_continuous_reader_polls_and_stops_between_transactions(
    server: FakeServer, db: SqlServer
) -> None:
    table(server, "a")
    reader = db.open_log(
        db.end_position(), tables=TableFilter(("dbo.*",)), options={"poll_interval": 0.01}
    )
    events = reader.events()
    idle = next(events)
    assert isinstance(idle, Heartbeat) and not idle.caught_up
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?)", (1, "x")))
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?)", (2, "y")))
    got = [next(events) for _ in range(4)]  # Begin, definition, insert, Commit
    assert isinstance(got[0], Begin) and isinstance(got[3], Commit)
    assert isinstance(got[2], RowEvent) and got[2].change.after == {"id": 1, "v": "x"}
    reader.stop()  # asked between the two transactions: the second is not started
    assert list(events) == []


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    script=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),  # session
            st.sampled_from(["ins", "upd", "del", "commit", "rollback"]),
            st.sampled_from(["t1", "t2"]),
            st.integers(0, 4),
        ),
        max_size=40,
    ),
    batch=st.integers(1, 6),
    lag=st.integers(0, 3),
)
def test_random_sessions_arrive_as_committed(
    monkeypatch: pytest.MonkeyPatch, script: list[tuple[str, str, str, int]], batch: int, lag: int
) -> None:
    """Two sessions run random statements on two tables, commit or roll back; the capture
    job lags by ``lag`` transactions. The oracle is what the sessions committed, in commit
    order; the reader must give exactly that, whatever the page size, and resume after any
    of its commits with exactly the rest."""
    server = FakeServer()
    install(monkeypatch, server)
    server.enable_db()
    for name in ("t1", "t2"):
        table(server, name)
    db = open_database(Endpoint.parse("sqlserver://reader@db.example/shop"))
    assert isinstance(db, SqlServer)
    start = db.end_position()
    server.auto_capture = False
    state: dict[str, dict[int, str]] = {"t1": {}, "t2": {}}
    conns = {s: server.connect() for s in "ab"}
    pending: dict[str, list[tuple[Any, ...]]] = {"a": [], "b": []}
    mine: dict[str, dict[str, dict[int, str]]] = {}
    expected: list[list[tuple[Any, ...]]] = []
    for n, (session, action, name, key) in enumerate(script):
        conn = conns[session]
        conn.autocommit = False
        view = mine.setdefault(session, {t: dict(r) for t, r in state.items()})
        cur = conn.cursor()
        if action in ("commit", "rollback"):
            if action == "commit":
                conn.commit()
                if pending[session]:
                    expected.append(pending[session])
                    own = session == "b"  # the parity of this session's keys
                    for t, r in view.items():
                        kept = {k: v for k, v in state[t].items() if k % 2 != own}
                        state[t] = kept | {k: v for k, v in r.items() if k % 2 == own}
            else:
                conn.rollback()
            pending[session] = []
            mine.pop(session)
            if lag == 0:
                server.capture_job()
            continue
        rows = view[name]
        # keep the sessions off each other's rows (the fake does not model locks)
        key = key * 2 + (session == "b")
        if action == "ins" and key not in rows:
            cur.execute(f"INSERT INTO [dbo].[{name}] VALUES (?, ?)", key, f"v{n}")
            rows[key] = f"v{n}"
            pending[session].append(("insert", name, None, {"id": key, "v": f"v{n}"}))
        elif action == "upd" and key in rows:
            cur.execute(f"UPDATE [dbo].[{name}] SET [v] = ? WHERE [id] = ?", f"u{n}", key)
            pending[session].append(
                ("update", name, {"id": key, "v": rows[key]}, {"id": key, "v": f"u{n}"})
            )
            rows[key] = f"u{n}"
        elif action == "del" and key in rows:
            cur.execute(f"DELETE FROM [dbo].[{name}] WHERE [id] = ?", key)
            pending[session].append(("delete", name, {"id": key, "v": rows.pop(key)}, None))
    for conn in conns.values():
        conn.rollback()
    harvested = max(0, len(server.unharvested) - lag)
    server.capture_job(transactions=harvested)
    got = transactions(read(db, start, batch=batch))
    assert [rows for _, rows in got] == expected[: len(got)]
    assert len(got) == len(expected) - min(lag, len(expected)) or lag == 0
    server.capture_job()
    got = transactions(read(db, start, batch=batch))
    assert [rows for _, rows in got] == expected
    for i, (position, _) in enumerate(got):
        assert transactions(read(db, position, batch=batch)) == got[i + 1 :]


def test_second_instance_with_the_table_already_in_the_trail(
    server: FakeServer, db: SqlServer
) -> None:
    """The newer instance starts where it was created: not a loss, whatever the catalog."""
    table(server, "a")
    start = db.end_position()
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?)", (1, "old")))
    first = read(db, start)
    catalog = {
        e.change.table: e.change.table_schema
        for e in first
        if isinstance(e, RowEvent) and e.change.op is Op.DDL
    }
    position = transactions(first)[-1][0]
    run(server, "ALTER TABLE [dbo].[a] ADD [n] INT")
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?, ?)", (2, "between", 5)))
    server.enable_table("dbo", "a", "dbo_a_v2")
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?, ?)", (3, "new", 7)))
    events = read(db, position, catalog=catalog)
    assert [rows[0][3] for _, rows in transactions(events)] == [
        {"id": 2, "v": "between"},
        {"id": 3, "v": "new", "n": 7},
    ]
    ddl = [e.change for e in events if isinstance(e, RowEvent) and e.change.op is Op.DDL]
    assert [c.schema_version for c in ddl] == [2]


def test_a_table_enabled_after_our_position_starts_at_its_creation(
    server: FakeServer, db: SqlServer
) -> None:
    table(server, "a")
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?)", (1, "x")))
    start = db.end_position()
    table(server, "late")  # its instance starts after our position: nothing is missing
    run(server, ("INSERT INTO [dbo].[late] VALUES (?, ?)", (1, "first")))
    got = transactions(read(db, start))
    assert [rows for _, rows in got] == [[("insert", "late", None, {"id": 1, "v": "first"})]]


def test_cleanup_past_a_table_not_yet_in_the_trail_is_a_loss_too(
    server: FakeServer, db: SqlServer
) -> None:
    """A tracked table whose first change never reached the trail (capture stopped longer
    than the retention) lost that change: the instance existed before the cleanup's low
    water mark, so it was the cleanup job that moved its start."""
    table(server, "a")
    start = db.end_position()
    server.tick(600)
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?)", (1, "lost")))
    server.tick(600)
    run(server, ("INSERT INTO [dbo].[a] VALUES (?, ?)", (2, "kept")))
    server.retention = 5
    server.cleanup_job()
    with pytest.raises(ReplicationError, match=r"dbo\.a .*gone"):
        read(db, start)


def test_a_selected_table_cdc_does_not_track_is_refused(server: FakeServer, db: SqlServer) -> None:
    from connectors.errors import PrerequisiteError

    table(server, "a")
    run(server, "CREATE TABLE [dbo].[plain] ([id] INT PRIMARY KEY)")
    with pytest.raises(PrerequisiteError, match=r"CDC does not track dbo\.plain") as info:
        read(db, db.end_position())
    assert "redoline init" in str(info.value)
    reader = db.open_log(
        db.end_position(), tables=TableFilter(("dbo.*",), ("dbo.plain",)), until_caught_up=True
    )
    assert len(list(reader.events())) == 1  # excluded: capture runs
