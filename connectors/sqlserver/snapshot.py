"""Snapshot of a SQL Server source under SNAPSHOT isolation, at a known LSN.

One connection reads every chunk of every table inside one ``SNAPSHOT`` isolation
transaction (SQL Server cannot share a transaction's snapshot with another connection, so
``--workers`` is ignored and the run says so). Its point on the log is bracketed by two
reads of the log's end (``sys.dm_db_log_stats(DB_ID()).log_end_lsn``): one before the
transaction's first data access (which fixes its snapshot), one after. A transaction whose
commit LSN is at or before the first was committed before the snapshot began: it is in it.
One whose commit LSN is after the second committed after: it is not. Catch-up applies the
window between in collision mode (connectors/snapshot.py: SnapshotPoint); when nothing was
logged between the two reads the point is exact.

Rows are fetched by the driver, converted by :mod:`connectors.sqlserver.values`, and written
in the target's bulk text by the driver-row formatter (``connectors.rowtext``), with
``datetimeoffset`` values given as UTC.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from connectors.errors import PrerequisiteError
from connectors.model import TableId, TableSchema
from connectors.rowtext import RowWriter, fetched
from connectors.snapshot import DriverSnapshot, KeyRange, RowIds, SnapshotPoint, chunk_select
from connectors.sqlserver import sql
from connectors.sqlserver.positions import Position, compare, lsn_from_text
from connectors.sqlserver.values import converter

if TYPE_CHECKING:
    from connectors.sqlserver import SqlServer

__all__ = ["SqlServerSnapshot", "open_snapshot"]

log = logging.getLogger("redoline.snapshot")

_FETCH_ROWS: Final = 2000
#: the first data access of the transaction: it fixes the snapshot (a table every
#: CDC-enabled database has)
BEGIN_SNAPSHOT: Final = "SELECT COUNT_BIG(*) FROM cdc.lsn_time_mapping"
SET_SNAPSHOT: Final = "SET TRANSACTION ISOLATION LEVEL SNAPSHOT"
#: per table: rows, from the partition statistics (params: schema, table)
ROW_ESTIMATE: Final = (
    "SELECT SUM(p.rows) FROM sys.partitions p JOIN sys.tables t ON t.object_id = p.object_id "
    "JOIN sys.schemas s ON s.schema_id = t.schema_id "
    "WHERE s.name = ? AND t.name = ? AND p.index_id IN (0, 1)"
)


def _utc_text(fmt: str) -> Callable[[Any], Any]:
    suffix = "" if fmt == "tsv" else "+00"

    def text(v: Any) -> Any:
        if isinstance(v, dt.datetime) and v.tzinfo is not None:
            return v.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ") + suffix
        return v

    return text


class SqlServerSnapshot(DriverSnapshot):
    """One SNAPSHOT isolation transaction on the source, and its bracketed log point."""

    def __init__(self, db: SqlServer, workers: int) -> None:
        self.db = db
        if workers > 1:
            log.info(
                "SQL Server snapshot reads on one connection (--workers %d ignored: SQL Server "
                "cannot share a snapshot between connections)",
                workers,
            )
        self._init_workers(1)
        conn = db.connect(autocommit=True)
        self.conns.append(conn)
        try:
            (name, cdc_on, snapshot_state, *_rest), *_ = db.run(conn, sql.DATABASE)
            if snapshot_state != 1:
                raise PrerequisiteError(
                    f"{db.endpoint.display}: snapshot isolation is off on database {name}",
                    hint=f"ALTER DATABASE {sql.quote(str(name))} SET ALLOW_SNAPSHOT_ISOLATION ON",
                )
            if not cdc_on:
                raise PrerequisiteError(
                    f"{db.endpoint.display}: CDC is not enabled on database {name}",
                    hint="run `redoline init` (or EXEC sys.sp_cdc_enable_db as sysadmin)",
                )
            db.run(conn, SET_SNAPSHOT)
            before = self._log_end()
            conn.autocommit = False  # the transaction begins with the next statement
            db.run(conn, BEGIN_SNAPSHOT, what="opening the snapshot")
            after = self._log_end()
        except BaseException:
            self.close()
            raise
        start, end = str(Position(before)), str(Position(after))
        method = "SNAPSHOT isolation transaction" + (
            "" if start == end else " (log end moved while it began: catch-up window)"
        )
        self.point = SnapshotPoint(start, end, 0.0, method)

    def _log_end(self) -> Any:
        rows = self.db.run(self.conns[0], sql.LOG_END, what="sys.dm_db_log_stats")
        return lsn_from_text(str(rows[0][0]))

    def _end(self, conn: Any) -> None:
        if not conn.autocommit:
            conn.rollback()  # the snapshot only read
        conn.close()

    def compare_positions(self, a: str, b: str) -> int:
        return compare(a, b)

    # ------------------------------------------------------------------ planning

    def estimate_rows(self, schema: TableSchema) -> int:
        with self._locks[0]:
            rows = self.db.run(
                self.conns[0], ROW_ESTIMATE, (schema.table.schema, schema.table.name)
            )
        return int(rows[0][0] or 0) if rows else 0

    def _key_span(self, schema: TableSchema, key: str) -> tuple[Any, Any, Any]:
        q = sql.quote(key)
        (lo, hi, count), *_ = self.db.run(
            self.conns[0],
            f"SELECT MIN({q}), MAX({q}), COUNT_BIG(*) FROM {self.db.qualified(schema.table)}",
        )
        return lo, hi, count

    # ------------------------------------------------------------------ reading

    def select_sql(
        self, schema: TableSchema, columns: Sequence[str], chunk: KeyRange, where: str | None
    ) -> tuple[str, list[Any]]:
        key = self._int_key(schema)
        statement, bounds = chunk_select(
            ", ".join(sql.quote(c) for c in columns),
            self.db.qualified(schema.table),
            None if key is None else sql.quote(key),
            chunk,
            where,
            marker="?",
        )
        return statement, list(bounds.values())

    def _rows(
        self, worker: int, statement: str, params: Sequence[Any], table: TableId
    ) -> Iterator[Sequence[Any]]:
        try:
            cur = self.conns[worker].cursor()
            cur.execute(statement, *params)
        except Exception as exc:
            raise _driver_error(self.db, exc, table) from None
        yield from fetched(cur, _FETCH_ROWS, lambda exc: _driver_error(self.db, exc, table))

    def _writer(
        self, schema: TableSchema, columns: tuple[str, ...], fmt: str, row_ids: RowIds | None
    ) -> RowWriter:
        """Values converted as capture converts them (:mod:`connectors.sqlserver.values`),
        ``datetimeoffset`` as UTC."""
        convs = [converter(schema.column(c)) for c in columns]
        utc = _utc_text(fmt)
        write = super()._writer(schema, columns, fmt, row_ids)

        def converted(row: Sequence[Any]) -> str:
            return write(
                [None if v is None else utc(f(v)) for f, v in zip(convs, row, strict=True)]
            )

        return converted


def _driver_error(db: SqlServer, exc: Exception, table: TableId) -> Exception:
    from connectors.sqlserver import _is_driver_error
    from connectors.sqlserver.errors import map_error

    if _is_driver_error(exc):
        return map_error(exc, db.endpoint, f"reading {table}")
    return exc


def open_snapshot(
    db: SqlServer,
    workers: int,
    *,
    tables: Sequence[TableId] = (),
    capture: bool = True,
    options: dict[str, Any] | None = None,
) -> SqlServerSnapshot:
    """A SNAPSHOT isolation reader on ``db`` and its point on the log (module doc)."""
    return SqlServerSnapshot(db, workers)
