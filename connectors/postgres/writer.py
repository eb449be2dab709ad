"""PostgreSQL as a target: COPY into a temporary staging table, then set-based merge.

The staging table of each target table is created once per session with the target's own
column types (``format_type``), ``ON COMMIT DELETE ROWS`` so it empties itself, and loaded
with ``COPY ... FROM STDIN``. Keyless tables delete one of several identical rows through
``ctid`` (DESIGN.md: Row identity).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

import psycopg
import psycopg.errors

from connectors.base import RowRejected
from connectors.errors import ConnectionFailure
from connectors.model import Column, TableId, TableSchema
from connectors.postgres import PostgreSQL, map_error
from connectors.sqlwriter import Adapter, SqlWriter, Staged, bitstring, common_adapter

__all__ = ["PostgresWriter", "open_writer"]

_stage_ids = itertools.count(1)


def open_writer(database: PostgreSQL) -> PostgresWriter:
    """A writer on a new connection to ``database`` (not autocommit)."""
    conn = database.connect(autocommit=False)
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return PostgresWriter(database, conn)


class PostgresWriter(SqlWriter):
    """Writes to PostgreSQL: COPY to staging, DELETE USING / UPDATE FROM / INSERT SELECT."""

    dialect: ClassVar[str] = "postgres"
    placeholder: ClassVar[str] = "%s"
    row_address: ClassVar[str | None] = "ctid"

    conn: psycopg.Connection[Any]

    def adapter(self, col: Column) -> Adapter | None:
        if col.kind == "bit":
            return lambda v: bitstring(v, col.bits)
        if col.kind == "timestamptz":
            # a naive value from a MySQL TIMESTAMP is UTC; say so, or the session zone decides
            return lambda v: (
                v.replace(tzinfo=dt.UTC) if isinstance(v, dt.datetime) and v.tzinfo is None else v
            )
        return common_adapter(col)

    def comparable(self, expr: str, col: Column) -> str:
        if col.kind == "json":
            # jsonb, not text: jsonb normalises the stored document, so its text never
            # equals the source's text parameter
            return f"({expr})::jsonb"
        if col.kind == "array":
            # psycopg types a list parameter by its values ([1] is smallint[]), and bigint[]
            # = smallint[] has no operator: compare the arrays' text
            return f"({expr})::text"
        return super().comparable(expr, col)

    # ------------------------------------------------------------------ statements

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        try:
            cur = self.conn.execute(sql, params)
        except psycopg.Error as exc:
            raise self._map(exc) from None
        return cur.rowcount

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            return list(self.conn.execute(sql, params).fetchall())
        except psycopg.Error as exc:
            raise self._map(exc) from None

    def _map(self, exc: psycopg.Error) -> Exception:
        if isinstance(exc, psycopg.OperationalError) and not isinstance(
            exc, psycopg.errors.QueryCanceled
        ):
            mapped = map_error(exc, self.database.endpoint)
            if isinstance(mapped, ConnectionFailure):
                return mapped
        diag = getattr(exc, "diag", None)
        detail = f" ({diag.message_detail})" if diag and diag.message_detail else ""
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return RowRejected(f"{text}{detail}")

    def commit(self) -> None:
        try:
            self.conn.commit()
        except psycopg.Error as exc:
            raise self._map(exc) from None
        self._stage_used.clear()

    def rollback(self) -> None:
        try:
            self.conn.rollback()
        except psycopg.Error:
            pass
        self._stage_used.clear()

    def column_names(self, table: TableId) -> set[str]:
        rows = self.query(
            "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND "
            "c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped",
            (table.schema, table.name),
        )
        return {str(r[0]) for r in rows}

    def table_exists(self, table: TableId) -> bool:
        return bool(
            self.query(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
                (table.schema, table.name),
            )
        )

    def truncate(self, table: TableId) -> None:
        self.execute(f"TRUNCATE {self.qt(table)}")

    def create_schema(self, schema: str) -> None:
        # CREATE SCHEMA IF NOT EXISTS races with itself (a unique violation on pg_namespace
        # when parallel appliers start on a fresh target): serialise creators of one schema
        # with a transaction-scoped advisory lock, held through the CREATE TABLE after it
        self.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"redoline schema {schema}",))
        super().create_schema(schema)

    def checkpoint_ddl(self) -> str:
        return super().checkpoint_ddl().replace("VARCHAR(512)", "TEXT")

    # ------------------------------------------------------------------ staging

    def stage(self, schema: TableSchema, cols: Sequence[Column], data: Staged) -> str:
        table = schema.table
        name = self._stage_names.get(table)
        if name is None:
            name = f"redoline_stage_{next(_stage_ids)}"
            types = dict(
                self.query(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                    (self.qt(table),),
                )
            )
            defs = ", ".join(f"{self.q(c.name)} {types[c.name]}" for c in cols)
            self.execute(
                f"CREATE TEMP TABLE {name} (_op char(1), _id integer, _n integer, {defs}) "
                "ON COMMIT DELETE ROWS"
            )
            self._stage_names[table] = name
        elif name in self._stage_used:
            self.execute(f"TRUNCATE {name}")
        self._stage_used.add(name)
        columns = ", ".join(["_op", "_id", "_n", *(self.q(c.name) for c in cols)])
        try:
            with (
                self.conn.cursor() as cur,
                cur.copy(f"COPY {name} ({columns}) FROM STDIN") as copy,
            ):
                write = copy.write_row
                for row in data.rows():
                    write(row)
        except psycopg.Error as exc:
            raise self._map(exc) from None
        if len(data) > 1000:
            self.execute(f"ANALYZE {name}")
        return name
