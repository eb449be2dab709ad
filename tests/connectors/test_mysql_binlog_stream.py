"""DDL as of the event, rotation, purged binlog, compressed events, positions."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import pytest

from capture.filters import CaptureFilter
from capture.runner import CaptureOptions, run_capture
from capture.trail import TrailReader
from connectors.base import TableFilter
from connectors.endpoint import Endpoint
from connectors.errors import ReplicationError
from connectors.model import Op, Transaction
from connectors.mysql import MySQL
from connectors.mysql.positions import BinlogPosition, compare

pytestmark = pytest.mark.mariadb


def run(db: MySQL, sql: list[str]) -> None:
    conn = db.connect()
    with conn.cursor() as cur:
        for stmt in sql:
            cur.execute(stmt)
    conn.close()


def capture(
    db: MySQL,
    trail: Path,
    start: str | None,
    include: str,
    reader_options: dict[str, object] | None = None,
    **kw: object,
) -> list[Transaction]:
    opts = CaptureOptions(
        source_id="src",
        filters=CaptureFilter(TableFilter((include,)), **kw),  # type: ignore[arg-type]
        until_caught_up=True,
        start_position=start,
        stop_event=threading.Event(),
        max_retries=0,
        reader_options=dict(reader_options or {}),
    )
    run_capture(db, trail, opts)
    return list(TrailReader(trail).transactions())


def test_replaying_old_binlog_after_alter_decodes_as_of_each_event(
    mysql_db: Endpoint, tmp_path: Path
) -> None:
    db = MySQL(mysql_db)
    run(db, ["CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(10), b INT)"])
    start = db.end_position()
    run(
        db,
        [
            "INSERT INTO t VALUES (1, 'one', 10)",
            "ALTER TABLE t ADD COLUMN c DATE",
            "INSERT INTO t VALUES (2, 'two', 20, '2024-01-02')",
            "ALTER TABLE t DROP COLUMN b",
            "INSERT INTO t VALUES (3, 'three', '2024-01-03')",
            "ALTER TABLE t RENAME COLUMN a TO name",
            "ALTER TABLE t MODIFY name VARCHAR(50)",
            "INSERT INTO t VALUES (4, 'four', NULL)",
            "TRUNCATE TABLE t",
        ],
    )
    # everything above is read *after* all the ALTERs ran: the server's schema is the last one
    trail = tmp_path / "trail"
    txns = capture(db, trail, start, f"{mysql_db.database}.*")
    reader = TrailReader(trail)
    inserts = [c for t in txns for c in t.changes if c.op is Op.INSERT]
    assert [c.after for c in inserts] == [
        {"id": 1, "a": "one", "b": 10},
        {"id": 2, "a": "two", "b": 20, "c": __import__("datetime").date(2024, 1, 2)},
        {"id": 3, "a": "three", "c": __import__("datetime").date(2024, 1, 3)},
        {"id": 4, "name": "four", "c": None},
    ]
    for c in inserts:  # each row's schema version names exactly its columns
        schema = reader.schema(c.table, c.schema_version)
        assert schema.column_names == tuple(c.after or {})
    assert reader.schema(inserts[3].table, inserts[3].schema_version).column("name").length == 50
    ddls = [c for t in txns for c in t.changes if c.op is Op.DDL and c.ddl]
    assert [d.ddl.split()[3] for d in ddls if d.ddl] == ["ADD", "DROP", "RENAME", "MODIFY"]
    assert all(d.table_schema is not None for d in ddls)
    # the definition after each statement, derived from it (not left to the next table map)
    assert ddls[1].table_schema is not None
    assert ddls[1].table_schema.column_names == ("id", "a", "c")
    versions = [c.schema_version for c in inserts]
    assert versions == sorted(versions) and len(set(versions)) == 4
    assert [c.op for t in txns for c in t.changes][-1] is Op.TRUNCATE


def test_filters_and_dropped_tables(mysql_db: Endpoint, tmp_path: Path) -> None:
    db = MySQL(mysql_db)
    name = mysql_db.database
    run(
        db,
        [
            "CREATE TABLE keep_me (id INT PRIMARY KEY, status VARCHAR(10), total DECIMAL(8,2), "
            "secret VARCHAR(10))",
            "CREATE TABLE skip_me (id INT PRIMARY KEY)",
        ],
    )
    start = db.end_position()
    run(
        db,
        [
            "INSERT INTO skip_me VALUES (1)",
            "INSERT INTO keep_me VALUES (1, 'ok', 20, 's1'), (2, 'test', 50, 's2'), "
            "(3, 'ok', 5, 's3'), (4, NULL, 100, 's4')",
            "ALTER TABLE skip_me ADD COLUMN x INT",
            "ALTER TABLE keep_me ADD COLUMN y INT",
            "DROP TABLE keep_me",
        ],
    )
    txns = capture(
        db,
        tmp_path / "trail",
        start,
        f"{name}.*",
        columns={f"{name}.keep_me": ("status", "total")},
        where={f"{name}.keep_me": "status <> 'test' AND total BETWEEN 10 AND 1000"},
    )
    tables = {c.table.name for t in txns for c in t.changes}
    assert tables == {"keep_me", "skip_me"}
    kept = [c for t in txns for c in t.changes if c.op is Op.INSERT and c.table.name == "keep_me"]
    assert [c.after for c in kept] == [
        {"id": 1, "status": "ok", "total": __import__("decimal").Decimal("20.00")}
    ]
    ddl = [c for t in txns for c in t.changes if c.op is Op.DDL and c.table.name == "keep_me"]
    assert ddl[-1].ddl is not None and ddl[-1].ddl.startswith("DROP TABLE")
    assert ddl[-1].table_schema is None
    announced = [d.table_schema for d in ddl if d.table_schema is not None]
    assert all(s.column_names == ("id", "status", "total") for s in announced)
    # an excluded table's DDL and rows stay out
    txns2 = capture(db, tmp_path / "trail2", start, f"{name}.keep_me")
    assert {c.table.name for t in txns2 for c in t.changes} == {"keep_me"}


def test_rotation_and_flush_logs_are_followed(mysql_db: Endpoint, tmp_path: Path) -> None:
    db = MySQL(mysql_db)
    run(db, ["CREATE TABLE r (id INT PRIMARY KEY)"])
    start = db.end_position()
    for i in range(5):
        run(db, [f"INSERT INTO r VALUES ({i})", "FLUSH BINARY LOGS"])
    trail = tmp_path / "trail"
    txns = capture(db, trail, start, f"{mysql_db.database}.*")
    ids = [c.after["id"] for t in txns for c in t.changes if c.op is Op.INSERT and c.after]
    assert ids == [0, 1, 2, 3, 4]
    files = {BinlogPosition.parse(t.position).file for t in txns}
    assert len(files) >= 4
    positions = [t.position for t in txns]
    assert all(compare(a, b) == -1 for a, b in itertools.pairwise(positions))
    # resume: more rows, captured from the trail's position, nothing repeated
    run(db, ["INSERT INTO r VALUES (5)"])
    txns = capture(db, trail, None, f"{mysql_db.database}.*")
    ids = [c.after["id"] for t in txns for c in t.changes if c.op is Op.INSERT and c.after]
    assert ids == [0, 1, 2, 3, 4, 5]


def test_purged_binlog_is_a_terminal_error(mysql_db: Endpoint, tmp_path: Path) -> None:
    db = MySQL(mysql_db)
    run(db, ["CREATE TABLE p (id INT PRIMARY KEY)", "INSERT INTO p VALUES (1)"])
    old = BinlogPosition.parse(db.end_position())
    run(db, ["FLUSH BINARY LOGS", "INSERT INTO p VALUES (2)", "FLUSH BINARY LOGS"])
    ((current,),) = [(r[0],) for r in db.query("SHOW MASTER STATUS")]
    deadline = time.monotonic() + 10
    while db.query("SHOW BINARY LOGS")[0][0] != current:
        # a dump thread that is still closing keeps its file from being purged
        assert time.monotonic() < deadline, db.query("SHOW BINARY LOGS")
        run(db, [f"PURGE BINARY LOGS TO '{current}'"])
        time.sleep(0.2)
    fake = BinlogPosition("", old.file, old.pos)  # file:pos of a purged file
    with pytest.raises(ReplicationError) as err:
        capture(db, tmp_path / "t1", str(fake), f"{mysql_db.database}.*")
    assert "re-snapshot" in (err.value.hint or "").lower()
    # a GTID that is no longer in any binlog
    gone = BinlogPosition("0-1-1", old.file, old.pos)
    with pytest.raises(ReplicationError):
        capture(db, tmp_path / "t2", str(gone), f"{mysql_db.database}.*")


def test_compressed_events_are_decoded_or_stop_capture(mysql_db: Endpoint, tmp_path: Path) -> None:
    db = MySQL(mysql_db)
    run(db, ["CREATE TABLE z (id INT PRIMARY KEY, v TEXT)"])
    start = db.end_position()
    run(db, ["SET GLOBAL log_bin_compress = ON"])
    try:
        run(db, ["INSERT INTO z VALUES (1, REPEAT('abc', 1000))"])
    finally:
        run(db, ["SET GLOBAL log_bin_compress = OFF"])
    # the default (fast) decoder inflates MariaDB's compressed rows events
    txns = capture(db, tmp_path / "fast", start, f"{mysql_db.database}.*")
    rows = [c.after for t in txns for c in t.changes if c.op is Op.INSERT]
    assert rows == [{"id": 1, "v": "abc" * 1000}]
    # the library path cannot: it stops with the setting to change, never drops the rows
    opts = CaptureOptions(
        source_id="src",
        filters=CaptureFilter(TableFilter((f"{mysql_db.database}.*",))),
        until_caught_up=True,
        start_position=start,
        stop_event=threading.Event(),
        max_retries=0,
        reader_options={"decoder": "library"},
    )
    with pytest.raises(ReplicationError, match="log_bin_compress"):
        run_capture(db, tmp_path / "library", opts)


def test_position_ordering() -> None:
    assert compare("0-1-5@mysql-bin.000002:4", "0-1-9@mysql-bin.000010:4") == -1
    assert compare("mysql-bin.000010:400", "mysql-bin.000010:40") == 1
    assert compare("0-1-5@a.000001:4", "0-1-5@a.000001:4") == 0
    assert compare("0-1-5,1-2-3@x.000001:4", "0-1-6,1-2-3@y.000001:4") == -1
    p = BinlogPosition.parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-57@binlog.000003:1234")
    assert p.file == "binlog.000003" and p.pos == 1234 and p.gtid.endswith(":1-57")


@pytest.mark.parametrize(
    ("event_class", "code", "message"),
    [
        ("PartialUpdateRowsEvent", 39, "partial JSON updates"),
        ("ExecuteLoadQueryEvent", 18, "unknown to redoline"),
        ("BeginLoadQueryEvent", 17, "unknown to redoline"),
    ],
)
def test_events_we_do_not_handle_stop_capture(
    mysql_db: Endpoint, event_class: str, code: int, message: str
) -> None:
    # The library parses these, but the reader has nothing to turn them into: they must stop
    # capture rather than let rows go by silently (MySQL 8 PARTIAL_JSON updates did).
    import types

    import pymysqlreplication.event as events
    import pymysqlreplication.row_event as row_events

    cls = getattr(row_events, event_class, None) or getattr(events, event_class)
    event = object.__new__(cls)
    event.event_type = code
    event.packet = types.SimpleNamespace(log_pos=4242)
    reader = MySQL(mysql_db).open_log(None, tables=TableFilter())
    try:
        with pytest.raises(ReplicationError, match=message):
            list(reader._run(iter([event])))  # type: ignore[attr-defined]
    finally:
        reader.close()
