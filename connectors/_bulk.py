"""What the ``bulk`` role modules share: the snapshot's connections to a target, and the
progress tables it keeps there.

A snapshot loads key-range chunks in parallel: each worker holds its own autocommit
connection with the engine's bulk session settings and brackets a chunk and its "done" mark
in one transaction (``apply/snapshot.py``). Each engine's ``BulkTarget`` (its
``connectors/<engine>/bulk.py``) says how a connection is opened, how a statement runs, and
how a chunk's bytes — in the format its source readers write (:attr:`BulkTarget.fmt`) — are
loaded; everything else (progress tables, transactions, quoting) is written once here, in
the engine's own quoting and placeholders.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from connectors.model import TableId, TableSchema

if TYPE_CHECKING:
    from connectors.base import Database

__all__ = ["CHUNKS", "STATE_SCHEMA", "TABLES", "BulkTarget"]

STATE_SCHEMA = "redoline"
TABLES = "snapshot_tables"
CHUNKS = "snapshot_chunks"


class BulkTarget:
    """The bulk path into one target engine, and its progress tables."""

    #: the chunk format this target loads (``connectors.snapshot``: pgcopy, csv, tsv)
    fmt: ClassVar[str] = ""
    #: one connection per worker (True) or a single loader thread (False: one writer)
    parallel: ClassVar[bool] = True
    #: appended to CREATE SCHEMA / CREATE TABLE of the progress tables
    schema_options: ClassVar[str] = ""
    table_options: ClassVar[str] = ""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = db.dialect
        self.placeholder = db.placeholder

    def connect(self) -> Any:
        return self.db.connect()

    def execute(self, conn: Any, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def begin(self, conn: Any) -> None:
        self.execute(conn, "BEGIN")

    def commit(self, conn: Any) -> None:
        self.execute(conn, "COMMIT")

    def rollback(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            self.execute(conn, "ROLLBACK")

    def table_exists(self, conn: Any, table: TableId) -> bool:
        raise NotImplementedError

    def column_names(self, conn: Any, table: TableId) -> list[str]:
        """The target table's column names (information_schema: every target has it)."""
        rows = self.execute(
            conn,
            self.sql(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s"
            ),
            [table.schema, table.name],
        )
        return [str(r[0]) for r in rows]

    def load(
        self, conn: Any, table: TableId, schema: TableSchema, columns: tuple[str, ...], data: Any
    ) -> int:
        """Bulk-load ``data`` (iterable of (bytes, rows)) inside the open transaction."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the loads kept (temporary files)."""

    def q(self, name: str) -> str:
        return self.db.quote(name)

    def qt(self, table: TableId) -> str:
        return self.db.qualified(table)

    def state_ddl(self) -> list[str]:
        t, c = self.state(TABLES), self.state(CHUNKS)
        return [
            self.create_schema_sql(STATE_SCHEMA),
            f"CREATE TABLE IF NOT EXISTS {t} (source_id VARCHAR(128) NOT NULL, "
            "target_table VARCHAR(512) NOT NULL, source_table VARCHAR(512) NOT NULL, "
            "state VARCHAR(16) NOT NULL, start_position VARCHAR(512), end_position VARCHAR(512), "
            "rows_loaded BIGINT, chunks_total INTEGER, lock_seconds DOUBLE PRECISION, "
            "error TEXT, started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION, "
            f"PRIMARY KEY (source_id, target_table)){self.table_options}",
            f"CREATE TABLE IF NOT EXISTS {c} (source_id VARCHAR(128) NOT NULL, "
            "target_table VARCHAR(512) NOT NULL, chunk_no INTEGER NOT NULL, lower_key TEXT, "
            "upper_key TEXT, done INTEGER NOT NULL, rows_loaded BIGINT, "
            f"PRIMARY KEY (source_id, target_table, chunk_no)){self.table_options}",
        ]

    def create_schema_sql(self, name: str) -> str:
        return f"CREATE SCHEMA IF NOT EXISTS {self.q(name)}{self.schema_options}"

    def state(self, name: str) -> str:
        """A progress table's quoted name."""
        return self.qt(TableId(STATE_SCHEMA, name))

    def sql(self, text: str) -> str:
        """``text`` written with ``%s`` placeholders, in this driver's."""
        return text.replace("%s", self.placeholder)
