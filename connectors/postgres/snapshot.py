"""PostgreSQL consistent snapshot: N readers on one snapshot continuous with the slot.

Getting every worker onto one point that capture continues from exactly (DESIGN.md:
Snapshot and catch-up):

Which slot and publication: :func:`connectors.postgres.ownership.resolve_names` over the
``options`` ``slot``, ``publication``, ``trail_dir``, ``source_id``. The slot must be this
trail's (the trail's marker says so) or not exist yet; a slot this snapshot creates is
recorded in the marker with its consistent point, so capture can tell later whether the slot
is still the one the snapshot started from.

* **No slot yet (exact).** The publication is created (or extended) for the tables first, so
  pgoutput publishes them from the slot's first change on. Then, over a ``replication=database``
  connection, ``CREATE_REPLICATION_SLOT s LOGICAL pgoutput (SNAPSHOT 'export')`` (PostgreSQL
  15 syntax; ``EXPORT_SNAPSHOT`` before 15) creates the slot and exports the snapshot of its
  ``consistent_point``: every transaction committed before that LSN is visible in it, none
  after, and the slot decodes exactly the ones after. Each worker opens
  ``BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '<id>'`` while
  the replication connection still holds the export (it is closed once all have imported).
  ``start == end == consistent_point``: no collision window.
* **Slot exists (window).** The slot's ``confirmed_flush_lsn`` is read first (everything at or
  before it committed before the snapshot), then worker 0 takes a REPEATABLE READ snapshot and
  exports it to the others (``pg_export_snapshot``), then ``pg_current_wal_insert_lsn()`` is
  read (everything visible in the snapshot committed before it). Catch-up applies that window
  in collision mode.
* **No capture** (``capture=False``, a one-off copy): the same shared snapshot, no slot.

Reading is ``COPY (SELECT ...) TO STDOUT``: the server formats the rows in the target's bulk
format (``connectors/snapshot.py``: FORMATS) and the client only concatenates the bytes. The
reader sessions pin ``DateStyle``, ``TimeZone=UTC``, ``bytea_output`` and float digits, so the
text is the same whatever the server's defaults.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

import psycopg
import psycopg.pq
from psycopg import sql

from connectors.errors import ReplicationError, ToolkitError
from connectors.model import Column, TableId, TableSchema
from connectors.postgres.ownership import (
    SlotNames,
    check_owner,
    new_marker,
    resolve_names,
    write_marker,
)
from connectors.postgres.pgoutput import parse_lsn
from connectors.postgres.relations import catalog_attnums, record_snapshot_definition
from connectors.postgres.slots import (
    DEFAULT_SLOT_TIMEOUT,
    check_replica_identity,
    create_exported_slot,
    ensure_publication,
    server_identity,
    slot_info,
    temporary_slot_name,
)
from connectors.postgres.values import SESSION_OPTIONS
from connectors.snapshot import (
    FORMATS,
    KeyRange,
    SnapshotConnections,
    SnapshotPoint,
    chunks_between,
    even_chunks,
)

if TYPE_CHECKING:
    from connectors.postgres import PostgreSQL

__all__ = ["PgSnapshot", "column_expression", "open_snapshot"]

log = logging.getLogger("redoline.snapshot")

#: bytes handed to the loader at a time
_BATCH_BYTES: Final = 1 << 20
#: COPY text escapes MySQL LOAD DATA does not know (it would read ``\f`` as ``f``)
_MYSQL_UNKNOWN_ESCAPES: Final = re.compile(rb"\\\\|\\f|\\v")
_MYSQL_ESCAPE_MAP: Final = {b"\\\\": b"\\\\", b"\\f": b"\x0c", b"\\v": b"\x0b"}


def column_expression(col: Column, fmt: str, quote: Any) -> str:
    """The PostgreSQL select-list expression for ``col`` so COPY writes it as ``fmt`` wants."""
    ref = quote(col.name)
    kind = col.kind
    if fmt == "pgcopy":
        return ref  # PostgreSQL's own COPY text is what COPY FROM reads
    if kind == "bytes":
        return f"encode({ref}, 'hex')"  # the loader applies UNHEX/unhex
    if kind == "bool":
        return f"{ref}::int" if fmt == "tsv" else f"{ref}::text"
    if kind == "timestamptz" and fmt == "tsv":
        return f"({ref} AT TIME ZONE 'UTC')"  # MySQL keeps UTC in a DATETIME, no offset
    if kind == "array":
        return f"array_to_json({ref})"  # JSON on MySQL, a list literal DuckDB can cast
    if kind == "interval":
        # the text apply writes for an interval (connectors.model.Interval): DuckDB cannot
        # read '-3 days +04:05:06', and MySQL's VARCHAR must hold what streaming writes
        months = f"(extract(year from {ref}) * 12 + extract(month from {ref}))::bigint"
        micros = (
            f"(extract(hour from {ref}) * 3600000000 + extract(minute from {ref}) * 60000000"
            f" + extract(microseconds from {ref}))::bigint"
        )
        return (
            f"{months} || ' months ' || extract(day from {ref})::bigint || ' days ' || "
            f"{micros} || ' microseconds'"
        )
    return ref


class PgSnapshot(SnapshotConnections):
    """``workers`` connections in REPEATABLE READ transactions on one exported snapshot."""

    def __init__(
        self,
        db: PostgreSQL,
        workers: int,
        *,
        tables: Sequence[TableId] = (),
        capture: bool = True,
        names: SlotNames | None = None,
        trail_position: str | None = None,
        timeout: float = DEFAULT_SLOT_TIMEOUT,
    ) -> None:
        self.db = db
        self._init_workers(max(1, workers))
        self._trail_position = parse_lsn(trail_position) if trail_position else None
        #: where the definitions of the tables loaded afresh are recorded for capture
        self._trail_dir = names.trail_dir if capture and names is not None else None
        try:
            if capture and names is None:
                raise ReplicationError("a snapshot followed by capture needs its slot's name")
            self.point = self._open(tables, names if capture else None, timeout)
        except psycopg.Error as exc:
            self.close()
            from connectors.postgres import map_error

            raise map_error(exc, db.endpoint) from None
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening

    def _connect(self) -> psycopg.Connection[Any]:
        return self.db.connect(options=SESSION_OPTIONS)

    def _open(
        self, tables: Sequence[TableId], names: SlotNames | None, timeout: float
    ) -> SnapshotPoint:
        self.conns = [self._connect() for _ in range(self.workers)]
        control = self.conns[0]
        info = None
        if names is not None:
            check_replica_identity(control, tables)
            database, system = server_identity(control)
            info = slot_info(control, names.slot)
            # settled before anything is created or altered: never touch another pipeline's
            # slot or publication
            check_owner(
                names,
                info is not None,
                database=database,
                system=system,
                where=self.db.endpoint.display,
                confirmed_flush=parse_lsn(info.confirmed_flush)
                if info is not None and info.confirmed_flush
                else None,
                trail_position=self._trail_position,
            )
            if info is not None and (info.plugin != "pgoutput" or info.database != database):
                raise ReplicationError(
                    f"replication slot {names.slot!r} belongs to database {info.database!r} "
                    f"with plugin {info.plugin!r}, not {database!r}/pgoutput",
                    hint="give this pipeline its own slot name ([source] slot / --slot)",
                )
            # before the slot: pgoutput publishes a table only from its publication onwards
            ensure_publication(control, names.publication, tables)
            if info is None:
                return self._open_exported(names, database, system, timeout)
            return self._open_temporary(timeout)
        # a one-off copy (no capture follows): no slot, one shared REPEATABLE READ snapshot
        control.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = control.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        for conn in self.conns[1:]:
            self._import(conn, str(row[0]))
        ((end,),) = self.db.query("SELECT pg_current_wal_insert_lsn()::text")
        end = str(end)
        log.info("snapshot at %s (repeatable read, no slot, %d workers)", end, self.workers)
        return SnapshotPoint(end, end, 0.0, "repeatable read (no slot)")

    def _import(self, conn: psycopg.Connection[Any], snapshot: str) -> None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))

    def _open_exported(
        self, names: SlotNames, database: str, system: str, timeout: float
    ) -> SnapshotPoint:
        """Create the slot with an exported snapshot, record it in the trail's marker, and
        import the snapshot into every worker."""
        slot = names.slot
        repl, point, snapshot = create_exported_slot(self.db, slot, timeout=timeout)
        try:
            if names.trail_dir is not None:
                # at once: the slot is this trail's from its first instant, and its creation
                # point is what capture compares the slot with before the trail has data
                write_marker(names.trail_dir, new_marker(names, database, system, point))
            for conn in self.conns:
                self._import(conn, snapshot)
        finally:
            # the export lives until this connection's next command; every worker has it now
            repl.close()
        log.info("created slot %s at %s with an exported snapshot", slot, point)
        return SnapshotPoint(point, point, 0.0, "exported snapshot of the new slot")

    def _open_temporary(self, timeout: float) -> SnapshotPoint:
        """The pipeline's slot exists: take the snapshot from a temporary slot's export.

        Its ``consistent_point`` is exact (every transaction whose commit ends at or before it
        is in the snapshot, none after), and the pipeline's slot, which is behind it, streams
        every transaction after it, so catch-up drops what is at or before the point and
        applies the rest: no window where a change's presence in the snapshot is unknown.
        The temporary slot goes away with its connection, once every worker has the
        snapshot."""
        repl, point, snapshot = create_exported_slot(
            self.db, temporary_slot_name(), timeout=timeout, temporary=True
        )
        try:
            for conn in self.conns:
                self._import(conn, snapshot)
        finally:
            repl.close()
        log.info("snapshot at %s (exported by a temporary slot, %d workers)", point, self.workers)
        return SnapshotPoint(point, point, 0.0, "exported snapshot of a temporary slot")

    def compare_positions(self, a: str, b: str) -> int:
        x, y = parse_lsn(a), parse_lsn(b)
        return (x > y) - (x < y)

    # ------------------------------------------------------------------ planning

    def estimate_rows(self, schema: TableSchema) -> int:
        rows = self.db.query(
            "SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (schema.table.schema, schema.table.name),
        )
        return max(0, int(rows[0][0] or 0)) if rows else 0

    def _table(self, schema: TableSchema) -> str:
        return f"{self.db.quote(schema.table.schema)}.{self.db.quote(schema.table.name)}"

    def plan_chunks(self, schema: TableSchema, chunk_rows: int) -> list[KeyRange]:
        """The chunks of a table loaded afresh; the definition it is loaded with is recorded
        for capture (:func:`record_snapshot_definition`)."""
        if self._trail_dir is not None:
            with self._locks[0]:
                live, _ = catalog_attnums(self.conns[0], schema.table)
            record_snapshot_definition(self._trail_dir, schema, live)
        key = schema.identity
        if not key:
            return [KeyRange(0, None, None)]
        table = self._table(schema)
        int_key = self._int_key(schema)
        conn = self.conns[0]
        bounds: list[Any]
        with self._locks[0]:
            if int_key is not None:
                q = self.db.quote(int_key)
                row = conn.execute(f"SELECT min({q}), max({q}), count(*) FROM {table}").fetchone()
                assert row is not None
                lo, hi, count = row
                if lo is None:
                    return [KeyRange(0, None, None)]
                return even_chunks(int(lo), int(hi), int(count), chunk_rows)
            else:
                cols = ", ".join(self.db.quote(c) for c in key)
                texts = ", ".join(f"{self.db.quote(c)}::text" for c in key)
                # every chunk_rows-th key in key order: one index scan inside the snapshot
                rows = conn.execute(
                    f"SELECT {texts} FROM (SELECT {cols}, row_number() OVER (ORDER BY {cols}) "
                    f"AS redoline_rn FROM {table}) x WHERE redoline_rn %% %s = 1 "
                    "AND redoline_rn > 1 ORDER BY redoline_rn",
                    (chunk_rows,),
                ).fetchall()
                bounds = [tuple(r) for r in rows]
        return chunks_between(bounds)

    # ------------------------------------------------------------------ reading

    def _where(self, key: tuple[str, ...], chunk: KeyRange) -> sql.Composable:
        # COPY takes no bind parameters: the bounds go in as quoted literals (untyped, so
        # PostgreSQL reads them as the key column's type)
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in key)
        conds: list[sql.Composable] = []
        for op, bound in ((">=", chunk.lower), ("<", chunk.upper)):
            if bound is None:
                continue
            values = sql.SQL(", ").join(
                sql.Literal(v) if isinstance(v, int) else sql.SQL(_text_literal(str(v)))
                for v in bound
            )
            conds.append(sql.SQL("({}) {} ({})").format(cols, sql.SQL(op), values))
        if not conds:
            return sql.SQL("")
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conds)

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
        select_list = ", ".join(
            column_expression(schema.column(c), fmt, self.db.quote) for c in columns
        )
        conn = self.conns[worker]
        bounds = self._where(schema.identity, chunk).as_string(conn)
        if where:
            bounds = f"{bounds} AND ({where})" if bounds else f" WHERE ({where})"
        options = " WITH (FORMAT csv, FORCE_QUOTE *)" if fmt == "csv" else ""
        statement = f"COPY (SELECT {select_list} FROM {self._table(schema)}{bounds}) TO STDOUT"
        try:
            with self._locks[worker], conn.cursor() as cur, cur.copy(statement + options) as copy:
                parts: list[bytes] = []
                size = rows = 0
                for data in copy:
                    # one CopyData message per row in text and CSV COPY
                    parts.append(bytes(data))
                    size += len(data)
                    rows += 1
                    if size >= _BATCH_BYTES:
                        yield self._batch(parts, fmt), rows
                        parts, size, rows = [], 0, 0
                if rows:
                    yield self._batch(parts, fmt), rows
        except psycopg.Error as exc:
            from connectors.postgres import map_error

            raise map_error(exc, self.db.endpoint) from None

    @staticmethod
    def _batch(parts: list[bytes], fmt: str) -> bytes:
        data = b"".join(parts)
        if fmt == "tsv" and (b"\\f" in data or b"\\v" in data):
            data = _MYSQL_UNKNOWN_ESCAPES.sub(lambda m: _MYSQL_ESCAPE_MAP[m.group(0)], data)
        return data


def _text_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def open_snapshot(
    db: PostgreSQL,
    workers: int,
    *,
    tables: Sequence[TableId] = (),
    capture: bool = True,
    options: dict[str, Any] | None = None,
) -> PgSnapshot:
    """Open ``workers`` readers on one snapshot; with ``capture`` it is continuous with the
    pipeline's slot (created here with an exported snapshot when it does not exist).

    ``options``: ``slot``, ``publication``, ``trail_dir``, ``source_id`` (the names, see
    :mod:`connectors.postgres.ownership`), ``trail_position`` (the trail's last transaction,
    so a replaced slot is refused before the load), ``slot_timeout``."""
    opts = dict(options or {})
    names = None
    if capture:
        names = resolve_names(
            slot=opts.get("slot"),
            publication=opts.get("publication"),
            trail_dir=opts.get("trail_dir"),
            source_id=opts.get("source_id"),
        )
    try:
        return PgSnapshot(
            db,
            workers,
            tables=tables,
            capture=capture,
            names=names,
            trail_position=opts.get("trail_position"),
            timeout=float(opts.get("slot_timeout", DEFAULT_SLOT_TIMEOUT)),
        )
    except ToolkitError:
        raise
