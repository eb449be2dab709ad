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
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from connectors.errors import ConfigError, SchemaError, ToolkitError
from connectors.model import TableId, TableSchema
from connectors.odbc.url import own_param
from connectors.rowtext import fetched
from connectors.snapshot import DriverSnapshot, KeyRange, SnapshotPoint, chunk_select

if TYPE_CHECKING:
    from connectors.odbc import ODBC

__all__ = ["OdbcSnapshot", "open_snapshot"]

log = logging.getLogger("redoline.snapshot")

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


class OdbcSnapshot(DriverSnapshot):
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

    def _key_span(self, schema: TableSchema, key: str) -> tuple[Any, Any, Any]:
        q = self.db.source_quote(key)
        table = self.db.source_table(schema.table)
        lo, hi, count = self._run(0, f"SELECT MIN({q}), MAX({q}), COUNT(*) FROM {table}").fetchone()
        return lo, hi, count

    # ------------------------------------------------------------------ reading

    def select_sql(
        self, schema: TableSchema, columns: Sequence[str], chunk: KeyRange, where: str | None
    ) -> tuple[str, list[Any]]:
        """The chunk's SELECT in the driver's quoting, and its parameters."""
        key = self._int_key(schema)
        statement, bounds = chunk_select(
            ", ".join(self.db.source_quote(c) for c in columns),
            self.db.source_table(schema.table),
            None if key is None else self.db.source_quote(key),
            chunk,
            where and source_predicate(where, self.db.predicate_dialect()),
            marker="?",
        )
        return statement, list(bounds.values())

    def _rows(
        self, worker: int, statement: str, params: Sequence[Any], table: TableId
    ) -> Iterator[Sequence[Any]]:
        cur = self._run(worker, statement, params)
        yield from fetched(cur, _FETCH_ROWS, lambda exc: self._fetch_error(exc, table))

    def _fetch_error(self, exc: Exception, table: TableId) -> Exception:
        import pyodbc

        if isinstance(exc, pyodbc.Error):
            from connectors.odbc import map_error

            return map_error(exc, self.db.endpoint, f"reading {table}")
        if isinstance(exc, ValueError):  # a value Python cannot hold (MySQL TIME > 24h)
            return SchemaError(
                f"{table}: the driver returned a value Python cannot hold: {exc}",
                hint="leave the column out with [tables.columns]",
            )
        return exc


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
