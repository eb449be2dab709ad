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


# --------------------------------------------------------------------------- transitions

T = TableId("s", "t")


def _view() -> CaptureFilter:
    return CaptureFilter(
        TableFilter(("s.*",)), columns={"s.t": ("id", "a")}, where={"s.t": "a > 1"}
    )


def _update(before: dict[str, object], after: dict[str, object]) -> Change:
    return Change(Op.UPDATE, T, key={"id": before["id"]}, before=before, after=after)


@pytest.mark.parametrize(
    ("before", "after", "op", "image"),
    [
        # in -> in: an update of the projected row
        ({"id": 1, "a": 2, "b": 0}, {"id": 1, "a": 3, "b": 0}, Op.UPDATE, {"id": 1, "a": 3}),
        # in -> out: a delete by the before image's key
        ({"id": 1, "a": 2, "b": 0}, {"id": 1, "a": 0, "b": 0}, Op.DELETE, {"id": 1, "a": 2}),
        # out -> in: an insert of the after image, column-subsetted
        ({"id": 1, "a": 0, "b": 0}, {"id": 1, "a": 5, "b": 9}, Op.INSERT, {"id": 1, "a": 5}),
        # key-changing in -> out: delete the old key
        ({"id": 1, "a": 2, "b": 0}, {"id": 9, "a": 0, "b": 0}, Op.DELETE, {"id": 1, "a": 2}),
        # key-changing out -> in: insert under the new key
        ({"id": 1, "a": 0, "b": 0}, {"id": 9, "a": 4, "b": 0}, Op.INSERT, {"id": 9, "a": 4}),
        # key-changing in -> in stays an update (apply moves the key)
        ({"id": 1, "a": 2, "b": 0}, {"id": 9, "a": 4, "b": 0}, Op.UPDATE, {"id": 9, "a": 4}),
    ],
)
def test_update_transitions(
    before: dict[str, object], after: dict[str, object], op: Op, image: dict[str, object]
) -> None:
    f = _view()
    out = f.apply(_update(before, after))
    assert out is not None and out.op is op
    if op is Op.DELETE:
        assert out.key == {"id": before["id"]} and out.before == image and out.after is None
    elif op is Op.INSERT:
        assert out.key == {"id": after["id"]} and out.after == image and out.before is None
    else:
        assert out.key == {"id": before["id"]} and out.after == image
    counts = f.stats.to_json()
    assert counts["updates_to_deletes"] == ({"s.t": 1} if op is Op.DELETE else {})
    assert counts["updates_to_inserts"] == ({"s.t": 1} if op is Op.INSERT else {})


def test_out_to_out_update_is_dropped_and_counted() -> None:
    f = _view()
    assert f.apply(_update({"id": 1, "a": 0, "b": 0}, {"id": 1, "a": 1, "b": 5})) is None
    assert f.apply(Change(Op.INSERT, T, key={"id": 2}, after={"id": 2, "a": 0})) is None
    assert f.stats.to_json()["dropped"] == {"s.t": 2}
    assert "2 changes outside [tables.where] dropped" in f.stats.summary()


def test_key_only_before_image_decides_key_predicates() -> None:
    """PostgreSQL's default identity: no old tuple when the key did not change."""
    f = CaptureFilter(where={"s.t": "id < 10"})
    upd = Change(Op.UPDATE, T, key={"id": 3}, before=None, after={"id": 3, "a": 1})
    out = f.apply(upd)
    assert out is not None and out.op is Op.UPDATE


def test_unchanged_large_values_come_from_the_before_image() -> None:
    from connectors.model import UNCHANGED

    f = CaptureFilter(where={"s.t": "a > 1"})
    upd = _update({"id": 1, "a": 0, "doc": "big"}, {"id": 1, "a": 2, "doc": UNCHANGED})
    out = f.apply(upd)
    assert out is not None and out.op is Op.INSERT and out.after == {"id": 1, "a": 2, "doc": "big"}


def test_text_compares_as_the_source_does() -> None:
    row = {"status": "Paid"}
    assert compile_predicate("status = 'paid'")(row) is True  # MySQL: case-insensitive
    assert compile_predicate("status = 'paid'", case_insensitive=False)(row) is False
    assert compile_predicate("status LIKE 'pa%'", case_insensitive=False)(row) is False


def test_view_columns_must_keep_the_key_and_exist() -> None:
    cols = tuple(Column(n, "int") for n in ("id", "a", "b"))
    schema = TableSchema(T, cols, ("id",))
    assert CaptureFilter(columns={"s.*": ("b", "id")}).view_columns(schema) == ("id", "b")
    with pytest.raises(ConfigError, match=r"s\.t leaves out its row identity column\(s\) id"):
        CaptureFilter(columns={"s.t": ("a",)}).view_columns(schema)
    with pytest.raises(ConfigError, match="names column"):
        CaptureFilter(columns={"s.t": ("id", "zz")}).view_columns(schema)


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        ("postgres", """"status" IN ('paid', 'x') AND "total" >= 100"""),
        ("mysql", "`status` IN ('paid', 'x') AND `total` >= 100"),
    ],
)
def test_predicate_is_translated_for_the_source(dialect: str, expected: str) -> None:
    f = CaptureFilter(where={"s.*": "`status` IN ('paid', \"x\") AND total >= 100"})
    assert f.where_sql(T, dialect) == expected
    assert f.predicate_columns(T) == {"status", "total"}
