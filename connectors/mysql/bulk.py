"""MySQL/MariaDB as a snapshot target (the ``bulk`` role): ``LOAD DATA LOCAL INFILE`` per
worker, through the same statement as the writer's staging (:mod:`connectors.mysql.loaddata`)."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from connectors import _bulk
from connectors.errors import SchemaError
from connectors.model import TableId, TableSchema
from connectors.mysql import DATABASE_OPTIONS, TABLE_OPTIONS
from connectors.mysql.loaddata import load_file

if TYPE_CHECKING:
    from connectors.base import Database

__all__ = ["BulkTarget"]


class BulkTarget(_bulk.BulkTarget):
    """``LOAD DATA LOCAL INFILE`` of the chunk's tab-separated text, one connection per
    worker. The text goes through a temporary file: pymysql sends a local file's bytes."""

    fmt = "tsv"
    # utf8mb4 whatever the server's default (a stock MariaDB's latin1 holds little of Unicode)
    schema_options = f" {DATABASE_OPTIONS}"
    table_options = f" {TABLE_OPTIONS}"

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._tmp_lock = threading.Lock()

    def connect(self) -> Any:
        conn = self.db.connect(local_infile=True, autocommit=True)
        with conn.cursor() as cur:
            # UTC: the source text of instants is UTC; checks off: rows come in key order
            # from a consistent source, and the chunk commits as a whole
            cur.execute(
                "SET SESSION time_zone = '+00:00', unique_checks = 0, foreign_key_checks = 0"
            )
        return conn

    def execute(self, conn: Any, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with conn.cursor() as cur:
            cur.execute(sql, list(params) or None)
            return list(cur.fetchall()) if cur.description else []

    def table_exists(self, conn: Any, table: TableId) -> bool:
        rows = self.execute(
            conn,
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            [table.schema, table.name],
        )
        return bool(rows)

    def load(
        self, conn: Any, table: TableId, schema: TableSchema, columns: tuple[str, ...], data: Any
    ) -> int:
        with self._tmp_lock:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="redoline-snapshot-")
        path = os.path.join(self._tmp.name, f"chunk-{threading.get_ident()}.tsv")
        rows = 0
        with open(path, "wb") as f:
            for chunk, n in data:
                f.write(chunk)
                rows += n
        if not rows:
            os.unlink(path)
            return 0
        fields = [(self.q(name), schema.column(name).kind) for name in columns]
        try:
            loaded, bad = load_file(conn, path, self.qt(table), fields)
        finally:
            os.unlink(path)
        if bad:
            raise SchemaError(
                f"loading {table} gave warnings: {'; '.join(bad)}",
                hint="the target table's types do not hold the source's values; "
                "create it yourself with wider types and run the snapshot again",
            )
        if loaded != rows:
            raise SchemaError(f"loading {table} stored {loaded} of {rows} rows")
        return rows

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
