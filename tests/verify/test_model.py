"""Pure logic: canonical kinds of column pairs, value encoding round trips, report rendering."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.model import Column, Interval, Json, TableId
from tests.verify.canon_reference import canon_double
from verify.dialect import canonical_kind
from verify.model import RowDiff, TableResult, VerifyResult, decode_value, encode_value
from verify.report import render_html, render_json, render_markdown


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (Column("x", "int"), Column("x", "bool"), ("int", None)),
        (Column("x", "int"), Column("x", "decimal", scale=0), ("decimal", 0)),
        (Column("x", "decimal", scale=2), Column("x", "decimal", scale=4), ("decimal", 2)),
        (Column("x", "decimal", scale=None), Column("x", "decimal", scale=3), ("decimal", 3)),
        (Column("x", "float"), Column("x", "double"), ("double", None)),
        (Column("x", "int"), Column("x", "double"), ("double", None)),
        (Column("x", "datetime"), Column("x", "timestamptz"), ("datetime", None)),
        (Column("x", "duration"), Column("x", "time"), ("time", None)),
        (Column("x", "str"), Column("x", "uuid"), ("text", None)),
        (Column("x", "enum"), Column("x", "str"), ("text", None)),
        (Column("x", "json"), Column("x", "json"), ("text", None)),
        (Column("x", "bytes"), Column("x", "bytes"), ("bytes", None)),
    ],
)
def test_canonical_kind(a: Column, b: Column, expected: tuple[str, int | None]) -> None:
    assert canonical_kind(a, b) == expected


VALUES = [
    None,
    True,
    -(2**63),
    2**64 - 1,
    0.1,
    float("nan"),
    float("-inf"),
    decimal.Decimal("-1.500"),
    "",
    "trailing  ",
    "ünï 🎉",
    b"\x00\xff",
    b"",
    dt.date(2024, 2, 29),
    dt.datetime(2024, 1, 1, 1, 2, 3, 4),
    dt.datetime(2024, 1, 1, 1, 2, 3, 4, tzinfo=dt.UTC),
    dt.time(1, 2, 3, 4),
    dt.timedelta(hours=-30, microseconds=5),
    uuid.UUID(int=5),
    Json('{"a": 1}'),
    Interval(1, 2, 3),
    frozenset({"a", "b"}),
]
KINDS = [
    "other",
    "bool",
    "int",
    "int",
    "double",
    "double",
    "double",
    "decimal",
    "str",
    "str",
    "str",
    "bytes",
    "bytes",
    "date",
    "datetime",
    "timestamptz",
    "time",
    "duration",
    "uuid",
    "json",
    "interval",
    "set",
]


@pytest.mark.parametrize(("value", "kind"), list(zip(VALUES, KINDS, strict=True)))
def test_value_round_trip_through_json(value: object, kind: str) -> None:
    back = decode_value(json.loads(json.dumps(encode_value(value))), kind)
    if isinstance(value, float) and math.isnan(value):
        assert isinstance(back, float) and math.isnan(back)
    else:
        assert back == value and type(back) is type(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_canonical_double_model_is_exact(x: float) -> None:
    text = canon_double(x)
    if x == 0:
        assert text == "0"
        return
    mantissa, _, exponent = text.lstrip("-").partition("p")
    assert 2**52 <= int(mantissa) < 2**53
    assert math.ldexp(int(mantissa), int(exponent) - 52) == abs(x)


def _result() -> VerifyResult:
    cols = (Column("id", "int"), Column("name", "str"), Column("b", "bytes"))
    table = TableResult(
        TableId("shop", "items"),
        TableId("replica", "items"),
        mode="range",
        key=("id",),
        columns=("id", "name", "b"),
        source_rows=3,
        target_rows=3,
        chunks=1,
        mismatched_chunks=1,
        source_columns=cols,
        target_columns=cols,
        seconds={"total": 0.5},
    )
    table.diffs = [
        RowDiff(
            "different",
            {"id": 1},
            {"id": 1, "name": "a|b <x>", "b": b"\x01"},
            {"id": 1, "name": "a|b <y>", "b": b"\x01"},
            ["name"],
            row_hash="0123456789abcdef",
        ),
        RowDiff("missing", {"id": 2}, {"id": 2, "name": "", "b": None}, None),
    ]
    return VerifyResult("mariadb://a/shop", "postgresql://b/shop", dt.datetime.now(dt.UTC), [table])


def test_json_report_round_trips() -> None:
    result = _result()
    back = VerifyResult.from_json(json.loads(render_json(result)))
    assert back.to_json() == result.to_json()
    assert back.tables[0].diffs[0].source == {"id": 1, "name": "a|b <x>", "b": b"\x01"}
    assert back.totals == {"missing": 1, "extra": 0, "different": 1, "transient": 0}


def test_markdown_and_html_reports() -> None:
    result = _result()
    md = render_markdown(result)
    assert "| shop.items | replica.items | differs | range |" in md
    assert "| name ⚠ | 'a\\|b <x>' | 'a\\|b <y>' |" in md
    page = render_html(result)
    assert "&lt;x&gt;" in page and "<x>" not in page  # escaped
    assert "class='diff'" in page and "<script" not in page
