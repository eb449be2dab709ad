"""pgoutput decoding and text-value parsing, without a server (table-driven)."""

from __future__ import annotations

import datetime as dt
import decimal
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.errors import ReplicationError, ToolkitError
from connectors.model import UNCHANGED, Column, Interval, TableId, TableSchema, Value
from connectors.postgres import pgoutput, relations, values
from connectors.postgres.values import BUILTIN, parse_array, parse_interval


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lsn_round_trip(lsn: int) -> None:
    assert pgoutput.parse_lsn(pgoutput.format_lsn(lsn)) == lsn


@pytest.mark.parametrize(
    ("text", "value"),
    [("0/16B3748", 0x16B3748), ("1/0", 1 << 32), ("FFFFFFFF/FFFFFFFF", 2**64 - 1)],
)
def test_parse_lsn(text: str, value: int) -> None:
    assert pgoutput.parse_lsn(text) == value
    assert pgoutput.format_lsn(value) == text


@pytest.mark.parametrize("bad", ["", "16B3748", "x/1", "1/100000000"])
def test_parse_lsn_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        pgoutput.parse_lsn(bad)


def _tuple(*cols: bytes | str | None) -> bytes:
    out = struct.pack(">h", len(cols))
    for col in cols:
        if col is None:
            out += b"n"
        elif col == "u":
            out += b"u"
        else:
            assert isinstance(col, bytes)
            out += b"t" + struct.pack(">i", len(col)) + col
    return out


def test_decode_messages() -> None:
    begin = pgoutput.decode(b"B" + struct.pack(">QqI", 0x100, 1_000_000, 42))
    assert begin == pgoutput.BeginMsg(0x100, pgoutput.PG_EPOCH + dt.timedelta(seconds=1), 42)
    commit = pgoutput.decode(b"C" + struct.pack(">BQQq", 0, 0x100, 0x128, 0))
    assert commit == pgoutput.CommitMsg(0, 0x100, 0x128, pgoutput.PG_EPOCH)
    rel = pgoutput.decode(
        b"R"
        + struct.pack(">I", 16384)
        + b"\x00t\x00d"
        + struct.pack(">h", 2)
        + b"\x01id\x00"
        + struct.pack(">Ii", 23, -1)
        + b"\x00v\x00"
        + struct.pack(">Ii", 25, -1)
    )
    assert isinstance(rel, pgoutput.RelationMsg)
    assert (rel.namespace, rel.name, rel.replident) == ("pg_catalog", "t", "d")
    assert rel.columns[0] == pgoutput.RelationColumn("id", 23, -1, True)
    assert not rel.columns[1].key
    ins = pgoutput.decode(b"I" + struct.pack(">I", 16384) + b"N" + _tuple(b"1", None))
    assert ins == pgoutput.InsertMsg(16384, [b"1", None])
    upd = pgoutput.decode(
        b"U" + struct.pack(">I", 7) + b"O" + _tuple(b"1", b"a") + b"N" + _tuple(b"1", "u")
    )
    assert upd == pgoutput.UpdateMsg(7, "O", [b"1", b"a"], [b"1", UNCHANGED])
    upd_plain = pgoutput.decode(b"U" + struct.pack(">I", 7) + b"N" + _tuple(b"2", b"b"))
    assert upd_plain == pgoutput.UpdateMsg(7, "", None, [b"2", b"b"])
    dele = pgoutput.decode(b"D" + struct.pack(">I", 7) + b"K" + _tuple(b"1", None))
    assert dele == pgoutput.DeleteMsg(7, "K", [b"1", None])
    trunc = pgoutput.decode(b"T" + struct.pack(">iBII", 2, 3, 7, 8))
    assert trunc == pgoutput.TruncateMsg((7, 8), True, True)
    origin = pgoutput.decode(b"O" + struct.pack(">Q", 5) + b"node_a\x00")
    assert origin == pgoutput.OriginMsg(5, "node_a")
    typ = pgoutput.decode(b"Y" + struct.pack(">I", 99999) + b"public\x00mood\x00")
    assert typ == pgoutput.TypeMsg(99999, "public", "mood")
    msg = pgoutput.decode(
        b"M\x01" + struct.pack(">Q", 9) + b"pfx\x00" + struct.pack(">i", 2) + b"hi"
    )
    assert msg == pgoutput.MessageMsg(True, 9, "pfx", b"hi")


def test_decode_rejects_streaming_and_binary() -> None:
    with pytest.raises(ReplicationError, match="unsupported message type 'S'"):
        pgoutput.decode(b"S\x00\x00\x00\x01\x01")
    with pytest.raises(ReplicationError, match="binary"):
        pgoutput.decode(b"I" + struct.pack(">I", 1) + b"N\x00\x01b\x00\x00\x00\x01x")


@pytest.mark.parametrize(
    ("text", "interval"),
    [
        ("00:00:00", Interval()),
        ("1 year 2 mons 3 days 04:05:06.789", Interval(14, 3, 14_706_789_000)),
        ("-1 years -2 mons +3 days -04:05:06.5", Interval(-14, 3, -14_706_500_000)),
        ("1 mon", Interval(1, 0, 0)),
        ("-00:00:00.000001", Interval(0, 0, -1)),
        ("100:00:00", Interval(0, 0, 360_000_000_000)),
        ("2 days", Interval(0, 2, 0)),
    ],
)
def test_parse_interval(text: str, interval: Interval) -> None:
    assert parse_interval(text) == interval


def test_parse_interval_rejects_other_styles() -> None:
    with pytest.raises(ValueError):
        parse_interval("P1Y2M")


@pytest.mark.parametrize(
    ("text", "oid", "value"),
    [
        ("{}", 23, []),
        ("{1,NULL,3}", 23, [1, None, 3]),
        ("{{1,2},{3,4}}", 23, [[1, 2], [3, 4]]),
        ('{"a b","x\\"y",NULL,"NULL",c}', 25, ["a b", 'x"y', None, "NULL", "c"]),
        ("[0:1]={7,8}", 20, [7, 8]),
        ("{1.50,NaN}", 1700, [decimal.Decimal("1.50"), decimal.Decimal("NaN")]),
        ('{"2024-01-02 03:04:05+00"}', 1184, [dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)]),
        ('{"{\\"a\\": 1}"}', 25, ['{"a": 1}']),
    ],
)
def test_parse_array(text: str, oid: int, value: list[object]) -> None:
    # repr, because Decimal('NaN') never equals itself
    assert repr(parse_array(text, BUILTIN[oid])) == repr(value)


@pytest.mark.parametrize(
    ("oid", "text", "value"),
    [
        (16, b"t", True),
        (16, b"f", False),
        (17, b"\\x00ff", b"\x00\xff"),
        (1083, b"24:00:00", dt.time(23, 59, 59, 999999)),
        (
            1266,
            b"10:11:12.5+05:30",
            dt.time(10, 11, 12, 500000, dt.timezone(dt.timedelta(hours=5, minutes=30))),
        ),
        (1082, b"infinity", dt.date.max),
        (1114, b"2024-02-29 23:59:59.000001", dt.datetime(2024, 2, 29, 23, 59, 59, 1)),
    ],
)
def test_values(oid: int, text: bytes, value: object) -> None:
    assert BUILTIN[oid](text) == value


# ---------------------------------------------------------------- compiled tuple readers


def _int_array(raw: bytes) -> Value:
    return parse_array(raw.decode(), int)


_COLUMNS = (  # name, converter, text values to draw from (None = NULL, "u" = unchanged TOAST)
    ("id", BUILTIN[23], [b"1", b"-2147483648", b"42"]),
    ("k2", BUILTIN[25], [b"a", b"\xc3\xa9t\xc3\xa9", b""]),
    ("n", BUILTIN[1700], [b"12.30", b"NaN", b"-Infinity", b"1e5", b"x", None]),
    ("ts", BUILTIN[1184], [b"2024-01-02 03:04:05.5+00", b"infinity", b"-infinity", b"1 BC"]),
    ("t", BUILTIN[1114], [b"2024-02-29 23:59:59.000001", b"infinity", None]),
    ("d", BUILTIN[1082], [b"2024-01-02", b"-infinity", None]),
    ("b", BUILTIN[16], [b"t", b"f", None]),
    ("f", BUILTIN[701], [b"1.5", b"NaN", b"-Infinity", b"1e308", None]),
    ("j", BUILTIN[3802], [b'{"a": [1, 2]}', None, "u"]),
    ("u", BUILTIN[2950], [b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", b"nope", None]),
    ("arr", _int_array, [b"{1,2}", b"{}", b"{1,NULL}", b"{{1},{2}}", b'{"1"}', None, "u"]),
    ("by", BUILTIN[17], [b"\\x00ff", b"00", None]),
)


def _relation(ident: tuple[str, ...]) -> relations.Relation:
    """A selected relation with the columns above, set up as ``Relations.announce`` does."""
    table = TableId("public", "t")
    columns = tuple(Column(name, "str") for name, _c, _v in _COLUMNS)
    schema = TableSchema(table, columns, ident, full_before_image=not ident)
    names = tuple(name for name, _c, _v in _COLUMNS)
    convs = tuple(conv for _n, conv, _v in _COLUMNS)
    rel = relations.Relation(table, True, schema, names, convs, schema.identity)
    rel.read = pgoutput.compile_tuple_reader(
        [(n, *values.INLINE.get(c, (c, False))) for n, c in zip(names, convs, strict=True)]
    )
    rel.pick = relations.key_picker(schema.identity)
    return rel


_ROW = st.tuples(*(st.sampled_from(texts) for _n, _c, texts in _COLUMNS))


@given(
    st.sampled_from(["I", "UN", "UK", "UO", "DK", "DO"]),
    _ROW,
    _ROW,
    st.sampled_from([("id",), ("id", "k2"), ()]),
)
def test_compiled_reader_matches_general_path(
    kind: str, old: tuple[bytes | None, ...], new: tuple[bytes | None, ...], ident: tuple[str, ...]
) -> None:
    rel = _relation(ident)
    head = struct.pack(">I", 16384)
    if kind == "I":
        body = b"I" + head + b"N" + _tuple(*new)
    elif kind == "UN":
        body = b"U" + head + b"N" + _tuple(*new)
    elif kind[0] == "U":
        body = b"U" + head + kind[1].encode() + _tuple(*old) + b"N" + _tuple(*new)
    else:
        body = b"D" + head + kind[1].encode() + _tuple(*old)
    frame = b"w" + bytes(24) + body  # XLogData header, then the message

    def run(fast: bool) -> object:
        try:
            if fast:
                return relations.fast_change(rel, frame)
            msg = pgoutput.decode(body)
            assert isinstance(msg, pgoutput.InsertMsg | pgoutput.UpdateMsg | pgoutput.DeleteMsg)
            return relations.row_change(rel, msg)
        except ToolkitError as exc:  # both paths must refuse alike
            return (type(exc), str(exc))

    # repr, because Decimal('NaN') never equals itself
    assert repr(run(True)) == repr(run(False))


def test_compiled_reader_refuses_other_shapes() -> None:
    read = pgoutput.compile_tuple_reader([("a", int, False), ("b", None, False)])
    assert read(b"xx" + _tuple(b"1", b"z"), 2) == ({"a": 1, "b": "z"}, 2 + 2 + 6 + 6)
    with pytest.raises(pgoutput.TupleShapeError):
        read(_tuple(b"1"), 0)
    with pytest.raises(pgoutput.TupleShapeError):
        read(struct.pack(">h", 2) + b"b" + struct.pack(">i", 1) + b"1n", 0)


@pytest.mark.parametrize("text", ["{1,2,3}", "{}", "{NULL,1}", "{1,null}", "{-1,+2}"])
def test_parse_array_split_fast_path(text: str) -> None:
    general, _ = values._array_level(text, 0, BUILTIN[23], ",")
    assert parse_array(text, BUILTIN[23]) == general
