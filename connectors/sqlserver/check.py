"""``redoline check`` for a SQL Server source: what CDC needs, each with the statement that
fixes it (docs/capture-sqlserver.md#setup)."""

from __future__ import annotations

from collections.abc import Sequence

from connectors.base import CheckItem
from connectors.errors import SchemaError, ToolkitError
from connectors.model import TableId
from connectors.sqlserver import sql
from connectors.sqlserver.catalog import Query, capture_instances, instance_schema

__all__ = ["LIVE_NOTE", "MIN_RETENTION_MINUTES", "check_source"]

#: the cleanup job's retention below which check warns: a capture stopped over a long weekend
#: must still find its changes (the default is 4320 minutes, three days)
MIN_RETENTION_MINUTES = 4320

LIVE_NOTE = (
    "the SQL Server connector has been tested only against a scripted server that follows "
    "the documented CDC behaviour, never yet against a live SQL Server: see "
    "docs/capture-sqlserver.md#first-live-run"
)


def _q(name: str) -> str:
    return sql.quote(name)


def check_source(query: Query, tables: Sequence[TableId], *, database: str) -> list[CheckItem]:
    """Every prerequisite of CDC capture for ``tables`` (all tracked tables when empty)."""
    (name, cdc_on, snapshot_state, version, sysadmin, owner), *_ = query(sql.DATABASE, ())
    db = _q(str(name or database))
    items = [
        CheckItem(
            "live server tested",
            "no",
            "a first live run",
            False,
            hint=LIVE_NOTE,
            blocking=False,
        ),
        CheckItem(
            "SQL Server version",
            str(version),
            "2016 SP2 (13.0.5026) or later",
            _version(str(version)) >= (13, 0, 5026),
            hint="capture and snapshot read sys.dm_db_log_stats, which came with 2016 SP2",
        ),
        CheckItem(
            "CDC on the database",
            "enabled" if cdc_on else "disabled",
            "enabled",
            bool(cdc_on),
            hint=f"USE {db}; EXEC sys.sp_cdc_enable_db (as sysadmin), or `redoline init`",
        ),
        CheckItem(
            "snapshot isolation",
            "on" if snapshot_state == 1 else "off",
            "on (for a snapshot that joins capture exactly)",
            snapshot_state == 1,
            hint=f"ALTER DATABASE {db} SET ALLOW_SNAPSHOT_ISOLATION ON",
        ),
        CheckItem(
            "login may read CDC",
            "db_owner" if owner else ("sysadmin" if sysadmin else "not db_owner"),
            "db_owner, or the gating role of every capture instance",
            bool(owner or sysadmin),
            hint="ALTER ROLE db_owner ADD MEMBER <user>, or give the user the instances' "
            "gating role and SELECT on the source tables (docs/capture-sqlserver.md#permissions)",
            blocking=False,
        ),
    ]
    if not cdc_on:
        return items  # nothing below exists before sp_cdc_enable_db
    items += _job_items(query)
    items += _table_items(query, tables)
    return items


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(".")[:3])
    except ValueError:
        return ()


def _job_items(query: Query) -> list[CheckItem]:
    try:
        jobs = {str(t): (r, bool(running)) for t, r, running in query(sql.CDC_JOBS, ())}
    except ToolkitError as exc:
        return [
            CheckItem(
                "CDC jobs",
                "unknown",
                "readable",
                False,
                hint=f"cannot read msdb's CDC job tables ({exc.message}); grant SELECT on "
                "msdb.dbo.cdc_jobs, msdb.dbo.sysjobactivity and msdb.dbo.syssessions, or "
                "check the jobs by hand",
                blocking=False,
            )
        ]
    capture = jobs.get("capture")
    cleanup = jobs.get("cleanup")
    items = [
        CheckItem(
            "CDC capture job",
            "missing" if capture is None else ("running" if capture[1] else "not running"),
            "running",
            capture is not None and capture[1],
            hint="start SQL Server Agent, then EXEC sys.sp_cdc_start_job @job_type = N'capture' "
            "(sp_cdc_add_job @job_type = N'capture' if it is missing)",
        )
    ]
    retention = int(cleanup[0]) if cleanup is not None and cleanup[0] is not None else None
    items.append(
        CheckItem(
            "CDC retention",
            "no cleanup job" if retention is None else f"{retention} minutes",
            f">= {MIN_RETENTION_MINUTES} minutes",
            retention is None or retention >= MIN_RETENTION_MINUTES,
            hint="EXEC sys.sp_cdc_change_job @job_type = N'cleanup', @retention = "
            f"{MIN_RETENTION_MINUTES}: capture stopped for longer than the retention loses "
            "changes and needs a new snapshot",
            blocking=False,
        )
    )
    return items


def _table_items(query: Query, tables: Sequence[TableId]) -> list[CheckItem]:
    instances = capture_instances(query)
    wanted = list(tables) or sorted(instances)
    items = []
    for table in wanted:
        found = instances.get(table, [])
        name = f"{table.schema}_{table.name}"
        if not found:
            items.append(
                CheckItem(
                    f"CDC on {table}",
                    "not tracked",
                    "a capture instance",
                    False,
                    hint=f"EXEC sys.sp_cdc_enable_table @source_schema = N'{table.schema}', "
                    f"@source_name = N'{table.name}', @role_name = NULL, "
                    f"@capture_instance = N'{name}', or `redoline init`",
                )
            )
            continue
        newest = found[-1]
        try:
            schema = instance_schema(query, newest)
        except SchemaError as exc:
            items.append(
                CheckItem(f"types of {table}", exc.message, "replicable", False, exc.hint or "")
            )
            continue
        items.append(_drift_item(query, table, schema.column_names, newest.name))
        if not schema.primary_key:
            items.append(
                CheckItem(
                    f"row identity of {table}",
                    "none",
                    "a primary key or unique index",
                    False,
                    hint="CDC captures full images, so a keyless table replicates, but the "
                    "target must find rows by their whole image (slow); add a key",
                    blocking=False,
                )
            )
    return items


def _drift_item(query: Query, table: TableId, captured: Sequence[str], instance: str) -> CheckItem:
    """Columns of the table its newest capture instance does not deliver."""
    current = {str(r[0]) for r in query(sql.COLUMNS, (table.schema, table.name))}
    missing = sorted(current - set(captured))
    return CheckItem(
        f"CDC columns of {table}",
        "all" if not missing else "missing " + ", ".join(missing),
        "every column",
        not missing,
        hint=f"columns added after capture instance {instance} was created are not "
        f"captured: create a second instance, EXEC sys.sp_cdc_enable_table @source_schema = "
        f"N'{table.schema}', @source_name = N'{table.name}', @role_name = NULL, "
        f"@capture_instance = N'{table.schema}_{table.name}_v2', then disable the old one "
        "once capture has passed it (docs/capture-sqlserver.md#schema-changes)",
        blocking=False,
    )
