"""PostgreSQL slot and publication administration for capture and snapshot.

What ``redoline init`` / ``drop`` and a capture's first start do on the server: the
publication that lists the selected tables, the logical replication slot (created with
``pg_create_logical_replication_slot``, or over a replication connection with an exported
snapshot when a snapshot must match its consistent point), checks of the slot and of each
table's replica identity, and the mapping of the errors a slot's stream ends with. Which
slot a trail owns, and why one it did not create is refused, is
:mod:`connectors.postgres.ownership`; reading the slot is :mod:`connectors.postgres.logical`.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import select
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import psycopg
import psycopg.errors
import psycopg.pq

from connectors.errors import (
    ConfigError,
    MissingObjectError,
    ReplicationError,
    SchemaError,
    ToolkitError,
)
from connectors.model import TableId
from connectors.postgres.ownership import (
    MARKER_NAME,
    check_owner,
    new_marker,
    resolve_names,
    write_marker,
)
from connectors.postgres.pgoutput import format_lsn, parse_lsn

if TYPE_CHECKING:
    from connectors.postgres import PostgreSQL

__all__ = [
    "DEFAULT_SLOT_TIMEOUT",
    "SlotInfo",
    "SlotSetup",
    "check_replica_identity",
    "check_slot",
    "create_exported_slot",
    "drop_slot",
    "ensure_publication",
    "init_slot",
    "map_replication_error",
    "qualified",
    "quote",
    "server_identity",
    "slot_info",
    "temporary_slot_name",
]

#: how long slot creation may wait for running transactions before we give up
DEFAULT_SLOT_TIMEOUT: Final = 60.0
#: the transactions slot creation waits for (named when it times out)
_BLOCKERS: Final = (
    "SELECT pid, xact_start, left(coalesce(query, ''), 60) FROM pg_stat_activity "
    "WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() "
    "ORDER BY xact_start LIMIT 5"
)


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


def quote(name: str) -> str:
    """``name`` as a PostgreSQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def qualified(table: TableId) -> str:
    """``schema.name`` of ``table``, each part quoted."""
    return f"{quote(table.schema)}.{quote(table.name)}"


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
        fixes = "; ".join(f"ALTER TABLE {qualified(t)} REPLICA IDENTITY FULL" for t in bad)
        raise SchemaError(
            f"{names}: no primary key or replica identity index, so PostgreSQL would log "
            "updates and deletes without any way to find the row",
            hint=f"add a primary key, or run: {fixes}",
        )


def check_slot(info: SlotInfo, slot: str, database: str, start: int | None) -> None:
    """Refuse a slot that is not a pgoutput slot of ``database``, lost its WAL, or was
    confirmed past ``start`` (the trail's position): the changes in between are gone."""
    if info.plugin != "pgoutput" or info.database != database:
        raise ReplicationError(
            f"replication slot {slot!r} belongs to database {info.database!r} with "
            f"plugin {info.plugin!r}, not {database!r}/pgoutput",
            hint="give this pipeline its own slot name ([source] slot / --slot)",
        )
    if info.wal_status == "lost":
        raise ReplicationError(
            f"replication slot {slot!r} was invalidated: the WAL it needs is gone",
            hint="it fell behind max_slot_wal_keep_size; drop it (`redoline drop`), then "
            "start a new trail with a new snapshot",
        )
    if start is not None and info.confirmed_flush:
        # without a trail directory the marker's check did not run: the trail's own
        # position is the limit (see the module doc)
        confirmed = parse_lsn(info.confirmed_flush)
        if confirmed > start:
            raise ReplicationError(
                f"replication slot {slot!r} is at {info.confirmed_flush}, ahead of the "
                f"trail's position {format_lsn(start)}: it was recreated or advanced "
                "by something else, and the changes in between are lost",
                hint="give each pipeline its own slot ([source] slot); start a new trail "
                "and take a new snapshot",
            )


def ensure_publication(
    conn: psycopg.Connection[Any], publication: str, tables: Sequence[TableId]
) -> tuple[bool, tuple[TableId, ...]]:
    """Create ``publication`` for ``tables`` or add the ones it lacks; returns (created,
    tables added). The snapshot calls it before it creates the slot (connectors/postgres/
    snapshot.py): pgoutput publishes a table's changes only from its publication onwards."""
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,))
    if exists.fetchone() is None:
        if not tables:
            conn.execute(f"CREATE PUBLICATION {quote(publication)}")
        else:
            names = ", ".join(qualified(t) for t in tables)
            conn.execute(f"CREATE PUBLICATION {quote(publication)} FOR TABLE {names}")
        return True, tuple(tables)
    have = publication_tables(conn, publication)
    missing = tuple(t for t in tables if t not in have)
    if missing:
        names = ", ".join(qualified(t) for t in missing)
        conn.execute(f"ALTER PUBLICATION {quote(publication)} ADD TABLE {names}")
    return False, missing


def publication_tables(conn: psycopg.Connection[Any], publication: str) -> set[TableId]:
    """The tables ``publication`` lists (none when it does not exist)."""
    return {
        TableId(s, n)
        for s, n in conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
            (publication,),
        ).fetchall()
    }


def _create_slot(conn: psycopg.Connection[Any], slot: str, timeout: float) -> str:
    """Create the logical slot; PostgreSQL waits for every running transaction to end first."""
    conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
    try:
        row = conn.execute(
            "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,)
        ).fetchone()
    except psycopg.errors.QueryCanceled:
        blockers = conn.execute(_BLOCKERS).fetchall()
        raise _blocked(slot, timeout, blockers) from None
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
        pg.send_query(f"CREATE_REPLICATION_SLOT {quote(slot)} {kind} pgoutput {export}".encode())
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
    return _blocked(slot, timeout, db.query(_BLOCKERS))


def _blocked(slot: str, timeout: float, blockers: Sequence[Any]) -> ReplicationError:
    who = "; ".join(f"pid {p} open since {s:%Y-%m-%d %H:%M:%S} ({q!r})" for p, s, q in blockers)
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
            pub_created, added = ensure_publication(conn, names.publication, tables)
            created = info is None
            if info is None:
                position: str | None = _create_slot(conn, names.slot, timeout)
                assert position is not None
                if names.trail_dir is not None:
                    write_marker(names.trail_dir, new_marker(names, database, system, position))
            else:
                position = info.confirmed_flush
    except psycopg.Error as exc:
        raise map_replication_error(exc, db) from None
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
                conn.execute(f"DROP PUBLICATION {quote(names.publication)}")
    except psycopg.Error as exc:
        raise map_replication_error(exc, db) from None
    if names.trail_dir is not None and marker is not None and not marker.get("dropped"):
        # a slot created later under the same name must not pass for this trail's
        write_marker(names.trail_dir, {**marker, "dropped": dt.datetime.now(dt.UTC).isoformat()})
    return info is not None, had_pub


def map_replication_error(exc: BaseException, db: PostgreSQL) -> ToolkitError:
    """``exc`` as the error to raise, with a DBA's reading of what slots end with (WAL gone,
    slot dropped, slot in use by another reader); anything else as a connection's error."""
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
