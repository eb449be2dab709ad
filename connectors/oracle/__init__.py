"""Oracle: connection, introspection and LogMiner prerequisites (docs/capture-oracle.md).

Everything goes through the narrow :class:`connectors.oracle.session.Session` (SQL sent, rows
received), so the connector runs against ``oracledb`` in thin mode on a live server and against
the scripted fake of the documented views in the tests. It has NOT yet been run against a live
server; ``redoline check`` says so.

Role modules beside this one: ``logminer`` (the log reader and its transaction assembly),
``redo`` (SQL_REDO into row images), ``positions``, ``snapshot`` (``AS OF SCN``), ``prepare``
(table-level supplemental logging for ``redoline init``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from connectors.base import CheckItem, Database, TableFilter
from connectors.model import TableId, TableSchema
from connectors.oracle import checks, schema
from connectors.oracle.descriptor import ENGINE
from connectors.oracle.positions import OraclePosition
from connectors.oracle.session import Session, SessionError, map_error, open_session

if TYPE_CHECKING:
    from connectors.log import LogReader

__all__ = ["Oracle"]

#: the users Oracle maintains itself are never replicated (ALL_USERS.ORACLE_MAINTAINED)
_TABLES_SQL: Final = (
    "SELECT t.OWNER, t.TABLE_NAME FROM ALL_TABLES t JOIN ALL_USERS u ON u.USERNAME = t.OWNER "
    "WHERE u.ORACLE_MAINTAINED = 'N' AND t.TEMPORARY = 'N' AND t.NESTED = 'NO' "
    "AND (t.DROPPED IS NULL OR t.DROPPED = 'NO') AND t.OWNER <> 'REDOLINE' "
    "ORDER BY t.OWNER, t.TABLE_NAME"
)


class Oracle(Database):
    """Oracle 12.2+ through LogMiner (``oracledb`` thin mode)."""

    descriptor = ENGINE

    def session(self) -> Session:
        """A new :class:`Session` (driver errors already mapped)."""
        return open_session(self.endpoint)

    @contextlib.contextmanager
    def using(self, doing: str = "") -> Iterator[Session]:
        """A session for one piece of work; its errors mapped to the redoline hierarchy."""
        s = self.session()
        try:
            yield s
        except SessionError as exc:
            raise map_error(exc, self.endpoint, doing) from None
        finally:
            s.close()

    def connect(self, **kwargs: Any) -> Any:
        """A raw ``oracledb`` connection (DB-API): for callers outside this package."""
        from connectors.oracle.session import OracleSession

        return OracleSession(self.endpoint).conn

    @staticmethod
    def quote(identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'

    # ------------------------------------------------------------------ introspection

    def list_tables(self, table_filter: TableFilter | None = None) -> list[TableId]:
        with self.using("listing tables") as s:
            rows = s.query(_TABLES_SQL)
        tables = [TableId(str(o), str(n)) for o, n in rows]
        return [t for t in tables if table_filter is None or table_filter(t)]

    def table_schema(self, table: TableId) -> TableSchema:
        with self.using(f"reading the definition of {table}") as s:
            found = schema.introspect(s, table)
            groups = checks.log_groups(s, [table])[table]
            ((sup_all,),) = s.query("SELECT SUPPLEMENTAL_LOG_DATA_ALL FROM V$DATABASE")
        full = "ALL COLUMN LOGGING" in groups or str(sup_all) == "YES"
        return TableSchema(
            found.table,
            found.columns,
            found.primary_key,
            found.unique_keys,
            full_before_image=full,
        )

    # ------------------------------------------------------------------ checks

    def check_source(self, tables: Sequence[TableId] = ()) -> list[CheckItem]:
        with self.using("checking prerequisites") as s:
            keyed = {t: bool(schema.introspect(s, t).primary_key) for t in tables}
            return checks.check_source(s, self.endpoint.user, tables, keyed)

    def full_before_image_fix(self, table: TableId) -> str:
        return checks.table_logging_fix(table, keyed=False)

    def check_target(self) -> list[CheckItem]:
        return [
            checks.LIVE_NOTICE,
            CheckItem(
                "writer",
                "Oracle is a source only",
                "a target engine",
                False,
                "replicate into PostgreSQL, MySQL/MariaDB or DuckDB",
            ),
        ]

    # ------------------------------------------------------------------ log

    def end_position(self) -> str:
        """The current SCN; mining from it restarts at the oldest open transaction's start
        (V$TRANSACTION), so a transaction open now is captured whole."""
        with self.using("reading the current SCN") as s:
            return str(current_position(s))

    def open_log(
        self,
        start: str | None,
        *,
        tables: TableFilter,
        until_caught_up: bool = False,
        options: dict[str, Any] | None = None,
    ) -> LogReader:
        from connectors.oracle.logminer import LogMinerReader

        return LogMinerReader(
            self, start, tables=tables, until_caught_up=until_caught_up, options=options
        )


def current_position(s: Session) -> OraclePosition:
    """ "All of the current SCN", restarting at the oldest open transaction's first SCN."""
    ((scn,),) = s.query("SELECT CURRENT_SCN FROM V$DATABASE")
    ((oldest,),) = s.query("SELECT MIN(START_SCN) FROM V$TRANSACTION")
    scn = int(scn)
    restart = scn + 1 if oldest is None else min(scn + 1, int(oldest))
    return OraclePosition(scn, restart)
