"""Engine-neutral column kinds to target types, and CREATE TABLE for a trail table definition.

The mapping is explicit and documented (docs/apply.md: Type mapping); a column whose kind has
no faithful type on the target is a :class:`SchemaError` naming the column, never a guess.
Snapshot reuses :func:`create_table_sql` and :func:`ensure_table` to create target tables.

Dialects are sqlglot's names: ``postgres``, ``mysql`` (MySQL and MariaDB), ``duckdb``.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Final

from connectors.errors import SchemaError
from connectors.model import Column, TableId, TableSchema
from connectors.mysql import TABLE_OPTIONS as MYSQL_TABLE_OPTIONS

if TYPE_CHECKING:
    from connectors.base import Writer

__all__ = [
    "DIALECTS",
    "column_type",
    "create_table_sql",
    "ensure_table",
    "quote_ident",
    "quote_table",
]

log = logging.getLogger("redoline.apply")

DIALECTS: Final = ("postgres", "mysql", "duckdb")

#: MySQL limits an index entry to 3072 bytes: 768 utf8mb4 characters. Unbounded text and
#: binary key columns get this length so the primary key can be created at all.
_MYSQL_KEY_CHARS: Final = 768
#: widest VARCHAR we declare on MySQL before switching to LONGTEXT (row size limit 65535)
_MYSQL_MAX_VARCHAR: Final = 4000
#: kinds whose MySQL type takes a CHARACTER SET
_MYSQL_CHARSET_KINDS: Final = frozenset({"str", "enum", "set"})


def quote_ident(name: str, dialect: str) -> str:
    """``name`` quoted for ``dialect`` (always quoted: names are never trusted)."""
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def quote_table(table: TableId, dialect: str) -> str:
    """``schema.table`` quoted for ``dialect`` (on MySQL the schema is a database)."""
    return f"{quote_ident(table.schema, dialect)}.{quote_ident(table.name, dialect)}"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _pg_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _unmappable(col: Column, dialect: str, why: str = "") -> SchemaError:
    source = f" ({col.source_type})" if col.source_type else ""
    return SchemaError(
        f"column {col.name!r} of kind {col.kind!r}{source} has no type on {dialect}"
        + (f": {why}" if why else ""),
        hint="exclude the column with [tables.columns], or create the target table yourself "
        "with a type of your choice before applying",
    )


def column_type(
    col: Column, dialect: str, *, source_dialect: str | None = None, in_key: bool = False
) -> str:
    """The target type of ``col`` on ``dialect`` (docs/apply.md: Type mapping).

    ``source_dialect`` equal to ``dialect`` recreates the source's own type verbatim (same
    engine replication), except where that type is not self-contained (PostgreSQL enums are
    named types). ``in_key`` shortens unbounded MySQL text so an index can hold it.
    """
    if dialect not in DIALECTS:
        raise SchemaError(f"unknown target dialect {dialect!r}")
    if (
        source_dialect == dialect
        and col.source_type
        and not (dialect == "postgres" and col.kind in ("enum", "other"))
        and not (dialect == "mysql" and in_key and col.kind in ("str", "bytes"))
    ):
        if dialect == "mysql" and col.kind in _MYSQL_CHARSET_KINDS and col.charset:
            # the declared type holds no charset: keep the source column's (a latin1 column
            # stays latin1 rather than taking the table's utf8mb4)
            return f"{col.source_type} CHARACTER SET {_charset_name(col)}"
        return col.source_type
    fn = {"postgres": _pg_type, "mysql": _mysql_type, "duckdb": _duckdb_type}[dialect]
    return fn(col, in_key)


def _charset_name(col: Column) -> str:
    name = col.charset or ""
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise _unmappable(col, "mysql", f"unknown character set {name!r}")
    return name


def _int_type(col: Column, dialect: str) -> str:
    bits = col.bits or 64
    if dialect == "mysql":
        name = {8: "TINYINT", 16: "SMALLINT", 24: "MEDIUMINT", 32: "INT", 64: "BIGINT"}.get(bits)
        if name is None:  # 128-bit (DuckDB HUGEINT)
            return "DECIMAL(39,0)" + (" UNSIGNED" if col.unsigned else "")
        return name + (" UNSIGNED" if col.unsigned else "")
    if dialect == "duckdb":
        names = {8: "TINYINT", 16: "SMALLINT", 24: "INTEGER", 32: "INTEGER", 64: "BIGINT"}
        name = names.get(bits, "HUGEINT")
        return ("U" + name) if col.unsigned else name
    # PostgreSQL has only signed 16/32/64-bit integers: unsigned ones take the next size up
    effective = bits + (1 if col.unsigned else 0)
    if effective <= 16:
        return "smallint"
    if effective <= 32:
        return "integer"
    if effective <= 64:
        return "bigint"
    return "numeric(20)" if bits == 64 else "numeric(39)"


def _pg_type(col: Column, in_key: bool) -> str:
    kind = col.kind
    if kind == "bool":
        return "boolean"
    if kind == "int":
        return _int_type(col, "postgres")
    if kind == "decimal":
        if col.precision:
            return f"numeric({col.precision},{col.scale or 0})"
        return "numeric"
    if kind == "float":
        return "real"
    if kind == "double":
        return "double precision"
    if kind in ("str", "enum", "set"):
        # CHAR(n) too becomes varchar(n): char(n) would hand applications a MariaDB value
        # padded with blanks, where varchar keeps each value as the source returned it
        # (PostgreSQL's padded, MariaDB's without padding)
        if kind == "str" and col.length:
            return f"varchar({col.length})"
        return "text"
    if kind == "bytes":
        return "bytea"
    if kind == "date":
        return "date"
    if kind == "time":
        tz = " with time zone" if _time_tz(col) else ""
        return f"time({_frac(col)}){tz}"
    if kind == "duration" or kind == "interval":
        return "interval"
    if kind == "datetime":
        return f"timestamp({_frac(col)})"
    if kind == "timestamptz":
        return f"timestamptz({_frac(col)})"
    if kind == "json":
        # json, not jsonb: jsonb reorders keys and respaces the document, so applications
        # would read another text than the source gave them (and verify could not compare
        # the texts on the servers)
        return "json"
    if kind == "uuid":
        return "uuid"
    if kind == "bit":
        return f"bit({col.bits})" if col.bits else "varbit"
    if kind == "year":
        return "smallint"
    if kind == "array":
        element = Column(col.name, col.element or "other")
        if element.kind in ("array", "other"):
            raise _unmappable(col, "postgres", f"array of {element.kind}")
        return _pg_type(element, False) + "[]"
    raise _unmappable(col, "postgres")


def _mysql_type(col: Column, in_key: bool) -> str:
    kind = col.kind
    if kind == "bool":
        return "TINYINT(1)"
    if kind == "int":
        return _int_type(col, "mysql")
    if kind == "decimal":
        if col.precision and col.precision <= 65:
            return f"DECIMAL({col.precision},{min(col.scale or 0, 30)})"
        # PostgreSQL's unbounded numeric: the widest MySQL has (documented as lossy beyond)
        return "DECIMAL(65,30)"
    if kind == "float":
        return "FLOAT"
    if kind == "double":
        return "DOUBLE"
    if kind == "str":
        # no CHAR(n): MySQL strips trailing blanks when it reads CHAR, so a PostgreSQL char(n)
        # value would lose the padding its applications see; VARCHAR keeps it
        if col.length and (col.length <= _MYSQL_MAX_VARCHAR or in_key):
            return f"VARCHAR({min(col.length, _MYSQL_KEY_CHARS) if in_key else col.length})"
        return f"VARCHAR({_MYSQL_KEY_CHARS})" if in_key else "LONGTEXT"
    if kind == "bytes":
        if col.length and col.fixed and col.length <= 255:
            return f"BINARY({col.length})"
        if col.length and (col.length <= _MYSQL_MAX_VARCHAR or in_key):
            return f"VARBINARY({min(col.length, 3072) if in_key else col.length})"
        return "VARBINARY(3072)" if in_key else "LONGBLOB"
    if kind == "date":
        return "DATE"
    if kind == "time":
        if _time_tz(col):
            raise _unmappable(col, "mysql", "MySQL TIME cannot keep a time zone offset")
        return f"TIME({_frac(col)})"
    if kind == "duration":
        return f"TIME({_frac(col)})"
    if kind == "datetime":
        return f"DATETIME({_frac(col)})"
    if kind == "timestamptz":
        # TIMESTAMP stops in 2038 and follows the session zone: store UTC in a DATETIME
        return f"DATETIME({_frac(col)})"
    if kind == "interval":
        return "VARCHAR(100)"
    if kind in ("json", "array"):
        return "JSON"
    if kind == "uuid":
        return "CHAR(36)"
    if kind == "enum":
        return "ENUM(" + ",".join(_literal(x) for x in col.labels) + ")" if col.labels else "TEXT"
    if kind == "set":
        if not col.labels:
            return "TEXT"
        return "SET(" + ",".join(_literal(x) for x in col.labels) + ")"
    if kind == "bit":
        if col.bits and col.bits <= 64:
            return f"BIT({col.bits})"
        raise _unmappable(col, "mysql", "BIT holds at most 64 bits")
    if kind == "year":
        return "YEAR"
    raise _unmappable(col, "mysql")


def _duckdb_type(col: Column, in_key: bool) -> str:
    kind = col.kind
    if kind == "bool":
        return "BOOLEAN"
    if kind == "int":
        return _int_type(col, "duckdb")
    if kind == "decimal":
        if col.precision and col.precision <= 38:
            return f"DECIMAL({col.precision},{col.scale or 0})"
        # wider than DuckDB's DECIMAL(38): keep the exact digits as text
        return "VARCHAR"
    if kind == "float":
        return "FLOAT"
    if kind == "double":
        return "DOUBLE"
    if kind in ("str", "set"):
        return "VARCHAR"
    if kind == "enum":
        if col.labels:
            return "ENUM(" + ",".join(_pg_literal(x) for x in col.labels) + ")"
        return "VARCHAR"
    if kind == "bytes":
        return "BLOB"
    if kind == "date":
        return "DATE"
    if kind == "time":
        return "TIMETZ" if _time_tz(col) else "TIME"
    if kind in ("duration", "interval"):
        return "INTERVAL"
    if kind == "datetime":
        return "TIMESTAMP"
    if kind == "timestamptz":
        return "TIMESTAMPTZ"
    if kind == "json":
        return "JSON"
    if kind == "uuid":
        return "UUID"
    if kind == "bit":
        return "BIT"
    if kind == "year":
        return "SMALLINT"
    if kind == "array":
        element = Column(col.name, col.element or "other")
        if element.kind in ("array", "other"):
            raise _unmappable(col, "duckdb", f"array of {element.kind}")
        return _duckdb_type(element, False) + "[]"
    raise _unmappable(col, "duckdb")


def _time_tz(col: Column) -> bool:
    """A time of day with an offset (``timetz``). PostgreSQL spells the plain one ``time
    without time zone``, so looking for "zone" alone is wrong."""
    declared = col.source_type.lower()
    return declared.startswith("timetz") or "with time zone" in declared


def _frac(col: Column) -> int:
    return 6 if col.precision is None else max(0, min(col.precision, 6))


def create_table_sql(
    schema: TableSchema,
    dialect: str,
    target_name: TableId | None = None,
    *,
    source_dialect: str | None = None,
) -> str:
    """``CREATE TABLE`` for ``schema`` on ``dialect``: mapped types, NOT NULL, primary key
    and unique keys (generated columns become ordinary columns holding the source's values).

    ``target_name`` defaults to the source's ``schema.table``. Raises :class:`SchemaError`
    naming the first column that cannot be mapped.
    """
    table = target_name or schema.table
    keyed = (
        set(schema.primary_key).union(*schema.unique_keys)
        if schema.unique_keys
        else set(schema.primary_key)
    )
    lines = []
    for col in schema.columns:
        ctype = column_type(col, dialect, source_dialect=source_dialect, in_key=col.name in keyed)
        null = "" if col.nullable and col.name not in schema.primary_key else " NOT NULL"
        lines.append(f"{quote_ident(col.name, dialect)} {ctype}{null}")
    if schema.primary_key:
        cols = ", ".join(quote_ident(c, dialect) for c in schema.primary_key)
        lines.append(f"PRIMARY KEY ({cols})")
    for key in schema.unique_keys:
        if key == schema.primary_key:
            continue
        cols = ", ".join(quote_ident(c, dialect) for c in key)
        lines.append(f"UNIQUE ({cols})")
    body = ",\n  ".join(lines)
    # MySQL: utf8mb4 whatever the database's default (connectors/mysql: TABLE_OPTIONS)
    options = f" {MYSQL_TABLE_OPTIONS}" if dialect == "mysql" else ""
    return f"CREATE TABLE {quote_table(table, dialect)} (\n  {body}\n){options}"


def ensure_table(
    writer: Writer,
    schema: TableSchema,
    target_name: TableId | None = None,
    *,
    source_dialect: str | None = None,
) -> bool:
    """Create ``target_name`` (and its schema/database) from ``schema`` unless it exists.

    Returns True when the table was created. Runs on ``writer``'s connection; on MySQL DDL
    commits implicitly, so call it outside a data transaction.
    """
    table = target_name or schema.table
    if writer.table_exists(table):
        return False
    sql = create_table_sql(schema, writer.dialect, table, source_dialect=source_dialect)
    writer.create_schema(table.schema)
    writer.execute(sql)
    log.info("created target table %s", table)
    return True
