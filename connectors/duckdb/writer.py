"""DuckDB as a target: the batch goes in as one Arrow table, then set-based SQL.

The Arrow table is registered with the connection, cast once into a temporary staging table
with the target's exact column types, and merged with ``DELETE ... USING``/``UPDATE ...
FROM``/``INSERT ... SELECT``. Keyless tables delete one of several identical rows through
``rowid`` (DESIGN.md: Row identity).
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

import duckdb
import pyarrow as pa

from connectors.base import RowRejected
from connectors.duckdb import DuckDB
from connectors.errors import StorageError
from connectors.model import Column, TableId, TableSchema
from connectors.sqlwriter import (
    Adapter,
    SqlWriter,
    Staged,
    bitstring,
    common_adapter,
    uuid_text,
)

__all__ = ["DuckDBWriter", "open_writer"]

_stage_ids = itertools.count(1)


def open_writer(database: DuckDB) -> DuckDBWriter:
    """A writer holding ``database``'s file open (DuckDB allows one writing process)."""
    conn = database.connect()
    conn.execute("SET TimeZone = 'UTC'")
    return DuckDBWriter(database, conn)


def _rejected(exc: duckdb.Error, path: str) -> Exception:
    """A row the target refuses, or (disk full, no permission) a file it cannot write.

    A full disk is not the row's fault: reporting it as a rejected row would send good
    transactions to the reject trail under ``--on-error skip``.
    """
    first = str(exc).strip().splitlines()[0]
    if isinstance(exc, duckdb.IOException | duckdb.FatalException) or any(
        s in first for s in ("No space left", "Permission denied", "Read-only file system")
    ):
        return StorageError(
            f"cannot write DuckDB file {path}: {first}",
            hint="free space on (or give write access to) that filesystem, then run again: "
            "the target transaction was rolled back and apply resumes from its checkpoint",
        )
    return RowRejected(first)


def _utc(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    if isinstance(value, dt.time) and value.tzinfo is not None:
        return value.isoformat()
    return value


class DuckDBWriter(SqlWriter):
    """Writes to DuckDB: Arrow to staging, DELETE USING / UPDATE FROM / INSERT SELECT."""

    dialect: ClassVar[str] = "duckdb"
    placeholder: ClassVar[str] = "?"
    row_address: ClassVar[str | None] = "rowid"

    conn: duckdb.DuckDBPyConnection

    def __init__(self, database: DuckDB, conn: duckdb.DuckDBPyConnection) -> None:
        super().__init__(database, conn)
        self.endpoint_path = database.path
        self._in_txn = False
        self._column_types: dict[TableId, dict[str, str]] = {}

    def adapter(self, col: Column) -> Adapter | None:
        kind = col.kind
        if kind == "uuid":
            return uuid_text
        if kind == "bit":
            return lambda v: bitstring(v, col.bits)
        if kind == "decimal":
            # Arrow infers one decimal type per column and refuses NaN: go through text
            return lambda v: str(v) if isinstance(v, decimal.Decimal) else v
        if kind == "int" and (col.bits or 64) >= 64:
            return lambda v: str(v) if isinstance(v, int) and not -(2**63) <= v < 2**63 else v
        if kind in ("timestamptz", "datetime", "time"):
            return _utc
        return common_adapter(col)

    # ------------------------------------------------------------------ statements

    def _ensure_txn(self) -> None:
        if not self._in_txn:
            self.conn.execute("BEGIN TRANSACTION")
            self._in_txn = True

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        self._ensure_txn()
        try:
            result = self.conn.execute(sql, params).fetchall()
        except duckdb.Error as exc:
            raise _rejected(exc, self.endpoint_path) from None
        if len(result) == 1 and len(result[0]) == 1 and isinstance(result[0][0], int):
            return int(result[0][0])
        return -1

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        self._ensure_txn()
        try:
            return list(self.conn.execute(sql, params).fetchall())
        except duckdb.Error as exc:
            raise _rejected(exc, self.endpoint_path) from None

    def begin(self) -> None:
        super().begin()
        self._ensure_txn()

    def commit(self) -> None:
        if self._in_txn:
            try:
                self.conn.execute("COMMIT")
            except duckdb.Error as exc:
                self._in_txn = False
                raise _rejected(exc, self.endpoint_path) from None
            self._in_txn = False
        self._stage_used.clear()

    def rollback(self) -> None:
        if self._in_txn:
            try:
                self.conn.execute("ROLLBACK")
            except duckdb.Error:
                pass
            self._in_txn = False
        self._stage_used.clear()
        # temporary staging tables created in the rolled-back transaction are gone, and so
        # is any DDL that ran in it
        self._stage_names.clear()
        self._column_types.clear()

    def column_names(self, table: TableId) -> set[str]:
        rows = self.query(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = ? AND table_name = ?",
            (table.schema, table.name),
        )
        return {str(r[0]) for r in rows}

    def table_exists(self, table: TableId) -> bool:
        return bool(
            self.query(
                "SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ?",
                (table.schema, table.name),
            )
        )

    def truncate(self, table: TableId) -> None:
        self.execute(f"DELETE FROM {self.qt(table)}")

    # ------------------------------------------------------------------ staging

    def stage(self, schema: TableSchema, cols: Sequence[Column], data: Staged) -> str:
        table = schema.table
        name = self._stage_names.get(table)
        if name is None:
            name = f"redoline_stage_{next(_stage_ids)}"
            self._stage_names[table] = name
        types = self._types(table)
        n = len(data)
        arrays = [
            pa.array(data.ops, type=pa.string()),
            pa.array(range(n), type=pa.int64()),
            pa.array(data.counts, type=pa.int64()),
        ]
        for values in data.columns:
            try:
                arrays.append(pa.array(values))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                arrays.append(pa.array([None if v is None else str(v) for v in values]))
        arrow = pa.Table.from_arrays(arrays, names=[f"c{j}" for j in range(len(arrays))])
        view = f"{name}_in"
        self.conn.register(view, arrow)
        try:
            exprs = ["c0 AS _op", "c1 AS _id", "c2 AS _n"]
            exprs += [
                f"CAST(c{j + 3} AS {types[c.name]}) AS {self.q(c.name)}" for j, c in enumerate(cols)
            ]
            self.execute(
                f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {', '.join(exprs)} FROM {view}"
            )
        finally:
            self.conn.unregister(view)
        self._stage_used.add(name)
        return name

    def _types(self, table: TableId) -> dict[str, str]:
        # cached: asked once per table, not once per group (DDL calls invalidate())
        found = self._column_types.get(table)
        if found is None:
            found = dict(
                self.query(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
                    "current_database() AND schema_name = ? AND table_name = ?",
                    (table.schema, table.name),
                )
            )
            self._column_types[table] = found
        return found

    def invalidate(self, table: TableId) -> None:
        self._column_types.pop(table, None)
        super().invalidate(table)
