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
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from connectors.errors import SchemaError
from connectors.model import ROW_KEY, Column, TableId, TableSchema
from connectors.oracle.positions import OraclePosition
from connectors.oracle.session import Session, SessionError, map_error
from connectors.rowtext import row_writer
from connectors.snapshot import FORMATS, KeyRange, SnapshotPoint

if TYPE_CHECKING:
    from connectors.oracle import Oracle

__all__ = ["OracleSnapshot", "open_snapshot"]

_BATCH_BYTES: Final = 1 << 20
#: the surrogate key column as the bulk formatter writes it
_KEY: Final = Column(ROW_KEY, "int", "", nullable=False, bits=64)
#: the ROWID as LogMiner's ROW_ID writes it (extended, 18 characters)
_ROWID: Final = "ROWIDTOCHAR(ROWID)"

log = logging.getLogger("redoline.snapshot")


class OracleSnapshot:
    """``workers`` sessions reading ``AS OF SCN`` one SCN."""

    def __init__(self, db: Oracle, workers: int) -> None:
        from connectors.oracle import current_position

        self.db = db
        self.workers = max(1, workers)
        self.sessions: list[Session] = []
        self._locks = [threading.Lock() for _ in range(self.workers)]
        try:
            for _ in range(self.workers):
                self.sessions.append(db.session())
            self.position: OraclePosition = current_position(self.sessions[0])
        except SessionError as exc:
            self.close()
            raise map_error(exc, db.endpoint, "opening the snapshot") from None
        self.scn = self.position.scn
        text = str(self.position)
        self.point = SnapshotPoint(text, text, 0.0, f"flashback query AS OF SCN {self.scn}")

    def close(self) -> None:
        for s in self.sessions:
            s.close()
        self.sessions = []

    def __enter__(self) -> OracleSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def compare_positions(self, a: str, b: str) -> int:
        return self.db.compare_positions(a, b)

    def _query(self, worker: int, sql: str, params: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
        try:
            yield from self.sessions[worker].stream(sql, params)
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

    def _int_key(self, schema: TableSchema) -> str | None:
        key = schema.identity
        if len(key) == 1 and schema.column(key[0]).kind == "int":
            return key[0]
        return None

    def plan_chunks(self, schema: TableSchema, chunk_rows: int) -> list[KeyRange]:
        key = self._int_key(schema)
        if key is None:
            return [KeyRange(0, None, None)]
        q = self.db.quote(key)
        with self._locks[0]:
            ((lo, hi, count),) = list(
                self._query(
                    0,
                    f"SELECT MIN({q}), MAX({q}), COUNT(*) FROM {self._from(schema.table)}",
                    {"scn": self.scn},
                )
            )
        if lo is None or int(count) <= chunk_rows:
            return [KeyRange(0, None, None)]
        pieces = math.ceil(int(count) / max(1, chunk_rows))
        step = max(1, math.ceil((int(hi) - int(lo) + 1) / pieces))
        bounds: list[Any] = [None, *((b,) for b in range(int(lo) + step, int(hi) + 1, step)), None]
        return [KeyRange(i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]

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
        conds: list[str] = []
        params: dict[str, Any] = {"scn": self.scn}
        key = self._int_key(schema)
        if key is not None:
            q = self.db.quote(key)
            if chunk.lower is not None:
                conds.append(f"{q} >= :lo")
                params["lo"] = int(chunk.lower[0])
            if chunk.upper is not None:
                conds.append(f"{q} < :hi")
                params["hi"] = int(chunk.upper[0])
        if where:
            conds.append(f"({where})")
        sql = f"SELECT {cols} FROM {self._from(schema.table)}"
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
        row_ids: Callable[[str], int] | None = None,
    ) -> Iterator[tuple[bytes, int]]:
        """The chunk's rows (``SnapshotSession.read_chunk``); a :data:`ROW_KEY` in ``columns``
        reads the ROWID, written as ``row_ids(rowid)``."""
        if fmt not in FORMATS:
            raise ValueError(f"unknown snapshot format {fmt!r}")
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
        sql, params = self.select_sql(schema, columns, chunk, where)
        types = [_KEY if c == ROW_KEY else schema.column(c) for c in columns]
        write = row_writer(types, fmt)
        utc = [i for i, c in enumerate(types) if c.kind == "timestamptz"]
        if utc:
            write = _in_utc(write, utc)
        if row_ids is not None:
            write = _keyed(write, row_ids)
        with self._locks[worker]:
            parts: list[str] = []
            size = rows = 0
            for row in self._query(worker, sql, params):
                line = write(row)
                parts.append(line)
                size += len(line)
                rows += 1
                if size >= _BATCH_BYTES:
                    yield "".join(parts).encode(), rows
                    parts, size, rows = [], 0, 0
            if rows:
                yield "".join(parts).encode(), rows


def _in_utc(write: Callable[[Sequence[Any]], str], at: list[int]) -> Callable[[Sequence[Any]], str]:
    """``write`` with the naive UTC values of ``SYS_EXTRACT_UTC`` made aware."""

    def wrapped(row: Sequence[Any]) -> str:
        values = list(row)
        for i in at:
            v = values[i]
            if isinstance(v, dt.datetime) and v.tzinfo is None:
                values[i] = v.replace(tzinfo=dt.UTC)
        return write(values)

    return wrapped


def _keyed(
    write: Callable[[Sequence[Any]], str], row_ids: Callable[[str], int]
) -> Callable[[Sequence[Any]], str]:
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
