"""PostgreSQL capture against a real server: every value type, replica identities, schema
history, slot safety and restart, each checked through the trail.

``capture_run`` is a minimal capture loop (log events -> TrailWriter -> flush -> confirm), the
same contract as ``capture/runner.py``: the trail's last position is where a restart resumes,
and the reader keeps heartbeat positions in the trail's slot marker.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from capture.trail import TrailReader, TrailWriter
from connectors.base import TableFilter, open_database
from connectors.endpoint import Endpoint
from connectors.errors import ReplicationError, SchemaError
from connectors.log import Begin, Commit, Heartbeat, RowEvent
from connectors.model import UNCHANGED, Interval, Json, Op, TableId, Transaction
from connectors.postgres import PostgreSQL
from connectors.postgres.slots import drop_slot, init_slot, slot_info


def capture_run(
    endpoint: Endpoint,
    trail: Path,
    *,
    include: tuple[str, ...] = ("public.*",),
    exclude: tuple[str, ...] = (),
    until_caught_up: bool = True,
    options: dict[str, Any] | None = None,
) -> int:
    """Capture into ``trail`` until caught up; returns how many transactions were written."""
    db = open_database(endpoint)
    written = 0
    trail.mkdir(parents=True, exist_ok=True)
    with TrailWriter(trail, source_id="pg") as writer:
        start = writer.last_position or None
        opts = {"catalog": writer.catalog(), "trail_dir": trail, **(options or {})}
        reader = db.open_log(
            start,
            tables=TableFilter(include, exclude),
            until_caught_up=until_caught_up,
            options=opts,
        )
        txn: Transaction | None = None
        try:
            for event in reader.events():
                if isinstance(event, Begin):
                    txn = Transaction(event.xid, "", dt.datetime.now(dt.UTC), "pg")
                elif isinstance(event, RowEvent):
                    assert txn is not None
                    txn.changes.append(event.change)
                elif isinstance(event, Commit):
                    assert txn is not None
                    txn.position, txn.commit_time = event.position, event.commit_time
                    writer.append(txn)
                    writer.flush()
                    reader.confirm(event.position)
                    written += 1
                    txn = None
                elif isinstance(event, Heartbeat):
                    reader.confirm(event.position)
        finally:
            reader.close()
    return written


def slot_of(trail: Path) -> str:
    """The slot the trail is bound to (its name is derived from the trail directory)."""
    return str(json.loads((trail / "pgslot.json").read_text())["slot"])


def trail_changes(trail: Path) -> list[Any]:
    return [c for t in TrailReader(trail).transactions() for c in t.changes]


def rows(trail: Path, op: Op | None = None) -> list[Any]:
    return [c for c in trail_changes(trail) if c.op != Op.DDL and (op is None or c.op == op)]


@pytest.fixture
def pg(pg_db: Endpoint) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(
        host=pg_db.host, port=pg_db.port, user="postgres", dbname=pg_db.database, autocommit=True
    ) as conn:
        yield conn


# --------------------------------------------------------------------------- types


TYPES_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE types (
  id serial PRIMARY KEY,
  i2 smallint, i4 integer, i8 bigint,
  n numeric(12,4), nn numeric, f4 real, f8 double precision,
  t text, vc varchar(10), c char(5), b bytea, bo boolean,
  d date, tm time(6), ttz timetz, ts timestamp(6), tstz timestamptz(6), iv interval,
  u uuid, j json, jb jsonb,
  ai integer[], at text[], an numeric[], aa integer[][],
  e mood, ae mood[], dm posint
)
"""


def test_every_type_through_the_trail(
    pg: psycopg.Connection[Any], pg_db: Endpoint, tmp_path: Path
) -> None:
    pg.execute(TYPES_DDL)
    capture_run(pg_db, tmp_path)  # creates the slot and publication
    pg.execute(
        "INSERT INTO types (i2, i4, i8, n, nn, f4, f8, t, vc, c, b, bo, d, tm, ttz, ts, tstz, iv,"
        " u, j, jb, ai, at, an, aa, e, ae, dm) VALUES (-32768, 2147483647, -9223372036854775808,"
        " 12345678.1230, 'NaN', 'Infinity', '-Infinity', 'naïve ☃ \\ \"', 'abc', 'ab', "
        "'\\x00ff10'::bytea, true, '2024-02-29', '23:59:59.999999', '10:11:12.5+05:30', "
        "'2024-01-02 03:04:05.000006', '2024-01-02 03:04:05.123456+02', "
        "'1 year 2 mons -3 days 04:05:06.5', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', "
        """'{"b": 1,  "a": [1.10]}', '{"b": 1, "a": 2}', '{1,NULL,3}', '{"x,y",NULL,"NULL"}', """
        "'{1.50,NaN}', '{{1,2},{3,NULL}}', 'happy', '{sad,NULL}', 7)"
    )
    pg.execute("INSERT INTO types (f4, f8, nn) VALUES ('NaN', 'NaN', '-0.000100')")
    pg.execute("INSERT INTO types DEFAULT VALUES")
    capture_run(pg_db, tmp_path)
    changes = trail_changes(tmp_path)
    ddl = [c for c in changes if c.op == Op.DDL]
    assert [c.table_schema.table for c in ddl] == [TableId("public", "types")]
    schema = ddl[0].table_schema
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds["e"] == "enum" and schema.column("e").labels == ("sad", "ok", "happy")
    assert kinds["dm"] == "int" and kinds["ai"] == "array" and schema.column("ai").element == "int"
    assert schema.column("n").scale == 4 and schema.primary_key == ("id",)
    first, second, third = (c.after for c in changes if c.op == Op.INSERT)
    assert first["i2"] == -32768 and first["i4"] == 2147483647
    assert first["i8"] == -9223372036854775808
    assert str(first["n"]) == "12345678.1230"
    assert first["nn"].is_nan()
    assert first["f4"] == math.inf and first["f8"] == -math.inf
    assert first["t"] == 'naïve ☃ \\ "' and first["vc"] == "abc" and first["c"] == "ab   "
    assert first["b"] == b"\x00\xff\x10" and first["bo"] is True
    assert first["d"] == dt.date(2024, 2, 29)
    assert first["tm"] == dt.time(23, 59, 59, 999999)
    assert first["ttz"] == dt.time(
        10, 11, 12, 500000, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
    )
    assert first["ts"] == dt.datetime(2024, 1, 2, 3, 4, 5, 6) and first["ts"].tzinfo is None
    assert first["tstz"] == dt.datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=dt.UTC)
    assert first["iv"] == Interval(14, -3, 14_706_500_000)
    assert first["u"] == uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    assert first["j"] == Json('{"b": 1,  "a": [1.10]}')  # json keeps the text as written
    assert first["jb"] == Json('{"a": 2, "b": 1}')  # jsonb is normalised by PostgreSQL
    assert first["ai"] == [1, None, 3] and first["at"] == ["x,y", None, "NULL"]
    assert first["an"][0] == decimal.Decimal("1.50") and first["an"][1].is_nan()
    assert first["aa"] == [[1, 2], [3, None]]
    assert first["e"] == "happy" and first["ae"] == ["sad", None] and first["dm"] == 7
    assert math.isnan(second["f4"]) and math.isnan(second["f8"])
    assert str(second["nn"]) == "-0.000100"
    assert all(v is None for k, v in third.items() if k != "id")


def test_unchanged_toast_and_full_identity(
    pg: psycopg.Connection[Any], pg_db: Endpoint, tmp_path: Path
) -> None:
    pg.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, n int)")
    pg.execute("CREATE TABLE docs_full (id int, body text, n int)")
    pg.execute("ALTER TABLE docs_full REPLICA IDENTITY FULL")
    big = "".join(str(uuid.uuid4()) for _ in range(4000))  # incompressible: stored out of line
    for table in ("docs", "docs_full"):
        pg.execute(f"INSERT INTO {table} VALUES (1, %s, 0)", (big,))
    capture_run(pg_db, tmp_path)
    for table in ("docs", "docs_full"):
        pg.execute(f"UPDATE {table} SET n = 1 WHERE id = 1")
    capture_run(pg_db, tmp_path)
    updates = {c.table.name: c for c in rows(tmp_path, Op.UPDATE)}
    assert updates["docs"].after["body"] is UNCHANGED
    assert updates["docs"].before == {"id": 1} and updates["docs"].key == {"id": 1}
    # FULL logs the old row, so the after image is completed from it
    assert updates["docs_full"].after["body"] == big
    assert updates["docs_full"].before["n"] == 0 and updates["docs_full"].key is None


def test_replica_identities(pg: psycopg.Connection[Any], pg_db: Endpoint, tmp_path: Path) -> None:
    pg.execute("CREATE TABLE pk (id int PRIMARY KEY, v text)")
    pg.execute("CREATE TABLE ux (a int NOT NULL, b int NOT NULL, v text)")
    pg.execute("CREATE UNIQUE INDEX ux_ab ON ux (a, b)")
    pg.execute("ALTER TABLE ux REPLICA IDENTITY USING INDEX ux_ab")
    pg.execute("CREATE TABLE fl (a int, v text)")
    pg.execute("ALTER TABLE fl REPLICA IDENTITY FULL")
    capture_run(pg_db, tmp_path)
    pg.execute("INSERT INTO pk VALUES (1, 'x'); INSERT INTO ux VALUES (1, 2, 'x')")
    pg.execute("INSERT INTO fl VALUES (1, 'x'), (1, 'x')")
    pg.execute("UPDATE pk SET id = 2, v = 'y'; UPDATE ux SET b = 3; UPDATE fl SET v = 'z'")
    pg.execute("DELETE FROM pk; DELETE FROM ux; DELETE FROM fl")
    capture_run(pg_db, tmp_path)
    schemas = {c.table.name: c.table_schema for c in trail_changes(tmp_path) if c.op == Op.DDL}
    assert schemas["ux"].identity == ("a", "b") and not schemas["ux"].full_before_image
    assert schemas["fl"].identity == () and schemas["fl"].full_before_image
    by_table: dict[str, list[Any]] = {}
    for change in rows(tmp_path):
        by_table.setdefault(change.table.name, []).append(change)
    upd = by_table["pk"][1]
    assert upd.op == Op.UPDATE and upd.before == {"id": 1} and upd.after == {"id": 2, "v": "y"}
    assert by_table["pk"][2].before == {"id": 2}
    upd = by_table["ux"][1]
    assert upd.before == {"a": 1, "b": 2} and upd.key == {"a": 1, "b": 2}
    assert [c.op for c in by_table["fl"]] == [Op.INSERT] * 2 + [Op.UPDATE] * 2 + [Op.DELETE] * 2
    assert by_table["fl"][2].before == {"a": 1, "v": "x"}
    assert by_table["fl"][4].before == {"a": 1, "v": "z"}


def test_keyless_table_without_full_is_refused(
    pg: psycopg.Connection[Any], pg_db: Endpoint, tmp_path: Path
) -> None:
    pg.execute("CREATE TABLE nokey (a int, v text)")
    with pytest.raises(SchemaError) as err:
        capture_run(pg_db, tmp_path)
    assert "public.nokey" in str(err.value)
    assert 'ALTER TABLE "public"."nokey" REPLICA IDENTITY FULL' in str(err.value)
    # not selected: no complaint
    capture_run(pg_db, tmp_path, exclude=("public.nokey",))


def test_schema_history_truncate_and_filter(
    pg: psycopg.Connection[Any], pg_db: Endpoint, tmp_path: Path
) -> None:
    pg.execute(
        "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE skip (id int PRIMARY KEY)"
    )
    capture_run(pg_db, tmp_path, exclude=("public.skip",))
    pg.execute("INSERT INTO a VALUES (1, 'x'); INSERT INTO skip VALUES (1)")
    pg.execute("ALTER TABLE a ADD COLUMN w numeric(5,2) NOT NULL DEFAULT 1.5")
    pg.execute("INSERT INTO a VALUES (2, 'y', 2.25)")
    capture_run(pg_db, tmp_path, exclude=("public.skip",))  # a restart in between
    pg.execute("INSERT INTO a VALUES (3, 'z', 3)")
    pg.execute("ALTER TABLE a DROP COLUMN v")
    pg.execute("UPDATE a SET w = 4 WHERE id = 3")
    pg.execute("TRUNCATE a")
    capture_run(pg_db, tmp_path, exclude=("public.skip",))
    changes = trail_changes(tmp_path)
    assert {c.table.name for c in changes} == {"a"}
    summary = [
        (c.op, c.schema_version, c.table_schema.column_names if c.table_schema else None)
        for c in changes
    ]
    assert summary == [
        (Op.DDL, 1, ("id", "v")),
        (Op.INSERT, 1, None),
        (Op.DDL, 2, ("id", "v", "w")),
        (Op.INSERT, 2, None),
        (Op.INSERT, 2, None),
        (Op.DDL, 3, ("id", "w")),
        (Op.UPDATE, 3, None),
        (Op.TRUNCATE, 3, None),
    ]
    assert changes[3].after == {"id": 2, "v": "y", "w": decimal.Decimal("2.25")}
    reader = TrailReader(tmp_path)
    list(reader.transactions())
    assert reader.schema(TableId("public", "a"), 2).column("w").nullable is False


# --------------------------------------------------------------------------- slot safety


def test_resume_exactly_and_filtered_wal_is_confirmed(
    pg: psycopg.Connection[Any], pg_db: Endpoint, tmp_path: Path
) -> None:
    pg.execute("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE noise (id int PRIMARY KEY)")
    # the first run writes a's definition (connectors/postgres/schemaprobe.py), nothing more
    assert capture_run(pg_db, tmp_path, include=("public.a",)) == 1
    assert capture_run(pg_db, tmp_path, include=("public.a",)) == 0
    for i in range(5):
        pg.execute("INSERT INTO a VALUES (%s)", (i,))
    assert capture_run(pg_db, tmp_path, include=("public.a",)) == 5
    assert capture_run(pg_db, tmp_path, include=("public.a",)) == 0  # nothing twice
    pg.execute("INSERT INTO noise SELECT generate_series(1, 1000)")
    slot = slot_of(tmp_path)
    assert slot.startswith("redoline_")
    before = slot_info(pg, slot)
    assert before is not None and before.confirmed_flush
    capture_run(pg_db, tmp_path, include=("public.a",))
    after = slot_info(pg, slot)
    assert after is not None and after.confirmed_flush
    db = PostgreSQL(pg_db)
    # the slot moved past the WAL of the filtered-out table
    assert db.compare_positions(after.confirmed_flush, before.confirmed_flush) > 0
    # a restart after a heartbeat confirmed past the trail's end is not "slot ahead"
    pg.execute("INSERT INTO a VALUES (5)")
    assert capture_run(pg_db, tmp_path, include=("public.a",)) == 1
    assert [c.after["id"] for c in rows(tmp_path)] == list(range(6))
    marker = json.loads((tmp_path / "pgslot.json").read_text())
    assert marker["slot"] == slot and marker["database"] == pg_db.database
    # the trail is bound to its slot
    with pytest.raises(ReplicationError, match=f"captured through slot '{slot}'"):
        capture_run(pg_db, tmp_path, include=("public.a",), options={"slot": "other"})


def test_dropped_or_foreign_slot_is_detected(
    pg: psycopg.Connection[Any], pg_db: Endpoint, tmp_path: Path
) -> None:
    pg.execute("CREATE TABLE a (id int PRIMARY KEY)")
    capture_run(pg_db, tmp_path)
    pg.execute("INSERT INTO a VALUES (1)")
    capture_run(pg_db, tmp_path)
    # someone drops the slot and a new one appears under the same name: data in between lost
    slot = slot_of(tmp_path)
    pg.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    with pytest.raises(ReplicationError, match=r"does not exist.*dropped"):
        capture_run(pg_db, tmp_path)
    pg.execute("INSERT INTO a VALUES (2)")
    pg.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    pg.execute("INSERT INTO a VALUES (3)")
    with pytest.raises(ReplicationError, match="ahead of the trail's position"):
        capture_run(pg_db, tmp_path)


def test_slot_creation_waits_for_long_transaction(
    pg: psycopg.Connection[Any], pg_db: Endpoint
) -> None:
    pg.execute("CREATE TABLE a (id int PRIMARY KEY)")
    with psycopg.connect(
        host=pg_db.host, port=pg_db.port, user="postgres", dbname=pg_db.database
    ) as blocker:
        blocker.execute("INSERT INTO a VALUES (1)")  # holds an xid, transaction left open
        with pytest.raises(ReplicationError, match=r"timed out after 1 s.*pid \d+"):
            init_slot(PostgreSQL(pg_db), [TableId("public", "a")], slot="s", timeout=1)
        blocker.rollback()
    setup = init_slot(PostgreSQL(pg_db), [TableId("public", "a")], slot="s", timeout=10)
    assert setup.slot_created  # the publication was made by the first attempt
    again = init_slot(PostgreSQL(pg_db), [TableId("public", "a")], slot="s")
    assert not again.slot_created and not again.publication_created
    assert drop_slot(PostgreSQL(pg_db), slot="s") == (True, True)
    assert drop_slot(PostgreSQL(pg_db), slot="s") == (False, False)


def test_positions(pg_db: Endpoint) -> None:
    db = PostgreSQL(pg_db)
    assert db.has_log
    end = db.end_position()
    assert db.compare_positions(end, end) == 0
    assert db.compare_positions("0/FFFFFFFF", "1/0") == -1
    assert db.compare_positions("10/0", "9/FFFFFFFF") == 1


# --------------------------------------------------------------------------- kill -9


def _cli(config: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from toolkit_cli.app import main; main()",
        *args,
        "-c",
        str(config),
    ]


@pytest.mark.parametrize("via", ["harness", "redoline capture"])
def test_kill_9_under_load_resumes_exactly(
    pg: psycopg.Connection[Any], pg_db: Endpoint, tmp_path: Path, via: str
) -> None:
    """A capture process killed with SIGKILL at random instants while the source commits;
    after each restart the trail continues exactly: every committed change once, in order.
    Run through this file's minimal loop and through the shared runner (`redoline capture`)."""
    pg.execute("CREATE TABLE w (id bigint PRIMARY KEY, v int); CREATE TABLE noise (id int)")
    pg.execute("ALTER TABLE noise REPLICA IDENTITY FULL")
    trail = tmp_path / "trail"
    config = tmp_path / "redoline.toml"
    config.write_text(
        f'[source]\nurl = "{pg_db.url()}"\n[trail]\ndir = "{trail}"\n'
        '[tables]\ninclude = ["public.w"]\n'
    )
    root = Path(__file__).resolve().parents[2]
    if via == "harness":
        command = [
            sys.executable,
            "-m",
            "tests.connectors.test_pg_capture",
            pg_db.url(),
            str(trail),
        ]
        capture_run(pg_db, trail, include=("public.w",))
    else:
        command = _cli(config, "capture")
        subprocess.run(_cli(config, "init"), check=True, cwd=root, capture_output=True)
    committed: list[tuple[str, int]] = []
    done = threading.Event()

    def workload() -> None:
        rng = random.Random(7)
        next_id = 0
        with psycopg.connect(
            host=pg_db.host, port=pg_db.port, user="postgres", dbname=pg_db.database
        ) as conn:
            while not done.is_set():
                txn: list[tuple[str, int]] = []
                for _ in range(10):
                    roll = rng.random()
                    if roll < 0.6 or next_id < 20:
                        conn.execute("INSERT INTO w VALUES (%s, 0)", (next_id,))
                        txn.append(("insert", next_id))
                        next_id += 1
                    elif roll < 0.9:
                        victim = rng.randrange(next_id)
                        cur = conn.execute("UPDATE w SET v = v + 1 WHERE id = %s", (victim,))
                        if cur.rowcount:
                            txn.append(("update", victim))
                    else:
                        victim = rng.randrange(next_id)
                        cur = conn.execute("DELETE FROM w WHERE id = %s", (victim,))
                        if cur.rowcount:
                            txn.append(("delete", victim))
                conn.execute("INSERT INTO noise VALUES (1)")
                if rng.random() < 0.1:
                    conn.rollback()
                else:
                    conn.commit()
                    committed.extend(txn)

    thread = threading.Thread(target=workload)
    thread.start()
    rng = random.Random(11)
    try:
        for _ in range(8):
            proc = subprocess.Popen(command, cwd=root)
            time.sleep(rng.uniform(0.5, 2.0))
            assert proc.poll() is None, "the capture process died on its own"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    finally:
        done.set()
        thread.join()
    if via == "harness":
        capture_run(pg_db, trail, include=("public.w",))
    else:
        done_run = subprocess.run(
            _cli(config, "capture", "--until-caught-up"), cwd=root, capture_output=True, text=True
        )
        assert done_run.returncode == 0, done_run.stderr
    got = [(c.op.value, c.after["id"] if c.after else c.before["id"]) for c in rows(trail)]
    assert len(committed) > 500
    assert got == committed


def _capture_forever(url: str, trail: str) -> None:
    capture_run(Endpoint.parse(url), Path(trail), include=("public.w",), until_caught_up=False)


if __name__ == "__main__":  # the subprocess of the kill -9 test
    _capture_forever(sys.argv[1], sys.argv[2])
