"""Value encoding: every change-model value type round-trips exactly."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capture import codec
from connectors.model import UNCHANGED, Change, Interval, Json, Op, TableId
from tests.capture.helpers import ORDERS_V2, SAMPLE_VALUES, same

offsets = st.builds(
    dt.timezone,
    st.timedeltas(
        min_value=-dt.timedelta(hours=23, minutes=59), max_value=dt.timedelta(hours=23, minutes=59)
    ),
)
decimals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=True, places=None),
    st.decimals(allow_nan=False, places=4),
    st.sampled_from([decimal.Decimal("NaN"), decimal.Decimal("-0"), decimal.Decimal("1E-40")]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    decimals,
    st.text(),
    st.binary(),
    st.dates(),
    st.times(timezones=st.none() | offsets),
    st.datetimes(timezones=st.none() | offsets),
    st.timedeltas(),
    st.builds(
        Interval,
        st.integers(-(2**31), 2**31),
        st.integers(-(2**31), 2**31),
        st.integers(-(2**63), 2**63 - 1),
    ),
    st.builds(Json, st.text()),
    st.uuids(),
    st.frozensets(st.text(max_size=5), max_size=5),
    st.just(UNCHANGED),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=8)


@given(values)
@settings(max_examples=400, deadline=None)
def test_value_round_trip(value: Any) -> None:
    assert same(codec.decode_value(codec.encode_value(value)), value)


@given(st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=8))
@settings(max_examples=150, deadline=None)
def test_change_record_round_trip(row: dict[str, Any]) -> None:
    change = Change(Op.UPDATE, TableId("a.b", "c\u00e9"), 3, {"id": 1}, row, row, row_id="r1")
    packed = codec.make_packer().pack(codec.encode_change(change))
    unpacker = codec.make_unpacker()
    unpacker.feed(packed)
    (record,) = list(unpacker)
    back = codec.decode_change(record)
    assert back.table == change.table and back.row_id == "r1" and back.schema_version == 3
    assert same(back.before, row) and same(back.after, row)


@pytest.mark.parametrize("name", sorted(SAMPLE_VALUES))
def test_sample_values(name: str) -> None:
    value = SAMPLE_VALUES[name]
    assert same(codec.decode_value(codec.encode_value(value)), value)


def test_unchanged_is_the_singleton() -> None:
    assert codec.decode_value(codec.encode_value(UNCHANGED)) is UNCHANGED


def test_schema_round_trip() -> None:
    assert codec.schema_from_wire(codec.schema_to_wire(ORDERS_V2)) == ORDERS_V2
    ddl = Change(Op.DDL, ORDERS_V2.table, 2, ddl="ALTER ...", table_schema=ORDERS_V2)
    assert codec.decode_change(codec.encode_change(ddl)) == ddl


def test_subclasses_and_tuples_are_encoded_as_their_base() -> None:
    class MyDate(dt.date):
        pass

    assert codec.decode_value(codec.encode_value(MyDate(2020, 1, 2))) == dt.date(2020, 1, 2)
    odd: list[Any] = [(1, 2), {"a"}]
    assert codec.decode_value(codec.encode_value(odd[0])) == [1, 2]
    assert codec.decode_value(codec.encode_value(odd[1])) == frozenset({"a"})


def test_unknown_type_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot store"):
        codec.encode_value(object())  # type: ignore[arg-type]


def test_unknown_ext_code_is_refused() -> None:
    import msgpack

    with pytest.raises(ValueError, match="unknown value type code 99"):
        codec.decode_value(msgpack.packb(msgpack.ExtType(99, b"")))


def test_json_view() -> None:
    view = codec.to_jsonable(
        {
            "d": decimal.Decimal("1.10"),
            "b": b"\x00\xff",
            "n": float("nan"),
            "u": UNCHANGED,
            "j": Json('{"a": 1}'),
            "id": uuid.UUID(int=1),
            "i": Interval(1, 2, 3),
        }
    )
    assert view == {
        "d": "1.10",
        "b": "\\x00ff",
        "n": "NaN",
        "u": "<unchanged>",
        "j": {"a": 1},
        "id": "00000000-0000-0000-0000-000000000001",
        "i": {"months": 1, "days": 2, "microseconds": 3},
    }
