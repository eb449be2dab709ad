"""Every statement the SQL Server connector sends: the narrow interface it is built on.

The connector reads SQL Server only through these texts (with ``?`` parameters) and the
rows they return; tests drive it through a scripted server that answers exactly these
(tests/connectors/sqlserver_fake.py), following the documented behaviour of the CDC
functions and views. Changing a statement here changes what the fake must answer.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CAPTURED_COLUMNS",
    "CDC_JOBS",
    "CHANGES",
    "COLUMNS",
    "DATABASE",
    "ENABLE_DB",
    "ENABLE_TABLE",
    "INDEX_COLUMNS",
    "INSTANCES",
    "KEYS",
    "LOG_END",
    "LSN_TIME",
    "MAX_LSN",
    "MIN_LSN",
    "TABLES",
    "TIME_MAPPING",
    "UTC_OFFSET",
    "changes_sql",
]

#: the connected database: name, CDC on, snapshot isolation state (1 = ON), version, and
#: whether the login may enable CDC (sysadmin) or read its tables (db_owner)
DATABASE: Final = (
    "SELECT DB_NAME(), d.is_cdc_enabled, d.snapshot_isolation_state, "
    "CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), "
    "IS_SRVROLEMEMBER('sysadmin'), IS_MEMBER('db_owner') "
    "FROM sys.databases d WHERE d.database_id = DB_ID()"
)

#: user tables and whether CDC tracks them
TABLES: Final = (
    "SELECT s.name, t.name, t.is_tracked_by_cdc FROM sys.tables t "
    "JOIN sys.schemas s ON s.schema_id = t.schema_id "
    "WHERE t.is_ms_shipped = 0 AND s.name NOT IN (N'cdc', N'sys') "
    "ORDER BY s.name, t.name"
)

#: a table's columns (param: schema, table) with their base type
COLUMNS: Final = (
    "SELECT c.name, ty.name, c.max_length, c.precision, c.scale, c.is_nullable, "
    "c.is_computed FROM sys.columns c "
    "JOIN sys.tables t ON t.object_id = c.object_id "
    "JOIN sys.schemas s ON s.schema_id = t.schema_id "
    "JOIN sys.types ty ON ty.user_type_id = c.system_type_id "
    "WHERE s.name = ? AND t.name = ? ORDER BY c.column_id"
)

#: a table's unique indexes' key columns (param: schema, table), primary key first
KEYS: Final = (
    "SELECT i.index_id, i.is_primary_key, c.name FROM sys.indexes i "
    "JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id "
    "JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id "
    "JOIN sys.tables t ON t.object_id = i.object_id "
    "JOIN sys.schemas s ON s.schema_id = t.schema_id "
    "WHERE s.name = ? AND t.name = ? AND i.is_unique = 1 AND i.has_filter = 0 "
    "AND ic.is_included_column = 0 "
    "ORDER BY i.is_primary_key DESC, i.index_id, ic.key_ordinal"
)

#: every capture instance: name, source schema and table, low endpoint (NULL until the
#: capture job has seen its creation), creation time
INSTANCES: Final = (
    "SELECT ct.capture_instance, s.name, t.name, ct.start_lsn, ct.create_date "
    "FROM cdc.change_tables ct "
    "JOIN sys.tables t ON t.object_id = ct.source_object_id "
    "JOIN sys.schemas s ON s.schema_id = t.schema_id "
    "ORDER BY s.name, t.name, ct.create_date"
)

#: the columns a capture instance captures (param: capture instance), in change table order
CAPTURED_COLUMNS: Final = (
    "SELECT cc.column_name, cc.column_ordinal, cc.column_type FROM cdc.captured_columns cc "
    "JOIN cdc.change_tables ct ON ct.object_id = cc.object_id "
    "WHERE ct.capture_instance = ? ORDER BY cc.column_ordinal"
)

#: the unique index a capture instance identifies rows by (param: capture instance)
INDEX_COLUMNS: Final = (
    "SELECT ic.column_name FROM cdc.index_columns ic "
    "JOIN cdc.change_tables ct ON ct.object_id = ic.object_id "
    "WHERE ct.capture_instance = ? ORDER BY ic.index_ordinal"
)

#: low endpoint of a capture instance's validity interval (param: capture instance)
MIN_LSN: Final = "SELECT sys.fn_cdc_get_min_lsn(?)"
#: high endpoint of every capture instance's validity interval
MAX_LSN: Final = "SELECT sys.fn_cdc_get_max_lsn()"
#: commit time of the last commit at or before an LSN (param), server local time
LSN_TIME: Final = "SELECT sys.fn_cdc_map_lsn_to_time(?)"
#: the last log record's LSN (SQL Server 2016 SP2+)
LOG_END: Final = "SELECT log_end_lsn FROM sys.dm_db_log_stats(DB_ID())"
#: commits in an LSN range (params: from, to inclusive): commit LSN, transaction id, end time
TIME_MAPPING: Final = (
    "SELECT TOP (?) start_lsn, tran_id, tran_end_time FROM cdc.lsn_time_mapping "
    "WHERE start_lsn >= ? AND start_lsn <= ? ORDER BY start_lsn"
)
#: minutes the server's local clock (lsn_time_mapping's times) is ahead of UTC
UTC_OFFSET: Final = "SELECT DATEDIFF(minute, SYSUTCDATETIME(), SYSDATETIME())"

#: the database's CDC jobs: type, retention (minutes, cleanup only), whether SQL Server Agent
#: runs it now
CDC_JOBS: Final = (
    "SELECT j.job_type, j.retention, "
    "CASE WHEN a.start_execution_date IS NOT NULL AND a.stop_execution_date IS NULL "
    "THEN 1 ELSE 0 END "
    "FROM msdb.dbo.cdc_jobs j "
    "LEFT JOIN msdb.dbo.sysjobactivity a ON a.job_id = j.job_id "
    "AND a.session_id = (SELECT MAX(session_id) FROM msdb.dbo.syssessions) "
    "WHERE j.database_id = DB_ID()"
)

ENABLE_DB: Final = "EXEC sys.sp_cdc_enable_db"
#: params: schema, table, gating role (NULL: none), capture instance name
ENABLE_TABLE: Final = (
    "EXEC sys.sp_cdc_enable_table @source_schema = ?, @source_name = ?, @role_name = ?, "
    "@capture_instance = ?, @supports_net_changes = 0"
)
START_CAPTURE_JOB: Final = "EXEC sys.sp_cdc_start_job @job_type = N'capture'"


def quote(identifier: str) -> str:
    """``[identifier]`` with ``]`` doubled."""
    return "[" + identifier.replace("]", "]]") + "]"


def changes_sql(instance: str, columns: list[str]) -> str:
    """The next page of a capture instance's changes after a cursor, in log order.

    Params: page size, from LSN, to LSN (the function's closed interval), then the cursor
    (commit LSN, commit LSN, seqval, seqval, operation): rows strictly after
    (``__$start_lsn``, ``__$seqval``, ``__$operation``). ``all update old`` gives each
    update as two rows with one seqval: 3 (before) and 4 (after).
    """
    cols = "".join(", " + quote(c) for c in columns)
    return (
        "SELECT TOP (?) __$start_lsn, __$seqval, __$operation, __$update_mask"
        f"{cols} FROM cdc.{quote('fn_cdc_get_all_changes_' + instance)}"
        "(?, ?, N'all update old') "
        "WHERE __$start_lsn > ? OR (__$start_lsn = ? AND (__$seqval > ? "
        "OR (__$seqval = ? AND __$operation > ?))) "
        "ORDER BY __$start_lsn, __$seqval, __$operation"
    )


CHANGES: Final = changes_sql
