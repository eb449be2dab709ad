"""SQL Server as a source, through change data capture (``pyodbc`` with Microsoft's ODBC
driver or FreeTDS's ``tdsodbc``): docs/capture-sqlserver.md.

URL: ``sqlserver://user@host:1433/db?driver=ODBC Driver 18 for SQL Server&Encrypt=yes``
(``mssql://`` too). Every query parameter but ``driver`` is passed to the driver as a
connection string attribute (``TrustServerCertificate=yes``, ``Encrypt=no`` for FreeTDS);
the password comes from ``REDOLINE_SOURCE_PASSWORD`` or the configuration and travels only in
the connection string handed to the driver.

The connector talks to the server only through the statements of :mod:`.sql` and the rows
they return. It has not yet been run against a live server (``redoline check`` says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, NoReturn

from connectors.base import CheckItem, Database, TableFilter
from connectors.errors import ConfigError, ToolkitError
from connectors.log import LogReader
from connectors.model import TableId, TableSchema
from connectors.sqlserver import catalog, sql
from connectors.sqlserver.descriptor import ENGINE
from connectors.sqlserver.errors import map_error
from connectors.sqlserver.values import SQL_SS_TIMESTAMPOFFSET, datetimeoffset

__all__ = ["DEFAULT_DRIVER", "SqlServer", "connection_string"]

DEFAULT_DRIVER: Final = "ODBC Driver 18 for SQL Server"
#: seconds the driver may take to log in
LOGIN_TIMEOUT: Final = 15


def _attr(value: str) -> str:
    if any(ch in value for ch in ";{}=") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def connection_string(endpoint: Any) -> str:
    """``DRIVER=...;SERVER=host,port;DATABASE=...`` for pyodbc. Holds the password."""
    params = dict(endpoint.params)
    driver = next((v for k, v in params.items() if k.lower() == "driver"), DEFAULT_DRIVER)
    parts = [
        f"DRIVER={{{driver}}}",
        f"SERVER={_attr(endpoint.host)},{endpoint.port}",
    ]
    if endpoint.database:
        parts.append(f"DATABASE={_attr(endpoint.database)}")
    for key, value in endpoint.params:
        if key.lower() != "driver":
            parts.append(f"{key}={_attr(value)}")
    if endpoint.user:
        parts.append(f"UID={_attr(endpoint.user)}")
    if endpoint.password:
        parts.append(f"PWD={_attr(endpoint.password.reveal())}")
    return ";".join(parts)


class SqlServer(Database):
    """A SQL Server database whose tables CDC tracks (a capture and snapshot source)."""

    descriptor = ENGINE

    # ------------------------------------------------------------------ connecting

    def connect(self, **kwargs: Any) -> Any:
        """A pyodbc connection (autocommit unless ``autocommit=False``) that reads
        ``datetimeoffset`` (pyodbc has no converter of its own for it)."""
        conn = self.open_driver(autocommit=bool(kwargs.pop("autocommit", True)))
        conn.add_output_converter(SQL_SS_TIMESTAMPOFFSET, datetimeoffset)
        return conn

    def open_driver(self, *, autocommit: bool) -> Any:
        """The driver's connection: the one place pyodbc is asked to log in."""
        import pyodbc

        try:
            return pyodbc.connect(
                connection_string(self.endpoint), autocommit=autocommit, timeout=LOGIN_TIMEOUT
            )
        except pyodbc.Error as exc:
            raise map_error(exc, self.endpoint, "connecting") from None

    def run(
        self, conn: Any, statement: str, params: Sequence[Any] = (), *, what: str = ""
    ) -> list[tuple[Any, ...]]:
        """``statement`` on ``conn``; its rows (empty when it returns none)."""
        try:
            cur = conn.cursor()
            cur.execute(statement, *params)
            rows = cur.fetchall() if cur.description is not None else []
            cur.close()
            return [tuple(r) for r in rows]
        except ToolkitError:
            raise
        except Exception as exc:
            if _is_driver_error(exc):
                raise map_error(exc, self.endpoint, what) from None
            raise

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """``statement`` on a new autocommit connection."""
        conn = self.connect()
        try:
            return self.run(conn, statement, params)
        finally:
            conn.close()

    # ------------------------------------------------------------------ SQL

    @staticmethod
    def quote(identifier: str) -> str:
        return sql.quote(identifier)

    # ------------------------------------------------------------------ catalog

    def list_tables(self, table_filter: TableFilter | None = None) -> list[TableId]:
        out = []
        for schema, name, _tracked in self.query(sql.TABLES):
            table = TableId(str(schema), str(name))
            if table_filter is None or table_filter(table):
                out.append(table)
        return out

    def table_schema(self, table: TableId) -> TableSchema:
        return catalog.table_schema(self.query, table)

    # ------------------------------------------------------------------ roles

    def check_source(self, tables: Sequence[TableId] = ()) -> list[CheckItem]:
        from connectors.sqlserver.check import check_source

        return check_source(self.query, tables, database=self.endpoint.database)

    def check_target(self) -> NoReturn:
        raise ConfigError(
            "the sqlserver engine has no writer role (SQL Server is a source)",
            hint="replicate from SQL Server into PostgreSQL, MySQL/MariaDB or DuckDB",
        )

    def open_log(
        self,
        start: str | None,
        *,
        tables: TableFilter,
        until_caught_up: bool = False,
        options: dict[str, Any] | None = None,
    ) -> LogReader:
        from connectors.sqlserver.cdc import CdcReader

        return CdcReader(
            self, start, tables=tables, until_caught_up=until_caught_up, options=options
        )

    def end_position(self) -> str:
        from connectors.sqlserver.cdc import end_position

        return end_position(self)


def _is_driver_error(exc: BaseException) -> bool:
    try:
        import pyodbc
    except ImportError:  # pragma: no cover - pyodbc is a dependency
        return False
    return isinstance(exc, pyodbc.Error)
