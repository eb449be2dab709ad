"""DuckDB as a snapshot target (the ``bulk`` role): ``read_csv`` into ``INSERT ... SELECT``."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from connectors import _bulk
from connectors.model import TableId, TableSchema

if TYPE_CHECKING:
    from connectors.base import Database

__all__ = ["BulkTarget"]


class BulkTarget(_bulk.BulkTarget):
    """``read_csv`` of the chunk into ``INSERT ... SELECT``, one loader (one writer)."""

    fmt = "csv"
    parallel = False

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def connect(self) -> Any:
        conn = self.db.connect()
        conn.execute("SET TimeZone = 'UTC'")
        return conn

    def execute(self, conn: Any, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        cur = conn.execute(sql, list(params))
        try:
            return list(cur.fetchall())
        except Exception:  # statements without a result set
            return []

    def table_exists(self, conn: Any, table: TableId) -> bool:
        rows = conn.execute(
            "SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = ? AND table_name = ?",
            [table.schema, table.name],
        ).fetchall()
        return bool(rows)

    def load(
        self, conn: Any, table: TableId, schema: TableSchema, columns: tuple[str, ...], data: Any
    ) -> int:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="redoline-snapshot-")
        path = os.path.join(self._tmp.name, f"chunk-{threading.get_ident()}.csv")
        rows = 0
        with open(path, "wb") as f:
            for chunk, n in data:
                f.write(chunk)
                rows += n
        if not rows:
            return 0
        spec = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(columns)))
        # a line holds a whole row: read_csv refuses lines over 2 MB unless told (a 1 MB
        # binary value is 2 MB of hex)
        longest = max(2_000_000, os.path.getsize(path) + 1)
        exprs = []
        for i, name in enumerate(columns):
            kind = schema.column(name).kind
            exprs.append(f"unhex(c{i})" if kind == "bytes" else f"c{i}")
        cols = ", ".join(self.q(c) for c in columns)
        conn.execute(
            f"INSERT INTO {self.qt(table)} ({cols}) SELECT {', '.join(exprs)} "
            f"FROM read_csv(?, columns = {{{spec}}}, header = false, delim = ',', quote = '\"', "
            "escape = '\"', nullstr = '', allow_quoted_nulls = false, auto_detect = false, "
            f"parallel = false, max_line_size = {longest}, buffer_size = {2 * longest})",
            [path],
        )
        os.unlink(path)
        return rows

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
