"""Every MySQL/MariaDB type through binlog -> trail -> reader, with the library's mistakes fixed."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
from pathlib import Path

import pytest

from capture.filters import CaptureFilter
from capture.runner import CaptureOptions, run_capture
from capture.trail import TrailReader
from connectors.base import TableFilter
from connectors.endpoint import Endpoint
from connectors.model import Json, Op, Transaction
from connectors.mysql import MySQL

pytestmark = pytest.mark.mariadb

UTC = dt.UTC


def run(db: MySQL, endpoint: Endpoint, sql: list[str]) -> None:
    conn = db.connect()
    with conn.cursor() as cur:
        for stmt in sql:
            cur.execute(stmt)
    conn.close()


def capture_all(db: MySQL, trail: Path, start: str, schema: str) -> list[Transaction]:
    opts = CaptureOptions(
        source_id="src",
        filters=CaptureFilter(TableFilter((f"{schema}.*",))),
        until_caught_up=True,
        start_position=start,
        stop_event=threading.Event(),
    )
    run_capture(db, trail, opts)
    return list(TrailReader(trail).transactions())


def rows(txns: list[Transaction], table: str) -> list[dict]:
    return [
        c.after
        for t in txns
        for c in t.changes
        if c.op is Op.INSERT and c.table.name == table and c.after is not None
    ]


TYPES_DDL = """CREATE TABLE types (
  id INT PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED,
  mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
  d65 DECIMAL(65,30), d52 DECIMAL(5,2), f FLOAT, db DOUBLE,
  dte DATE, t0 TIME, t2 TIME(2), t6 TIME(6), dt6 DATETIME(6), dt0 DATETIME,
  ts6 TIMESTAMP(6) NULL, yr YEAR,
  c CHAR(5), vc VARCHAR(300), tx TEXT, lt LONGTEXT,
  bn BINARY(4), vb VARBINARY(10), bl BLOB,
  js JSON, en ENUM('a','b','c d'), st SET('x','y','z'), b1 BIT(1), b10 BIT(10), b64 BIT(64),
  gv BIGINT AS (i * 2) VIRTUAL, gs BIGINT AS (i * 3) STORED
) CHARSET utf8mb4"""

COLS = (
    "id, ti, tu, si, su, mi, mu, i, iu, bi, bu, d65, d52, f, db, dte, t0, t2, t6, dt6, dt0, "
    "ts6, yr, c, vc, tx, lt, bn, vb, bl, js, en, st, b1, b10, b64"
)


def test_every_type_round_trips_through_the_trail(mysql_db: Endpoint, tmp_path: Path) -> None:
    db = MySQL(mysql_db)
    run(db, mysql_db, [TYPES_DDL])
    start = db.end_position()
    big = "1" * 35 + "." + "1" * 29 + "9"
    run(
        db,
        mysql_db,
        [
            "SET time_zone = '+05:00'",  # TIMESTAMP is stored in UTC whatever the session says
            f"INSERT INTO types ({COLS}) VALUES (1, -128, 255, -32768, 65535, -8388608, "
            "16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, "
            f"-{big}, 123.45, 1.5, -2.25e-300, '2024-02-29', '-838:59:59', '-01:00:00.25', "
            "'-00:00:01.000001', '9999-12-31 23:59:59.999999', '1000-01-01 00:00:00', "
            "'2024-06-01 12:00:00.123456', 2155, 'ab', 'hé 😀 ' , 'text 😀', REPEAT('x', 70000),"
            " x'0100', x'000102', x'00ff00', '{\"a\": [1, 2.5, \"😀\"]}', 'c d', 'x,z', b'1', "
            "b'1000000001', b'1111111111111111111111111111111111111111111111111111111111111111')",
            f"INSERT INTO types ({COLS}) VALUES (2, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, "
            "9223372036854775807, 0, 0, -0.01, -0.0, 0, '1000-01-01', '838:59:59', "
            "'-00:00:00.5', '123:45:06.7', '2000-01-01 00:00:00', '2000-01-01 00:00:00', "
            "'1970-01-01 05:00:01', 1901, '', '', '', '', x'00000000', x'', x'', '[]', 'a', '', "
            "b'0', b'0', b'0')",
            "INSERT INTO types (id) VALUES (3)",
        ],
    )
    txns = capture_all(db, tmp_path / "trail", start, mysql_db.database)
    got = {r["id"]: r for r in rows(txns, "types")}
    r1, r2, r3 = got[1], got[2], got[3]
    assert (r1["ti"], r1["tu"], r1["si"], r1["su"]) == (-128, 255, -32768, 65535)
    assert (r1["mi"], r1["mu"], r1["i"], r1["iu"]) == (-8388608, 16777215, -(2**31), 2**32 - 1)
    assert (r1["bi"], r1["bu"]) == (-(2**63), 18446744073709551615)
    assert r1["d65"] == decimal.Decimal("-" + big)
    assert r1["d65"].as_tuple().exponent == -30  # scale kept
    assert str(r1["d52"]) == "123.45" and str(r2["d52"]) == "-0.01"
    assert r1["f"] == 1.5 and r1["db"] == -2.25e-300
    assert r1["dte"] == dt.date(2024, 2, 29)
    # TIME: negative and > 24h; the library gets negative fractions wrong (-01:00:00.75)
    assert r1["t0"] == -dt.timedelta(hours=838, minutes=59, seconds=59)
    assert r1["t2"] == -dt.timedelta(hours=1, microseconds=250000)
    assert r1["t6"] == -dt.timedelta(seconds=1, microseconds=1)
    assert r2["t0"] == dt.timedelta(hours=838, minutes=59, seconds=59)
    assert r2["t2"] == -dt.timedelta(microseconds=500000)
    assert r2["t6"] == dt.timedelta(hours=123, minutes=45, seconds=6, microseconds=700000)
    assert r1["dt6"] == dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    assert r1["dt6"].tzinfo is None
    assert r1["dt0"] == dt.datetime(1000, 1, 1)
    # session time zone +05:00 -> UTC instant, tz-aware
    assert r1["ts6"] == dt.datetime(2024, 6, 1, 7, 0, 0, 123456, tzinfo=UTC)
    assert r2["ts6"] == dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert (r1["yr"], r2["yr"]) == (2155, 1901)
    assert r1["c"] == "ab" and r1["vc"] == "hé 😀 " and r1["tx"] == "text 😀"
    assert r1["lt"] == "x" * 70000
    # BINARY(n) keeps its trailing zero bytes (the library strips them, and gives '' for
    # an all-zero value)
    assert r1["bn"] == b"\x01\x00\x00\x00" and r2["bn"] == b"\x00\x00\x00\x00"
    assert r1["vb"] == b"\x00\x01\x02" and r1["bl"] == b"\x00\xff\x00"
    assert r2["vb"] == b"" and r2["bl"] == b""
    assert isinstance(r1["js"], Json) and r1["js"].text == '{"a": [1, 2.5, "😀"]}'
    assert r1["en"] == "c d" and r2["en"] == "a"
    # SET -> frozenset; the empty SET is frozenset() (the library gives None)
    assert r1["st"] == frozenset({"x", "z"}) and r2["st"] == frozenset()
    # BIT -> int (the library gives a '0101' string)
    assert (r1["b1"], r1["b10"], r1["b64"]) == (1, 513, 2**64 - 1)
    assert (r2["b1"], r2["b10"]) == (0, 0)
    # generated columns: MariaDB logs both virtual and stored ones with binlog_row_image=FULL
    assert r1["gs"] == -3 * 2**31 and r1["gv"] == -2 * 2**31
    # NULL everywhere
    assert all(v is None for k, v in r3.items() if k not in ("id",))
    # the recorded definition, as the table map says
    ddl = [c for t in txns for c in t.changes if c.op is Op.DDL and c.table_schema is not None]
    schema = ddl[-1].table_schema
    assert schema is not None
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds["bu"] == "int" and schema.column("bu").unsigned and schema.column("bu").bits == 64
    assert kinds["js"] == "json" and kinds["ts6"] == "timestamptz" and kinds["t6"] == "duration"
    assert schema.column("st").labels == ("x", "y", "z")
    assert schema.column("gs").generated and schema.column("gv").generated
    assert schema.column("bn").fixed and schema.column("bn").length == 4
    assert schema.column("d65").precision == 65 and schema.column("d65").scale == 30
    assert schema.primary_key == ("id",)


def test_mysql_replication_decodes_these_wrongly(mysql_db: Endpoint) -> None:
    """The library's own decoding of the cases we correct (so we notice if it is fixed)."""
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.row_event import WriteRowsEvent

    from connectors.mysql.packets import stream_connect

    db = MySQL(mysql_db)
    run(
        db,
        mysql_db,
        ["CREATE TABLE w (id INT PRIMARY KEY, t TIME(2), b BIT(4), s SET('a'), bn BINARY(3))"],
    )
    start = db.end_position()
    run(db, mysql_db, ["INSERT INTO w VALUES (1, '-01:00:00.25', b'0101', '', x'000000')"])
    gtid = start.split("@")[0]
    stream = BinLogStreamReader(
        {"host": mysql_db.host, "port": mysql_db.port, "user": "root", "password": ""},
        server_id=4242,
        blocking=False,
        is_mariadb=True,
        auto_position=gtid,
        only_events=[WriteRowsEvent],
        enable_logging=False,
        pymysql_wrapper=stream_connect,  # only maps pymysql's deprecated argument names
    )
    values = [r["values"] for ev in stream for r in ev.rows]
    stream.close()
    (row,) = values
    assert row["t"] == -dt.timedelta(hours=1, microseconds=750000)  # should be .25
    assert row["b"] == "0101"  # a string, not 5
    assert row["s"] is None  # not the empty set
    assert row["bn"] == ""  # a str, and the zero bytes are gone


def test_json_and_row_image_of_update_and_delete(mysql_db: Endpoint, tmp_path: Path) -> None:
    db = MySQL(mysql_db)
    run(db, mysql_db, ["CREATE TABLE u (id INT PRIMARY KEY, v VARCHAR(10), j JSON)"])
    start = db.end_position()
    run(
        db,
        mysql_db,
        [
            "INSERT INTO u VALUES (1, 'a', '{\"x\": 1}')",
            "UPDATE u SET v = 'b' WHERE id = 1",
            "DELETE FROM u WHERE id = 1",
        ],
    )
    txns = capture_all(db, tmp_path / "trail", start, mysql_db.database)
    changes = [c for t in txns for c in t.changes if c.op is not Op.DDL]
    assert [c.op for c in changes] == [Op.INSERT, Op.UPDATE, Op.DELETE]
    upd, dele = changes[1], changes[2]
    assert upd.key == {"id": 1}
    assert upd.before == {"id": 1, "v": "a", "j": Json('{"x": 1}')}
    assert upd.after == {"id": 1, "v": "b", "j": Json('{"x": 1}')}
    assert dele.before is not None and dele.before["v"] == "b" and dele.after is None
    assert all(isinstance(t.commit_time, dt.datetime) and t.commit_time.tzinfo for t in txns)
