"""Consistent snapshot reading: the engine-neutral contract between source and bulk loader.

A source connector's ``snapshot`` module (``connectors/<engine>/snapshot.py``) opens a
:class:`SnapshotSession`: ``workers`` connections that all see the *same* consistent state of
the source, and the :class:`SnapshotPoint` that tells catch-up which log changes that state
already contains. Rows are never turned into Python objects on the hot path: the source's own
SQL formats each row as text in the :data:`FORMATS` the target bulk path reads, and the reader
hands over whole batches as bytes (DESIGN.md: Snapshot and catch-up). Sources read through a
Python driver (ODBC, Oracle, SQL Server) cannot do that: their sessions share
:class:`DriverSnapshot`, which writes the fetched rows as text on this host
(:mod:`connectors.rowtext`).

Formats (``fmt`` arguments):

``pgcopy``
    PostgreSQL ``COPY ... FROM STDIN`` text format: tab-separated, ``\\N`` for NULL,
    backslash escapes, bytea as ``\\\\x<hex>``, aware timestamps with an explicit ``+00``.
``tsv``
    The same escaping, read by MySQL ``LOAD DATA`` (its default format); binary columns as
    plain hex (the loader applies ``UNHEX``), timestamps in UTC without an offset.
``csv``
    RFC 4180 CSV (DuckDB ``read_csv``): every non-NULL value quoted, NULL an empty unquoted
    field, binary columns as plain hex (the loader applies ``unhex``), UTC timestamps with
    ``+00``.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, Self

from connectors.rowtext import RowWriter, row_writer, text_batches

if TYPE_CHECKING:
    from connectors.base import Database
    from connectors.model import TableId, TableSchema

__all__ = [
    "FORMATS",
    "DriverSnapshot",
    "KeyRange",
    "RowIds",
    "SnapshotConnections",
    "SnapshotPoint",
    "SnapshotSession",
    "chunk_select",
    "chunks_between",
    "decode_key",
    "encode_key",
    "even_chunks",
    "open_snapshot",
]

FORMATS: Final = ("pgcopy", "tsv", "csv")

#: a keyless table's source row id -> the surrogate key written for it (``read_chunk``)
RowIds = Callable[[str], int]


@dataclass(frozen=True)
class SnapshotPoint:
    """Where on the source's log a snapshot stands.

    Every transaction committed at or before ``start`` is in the snapshot; none committed
    after ``end`` is. Between the two it cannot be decided exactly, so catch-up applies that
    window in collision mode. ``start == end`` is an exact point (no window).
    """

    start: str
    end: str
    #: how long a global lock was held to get every worker on this point (0 when none)
    lock_seconds: float
    #: how the point was obtained, for the report ("consistent snapshot", "FTWRL", ...)
    method: str


@dataclass(frozen=True)
class KeyRange:
    """One chunk of a table: key >= ``lower`` and key < ``upper`` (None: unbounded)."""

    number: int
    lower: tuple[Any, ...] | None
    upper: tuple[Any, ...] | None


def encode_key(key: tuple[Any, ...] | None) -> str | None:
    """A chunk bound as text for the progress table (values as their text form)."""
    if key is None:
        return None
    return json.dumps([v if isinstance(v, int | float) or v is None else str(v) for v in key])


def decode_key(text: str | None) -> tuple[Any, ...] | None:
    return None if text is None else tuple(json.loads(text))


class SnapshotSession(Protocol):
    """``workers`` source connections on one consistent snapshot (context manager)."""

    point: SnapshotPoint
    workers: int

    def estimate_rows(self, schema: TableSchema) -> int:
        """A cheap estimate of the table's row count (statistics), for progress and ETA."""
        ...

    def plan_chunks(self, schema: TableSchema, chunk_rows: int) -> list[KeyRange]:
        """Key ranges of about ``chunk_rows`` rows that together cover every possible key.

        A table without a usable key is one chunk (it cannot resume inside itself).
        """
        ...

    def read_chunk(
        self,
        worker: int,
        schema: TableSchema,
        chunk: KeyRange,
        fmt: str,
        columns: tuple[str, ...],
        where: str | None = None,
        row_ids: RowIds | None = None,
    ) -> Iterator[tuple[bytes, int]]:
        """The rows of ``chunk`` seen by worker ``worker``'s snapshot, in ``fmt``, as
        (bytes, row count) batches; each batch ends with a newline. ``where`` (SQL of this
        engine, ``[tables.where]``) keeps only the rows it is true for.

        ``row_ids`` (given only by a source with ``has_row_ids``, for a keyless table):
        ``columns`` starts with :data:`~connectors.model.ROW_KEY`, which the engine reads as
        the row's source row id (as its log reader writes ``Change.row_id``) and writes as
        ``row_ids(row id)``, the row's surrogate key (apply/rowid.py)."""
        ...

    def compare_positions(self, a: str, b: str) -> int:
        """Order two source positions (<0, 0, >0), as ``Database.compare_positions``."""
        ...

    def close(self) -> None:
        """End every snapshot transaction and close the connections."""
        ...


class SnapshotConnections:
    """What every engine's snapshot session shares: its ``workers`` connections, each with a
    lock (a worker reads on its own; planning borrows worker 0), closed best effort, and the
    context manager. An engine subclasses it and opens ``conns`` in its ``__init__``."""

    workers: int
    conns: list[Any]

    def _init_workers(self, workers: int) -> None:
        self.workers = workers
        self.conns = []
        self._locks = [threading.Lock() for _ in range(workers)]

    def _end(self, conn: Any) -> None:
        """End one connection's snapshot transaction (closing it ends it)."""
        conn.close()

    def close(self) -> None:
        """End every snapshot transaction and close the connections."""
        for conn in self.conns:
            try:
                self._end(conn)
            except Exception:  # closing is best effort
                pass
        self.conns = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _int_key(schema: TableSchema) -> str | None:
        """The table's key column when the key is one integer column (chunked by value)."""
        key = schema.identity
        if len(key) == 1 and schema.column(key[0]).kind == "int":
            return key[0]
        return None


class DriverSnapshot(SnapshotConnections):
    """A session whose rows come through a Python driver and are written as bulk text here
    (:func:`connectors.rowtext.row_writer`). Tables with one integer key column are cut at
    even values; any other table is one chunk.

    The engine gives the span of a key (:meth:`_key_span`), a chunk's ``SELECT`` and its
    parameters (:meth:`select_sql`, with :func:`chunk_select`), the rows of a statement
    (:meth:`_rows`, driver errors mapped), and, where its driver's values need it, its own
    row writer (:meth:`_writer`).
    """

    def _key_span(self, schema: TableSchema, key: str) -> tuple[Any, Any, Any]:
        """``MIN``, ``MAX`` and ``COUNT(*)`` of the integer key column ``key`` (on worker 0,
        its lock held)."""
        raise NotImplementedError

    def select_sql(
        self, schema: TableSchema, columns: Sequence[str], chunk: KeyRange, where: str | None
    ) -> tuple[str, Any]:
        """The chunk's SELECT of ``columns`` in the engine's SQL, and its parameters."""
        raise NotImplementedError

    def _rows(
        self, worker: int, statement: str, params: Any, table: TableId
    ) -> Iterator[Sequence[Any]]:
        """The rows of ``statement`` on worker ``worker``'s connection, as the driver fetches
        them; the driver's errors mapped to redoline's."""
        raise NotImplementedError

    def _writer(
        self, schema: TableSchema, columns: tuple[str, ...], fmt: str, row_ids: RowIds | None
    ) -> RowWriter:
        """One fetched row as one line of ``fmt``."""
        if row_ids is not None:
            raise ValueError("row_ids given to a source without row ids")
        return row_writer([schema.column(c) for c in columns], fmt)

    def plan_chunks(self, schema: TableSchema, chunk_rows: int) -> list[KeyRange]:
        key = self._int_key(schema)
        if key is None:
            return [KeyRange(0, None, None)]
        with self._locks[0]:
            lo, hi, count = self._key_span(schema, key)
        if lo is None:
            return [KeyRange(0, None, None)]
        return even_chunks(int(lo), int(hi), int(count), chunk_rows)

    def read_chunk(
        self,
        worker: int,
        schema: TableSchema,
        chunk: KeyRange,
        fmt: str,
        columns: tuple[str, ...],
        where: str | None = None,
        row_ids: RowIds | None = None,
    ) -> Iterator[tuple[bytes, int]]:
        """``SnapshotSession.read_chunk``."""
        if fmt not in FORMATS:
            raise ValueError(f"unknown snapshot format {fmt!r}")
        write = self._writer(schema, columns, fmt, row_ids)
        statement, params = self.select_sql(schema, columns, chunk, where)
        with self._locks[worker]:
            rows = self._rows(worker, statement, params, schema.table)
            yield from text_batches(rows, write, schema.table)


def chunk_select(
    select_list: str,
    source: str,
    key: str | None,
    chunk: KeyRange,
    where: str | None,
    *,
    marker: str,
) -> tuple[str, dict[str, int]]:
    """The SELECT of one chunk: ``select_list`` from ``source`` where the integer key column
    ``key`` (quoted; None: the table is one chunk) is in ``chunk`` and ``where`` is true.

    The bounds are parameters named ``lo`` and ``hi``, written as the driver's ``marker`` with
    ``{}`` standing for the name (``"?"``, ``":{}"``); they are returned by name, in the order
    they stand in the statement.
    """
    conds: list[str] = []
    params: dict[str, int] = {}
    if key is not None:
        for name, op, bound in (("lo", ">=", chunk.lower), ("hi", "<", chunk.upper)):
            if bound is not None:
                conds.append(f"{key} {op} {marker.format(name)}")
                params[name] = int(bound[0])
    if where:
        conds.append(f"({where})")
    statement = f"SELECT {select_list} FROM {source}"
    if conds:
        statement += " WHERE " + " AND ".join(conds)
    return statement, params


def chunks_between(bounds: Sequence[tuple[Any, ...]]) -> list[KeyRange]:
    """The chunks that ``bounds`` (ascending keys) cut the whole key space into."""
    edges: list[tuple[Any, ...] | None] = [None, *bounds, None]
    return [KeyRange(i, edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def even_chunks(lo: int, hi: int, count: int, chunk_rows: int) -> list[KeyRange]:
    """Chunks of about ``chunk_rows`` rows over an integer key from ``lo`` to ``hi`` holding
    ``count`` rows, cut at evenly spaced values."""
    if count <= chunk_rows:
        return [KeyRange(0, None, None)]
    pieces = math.ceil(count / max(1, chunk_rows))
    step = max(1, math.ceil((hi - lo + 1) / pieces))
    return chunks_between([(b,) for b in range(lo + step, hi + 1, step)])


def open_snapshot(
    db: Database,
    workers: int,
    *,
    tables: Sequence[TableId] = (),
    capture: bool = True,
    options: dict[str, Any] | None = None,
) -> SnapshotSession:
    """Open a consistent snapshot on ``db`` for ``workers`` parallel readers.

    ``tables`` are the tables about to be read and ``capture`` says whether catch-up will
    follow from the source's log: a source whose position lives on the server (PostgreSQL's
    slot) then prepares it so the snapshot is continuous with it, and creates nothing for a
    one-off copy. ``options`` are the engine's own (PostgreSQL: the slot's names and the
    trail directory it belongs to); an engine ignores the ones it does not know.
    """
    session: SnapshotSession = db.descriptor.role("snapshot").open_snapshot(
        db, workers, tables=tables, capture=capture, options=options
    )
    return session
