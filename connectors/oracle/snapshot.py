"""Oracle snapshot: flashback queries ``AS OF SCN`` on one SCN for every worker.

The snapshot point is taken once (:func:`connectors.oracle.current_position`): the current
SCN, restarting at the oldest open transaction's first change. Every chunk of every table is
read ``AS OF SCN`` that SCN, on as many sessions as there are workers, so all of them see the
same committed state, and the point is exact (start == end): catch-up drops every transaction
committed at or before it and keeps every later one whole. Needs FLASHBACK on the tables (or
FLASHBACK ANY TABLE) and enough undo to reach back to the SCN for the whole copy
(``UNDO_RETENTION``); ORA-01555 / ORA-08181 otherwise, which stop the run (redo the snapshot).

Rows are fetched as values and written in the target's bulk format in Python
(:func:`connectors.rowtext.row_writer`, the engine-neutral formatter). A keyless table
is read with each row's ROWID where the target has :data:`~connectors.model.ROW_KEY`: the
caller's ``row_ids`` turns it into the row's surrogate key and records it in the target's
rowid map, which the ROWIDs of later changes then find (apply/rowid.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from connectors.errors import SchemaError
from connectors.model import ROW_KEY, Column, TableId, TableSchema
from connectors.oracle.positions import OraclePosition
from connectors.oracle.session import Session, SessionError, map_error
from connectors.rowtext import RowWriter, row_writer
from connectors.snapshot import DriverSnapshot, KeyRange, RowIds, SnapshotPoint, chunk_select

if TYPE_CHECKING:
    from connectors.oracle import Oracle

__all__ = ["OracleSnapshot", "open_snapshot"]

#: the surrogate key column as the bulk formatter writes it
_KEY: Final = Column(ROW_KEY, "int", "", nullable=False, bits=64)
#: the ROWID as LogMiner's ROW_ID writes it (extended, 18 characters)
_ROWID: Final = "ROWIDTOCHAR(ROWID)"

log = logging.getLogger("redoline.snapshot")


class OracleSnapshot(DriverSnapshot):
    """``workers`` sessions reading ``AS OF SCN`` one SCN."""

    conns: list[Session]

    def __init__(self, db: Oracle, workers: int) -> None:
        from connectors.oracle import current_position

        self.db = db
        self._init_workers(max(1, workers))
        try:
            for _ in range(self.workers):
                self.conns.append(db.session())
            self.position: OraclePosition = current_position(self.conns[0])
        except SessionError as exc:
            self.close()
            raise map_error(exc, db.endpoint, "opening the snapshot") from None
        self.scn = self.position.scn
        text = str(self.position)
        self.point = SnapshotPoint(text, text, 0.0, f"flashback query AS OF SCN {self.scn}")

    def compare_positions(self, a: str, b: str) -> int:
        return self.db.compare_positions(a, b)

    def _query(self, worker: int, sql: str, params: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
        try:
            yield from self.conns[worker].stream(sql, params)
        except SessionError as exc:
            raise map_error(exc, self.db.endpoint, "reading the snapshot") from None

    def _from(self, table: TableId) -> str:
        return f"{self.db.qualified(table)} AS OF SCN :scn"

    def estimate_rows(self, schema: TableSchema) -> int:
        rows = list(
            self._query(
                0,
                "SELECT NUM_ROWS FROM ALL_TABLES WHERE OWNER = :owner AND TABLE_NAME = :name",
                {"owner": schema.table.schema, "name": schema.table.name},
            )
        )
        return int(rows[0][0] or 0) if rows else 0

    def _key_span(self, schema: TableSchema, key: str) -> tuple[Any, Any, Any]:
        q = self.db.quote(key)
        sql = f"SELECT MIN({q}), MAX({q}), COUNT(*) FROM {self._from(schema.table)}"
        ((lo, hi, count),) = list(self._query(0, sql, {"scn": self.scn}))
        return lo, hi, count

    def select_sql(
        self, schema: TableSchema, columns: Sequence[str], chunk: KeyRange, where: str | None
    ) -> tuple[str, dict[str, Any]]:
        # python-oracledb drops a TIMESTAMP WITH TIME ZONE's zone: read the instant in UTC
        cols = ", ".join(
            _ROWID
            if c == ROW_KEY
            else f"SYS_EXTRACT_UTC({self.db.quote(c)})"
            if schema.column(c).kind == "timestamptz"
            else self.db.quote(c)
            for c in columns
        )
        key = self._int_key(schema)
        statement, bounds = chunk_select(
            cols,
            self._from(schema.table),
            None if key is None else self.db.quote(key),
            chunk,
            where,
            marker=":{}",
        )
        return statement, {"scn": self.scn, **bounds}

    def _rows(
        self, worker: int, statement: str, params: dict[str, Any], table: TableId
    ) -> Iterator[Sequence[Any]]:
        return self._query(worker, statement, params)

    def _writer(
        self, schema: TableSchema, columns: tuple[str, ...], fmt: str, row_ids: RowIds | None
    ) -> RowWriter:
        """A :data:`ROW_KEY` in ``columns`` reads the ROWID, written as ``row_ids(rowid)``."""
        if (ROW_KEY in columns) != (row_ids is not None) or ROW_KEY in columns[1:]:
            raise ValueError(f"{ROW_KEY} must be the first column, and only with row_ids")
        for name in columns:
            if name == ROW_KEY:
                continue
            col = schema.column(name)
            if col.kind == "other":
                raise SchemaError(
                    f"{schema.table}: column {name!r} of type {col.source_type} cannot be "
                    "replicated",
                    hint="leave it out with [tables.columns]",
                )
        types = [_KEY if c == ROW_KEY else schema.column(c) for c in columns]
        write = row_writer(types, fmt)
        utc = [i for i, c in enumerate(types) if c.kind == "timestamptz"]
        if utc:
            write = _in_utc(write, utc)
        if row_ids is not None:
            write = _keyed(write, row_ids)
        return write


def _in_utc(write: RowWriter, at: list[int]) -> RowWriter:
    """``write`` with the naive UTC values of ``SYS_EXTRACT_UTC`` made aware."""

    def wrapped(row: Sequence[Any]) -> str:
        values = list(row)
        for i in at:
            v = values[i]
            if isinstance(v, dt.datetime) and v.tzinfo is None:
                values[i] = v.replace(tzinfo=dt.UTC)
        return write(values)

    return wrapped


def _keyed(write: RowWriter, row_ids: RowIds) -> RowWriter:
    """``write`` with the leading ROWID replaced by its surrogate key."""

    def wrapped(row: Sequence[Any]) -> str:
        return write((row_ids(str(row[0])), *row[1:]))

    return wrapped


def open_snapshot(
    db: Oracle,
    workers: int,
    *,
    tables: Sequence[TableId] = (),
    capture: bool = True,
    options: dict[str, Any] | None = None,
) -> OracleSnapshot:
    """Readers on ``db`` all ``AS OF`` the current SCN (module doc)."""
    return OracleSnapshot(db, workers)
