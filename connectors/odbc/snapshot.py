"""Snapshot through ODBC: rows fetched by the driver, formatted here into the target's bulk text.

ODBC has no way to share one snapshot between connections, so how consistent the read is
comes from the URL's ``consistency`` parameter (docs/source-odbc.md):

``serializable`` (default) / ``repeatable-read``
    One connection reads every chunk of every table inside one transaction at that isolation
    level (``SQL_ATTR_TXN_ISOLATION``). SERIALIZABLE is consistent on every engine (on
    lock-based ones it holds shared locks until the end); REPEATABLE READ is a snapshot on
    engines that implement it with versions (PostgreSQL, InnoDB). The driver must list the
    level in ``SQL_TXN_ISOLATION_OPTION``, else the run stops before reading. One reader:
    ``--workers`` is ignored, and the run says so.
``none``
    ``--workers`` connections read chunks in parallel, each in its own short read. Rows
    written during the copy may be seen in some chunks and not in others: quiesce the source
    or accept drift (and verify afterwards). Every run in this mode says so on stderr.

Positions are UTC times (``2026-01-02T03:04:05.678901Z``): there is no log to continue from.
Chunks: a single integer key is cut into ranges (``MIN``/``MAX``/``COUNT``); any other table is
one chunk. Values become text in Python (:mod:`connectors.rowtext`), one function per column.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from connectors.errors import ConfigError, SchemaError, ToolkitError
from connectors.model import TableId, TableSchema
from connectors.odbc.url import own_param
from connectors.rowtext import row_writer
from connectors.snapshot import (
    FORMATS,
    KeyRange,
    SnapshotConnections,
    SnapshotPoint,
    even_chunks,
)

if TYPE_CHECKING:
    from connectors.odbc import ODBC

__all__ = ["OdbcSnapshot", "open_snapshot"]

log = logging.getLogger("redoline.snapshot")

#: bytes handed to the loader at a time
_BATCH_BYTES: Final = 1 << 20
#: rows fetched from the driver at a time
_FETCH_ROWS: Final = 2000
#: isolation levels (SQL_TXN_* values, which are also the SQL_TXN_ISOLATION_OPTION bits)
_LEVELS: Final = {"serializable": 8, "repeatable-read": 4}
_SQL_ATTR_TXN_ISOLATION: Final = 108

DRIFT_WARNING: Final = (
    "the ODBC snapshot is NOT consistent (consistency=none): rows written during the copy "
    "may be seen in some chunks and not in others; quiesce the source or accept drift, and "
    "run `redoline verify` afterwards"
)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class OdbcSnapshot(SnapshotConnections):
    """Reader connections on the source: one transaction, or ``workers`` plain reads."""

    def __init__(self, db: ODBC, workers: int, consistency: str) -> None:
        import pyodbc

        self.db = db
        self.consistency = consistency
        consistent = consistency != "none"
        if consistent and workers > 1:
            log.info(
                "ODBC snapshot with consistency=%s reads on one connection (--workers %d "
                "ignored: ODBC cannot share a snapshot between connections)",
                consistency,
                workers,
            )
        self._init_workers(1 if consistent else max(1, workers))
        start = _now()
        try:
            if consistent:
                level = _LEVELS[consistency]
                info = db.info()
                if not info.isolation_options & level:
                    raise ConfigError(
                        f"{db.endpoint.display}: the ODBC driver {info.driver} does not offer "
                        f"the {consistency} isolation level",
                        hint="quiesce the source and use ?consistency=none (a copy that may "
                        "drift), or another isolation level the driver offers",
                    )
                conn = db.connect(autocommit=True)
                self.conns.append(conn)
                conn.set_attr(_SQL_ATTR_TXN_ISOLATION, level)
                conn.autocommit = False  # the transaction begins with the first read
                method = f"one {consistency.replace('-', ' ')} transaction over ODBC"
            else:
                self.conns = [db.connect(autocommit=True) for _ in range(self.workers)]
                method = "NOT consistent: parallel reads (quiesce the source or accept drift)"
                log.warning(DRIFT_WARNING)
        except pyodbc.Error as exc:
            self.close()
            from connectors.odbc import map_error

            raise map_error(exc, db.endpoint, "opening the snapshot") from None
        except BaseException:
            self.close()
            raise
        self.point = SnapshotPoint(start, start, 0.0, method)

    def _end(self, conn: Any) -> None:
        if not conn.autocommit:
            conn.rollback()  # the snapshot only read
        conn.close()

    def compare_positions(self, a: str, b: str) -> int:
        return (a > b) - (a < b)

    def _run(self, worker: int, sql: str, params: Sequence[Any] = ()) -> Any:
        import pyodbc

        try:
            return self.conns[worker].cursor().execute(sql, *params)
        except pyodbc.Error as exc:
            from connectors.odbc import map_error

            raise map_error(exc, self.db.endpoint) from None

    # ------------------------------------------------------------------ planning

    def estimate_rows(self, schema: TableSchema) -> int:
        return 0  # ODBC has no portable statistics; progress shows rows without a total

    def plan_chunks(self, schema: TableSchema, chunk_rows: int) -> list[KeyRange]:
        key = self._int_key(schema)
        if key is None:
            return [KeyRange(0, None, None)]
        q = self.db.source_quote(key)
        with self._locks[0]:
            row = self._run(
                0, f"SELECT MIN({q}), MAX({q}), COUNT(*) FROM {self.db.source_table(schema.table)}"
            ).fetchone()
        lo, hi, count = row
        if lo is None:
            return [KeyRange(0, None, None)]
        return even_chunks(int(lo), int(hi), int(count), chunk_rows)

    # ------------------------------------------------------------------ reading

    def select_sql(
        self, schema: TableSchema, columns: Sequence[str], chunk: KeyRange, where: str | None
    ) -> tuple[str, list[Any]]:
        """The chunk's SELECT in the driver's quoting, and its parameters."""
        cols = ", ".join(self.db.source_quote(c) for c in columns)
        conds, params = [], []
        key = self._int_key(schema)
        if key is not None:
            q = self.db.source_quote(key)
            if chunk.lower is not None:
                conds.append(f"{q} >= ?")
                params.append(int(chunk.lower[0]))
            if chunk.upper is not None:
                conds.append(f"{q} < ?")
                params.append(int(chunk.upper[0]))
        if where:
            conds.append(f"({source_predicate(where, self.db.predicate_dialect())})")
        sql = f"SELECT {cols} FROM {self.db.source_table(schema.table)}"
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        return sql, params

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
        import pyodbc

        sql, params = self.select_sql(schema, columns, chunk, where)
        write = row_writer([schema.column(c) for c in columns], fmt)
        with self._locks[worker]:
            cur = self._run(worker, sql, params)
            parts: list[str] = []
            size = rows = 0
            while True:
                try:
                    fetched = cur.fetchmany(_FETCH_ROWS)
                except pyodbc.Error as exc:
                    from connectors.odbc import map_error

                    raise map_error(exc, self.db.endpoint, f"reading {schema.table}") from None
                except ValueError as exc:  # a value Python cannot hold (MySQL TIME > 24h)
                    raise SchemaError(
                        f"{schema.table}: the driver returned a value Python cannot hold: {exc}",
                        hint="leave the column out with [tables.columns]",
                    ) from None
                if not fetched:
                    break
                for row in fetched:
                    try:
                        line = write(row)
                    except (ValueError, TypeError, decimal.InvalidOperation) as exc:
                        raise SchemaError(f"{schema.table}: cannot write a value: {exc}") from None
                    parts.append(line)
                    size += len(line)
                    rows += 1
                if size >= _BATCH_BYTES:
                    yield "".join(parts).encode(), rows
                    parts, size, rows = [], 0, 0
            if rows:
                yield "".join(parts).encode(), rows


def source_predicate(where: str, dialect: str) -> str:
    """A ``[tables.where]`` predicate (generic SQL) in the driver's identifier quoting."""
    if not dialect:
        return where
    import sqlglot

    return str(sqlglot.parse_one(where, read="").sql(dialect=dialect, identify=True))


def open_snapshot(
    db: ODBC,
    workers: int,
    *,
    tables: Sequence[TableId] = (),
    capture: bool = True,
    options: dict[str, Any] | None = None,
) -> OdbcSnapshot:
    """Readers on ``db`` as its URL's ``consistency`` asks (module doc)."""
    if capture:
        db.end_position()  # raises: an ODBC source has no log to follow
    try:
        return OdbcSnapshot(db, workers, own_param(db.endpoint, "consistency", "serializable"))
    except ToolkitError:
        raise
