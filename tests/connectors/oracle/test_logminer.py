"""The LogMiner reader against the fake: commit order, rollbacks, CSF, RAC, resume, gaps."""

from __future__ import annotations

import contextlib
import decimal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from capture.filters import CaptureFilter
from capture.runner import CaptureOptions, run_capture
from capture.trail import TrailReader
from connectors.base import TableFilter, open_database
from connectors.endpoint import Endpoint
from connectors.errors import ReplicationError
from connectors.log import Commit, Heartbeat, RowEvent
from connectors.model import Op, TableId, Transaction
from connectors.oracle import Oracle
from connectors.oracle.positions import OraclePosition, compare
from connectors.oracle.session import use_sessions
from tests.connectors.oracle.fake import FakeOracle

ITEMS = TableId("SHOP", "ITEMS")


def capture(oracle: Oracle, trail: Path, retries: int = 0, **reader: Any) -> list[Transaction]:
    options = CaptureOptions(
        source_id="src",
        filters=CaptureFilter(TableFilter(("SHOP.*",))),
        until_caught_up=True,
        stop_event=threading.Event(),
        max_retries=retries,
        backoff=(0.01, 0.01),
        reader_options=reader,
    )
    run_capture(oracle, trail, options)
    return list(TrailReader(trail).transactions())


def rows(txns: list[Transaction]) -> list[list[tuple[str, Any, Any]]]:
    out = []
    for t in txns:
        got = []
        for ch in t.changes:
            if ch.op is Op.DDL:
                continue
            image = ch.after if ch.op is not Op.DELETE else ch.before
            assert image is not None
            got.append((ch.op.value, image.get("ID"), image.get("NAME")))
        if got:
            out.append(got)
    return out


@contextlib.contextmanager
def two_threads(*, pk_logging: bool = True) -> Iterator[tuple[FakeOracle, Oracle]]:
    """A two-thread (RAC) fake holding SHOP.ITEMS (ID, NAME), with its primary key logged
    as `redoline init` leaves it (``pk_logging``), and the source on it."""
    fake = FakeOracle(threads=2)
    fake.create(
        "SHOP",
        "ITEMS",
        [("ID", "NUMBER", 22, None, 10, 0, "N"), ("NAME", "VARCHAR2", 40, 40, None, None, "Y")],
        ["ID"],
    )
    if pk_logging:
        fake.tables[ITEMS].log_groups.add("PRIMARY KEY LOGGING")
    with use_sessions(fake.session):
        oracle = open_database(Endpoint.parse("oracle://u@h/ORCL"))
        assert isinstance(oracle, Oracle)
        yield fake, oracle


def commits_until_stopped(reader: Any) -> list[str]:
    """The commit positions ``reader`` yields when told to stop at its first commit; closed
    after."""
    seen: list[str] = []
    for ev in reader.events():
        if isinstance(ev, Commit):
            seen.append(ev.position)
            reader.stop()
    reader.close()
    return seen


def inserted_ids(reader: Any) -> list[Any]:
    """The IDs of the rows ``reader`` yields inserted, until it ends; closed after."""
    ids = [
        ev.change.after["ID"]
        for ev in reader.events()
        if isinstance(ev, RowEvent) and ev.change.after and ev.change.op is Op.INSERT
    ]
    reader.close()
    return ids


def archived_mid_transaction(fake: FakeOracle, switches: int) -> Any:
    """Thread 1's current log, archived by ``switches`` log switches while a transaction
    that wrote in it is open; the transaction commits after them."""
    t = fake.txn()
    t.insert("SHOP", "ITEMS", {"ID": 1, "NAME": "a"})
    log = fake.current(1)
    for _ in range(switches):
        fake.switch(1)
    t.commit()
    return log


@pytest.fixture
def trail(oracle: Oracle, tmp_path: Path) -> Path:
    """A trail whose start a first capture run fixed (nothing committed yet)."""
    path = tmp_path / "t"
    assert capture(oracle, path) == []
    return path


def test_commit_order_rollbacks_and_savepoints(
    oracle: Oracle, fake: FakeOracle, trail: Path
) -> None:
    a, b, c = fake.txn(), fake.txn(), fake.txn()
    a.insert("SHOP", "ITEMS", {"ID": 1, "NAME": "first", "PRICE": decimal.Decimal("1.50")})
    b.insert("SHOP", "ITEMS", {"ID": 2, "NAME": "second"})
    c.insert("SHOP", "ITEMS", {"ID": 3, "NAME": "never"})
    b.savepoint("s")
    b.insert("SHOP", "ITEMS", {"ID": 4, "NAME": "undone"})
    b.update("SHOP", "ITEMS", {"ID": 2}, NAME="undone too")
    b.rollback_to("s")
    b.update("SHOP", "ITEMS", {"ID": 2}, NAME="kept")
    c.rollback()
    b.commit()  # b commits before a although a began first
    a.commit()
    got = capture(oracle, trail)
    assert rows(got) == [
        [("insert", 2, "second"), ("update", 2, "kept")],
        [("insert", 1, "first")],
    ]
    first = got[1].changes[-1]
    assert first.after == {"ID": 1, "NAME": "first", "PRICE": decimal.Decimal("1.50")}
    assert first.key == {"ID": 1}
    assert compare(got[0].position, got[1].position) < 0
    # the announcement of the table precedes its first row
    assert got[0].changes[0].op is Op.DDL and got[0].changes[0].table_schema is not None


def test_resume_is_exact_with_a_transaction_open_across_runs(
    oracle: Oracle, fake: FakeOracle, trail: Path
) -> None:
    long = fake.txn()
    long.insert("SHOP", "ITEMS", {"ID": 10, "NAME": "long"})
    short = fake.txn()
    short.insert("SHOP", "ITEMS", {"ID": 11, "NAME": "short"})
    short.commit()
    first = capture(oracle, trail)
    assert rows(first) == [[("insert", 11, "short")]]
    pos = OraclePosition.parse(first[-1].position)
    assert pos.restart < pos.scn  # the open transaction holds the restart back
    long.insert("SHOP", "ITEMS", {"ID": 12, "NAME": "long"})
    long.commit()
    again = capture(oracle, trail)
    assert rows(again) == [
        [("insert", 11, "short")],
        [("insert", 10, "long"), ("insert", 12, "long")],
    ]
    assert [t.first_op for t in again] == [1, 3]  # 1: announcement + row; nothing twice


def test_long_sql_redo_continues_over_csf_rows(
    oracle: Oracle, fake: FakeOracle, tmp_path: Path
) -> None:
    fake.tables[ITEMS].columns[1] = ("NAME", "VARCHAR2", 32767, 32767, None, None, "Y")
    trail = tmp_path / "t"
    capture(oracle, trail)
    text = "é'x" * 3000  # > 4000 bytes of SQL_REDO
    t = fake.txn()
    t.insert("SHOP", "ITEMS", {"ID": 1, "NAME": text})
    t.commit()
    log = fake.current(1)
    assert sum(r["CSF"] for r in log.records) >= 2  # the fake really split it
    assert rows(capture(oracle, trail)) == [[("insert", 1, text)]]


def test_rac_threads_merge_by_scn_and_equal_scns_keep_positions_increasing(
    tmp_path: Path,
) -> None:
    with two_threads(pk_logging=False) as (fake, oracle):
        trail = tmp_path / "t"
        capture(oracle, trail)
        t1, t2 = fake.txn(thread=1), fake.txn(thread=2)
        t1.insert("SHOP", "ITEMS", {"ID": 1, "NAME": "one"})
        t2.insert("SHOP", "ITEMS", {"ID": 2, "NAME": "two"})
        fake.switch(1)  # thread 1's log is archived in between
        t2.commit()
        t1.insert("SHOP", "ITEMS", {"ID": 3, "NAME": "one"})
        t1.commit()
        got = capture(oracle, trail)
    assert rows(got) == [[("insert", 2, "two")], [("insert", 1, "one"), ("insert", 3, "one")]]
    added = [s for s in fake.statements if "ADD_LOGFILE" in s]
    assert added  # logs of both threads were added
    assert compare(got[0].position, got[1].position) < 0


def test_a_missing_archived_log_is_terminal_and_named(
    oracle: Oracle, fake: FakeOracle, trail: Path
) -> None:
    gone = archived_mid_transaction(fake, switches=2)
    gone.deleted = True  # RMAN deleted it
    with pytest.raises(ReplicationError, match=rf"thread 1 sequence {gone.sequence} is missing"):
        capture(oracle, trail)


def test_unsupported_operation_stops_naming_table_operation_and_scn(
    oracle: Oracle, fake: FakeOracle, trail: Path
) -> None:
    t = fake.txn()
    t._rec(255, SQL_REDO="Unsupported", SEG_OWNER="SHOP", TABLE_NAME="ITEMS", INFO="XMLType")
    scn = fake.scn
    t.commit()
    with pytest.raises(ReplicationError, match=rf"UNSUPPORTED on SHOP.ITEMS at SCN {scn}"):
        capture(oracle, trail)


def test_big_transactions_spill_and_keep_partial_rollbacks(
    oracle: Oracle, fake: FakeOracle, tmp_path: Path
) -> None:
    reader = oracle.open_log(
        None, tables=TableFilter(("SHOP.*",)), until_caught_up=False, options={"spill_bytes": 2000}
    )
    t = fake.txn()
    for i in range(40):
        t.insert("SHOP", "ITEMS", {"ID": i, "NAME": f"n{i}"})
    t.savepoint("s")
    t.delete("SHOP", "ITEMS", {"ID": 5})
    t.rollback_to("s")
    t.delete("SHOP", "ITEMS", {"ID": 6})
    t.commit()
    got: list[Any] = []
    for ev in reader.events():
        if isinstance(ev, RowEvent) and ev.change.op is not Op.DDL:
            got.append((ev.change.op.value, (ev.change.after or ev.change.before or {})["ID"]))
        if isinstance(ev, Commit):
            reader.stop()
        if isinstance(ev, Heartbeat) and got:
            break
    reader.close()
    assert reader.buffer.spills >= 1  # type: ignore[attr-defined]
    assert got == [("insert", i) for i in range(40)] + [("delete", 6)]


def test_an_update_whose_redo_lacks_the_key_stops_capture(
    oracle: Oracle, fake: FakeOracle, trail: Path
) -> None:
    t = fake.txn()
    t.insert("SHOP", "ITEMS", {"ID": 1, "NAME": "a"})
    t.commit()
    fake.tables[ITEMS].log_groups.clear()  # supplemental logging dropped behind our back
    t = fake.txn()
    t.update("SHOP", "ITEMS", {"ID": 1}, NAME="b")
    t.commit()
    with pytest.raises(
        ReplicationError, match=r"UPDATE on SHOP.ITEMS .*ADD SUPPLEMENTAL LOG DATA \(PRIMARY KEY\)"
    ):
        capture(oracle, trail)
    assert rows(list(TrailReader(trail).transactions())) == [[("insert", 1, "a")]]


def test_small_windows_keep_transactions_open_across_them(
    oracle: Oracle, fake: FakeOracle, tmp_path: Path
) -> None:
    trail = tmp_path / "t"
    capture(oracle, trail, mine_window=2)
    a, b = fake.txn(), fake.txn()
    for i in range(5):
        a.insert("SHOP", "ITEMS", {"ID": i, "NAME": "a"})
        b.insert("SHOP", "ITEMS", {"ID": 100 + i, "NAME": "b"})
    a.rollback()
    b.commit()
    got = capture(oracle, trail, mine_window=2)
    assert rows(got) == [[("insert", 100 + i, "b") for i in range(5)]]
    starts = [s for s in fake.statements if "START_LOGMNR" in s]
    assert len(starts) >= 8  # many windows


def test_commits_sharing_an_scn_on_two_threads_leave_in_redo_order(tmp_path: Path) -> None:
    with two_threads() as (fake, oracle):
        trail = tmp_path / "t"
        capture(oracle, trail)
        t1, t2 = fake.txn(thread=1), fake.txn(thread=2)
        t1.insert("SHOP", "ITEMS", {"ID": 1, "NAME": "one"})
        t2.insert("SHOP", "ITEMS", {"ID": 2, "NAME": "two"})
        t2_first = fake.current(2).records[-1]["SCN"]  # its insert
        same = fake.next_scn()
        t2.commit(scn=same)  # the fake returns thread 2 first within one SCN
        t1.commit(scn=same)
        got = capture(oracle, trail)
        # a resume from the first of the two takes the second and only it
        again = capture(oracle, trail)
    assert rows(got) == [[("insert", 1, "one")], [("insert", 2, "two")]]
    p1, p2 = (OraclePosition.parse(t.position) for t in got)
    assert p1.scn == p2.scn == same and compare(got[0].position, got[1].position) < 0
    assert p1.record is not None and p1.record[0] == 1
    # a run stopped between the two must mine the second one's changes again
    assert p1.restart <= t2_first < same
    assert len(again) == 2


def test_keyless_rows_carry_their_rowid(oracle: Oracle, fake: FakeOracle, trail: Path) -> None:
    t = fake.txn()
    rid = t.insert("SHOP", "NOTES", {"BODY": "x"})
    t.update("SHOP", "NOTES", {"BODY": "x"}, BODY="y")
    t.delete("SHOP", "NOTES", {"BODY": "y"})
    t.commit()
    (txn,) = capture(oracle, trail)
    changes = [c for c in txn.changes if c.op is not Op.DDL]
    # V$LOGMNR_CONTENTS.ROW_ID names the row for every operation: apply's rowid map key
    assert [(c.op.value, c.row_id, c.key) for c in changes] == [
        ("insert", rid, None),
        ("update", rid, None),
        ("delete", rid, None),
    ]
    assert changes[1].before == {"BODY": "x"} and changes[1].after == {"BODY": "y"}
    assert changes[2].before == {"BODY": "y"}


def test_lob_written_over_several_rows_joins_its_insert(
    oracle: Oracle, fake: FakeOracle, tmp_path: Path
) -> None:
    fake.tables[ITEMS].columns.append(("DOC", "CLOB", 4000, None, None, None, "Y"))
    trail = tmp_path / "t"
    capture(oracle, trail)
    t = fake.txn()
    rid = t.insert("SHOP", "ITEMS", {"ID": 7, "NAME": "lob", "DOC": None})
    # LogMiner's rendering of an insert whose CLOB follows: EMPTY_CLOB(), then the locator
    # selection and the writes (Oracle Database Utilities, LogMiner examples)
    log = fake.current(1).records
    log[-1]["SQL_REDO"] = log[-1]["SQL_REDO"].replace("NULL)", "EMPTY_CLOB())")
    where = f"where \"ID\" = '7' and ROWID = '{rid}' for update;"
    common = {"SEG_OWNER": "SHOP", "TABLE_NAME": "ITEMS", "ROW_ID": rid}
    t._rec(
        9,
        SQL_REDO='DECLARE \n loc_c CLOB; \n buf_c VARCHAR2(6156); \nBEGIN\n select "DOC" into '
        f'loc_c from "SHOP"."ITEMS" {where}',
        **common,
    )
    t._rec(10, SQL_REDO=" buf_c := 'Hello, '; \n  dbms_lob.write(loc_c, 7, 1, buf_c);", **common)
    t._rec(
        10, SQL_REDO=" buf_c := 'world'; \n  dbms_lob.write(loc_c, 5, 8, buf_c);\nEND;", **common
    )
    t.commit()
    (txn,) = capture(oracle, trail)
    (insert,) = [c for c in txn.changes if c.op is Op.INSERT]
    assert insert.after is not None and insert.after["DOC"] == "Hello, world"
    assert len([c for c in txn.changes if c.op is not Op.DDL]) == 1


def test_truncate_and_drop_are_captured_not_skipped(
    oracle: Oracle, fake: FakeOracle, trail: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.connectors.oracle.fake_user import FakeConnection

    conn = FakeConnection(fake)
    conn.cursor().execute('INSERT INTO "SHOP"."ITEMS" VALUES (%s, %s, %s)', (1, "a", None))
    conn.cursor().execute('INSERT INTO "SHOP"."NOTES" VALUES (%s)', ("n",))
    conn.commit()
    first = capture(oracle, trail)
    conn.cursor().execute('TRUNCATE TABLE "SHOP"."ITEMS"')
    conn.cursor().execute('INSERT INTO "SHOP"."NOTES" VALUES (%s)', ("lost",))
    conn.commit()
    conn.cursor().execute('DROP TABLE "SHOP"."NOTES"')
    txns = capture(oracle, trail)[len(first) :]
    ops = [(c.op.value, c.table.name, c.table_schema is None) for t in txns for c in t.changes]
    assert ops == [
        ("truncate", "ITEMS", True),
        ("ddl", "NOTES", True),  # gone: apply drops it
    ]
    gone = txns[-1].changes[-1]
    assert gone.ddl is None and gone.schema_version == 2
    # the insert into NOTES before its drop cannot be decoded any more, and says so
    assert any("a table dropped since" in r.getMessage() for r in caplog.records)


def test_a_dropped_connection_mid_mining_resumes_exactly(
    oracle: Oracle, fake: FakeOracle, trail: Path
) -> None:
    for n in range(6):
        t = fake.txn()
        t.insert("SHOP", "ITEMS", {"ID": n, "NAME": f"r{n}"})
        t.commit()
    fake.drop_connection_after = 9  # inside the fourth transaction's rows
    got = capture(oracle, trail, retries=3)
    assert rows(got) == [[("insert", n, f"r{n}")] for n in range(6)]
    assert fake.drop_connection_after is None  # it did drop


def test_an_archived_log_gone_from_disk_is_terminal(
    oracle: Oracle, fake: FakeOracle, trail: Path
) -> None:
    gone = archived_mid_transaction(fake, switches=1)
    gone.lost = True  # still listed in V$ARCHIVED_LOG, but ADD_LOGFILE cannot open it
    with pytest.raises(ReplicationError, match=r"cannot be opened.*ORA-01284.*seq_1\.arc"):
        capture(oracle, trail, retries=2)
    assert list(TrailReader(trail).transactions()) == []


def test_stop_returns_after_a_whole_transaction_and_the_next_run_resumes(
    oracle: Oracle, fake: FakeOracle, tmp_path: Path
) -> None:
    start = oracle.end_position()
    for n in range(4):
        t = fake.txn()
        t.insert("SHOP", "ITEMS", {"ID": n, "NAME": "s"})
        t.commit()
    reader = oracle.open_log(start, tables=TableFilter(("SHOP.*",)), options={})
    seen = commits_until_stopped(reader)
    assert len(seen) == 1  # the reader returned after the first transaction
    again = oracle.open_log(seen[0], tables=TableFilter(("SHOP.*",)), until_caught_up=True)
    assert inserted_ids(again) == [1, 2, 3]


def test_resume_between_two_commits_sharing_an_scn(tmp_path: Path) -> None:
    with two_threads() as (fake, oracle):
        start = oracle.end_position()
        t1, t2 = fake.txn(thread=1), fake.txn(thread=2)
        t2.insert("SHOP", "ITEMS", {"ID": 2, "NAME": "early"})
        t1.insert("SHOP", "ITEMS", {"ID": 1, "NAME": "one"})
        t2.insert("SHOP", "ITEMS", {"ID": 3, "NAME": "late"})
        same = fake.next_scn()
        t1.commit(scn=same)
        t2.commit(scn=same)
        reader = oracle.open_log(start, tables=TableFilter(("SHOP.*",)))
        seen = commits_until_stopped(reader)  # "crash" after the first of the two
        assert len(seen) == 1
        first = seen[0]
        again = oracle.open_log(first, tables=TableFilter(("SHOP.*",)), until_caught_up=True)
        ids = inserted_ids(again)
    assert ids == [2, 3]  # the second transaction whole, its early change included


def test_a_position_of_another_engine_is_a_trail_error(oracle: Oracle, fake: FakeOracle) -> None:
    from connectors.errors import TrailError

    with pytest.raises(TrailError, match="not an Oracle position"):
        oracle.open_log("mysql-bin.000003:1234", tables=TableFilter(("SHOP.*",)))


def test_rows_out_of_scn_order_stop_capture_before_anything_is_written(tmp_path: Path) -> None:
    with two_threads() as (fake, oracle):
        fake.merge_threads = False
        trail = tmp_path / "t"
        capture(oracle, trail)
        t1, t2 = fake.txn(thread=1), fake.txn(thread=2)
        t2.insert("SHOP", "ITEMS", {"ID": 2, "NAME": "two"})
        t2.commit()
        t1.insert("SHOP", "ITEMS", {"ID": 1, "NAME": "one"})
        t1.commit()
        with pytest.raises(ReplicationError, match="not in SCN order"):
            capture(oracle, trail)
    assert list(TrailReader(trail).transactions()) == []
