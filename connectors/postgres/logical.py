"""PostgreSQL capture: the pgoutput log reader.

The reader is assembled from its seams: :mod:`connectors.postgres.slots` (slot and
publication administration), :mod:`connectors.postgres.relations` (relation shapes, the
definitions they become, rows decoded into changes), :mod:`connectors.postgres.values` (text
values as typed values) and :mod:`connectors.postgres.pgoutput` (the wire format). This module
opens the slot, reads the stream, assembles transactions and keeps the positions.

How we read: the streaming replication protocol (``START_REPLICATION SLOT ... LOGICAL``) over a
``replication=database`` connection, spoken through psycopg's libpq layer (``psycopg.pq``:
``get_copy_data``/``put_copy_data`` on a COPY BOTH stream; psycopg 3 has no replication API of its
own). ``pg_logical_slot_peek_binary_changes`` + ``pg_replication_slot_advance`` also works but
re-decodes the WAL from the slot's restart point on every call and needs polling;
``docs/capture-postgres.md`` has the measurements and the reasoning.

Positions are LSNs in text form (``0/16B3748``): a transaction's position is the **end LSN of
its commit record** (pgoutput's Commit ``end_lsn``). That is the LSN the slot is confirmed to:
the server never resends a transaction whose commit record starts before the slot's confirmed
point, so resuming from a position resends nothing at or before it and loses nothing after it.

Slot safety (each start, before reading):

* the slot must be this trail's (:mod:`connectors.postgres.ownership`: a slot the trail did
  not create is refused, never taken over);
* the slot must exist once the trail is bound to it (a dropped slot means the changes since our
  position are gone: :class:`ReplicationError`), must use ``pgoutput`` in this database, and its
  WAL must still be there (``wal_status <> 'lost'``);
* the slot's ``confirmed_flush_lsn`` must not be ahead of our position: the trail's last
  transaction, or the marker's position (the slot's creation point, or a heartbeat) when that
  is later. A slot dropped and recreated, or advanced by someone else, is ahead: the changes in
  between are lost, and we stop. Because the creation point is recorded, this holds before the
  trail has any transaction (a slot recreated between the snapshot and the first capture).

The slot is confirmed only through :meth:`PgLogReader.confirm`, which capture calls once the
trail is durable up to a position. A ``Heartbeat`` (WAL with nothing selected in it) may be
confirmed past the trail's last transaction, so WAL never piles up behind a quiet table; that
position is first written (fsynced) to the trail's slot marker ``pgslot.json`` (option
``trail_dir``). The marker also records which slot, database and server the trail is bound to
and the slot's creation point; which names a pipeline uses and why a slot the trail did not
create is refused is :mod:`connectors.postgres.ownership`.
"""

from __future__ import annotations

import datetime as dt
import logging
import select
import struct
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import psycopg
import psycopg.errors
import psycopg.pq
import psycopg.sql

from connectors.base import TableFilter
from connectors.errors import (
    ConnectError,
    MissingObjectError,
    ReplicationError,
    SchemaError,
    ToolkitError,
)
from connectors.log import Begin, Commit, Heartbeat, LogEvent, RowEvent
from connectors.model import Change, Op, TableId
from connectors.postgres import pgoutput, schemaprobe
from connectors.postgres.ownership import (
    MARKER_NAME,
    SlotNames,
    check_owner,
    new_marker,
    resolve_names,
    write_marker,
)
from connectors.postgres.pgoutput import (
    DELETE,
    INSERT,
    KEEPALIVE,
    MESSAGE_AT,
    RELID_AT,
    UPDATE,
    XLOGDATA,
    format_lsn,
    parse_lsn,
)
from connectors.postgres.relations import ATTNUMS_NAME, Relations, fast_change
from connectors.postgres.slots import (
    DEFAULT_SLOT_TIMEOUT,
    SlotInfo,
    check_replica_identity,
    check_slot,
    create_exported_slot,
    ensure_publication,
    init_slot,
    map_replication_error,
    publication_tables,
    quote,
    server_identity,
    slot_info,
    temporary_slot_name,
)
from connectors.postgres.values import SESSION_OPTIONS

if TYPE_CHECKING:
    from connectors.postgres import PostgreSQL

__all__ = ["PgLogReader"]

log = logging.getLogger("redoline.capture.postgres")
#: seconds between looks for new tables that match [tables] (continuous capture, when idle)
NEW_TABLE_CHECK: Final = 2.0
#: seconds between looks for column changes no row change has announced (when idle)
PROBE_INTERVAL: Final = 5.0

#: seconds a new table without a usable replica identity may stay so before capture stops
NEW_TABLE_IDENTITY_WAIT: Final = 15.0
#: the point of a new table's snapshot not taken yet: every change to it is dropped
_NOT_TAKEN: Final = 1 << 64
#: the trail's slot marker lists the new tables whose rows are not durable in the trail yet
_NEW_KEY: Final = "new_tables"

#: how often we tell the server where we are even when nothing happens (wal_sender_timeout is
#: 60 s by default; an idle reader also asks for a keepalive so filtered-out WAL gets confirmed)
STATUS_INTERVAL: Final = 5.0
#: at most one status message per this many seconds for confirmations alone
CONFIRM_INTERVAL: Final = 0.5
#: at most one marker fsync per this many seconds for heartbeats
MARKER_INTERVAL: Final = 1.0


# --------------------------------------------------------------------------- reading


@dataclass
class _NewTables:
    """New tables' snapshot: its exact point and the transaction that holds it."""

    point: int
    tables: tuple[TableId, ...]
    conn: psycopg.Connection[Any]


#: a standby status update: b"r", written, flushed and applied LSN, send time, reply requested
_STATUS = struct.Struct(">cQQQqB")
#: a keepalive after its kind byte: WAL end, send time, reply requested
_KEEPALIVE = struct.Struct(">QqB")
_RELID = struct.Struct(">I")
#: the message tags _read decodes on its fast path
_ROW_TAGS: Final = frozenset((INSERT, UPDATE, DELETE))
#: PostgreSQL's epoch in Unix seconds: status messages count microseconds from it
_PG_EPOCH_S: Final = int(pgoutput.PG_EPOCH.timestamp())


class PgLogReader:
    """Reads a pgoutput slot over the streaming replication protocol (see the module doc).

    ``options`` (all optional): ``slot``, ``publication`` (names; default: what the trail's
    marker records, else derived from ``trail_dir`` and ``source_id``, see
    :mod:`connectors.postgres.ownership`), ``slot_timeout`` (seconds slot creation may
    wait), ``create`` (create the slot and publication when the trail is empty; default
    True), ``catalog`` (the definitions the trail already holds, ``{TableId: TableSchema}``,
    so versions continue from them),
    ``status_interval`` (seconds between status messages to the server), ``trail_dir`` (where
    the slot marker lives, see the module doc), ``active_wait`` (seconds to wait for a slot
    still held by a crashed predecessor).
    """

    def __init__(
        self,
        db: PostgreSQL,
        start: str | None,
        *,
        tables: TableFilter,
        until_caught_up: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        opts = dict(options or {})
        self.db = db
        self.start = parse_lsn(start) if start else None
        self.tables = tables
        self.until_caught_up = until_caught_up
        trail_dir = opts.get("trail_dir")
        self.names: SlotNames = resolve_names(
            slot=opts.get("slot"),
            publication=opts.get("publication"),
            trail_dir=trail_dir,
            source_id=opts.get("source_id"),
        )
        self.slot = self.names.slot
        self.publication = self.names.publication
        #: the trail's last transaction (None: the trail has none yet)
        self._trail_position = self.start
        self.slot_timeout = float(opts.get("slot_timeout", DEFAULT_SLOT_TIMEOUT))
        self.create = bool(opts.get("create", True))
        self.active_wait = float(opts.get("active_wait", 15.0))
        self.status_interval = float(opts.get("status_interval", STATUS_INTERVAL))
        known = opts.get("catalog") or opts.get("schemas") or {}
        #: relation ids, their shapes and the definitions handed out
        self._shapes = Relations(
            tables, known, Path(trail_dir) / ATTNUMS_NAME if trail_dir else None
        )
        self._marker_path = Path(trail_dir) / MARKER_NAME if trail_dir else None
        self._marker_written = 0.0
        #: a heartbeat past the trail's last transaction not confirmed yet (marker written
        #: under a second before): close() confirms it, so a short run still moves the slot
        self._unconfirmed = 0
        self._marker: dict[str, Any] = dict(self.names.marker or {})
        self._catalog: psycopg.Connection[Any] | None = None
        self._stream: psycopg.Connection[Any] | None = None
        self._confirmed = self.start or 0
        self._last = self.start or 0  # end of the last transaction (or keepalive) handed out
        self._last_commit = self.start or 0  # end of the last transaction handed out
        self._end: int | None = None
        self._stopping = False
        self._last_status = 0.0
        self._opened = False
        #: the selected tables whose rows the trail gets (see _check_new_tables)
        self._published: set[TableId] = set()
        self._new_check = 0.0
        #: announces column changes no row change has carried yet (see schemaprobe)
        self._probe: schemaprobe.SchemaProbe | None = None
        self._column_subset = opts.get("column_subset")
        self._probed = 0.0
        self._end_probes = 0  # probes at the end of an --until-caught-up run (bounded)
        #: snapshots of new tables waiting for the stream to reach their point
        self._snaps: list[_NewTables] = []
        #: new table -> its snapshot's point: changes from transactions before it are dropped
        self._pending: dict[TableId, int] = {}
        #: new table -> the point of the snapshot the trail carries, until confirmed durable
        self._awaiting: dict[TableId, int] = {}
        #: new table without a usable replica identity -> when first seen (see _new_ready)
        self._no_identity: dict[TableId, float] = {}

    # ---------------------------------------------------------------- protocol

    def events(self) -> Iterator[LogEvent]:
        self._open()
        try:
            yield from self._read()
        except psycopg.Error as exc:
            raise map_replication_error(exc, self.db) from None

    def confirm(self, position: str) -> None:
        lsn = parse_lsn(position)
        if self._awaiting and lsn >= min(self._awaiting.values()):
            self._loaded_new(lsn)
        if lsn <= self._confirmed:
            return
        if lsn > self._last_commit and self._marker_path is not None:
            # a heartbeat past the trail's last transaction: remember it in the trail's slot
            # marker first, or the next start would see the slot ahead of the trail and stop
            if time.monotonic() - self._marker_written < MARKER_INTERVAL:
                # a later heartbeat (or close) confirms it; keeps fsyncs rare under filtered load
                self._unconfirmed = max(self._unconfirmed, lsn)
                return
            self._write_marker(lsn)
        self._confirmed = lsn
        # the server learns it with the next status message (at least every status_interval,
        # and whenever it asks); one message per transaction cost ~10% of capture time
        if time.monotonic() - self._last_status > CONFIRM_INTERVAL:
            self._send_status()

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        if self._stream is not None and not self._stream.closed:
            try:
                if self._unconfirmed > self._confirmed and self._marker_path is not None:
                    self._write_marker(self._unconfirmed)
                    self._confirmed = self._unconfirmed
                self._send_status()  # hand the server the last confirmation before leaving
            except (ToolkitError, psycopg.Error, OSError):
                pass
        for conn in (self._stream, self._catalog, *(s.conn for s in self._snaps)):
            if conn is not None:
                try:
                    conn.close()
                except psycopg.Error:
                    pass
        self._stream = self._catalog = self._shapes.catalog = None
        self._snaps = []

    # ---------------------------------------------------------------- opening

    def _open(self) -> None:
        if self._opened:
            return
        self._opened = True
        try:
            self._catalog = self._shapes.catalog = self.db.connect()
            conn = self._catalog
            # the heartbeat table (TableFilter.also) lives in redoline's own schema, which
            # list_tables leaves out: it is published all the same
            selected = self.db.list_tables(self.tables)
            selected += [t for t in self.tables.also if t not in selected]
            check_replica_identity(conn, selected)
            database, system = server_identity(conn)
            self._adopt_marker_position()
            info = slot_info(conn, self.slot)
            self._check_owner(info, database, system)
            if info is None and not self.create:
                raise ReplicationError(
                    f"replication slot {self.slot!r} does not exist",
                    hint="run `redoline init` first",
                )
            if info is None:
                # an empty trail with no slot of its own yet: make it, bound to this trail
                setup = init_slot(
                    self.db,
                    selected,
                    slot=self.slot,
                    publication=self.publication,
                    trail_dir=self.names.trail_dir,
                    timeout=self.slot_timeout,
                )
                log.info(
                    "created replication slot %s at %s and publication %s",
                    setup.slot,
                    setup.position,
                    setup.publication,
                )
                info = slot_info(conn, self.slot)
                assert info is not None and setup.position is not None
                if self.names.trail_dir is not None:
                    self._marker = new_marker(self.names, database, system, setup.position)
                self.start = parse_lsn(setup.position)
                self._last = self._last_commit = self._confirmed = self.start
            else:
                deadline = time.monotonic() + self.active_wait
                while info is not None and info.active_pid and time.monotonic() < deadline:
                    # after a crash the old walsender needs a moment to notice its client died
                    time.sleep(0.2)
                    info = slot_info(conn, self.slot)
                if info is None:
                    raise ReplicationError(f"replication slot {self.slot!r} was just dropped")
                if info.active_pid:
                    raise ReplicationError(
                        f"replication slot {self.slot!r} is in use by process {info.active_pid}",
                        hint="another capture reads this slot; stop it, or give each its own slot",
                    )
                check_slot(info, self.slot, database, self.start)
                ensure_publication(conn, self.publication, self.tables.also)
            # a new table whose snapshot had not reached the trail when the last run ended
            # is new again, and so is one the publication lacks (created, or taken into
            # [tables], since the slot's snapshot: its rows are in no log we read): snapshot
            # it into the trail before its changes are handed out
            unloaded = {TableId.parse(t) for t in self._marker.get(_NEW_KEY, ())}
            unloaded |= set(selected) - publication_tables(conn, self.publication)
            unloaded -= set(self.tables.also)
            self._published = set(selected) - unloaded
            # (and until then, none of their changes: they are in its snapshot or after it)
            self._pending = dict.fromkeys(unloaded & set(selected), _NOT_TAKEN)
            self._new_check = 0.0
            if self._pending:
                # now, before an --until-caught-up end is fixed: the end is past its point
                self._check_new_tables()
            self._new_check = time.monotonic()
            # before the end is fixed, so a column change already made is read by this run
            self._probe = schemaprobe.SchemaProbe(conn, self._column_subset)
            self._run_probe()
            if self.until_caught_up:
                row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
                assert row is not None
                self._end = parse_lsn(str(row[0]))
            if self.start is None and info.confirmed_flush:
                # library use without a trail directory: the slot is the only record
                self._last = self._confirmed = parse_lsn(info.confirmed_flush)
            self._start_stream()
        except psycopg.Error as exc:
            raise map_replication_error(exc, self.db) from None

    def _adopt_marker_position(self) -> None:
        """A position the marker holds past the trail's end (the slot's creation point, or a
        heartbeat confirmed past the last transaction) becomes our start."""
        position = self._marker.get("position")
        if position and (self.start is None or parse_lsn(position) > self.start):
            self.start = parse_lsn(position)
            self._last = self._last_commit = self._confirmed = self.start

    def _check_owner(self, info: SlotInfo | None, database: str, system: str) -> None:
        check_owner(
            self.names,
            info is not None,
            database=database,
            system=system,
            where=self.db.endpoint.display,
            confirmed_flush=parse_lsn(info.confirmed_flush)
            if info is not None and info.confirmed_flush
            else None,
            trail_position=self._trail_position,
        )
        if info is None and self.start is not None:
            # a trail with data but no marker (captured without trail_dir): same verdict
            raise ReplicationError(
                f"replication slot {self.slot!r} does not exist, but the trail is at "
                f"{format_lsn(self.start)}: it was dropped, and the changes since then "
                "are gone from the server",
                hint="start a new trail (an empty --trail directory) and take a new snapshot",
            )

    def _write_marker(self, position: int) -> None:
        """Durably record how far the slot may be confirmed past the trail's end."""
        if self.names.trail_dir is None:
            return
        self._marker["position"] = format_lsn(position)
        write_marker(self.names.trail_dir, self._marker)
        self._marker_written = time.monotonic()

    def _start_stream(self) -> None:
        from connectors.postgres import pg_conninfo

        args = pg_conninfo(self.db.endpoint, replication="database", options=SESSION_OPTIONS)
        args.pop("connect_timeout", None)
        self._stream = psycopg.connect(**args, connect_timeout=10, autocommit=True)
        pg = self._stream.pgconn
        start = format_lsn(self.start or 0)
        command = (
            f"START_REPLICATION SLOT {quote(self.slot)} LOGICAL {start} "
            f"(proto_version '1', publication_names '{self.publication}'"
            + (", messages 'true')" if self._probe is not None and self._probe.enabled else ")")
        )
        pg.send_query(command.encode())
        result = pg.get_result()
        if result is None or result.status != psycopg.pq.ExecStatus.COPY_BOTH:
            message = (result.error_message if result is not None else b"").decode(errors="replace")
            raise map_replication_error(
                psycopg.OperationalError(message or "START_REPLICATION failed"), self.db
            )
        self._send_status()

    # ---------------------------------------------------------------- the stream

    def _frame(self, timeout: float) -> bytes | None:
        """The next CopyData payload, or None after ``timeout`` seconds without one."""
        assert self._stream is not None
        pg = self._stream.pgconn
        while True:
            n, data = pg.get_copy_data(1)
            if n > 0:
                return bytes(data)
            if n == 0:
                ready, _, _ = select.select([pg.socket], [], [], timeout)
                if not ready:
                    return None
                pg.consume_input()
                continue
            raise self._ended()

    def _ended(self) -> ToolkitError:
        """The error to raise once the server has ended the COPY stream."""
        assert self._stream is not None
        result = self._stream.pgconn.get_result()
        message = b""
        if result is not None:
            message = result.error_message
        text = message.decode(errors="replace").strip() or "the server ended replication"
        return map_replication_error(psycopg.OperationalError(text), self.db)

    def _send_status(self, reply: bool = False) -> None:
        if self._stream is None:
            return
        now = int((time.time() - _PG_EPOCH_S) * 1_000_000)
        # write = flush = apply = what is durable in the trail: the server may recycle WAL
        # only up to there, and keeps pinging us while it has sent more than that
        lsn = self._confirmed
        msg = _STATUS.pack(b"r", lsn, lsn, lsn, now, 1 if reply else 0)
        pg = self._stream.pgconn
        if pg.put_copy_data(msg) != 1 or pg.flush() < 0:
            raise ConnectError(f"{self.db.endpoint.display}: the replication connection dropped")
        self._last_status = time.monotonic()

    def _read(self) -> Iterator[LogEvent]:
        """The stream's frames as log events: row changes on the fast path here, everything
        else through the helpers below (they read ``self._end``, which only ``_moved_end``
        changes)."""
        if self._end is not None and self._last >= self._end and not self._moved_end():
            yield Heartbeat(format_lsn(self._last), caught_up=True)
            return
        decode = pgoutput.decode
        relations = self._shapes.by_id
        unpack_relid = _RELID.unpack_from
        in_txn = False
        begun = False  # a Begin was handed out for the current transaction
        xid = ""
        origin: str | None = None
        skip = False
        poll = 0.5 if self._end is not None else 1.0
        drop: set[TableId] = set()  # new tables whose changes this transaction must not carry
        assert self._stream is not None
        get_copy_data = self._stream.pgconn.get_copy_data
        while True:
            if self._stopping and not in_txn:
                return
            # what libpq has buffered comes without a call to _frame (once per message)
            n, data = get_copy_data(1)
            if n > 0:
                frame: bytes | None = bytes(data)
            elif n < 0:
                raise self._ended()
            else:
                frame = self._frame(poll)
            if frame is None:
                self._idle(in_txn)
                continue
            kind = frame[0]
            if kind == KEEPALIVE:
                if (yield from self._keepalive(frame, in_txn)):
                    return
                continue
            if kind != XLOGDATA:
                raise ReplicationError(f"unexpected replication frame {chr(kind)!r}")
            if time.monotonic() - self._last_status > self.status_interval:
                self._send_status()
            tag = frame[MESSAGE_AT]
            if tag in _ROW_TAGS:  # Insert, Update, Delete
                if skip:
                    continue
                rel = relations[unpack_relid(frame, RELID_AT)[0]]
                if not rel.selected or (drop and rel.table in drop):
                    continue
                change = fast_change(rel, frame)
                if not begun:
                    begun = True
                    yield Begin(xid)
                yield RowEvent(xid, change, len(frame))
                continue
            msg = decode(frame[MESSAGE_AT:])
            if isinstance(msg, pgoutput.BeginMsg):
                if self._snaps and msg.final_lsn >= self._snaps[0].point:
                    # the stream passed a new table's snapshot point: its rows come first
                    yield from self._emit_new(msg.final_lsn)
                # in a new table's snapshot already (its commit ends before the point)
                drop = {t for t, p in self._pending.items() if msg.final_lsn < p}
                in_txn, begun, origin = True, False, None
                xid = str(msg.xid)
                # a transaction already in the trail (commit before our position) is skipped;
                # the server does this too, this is belt and braces
                skip = self.start is not None and msg.final_lsn < self.start
            elif isinstance(msg, pgoutput.CommitMsg):
                in_txn = False
                if skip or msg.end_lsn <= self._last:
                    continue
                if (yield from self._commit(msg, xid, begun, origin)):
                    return
            elif isinstance(msg, pgoutput.OriginMsg):
                origin = msg.name
            else:
                for event in self._in_transaction(msg, xid, skip, drop):
                    if not begun:
                        begun = True
                        yield Begin(xid)
                    yield event

    def _idle(self, in_txn: bool) -> None:
        """Nothing arrived for a poll interval."""
        if self._end is None and not in_txn:
            self._check_new_tables()
            if time.monotonic() - self._probed > PROBE_INTERVAL:
                self._run_probe()
        # ask where the server is, so a stretch of WAL with nothing for us still gets
        # confirmed, and --until-caught-up notices it has arrived
        if self._end is not None or time.monotonic() - self._last_status > self.status_interval:
            self._send_status(reply=True)

    def _keepalive(self, frame: bytes, in_txn: bool) -> Generator[LogEvent, None, bool]:
        """A primary keepalive between transactions is a heartbeat at its WAL end; True when
        that is the end of an --until-caught-up run."""
        wal_end, _ts, reply = _KEEPALIVE.unpack_from(frame, 1)
        if self._snaps and not in_txn and wal_end >= self._snaps[0].point:
            yield from self._emit_new(wal_end)
        if not in_txn and wal_end > self._last:
            self._last = wal_end
            caught = self._end is not None and wal_end >= self._end
            if caught and self._moved_end():
                caught = False
            yield Heartbeat(format_lsn(wal_end), caught_up=caught)
            if caught:
                return True
        if reply:
            self._send_status()
        return False

    def _commit(
        self, msg: pgoutput.CommitMsg, xid: str, begun: bool, origin: str | None
    ) -> Generator[LogEvent, None, bool]:
        """A transaction's end (a Heartbeat when nothing of it was selected); True when that
        is the end of an --until-caught-up run."""
        self._last = msg.end_lsn
        if begun:
            self._last_commit = msg.end_lsn
        position = format_lsn(msg.end_lsn)
        caught = self._end is not None and msg.end_lsn >= self._end
        if caught and self._moved_end():
            caught = False
        if begun:
            yield Commit(xid, position, msg.commit_time, origin)
            if caught:
                yield Heartbeat(position, caught_up=True)
        else:
            yield Heartbeat(position, caught_up=caught, source_time=msg.commit_time)
        if caught:
            return True
        if self._end is None and time.monotonic() - self._new_check >= NEW_TABLE_CHECK:
            self._check_new_tables()  # a busy stream is seldom idle for a whole poll
        return False

    def _in_transaction(
        self, msg: pgoutput.Message, xid: str, skip: bool, drop: set[TableId]
    ) -> Iterator[RowEvent]:
        """The events a Relation, Truncate, Type or logical decoding message stands for (the
        caller hands out the transaction's Begin before the first)."""
        if isinstance(msg, pgoutput.RelationMsg):
            if self._pending and TableId(msg.namespace, msg.name) in self._pending:
                # its definition is announced with its snapshot's rows
                self._shapes.quiet(msg)
                return
            yield from self._shapes.announce(msg, xid)
        elif isinstance(msg, pgoutput.TruncateMsg):
            if skip:
                return
            for relid in msg.relids:
                rel = self._shapes.by_id[relid]
                if rel.selected and not (drop and rel.table in drop):
                    assert rel.schema is not None
                    yield RowEvent(
                        xid, Change(Op.TRUNCATE, rel.table, schema_version=rel.schema.version)
                    )
        elif isinstance(msg, pgoutput.TypeMsg):
            self._shapes.type_cache.pop(msg.type_oid, None)
        elif isinstance(msg, pgoutput.MessageMsg):
            # our own column-change marker stands for the Relation message no row change
            # has carried yet (schemaprobe); other messages are not ours
            if skip or not msg.transactional or msg.prefix != schemaprobe.PREFIX:
                return
            for rel_msg in schemaprobe.relations(msg.content):
                yield from self._shapes.announce(rel_msg, xid)

    def _moved_end(self) -> bool:
        """At the end of an --until-caught-up run: a column change made after the start-up
        probe (a row change announced an added column, then the column went with no row change
        after it) is written now and the end moves past it. True when it moved."""
        if self._probe is None or self._end_probes >= 3:
            return False
        self._end_probes += 1
        if not self._probe.run(self._published, self._shapes.announced):
            return False
        assert self._catalog is not None
        row = self._catalog.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        self._end = parse_lsn(str(row[0]))
        return True

    def _run_probe(self) -> None:
        self._probed = time.monotonic()
        if self._probe is not None:
            self._probe.run(self._published, self._shapes.announced)

    def _check_new_tables(self) -> None:
        """Snapshot the tables created since the start that match ``[tables]``, at an exact
        point of the stream, without stopping (called while idle between transactions).

        The publication lists tables, so a new one is not decoded until it is added, and the
        rows inserted before that are in no log we read. So: the marker records the tables
        first (a run that dies before their rows are in the trail takes them again), they
        are added to the publication, then a temporary slot exports a snapshot whose
        consistent point P is exact (:func:`create_exported_slot`). Changes to them from
        transactions committed before P are dropped (the snapshot holds them); when the
        stream reaches P, :meth:`_emit_new` hands out one transaction at P with each table's
        definition, a TRUNCATE (the target may hold an older copy) and its rows; later
        changes follow as usual. A MariaDB source's CREATE TABLE and inserts travel the same
        way: in the trail, in commit order.
        """
        if self._snaps or time.monotonic() - self._new_check < NEW_TABLE_CHECK:
            return
        self._new_check = time.monotonic()
        assert self._catalog is not None
        listed = set(self.db.list_tables(self.tables))
        gone = {t for t, p in self._pending.items() if p == _NOT_TAKEN and t not in listed}
        if gone:
            # listed by an earlier run, dropped since: nothing left to load
            for table in gone:
                self._pending.pop(table)
                self._awaiting[table] = 0
            self._loaded_new(0)
        new = sorted(listed - self._published, key=str)
        new = [t for t in new if self._new_ready(t)]
        if not new:
            return
        names = ", ".join(map(str, new))
        if self.names.trail_dir is not None:
            recorded = set(self._marker.get(_NEW_KEY, ())) | {str(t) for t in new}
            self._marker[_NEW_KEY] = sorted(recorded)
            write_marker(self.names.trail_dir, self._marker)
        try:
            ensure_publication(self._catalog, self.publication, new)
        except psycopg.errors.UndefinedTable:
            return  # dropped again meanwhile: the next look decides
        repl, point, snapshot = create_exported_slot(
            self.db,
            temporary_slot_name(),
            timeout=self.slot_timeout,
            temporary=True,
            waiting=self._send_status if self._stream is not None else None,
        )
        try:
            conn = self.db.connect(options=SESSION_OPTIONS)
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            conn.execute(
                psycopg.sql.SQL("SET TRANSACTION SNAPSHOT {}").format(psycopg.sql.Literal(snapshot))
            )
        finally:
            repl.close()  # drops the temporary slot; the transaction keeps its snapshot
        at = parse_lsn(point)
        self._snaps.append(_NewTables(at, tuple(new), conn))
        for table in new:
            self._pending[table] = at
        log.warning(
            "new table(s) %s: added to publication %s, snapshot at %s; their rows follow in "
            "the trail at that point",
            names,
            self.publication,
            point,
        )
        if self._stream is not None:
            self._send_status(reply=True)  # the server's answer tells when the stream is there

    def _new_ready(self, table: TableId) -> bool:
        """Whether a new table can be streamed; one without a usable replica identity gets a
        moment (CREATE TABLE, then ALTER TABLE ... REPLICA IDENTITY FULL), then stops us."""
        assert self._catalog is not None
        try:
            check_replica_identity(self._catalog, [table])
        except MissingObjectError:
            return False  # dropped again meanwhile
        except SchemaError:
            first = self._no_identity.setdefault(table, time.monotonic())
            if time.monotonic() - first < NEW_TABLE_IDENTITY_WAIT:
                return False
            raise
        self._no_identity.pop(table, None)
        return True

    def _emit_new(self, reached: int) -> Iterator[LogEvent]:
        """The snapshots of new tables whose point the stream has reached, each as one
        transaction at that point: definition, TRUNCATE, rows."""
        while self._snaps and self._snaps[0].point <= reached:
            snap = self._snaps.pop(0)
            xid = f"snapshot@{format_lsn(snap.point)}"
            try:
                yield Begin(xid)
                for table in snap.tables:
                    yield from self._shapes.snapshot_rows(snap.conn, table, xid)
                yield Commit(xid, format_lsn(snap.point), dt.datetime.now(dt.UTC))
            finally:
                snap.conn.close()
            self._last = self._last_commit = max(self._last, snap.point)
            for table in snap.tables:
                self._pending.pop(table, None)
                self._published.add(table)
                self._awaiting[table] = snap.point
            log.info("new table(s) %s loaded at %s", ", ".join(map(str, snap.tables)), xid)

    def _loaded_new(self, lsn: int) -> None:
        """New tables whose snapshot is durable in the trail leave the marker's list."""
        done = {t for t, p in self._awaiting.items() if p <= lsn}
        for table in done:
            del self._awaiting[table]
        if self.names.trail_dir is None:
            return
        left = sorted(set(self._marker.get(_NEW_KEY, ())) - {str(t) for t in done})
        if left:
            self._marker[_NEW_KEY] = left
        else:
            self._marker.pop(_NEW_KEY, None)
        write_marker(self.names.trail_dir, self._marker)
