"""``redoline init`` / ``drop`` for SQL Server: change data capture on the database and the
selected tables.

``init`` runs ``sys.sp_cdc_enable_db`` when the database is not enabled yet (sysadmin only)
and ``sys.sp_cdc_enable_table`` for every selected table no capture instance tracks (the
instance is named ``<schema>_<table>``, the gating role is ``[source] cdc_role``). ``drop``
leaves CDC on: change tables are shared by every consumer of the database, and disabling a
table drops its change table with every change in it; it prints the statements that would.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from connectors.base import Database, SourceSetup
from connectors.errors import PrerequisiteError
from connectors.model import TableId
from connectors.sqlserver import sql
from connectors.sqlserver.catalog import capture_instances
from connectors.sqlserver.descriptor import SqlServerOptions

__all__ = ["prepare_source", "release_source"]


def prepare_source(
    db: Database,
    tables: Sequence[TableId],
    options: SqlServerOptions,
    *,
    trail_dir: Path,
    source_id: str,
    timeout: float | None = None,
) -> SourceSetup:
    """Enable CDC on the database and on each of ``tables`` that is not tracked yet."""
    from connectors.sqlserver import SqlServer

    assert isinstance(db, SqlServer)
    conn = db.connect()
    try:
        (name, cdc_on, _snap, _version, sysadmin, _owner), *_ = db.run(conn, sql.DATABASE)
        lines: list[str] = []
        enabled_db = False
        if not cdc_on:
            if not sysadmin:
                raise PrerequisiteError(
                    f"{db.endpoint.display}: CDC is not enabled on database {name} and only a "
                    "sysadmin may enable it",
                    hint=f"have a sysadmin run USE {sql.quote(str(name))}; EXEC "
                    "sys.sp_cdc_enable_db, then run `redoline init` again",
                )
            db.run(conn, sql.ENABLE_DB, what="sys.sp_cdc_enable_db")
            enabled_db = True
            lines.append(f"CDC on database [bold]{name}[/]: enabled")
        else:
            lines.append(f"CDC on database [bold]{name}[/]: already enabled")
        tracked = capture_instances(lambda s, p: db.run(conn, s, p))
        added: list[str] = []
        for table in tables:
            if tracked.get(table):
                lines.append(f"  = {table} ({tracked[table][-1].name})")
                continue
            instance = f"{table.schema}_{table.name}"
            db.run(
                conn,
                sql.ENABLE_TABLE,
                (table.schema, table.name, options.cdc_role, instance),
                what=f"sys.sp_cdc_enable_table for {table}",
            )
            added.append(str(table))
            lines.append(f"  + {table} (capture instance {instance})")
        position = None
        if added or enabled_db:
            lines.append(
                "the capture job starts tracking from now on: take the snapshot after this "
                "(redoline snapshot / sync)"
            )
    finally:
        conn.close()
    position = db.end_position()
    return SourceSetup(
        fields={
            "database": str(name),
            "cdc_enabled_now": enabled_db,
            "tables_added": added,
            "position": position,
        },
        lines=lines,
    )


def release_source(
    db: Database, options: SqlServerOptions, *, trail_dir: Path, source_id: str
) -> SourceSetup:
    """Nothing is dropped (module doc): the statements that would disable CDC are shown."""
    return SourceSetup(
        fields={"dropped": [], "cdc_left_enabled": True},
        lines=[
            "CDC is left enabled: other consumers may read the same change tables",
            "to disable it per table: EXEC sys.sp_cdc_disable_table @source_schema = N'<schema>', "
            "@source_name = N'<table>', @capture_instance = N'all'",
            "or for the whole database: EXEC sys.sp_cdc_disable_db",
        ],
    )
