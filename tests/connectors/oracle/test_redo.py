"""SQL_REDO parsing on a corpus of statements in LogMiner's documented format."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import zoneinfo

import pytest

from connectors.model import UNCHANGED, Column, Op, TableId, TableSchema
from connectors.oracle import redo
from connectors.oracle.schema import column

T = TableSchema(
    TableId("HR", "ALLTYPES"),
    (
        column("ID", "NUMBER", 22, None, 10, 0, False),
        column("AMOUNT", "NUMBER", 22, None, 12, 3, True),
        column("BIG", "NUMBER", 22, None, None, None, True),
        column("NAME", "VARCHAR2", 40, 40, None, None, True),
        column("NNAME", "NVARCHAR2", 80, 40, None, None, True),
        column("CODE", "CHAR", 3, 3, None, None, True),
        column("BLOB_", "RAW", 16, None, None, None, True),
        column("D", "DATE", 7, None, None, None, True),
        column("TS", "TIMESTAMP(6)", 11, None, None, 6, True),
        column("TSTZ", "TIMESTAMP(6) WITH TIME ZONE", 13, None, None, 6, True),
        column("F", "BINARY_FLOAT", 4, None, None, None, True),
        column("DBL", "BINARY_DOUBLE", 8, None, None, None, True),
        column("DOC", "CLOB", 4000, None, None, None, True),
        column("X", "XMLTYPE", 2000, None, None, None, True),
    ),
    ("ID",),
)


def ins(col: str, literal: str) -> object:
    sql = f'insert into "HR"."ALLTYPES"("ID","{col}") values (1,{literal});'
    assert redo._scan(sql) is not None  # LogMiner's shape: the fast scanner takes it
    row = redo.parse_row(sql, T)
    assert row.op is Op.INSERT and row.owner == "HR" and row.table == "ALLTYPES"
    slow = redo.parse_row_sqlglot(sql, T)  # and sqlglot agrees
    assert slow == row or (slow.after[col] != slow.after[col] and row.after[col] != row.after[col])
    return row.after[col]


@pytest.mark.parametrize(
    ("col", "literal", "value"),
    [
        ("ID", "'42'", 42),
        ("ID", "-7", -7),
        ("AMOUNT", "'12.500'", decimal.Decimal("12.500")),
        ("AMOUNT", "-0.001", decimal.Decimal("-0.001")),
        (
            "BIG",
            "123456789012345678901234567890",
            decimal.Decimal("123456789012345678901234567890"),
        ),
        ("NAME", "'it''s'", "it's"),
        ("NAME", "'back\\slash'", "back\\slash"),
        ("NAME", "NULL", None),
        ("CODE", "'ab '", "ab "),
        ("NNAME", "UNISTR('caf\\00E9 \\D83D\\DE00 \\\\')", "café 😀 \\"),
        ("BLOB_", "HEXTORAW('00ff10')", b"\x00\xff\x10"),
        (
            "D",
            "TO_DATE('2024-02-29 23:59:58', 'YYYY-MM-DD HH24:MI:SS')",
            dt.datetime(2024, 2, 29, 23, 59, 58),
        ),
        (
            "TS",
            "TO_TIMESTAMP('2024-01-02 03:04:05.123456789', 'YYYY-MM-DD HH24:MI:SS.FF')",
            dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
        ),
        (
            "TS",  # TIMESTAMP(0) under the FF format: nothing after the dot
            "TO_TIMESTAMP('2024-01-02 03:04:05.', 'YYYY-MM-DD HH24:MI:SS.FF')",
            dt.datetime(2024, 1, 2, 3, 4, 5),
        ),
        (
            "TSTZ",
            "TO_TIMESTAMP_TZ('2024-01-02 03:04:05.000001 Europe/Paris', 'YYYY-MM-DD HH24:MI:SS.FF "
            "TZR')",
            dt.datetime(2024, 1, 2, 3, 4, 5, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
        ),
        (
            "TSTZ",
            "TO_TIMESTAMP_TZ('2024-01-02 03:04:05.5 -05:30', 'YYYY-MM-DD HH24:MI:SS.FF TZH:TZM')",
            dt.datetime(
                2024, 1, 2, 3, 4, 5, 500000, tzinfo=dt.timezone(-dt.timedelta(hours=5, minutes=30))
            ),
        ),
        ("F", "1.5E+000", 1.5),
        ("F", "TO_BINARY_FLOAT('-2.5E+001')", -25.0),
        ("DBL", "'Inf'", math.inf),
        ("DBL", "'-Inf'", -math.inf),
        ("DOC", "EMPTY_CLOB()", ""),
    ],
)
def test_each_value_type(col: str, literal: str, value: object) -> None:
    got = ins(col, literal)
    assert got == value and type(got) is type(value)


def test_nan() -> None:
    got = ins("DBL", "'Nan'")
    assert isinstance(got, float) and math.isnan(got)


def test_update_and_delete_images_and_rowid() -> None:
    row = redo.parse_row(
        'update "HR"."ALLTYPES" set "NAME" = \'new\', "AMOUNT" = NULL where "ID" = \'1\' and '
        "\"NAME\" = 'old' and \"AMOUNT\" IS NULL and ROWID = 'AAAHSeAABAAAY+CAAX';",
        T,
    )
    assert row.op is Op.UPDATE and row.row_id == "AAAHSeAABAAAY+CAAX"
    assert row == redo.parse_row_sqlglot(
        'update "HR"."ALLTYPES" set "NAME" = \'new\', "AMOUNT" = NULL where "ID" = \'1\' and '
        "\"NAME\" = 'old' and \"AMOUNT\" IS NULL and ROWID = 'AAAHSeAABAAAY+CAAX';",
        T,
    )
    assert row.before == {"ID": 1, "NAME": "old", "AMOUNT": None}
    before, after = redo.images(row, T)
    assert before == row.before
    assert after is not None and after["NAME"] == "new" and after["AMOUNT"] is None
    assert after["ID"] == 1 and after["DOC"] is UNCHANGED
    row = redo.parse_row(
        'delete from "HR"."ALLTYPES" where "ID" = \'2\' and "D" = TO_DATE(\'2020-01-01 00:00:00\', '
        "'YYYY-MM-DD HH24:MI:SS') and ROWID = 'AAAHSeAABAAAY+CAAY';",
        T,
    )
    assert row.op is Op.DELETE and row.before == {"ID": 2, "D": dt.datetime(2020, 1, 1)}


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ('insert into "HR"."ALLTYPES"("ID","X") values (1,XMLTYPE(\'<a/>\'));', "XMLTYPE"),
        ('insert into "HR"."ALLTYPES"("ID","NOPE") values (1,2);', "current definition lacks"),
        ('update "HR"."ALLTYPES" set "ID" = 2 where "ID" > 1;', "column = value"),
        ('insert into "HR"."ALLTYPES"("ID") values (\'x1\');', "non-numeric"),
        ('insert into "HR"."ALLTYPES"("ID") values (1.5);', "fraction"),
        (
            'insert into "HR"."ALLTYPES"("D") values (TO_DATE(\'02-JAN-24\', \'DD-MON-RR\'));',
            "format",
        ),
        ("create table x (a int);", "row change"),
        ("Unsupported", "unparsable|row change"),
    ],
)
def test_what_cannot_be_parsed_is_refused(sql: str, why: str) -> None:
    with pytest.raises(redo.UnsupportedRedo, match=why):
        redo.parse_row(sql, T)
    with pytest.raises(redo.UnsupportedRedo, match=why):
        redo.parse_row_sqlglot(sql, T)


@pytest.mark.parametrize(
    "sql",
    [
        'update "HR"."ALLTYPES" set "NAME" = \'a\' where ID = \'1\';',  # an unquoted name
        'insert into "HR"."ALLTYPES"("ID","NAME") values (1,\'a\' || \'b\');',
        'delete from "HR"."ALLTYPES" where ("ID" = \'1\');',
    ],
)
def test_other_shapes_fall_back_to_sqlglot(sql: str) -> None:
    assert redo._scan(sql) is None
    try:
        fast: object = redo.parse_row(sql, T)
    except redo.UnsupportedRedo as exc:
        fast = str(exc)
    try:
        slow: object = redo.parse_row_sqlglot(sql, T)
    except redo.UnsupportedRedo as exc:
        slow = str(exc)
    assert fast == slow


def test_lob_pieces() -> None:
    loc = redo.parse_lob(
        9,
        'DECLARE \n loc_c CLOB; \n buf_c VARCHAR2(6156); \nBEGIN\n select "DOC" into loc_c '
        'from "HR"."ALLTYPES" where "ID" = \'3\' and ROWID = \'AAAHSeAABAAAY+CAAZ\' for update;',
        lambda owner, name: T,
    )
    assert (loc.column, loc.key, loc.row_id) == ("DOC", {"ID": 3}, "AAAHSeAABAAAY+CAAZ")
    w1 = redo.parse_lob(
        10, " buf_c := 'hello'' '; \n dbms_lob.write(loc_c, 7, 1, buf_c);\nEND;", None
    )
    w2 = redo.parse_lob(10, " buf_c := 'world'; \n dbms_lob.write(loc_c, 5, 8, buf_c);\nEND;", None)
    value = redo.apply_lob(redo.apply_lob("", w1), w2)
    assert value == "hello' world"
    trim = redo.parse_lob(11, " dbms_lob.trim(loc_c, 5);\nEND;", None)
    assert redo.apply_lob(value, trim) == "hello"
    b = redo.parse_lob(10, " buf_b := HEXTORAW('0001'); dbms_lob.write(loc_b, 2, 3, buf_b);", None)
    assert redo.apply_lob(b"\xff\xff", b) == b"\xff\xff\x00\x01"
    with pytest.raises(redo.UnsupportedRedo, match="7 units carrying 5"):
        redo.parse_lob(10, " buf_c := 'hello'; dbms_lob.write(loc_c, 7, 1, buf_c);", None)


def test_column_kinds_from_the_dictionary() -> None:
    kinds = {c.name: (c.kind, c.source_type) for c in T.columns}
    assert kinds["ID"] == ("int", "NUMBER(10)")
    assert kinds["BIG"] == ("decimal", "NUMBER")
    assert kinds["TSTZ"][0] == "timestamptz" and kinds["D"][0] == "datetime"
    assert kinds["X"] == ("other", "XMLTYPE")
    assert isinstance(T.column("CODE"), Column) and T.column("CODE").fixed
