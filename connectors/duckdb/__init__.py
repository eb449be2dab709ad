"""DuckDB, the embedded default target: connection and introspection.

A DuckDB file allows one writing process at a time; apply holds the connection for its run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import duckdb

from connectors.base import CheckItem, Database, TableFilter
from connectors.duckdb.descriptor import ENGINE
from connectors.errors import ConnectError, MissingObjectError, SchemaError, ToolkitError
from connectors.model import Column, TableId, TableSchema

__all__ = ["DuckDB"]

_INT_BITS = {
    "TINYINT": (8, False),
    "SMALLINT": (16, False),
    "INTEGER": (32, False),
    "BIGINT": (64, False),
    "UTINYINT": (8, True),
    "USMALLINT": (16, True),
    "UINTEGER": (32, True),
    "UBIGINT": (64, True),
    "HUGEINT": (128, False),
    "UHUGEINT": (128, True),
}
_SIMPLE = {
    "BOOLEAN": "bool",
    "FLOAT": "float",
    "DOUBLE": "double",
    "VARCHAR": "str",
    "BLOB": "bytes",
    "DATE": "date",
    "TIME": "time",
    "TIME WITH TIME ZONE": "time",
    "TIMESTAMP": "datetime",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "INTERVAL": "interval",
    "JSON": "json",
    "UUID": "uuid",
    "BIT": "bit",
}


class DuckDB(Database):
    """A DuckDB database file (or ``:memory:``)."""

    descriptor = ENGINE

    @property
    def path(self) -> str:
        return self.endpoint.path

    def check_schema_name(self, schema: str) -> None:
        # DuckDB names the file's catalog after the file name up to its first dot; a schema of
        # that name makes every "schema"."table" ambiguous ("Ambiguous reference to catalog or
        # schema"), so the load would fail half way
        catalog = "memory" if self.path == ":memory:" else os.path.basename(self.path).split(".")[0]
        if schema.lower() == catalog.lower():
            raise SchemaError(
                f"the target schema {schema!r} has the name DuckDB gives the file {self.path} "
                f"itself (its catalog {catalog!r}): DuckDB cannot tell the two apart",
                hint=f"name the file differently (e.g. {catalog}_replica.duckdb), or map the "
                f'schema: [tables.rename] "{schema}" = "{schema}_data"',
            )

    def connect(self, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        path = self.path
        if path != ":memory:":
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise MissingObjectError(
                    f"the directory for DuckDB file {path!r} does not exist",
                    hint=f"mkdir -p {parent}",
                )
        try:
            return duckdb.connect(path, **kwargs)
        except duckdb.IOException as exc:
            raise ConnectError(
                f"cannot open DuckDB file {path!r}: {exc}",
                hint="another process may hold it open for writing (one writer at a time)",
            ) from None
        except duckdb.Error as exc:
            raise ToolkitError(f"cannot open DuckDB file {path!r}: {exc}") from None

    @staticmethod
    def quote(identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'

    def list_tables(self, table_filter: TableFilter | None = None) -> list[TableId]:
        with self.connect(read_only=os.path.exists(self.path)) as conn:
            return list_tables(conn, table_filter)

    def table_schema(self, table: TableId) -> TableSchema:
        with self.connect(read_only=os.path.exists(self.path)) as conn:
            return introspect(conn, table)

    def check_source(self, tables: Sequence[TableId] = ()) -> list[CheckItem]:
        return [
            CheckItem(
                "engine",
                "duckdb",
                "a source engine",
                False,
                "DuckDB has no transaction log to read; use it as a target",
            )
        ]

    def check_target(self) -> list[CheckItem]:
        with self.connect() as conn:
            conn.execute("SELECT 1").fetchall()
        return [CheckItem("reachable", "yes", "yes", True)]


def list_tables(
    conn: duckdb.DuckDBPyConnection, table_filter: TableFilter | None = None
) -> list[TableId]:
    rows = conn.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT internal "
        "AND database_name = current_database() AND schema_name NOT LIKE 'redoline%' "
        "ORDER BY 1, 2"
    ).fetchall()
    tables = [TableId(str(s), str(n)) for s, n in rows]
    return [t for t in tables if table_filter is None or table_filter(t)]


def introspect(conn: duckdb.DuckDBPyConnection, table: TableId) -> TableSchema:
    rows = conn.execute(
        "SELECT column_name, data_type, is_nullable FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = ? AND table_name = ? "
        "ORDER BY column_index",
        [table.schema, table.name],
    ).fetchall()
    if not rows:
        raise MissingObjectError(f"table {table} does not exist in the DuckDB database")
    columns = tuple(_column(str(n), str(t), bool(nullable)) for n, t, nullable in rows)
    primary: tuple[str, ...] = ()
    uniques: list[tuple[str, ...]] = []
    for ctype, cols in conn.execute(
        "SELECT constraint_type, constraint_column_names FROM duckdb_constraints() "
        "WHERE database_name = current_database() AND schema_name = ? AND table_name = ? "
        "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')",
        [table.schema, table.name],
    ).fetchall():
        if ctype == "PRIMARY KEY":
            primary = tuple(cols)
        else:
            uniques.append(tuple(cols))
    not_null = {c.name for c in columns if not c.nullable}
    unique_keys = tuple(u for u in uniques if set(u) <= not_null)
    return TableSchema(table, columns, primary, unique_keys)


def _column(name: str, data_type: str, nullable: bool) -> Column:
    upper = data_type.upper()
    common: dict[str, Any] = {"name": name, "source_type": data_type, "nullable": nullable}
    if upper.endswith("[]"):
        inner = _column(name, data_type[:-2], nullable)
        return Column(kind="array", element=inner.kind, **common)
    if upper in _INT_BITS:
        bits, unsigned = _INT_BITS[upper]
        return Column(kind="int", bits=bits, unsigned=unsigned, **common)
    match = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", upper)
    if match:
        return Column(
            kind="decimal", precision=int(match.group(1)), scale=int(match.group(2)), **common
        )
    if upper.startswith("ENUM("):
        labels = tuple(m.replace("''", "'") for m in re.findall(r"'((?:[^']|'')*)'", data_type))
        return Column(kind="enum", labels=labels, **common)
    return Column(kind=_SIMPLE.get(upper, "other"), **common)
