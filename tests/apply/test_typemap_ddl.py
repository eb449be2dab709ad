"""Type mapping, CREATE TABLE and DDL translation (pure: no server)."""

from __future__ import annotations

import re

import pytest

from apply.ddl import translate_ddl
from apply.typemap import column_type, create_table_sql
from connectors.errors import SchemaError
from connectors.model import Column, TableId, TableSchema


@pytest.mark.parametrize(
    ("col", "dialect", "expected"),
    [
        (Column("a", "int", bits=64, unsigned=True), "postgres", "numeric(20)"),
        (Column("a", "int", bits=32, unsigned=True), "postgres", "bigint"),
        (Column("a", "duration", precision=0), "postgres", "interval"),
        (Column("a", "array", element="int"), "mysql", "JSON"),
        (Column("a", "array", element="str"), "postgres", "text[]"),
        (Column("a", "enum", labels=("x", "y'z")), "mysql", "ENUM('x','y''z')"),
        (Column("a", "set", labels=("a", "b")), "postgres", "text"),
        (Column("a", "bit", bits=3), "postgres", "bit(3)"),
        # json keeps the document as the source wrote it (jsonb reorders and respaces it)
        (Column("a", "json"), "postgres", "json"),
        # CHAR(n) keeps what applications read: MariaDB's value unpadded, PostgreSQL's padded
        (Column("a", "str", length=10, fixed=True), "postgres", "varchar(10)"),
        (Column("a", "str", length=10, fixed=True), "mysql", "VARCHAR(10)"),
        (Column("a", "str", length=10, fixed=True), "duckdb", "VARCHAR"),
        (Column("a", "uuid"), "mysql", "CHAR(36)"),
        (Column("a", "timestamptz", precision=3), "mysql", "DATETIME(3)"),
        (Column("a", "decimal", precision=50, scale=2), "duckdb", "VARCHAR"),
        # PostgreSQL's plain time is spelled "without time zone": not a timetz
        (Column("a", "time", "time(6) without time zone", precision=6), "mysql", "TIME(6)"),
        (Column("a", "time", "time(6) without time zone", precision=6), "duckdb", "TIME"),
        (Column("a", "time", "time(3) with time zone", precision=3), "duckdb", "TIMETZ"),
        (Column("a", "time", "timetz", precision=6), "postgres", "time(6) with time zone"),
        (Column("a", "time", "time without time zone", precision=6), "postgres", "time(6)"),
    ],
)
def test_column_type(col: Column, dialect: str, expected: str) -> None:
    assert column_type(col, dialect) == expected


def test_unmappable_names_the_column() -> None:
    with pytest.raises(SchemaError, match="'geo'"):
        column_type(Column("geo", "other", "geometry"), "mysql", source_dialect="postgres")
    assert column_type(Column("geo", "other", "geometry"), "mysql", source_dialect="mysql")


def test_create_table_has_keys() -> None:
    schema = TableSchema(
        TableId("s", "t"),
        (Column("id", "int", bits=64, nullable=False), Column("email", "str", nullable=False)),
        primary_key=("id",),
        unique_keys=(("email",),),
    )
    sql = create_table_sql(schema, "mysql", TableId("d", "u"))
    assert sql.startswith("CREATE TABLE `d`.`u`")
    assert "PRIMARY KEY (`id`)" in sql
    assert "UNIQUE (`email`)" in sql
    assert "`email` VARCHAR(768) NOT NULL" in sql


def test_ddl_translation_renames_and_retypes() -> None:
    after = TableSchema(
        TableId("dw", "orders"),
        (Column("id", "int", bits=32), Column("n", "int", bits=64, unsigned=True)),
        primary_key=("id",),
    )
    out = translate_ddl(
        "ALTER TABLE `orders` ADD COLUMN n BIGINT UNSIGNED",
        source_dialect="mysql",
        target_dialect="postgres",
        default_schema="shop",
        rename=lambda t: TableId("dw", t.name),
        schema_after=after,
    )
    assert out == ['ALTER TABLE "dw"."orders" ADD COLUMN n DECIMAL(20)'] or "NUMERIC(20)" in out[0]


def test_untranslatable_ddl_names_the_statement() -> None:
    with pytest.raises(SchemaError, match="CREATE TRIGGER"):
        translate_ddl(
            "CREATE TRIGGER x BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1",
            source_dialect="mysql",
            target_dialect="postgres",
        )


def test_rename_table_mysql_to_postgres() -> None:
    out = translate_ddl(
        "RENAME TABLE a TO b",
        source_dialect="mysql",
        target_dialect="postgres",
        default_schema="shop",
    )
    assert out == ['ALTER TABLE "shop"."a" RENAME TO "b"']


def test_duckdb_alter_one_action_per_statement() -> None:
    out = translate_ddl(
        "ALTER TABLE t ADD COLUMN a INT, DROP COLUMN b",
        source_dialect="mysql",
        target_dialect="duckdb",
        default_schema="s",
    )
    assert len(out) == 2 and "ADD COLUMN" in out[0] and "DROP COLUMN" in out[1]


def test_mysql_ddl_derivation_keeps_precision_and_explicit_null() -> None:
    import sqlglot

    from connectors.mysql.schema import _coldef_column

    stmt = sqlglot.parse_one("ALTER TABLE t ADD c DECIMAL(8,3) NULL, ADD v VARCHAR(12)", "mysql")
    c, v = (_coldef_column(a) for a in stmt.args["actions"])
    assert (c.precision, c.scale, c.nullable) == (8, 3, True)
    assert v.length == 12


@pytest.mark.parametrize(
    ("source", "target", "sql", "declared"),
    [
        ("mysql", "postgres", "ALTER TABLE `t` ADD COLUMN c CHAR(5)", "varchar(5)"),
        ("postgres", "mysql", 'ALTER TABLE "t" ADD COLUMN c char(5)', "VARCHAR(5)"),
    ],
)
def test_streamed_char_column_gets_the_snapshot_mapping(
    source: str, target: str, sql: str, declared: str
) -> None:
    """An added CHAR(n) is a varchar on the target, as in a snapshot's CREATE TABLE."""
    after = TableSchema(
        TableId("s", "t"),
        (Column("id", "int", bits=32), Column("c", "str", length=5, fixed=True)),
        primary_key=("id",),
    )
    (out,) = translate_ddl(
        sql, source_dialect=source, target_dialect=target, default_schema="s", schema_after=after
    )
    assert declared.lower() in out.lower()
    assert not re.search(r"(?<!var)char\(5\)", out, re.I), out
