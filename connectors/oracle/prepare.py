"""``redoline init`` / ``drop`` for Oracle: supplemental logging of the captured tables.

``init`` enables what ``redoline check`` asks for and nothing more: minimal supplemental
logging for the database when it is off (one ``ALTER DATABASE``, which needs the ALTER
DATABASE privilege: without it the run stops naming the statement for a DBA), then per table
PRIMARY KEY columns (keyed tables) or ALL columns (tables without a primary key, whose rows
are found by their whole image). ``drop`` leaves the logging in place: other consumers of
the redo may rely on it, and it costs only redo volume; it prints the statements that remove it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from connectors.base import Database, SourceSetup
from connectors.errors import PrerequisiteError
from connectors.model import TableId
from connectors.oracle import checks, schema
from connectors.oracle.session import SessionError

__all__ = ["prepare_source", "release_source"]


def prepare_source(
    db: Database,
    tables: Sequence[TableId],
    options: Any,
    *,
    trail_dir: Path,
    source_id: str,
    timeout: float | None = None,
) -> SourceSetup:
    """Enable the supplemental logging capture needs for ``tables``."""
    from connectors.oracle import Oracle

    assert isinstance(db, Oracle)
    added: list[str] = []
    with db.using("enabling supplemental logging") as s:
        ((sup_min, sup_pk, sup_all),) = s.query(
            "SELECT SUPPLEMENTAL_LOG_DATA_MIN, SUPPLEMENTAL_LOG_DATA_PK, "
            "SUPPLEMENTAL_LOG_DATA_ALL FROM V$DATABASE"
        )
        minimal_added = False
        if str(sup_min) not in ("YES", "IMPLICIT"):
            _run(s, "ALTER DATABASE ADD SUPPLEMENTAL LOG DATA")
            minimal_added = True
        groups = checks.log_groups(s, tables)
        for table in tables:
            keyed = bool(schema.introspect(s, table).primary_key)
            if checks.table_logging_ok(groups[table], keyed, sup_pk == "YES", sup_all == "YES"):
                continue
            statement = checks.table_logging_fix(table, keyed)
            _run(s, statement)
            added.append(f"{table}: {'PRIMARY KEY' if keyed else 'ALL'} COLUMNS")
    lines = []
    if minimal_added:
        lines.append("minimal supplemental logging: [bold]enabled[/]")
    lines.append(f"supplemental logging: {len(added)} table(s) enabled")
    lines.extend(f"  + {a}" for a in added)
    lines.append(checks.LIVE_NOTICE.value)
    return SourceSetup(
        fields={"minimal_logging_enabled": minimal_added, "tables_enabled": added},
        lines=lines,
    )


def _run(s: Any, statement: str) -> None:
    try:
        s.execute(statement)
    except SessionError as exc:
        if exc.code in ("ORA-01031", "ORA-01950"):
            raise PrerequisiteError(
                f"this user may not run: {statement} ({exc.code}: {exc.message})",
                hint=f"have a DBA run it: {statement};",
            ) from None
        raise


def release_source(db: Database, options: Any, *, trail_dir: Path, source_id: str) -> SourceSetup:
    """Nothing to drop: supplemental logging stays (module doc)."""
    return SourceSetup(
        fields={"dropped": []},
        lines=[
            "supplemental logging is left enabled (other readers of the redo may need it); "
            'remove it with ALTER TABLE "OWNER"."TABLE" DROP SUPPLEMENTAL LOG DATA '
            "(PRIMARY KEY | ALL) COLUMNS"
        ],
    )
