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
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from connectors.errors import PrerequisiteError, SchemaError
from connectors.model import Column, TableId, TableSchema
from connectors.rowtext import row_writer
from connectors.snapshot import FORMATS, KeyRange, SnapshotPoint
from connectors.sqlserver import sql
from connectors.sqlserver.positions import Position, compare, lsn_from_text
from connectors.sqlserver.values import converter

if TYPE_CHECKING:
    from connectors.sqlserver import SqlServer

__all__ = ["SqlServerSnapshot", "open_snapshot"]

log = logging.getLogger("redoline.snapshot")

_FETCH_ROWS: Final = 2000
_BATCH_BYTES: Final = 1 << 20
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


class SqlServerSnapshot:
    """One SNAPSHOT isolation transaction on the source, and its bracketed log point."""

    def __init__(self, db: SqlServer, workers: int) -> None:
        self.db = db
        if workers > 1:
            log.info(
                "SQL Server snapshot reads on one connection (--workers %d ignored: SQL Server "
                "cannot share a snapshot between connections)",
                workers,
            )
        self.workers = 1
        self._lock = threading.Lock()
        self.conn: Any = db.connect(autocommit=True)
        try:
            (name, cdc_on, snapshot_state, *_rest), *_ = db.run(self.conn, sql.DATABASE)
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
            db.run(self.conn, SET_SNAPSHOT)
            before = self._log_end()
            self.conn.autocommit = False  # the transaction begins with the next statement
            db.run(self.conn, BEGIN_SNAPSHOT, what="opening the snapshot")
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
        rows = self.db.run(self.conn, sql.LOG_END, what="sys.dm_db_log_stats")
        return lsn_from_text(str(rows[0][0]))

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            if not conn.autocommit:
                conn.rollback()  # the snapshot only read
            conn.close()
        except Exception:  # closing is best effort
            pass

    def __enter__(self) -> SqlServerSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def compare_positions(self, a: str, b: str) -> int:
        return compare(a, b)

    # ------------------------------------------------------------------ planning

    def estimate_rows(self, schema: TableSchema) -> int:
        with self._lock:
            rows = self.db.run(self.conn, ROW_ESTIMATE, (schema.table.schema, schema.table.name))
        return int(rows[0][0] or 0) if rows else 0

    def _int_key(self, schema: TableSchema) -> str | None:
        key = schema.identity
        if len(key) == 1 and schema.column(key[0]).kind == "int":
            return key[0]
        return None

    def plan_chunks(self, schema: TableSchema, chunk_rows: int) -> list[KeyRange]:
        key = self._int_key(schema)
        if key is None:
            return [KeyRange(0, None, None)]
        q = sql.quote(key)
        with self._lock:
            (lo, hi, count), *_ = self.db.run(
                self.conn,
                f"SELECT MIN({q}), MAX({q}), COUNT_BIG(*) FROM {self.db.qualified(schema.table)}",
            )
        if lo is None or int(count) <= chunk_rows:
            return [KeyRange(0, None, None)]
        pieces = math.ceil(int(count) / max(1, chunk_rows))
        step = max(1, math.ceil((int(hi) - int(lo) + 1) / pieces))
        bounds: list[Any] = [None, *((b,) for b in range(int(lo) + step, int(hi) + 1, step)), None]
        return [KeyRange(i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]

    # ------------------------------------------------------------------ reading

    def select_sql(
        self, schema: TableSchema, columns: Sequence[str], chunk: KeyRange, where: str | None
    ) -> tuple[str, list[Any]]:
        cols = ", ".join(sql.quote(c) for c in columns)
        conds, params = [], []
        key = self._int_key(schema)
        if key is not None:
            if chunk.lower is not None:
                conds.append(f"{sql.quote(key)} >= ?")
                params.append(int(chunk.lower[0]))
            if chunk.upper is not None:
                conds.append(f"{sql.quote(key)} < ?")
                params.append(int(chunk.upper[0]))
        if where:
            conds.append(f"({where})")
        statement = f"SELECT {cols} FROM {self.db.qualified(schema.table)}"
        if conds:
            statement += " WHERE " + " AND ".join(conds)
        return statement, params

    def _execute(self, statement: str, params: Sequence[Any], table: TableId) -> Any:
        try:
            cur = self.conn.cursor()
            cur.execute(statement, *params)
            return cur
        except Exception as exc:
            raise _driver_error(self.db, exc, table) from None

    def _fetch(self, cur: Any, table: TableId) -> list[Any]:
        try:
            return list(cur.fetchmany(_FETCH_ROWS))
        except Exception as exc:
            raise _driver_error(self.db, exc, table) from None

    def read_chunk(
        self,
        worker: int,
        schema: TableSchema,
        chunk: KeyRange,
        fmt: str,
        columns: tuple[str, ...],
        where: str | None = None,
    ) -> Iterator[tuple[bytes, int]]:
        if fmt not in FORMATS:
            raise ValueError(f"unknown snapshot format {fmt!r}")
        statement, params = self.select_sql(schema, columns, chunk, where)
        cols: list[Column] = [schema.column(c) for c in columns]
        convs = [converter(c) for c in cols]
        utc = _utc_text(fmt)
        write = row_writer(cols, fmt)
        parts: list[str] = []
        size = count = 0
        with self._lock:
            cur = self._execute(statement, params, schema.table)
            while True:
                rows = self._fetch(cur, schema.table)
                if not rows:
                    break
                for row in rows:
                    try:
                        values = [
                            None if v is None else utc(f(v))
                            for f, v in zip(convs, row, strict=True)
                        ]
                        line = write(values)
                    except (ValueError, TypeError, ArithmeticError) as exc:
                        raise SchemaError(f"{schema.table}: cannot write a value: {exc}") from None
                    parts.append(line)
                    size += len(line)
                    count += 1
                if size >= _BATCH_BYTES:
                    yield "".join(parts).encode(), count
                    parts, size, count = [], 0, 0
        if count:
            yield "".join(parts).encode(), count


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
