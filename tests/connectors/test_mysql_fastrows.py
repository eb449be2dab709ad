"""The fast row decoder against the library path, value by value, over the same binlog.

Both readers (``decoder="fast"`` and ``decoder="library"``) read one binlog written by a real
MariaDB; every change they produce must be identical, down to the Python type and the
``repr`` of each value (so a Decimal's scale, a float's bits and a datetime's tzinfo count).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import string
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import TableFilter
from connectors.endpoint import Endpoint
from connectors.log import RowEvent
from connectors.model import Change, Op, TableId
from connectors.mysql import MySQL, fastrows, packets
from connectors.mysql.fastrows import TableMapCache, parse_table_map
from tests.connectors.test_mysql_binlog_types import COLS, TYPES_DDL

pytestmark = pytest.mark.mariadb

MATRIX_DDL = """CREATE TABLE m (
  id INT PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED,
  mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
  d65 DECIMAL(65,30), d52 DECIMAL(5,2), d189 DECIMAL(18,9), d10 DECIMAL(10,0),
  d3 DECIMAL(3,3) UNSIGNED, f FLOAT, db DOUBLE,
  dte DATE, t0 TIME, t2 TIME(2), t6 TIME(6), dt6 DATETIME(6), dt0 DATETIME, dt3 DATETIME(3),
  ts6 TIMESTAMP(6) NULL, ts0 TIMESTAMP NULL, yr YEAR,
  c CHAR(5), vc VARCHAR(300), tx TEXT, lt LONGTEXT, tt TINYTEXT, l1 VARCHAR(20) CHARSET latin1,
  u3 VARCHAR(10) CHARSET utf8mb3, c200 CHAR(200),
  bn BINARY(4), vb VARBINARY(10), bl BLOB, mb MEDIUMBLOB,
  js JSON, en ENUM('a','b','c d','é'), st SET('x','y','z','ü'), b1 BIT(1), b10 BIT(10),
  b64 BIT(64), g GEOMETRY NULL,
  gv BIGINT AS (i * 2) VIRTUAL, gs BIGINT AS (i * 3) STORED
) CHARSET utf8mb4"""

_MAX_TIME_US = (838 * 3600 + 59 * 60 + 59) * 1_000_000


def _time_text(us: int) -> str:
    sign = "-" if us < 0 else ""
    us = abs(us)
    secs, frac = divmod(us, 1_000_000)
    return f"{sign}{secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}.{frac:06d}"


def _decimal(int_digits: int, scale: int, unsigned: bool = False) -> st.SearchStrategy[str]:
    def text(sign: bool, ip: int, fp: int) -> str:
        out = ("-" if sign and not unsigned else "") + str(ip)
        return out + (f".{fp:0{scale}d}" if scale else "")

    return st.builds(
        text,
        st.booleans(),
        st.integers(0, 10**int_digits - 1),
        st.integers(0, 10**scale - 1),
    )


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
).map(lambda v: json.dumps(v, ensure_ascii=False))
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_datetime = st.datetimes(dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59))
_ascii = st.characters(codec="ascii")
_instant = st.datetimes(dt.datetime(1970, 1, 2), dt.datetime(2038, 1, 18))

# column -> (SQL placeholder, strategy of the parameter)
COLUMNS: dict[str, tuple[str, st.SearchStrategy[Any]]] = {
    "ti": ("%s", st.integers(-128, 127)),
    "tu": ("%s", st.integers(0, 255)),
    "si": ("%s", st.integers(-(2**15), 2**15 - 1)),
    "su": ("%s", st.integers(0, 2**16 - 1)),
    "mi": ("%s", st.integers(-(2**23), 2**23 - 1)),
    "mu": ("%s", st.integers(0, 2**24 - 1)),
    "i": ("%s", st.integers(-(2**31), 2**31 - 1)),
    "iu": ("%s", st.integers(0, 2**32 - 1)),
    "bi": ("%s", st.integers(-(2**63), 2**63 - 1)),
    "bu": ("%s", st.integers(0, 2**64 - 1)),
    "d65": ("%s", _decimal(35, 30)),
    "d52": ("%s", _decimal(3, 2)),
    "d189": ("%s", _decimal(9, 9)),
    "d10": ("%s", _decimal(10, 0)),
    "d3": ("%s", _decimal(0, 3, unsigned=True)),
    "f": ("%s", st.floats(width=32, allow_nan=False, allow_infinity=False)),
    "db": ("%s", st.floats(allow_nan=False, allow_infinity=False)),
    "dte": ("%s", st.dates(dt.date(1000, 1, 1), dt.date(9999, 12, 31)).map(str)),
    "t0": ("%s", st.integers(-_MAX_TIME_US // 10**6, _MAX_TIME_US // 10**6).map(
        lambda s: _time_text(s * 10**6))),
    "t2": ("%s", st.integers(-_MAX_TIME_US, _MAX_TIME_US).map(
        lambda us: _time_text(us // 10_000 * 10_000))),
    "t6": ("%s", st.integers(-_MAX_TIME_US, _MAX_TIME_US).map(_time_text)),
    "dt6": ("%s", _datetime.map(lambda d: d.isoformat(" "))),
    "dt0": ("%s", _datetime.map(lambda d: d.replace(microsecond=0).isoformat(" "))),
    "dt3": ("%s", _datetime.map(lambda d: d.isoformat(" ", "milliseconds"))),
    "ts6": ("%s", _instant.map(lambda d: d.isoformat(" "))),
    "ts0": ("%s", _instant.map(lambda d: d.replace(microsecond=0).isoformat(" "))),
    "yr": ("%s", st.sampled_from([0, 1901, 2000, 2155]) | st.integers(1901, 2155)),
    "c": ("%s", st.text(st.characters(exclude_categories=("Cs",)), max_size=5)),
    "vc": ("%s", st.text(st.characters(exclude_categories=("Cs",)), max_size=300)),
    "tx": ("%s", _text),
    "lt": ("%s", _text | st.just("x" * 300)),  # 70,000 bytes: the type-matrix test
    "tt": ("%s", _text),
    # MariaDB's latin1 is cp1252: keep to the code points both agree on
    "l1": ("%s", st.text(_ascii | st.characters(min_codepoint=0xA0, max_codepoint=0xFF),
                         max_size=20)),
    "u3": ("%s", st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)),
                         max_size=10)),
    "c200": ("%s", st.text(string.ascii_letters + " ", max_size=200)),
    "bn": ("%s", st.binary(max_size=4)),
    "vb": ("%s", st.binary(max_size=10)),
    "bl": ("%s", st.binary(max_size=40)),
    "mb": ("%s", st.binary(max_size=300)),
    "js": ("%s", _json),
    "en": ("%s", st.sampled_from(["a", "b", "c d", "é"])),
    "st": ("%s", st.sets(st.sampled_from(["x", "y", "z", "ü"])).map(",".join)),
    "b1": ("%s", st.integers(0, 1)),
    "b10": ("%s", st.integers(0, 2**10 - 1)),
    "b64": ("%s", st.integers(0, 2**64 - 1)),
    "g": ("ST_GeomFromText(%s)", st.tuples(st.integers(-99, 99), st.integers(-99, 99)).map(
        lambda p: f"POINT({p[0]} {p[1]})")),
}  # fmt: skip


@st.composite
def row_values(draw: st.DrawFn) -> dict[str, Any]:
    """Some columns of one row (absent: NULL or the column's default), each maybe NULL."""
    names = draw(st.lists(st.sampled_from(sorted(COLUMNS)), unique=True))
    return {n: draw(st.none() | COLUMNS[n][1]) for n in names}


def _execute(cur: Any, sql: str, params: list[Any]) -> None:
    cur.execute(sql, params)


def _insert(cur: Any, table: str, row_id: int, values: dict[str, Any]) -> None:
    cols = ["id", *values]
    marks = ["%s"] + [COLUMNS[c][0] if values[c] is not None else "%s" for c in values]
    _execute(
        cur,
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(marks)})",
        [row_id, *values.values()],
    )


def _update(cur: Any, table: str, row_id: int, values: dict[str, Any]) -> None:
    if not values:
        values = {"ti": None}
    sets = [f"{c} = " + (COLUMNS[c][0] if v is not None else "%s") for c, v in values.items()]
    _execute(cur, f"UPDATE {table} SET {', '.join(sets)} WHERE id = %s", [*values.values(), row_id])


def changes(db: MySQL, start: str, schema: str, decoder: str) -> list[Change]:
    reader = db.open_log(
        start,
        tables=TableFilter((f"{schema}.*",)),
        until_caught_up=True,
        options={"decoder": decoder, "server_id": 4_199_300 + (decoder == "fast")},
    )
    try:
        return [ev.change for ev in reader.events() if isinstance(ev, RowEvent)]
    finally:
        reader.close()


def _exact(value: Any) -> Any:
    """What must match: the type and the repr (Decimal scale, float bits, tzinfo ...)."""
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, frozenset):
        return ("frozenset", sorted(value))
    return (type(value).__name__, repr(value))


def assert_same(fast: list[Change], library: list[Change]) -> None:
    assert len(fast) == len(library)
    for a, b in zip(fast, library, strict=True):
        assert (a.op, a.table, a.schema_version) == (b.op, b.table, b.schema_version)
        assert a.table_schema == b.table_schema
        for part in ("key", "before", "after"):
            x, y = getattr(a, part), getattr(b, part)
            assert _exact(x) == _exact(y), (a.op, part)
            if x is not None:
                assert list(x) == list(y)  # same columns in the same order


@pytest.fixture
def matrix(mysql_db: Endpoint) -> Iterator[tuple[MySQL, Any]]:
    db = MySQL(mysql_db)
    conn = pymysql.connect(
        host=mysql_db.host, port=mysql_db.port, user="root", database=mysql_db.database,
        autocommit=True, charset="utf8mb4",
    )  # fmt: skip
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(MATRIX_DDL)
    yield db, conn
    conn.close()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(st.sampled_from(["insert", "update", "delete"]), row_values()),
        min_size=1,
        max_size=12,
    )
)
def test_fast_and_library_decoders_agree_on_random_rows(
    matrix: tuple[MySQL, Any], mysql_db: Endpoint, ops: list[tuple[str, dict[str, Any]]]
) -> None:
    db, conn = matrix
    start = db.end_position()
    with conn.cursor() as cur:
        cur.execute("SELECT COALESCE(MAX(id), 0) FROM m")
        next_id = int(cur.fetchone()[0]) + 1
        cur.execute("SELECT id FROM m")
        live = [int(r[0]) for r in cur.fetchall()]
        cur.execute("BEGIN")
        for kind, values in ops:
            if kind == "insert" or not live:
                _insert(cur, "m", next_id, values)
                live.append(next_id)
                next_id += 1
            elif kind == "update":
                _update(cur, "m", live[len(values) % len(live)], values)
            else:
                cur.execute("DELETE FROM m WHERE id = %s", (live.pop(len(values) % len(live)),))
        cur.execute("COMMIT")
    schema = mysql_db.database
    assert schema
    fast = changes(db, start, schema, "fast")
    library = changes(db, start, schema, "library")
    assert_same(fast, library)


def test_every_null_pattern_past_the_compile_limit(
    matrix: tuple[MySQL, Any], mysql_db: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_PATTERNS the interpreted loop takes over; values must not change."""
    monkeypatch.setattr(fastrows, "MAX_PATTERNS", 2)
    db, conn = matrix
    start = db.end_position()
    with conn.cursor() as cur:
        for n in range(1, 12):
            cols = ["ti", "vc", "d52", "dt6", "bl", "en", "st", "b10"][: n % 8]
            vals = [1, "v", "1.25", "2020-01-02 03:04:05.5", b"\0", "b", "x,z", 5][: n % 8]
            names = ", ".join(["id", *cols])
            marks = ", ".join(["%s"] * (len(cols) + 1))
            cur.execute(f"INSERT INTO m ({names}) VALUES ({marks})", [n, *vals])
    schema = mysql_db.database
    assert schema
    assert_same(changes(db, start, schema, "fast"), changes(db, start, schema, "library"))


def test_type_matrix_runs_on_the_fast_path(
    mysql_db: Endpoint, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The type-matrix rows of test_mysql_binlog_types, decoded by the fast path itself."""
    calls: list[int] = []
    original = fastrows.RowDecoder.rows

    def counting(self: fastrows.RowDecoder, ev: fastrows.FastRows) -> Any:
        out = original(self, ev)
        calls.append(len(out))
        return out

    monkeypatch.setattr(fastrows.RowDecoder, "rows", counting)
    db = MySQL(mysql_db)
    conn = db.connect()
    with conn.cursor() as cur:
        cur.execute(TYPES_DDL)
        start = db.end_position()
        cur.execute(
            f"INSERT INTO types ({COLS}) VALUES (1, -128, 255, -32768, 65535, -8388608, "
            "16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, "
            "-11111.5, 123.45, 1.5, -2.25e-300, '2024-02-29', '-838:59:59', '-01:00:00.25', "
            "'-00:00:01.000001', '9999-12-31 23:59:59.999999', '1000-01-01 00:00:00', "
            "'2024-06-01 12:00:00.123456', 2155, 'ab', 'hé 😀 ', 'text 😀', REPEAT('x', 70000),"
            " x'0100', x'000102', x'00ff00', '{\"a\": [1, 2.5, \"😀\"]}', 'c d', 'x,z', b'1', "
            "b'1000000001', b'1111111111111111111111111111111111111111111111111111111111111111')"
        )
        cur.execute("INSERT INTO types (id) VALUES (3)")
        cur.execute("UPDATE types SET en = 'a', st = '' WHERE id = 1")
        cur.execute("DELETE FROM types WHERE id = 3")
    conn.close()
    schema = mysql_db.database
    assert schema
    with caplog.at_level(logging.WARNING, logger="redoline.capture.mysql"):
        fast = changes(db, start, schema, "fast")
    assert sum(calls) == 4  # every row went through the fast decoder
    assert "decoded by mysql-replication instead" not in caplog.text
    library = changes(db, start, schema, "library")
    assert_same(fast, library)
    after = next(c.after for c in fast if c.op is Op.INSERT and c.after and c.after["id"] == 1)
    assert after is not None
    assert after["bu"] == 18446744073709551615 and after["b64"] == 2**64 - 1
    assert after["t2"] == -dt.timedelta(hours=1, microseconds=250000)
    assert after["ts6"] == dt.datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    assert after["bn"] == b"\x01\x00\x00\x00" and after["st"] == frozenset({"x", "z"})


def test_unsupported_table_falls_back_to_the_library_and_says_so(
    mysql_db: Endpoint, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A table the fast path refuses is read by the library, with one warning naming it."""
    original = fastrows._check_decodable

    def refuse_bit(col: fastrows.FastColumn) -> None:
        if col.type == fastrows.T_BIT:
            raise fastrows.Unsupported(f"test refuses BIT column {col.name!r}")
        original(col)

    monkeypatch.setattr(fastrows, "_check_decodable", refuse_bit)
    db = MySQL(mysql_db)
    conn = db.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE odd (id INT PRIMARY KEY, b BIT(4))")
        cur.execute("CREATE TABLE plain (id INT PRIMARY KEY, v VARCHAR(5))")
        start = db.end_position()
        for n in range(3):
            cur.execute("INSERT INTO odd VALUES (%s, b'101')", (n,))
            cur.execute("INSERT INTO plain VALUES (%s, 'x')", (n,))
    conn.close()
    schema = mysql_db.database
    assert schema
    with caplog.at_level(logging.WARNING, logger="redoline.capture.mysql"):
        fast = changes(db, start, schema, "fast")
    warnings = [r for r in caplog.records if "instead" in r.getMessage()]
    assert len(warnings) == 1 and f"{schema}.odd" in warnings[0].getMessage()
    assert "test refuses BIT column 'b'" in warnings[0].getMessage()
    assert_same(fast, changes(db, start, schema, "library"))
    assert [c.after for c in fast if c.table == TableId(schema, "odd") and c.after] == [
        {"id": n, "b": 5} for n in range(3)
    ]


def test_compressed_row_events_are_decoded_on_the_fast_path(mysql_db: Endpoint) -> None:
    """MariaDB log_bin_compress: rows inflate to exactly the uncompressed rows' values."""
    db = MySQL(mysql_db)
    conn = db.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE z (id INT PRIMARY KEY, v TEXT, d DECIMAL(10,2))")
        start = db.end_position()
        cur.execute("SET GLOBAL log_bin_compress = ON")
        try:
            cur.execute("INSERT INTO z VALUES (1, REPEAT('abc', 1000), 1.5), (2, 'x', NULL)")
            cur.execute("UPDATE z SET v = REPEAT('de', 900)")
            cur.execute("DELETE FROM z WHERE id = 2")
        finally:
            cur.execute("SET GLOBAL log_bin_compress = OFF")
        middle = db.end_position()
        cur.execute("INSERT INTO z VALUES (3, REPEAT('abc', 1000), 1.5)")
    conn.close()
    schema = mysql_db.database
    assert schema
    got = changes(db, start, schema, "fast")
    rows = [c for c in got if c.op is not Op.DDL]
    assert [c.op for c in rows] == [Op.INSERT] * 2 + [Op.UPDATE] * 2 + [Op.DELETE, Op.INSERT]
    assert rows[0].after == {"id": 1, "v": "abc" * 1000, "d": rows[5].after["d"]}  # type: ignore[index]
    assert rows[2].after is not None and rows[2].after["v"] == "de" * 900
    plain = [c for c in changes(db, middle, schema, "fast") if c.op is not Op.DDL]
    assert _exact(plain[0].after) == _exact(rows[5].after)


def test_table_map_cache_reuses_a_parse_across_table_ids() -> None:
    """Same content under a new table id: one parse, the new id; changed content: a new parse."""
    # a MariaDB 10.11 table map of (b BIT(8), y YEAR, u TINYINT UNSIGNED, v VARCHAR(3),
    # e ENUM('a','b'), id INT PRIMARY KEY), after its table id
    body = bytes.fromhex(
        "010001700001740006100d010ffe030600010c00f7011f0101c002012d040d0162017901750176"
        "01650269640a012d06050201610162080105"
    )
    event = bytes.fromhex("120000000000") + body
    other = bytes.fromhex("130000000000") + body
    cache = TableMapCache("mariadb")
    a = cache.get(event, 0, len(event), 6)
    b = cache.get(other, 0, len(other), 6)
    assert a.unsupported is None and (a.table_id, b.table_id) == (0x12, 0x13)
    assert b.columns is a.columns
    assert [c.name for c in a.columns] == ["b", "y", "u", "v", "e", "id"]
    # SIGNEDNESS counts YEAR but not BIT: YEAR and TINYINT are the two flagged columns
    assert [c.unsigned for c in a.columns] == [False, True, True, False, False, False]
    assert a.columns[4].enum_values == ["", "a", "b"]
    assert a.optional_metadata.simple_primary_key_list == [5]
    assert a.null_bitmask == b"\x1f"
    bad = parse_table_map(event[:-8], 0, len(event) - 8, 6, "mariadb")
    assert bad.unsupported is not None  # truncated metadata: refused, not guessed


class _Rfile:
    """A socket's buffered reader that delivers the stream in fixed, awkward pieces."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data, self.piece, self.pos = data, piece, 0

    def _next(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + min(n, self.piece)]
        self.pos += len(out)
        return out

    def read1(self, n: int) -> bytes:
        return self._next(n)

    def read(self, n: int) -> bytes:
        out = b""
        while len(out) < n and (more := self._next(n - len(out))):
            out += more
        return out


class _Conn:
    def __init__(self, data: bytes, piece: int) -> None:
        self._rfile = _Rfile(data, piece)
        self._next_seq_id = 1
        self.encoding = "utf8"
        self.closed = False

    def _force_close(self) -> None:
        self.closed = True


def _packet(payload: bytes, seq: int) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq & 0xFF]) + payload


@pytest.mark.parametrize("piece", [1, 3, 7, 4096, 1 << 20])
def test_packet_reader_slices_packets_however_the_socket_delivers_them(piece: int) -> None:
    """Packets split anywhere across receives, a payload of 16 MiB and more continued in the
    next packet, the sequence check, an error packet and a lost connection — as pymysql."""
    small = [b"\x00" + bytes([i]) * (i * 37 % 300) for i in range(1, 40)]
    big = b"\x00" + b"x" * (0xFFFFFF + 10)  # two packets: 0xFFFFFF bytes, then 11
    stream = [_packet(p, i + 1) for i, p in enumerate(small)]
    seq = len(small) + 1
    if piece >= 4096:  # the 16 MiB payload byte by byte would be slow, and prove nothing more
        stream.append(_packet(big[:0xFFFFFF], seq))
        stream.append(_packet(big[0xFFFFFF:], seq + 1))
        seq += 2
    stream.append(_packet(b"\x00tail", seq))
    conn = _Conn(b"".join(stream), piece)
    reader = packets.PacketReader(conn)
    got = [reader.read() for _ in small]
    assert got == small
    if piece >= 4096:
        assert reader.read() == big
    assert reader.read() == b"\x00tail"
    with pytest.raises(pymysql.err.OperationalError) as lost:
        reader.read()  # the socket is at its end
    assert lost.value.args[0] == 2013 and conn.closed


def test_packet_reader_checks_sequence_numbers_and_raises_error_packets() -> None:
    error = b"\xff" + (1236).to_bytes(2, "little") + b"#HY000purged"
    reader = packets.PacketReader(_Conn(_packet(error, 1), 4096))
    with pytest.raises(pymysql.err.OperationalError) as exc:
        reader.read()
    assert exc.value.args[0] == 1236
    conn = _Conn(_packet(b"\x00ok", 1) + _packet(b"\x00skipped one", 3), 4096)
    reader = packets.PacketReader(conn)
    assert reader.read() == b"\x00ok"
    with pytest.raises(pymysql.err.InternalError, match="got 3 expected 2"):
        reader.read()
    assert conn.closed
