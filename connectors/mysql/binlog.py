"""The MySQL/MariaDB binlog reader: binlog events in, engine-neutral log events out.

mysql-replication speaks the replication protocol and parses the framing events (rotate,
GTID, query, XID, table map with its ``binlog_row_metadata=FULL`` optional metadata). Row
images are decoded by redoline (:func:`compile_decoders` here, :mod:`connectors.mysql.fastrows`
on the fast path, both through the converters of :mod:`connectors.mysql.values`), because:

* correctness — the library gets several cases wrong and we must not pass them on
  (each has a test in ``tests/connectors/test_mysql_binlog_types.py``): negative TIME with a
  fraction (``-01:00:00.25`` comes out as ``-01:00:00.75``), BIT (a ``'0101'`` string, we give
  an ``int``), the empty SET (``None``, we give ``frozenset()``), BINARY(n) (trailing zero bytes
  lost, and an all-zero value comes back as the *string* ``''``), TIMESTAMP (a naive datetime in
  the process' idea of UTC; we give an aware UTC datetime);
* speed — one compiled decoder per table definition instead of a per-value type switch.

Schema as of the event: every row is decoded with the TABLE_MAP event that precedes it, and
the :class:`~connectors.model.TableSchema` recorded in the trail is derived from that table
map (names, types, signedness, charsets, ENUM/SET labels, primary key, nullability). Two
attributes the table map does not carry are taken from the server's catalog when a table
definition is first met: which LONGTEXT columns are MariaDB JSON, which BINARY(16) columns are
MariaDB UUID, and which columns are generated (documented in docs/capture-mysql.md). Table
maps and DDL become definitions in :mod:`connectors.mysql.schema`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pymysql
import pymysql.connections
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    NotImplementedEvent,
    QueryEvent,
    RotateEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from connectors.base import TableFilter
from connectors.errors import (
    ConnectError,
    PrerequisiteError,
    ReplicationError,
    SchemaError,
)
from connectors.log import Begin, Commit, Heartbeat, LogEvent, Rollback, RowEvent
from connectors.model import Change, Op, Row, TableId, TableSchema
from connectors.mysql.errors import connection_lost, map_error
from connectors.mysql.events import BENIGN_CLASSES, refuse_unknown
from connectors.mysql.fastrows import FastRows, FastTableMap, RowDecoder
from connectors.mysql.packets import (
    FastGtid,
    FastMap,
    FastStream,
    FastXid,
    StreamLost,
    stream_connect,
)
from connectors.mysql.positions import BinlogPosition
from connectors.mysql.schema import (
    Ddl,
    _quote,
    classify_query,
    derive_after_ddl,
    same_shape,
    schema_from_table_map,
)
from connectors.mysql.values import (
    ColumnHints,
    Decoder,
    Unsupported,
    column_spec,
    decoder,
    present_columns,
    read_image,
)

if TYPE_CHECKING:
    from connectors.mysql import MySQL

__all__ = ["BinlogReader", "compile_decoders", "end_position"]

log = logging.getLogger("redoline.capture.mysql")

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

_GTID_STANDALONE = 1  # MariaDB GTID flag: the group is one statement without BEGIN/COMMIT


# --------------------------------------------------------------------------- row decoding


def compile_decoders(columns: list[Any], hints: ColumnHints) -> list[Decoder]:
    """One decoder per table-map column, from the converters the fast path uses too
    (:mod:`connectors.mysql.values`)."""
    out = []
    for col in columns:
        try:
            out.append(decoder(column_spec(col, hints.kind(col.name))))
        except Unsupported:
            raise SchemaError(
                f"column {col.name!r} has binlog type {col.type}, which redoline cannot decode",
                hint="exclude the table ([tables] exclude) or the column ([tables.columns])",
            ) from None
    return out


# --------------------------------------------------------------------------- positions


def end_position(db: MySQL) -> str:
    """The source's current end of binlog, as a position string (GTID state @ file:pos)."""
    rows = db.query("SHOW MASTER STATUS")
    if not rows:
        raise PrerequisiteError(
            f"{db.endpoint.display}: binary logging is off",
            hint="start the server with log_bin=mysql-bin (see `redoline check`)",
        )
    file, pos = str(rows[0][0]), int(rows[0][1])
    if db.is_mariadb():
        ((gtid,),) = db.query("SELECT @@GLOBAL.gtid_binlog_pos")
    else:
        gtid = rows[0][4] if len(rows[0]) > 4 else ""
    gtid = str(gtid or "").replace("\n", "").replace(" ", "")
    return str(BinlogPosition(gtid, file, pos))


# --------------------------------------------------------------------------- the reader


@dataclass
class _TableInfo:
    table: TableId
    schema: TableSchema
    names: tuple[str, ...]
    decoders: list[Decoder]
    identity: tuple[str, ...]
    #: the fast path's decoder (connectors/mysql/fastrows.py) when its table map went that way
    fast: RowDecoder | None = None
    #: the fast path's table-map content this info was built from (its cache key object)
    key: bytes | None = None
    #: the reader's catalog generation at which ``schema`` was found to be the catalogued one
    #: (a repeat of the same table map then needs no check: see BinlogReader._run)
    verified: int = -1
    #: columns-present bitmaps known to hold every stored column (a full row image)
    full: set[bytes] = field(default_factory=set)


@dataclass
class _Txn:
    xid: str | None = None
    #: a BEGIN (or a non-standalone MariaDB GTID) opened it: queries inside do not end it
    transactional: bool = False
    begun: bool = False
    #: definitions recorded inside this transaction (None: dropped), catalogued at commit
    announced: dict[TableId, TableSchema | None] = field(default_factory=dict)


_OPS = {WriteRowsEvent: Op.INSERT, UpdateRowsEvent: Op.UPDATE, DeleteRowsEvent: Op.DELETE}
_FAST_OPS = {"insert": Op.INSERT, "update": Op.UPDATE, "delete": Op.DELETE}


class BinlogReader:
    """A :class:`connectors.log.LogReader` over a MySQL/MariaDB binlog.

    ``options`` (all optional): ``catalog`` — the table definitions the trail already holds
    (``TrailWriter.catalog()``), so versions continue and nothing is announced twice;
    ``server_id`` — the replica id we announce (unique among the source's replicas);
    ``heartbeat`` — seconds between server heartbeats when idle (how fast :meth:`stop` is
    noticed on an idle source); ``decoder`` — ``"fast"`` (default: TABLE_MAP and ROWS events
    decoded by :mod:`connectors.mysql.fastrows`, per-table fallback to the library) or
    ``"library"`` (mysql-replication parses every event; for support cases).
    """

    def __init__(
        self,
        db: MySQL,
        start: str | None,
        *,
        tables: TableFilter,
        until_caught_up: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        options = options or {}
        self._db = db
        self._filter = tables
        self._until = until_caught_up
        self._catalog: dict[TableId, TableSchema] = dict(options.get("catalog") or {})
        #: bumped whenever ``_catalog`` changes (see _TableInfo.verified)
        self._catalog_gen = 0
        self._server_id = int(options.get("server_id") or 4_199_001)
        self._heartbeat = float(options.get("heartbeat", 1.0))
        self._decoder = str(options.get("decoder") or "fast")
        if self._decoder not in ("fast", "library"):
            raise ValueError(f'decoder must be "fast" or "library", not {self._decoder!r}')
        self._stop = threading.Event()
        self._stream: BinLogStreamReader | None = None
        self._selected: dict[TableId, bool] = {}
        self._by_id: dict[int, _TableInfo | None] = {}
        self._infos: dict[str | bytes, _TableInfo] = {}
        self._hints: dict[TableId, tuple[ColumnHints, set[str]]] = {}
        self._mariadb = db.is_mariadb()
        self._check_server()
        self._end = BinlogPosition.parse(end_position(db)) if until_caught_up else None
        self._end_file_cache: tuple[str, int] = ("", 0)
        self._start = (
            BinlogPosition.parse(start) if start else BinlogPosition.parse(end_position(db))
        )
        self._file = self._start.file
        self._domains = self._start.mariadb_domains()
        self._gtid_set: Any = None
        if not self._mariadb and self._start.gtid:
            from pymysqlreplication.gtid import GtidSet

            self._gtid_set = GtidSet(self._start.gtid)

    # ------------------------------------------------------------------ protocol

    def confirm(self, position: str) -> None:
        """Nothing to do: a binlog has no server-side slot; the trail is the checkpoint."""

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except Exception:  # closing a dead socket may fail; nothing is lost
                pass
            self._stream = None

    def events(self) -> Iterator[LogEvent]:
        if self._end is not None and self._reached_end(self._start.file, self._start.pos):
            yield Heartbeat(str(self._start), caught_up=True)
            return
        self._stream = self._open_stream()
        try:
            if self._decoder == "fast":
                yield from self._run(
                    FastStream(self._stream, "mariadb" if self._mariadb else "mysql")
                )
            else:
                yield from self._run(self._stream)
        except StreamLost as exc:
            raise ConnectError(
                f"{self._db.endpoint.display}: the binlog connection dropped ({exc})",
                hint="capture reconnects by itself; check the server if this repeats",
            ) from None
        except pymysql.err.MySQLError as exc:
            if isinstance(exc, pymysql.err.OperationalError) and connection_lost(exc):
                # the fast path's packet reader (fastrows.PacketReader) reports a loss so
                raise ConnectError(
                    f"{self._db.endpoint.display}: the binlog connection dropped ({exc.args[-1]})",
                    hint="capture reconnects by itself; check the server if this repeats",
                ) from None
            raise self._map_stream_error(exc) from None
        finally:
            self.close()

    # ------------------------------------------------------------------ internals

    def _check_server(self) -> None:
        variables = dict(
            self._db.query(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
                "('binlog_format', 'binlog_row_image', 'binlog_row_metadata', 'log_bin')"
            )
        )
        wanted = {
            "log_bin": "ON",
            "binlog_format": "ROW",
            "binlog_row_image": "FULL",
            "binlog_row_metadata": "FULL",
        }
        for name, value in wanted.items():
            now = str(variables.get(name, "(not set)")).upper()
            if now != value:
                raise PrerequisiteError(
                    f"{self._db.endpoint.display}: {name} is {now}, capture needs {value}",
                    hint=f"SET GLOBAL {name} = '{value}' (and in the server configuration); "
                    "see `redoline check`",
                )

    def _open_stream(self) -> BinLogStreamReader:
        from connectors.mysql import mysql_connect_args

        args = mysql_connect_args(self._db.endpoint)
        args.pop("database", None)
        args.pop("local_infile", None)
        # a dead server is noticed when no heartbeat arrived for a while
        args["read_timeout"] = max(10, int(self._heartbeat * 10))
        kwargs: dict[str, Any] = {
            "connection_settings": args,
            "server_id": self._server_id,
            # always blocking: MariaDB resets a non-blocking dump connection mid-stream; the
            # end for until_caught_up is the position measured at open
            "blocking": True,
            "filter_non_implemented_events": False,
            "slave_heartbeat": self._heartbeat,
            "pymysql_wrapper": stream_connect,
            "enable_logging": False,
        }
        schemas = self._filter.schemas()
        # the fast path needs every event from the library (see FastStream); it drops other
        # schemas' rows before decoding them by itself
        if schemas is not None and self._decoder == "library":
            kwargs["only_schemas"] = sorted(schemas)  # drop other schemas' rows before decoding
        start = self._start
        if start.gtid:
            kwargs["auto_position"] = start.gtid
            kwargs["is_mariadb"] = self._mariadb
        else:
            kwargs.update(log_file=start.file, log_pos=start.pos, resume_stream=True)
        log.info("reading the binlog of %s from %s", self._db.endpoint.display, start)
        return BinLogStreamReader(**kwargs)

    def _map_stream_error(self, exc: pymysql.err.MySQLError) -> Exception:
        code = exc.args[0] if exc.args else None
        text = exc.args[-1] if exc.args else str(exc)
        if code == 1236:
            return ReplicationError(
                f"{self._db.endpoint.display}: the binlog can no longer be read from "
                f"{self._start} ({text})",
                hint="the source purged the binlog (or GTID history) capture needs; nothing was "
                "skipped. Re-snapshot the tables (`redoline snapshot`) and start capture from "
                "the snapshot's position; keep binlogs longer (expire_logs_days / "
                "binlog_expire_logs_seconds) so it does not happen again",
            )
        return map_error(exc, self._db.endpoint)

    def _reached_end(self, file: str, pos: int) -> bool:
        assert self._end is not None
        if file != self._end_file_cache[0]:
            self._end_file_cache = (file, BinlogPosition("", file, 0).file_key[1])
        end = self._end
        return (self._end_file_cache[1], pos) >= (end.file_key[1], end.pos)

    def _position(self, pos: int) -> str:
        if self._mariadb and self._domains:
            gtid = ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self._domains.items()))
        elif self._gtid_set is not None:
            gtid = str(self._gtid_set).replace("\n", "")
        else:
            gtid = ""
        return str(BinlogPosition(gtid, self._file, pos))

    def _is_selected(self, table: TableId) -> bool:
        ok = self._selected.get(table)
        if ok is None:
            ok = self._selected[table] = self._filter(table)
        return ok

    def _catalog_hints(self, table: TableId) -> tuple[ColumnHints, set[str]]:
        """MariaDB JSON and UUID columns, and generated columns: what a table map lacks."""
        hints = self._hints.get(table)
        if hints is None:
            rows = self._db.query(
                "SELECT column_name, data_type, extra FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                (table.schema, table.name),
            )
            generated = {str(n) for n, _t, x in rows if "GENERATED" in str(x or "").upper()}
            json_cols = {str(n) for n, t, _x in rows if str(t).lower() == "json"}
            uuid_cols = {str(n) for n, t, _x in rows if str(t).lower() == "uuid"}
            if self._mariadb:
                checks = self._db.query(
                    "SELECT check_clause FROM information_schema.check_constraints "
                    "WHERE constraint_schema = %s AND table_name = %s",
                    (table.schema, table.name),
                )
                for (clause,) in checks:
                    m = re.fullmatch(r"\s*json_valid\(`((?:[^`]|``)+)`\)\s*", str(clause), re.I)
                    if m:
                        json_cols.add(m.group(1).replace("``", "`"))
            column_hints = ColumnHints(frozenset(json_cols), frozenset(uuid_cols))
            hints = self._hints[table] = (column_hints, generated)
        return hints

    def _table_map(self, ev: TableMapEvent | FastTableMap, txn: _Txn) -> list[LogEvent]:
        table = TableId(ev.schema, ev.table)
        if not self._is_selected(table):
            self._by_id[ev.table_id] = None
            return []
        key = (
            ev.cache_key
            if isinstance(ev, FastTableMap)
            else repr(
                (
                    table,
                    ev.null_bitmask,
                    [vars(c) for c in ev.columns],
                    ev.optional_metadata.simple_primary_key_list,
                )
            )
        )
        info = self._infos.get(key)
        if info is None:
            hints, generated = self._catalog_hints(table)
            schema = schema_from_table_map(ev, hints=hints, generated=generated)
            info = _TableInfo(
                table,
                schema,
                schema.column_names,
                compile_decoders(ev.columns, hints),
                schema.identity,
            )
            if isinstance(ev, FastTableMap):
                info.fast = ev.decoder(schema.column_names, hints)
                info.key = ev.cache_key
            self._infos[key] = info
        self._by_id[ev.table_id] = info
        known = self._known(txn, table)
        if known is not None and same_shape(known, info.schema):
            if known.version != info.schema.version:
                info.schema = known
            if table not in txn.announced:
                info.verified = self._catalog_gen
            return []
        version = known.version + 1 if known is not None else 1
        info.schema = replace(info.schema, version=version)
        txn.announced[table] = info.schema
        out: list[LogEvent] = self._begin(txn)
        out.append(
            RowEvent(
                txn.xid or "",
                Change(Op.DDL, table, version, table_schema=info.schema),
            )
        )
        return out

    def _begin(self, txn: _Txn) -> list[LogEvent]:
        if txn.begun:
            return []
        txn.begun = True
        if txn.xid is None:
            txn.xid = f"{self._file}:{self._here}"
        return [Begin(txn.xid)]

    def _rows(self, ev: Any, txn: _Txn) -> Iterator[LogEvent]:
        info = self._by_id.get(ev.table_id)
        if info is None:
            return
        if not txn.begun:
            yield from self._begin(txn)
        xid = txn.xid or ""
        op = _OPS[type(ev)]
        table, schema = info.table, info.schema
        version, names, decoders, identity = (
            schema.version,
            info.names,
            info.decoders,
            info.identity,
        )
        packet = ev.packet
        buf = packet.read(ev.event_size - packet.read_bytes)
        ncols = ev.number_of_columns
        present1 = present_columns(ev.columns_present_bitmap, ncols)
        present2 = (
            present_columns(ev.columns_present_bitmap2, ncols) if op is Op.UPDATE else present1
        )
        self._check_full(info, ev.columns_present_bitmap, ncols, txn)
        if op is Op.UPDATE:
            self._check_full(info, ev.columns_present_bitmap2, ncols, txn)
        pos, end = 0, len(buf)
        while pos < end:
            if op is Op.UPDATE:
                before, pos = read_image(buf, pos, present1, names, decoders)
                after, pos = read_image(buf, pos, present2, names, decoders)
                key = {c: before[c] for c in identity} if identity else None
                yield RowEvent(xid, Change(op, table, version, key, before, after))
            elif op is Op.INSERT:
                after, pos = read_image(buf, pos, present1, names, decoders)
                key = {c: after[c] for c in identity} if identity else None
                yield RowEvent(xid, Change(op, table, version, key, None, after))
            else:
                before, pos = read_image(buf, pos, present1, names, decoders)
                key = {c: before[c] for c in identity} if identity else None
                yield RowEvent(xid, Change(op, table, version, key, before, None))

    def _fast_rows(self, ev: FastRows, txn: _Txn) -> Iterator[LogEvent]:
        """The fast path's twin of :meth:`_rows` (images from the table's RowDecoder)."""
        info = self._by_id.get(ev.table_id)
        if info is None:
            return
        if info.fast is None:
            raise ReplicationError(
                f"rows of {info.table} reached the fast decoder without its table map",
                hint='run capture with decoder = "library" and report this',
            )
        full = info.full
        if ev.present not in full or ev.present2 not in full:
            self._check_full(info, ev.present, ev.ncols, txn)
            self._check_full(info, ev.present2, ev.ncols, txn)
        if not txn.begun:
            yield from self._begin(txn)
        xid = txn.xid or ""
        op = _FAST_OPS[ev.op]
        table, version, identity = info.table, info.schema.version, info.identity
        # the event's packed bytes, counted once, spare the assembler a walk over every value
        # for its memory estimate (the sum over the event's rows is what matters)
        size = ev.end - ev.pos
        if len(identity) == 1:
            # the common one-column key: a dict display, not a comprehension (a call per row)
            (k,) = identity
            for before, after in info.fast.rows(ev):
                image: Row = before if before is not None else after  # type: ignore[assignment]
                yield RowEvent(xid, Change(op, table, version, {k: image[k]}, before, after), size)
                size = 0
            return
        for before, after in info.fast.rows(ev):
            image = before if before is not None else after  # type: ignore[assignment]
            key = {c: image[c] for c in identity} if identity else None
            yield RowEvent(xid, Change(op, table, version, key, before, after), size)
            size = 0

    def _check_full(self, info: _TableInfo, bitmap: bytes, ncols: int, txn: _Txn) -> None:
        """Stop on a partial row image: a session with binlog_row_image=MINIMAL or NOBLOB
        logs only some columns (the key, the changed ones), and a row missing the others
        would be applied as if they were NULL or lost. Generated columns may be left out."""
        bitmap = bytes(bitmap)
        if bitmap in info.full:
            return
        present = set(present_columns(bitmap, ncols))
        missing = [
            c.name
            for i, c in enumerate(info.schema.columns)
            if i not in present and not c.generated
        ]
        if not missing and ncols == len(info.schema.columns):
            info.full.add(bitmap)
            return
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ReplicationError(
            f"a partial row image of {info.table} at {self._file}:{self._here} (the end of its "
            f"rows event, transaction {txn.xid or '?'}) lacks column(s) {shown}: the session "
            "that wrote it had binlog_row_image=MINIMAL or NOBLOB, and such a row cannot be "
            "replicated",
            hint="set binlog_row_image=FULL for every session and server (SET GLOBAL "
            "binlog_row_image='FULL', reconnect clients, and set it in the server's config "
            f"file), then re-snapshot {info.table}",
        )

    def _known(self, txn: _Txn, table: TableId) -> TableSchema | None:
        if table in txn.announced:
            return txn.announced[table]
        return self._catalog.get(table)

    def _query(self, ev: QueryEvent, txn: _Txn) -> tuple[list[LogEvent], bool]:
        """Events for a QUERY event, and whether it ends the transaction (commit included)."""
        query = ev.query.strip()
        upper = query[:20].upper()
        if upper.startswith("BEGIN") or upper.startswith("START TRANSACTION"):
            txn.transactional = True
            return [], False
        if upper.startswith("COMMIT"):
            return self._commit(ev, txn), True
        if upper.startswith("ROLLBACK") and not upper.startswith("ROLLBACK TO"):
            return ([Rollback(txn.xid or "")] if txn.begun else []), True
        if upper.startswith("XA ") and txn.begun:
            raise ReplicationError(
                f"XA transaction {txn.xid} changes a captured table; XA is not supported",
                hint="exclude the table, or avoid XA on the source",
            )
        schema = ev.schema.decode() if isinstance(ev.schema, bytes) else str(ev.schema or "")
        ddl = classify_query(query, schema)
        if ddl is not None and ddl.kind == "unknown":
            raise ReplicationError(
                f"cannot tell which tables the DDL statement {query[:300]!r} at "
                f"{self._file}:{self._here} touches; stopping rather than drop it",
                hint="apply it to the target by hand if it touches a captured table, then "
                "resume capture from after it (or exclude the table and re-snapshot it)",
            )
        if ddl is not None and ddl.kind == "dropdb":
            # the database's tables the trail knows go, as a DROP TABLE of each would
            gone = ddl.tables[0].schema
            known = {**self._catalog, **txn.announced}
            tables = sorted(t for t, v in known.items() if t.schema == gone and v is not None)
            names = ", ".join(self._db.qualified(t) for t in tables)
            ddl = Ddl("drop", tables, text=f"DROP TABLE IF EXISTS {names}")
        selected = [t for t in (ddl.tables if ddl else []) if self._is_selected(t)]
        out: list[LogEvent] = []
        if ddl is not None and selected:
            if ddl.kind == "dml":
                raise ReplicationError(
                    f"a statement-logged change touches {selected[0]}: {query[:200]!r}; it "
                    "cannot be captured as rows",
                    hint="set binlog_format=ROW for every session (SET GLOBAL "
                    "binlog_format='ROW' and reconnect clients), then re-snapshot the table",
                )
            out += self._begin(txn)
            out += self._ddl_changes(ddl, selected, ddl.text or query, txn)
        if txn.transactional:
            return out, False
        return out + self._commit(ev, txn), True

    def _ddl_changes(
        self, ddl: Ddl, selected: list[TableId], query: str, txn: _Txn
    ) -> list[LogEvent]:
        out: list[LogEvent] = []
        xid = txn.xid or ""
        # the renames in statement order, over the names as they were before it: a swap
        # (`a TO tmp, b TO a, tmp TO b`) ends with a and b swapped and tmp gone
        names: dict[TableId, TableSchema | None] = {}
        for a, b in ddl.renamed:
            moved = names.pop(a) if a in names else self._known(txn, a)
            names[a] = None
            names[b] = replace(moved, table=b) if moved is not None else None
        if ddl.kind == "drop" and len(set(selected)) < len(set(ddl.tables)):
            # `DROP TABLE x, y` with y not selected: the trail (and the target) drop x only
            query = "DROP TABLE IF EXISTS " + ", ".join(
                f"{_quote(t.schema)}.{_quote(t.name)}" for t in dict.fromkeys(selected)
            )
        for table in dict.fromkeys(selected):
            prev = self._known(txn, table)
            version = (prev.version + 1) if prev else 1
            if ddl.kind == "truncate":
                out.append(RowEvent(xid, Change(Op.TRUNCATE, table, prev.version if prev else 1)))
                continue
            after: TableSchema | None
            if ddl.kind == "drop":
                after = None
            elif table in names:
                after = names[table]  # None: gone under this name
            else:
                after = derive_after_ddl(prev, table, ddl.parsed)
            if after is not None:
                after = replace(after, version=version)
            # the next table map of this table is decoded afresh (and re-announced if the
            # derivation above fell short)
            self._hints.pop(table, None)
            self._infos = {k: v for k, v in self._infos.items() if v.table != table}
            out.append(RowEvent(xid, Change(Op.DDL, table, version, ddl=query, table_schema=after)))
            txn.announced[table] = after
        return out

    def _commit(self, ev: Any, txn: _Txn) -> list[LogEvent]:
        position = self._position(self._here)  # the commit event's next position
        if txn.announced:
            self._catalog_gen += 1
        for table, schema in txn.announced.items():
            if schema is None:
                self._catalog.pop(table, None)
            else:
                self._catalog[table] = schema
        if not txn.begun:
            return [Heartbeat(position, source_time=_ts(ev.timestamp))]
        return [Commit(txn.xid or "", position, _ts(ev.timestamp))]

    def _run(self, stream: BinLogStreamReader | FastStream) -> Iterator[LogEvent]:
        txn = _Txn()
        in_group = False
        self._here = self._start.pos
        by_id = self._by_id
        for ev in stream:
            t = type(ev)
            if t is FastRows:
                self._here = ev.log_pos
                yield from self._fast_rows(ev, txn)
                continue
            if t is FastMap:
                self._here = ev.log_pos
                tm = ev.table_map
                info = by_id.get(tm.table_id)
                # the table map a transaction repeats before each statement: the same content
                # under the same id, its definition already checked against an unchanged
                # catalog, and nothing announced in this transaction that could shadow it
                if (
                    info is not None
                    and info.key is tm.cache_key
                    and info.verified == self._catalog_gen
                    and not txn.announced
                ):
                    continue
                yield from self._table_map(tm, txn)
                continue
            self._here = ev.log_pos if t is FastXid or t is FastGtid else ev.packet.log_pos
            if t in _OPS:
                yield from self._rows(ev, txn)
                continue
            if t is TableMapEvent:
                yield from self._table_map(ev, txn)
                continue
            ended = False
            if t is XidEvent or t is FastXid:
                yield from self._commit(ev, txn)
                ended = True
            elif t is MariadbGtidEvent or t is FastGtid:
                self._domains[ev.domain_id] = (ev.server_id, ev.gtid_seq_no)
                txn = _Txn(xid=ev.gtid, transactional=not ev.flags & _GTID_STANDALONE)
                in_group = True
            elif t is GtidEvent:
                from pymysqlreplication.gtid import Gtid, GtidSet

                self._gtid_set = (self._gtid_set or GtidSet(None)) + Gtid(ev.gtid)
                txn = _Txn(xid=ev.gtid)
                in_group = True
            elif t is QueryEvent:
                if not in_group:
                    txn = _Txn()
                    in_group = True
                events, ended = self._query(ev, txn)
                yield from events
            elif t is RotateEvent:
                self._file = ev.next_binlog
            elif t is HeartbeatLogEvent:
                if not in_group:
                    if self._stop.is_set():
                        return
                    # idle source: lets capture flush its group commit and confirm
                    yield Heartbeat(self._position(self._here))
            elif t is XAPrepareEvent:
                if txn.begun:
                    raise ReplicationError(
                        f"XA transaction {txn.xid} changes a captured table; XA is not supported",
                        hint="exclude the table, or avoid XA on the source",
                    )
                ended = True
            elif t is NotImplementedEvent:
                refuse_unknown(ev.event_type, f"{self._file}:{ev.packet.log_pos}", txn.xid)
            elif t not in BENIGN_CLASSES:
                # a class we do not handle (MySQL partial JSON updates, a malformed event, a
                # statement-based LOAD DATA ...): never let its rows go by silently
                refuse_unknown(ev.event_type, f"{self._file}:{ev.packet.log_pos}", txn.xid)
            if ended:
                txn = _Txn()
                in_group = False
                if self._stop.is_set():
                    return
            if not in_group and self._end is not None and self._reached_end(self._file, self._here):
                yield Heartbeat(self._position(self._here), caught_up=True)
                return
        if not self._stop.is_set():
            raise ConnectError(
                f"{self._db.endpoint.display}: the binlog stream ended unexpectedly",
                hint="capture reconnects by itself; check the server if this repeats",
            )


def _ts(timestamp: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, UTC)
