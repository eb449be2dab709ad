"""PostgreSQL as a snapshot target (the ``bulk`` role): ``COPY FROM STDIN`` per worker."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from connectors import _bulk
from connectors.model import TableId, TableSchema

__all__ = ["BulkTarget"]


class BulkTarget(_bulk.BulkTarget):
    """``COPY ... FROM STDIN`` of the chunk's text, one connection per worker."""

    fmt = "pgcopy"

    def connect(self) -> Any:
        conn = self.db.connect(autocommit=True)
        conn.execute("SET synchronous_commit = off")  # each chunk commit: no fsync wait
        return conn

    def execute(self, conn: Any, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        cur = conn.execute(sql, list(params) or None)
        return list(cur.fetchall()) if cur.description else []

    def table_exists(self, conn: Any, table: TableId) -> bool:
        row = conn.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s",
            (table.schema, table.name),
        ).fetchone()
        return row is not None

    def load(
        self, conn: Any, table: TableId, schema: TableSchema, columns: tuple[str, ...], data: Any
    ) -> int:
        cols = ", ".join(self.q(c) for c in columns)
        rows = 0
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY {self.qt(table)} ({cols}) FROM STDIN") as copy,
        ):
            for chunk, n in data:
                copy.write(chunk)
                rows += n
        return rows
