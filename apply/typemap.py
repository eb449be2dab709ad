"""Engine-neutral column kinds to target types, and CREATE TABLE for a trail table definition.

The mapping is explicit and documented (docs/apply.md: Type mapping); each target engine's is
its ``types`` role (``connectors/<engine>/types.py``). A column whose kind has no faithful type
on the target is a :class:`SchemaError` naming the column, never a guess. Snapshot reuses
:func:`create_table_sql` and :func:`ensure_table` to create target tables.

Dialects are sqlglot's names (an engine descriptor's ``dialect``).
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import TYPE_CHECKING

from connectors.engine import engine_for_dialect
from connectors.errors import ConfigError, SchemaError
from connectors.model import Column, TableId, TableSchema

if TYPE_CHECKING:
    from connectors.base import Writer

__all__ = [
    "column_type",
    "create_table_sql",
    "ensure_table",
    "quote_ident",
    "quote_table",
]

log = logging.getLogger("redoline.apply")


def _types(dialect: str) -> ModuleType:
    try:
        return engine_for_dialect(dialect).role("types")
    except ConfigError as exc:
        raise SchemaError(f"no target type mapping for the {dialect!r} dialect: {exc}") from None


def quote_ident(name: str, dialect: str) -> str:
    """``name`` quoted for ``dialect`` by its engine (``Database.quote``)."""
    quoted: str = engine_for_dialect(dialect).database_class().quote(name)
    return quoted


def quote_table(table: TableId, dialect: str) -> str:
    """``schema.table`` quoted for ``dialect`` (on MySQL the schema is a database)."""
    return f"{quote_ident(table.schema, dialect)}.{quote_ident(table.name, dialect)}"


def column_type(
    col: Column, dialect: str, *, source_dialect: str | None = None, in_key: bool = False
) -> str:
    """The target type of ``col`` on ``dialect`` (docs/apply.md: Type mapping).

    ``source_dialect`` equal to ``dialect`` recreates the source's own type verbatim (same
    engine replication) where the engine says that type stands alone (``source_type``).
    ``in_key`` shortens unbounded text where an index needs it.
    """
    types = _types(dialect)
    if source_dialect == dialect:
        same: str | None = types.source_type(col, in_key)
        if same is not None:
            return same
    mapped: str = types.column_type(col, in_key)
    return mapped


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
    table_options: str = _types(dialect).TABLE_OPTIONS
    options = f" {table_options}" if table_options else ""
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
