"""PostgreSQL capture: slot and publication management, and the pgoutput log reader.

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

import dataclasses
import datetime as dt
import decimal
import logging
import os
import re
import secrets
import select
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import psycopg
import psycopg.errors
import psycopg.pq
import psycopg.sql

from connectors.base import TableFilter
from connectors.errors import (
    ConfigError,
    ConnectError,
    MissingObjectError,
    ReplicationError,
    SchemaError,
    ToolkitError,
)
from connectors.log import Begin, Commit, Heartbeat, LogEvent, RowEvent
from connectors.model import (
    UNCHANGED,
    Change,
    Column,
    Interval,
    Json,
    Op,
    Row,
    TableId,
    TableSchema,
    Value,
    column_diff,
)
from connectors.postgres import enum_labels, pgoutput, schemaprobe
from connectors.postgres.ownership import (
    MARKER_NAME,
    SlotNames,
    check_owner,
    new_marker,
    resolve_names,
    write_marker,
)
from connectors.postgres.pgoutput import format_lsn, parse_lsn

if TYPE_CHECKING:
    from connectors.postgres import PostgreSQL

__all__ = [
    "PgLogReader",
    "SlotInfo",
    "SlotSetup",
    "check_replica_identity",
    "converter",
    "create_exported_slot",
    "drop_slot",
    "ensure_publication",
    "init_slot",
    "parse_array",
    "parse_interval",
    "server_identity",
    "slot_info",
    "temporary_slot_name",
]

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

#: how long slot creation may wait for running transactions before we give up
DEFAULT_SLOT_TIMEOUT: Final = 60.0
#: how often we tell the server where we are even when nothing happens (wal_sender_timeout is
#: 60 s by default; an idle reader also asks for a keepalive so filtered-out WAL gets confirmed)
STATUS_INTERVAL: Final = 5.0
#: at most one status message per this many seconds for confirmations alone
CONFIRM_INTERVAL: Final = 0.5
#: at most one marker fsync per this many seconds for heartbeats
MARKER_INTERVAL: Final = 1.0

# Session settings that fix the text format pgoutput's output functions produce, whatever the
# server's defaults: ISO dates, PostgreSQL-style intervals, UTC instants, hex bytea,
# round-trip-exact floats.
_SESSION_OPTIONS: Final = (
    "-c DateStyle=ISO -c IntervalStyle=postgres -c TimeZone=UTC -c bytea_output=hex "
    "-c extra_float_digits=3"
)


# --------------------------------------------------------------------------- values


def _text(raw: bytes) -> str:
    return raw.decode()


def _bool(raw: bytes) -> bool:
    return raw == b"t"


def _decimal(raw: bytes) -> decimal.Decimal:
    return decimal.Decimal(raw.decode())


def _bytea(raw: bytes) -> bytes:
    if raw[:2] != b"\\x":
        raise ValueError("bytea not in hex format")
    return bytes.fromhex(raw[2:].decode())


def _date(raw: bytes) -> dt.date:
    text = raw.decode()
    if text == "infinity":
        return dt.date.max
    if text == "-infinity":
        return dt.date.min
    return dt.date.fromisoformat(text)


def _time(raw: bytes) -> dt.time:
    text = raw.decode()
    if text.startswith("24:00:00"):
        # PostgreSQL allows 24:00:00; Python's time stops at 23:59:59.999999
        text = "23:59:59.999999" + text[8:].lstrip(".0123456789")
    return dt.time.fromisoformat(text)


def _timestamp(raw: bytes) -> dt.datetime:
    text = raw.decode()
    if text == "infinity":
        return dt.datetime.max
    if text == "-infinity":
        return dt.datetime.min
    return dt.datetime.fromisoformat(text)


def _timestamptz(raw: bytes) -> dt.datetime:
    text = raw.decode()
    if text == "infinity":
        return dt.datetime.max.replace(tzinfo=dt.UTC)
    if text == "-infinity":
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(text)


_INTERVAL_PART = re.compile(
    r"([+-]?\d+) (years|year|mons|mon|days|day)|([+-])?(\d+):(\d+):(\d+)(?:\.(\d+))?"
)


def parse_interval(text: str) -> Interval:
    """An interval in PostgreSQL's ``IntervalStyle=postgres`` output, e.g.
    ``1 year 2 mons -3 days +04:05:06.5``."""
    months = days = micros = 0
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _INTERVAL_PART.match(text, pos)
        if match is None:
            raise ValueError(f"cannot parse interval {text!r}")
        if match.group(1) is not None:
            n, unit = int(match.group(1)), match.group(2)
            if unit.startswith("year"):
                months += 12 * n
            elif unit.startswith("mon"):
                months += n
            else:
                days += n
        else:
            sign = -1 if match.group(3) == "-" else 1
            frac = (match.group(7) or "").ljust(6, "0")[:6]
            micros += sign * (
                (int(match.group(4)) * 3600 + int(match.group(5)) * 60 + int(match.group(6)))
                * 1_000_000
                + int(frac)
            )
        pos = match.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
    return Interval(months, days, micros)


def _interval(raw: bytes) -> Interval:
    return parse_interval(raw.decode())


def _uuid(raw: bytes) -> uuid.UUID:
    return uuid.UUID(raw.decode())


def _json(raw: bytes) -> Json:
    return Json(raw.decode())


Converter = Callable[[bytes], Value]

#: built-in type OIDs (pg_type.dat) and how their text output becomes a typed value
_BUILTIN: Final[dict[int, Converter]] = {
    16: _bool,
    17: _bytea,
    18: _text,  # "char"
    19: _text,  # name
    20: int,
    21: int,
    23: int,
    25: _text,
    26: int,  # oid
    114: _json,
    700: float,
    701: float,
    1042: _text,  # char(n): the padding is part of the value PostgreSQL sends
    1043: _text,
    1082: _date,
    1083: _time,
    1114: _timestamp,
    1184: _timestamptz,
    1186: _interval,
    1266: _time,  # timetz: fromisoformat keeps the offset
    1700: _decimal,
    2950: _uuid,
    3802: _json,
}

#: the converters above as a compiled tuple reader calls them inline (see
#: :func:`pgoutput.compile_tuple_reader`): ``(callable or None for str, takes str)``. They are
#: strict: a value they refuse (``±infinity``, a BC date) raises, and the row then takes the
#: general path through the converters above, which handle it or name the column.
_INLINE: Final[dict[Converter, tuple[Callable[[Any], Any] | None, bool]]] = {
    _text: (None, False),
    int: (int, False),
    float: (float, False),
    _bool: (b"t".__eq__, False),
    _decimal: (decimal.Decimal, True),
    _date: (dt.date.fromisoformat, True),
    _timestamp: (dt.datetime.fromisoformat, True),
    _timestamptz: (dt.datetime.fromisoformat, True),
    _json: (Json, True),
    _uuid: (uuid.UUID, True),
}


def parse_array(text: str, element: Converter, delimiter: str = ",") -> list[Any]:
    """A PostgreSQL array literal (``{1,NULL,"a \\"b\\""}``, nested for more dimensions) as
    a list of typed values; ``NULL`` elements become None."""
    if text.startswith("["):  # explicit bounds, e.g. [0:1]={1,2}: the values are what we keep
        text = text[text.index("=") + 1 :]
    if '"' not in text and text.count("{") == 1 and text[0] == "{" and text[-1] == "}":
        # one dimension, nothing quoted: PostgreSQL quotes any element holding a delimiter,
        # brace, quote, backslash or space, so a split is exact (the common OLTP case; the
        # character loop below is ~5x slower)
        if len(text) == 2:
            return []
        tokens = text[1:-1].split(delimiter)
        if (element is int or element is float) and "N" not in text and "n" not in text:
            return list(map(element, tokens))  # no NULL, NaN or Infinity: they take str too
        return [None if token.upper() == "NULL" else element(token.encode()) for token in tokens]
    value, pos = _array_level(text, 0, element, delimiter)
    if pos != len(text):
        raise ValueError(f"trailing characters in array literal {text!r}")
    return value


def _array_level(text: str, pos: int, element: Converter, delimiter: str) -> tuple[list[Any], int]:
    if text[pos] != "{":
        raise ValueError(f"array literal {text!r}: expected '{{' at {pos}")
    pos += 1
    out: list[Any] = []
    if text[pos] == "}":
        return out, pos + 1
    while True:
        ch = text[pos]
        if ch == "{":
            sub, pos = _array_level(text, pos, element, delimiter)
            out.append(sub)
        elif ch == '"':
            pos += 1
            buf = []
            while text[pos] != '"':
                if text[pos] == "\\":
                    pos += 1
                buf.append(text[pos])
                pos += 1
            pos += 1
            out.append(element("".join(buf).encode()))
        else:
            end = pos
            while text[end] != delimiter and text[end] != "}":
                end += 1
            token = text[pos:end].strip()
            out.append(None if token.upper() == "NULL" else element(token.encode()))
            pos = end
        if text[pos] == delimiter:
            pos += 1
            continue
        if text[pos] == "}":
            return out, pos + 1
        raise ValueError(f"array literal {text!r}: unexpected {text[pos]!r} at {pos}")


def converter(
    conn: psycopg.Connection[Any], type_oid: int, _cache: dict[int, Converter] | None = None
) -> Converter:
    """How a value of type ``type_oid`` arrives as text and becomes a typed value: built-ins
    directly, domains as their base type, arrays element by element, enums and anything
    else as text."""
    cache = _cache if _cache is not None else {}
    if type_oid in _BUILTIN:
        return _BUILTIN[type_oid]
    if type_oid in cache:
        return cache[type_oid]
    row = conn.execute(
        "SELECT typtype, typcategory, typbasetype, typelem, typdelim FROM pg_type WHERE oid = %s",
        (type_oid,),
    ).fetchone()
    conv: Converter = _text
    if row is not None:
        typtype, category, basetype, elem, delim = row
        if typtype == "d":
            conv = converter(conn, int(basetype), cache)
        elif category == "A" and int(elem):
            element = converter(conn, int(elem), cache)
            delimiter = str(delim)

            def conv(raw: bytes, _e: Converter = element, _d: str = delimiter) -> Value:
                return parse_array(raw.decode(), _e, _d)

    cache[type_oid] = conv
    return conv


# --------------------------------------------------------------------------- slot management


@dataclass(frozen=True)
class SlotInfo:
    """A replication slot as ``pg_replication_slots`` shows it."""

    name: str
    plugin: str
    database: str
    confirmed_flush: str | None
    restart_lsn: str | None
    wal_status: str | None
    active_pid: int | None


@dataclass(frozen=True)
class SlotSetup:
    """What :func:`init_slot` found or did, for the command to report."""

    slot: str
    publication: str
    slot_created: bool
    publication_created: bool
    tables_added: tuple[TableId, ...]
    #: where the slot starts (its consistent point when just created)
    position: str | None


def slot_info(conn: psycopg.Connection[Any], slot: str) -> SlotInfo | None:
    """The slot named ``slot`` on this server, or None."""
    row = conn.execute(
        "SELECT slot_name, coalesce(plugin, ''), coalesce(database, ''), "
        "confirmed_flush_lsn::text, restart_lsn::text, wal_status, active_pid "
        "FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if row is None:
        return None
    return SlotInfo(*row)


def server_identity(conn: psycopg.Connection[Any]) -> tuple[str, str]:
    """(database, system identifier) of ``conn``'s server; the identifier is "" when the role
    may not read it (``pg_control_system`` needs more than REPLICATION on some setups)."""
    try:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
        system = str(row[0]) if row else ""
    except psycopg.errors.InsufficientPrivilege:
        if not conn.autocommit:
            conn.rollback()
        system = ""
    return conn.info.dbname, system


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualified(table: TableId) -> str:
    return f"{_quote(table.schema)}.{_quote(table.name)}"


def check_replica_identity(conn: psycopg.Connection[Any], tables: Iterable[TableId]) -> None:
    """Raise SchemaError naming every table whose changes would come without a usable key."""
    bad = []
    for table in tables:
        row = conn.execute(
            "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid "
            "AND ((c.relreplident = 'd' AND i.indisprimary) "
            "OR (c.relreplident = 'i' AND i.indisreplident))) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (table.schema, table.name),
        ).fetchone()
        if row is None:
            raise MissingObjectError(f"table {table} does not exist on the PostgreSQL server")
        ident, has_key = row
        if ident == "n" or (ident in ("d", "i") and not has_key):
            bad.append(table)
    if bad:
        names = ", ".join(str(t) for t in bad)
        fixes = "; ".join(f"ALTER TABLE {_qualified(t)} REPLICA IDENTITY FULL" for t in bad)
        raise SchemaError(
            f"{names}: no primary key or replica identity index, so PostgreSQL would log "
            "updates and deletes without any way to find the row",
            hint=f"add a primary key, or run: {fixes}",
        )


def _ensure_publication(
    conn: psycopg.Connection[Any], publication: str, tables: Sequence[TableId]
) -> tuple[bool, tuple[TableId, ...]]:
    """Create ``publication`` for ``tables`` or add the ones it lacks."""
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,))
    if exists.fetchone() is None:
        if not tables:
            conn.execute(f"CREATE PUBLICATION {_quote(publication)}")
        else:
            names = ", ".join(_qualified(t) for t in tables)
            conn.execute(f"CREATE PUBLICATION {_quote(publication)} FOR TABLE {names}")
        return True, tuple(tables)
    have = {
        TableId(s, n)
        for s, n in conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
            (publication,),
        ).fetchall()
    }
    missing = tuple(t for t in tables if t not in have)
    if missing:
        names = ", ".join(_qualified(t) for t in missing)
        conn.execute(f"ALTER PUBLICATION {_quote(publication)} ADD TABLE {names}")
    return False, missing


def ensure_publication(
    conn: psycopg.Connection[Any], publication: str, tables: Sequence[TableId]
) -> tuple[bool, tuple[TableId, ...]]:
    """Create ``publication`` for ``tables`` or add the ones it lacks; returns (created,
    tables added). The snapshot calls it before it creates the slot (connectors/postgres/
    snapshot.py): pgoutput publishes a table's changes only from its publication onwards."""
    return _ensure_publication(conn, publication, tables)


def _create_slot(conn: psycopg.Connection[Any], slot: str, timeout: float) -> str:
    """Create the logical slot; PostgreSQL waits for every running transaction to end first."""
    conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
    try:
        row = conn.execute(
            "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,)
        ).fetchone()
    except psycopg.errors.QueryCanceled:
        blockers = conn.execute(
            "SELECT pid, xact_start, left(coalesce(query, ''), 60) FROM pg_stat_activity "
            "WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() "
            "ORDER BY xact_start LIMIT 5"
        ).fetchall()
        who = "; ".join(f"pid {p} open since {s:%Y-%m-%d %H:%M:%S} ({q!r})" for p, s, q in blockers)
        raise ReplicationError(
            f"creating replication slot {slot!r} timed out after {timeout:g} s: PostgreSQL "
            f"waits for every running transaction to end first ({who or 'they have ended now'})",
            hint="let those transactions finish (or end them with pg_terminate_backend(pid)) "
            "and run again",
        ) from None
    finally:
        conn.execute("SET statement_timeout = 0")
    assert row is not None
    return str(row[0])


def temporary_slot_name() -> str:
    """A name for a temporary slot no other session uses (dropped with its connection)."""
    return f"redoline_tmp_{os.getpid()}_{secrets.token_hex(4)}"


def create_exported_slot(
    db: PostgreSQL,
    slot: str,
    *,
    timeout: float = DEFAULT_SLOT_TIMEOUT,
    temporary: bool = False,
    waiting: Callable[[], None] | None = None,
) -> tuple[psycopg.Connection[Any], str, str]:
    """Create logical slot ``slot`` with an exported snapshot over a replication connection:
    (the connection, the slot's consistent point, the snapshot's name).

    The snapshot shows exactly the transactions whose commit record ends at or before the
    consistent point, which is a position in the sense of this module (a commit's end LSN).
    It can be imported (``SET TRANSACTION SNAPSHOT``) until the connection runs another
    command or closes; the caller closes it once every reader has it, which also drops a
    ``temporary`` slot. PostgreSQL waits for every running transaction to end before the
    slot is consistent: at most ``timeout`` seconds (the error names who blocks), calling
    ``waiting()`` every half second meanwhile (a streaming reader keeps its walsender alive).
    """
    from connectors.postgres import pg_conninfo

    args = pg_conninfo(db.endpoint, replication="database")
    repl = psycopg.connect(**args, autocommit=True)
    try:
        pg = repl.pgconn
        export = "(SNAPSHOT 'export')" if pg.server_version >= 150000 else "EXPORT_SNAPSHOT"
        kind = "TEMPORARY LOGICAL" if temporary else "LOGICAL"
        pg.send_query(f"CREATE_REPLICATION_SLOT {_quote(slot)} {kind} pgoutput {export}".encode())
        deadline = time.monotonic() + timeout
        while True:
            pg.consume_input()
            if not pg.is_busy():
                break
            left = deadline - time.monotonic()
            if left <= 0:
                repl.cancel_safe()
                raise _slot_timeout(db, slot, timeout)
            select.select([pg.socket], [], [], min(left, 0.5))
            if waiting is not None:
                waiting()
        result = pg.get_result()
        while pg.get_result() is not None:
            pass
        if result is None or result.status != psycopg.pq.ExecStatus.TUPLES_OK:
            message = (result.error_message if result is not None else b"").decode(errors="replace")
            raise ReplicationError(
                f"{db.endpoint.display}: creating replication slot {slot!r} failed: "
                f"{message.strip()}",
                hint="the role needs the REPLICATION attribute and wal_level = logical, and "
                "max_replication_slots room for one more (see `redoline check`)",
            )
        return repl, _result_text(result, 1), _result_text(result, 2)
    except BaseException:
        repl.close()
        raise


def _result_text(result: Any, column: int) -> str:
    raw = result.get_value(0, column)
    return bytes(raw).decode() if raw is not None else ""


def _slot_timeout(db: PostgreSQL, slot: str, timeout: float) -> ReplicationError:
    rows = db.query(
        "SELECT pid, xact_start, left(coalesce(query, ''), 60) FROM pg_stat_activity "
        "WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() "
        "ORDER BY xact_start LIMIT 5"
    )
    who = "; ".join(f"pid {p} open since {s:%Y-%m-%d %H:%M:%S} ({q!r})" for p, s, q in rows)
    return ReplicationError(
        f"creating replication slot {slot!r} timed out after {timeout:g} s: PostgreSQL "
        f"waits for every running transaction to end first ({who or 'they have ended now'})",
        hint="let those transactions finish (or end them with pg_terminate_backend(pid)) "
        "and run again",
    )


def init_slot(
    db: PostgreSQL,
    tables: Sequence[TableId],
    *,
    slot: str | None = None,
    publication: str | None = None,
    trail_dir: Path | str | None = None,
    source_id: str | None = None,
    timeout: float = DEFAULT_SLOT_TIMEOUT,
) -> SlotSetup:
    """Create or reuse the slot and the publication for ``tables`` (checked for a usable
    replica identity first).

    Names come from :func:`connectors.postgres.ownership.resolve_names`. With ``trail_dir``
    the slot is bound to that trail: a slot it creates is recorded in the trail's marker, an
    existing one is reused only when the marker says it is this trail's, and nothing is
    created or altered before that is settled.
    """
    names = resolve_names(
        slot=slot, publication=publication, trail_dir=trail_dir, source_id=source_id
    )
    try:
        with db.connect() as conn:
            database, system = server_identity(conn)
            info = slot_info(conn, names.slot)
            check_owner(
                names,
                info is not None,
                database=database,
                system=system,
                where=db.endpoint.display,
            )
            if info is not None and (info.plugin != "pgoutput" or info.database != database):
                raise ReplicationError(
                    f"replication slot {names.slot!r} exists but belongs to database "
                    f"{info.database!r} with plugin {info.plugin!r}, not {database!r}/pgoutput",
                    hint="choose another slot name",
                )
            check_replica_identity(conn, tables)
            pub_created, added = _ensure_publication(conn, names.publication, tables)
            created = info is None
            if info is None:
                position: str | None = _create_slot(conn, names.slot, timeout)
                assert position is not None
                if names.trail_dir is not None:
                    write_marker(names.trail_dir, new_marker(names, database, system, position))
            else:
                position = info.confirmed_flush
    except psycopg.Error as exc:
        raise _map(exc, db) from None
    return SlotSetup(names.slot, names.publication, created, pub_created, added, position)


def drop_slot(
    db: PostgreSQL,
    *,
    slot: str | None = None,
    publication: str | None = None,
    trail_dir: Path | str | None = None,
    source_id: str | None = None,
) -> tuple[bool, bool]:
    """Drop the slot and the publication; returns which of the two existed.

    With ``trail_dir`` only the slot that trail recorded is dropped (a trail without a marker
    owns nothing, and a name other than the recorded one is refused), and the marker is then
    flagged ``dropped`` so the trail is never continued from a slot created later.
    """
    names = resolve_names(
        slot=slot, publication=publication, trail_dir=trail_dir, source_id=source_id
    )
    marker = names.marker
    if names.trail_dir is not None:
        if marker is None:
            raise ConfigError(
                f"this trail ({names.trail_dir}) records no replication slot "
                f"({MARKER_NAME} is missing), so it owns none: nothing was dropped",
                key="source.slot",
                hint="point --trail/[trail] dir at the pipeline whose slot to drop; a slot no "
                f"trail owns is dropped with SELECT pg_drop_replication_slot('{names.slot}')",
            )
        if marker.get("slot") and marker["slot"] != names.slot:
            raise ConfigError(
                f"this trail ({names.trail_dir}) owns replication slot {marker['slot']!r}, "
                f"not {names.slot!r}: nothing was dropped",
                key="source.slot",
                hint="leave --slot out to drop this trail's own slot",
            )
    try:
        with db.connect() as conn:
            info = slot_info(conn, names.slot)
            if info is not None:
                if info.active_pid:
                    raise ReplicationError(
                        f"replication slot {names.slot!r} is in use by process {info.active_pid}",
                        hint="stop `redoline capture` first",
                    )
                conn.execute("SELECT pg_drop_replication_slot(%s)", (names.slot,))
            pub = conn.execute(
                "SELECT 1 FROM pg_publication WHERE pubname = %s", (names.publication,)
            )
            had_pub = pub.fetchone() is not None
            if had_pub:
                conn.execute(f"DROP PUBLICATION {_quote(names.publication)}")
    except psycopg.Error as exc:
        raise _map(exc, db) from None
    if names.trail_dir is not None and marker is not None and not marker.get("dropped"):
        # a slot created later under the same name must not pass for this trail's
        write_marker(names.trail_dir, {**marker, "dropped": dt.datetime.now(dt.UTC).isoformat()})
    return info is not None, had_pub


def _map(exc: BaseException, db: PostgreSQL) -> ToolkitError:
    from connectors.postgres import map_error

    text = str(exc).lower()
    if "has already been removed" in text or "can no longer get changes" in text:
        return ReplicationError(
            f"{db.endpoint.display}: the WAL the replication slot needs is gone ({exc})",
            hint="the slot fell too far behind (max_slot_wal_keep_size) and was invalidated: "
            "drop it (`redoline drop`), then start a new trail with a new snapshot",
        )
    if "replication slot" in text and "does not exist" in text:
        return ReplicationError(
            f"{db.endpoint.display}: {str(exc).strip()}",
            hint="the slot was dropped; the changes since our position are lost: start a new "
            "trail with a new snapshot",
        )
    if "is active for pid" in text:
        return ReplicationError(
            f"{db.endpoint.display}: {str(exc).strip()}",
            hint="another process reads this slot; stop it, or give capture its own slot",
        )
    return map_error(exc, db.endpoint)


# --------------------------------------------------------------------------- reading


def _no_reader(buf: bytes, pos: int) -> tuple[Row, int]:
    raise pgoutput.TupleShapeError  # a relation not selected (or not announced) is never read


@dataclass
class _NewTables:
    """New tables' snapshot: its exact point and the transaction that holds it."""

    point: int
    tables: tuple[TableId, ...]
    conn: psycopg.Connection[Any]


@dataclass(slots=True)
class _Relation:
    """What we know about a relation id in this stream."""

    table: TableId
    selected: bool
    schema: TableSchema | None = None
    names: tuple[str, ...] = ()
    converters: tuple[Converter, ...] = ()
    identity: tuple[str, ...] = ()
    #: a TupleData at an offset -> (row, next offset), compiled for this shape
    read: Callable[[bytes, int], tuple[Row, int]] = _no_reader
    #: a row -> its identity columns
    pick: Callable[[Row], Row] = dict


def _key_picker(identity: tuple[str, ...]) -> Callable[[Row], Row]:
    if len(identity) == 1:
        (name,) = identity
        return lambda row: {name: row[name]}
    return lambda row: {k: row[k] for k in identity}


_STATUS = struct.Struct(">cQQQqB")
_RELID = struct.Struct(">I")


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
        self._announced: dict[TableId, TableSchema] = dict(known)
        self._marker_path = Path(trail_dir) / MARKER_NAME if trail_dir else None
        self._marker_written = 0.0
        self._marker: dict[str, Any] = dict(self.names.marker or {})
        self._relations: dict[int, _Relation] = {}
        self._type_cache: dict[int, Converter] = {}
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
            raise _map(exc, self.db) from None

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
                return  # a later heartbeat confirms it; keeps fsyncs rare under filtered load
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
                self._send_status()  # hand the server the last confirmation before leaving
            except (ToolkitError, psycopg.Error):
                pass
        for conn in (self._stream, self._catalog, *(s.conn for s in self._snaps)):
            if conn is not None:
                try:
                    conn.close()
                except psycopg.Error:
                    pass
        self._stream = self._catalog = None
        self._snaps = []

    # ---------------------------------------------------------------- opening

    def _open(self) -> None:
        if self._opened:
            return
        self._opened = True
        try:
            self._catalog = self.db.connect()
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
                self._check_slot(info, database, system)
                _, added = _ensure_publication(conn, self.publication, selected)
                added = tuple(t for t in added if t not in self.tables.also)
                if added:
                    log.warning(
                        "added %s to publication %s: their changes are captured from now on",
                        ", ".join(map(str, added)),
                        self.publication,
                    )
            # a new table whose snapshot had not reached the trail when the last run ended
            # is new again: snapshot it (again) before its changes are handed out
            unloaded = {TableId.parse(t) for t in self._marker.get(_NEW_KEY, ())}
            self._published = set(selected) - unloaded
            # (and until then, none of their changes: they are in its snapshot or after it)
            self._pending = dict.fromkeys(unloaded & set(selected), _NOT_TAKEN)
            self._new_check = 0.0 if unloaded else time.monotonic()
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
            raise _map(exc, self.db) from None

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

    def _check_slot(self, info: SlotInfo, database: str, system: str) -> None:
        if info.plugin != "pgoutput" or info.database != database:
            raise ReplicationError(
                f"replication slot {self.slot!r} belongs to database {info.database!r} with "
                f"plugin {info.plugin!r}, not {database!r}/pgoutput",
                hint="give this pipeline its own slot name ([source] slot / --slot)",
            )
        if info.wal_status == "lost":
            raise ReplicationError(
                f"replication slot {self.slot!r} was invalidated: the WAL it needs is gone",
                hint="it fell behind max_slot_wal_keep_size; drop it (`redoline drop`), then "
                "start a new trail with a new snapshot",
            )
        if self.start is not None and info.confirmed_flush:
            # without a trail directory the marker's check did not run: the trail's own
            # position is the limit (see the module doc)
            confirmed = parse_lsn(info.confirmed_flush)
            if confirmed > self.start:
                raise ReplicationError(
                    f"replication slot {self.slot!r} is at {info.confirmed_flush}, ahead of the "
                    f"trail's position {format_lsn(self.start)}: it was recreated or advanced "
                    "by something else, and the changes in between are lost",
                    hint="give each pipeline its own slot ([source] slot); start a new trail "
                    "and take a new snapshot",
                )

    def _start_stream(self) -> None:
        from connectors.postgres import pg_conninfo

        args = pg_conninfo(self.db.endpoint, replication="database", options=_SESSION_OPTIONS)
        args.pop("connect_timeout", None)
        self._stream = psycopg.connect(**args, connect_timeout=10, autocommit=True)
        pg = self._stream.pgconn
        start = format_lsn(self.start or 0)
        command = (
            f"START_REPLICATION SLOT {_quote(self.slot)} LOGICAL {start} "
            f"(proto_version '1', publication_names '{self.publication}'"
            + (", messages 'true')" if self._probe is not None and self._probe.enabled else ")")
        )
        pg.send_query(command.encode())
        result = pg.get_result()
        if result is None or result.status != psycopg.pq.ExecStatus.COPY_BOTH:
            message = (result.error_message if result is not None else b"").decode(errors="replace")
            raise _map(psycopg.OperationalError(message or "START_REPLICATION failed"), self.db)
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
        return _map(psycopg.OperationalError(text), self.db)

    def _send_status(self, reply: bool = False) -> None:
        if self._stream is None:
            return
        now = int((time.time() - 946_684_800) * 1_000_000)
        # write = flush = apply = what is durable in the trail: the server may recycle WAL
        # only up to there, and keeps pinging us while it has sent more than that
        lsn = self._confirmed
        msg = _STATUS.pack(b"r", lsn, lsn, lsn, now, 1 if reply else 0)
        pg = self._stream.pgconn
        if pg.put_copy_data(msg) != 1 or pg.flush() < 0:
            raise ConnectError(f"{self.db.endpoint.display}: the replication connection dropped")
        self._last_status = time.monotonic()

    def _read(self) -> Iterator[LogEvent]:
        decode = pgoutput.decode
        relations = self._relations
        unpack_relid = _RELID.unpack_from
        in_txn = False
        begun = False  # a Begin was handed out for the current transaction
        xid = ""
        origin: str | None = None
        skip = False
        end = self._end
        poll = 0.5 if end is not None else 1.0
        drop: set[TableId] = set()  # new tables whose changes this transaction must not carry
        if end is not None and self._last >= end and not self._moved_end():
            yield Heartbeat(format_lsn(self._last), caught_up=True)
            return
        end = self._end
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
                if end is None and not in_txn:
                    self._check_new_tables()
                    if time.monotonic() - self._probed > PROBE_INTERVAL:
                        self._run_probe()
                # idle: ask where the server is, so a stretch of WAL with nothing for us still
                # gets confirmed, and --until-caught-up notices it has arrived
                if end is not None or time.monotonic() - self._last_status > self.status_interval:
                    self._send_status(reply=True)
                continue
            kind = frame[0]
            if kind == 0x6B:  # 'k' primary keepalive: wal_end, time, reply requested
                wal_end, _ts, reply = struct.unpack_from(">QqB", frame, 1)
                if self._snaps and not in_txn and wal_end >= self._snaps[0].point:
                    yield from self._emit_new(wal_end)
                if not in_txn and wal_end > self._last:
                    self._last = wal_end
                    caught = end is not None and wal_end >= end
                    if caught and self._moved_end():
                        end, caught = self._end, False
                    yield Heartbeat(format_lsn(wal_end), caught_up=caught)
                    if caught:
                        return
                if reply:
                    self._send_status()
                continue
            if kind != 0x77:  # 'w' XLogData: start, end, time, then the message
                raise ReplicationError(f"unexpected replication frame {chr(kind)!r}")
            if time.monotonic() - self._last_status > self.status_interval:
                self._send_status()
            tag = frame[25]
            if tag == 0x49 or tag == 0x55 or tag == 0x44:  # Insert, Update, Delete
                if skip:
                    continue
                rel = relations[unpack_relid(frame, 26)[0]]
                if not rel.selected or (drop and rel.table in drop):
                    continue
                change = self._fast_change(rel, frame)
                if not begun:
                    begun = True
                    yield Begin(xid)
                yield RowEvent(xid, change, len(frame))
                continue
            msg = decode(frame[25:])
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
                self._last = msg.end_lsn
                if begun:
                    self._last_commit = msg.end_lsn
                position = format_lsn(msg.end_lsn)
                caught = end is not None and msg.end_lsn >= end
                if caught and self._moved_end():
                    end, caught = self._end, False
                if begun:
                    yield Commit(xid, position, msg.commit_time, origin)
                    if caught:
                        yield Heartbeat(position, caught_up=True)
                else:
                    yield Heartbeat(position, caught_up=caught, source_time=msg.commit_time)
                if caught:
                    return
                if end is None and time.monotonic() - self._new_check >= NEW_TABLE_CHECK:
                    self._check_new_tables()  # a busy stream is seldom idle for a whole poll
            elif isinstance(msg, pgoutput.RelationMsg):
                quiet = msg.namespace, msg.name
                if self._pending and TableId(*quiet) in self._pending:
                    # its definition is announced with its snapshot's rows
                    self._relation_quiet(msg)
                    continue
                for event in self._relation(msg, xid, begun):
                    if not begun:
                        begun = True
                        yield Begin(xid)
                    yield event
            elif isinstance(msg, pgoutput.TruncateMsg):
                if skip:
                    continue
                for relid in msg.relids:
                    rel = self._relations[relid]
                    if rel.selected and not (drop and rel.table in drop):
                        if not begun:
                            begun = True
                            yield Begin(xid)
                        assert rel.schema is not None
                        yield RowEvent(
                            xid, Change(Op.TRUNCATE, rel.table, schema_version=rel.schema.version)
                        )
            elif isinstance(msg, pgoutput.OriginMsg):
                origin = msg.name
            elif isinstance(msg, pgoutput.TypeMsg):
                self._type_cache.pop(msg.type_oid, None)
            elif isinstance(msg, pgoutput.MessageMsg):
                # our own column-change marker stands for the Relation message no row change
                # has carried yet (schemaprobe); other messages are not ours
                if skip or not msg.transactional or msg.prefix != schemaprobe.PREFIX:
                    continue
                for rel_msg in schemaprobe.relations(msg.content):
                    for event in self._relation(rel_msg, xid, begun):
                        if not begun:
                            begun = True
                            yield Begin(xid)
                        yield event

    def _moved_end(self) -> bool:
        """At the end of an --until-caught-up run: a column change made after the start-up
        probe (a row change announced an added column, then the column went with no row change
        after it) is written now and the end moves past it. True when it moved."""
        if self._probe is None or self._end_probes >= 3:
            return False
        self._end_probes += 1
        if not self._probe.run(self._published, self._announced):
            return False
        assert self._catalog is not None
        row = self._catalog.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        self._end = parse_lsn(str(row[0]))
        return True

    def _run_probe(self) -> None:
        self._probed = time.monotonic()
        if self._probe is not None:
            self._probe.run(self._published, self._announced)

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
            _ensure_publication(self._catalog, self.publication, new)
        except psycopg.errors.UndefinedTable:
            return  # dropped again meanwhile: the next look decides
        repl, point, snapshot = create_exported_slot(
            self.db,
            temporary_slot_name(),
            timeout=self.slot_timeout,
            temporary=True,
            waiting=self._send_status,
        )
        try:
            conn = self.db.connect(options=_SESSION_OPTIONS)
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
                    yield from self._snapshot_rows(snap, table, xid)
                yield Commit(xid, format_lsn(snap.point), dt.datetime.now(dt.UTC))
            finally:
                snap.conn.close()
            self._last = self._last_commit = max(self._last, snap.point)
            for table in snap.tables:
                self._pending.pop(table, None)
                self._published.add(table)
                self._awaiting[table] = snap.point
            log.info("new table(s) %s loaded at %s", ", ".join(map(str, snap.tables)), xid)

    def _snapshot_rows(self, snap: _NewTables, table: TableId, xid: str) -> Iterator[RowEvent]:
        conn = snap.conn
        rows = conn.execute(
            "SELECT c.oid, c.relreplident, a.attname, a.atttypid, a.atttypmod, "
            "c.relreplident = 'f' OR coalesce(a.attnum = ANY (SELECT unnest(i.indkey::int2[]) "
            "FROM pg_index i WHERE i.indrelid = c.oid AND ((c.relreplident = 'd' AND "
            "i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))), false) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
            "AND NOT a.attisdropped AND a.attgenerated = '' "
            "WHERE n.nspname = %s AND c.relname = %s ORDER BY a.attnum",
            (table.schema, table.name),
        ).fetchall()
        if not rows:
            log.warning("new table %s was gone at its snapshot point: nothing to load", table)
            return
        # the shape pgoutput announces (live, stored columns in attnum order)
        msg = pgoutput.RelationMsg(
            int(rows[0][0]),
            table.schema,
            table.name,
            str(rows[0][1]),
            tuple(
                pgoutput.RelationColumn(str(name), int(oid), int(mod), bool(key))
                for _relid, _ident, name, oid, mod, key in rows
            ),
        )
        yield from self._relation(msg, xid, True)
        rel = self._relations[msg.relid]
        assert rel.schema is not None
        version = rel.schema.version
        yield RowEvent(xid, Change(Op.TRUNCATE, table, schema_version=version))
        select_list = ", ".join(_quote(c.name) for c in msg.columns)
        pg = conn.pgconn
        conn.execute(
            f"DECLARE redoline_new NO SCROLL CURSOR FOR SELECT {select_list} "
            f"FROM {_qualified(table)}"
        )
        ident, pick = rel.identity, rel.pick
        width = len(msg.columns)
        while True:
            # text results straight from libpq: the same output functions pgoutput uses
            res = pg.exec_(b"FETCH 2000 FROM redoline_new")
            if res.status != psycopg.pq.ExecStatus.TUPLES_OK:
                message = res.error_message.decode(errors="replace").strip()
                raise _map(psycopg.OperationalError(message), self.db)
            if res.ntuples == 0:
                break
            for i in range(res.ntuples):
                values: list[pgoutput.TupleValue] = []
                for j in range(width):
                    raw = res.get_value(i, j)
                    values.append(None if raw is None else bytes(raw))
                after = self._row(rel, values)
                key = pick(after) if ident else None
                yield RowEvent(xid, Change(Op.INSERT, table, version, key, None, after))
        conn.execute("CLOSE redoline_new")

    def _relation_quiet(self, msg: pgoutput.RelationMsg) -> None:
        """Take a new table's shape without announcing it (its snapshot will)."""
        announced = dict(self._announced)
        for _ in self._relation(msg, "", False):
            pass
        self._announced = announced

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

    # ---------------------------------------------------------------- decoding

    def _fast_change(self, rel: _Relation, frame: bytes) -> Change:
        """The change an Insert/Update/Delete XLogData frame carries, read straight from the
        frame by the relation's compiled reader (the pgoutput message starts at offset 25).

        Same result as :meth:`_row_change` over :func:`pgoutput.decode`, which it falls back
        to for anything the compiled reader refuses, so that path reports the errors.
        """
        assert rel.schema is not None
        read, pick = rel.read, rel.pick
        ident = rel.identity
        tag = frame[25]
        try:
            if tag == 0x49:  # Insert: relid, 'N', new tuple
                if frame[30] != 0x4E:
                    raise pgoutput.TupleShapeError
                after, _ = read(frame, 31)
                key = pick(after) if ident else None
                return Change(Op.INSERT, rel.table, rel.schema.version, key, None, after)
            kind = frame[30]
            if tag == 0x55:  # Update: relid, optional 'K'/'O' old tuple, 'N' new tuple
                if kind == 0x4E:
                    after, _ = read(frame, 31)
                    before = {k: after[k] for k in ident}  # the key did not change
                elif kind == 0x4B or kind == 0x4F:
                    old, pos = read(frame, 31)
                    if frame[pos] != 0x4E:
                        raise pgoutput.TupleShapeError
                    after, _ = read(frame, pos + 1)
                    if kind == 0x4B:
                        before = pick(old)
                    else:
                        before = old
                        for name, value in after.items():  # see _row_change
                            if value is UNCHANGED and before.get(name) is not UNCHANGED:
                                after[name] = before[name]
                else:
                    raise pgoutput.TupleShapeError
                key = pick(before) if ident else None
                return Change(Op.UPDATE, rel.table, rel.schema.version, key, before, after)
            # Delete: relid, 'K'/'O', old tuple
            old, _ = read(frame, 31)
            before = pick(old) if kind == 0x4B else old
            key = pick(before) if ident else None
            return Change(Op.DELETE, rel.table, rel.schema.version, key, before)
        except (ValueError, ArithmeticError, IndexError, struct.error):
            msg = pgoutput.decode(frame[25:])
            assert isinstance(msg, pgoutput.InsertMsg | pgoutput.UpdateMsg | pgoutput.DeleteMsg)
            return self._row_change(rel, msg)

    def _row(self, rel: _Relation, values: list[pgoutput.TupleValue]) -> Row:
        row: Row = {}
        for name, conv, raw in zip(rel.names, rel.converters, values, strict=True):
            if type(raw) is bytes:
                try:
                    row[name] = conv(raw)
                except (ValueError, ArithmeticError, IndexError) as exc:
                    col = rel.schema.column(name) if rel.schema else None
                    raise SchemaError(
                        f"{rel.table}.{name}: cannot read the value {raw[:80]!r} of type "
                        f"{col.source_type if col else '?'} ({exc})",
                        hint="exclude the column or table, or report this as a bug",
                    ) from None
            else:
                row[name] = raw  # None or UNCHANGED
        return row

    def _key_only(self, rel: _Relation, values: list[pgoutput.TupleValue]) -> Row:
        row = self._row(rel, values)
        return {k: row[k] for k in rel.identity}

    def _row_change(
        self, rel: _Relation, msg: pgoutput.InsertMsg | pgoutput.UpdateMsg | pgoutput.DeleteMsg
    ) -> Change:
        assert rel.schema is not None
        version = rel.schema.version
        ident = rel.identity
        if isinstance(msg, pgoutput.InsertMsg):
            after = self._row(rel, msg.new)
            key = {k: after[k] for k in ident} if ident else None
            return Change(Op.INSERT, rel.table, version, key=key, after=after)
        if isinstance(msg, pgoutput.UpdateMsg):
            after = self._row(rel, msg.new)
            if msg.old is None:  # the key did not change
                before = {k: after[k] for k in ident}
            elif msg.old_kind == "K":
                before = self._key_only(rel, msg.old)
            else:
                before = self._row(rel, msg.old)
                # REPLICA IDENTITY FULL logs the old value of an unchanged TOASTed column, so
                # the after image can be completed instead of carrying the marker
                for name, value in after.items():
                    if value is UNCHANGED and before.get(name) is not UNCHANGED:
                        after[name] = before[name]
            key = {k: before[k] for k in ident} if ident else None
            return Change(Op.UPDATE, rel.table, version, key=key, before=before, after=after)
        if msg.old_kind == "K":
            before = self._key_only(rel, msg.old)
        else:
            before = self._row(rel, msg.old)
        key = {k: before[k] for k in ident} if ident else None
        return Change(Op.DELETE, rel.table, version, key=key, before=before)

    def _relation(self, msg: pgoutput.RelationMsg, xid: str, begun: bool) -> Iterator[RowEvent]:
        """Record a relation's shape; a new or changed shape of a selected table becomes a
        schema history entry (a DDL change with the new definition) in this transaction."""
        table = TableId(msg.namespace, msg.name)
        selected = self.tables(table)
        rel = _Relation(table, selected)
        self._relations[msg.relid] = rel
        if not selected:
            return
        schema = self._schema(msg, table)
        known = self._announced.get(table)
        if known is not None and dataclasses.replace(known, version=schema.version) == schema:
            schema = known
        else:
            schema = dataclasses.replace(schema, version=(known.version + 1) if known else 1)
            self._announced[table] = schema
            # pgoutput carries no DDL: a changed column list becomes the ALTER TABLE that
            # brings the previous definition to this one (apply translates it per target)
            ddl = self._alter_sql(table, known, schema) if known is not None else None
            yield RowEvent(
                xid,
                Change(Op.DDL, table, schema.version, ddl=ddl, table_schema=schema),
            )
        assert self._catalog is not None
        rel.schema = schema
        rel.names = tuple(c.name for c in msg.columns)
        rel.converters = tuple(
            converter(self._catalog, c.type_oid, self._type_cache) for c in msg.columns
        )
        rel.identity = schema.identity
        rel.read = pgoutput.compile_tuple_reader(
            [
                (name, *_INLINE.get(conv, (conv, False)))
                for name, conv in zip(rel.names, rel.converters, strict=True)
            ]
        )
        rel.pick = _key_picker(rel.identity)

    def _alter_sql(self, table: TableId, old: TableSchema, new: TableSchema) -> str | None:
        """The PostgreSQL ALTER TABLE statements taking ``old``'s columns to ``new``'s (None:
        the columns did not change, only keys or NOT NULL).

        A Relation message names no attnum, so a column renamed in place looks like a drop
        plus an add at the same position. The catalog tells them apart: a renamed column
        keeps its attnum, an added one gets a fresh one after the dropped column's slot (which
        stays in pg_attribute as attisdropped). Where the catalog cannot confirm a rename
        (it changed again since, or an older dropped slot sits in between) the change is a
        drop plus an add and the warning says the old values are not carried.
        """
        assert self._catalog is not None
        attrs = self._catalog.execute(
            "SELECT a.attnum, a.attname, a.attisdropped FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 ORDER BY a.attnum",
            (table.schema, table.name),
        ).fetchall()
        live = {str(name): int(num) for num, name, dropped in attrs if not dropped}
        dropped_nums = [int(num) for num, _name, dropped in attrs if dropped]

        def is_rename(old_name: str, new_name: str) -> bool:
            num = live.get(new_name)
            if num is None:
                return False  # renamed or dropped again since: the catalog cannot tell
            # the old definition's other columns the catalog still has, by attnum
            others = [live[c.name] for c in old.columns if c.name != old_name and c.name in live]
            if any(n > num for n in others):
                return True  # older than a column that was there before: not just added
            below = max((n for n in others if n < num), default=0)
            # an added column's attnum comes after the dropped one's slot
            return not any(below < d < num for d in dropped_nums)

        diff = column_diff(old, new, is_rename)
        if not diff:
            return None
        name = _qualified(table)
        parts = [
            f"ALTER TABLE {name} RENAME COLUMN {_quote(a)} TO {_quote(b)}" for a, b in diff.renamed
        ]
        actions = [f"DROP COLUMN {_quote(c)}" for c in diff.dropped]
        actions += [f"ADD COLUMN {_quote(c.name)} {c.source_type}" for c in diff.added]
        actions += [f"ALTER COLUMN {_quote(c.name)} TYPE {c.source_type}" for c in diff.retyped]
        if actions:
            parts.append(f"ALTER TABLE {name} " + ", ".join(actions))
        for a, b in diff.renamed:
            log.info("%s: column %s renamed to %s (the catalog keeps its attnum)", table, a, b)
        if diff.dropped and diff.added:
            log.warning(
                "%s: columns %s gone and %s new in the same change: replicated as DROP + ADD "
                "COLUMN; if that was a rename the catalog could not confirm, the target loses "
                "the old values of that column (re-snapshot the table to reload them)",
                table,
                ", ".join(diff.dropped),
                ", ".join(c.name for c in diff.added),
            )
        return "; ".join(parts)

    def _schema(self, msg: pgoutput.RelationMsg, table: TableId) -> TableSchema:
        """The table definition a Relation message describes, refined from the catalog where
        the catalog still agrees (NOT NULL, keys): the message is authoritative for what the
        rows look like at this point of the log, the catalog may already be newer."""
        from connectors.postgres import _column, introspect

        assert self._catalog is not None
        conn = self._catalog
        key_cols = tuple(c.name for c in msg.columns if c.key)
        if msg.replident == "n" or (msg.replident in ("d", "i") and not key_cols):
            raise SchemaError(
                f"{table}: no primary key or replica identity index, so PostgreSQL logs its "
                "updates and deletes without any way to find the row",
                hint=f"add a primary key, or run: ALTER TABLE {_qualified(table)} "
                "REPLICA IDENTITY FULL",
            )
        try:
            current: TableSchema | None = introspect(conn, table)
        except MissingObjectError:
            current = None
        now = {c.name: c for c in current.columns} if current else {}
        rows = conn.execute(
            "SELECT format_type(c.oid, c.typmod), coalesce(bt.typname, t.typname), "
            "coalesce(bt.typtype, t.typtype), coalesce(bt.typcategory, t.typcategory), "
            "CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE c.typmod END, et.typname, "
            "coalesce(bt.oid, t.oid) "
            "FROM unnest(%s::oid[], %s::int[]) WITH ORDINALITY c(oid, typmod, ord) "
            "JOIN pg_type t ON t.oid = c.oid "
            "LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype "
            "LEFT JOIN pg_type et ON et.oid = coalesce(bt.typelem, t.typelem) "
            "AND coalesce(bt.typcategory, t.typcategory) = 'A' ORDER BY c.ord",
            ([c.type_oid for c in msg.columns], [c.typmod for c in msg.columns]),
        ).fetchall()
        columns: list[Column] = []
        for col, (formatted, typname, typtype, category, typmod, elem, base_oid) in zip(
            msg.columns, rows, strict=True
        ):
            same = now.get(col.name)
            if same is not None and same.source_type == formatted:
                columns.append(same)
                continue
            labels = enum_labels(conn, base_oid) if typtype == "e" else ()
            columns.append(
                _column(
                    col.name,
                    str(formatted),
                    False,
                    str(typname),
                    str(typtype),
                    str(category),
                    int(typmod),
                    elem,
                    labels,
                    False,
                )
            )
        names = {c.name for c in columns}
        primary: tuple[str, ...] = ()
        uniques: list[tuple[str, ...]] = []
        if current is not None:
            if current.primary_key and set(current.primary_key) <= names:
                primary = current.primary_key
            uniques = [u for u in current.unique_keys if set(u) <= names]
        if msg.replident == "d":
            primary = key_cols  # the log's own word on what the key was
        elif msg.replident == "i" and key_cols not in uniques and key_cols != primary:
            uniques.insert(0, key_cols)
        return TableSchema(
            table,
            tuple(columns),
            primary,
            tuple(uniques),
            full_before_image=msg.replident == "f",
        )
