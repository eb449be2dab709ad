"""``redoline check`` for an Oracle source: each prerequisite with the statement that fixes it.

LogMiner needs the database in ARCHIVELOG mode, minimal supplemental logging, and per table
the columns that identify a row in every update's redo: PRIMARY KEY logging for keyed tables,
ALL COLUMNS for tables without a primary key (their rows are found by their whole image and
their ROWID). The capture user needs LOGMINING, SELECT ANY TRANSACTION, EXECUTE on
DBMS_LOGMNR, SELECT on the V$ views the reader asks, and FLASHBACK for the snapshot's
``AS OF SCN`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from connectors.base import CheckItem
from connectors.model import TableId
from connectors.oracle.session import Session, SessionError

__all__ = ["LIVE_NOTICE", "VIEWS", "check_source", "log_groups", "table_logging_fix"]

#: every check output says it: this connector is tested against a fake only
LIVE_NOTICE: Final = CheckItem(
    "live-server validation",
    "this connector has not yet been run against a live Oracle server",
    "a first live run (docs/capture-oracle.md)",
    False,
    "run it on a test database first and confirm the list in docs/capture-oracle.md",
    blocking=False,
)

#: V$ views the reader and the checks query -> the grant that opens each
VIEWS: Final = (
    "V$DATABASE",
    "V$LOG",
    "V$LOGFILE",
    "V$ARCHIVED_LOG",
    "V$TRANSACTION",
    "V$THREAD",
)
_PRIVS: Final = ("LOGMINING", "SELECT ANY TRANSACTION")


def _probe(session: Session, view: str) -> str | None:
    """None when ``view`` can be read, else the error code."""
    try:
        session.query(f"SELECT COUNT(*) FROM {view} WHERE ROWNUM = 1")
    except SessionError as exc:
        return exc.code
    return None


def log_groups(session: Session, tables: Sequence[TableId]) -> dict[TableId, set[str]]:
    """The supplemental log group types (``ALL_LOG_GROUPS.LOG_GROUP_TYPE``) per table."""
    out: dict[TableId, set[str]] = {t: set() for t in tables}
    owners = sorted({t.schema for t in tables})
    for owner in owners:
        for name, kind in session.query(
            "SELECT TABLE_NAME, LOG_GROUP_TYPE FROM ALL_LOG_GROUPS WHERE OWNER = :owner",
            {"owner": owner},
        ):
            t = TableId(owner, str(name))
            if t in out:
                out[t].add(str(kind))
    return out


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_logging_fix(table: TableId, keyed: bool) -> str:
    """The statement that gives ``table`` the supplemental logging capture needs."""
    what = "PRIMARY KEY" if keyed else "ALL"
    name = f"{_q(table.schema)}.{_q(table.name)}"
    return f"ALTER TABLE {name} ADD SUPPLEMENTAL LOG DATA ({what}) COLUMNS"


def table_logging_ok(groups: set[str], keyed: bool, db_pk: bool, db_all: bool) -> bool:
    if db_all or "ALL COLUMN LOGGING" in groups:
        return True
    return keyed and (db_pk or "PRIMARY KEY LOGGING" in groups)


def check_source(
    session: Session, user: str, tables: Sequence[TableId], keyed: dict[TableId, bool]
) -> list[CheckItem]:
    """Every prerequisite, with the statement that fixes it; ``keyed``: has a primary key."""
    items = [LIVE_NOTICE]
    missing = {v: code for v in VIEWS if (code := _probe(session, v)) is not None}
    items += _grants(session, user, tables, missing)
    if "V$DATABASE" not in missing:
        items += _logging(session, tables, keyed)
    return items


def _grants(
    session: Session, user: str, tables: Sequence[TableId], missing: dict[str, str]
) -> list[CheckItem]:
    """The capture user's grants: V$ views, LOGMINING, DBMS_LOGMNR, FLASHBACK."""
    u = _q(user.upper()) if user else "<capture user>"
    items = []
    for view in VIEWS:
        items.append(
            CheckItem(
                f"SELECT on {view}",
                "granted" if view not in missing else f"refused ({missing[view]})",
                "granted",
                view not in missing,
                f"GRANT SELECT ON {view.replace('V$', 'V_$')} TO {u}",
            )
        )
    privs = {str(r[0]) for r in session.query("SELECT PRIVILEGE FROM SESSION_PRIVS")}
    roles = {str(r[0]) for r in session.query("SELECT ROLE FROM SESSION_ROLES")}
    for priv in _PRIVS:
        items.append(
            CheckItem(
                priv,
                "granted" if priv in privs else "missing",
                "granted",
                priv in privs,
                f"GRANT {priv} TO {u}",
            )
        )
    executable = (
        bool(
            session.query(
                "SELECT 1 FROM ALL_PROCEDURES WHERE OWNER = 'SYS' AND OBJECT_NAME = 'DBMS_LOGMNR' "
                "AND ROWNUM = 1"
            )
        )
        or "EXECUTE_CATALOG_ROLE" in roles
    )
    items.append(
        CheckItem(
            "EXECUTE on DBMS_LOGMNR",
            "granted" if executable else "missing",
            "granted",
            executable,
            f"GRANT EXECUTE ON SYS.DBMS_LOGMNR TO {u}",
        )
    )
    others = sorted({t for t in tables if t.schema.upper() != user.upper()})
    flash = "FLASHBACK ANY TABLE" in privs or not others
    items.append(
        CheckItem(
            "FLASHBACK (snapshot AS OF SCN)",
            "granted" if flash else f"missing for {len(others)} table(s) of other users",
            "granted",
            flash,
            f"GRANT FLASHBACK ANY TABLE TO {u} (or GRANT FLASHBACK ON each table)",
        )
    )
    return items


def _logging(
    session: Session, tables: Sequence[TableId], keyed: dict[TableId, bool]
) -> list[CheckItem]:
    """ARCHIVELOG mode, minimal and per-table supplemental logging."""
    items = []
    ((log_mode, sup_min, sup_pk, sup_all),) = session.query(
        "SELECT LOG_MODE, SUPPLEMENTAL_LOG_DATA_MIN, SUPPLEMENTAL_LOG_DATA_PK, "
        "SUPPLEMENTAL_LOG_DATA_ALL FROM V$DATABASE"
    )
    items.append(
        CheckItem(
            "log mode",
            str(log_mode),
            "ARCHIVELOG",
            str(log_mode) == "ARCHIVELOG",
            "as SYSDBA: SHUTDOWN IMMEDIATE; STARTUP MOUNT; ALTER DATABASE ARCHIVELOG; "
            "ALTER DATABASE OPEN;",
        )
    )
    minimal = str(sup_min) in ("YES", "IMPLICIT")
    items.append(
        CheckItem(
            "minimal supplemental logging",
            str(sup_min),
            "YES",
            minimal,
            "ALTER DATABASE ADD SUPPLEMENTAL LOG DATA",
        )
    )
    db_pk, db_all = str(sup_pk) == "YES", str(sup_all) == "YES"
    groups = log_groups(session, tables)
    for table in tables:
        has_key = keyed.get(table, False)
        ok = table_logging_ok(groups[table], has_key, db_pk, db_all)
        shown = ", ".join(sorted(groups[table])) or "none"
        items.append(
            CheckItem(
                f"supplemental logging {table}",
                shown + ("" if has_key else " (no primary key)"),
                "PRIMARY KEY COLUMNS" if has_key else "ALL COLUMNS (no primary key)",
                ok,
                table_logging_fix(table, has_key) + " (or: redoline init)",
            )
        )
    return items
