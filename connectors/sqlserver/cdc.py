"""The log reader: SQL Server's CDC change tables, read by LSN ranges, as log events.

SQL Server's capture job (an Agent job) reads the transaction log and writes each committed
change of a tracked table into its capture instance's change table, with ``__$start_lsn``
(the commit LSN, shared by every change of the transaction), ``__$seqval`` (the change's
place in the log) and ``__$operation`` (1 delete, 2 insert, 3 and 4 the before and after
rows of an update). This reader:

* asks ``sys.fn_cdc_get_max_lsn()`` how far the capture job has come and reads the window
  from just after its position up to there, through every selected table's
  ``cdc.fn_cdc_get_all_changes_<instance>(from, to, N'all update old')``, a page of
  ``page_rows`` rows at a time per instance (cursor: commit LSN, seqval, operation);
* merges the instances' pages in (commit LSN, seqval, operation) order, so a transaction
  that touched several tables comes out whole and every transaction in commit order: the
  rows sharing a commit LSN are one transaction (``Begin`` .. ``Commit``), however the pages
  cut them;
* pairs each update's rows 3 and 4 into one change with both images (a large-object column
  an update did not change is NULL in row 3, its ``__$update_mask`` bit clear: its before
  value is its after value);
* takes each commit's transaction id and time from ``cdc.lsn_time_mapping`` (server local
  time, turned into UTC with the server's offset);
* announces a table's definition (the capture instance's columns) before its first row,
  and again when rows start coming from a newer capture instance (schema changes: a table
  has at most two, the newer one takes over from its start LSN);
* stops with a :class:`ReplicationError` when the cleanup job has moved an instance's
  minimum LSN past our position: changes are gone, the table needs a new snapshot.

Positions are (commit LSN, seqval of the transaction's last change)
(:mod:`connectors.sqlserver.positions`); a restart reads strictly after one.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from connectors.base import TableFilter
from connectors.errors import ConnectError, PrerequisiteError, ReplicationError, ToolkitError
from connectors.log import Begin, Commit, Heartbeat, LogEvent, RowEvent
from connectors.model import Change, Op, Row, TableId, TableSchema
from connectors.sqlserver import sql
from connectors.sqlserver.catalog import (
    CaptureInstance,
    capture_instances,
    instance_schema,
    same_shape,
)
from connectors.sqlserver.errors import OUT_OF_RANGE, map_error, native_code
from connectors.sqlserver.positions import Lsn, Position, lsn_from_text
from connectors.sqlserver.values import LOB_TYPES, row_converter

if TYPE_CHECKING:
    from connectors.sqlserver import SqlServer

__all__ = ["CdcReader", "end_position"]

log = logging.getLogger("redoline.capture")

_DELETE, _INSERT, _BEFORE, _AFTER = 1, 2, 3, 4
#: commits fetched from cdc.lsn_time_mapping at a time
_MAPPING_PAGE: Final = 1000


def _max_lsn(db: SqlServer, conn: Any) -> Lsn | None:
    rows = db.run(conn, sql.MAX_LSN, what="sys.fn_cdc_get_max_lsn")
    return Lsn.from_bytes(rows[0][0]) if rows else None


def end_position(db: SqlServer) -> str:
    """Where the capture job has come to (``sys.fn_cdc_get_max_lsn()``); before it has
    captured anything, the end of the transaction log."""
    conn = db.connect()
    try:
        lsn = _max_lsn(db, conn)
        if lsn is None:
            rows = db.run(conn, sql.LOG_END, what="sys.dm_db_log_stats")
            lsn = lsn_from_text(str(rows[0][0]))
        return str(Position(lsn))
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class _ChangeRow:
    key: tuple[int, int, int]
    instance: str
    mask: bytes
    values: tuple[Any, ...]


@dataclass
class _Source:
    """One capture instance read over one LSN segment."""

    instance: CaptureInstance
    schema: TableSchema
    #: 1-based change table ordinals of the schema's columns (for the update mask)
    lobs: tuple[int, ...]
    low: Lsn
    high: Lsn
    columns: list[str] = field(default_factory=list)
    #: fetched values -> change-model values, in ``columns`` order
    convert: Callable[[tuple[Any, ...]], list[Any]] | None = None

    def values(self, row: tuple[Any, ...]) -> list[Any]:
        if self.convert is None:
            self.convert = row_converter(list(self.schema.columns))
        return self.convert(row)


class CdcReader:
    """A :class:`connectors.log.LogReader` over SQL Server's CDC change tables.

    ``options`` (all optional): ``catalog`` (the definitions the trail holds, so versions
    continue and nothing is announced twice), ``poll_interval`` (seconds between reads when
    nothing is new), ``page_rows`` (change rows per query and instance).
    """

    def __init__(
        self,
        db: SqlServer,
        start: str | None,
        *,
        tables: TableFilter,
        until_caught_up: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        options = options or {}
        self._db = db
        self._filter = tables
        self._catalog: dict[TableId, TableSchema] = dict(options.get("catalog") or {})
        self._poll = float(options.get("poll_interval") or 1.0)
        self._batch = int(options.get("page_rows") or 5000)
        self._stop = threading.Event()
        self._conn: Any = db.connect()
        self._schemas: dict[str, tuple[TableSchema, tuple[int, ...], list[str]]] = {}
        self._times: dict[int, tuple[str, dt.datetime]] = {}
        self._offset = dt.timedelta(0)
        try:
            self._cursor = Position.parse(start or end_position(db))
            self._end = _max_lsn(db, self._conn) if until_caught_up else None
            self._require_tracked()
        except BaseException:
            self.close()
            raise
        self._until = until_caught_up

    def _require_tracked(self) -> None:
        """Every selected table has a capture instance: CDC records nothing for one that has
        none, and a table silently left out is not replication."""
        untracked = [
            TableId(str(schema), str(name))
            for schema, name, tracked in self._run(sql.TABLES, ())
            if not tracked and self._filter(TableId(str(schema), str(name)))
        ]
        if untracked:
            names = ", ".join(map(str, untracked))
            first = untracked[0]
            raise PrerequisiteError(
                f"{self._db.endpoint.display}: CDC does not track {names}: their changes "
                "cannot be captured",
                hint="run `redoline init` (it enables CDC on the selected tables), or EXEC "
                f"sys.sp_cdc_enable_table @source_schema = N'{first.schema}', @source_name = "
                f"N'{first.name}', @role_name = NULL for each, then snapshot them; or leave "
                "them out with [tables] exclude",
            )

    # ------------------------------------------------------------------ protocol

    def confirm(self, position: str) -> None:
        """Nothing to do: CDC keeps no reader state; the trail is the checkpoint."""

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a dead connection may fail; nothing is lost
                pass

    def events(self) -> Iterator[LogEvent]:
        try:
            while not self._stop.is_set():
                if self._until and (self._end is None or self._cursor.lsn >= self._end):
                    yield Heartbeat(str(self._cursor), caught_up=True)
                    return
                to = _max_lsn(self._db, self._conn)
                if self._until and self._end is not None and (to is None or to > self._end):
                    to = self._end
                if to is None or to <= self._cursor.lsn:
                    yield Heartbeat(str(self._cursor))
                    self._stop.wait(self._poll)
                    continue
                done = yield from self._window(to)
                if not done:
                    return  # stopped between two transactions
        finally:
            self.close()

    # ------------------------------------------------------------------ one window

    def _window(self, to: Lsn) -> Generator[LogEvent, None, bool]:
        """Every change committed after the cursor up to ``to``; False when stopped early."""
        after = self._cursor
        sources = self._plan(after, to)
        self._offset = dt.timedelta(minutes=int(self._run(sql.UTC_OFFSET, ())[0][0]))
        streams = [self._stream(s, after) for s in sources]
        merged = heapq.merge(*streams, key=lambda r: r.key)
        by_name = {s.instance.name: s for s in sources}
        current: Lsn | None = None
        xid = ""
        last_seq = 0
        pending: _ChangeRow | None = None
        announced: set[TableId] = set()
        for row in merged:
            lsn, seq, op = row.key
            if current is None or lsn != current.value:
                if current is not None:
                    yield self._commit(current, xid, last_seq, pending)
                    if self._stop.is_set():
                        return False
                current = Lsn(lsn)
                xid = self._commit_info(current, to)[0]
                announced = set()
                yield Begin(xid)
            source = by_name[row.instance]
            table = source.instance.table
            if table not in announced:
                announced.add(table)
                ddl = self._announce(source)
                if ddl is not None:
                    yield RowEvent(xid, ddl)
            last_seq = seq
            if op == _BEFORE:
                pending = row
                continue
            yield RowEvent(xid, self._change(source, row, pending))
            pending = None
        if current is not None:
            yield self._commit(current, xid, last_seq, pending)
        self._cursor = Position(to)
        yield Heartbeat(str(self._cursor))
        return True

    def _commit(self, lsn: Lsn, xid: str, seq: int, pending: _ChangeRow | None) -> Commit:
        if pending is not None:
            raise ReplicationError(
                f"the update at commit LSN {lsn} has its before row (__$operation 3) but no "
                "after row (4)",
                hint="report this with the capture instance's change table rows for that LSN",
            )
        self._cursor = Position(lsn, seq)
        when = self._commit_info(lsn, lsn)[1]
        return Commit(xid, str(self._cursor), when)

    def _plan(self, after: Position, to: Lsn) -> list[_Source]:
        """The capture instances to read and the LSN segment each one covers."""
        sources = []
        first = after.lsn.next() if after.whole else after.lsn
        for table, instances in sorted(capture_instances(self._query).items()):
            if not self._filter(table):
                continue
            live = [i for i in instances if i.start_lsn is not None]
            for n, inst in enumerate(live):
                assert inst.start_lsn is not None
                newer = live[n + 1] if n + 1 < len(live) else None
                high = (
                    to if newer is None or newer.start_lsn is None else newer.start_lsn.previous()
                )
                high = min(high, to)
                if high < first:
                    continue  # a newer instance covers everything after the cursor
                # only the oldest instance answers for the changes right after the cursor; a
                # newer one starts where it was created
                low = self._low(inst, first, table) if n == 0 else max(inst.start_lsn, first)
                if low > high:
                    continue
                schema, lobs, columns = self._instance(inst)
                sources.append(_Source(inst, schema, lobs, low, high, columns))
        return sources

    def _low(self, inst: CaptureInstance, first: Lsn, table: TableId) -> Lsn:
        """Where reading ``inst`` starts; the changes after the cursor must all be there."""
        rows = self._run(sql.MIN_LSN, (inst.name,))
        low = Lsn.from_bytes(rows[0][0]) if rows else None
        if low is None:
            raise ReplicationError(f"capture instance {inst.name} of {table} disappeared")
        if low > first and (table in self._catalog or self._cleaned(inst, low)):
            raise ReplicationError(
                f"changes of {table} after position {self._cursor} are gone: capture instance "
                f"{inst.name} now starts at LSN {low} (the CDC cleanup job removed older "
                "changes, or the instance was dropped and created again)",
                hint="take a new snapshot of the table (redoline snapshot), and raise the "
                "cleanup job's retention (EXEC sys.sp_cdc_change_job @job_type = N'cleanup', "
                "@retention = <minutes>) above the longest time capture may stop",
            )
        return max(low, first)

    def _cleaned(self, inst: CaptureInstance, low: Lsn) -> bool:
        """Whether ``inst`` existed before its low endpoint's commit, so the cleanup job (not
        its creation) put the endpoint there: a table whose changes never reached the trail
        has lost some too. The cleanup job's low water mark is a commit of
        cdc.lsn_time_mapping; an instance that has not been cleaned starts at its creation,
        after the last commit before it."""
        if inst.created is None:
            return False
        rows = self._run(sql.LSN_TIME, (low.to_bytes(),))
        at = rows[0][0] if rows else None
        return at is not None and bool(inst.created < at)

    def _instance(self, inst: CaptureInstance) -> tuple[TableSchema, tuple[int, ...], list[str]]:
        found = self._schemas.get(inst.name)
        if found is None:
            schema = instance_schema(self._query, inst)
            lobs = tuple(n for n, c in enumerate(schema.columns, 1) if c.source_type in LOB_TYPES)
            found = (schema, lobs, list(schema.column_names))
            self._schemas[inst.name] = found
        return found

    def _announce(self, source: _Source) -> Change | None:
        """The definition change to record before this instance's first row, if any."""
        table = source.instance.table
        known = self._catalog.get(table)
        if known is not None and same_shape(known, source.schema):
            return None
        version = known.version + 1 if known is not None else 1
        schema = replace(source.schema, version=version)
        self._catalog[table] = schema
        self._schemas[source.instance.name] = (schema, source.lobs, source.columns)
        source.schema, source.convert = schema, None
        return Change(Op.DDL, table, version, table_schema=schema)

    # ------------------------------------------------------------------ rows

    def _stream(self, source: _Source, after: Position) -> Iterator[_ChangeRow]:
        """``source``'s change rows after ``after`` in its segment, page by page."""
        statement = sql.changes_sql(source.instance.name, source.columns)
        cursor = (after.lsn.value, after.seqval, _AFTER)
        name = source.instance.name
        while True:
            c_lsn = Lsn(cursor[0]).to_bytes()
            c_seq = cursor[1].to_bytes(10, "big")
            rows = self._run(
                statement,
                (
                    self._batch,
                    source.low.to_bytes(),
                    source.high.to_bytes(),
                    c_lsn,
                    c_lsn,
                    c_seq,
                    c_seq,
                    cursor[2],
                ),
                table=source.instance.table,
            )
            for r in rows:
                key = (
                    int.from_bytes(bytes(r[0]), "big"),
                    int.from_bytes(bytes(r[1]), "big"),
                    int(r[2]),
                )
                yield _ChangeRow(key, name, bytes(r[3] or b""), tuple(r[4:]))
                cursor = key
            if len(rows) < self._batch:
                return

    def _change(self, source: _Source, row: _ChangeRow, before_row: _ChangeRow | None) -> Change:
        schema = source.schema
        names = schema.column_names
        image: Row = dict(zip(names, source.values(row.values), strict=True))
        op = row.key[2]
        identity = schema.identity
        if op == _INSERT:
            return Change(
                Op.INSERT, schema.table, schema.version, key=_key(image, identity), after=image
            )
        if op == _DELETE:
            return Change(
                Op.DELETE, schema.table, schema.version, key=_key(image, identity), before=image
            )
        if op != _AFTER or before_row is None or before_row.key[:2] != row.key[:2]:
            raise ReplicationError(
                f"{schema.table}: change row with __$operation {op} at {Lsn(row.key[0])} "
                "does not follow the documented update pairs (3 then 4)",
                hint="report this with the change table's rows for that LSN",
            )
        before: Row = dict(zip(names, source.values(before_row.values), strict=True))
        for ordinal in source.lobs:
            if not _bit(before_row.mask, ordinal):
                name = names[ordinal - 1]
                before[name] = image[name]  # unchanged LOB: CDC leaves row 3 NULL
        return Change(
            Op.UPDATE,
            schema.table,
            schema.version,
            key=_key(before, identity),
            before=before,
            after=image,
        )

    # ------------------------------------------------------------------ commits

    def _commit_info(self, lsn: Lsn, to: Lsn) -> tuple[str, dt.datetime]:
        """(transaction id, commit time in UTC) of the commit at ``lsn``."""
        found = self._times.get(lsn.value)
        if found is None:
            self._times.clear()
            rows = self._run(
                sql.TIME_MAPPING, (_MAPPING_PAGE, lsn.to_bytes(), max(to, lsn).to_bytes())
            )
            for start, tran_id, end_time in rows:
                at = Lsn.from_bytes(start)
                if at is None or end_time is None:
                    continue
                utc = (end_time - self._offset).replace(tzinfo=dt.UTC)
                self._times[at.value] = (bytes(tran_id or b"").hex() or str(at), utc)
            found = self._times.get(lsn.value)
            if found is None:
                # the mapping row may be gone (cleanup) while its changes are read: the
                # commit keeps its LSN as its id and the read time as its time
                found = (str(lsn), dt.datetime.now(dt.UTC))
        return found

    # ------------------------------------------------------------------ SQL

    def _query(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._run(statement, params)

    def _run(
        self, statement: str, params: Sequence[Any], *, table: TableId | None = None
    ) -> list[tuple[Any, ...]]:
        if self._conn is None:
            raise ConnectError(f"{self._db.endpoint.display}: the CDC reader is closed")
        try:
            cur = self._conn.cursor()
            cur.execute(statement, *params)
            rows = [tuple(r) for r in cur.fetchall()] if cur.description is not None else []
            cur.close()
            return rows
        except ToolkitError:
            raise
        except Exception as exc:
            if native_code(exc) == OUT_OF_RANGE and table is not None:
                raise ReplicationError(
                    f"changes of {table} after position {self._cursor} are no longer in its "
                    "change table (error 313: the LSN range left the capture instance's "
                    "validity interval while it was read; the CDC cleanup job ran)",
                    hint="take a new snapshot of the table (redoline snapshot), and raise the "
                    "cleanup job's retention",
                ) from None
            from connectors.sqlserver import _is_driver_error

            if _is_driver_error(exc):
                raise map_error(exc, self._db.endpoint, "reading CDC") from None
            raise


def _key(image: Row, identity: tuple[str, ...]) -> Row | None:
    return {c: image[c] for c in identity} if identity else None


def _bit(mask: bytes, ordinal: int) -> bool:
    """Whether ``__$update_mask`` marks column ``ordinal`` (1-based) as changed: the mask's
    last byte holds ordinals 1-8, its lowest bit ordinal 1."""
    index = len(mask) - 1 - (ordinal - 1) // 8
    return index >= 0 and bool(mask[index] >> ((ordinal - 1) % 8) & 1)
