"""PostgreSQL: connection, introspection and logical-replication prerequisites.

Role modules beside this one: the pgoutput reader (capture), the writer (apply), checksum SQL
(verify).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.errors

from connectors.base import HEARTBEAT_TABLE, CheckItem, Database, TableFilter
from connectors.endpoint import Endpoint
from connectors.errors import (
    AuthError,
    ConnectError,
    MissingObjectError,
    PrerequisiteError,
    ToolkitError,
    connect_setup_error,
)
from connectors.model import Column, TableId, TableSchema
from connectors.postgres.descriptor import ENGINE

if TYPE_CHECKING:
    from connectors.log import LogReader

__all__ = ["PostgreSQL", "enum_labels", "map_error", "pg_conninfo"]

_INT_BITS = {"int2": 16, "int4": 32, "int8": 64}
_SIMPLE = {
    "bool": "bool",
    "float4": "float",
    "float8": "double",
    "text": "str",
    "varchar": "str",
    "bpchar": "str",
    "name": "str",
    "bytea": "bytes",
    "date": "date",
    "time": "time",
    "timetz": "time",
    "timestamp": "datetime",
    "timestamptz": "timestamptz",
    "interval": "interval",
    "json": "json",
    "jsonb": "json",
    "uuid": "uuid",
    "numeric": "decimal",
    "bit": "bit",
    "varbit": "bit",
}
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


def pg_conninfo(endpoint: Endpoint, **overrides: Any) -> dict[str, Any]:
    """psycopg.connect keyword arguments for ``endpoint`` (sslmode etc. passed through)."""
    args: dict[str, Any] = {
        "host": endpoint.host,
        "port": endpoint.port,
        "user": endpoint.user or "postgres",
        "dbname": endpoint.database or "postgres",
        "connect_timeout": 10,
        "application_name": "redoline",
    }
    if endpoint.password:
        args["password"] = endpoint.password.reveal()
    for key, value in endpoint.params:
        args[key] = value
    args.update(overrides)
    return args


def map_error(exc: BaseException, endpoint: Endpoint) -> ToolkitError:
    """Translate a psycopg error into the redoline hierarchy."""
    where = endpoint.display
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    sqlstate = getattr(exc, "sqlstate", None)
    lowered = str(exc).lower()
    if (
        sqlstate in ("28P01", "28000")
        or "password authentication failed" in lowered
        or "no pg_hba.conf entry" in lowered
        or "pg_hba.conf rejects" in lowered
    ):
        return AuthError(
            f"{where}: the server refused the login ({text})",
            hint="check the user and password, and pg_hba.conf on the server",
        )
    if sqlstate == "3D000" or ("database" in lowered and "does not exist" in lowered):
        return MissingObjectError(
            f"{where}: database {endpoint.database!r} does not exist",
            hint=f'create it (CREATE DATABASE "{endpoint.database}") or fix the URL',
        )
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return MissingObjectError(f"{where}: {text}")
    if "logical decoding requires wal_level" in lowered:
        return PrerequisiteError(
            f"{where}: {text}",
            hint="ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL "
            "(see redoline check)",
        )
    setup = connect_setup_error(where, text)
    if setup is not None:
        return setup
    if isinstance(exc, psycopg.OperationalError):
        return ConnectError(
            f"{where}: cannot reach the server ({text})",
            hint="is the server running and the host/port right?",
        )
    return ToolkitError(f"{where}: {text}")


class PostgreSQL(Database):
    """PostgreSQL 12+ (pgoutput logical decoding)."""

    descriptor = ENGINE

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        try:
            autocommit = kwargs.pop("autocommit", True)
            return psycopg.connect(**pg_conninfo(self.endpoint, **kwargs), autocommit=autocommit)
        except psycopg.Error as exc:
            raise map_error(exc, self.endpoint) from None

    @staticmethod
    def quote(identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'

    def query(self, sql: str, args: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            with self.connect() as conn:
                return list(conn.execute(sql, args).fetchall())
        except psycopg.Error as exc:
            raise map_error(exc, self.endpoint) from None

    # ------------------------------------------------------------------ introspection

    def list_tables(self, table_filter: TableFilter | None = None) -> list[TableId]:
        rows = self.query(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg_temp%%' "
            "AND n.nspname NOT LIKE 'redoline%%' ORDER BY 1, 2",
            (list(_SYSTEM_SCHEMAS),),
        )
        tables = [TableId(str(s), str(n)) for s, n in rows]
        return [t for t in tables if table_filter is None or table_filter(t)]

    def list_schemas(self) -> list[str]:
        rows = self.query(
            "SELECT nspname FROM pg_namespace WHERE nspname <> ALL(%s) "
            "AND nspname NOT LIKE 'pg_%%' AND nspname NOT LIKE 'redoline%%' ORDER BY 1",
            (list(_SYSTEM_SCHEMAS),),
        )
        return [str(r[0]) for r in rows]

    def table_schema(self, table: TableId) -> TableSchema:
        try:
            with self.connect() as conn:
                return introspect(conn, table)
        except psycopg.Error as exc:
            raise map_error(exc, self.endpoint) from None

    # ------------------------------------------------------------------ log (pgoutput)

    def open_log(
        self,
        start: str | None,
        *,
        tables: TableFilter,
        until_caught_up: bool = False,
        options: dict[str, Any] | None = None,
    ) -> LogReader:
        """A pgoutput slot reader (``connectors/postgres/logical.py``; options there)."""
        from connectors.postgres.logical import PgLogReader

        return PgLogReader(
            self, start, tables=tables, until_caught_up=until_caught_up, options=options
        )

    def create_heartbeat(self) -> None:
        t = HEARTBEAT_TABLE
        try:
            with self.connect() as conn:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.quote(t.schema)}")
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.qualified(t)} (source_id text PRIMARY "
                    "KEY, beat_us bigint NOT NULL)"
                )
        except psycopg.Error as exc:
            raise map_error(exc, self.endpoint) from None

    def write_heartbeat(self, conn: Any, source_id: str, beat_us: int) -> None:
        try:
            conn.execute(
                f"INSERT INTO {self.qualified(HEARTBEAT_TABLE)} (source_id, beat_us) "
                "VALUES (%s, %s) ON CONFLICT (source_id) DO UPDATE SET beat_us = "
                "EXCLUDED.beat_us",
                (source_id, beat_us),
            )
            if not conn.autocommit:
                conn.commit()
        except psycopg.Error as exc:
            raise map_error(exc, self.endpoint) from None

    def end_position(self) -> str:
        ((lsn,),) = self.query("SELECT pg_current_wal_insert_lsn()::text")
        return str(lsn)

    # ------------------------------------------------------------------ checks

    def check_source(self, tables: Sequence[TableId] = ()) -> list[CheckItem]:
        with self.connect() as conn:
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('wal_level', 'max_replication_slots', 'max_wal_senders')"
                ).fetchall()
            )
            used_slots = conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()
            senders = conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()
            role = conn.execute(
                "SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            identities = {
                TableId(s, n): (ident, has_pk)
                for s, n, ident, has_pk in conn.execute(
                    "SELECT n.nspname, c.relname, c.relreplident, "
                    "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid "
                    "AND (i.indisprimary OR i.indisreplident)) "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p')"
                ).fetchall()
            }
        wal_level = str(settings.get("wal_level", "?"))
        max_slots = int(settings.get("max_replication_slots", 0))
        max_senders = int(settings.get("max_wal_senders", 0))
        n_slots = int(used_slots[0]) if used_slots else 0
        n_senders = int(senders[0]) if senders else 0
        can_replicate = bool(role and (role[0] or role[1]))
        items = [
            CheckItem(
                "wal_level",
                wal_level,
                "logical",
                wal_level == "logical",
                "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL",
            ),
            CheckItem(
                "free replication slots",
                f"{max_slots - n_slots} of {max_slots}",
                ">= 1",
                max_slots - n_slots >= 1,
                "ALTER SYSTEM SET max_replication_slots = 10; then restart",
            ),
            CheckItem(
                "free WAL senders",
                f"{max_senders - n_senders} of {max_senders}",
                ">= 1",
                max_senders - n_senders >= 1,
                "ALTER SYSTEM SET max_wal_senders = 10; then restart",
            ),
            CheckItem(
                "REPLICATION attribute",
                "yes" if can_replicate else "no",
                "yes",
                can_replicate,
                f'ALTER ROLE "{self.endpoint.user or "postgres"}" WITH REPLICATION',
            ),
        ]
        for table in tables:
            ident, has_key = identities.get(table, ("?", False))
            ok = ident == "f" or (ident in ("d", "i") and has_key)
            items.append(
                CheckItem(
                    f"replica identity {table}",
                    {"d": "DEFAULT", "f": "FULL", "i": "INDEX", "n": "NOTHING"}.get(ident, "?")
                    + ("" if has_key else " (no key)"),
                    "a key, or FULL",
                    ok,
                    f"ALTER TABLE {self.qualified(table)} REPLICA IDENTITY FULL",
                )
            )
        for table in tables:
            # `redoline undo` needs every column's old value, which only FULL logs; replication
            # does not, so this is advice, not a blocker (a keyless table without FULL is
            # already refused above with the same ALTER)
            ident, has_key = identities.get(table, ("?", False))
            if not (ident == "f" or (ident in ("d", "i") and has_key)):
                continue
            full = ident == "f"
            items.append(
                CheckItem(
                    f"undo possible {table}",
                    "yes" if full else "no (updates and deletes log the key only)",
                    "REPLICA IDENTITY FULL",
                    full,
                    f"ALTER TABLE {self.qualified(table)} REPLICA IDENTITY FULL",
                    blocking=False,
                )
            )
        return items

    def full_before_image_fix(self, table: TableId) -> str:
        return f"ALTER TABLE {self.qualified(table)} REPLICA IDENTITY FULL"

    def check_target(self) -> list[CheckItem]:
        ((read_only,),) = self.query("SHOW transaction_read_only")
        ok = str(read_only) == "off"
        return [
            CheckItem("reachable", "yes", "yes", True),
            CheckItem(
                "writable",
                "yes" if ok else "no (read-only / standby)",
                "yes",
                ok,
                "point the target at a primary, not a standby",
            ),
        ]


def introspect(conn: psycopg.Connection[Any], table: TableId) -> TableSchema:
    """Read ``table``'s definition from the catalog over ``conn``."""
    found = conn.execute(
        "SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (table.schema, table.name),
    ).fetchone()
    if not found:
        raise MissingObjectError(f"table {table} does not exist on the PostgreSQL server")
    oid, replident = found
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "coalesce(bt.typname, t.typname), coalesce(bt.typtype, t.typtype), "
        "coalesce(bt.typcategory, t.typcategory), "
        "CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END, "
        "et.typname, coalesce(bt.oid, t.oid), a.attgenerated, "
        "coalesce(et.typtype, ''), coalesce(et.oid, 0) "
        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype "
        "LEFT JOIN pg_type et ON et.oid = coalesce(bt.typelem, t.typelem) "
        "AND coalesce(bt.typcategory, t.typcategory) = 'A' "
        "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (oid,),
    ).fetchall()
    columns = []
    for (
        name,
        formatted,
        notnull,
        typname,
        typtype,
        category,
        typmod,
        elem,
        type_oid,
        gen,
        _,
        _,
    ) in rows:
        labels = enum_labels(conn, type_oid) if typtype == "e" else ()
        columns.append(
            _column(
                str(name),
                str(formatted),
                bool(notnull),
                str(typname),
                str(typtype),
                str(category),
                int(typmod),
                elem,
                labels,
                bool(gen),
            )
        )
    keys = conn.execute(
        "SELECT i.indisprimary, i.indisreplident, "
        "array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "ORDER BY k.ord), "
        "bool_and(a2.attnotnull) "
        "FROM pg_index i JOIN pg_attribute a2 ON a2.attrelid = i.indrelid "
        "AND a2.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = %s AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL "
        "GROUP BY i.indexrelid, i.indisprimary, i.indisreplident, i.indkey "
        "ORDER BY i.indisprimary DESC, i.indisreplident DESC, i.indexrelid",
        (oid,),
    ).fetchall()
    primary: tuple[str, ...] = ()
    uniques: list[tuple[str, ...]] = []
    for is_primary, _is_replident, cols, all_not_null in keys:
        if is_primary:
            primary = tuple(cols)
        elif all_not_null:
            uniques.append(tuple(cols))
    return TableSchema(
        table,
        tuple(columns),
        primary,
        tuple(uniques),
        full_before_image=replident == "f",
    )


def enum_labels(conn: psycopg.Connection[Any], type_oid: int) -> tuple[str, ...]:
    """The labels of enum type ``type_oid`` in their declared order."""
    rows = conn.execute(
        "SELECT enumlabel FROM pg_enum WHERE enumtypid = %s ORDER BY enumsortorder", (type_oid,)
    ).fetchall()
    return tuple(str(r[0]) for r in rows)


def _column(
    name: str,
    formatted: str,
    notnull: bool,
    typname: str,
    typtype: str,
    category: str,
    typmod: int,
    elem: str | None,
    labels: tuple[str, ...],
    generated: bool,
) -> Column:
    common: dict[str, Any] = {
        "name": name,
        "source_type": formatted,
        "nullable": not notnull,
        "generated": generated,
    }
    if category == "A":
        element = _SIMPLE.get(elem or "", "int" if elem in _INT_BITS else "other")
        return Column(kind="array", element=element, **common)
    if typtype == "e":
        return Column(kind="enum", labels=labels, **common)
    if typname in _INT_BITS:
        return Column(kind="int", bits=_INT_BITS[typname], **common)
    kind = _SIMPLE.get(typname, "other")
    if kind == "decimal":
        if typmod >= 4:
            precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
            return Column(kind=kind, precision=precision, scale=scale, **common)
        return Column(kind=kind, **common)
    if kind == "str" and typname in ("varchar", "bpchar") and typmod >= 4:
        return Column(kind=kind, length=typmod - 4, fixed=typname == "bpchar", **common)
    if kind in ("time", "datetime", "timestamptz") and typmod >= 0:
        return Column(kind=kind, precision=typmod, **common)
    if kind == "bit" and typmod > 0:
        return Column(kind=kind, bits=typmod, **common)
    return Column(kind=kind, **common)
