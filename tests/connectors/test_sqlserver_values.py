"""SQL Server positions, LSN text forms, column kinds and value conversion (no server)."""

from __future__ import annotations

import datetime as dt
import decimal
import struct
import uuid

import pytest

from connectors.base import position_comparator
from connectors.errors import SchemaError
from connectors.model import Json
from connectors.sqlserver.positions import MAX_SEQ, Lsn, Position, compare, lsn_from_text
from connectors.sqlserver.values import column, converter, datetimeoffset, refuse_other


def test_positions_order_as_commit_lsn_then_seqval() -> None:
    a = str(Position(Lsn(0x27_0000_0100_0003), 0x27_0000_00F0_0001))
    b = str(Position(Lsn(0x27_0000_0100_0003), 0x27_0000_00F8_0002))
    c = str(Position(Lsn(0x27_0000_0100_0003)))  # past every change of that commit
    d = str(Position(Lsn(0x28_0000_0010_0001), 0))
    assert a == "00000027000001000003:00000027000000f00001"
    assert [compare(x, y) for x, y in [(a, b), (b, c), (c, d), (d, a), (b, b)]] == [
        -1,
        -1,
        -1,
        1,
        0,
    ]
    assert position_comparator("sqlserver")(d, c) == 1
    assert Position.parse(c).whole and Position.parse(c).seqval == MAX_SEQ
    for bad in ("0/16B3748", "00000027000001000003", "zz000027000001000003:00000027000000f00001"):
        with pytest.raises(ValueError, match="not a SQL Server position"):
            Position.parse(bad)


def test_lsn_text_forms() -> None:
    lsn = Lsn(0x0000002A_000001E8_0003)
    assert lsn_from_text("0x0000002A000001E80003") == lsn
    assert lsn_from_text("0000002a:000001e8:0003") == lsn
    assert Lsn.from_bytes(lsn.to_bytes()) == lsn and len(lsn.to_bytes()) == 10
    assert Lsn.from_bytes(b"\x00" * 10) is None and Lsn.from_bytes(None) is None
    assert lsn.next().previous() == lsn and lsn.next() > lsn
    with pytest.raises(ValueError):
        lsn_from_text("42:1216:1x")


@pytest.mark.parametrize(
    ("type_name", "kw", "kind", "extra"),
    [
        ("bit", {}, "bool", {}),
        ("tinyint", {}, "int", {"bits": 8, "unsigned": True}),
        ("bigint", {}, "int", {"bits": 64, "unsigned": False}),
        ("numeric", {"precision": 12, "scale": 4}, "decimal", {"source_type": "numeric(12,4)"}),
        ("smallmoney", {}, "decimal", {"precision": 10, "scale": 4}),
        ("float", {"precision": 24}, "float", {}),
        ("float", {"precision": 53}, "double", {}),
        ("nvarchar", {"max_length": 40}, "str", {"length": 20, "source_type": "nvarchar(20)"}),
        ("varchar", {"max_length": -1}, "str", {"length": None, "source_type": "varchar(max)"}),
        ("nchar", {"max_length": 10}, "str", {"length": 5, "fixed": True}),
        ("varbinary", {"max_length": -1}, "bytes", {"source_type": "varbinary(max)"}),
        ("timestamp", {}, "bytes", {"source_type": "binary(8)", "length": 8}),
        ("time", {"scale": 7}, "time", {"precision": 6}),
        ("datetime", {}, "datetime", {"precision": 3}),
        ("smalldatetime", {}, "datetime", {"precision": 0}),
        ("datetimeoffset", {"scale": 3}, "timestamptz", {"precision": 3}),
        ("uniqueidentifier", {}, "uuid", {}),
        ("xml", {}, "str", {"source_type": "xml"}),
        ("geography", {}, "other", {}),
    ],
)
def test_column_kinds(
    type_name: str, kw: dict[str, int], kind: str, extra: dict[str, object]
) -> None:
    col = column("c", type_name, **kw)
    assert col.kind == kind
    for key, value in extra.items():
        assert getattr(col, key) == value, key


def test_values_from_the_driver() -> None:
    money = column("m", "money")
    assert str(converter(money)(decimal.Decimal("3.1"))) == "3.1000"
    assert converter(column("b", "bit"))(1) is True
    assert converter(column("u", "uniqueidentifier"))("6F9619FF-8B86-D011-B42D-00C04FC964FF") == (
        uuid.UUID("6f9619ff-8b86-d011-b42d-00c04fc964ff")
    )
    raw = struct.pack("<6hI2h", 2026, 3, 29, 1, 30, 5, 123456789, -3, -30)
    value = datetimeoffset(raw)
    assert value == dt.datetime(
        2026, 3, 29, 1, 30, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))
    )
    assert converter(column("t", "datetimeoffset"))(raw) == value  # bytes: converted here too
    with pytest.raises(ValueError, match="no offset"):
        converter(column("t", "datetimeoffset"))(dt.datetime(2026, 1, 1))
    assert isinstance(converter(column("j", "xml"))("<a/>"), str)
    assert not isinstance(converter(column("j", "xml"))("<a/>"), Json)


def test_unreadable_types_name_the_column() -> None:
    with pytest.raises(SchemaError, match=r"shape \(geometry\), v \(sql_variant\)"):
        refuse_other(
            "dbo.t", [column("id", "int"), column("shape", "geometry"), column("v", "sql_variant")]
        )
