"""Row predicates and column subsets (pure logic, table-driven)."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from capture.filters import CaptureFilter, compile_predicate
from connectors.base import TableFilter
from connectors.errors import ConfigError
from connectors.model import Change, Column, Op, TableId, TableSchema

ROW = {
    "id": 7,
    "status": "Paid",
    "total": decimal.Decimal("12.50"),
    "note": None,
    "at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
    "flag": True,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id = 7", True),
        ("id <> 7", False),
        ("total >= 12.5 AND total < 13", True),
        ("status = 'paid'", True),  # case-insensitive like MySQL's default collations
        ("status IN ('new', 'paid')", True),
        ("status NOT IN ('new', 'paid')", False),
        ("note IS NULL", True),
        ("note IS NOT NULL", False),
        ("note = 'x'", None),  # unknown
        ("NOT (note = 'x')", None),
        ("note = 'x' OR id = 7", True),
        ("note = 'x' AND id = 8", False),
        ("status LIKE 'pa%'", True),
        ("status LIKE 'p_i_'", True),
        ("status NOT LIKE 'x%'", True),
        ("id BETWEEN 1 AND 7", True),
        ("id NOT BETWEEN 1 AND 7", False),
        ("at >= '2024-05-01 00:00:00'", True),
        ("flag = TRUE", True),
        ("id > -1", True),
        ("(id = 1 OR id = 7) AND status <> 'new'", True),
    ],
)
def test_predicates(text: str, expected: bool | None) -> None:
    assert compile_predicate(text)(ROW) is expected


@pytest.mark.parametrize("text", ["id IN (SELECT 1)", "UPPER(status) = 'X'", "id = "])
def test_unsupported_predicates_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        compile_predicate(text)


def _schema() -> TableSchema:
    cols = tuple(Column(n, "int") for n in ("id", "a", "b"))
    return TableSchema(TableId("s", "t"), cols, ("id",))


def test_capture_filter_columns_rows_and_ddl() -> None:
    f = CaptureFilter(TableFilter(("s.*",)), columns={"s.t": ("a",)}, where={"s.*": "a > 1"})
    t = TableId("s", "t")
    ins = Change(Op.INSERT, t, key={"id": 1}, after={"id": 1, "a": 2, "b": 3})
    kept = f.apply(ins)
    assert kept is not None and kept.after == {"id": 1, "a": 2}  # key column always kept
    assert f.apply(Change(Op.INSERT, t, key={"id": 2}, after={"id": 2, "a": 1, "b": 3})) is None
    dele = Change(Op.DELETE, t, key={"id": 3}, before={"id": 3, "a": 5, "b": 0})
    assert f.apply(dele) is not None and dele.before == {"id": 3, "a": 5}
    ddl = Change(Op.DDL, t, ddl="ALTER TABLE t ADD c INT", table_schema=_schema())
    out = f.apply(ddl)
    assert out is not None and out.table_schema is not None  # DDL is never dropped
    assert out.table_schema.column_names == ("id", "a")
    assert f.apply(Change(Op.TRUNCATE, t)) is not None
