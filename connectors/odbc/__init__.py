"""A generic ODBC source (``pyodbc`` + unixODBC) for snapshot and verify: DB2, Sybase, DM8 and
anything else with an ODBC driver (docs/source-odbc.md).

Everything is asked through ODBC itself, never through an engine's catalog SQL: tables through
``SQLTables``, columns through ``SQLColumns`` (their ODBC SQL type decides the column kind:
:func:`column_kind`), keys through ``SQLPrimaryKeys`` and ``SQLStatistics``, identifier quoting
and isolation levels through ``SQLGetInfo``.

The source has no log reader: ``capture``/``sync`` with it stop with a :class:`ConfigError`
naming the engine and the missing role. Passwords travel only in the connection string handed
to the driver; every driver message is scrubbed of them (:func:`connectors.odbc.url.scrub`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from connectors.base import CheckItem, Database, TableFilter
from connectors.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    MissingObjectError,
    SchemaError,
    ToolkitError,
)
from connectors.model import Column, TableId, TableSchema
from connectors.odbc.descriptor import ENGINE
from connectors.odbc.url import connection_string, scrub

__all__ = ["ODBC", "DriverInfo", "column_kind", "map_error"]

#: seconds the driver may take to log in
LOGIN_TIMEOUT: Final = 15
#: schemas (catalogs) that hold the engine's own tables, never replicated
_SYSTEM_SCHEMAS: Final = frozenset(
    {
        "information_schema",
        "pg_catalog",
        "pg_toast",
        "mysql",
        "performance_schema",
        "sys",
        "redoline",
    }
)

# ODBC SQL data types (sql.h / sqlext.h)
SQL_CHAR, SQL_VARCHAR, SQL_LONGVARCHAR = 1, 12, -1
SQL_WCHAR, SQL_WVARCHAR, SQL_WLONGVARCHAR = -8, -9, -10
SQL_BINARY, SQL_VARBINARY, SQL_LONGVARBINARY = -2, -3, -4
SQL_BIT, SQL_TINYINT, SQL_SMALLINT, SQL_INTEGER, SQL_BIGINT = -7, -6, 5, 4, -5
SQL_DECIMAL, SQL_NUMERIC = 3, 2
SQL_REAL, SQL_FLOAT, SQL_DOUBLE = 7, 6, 8
SQL_TYPE_DATE, SQL_TYPE_TIME, SQL_TYPE_TIMESTAMP = 91, 92, 93
SQL_DATE, SQL_TIME, SQL_TIMESTAMP = 9, 10, 11  # ODBC 2 spellings
SQL_GUID = -11
SQL_BOOLEAN_TYPE_NAMES: Final = frozenset({"bool", "boolean"})
SQL_JSON_TYPE_NAMES: Final = frozenset({"json", "jsonb"})

_INT_BITS: Final = {SQL_TINYINT: 8, SQL_SMALLINT: 16, SQL_INTEGER: 32, SQL_BIGINT: 64}
_TEXT: Final = {SQL_CHAR, SQL_VARCHAR, SQL_LONGVARCHAR, SQL_WCHAR, SQL_WVARCHAR, SQL_WLONGVARCHAR}
_BINARY: Final = {SQL_BINARY, SQL_VARBINARY, SQL_LONGVARBINARY}


def column_kind(
    data_type: int, type_name: str, size: int | None, digits: int | None
) -> dict[str, Any]:
    """:class:`Column` fields (kind, bits, precision, ...) for an ``SQLColumns`` row.

    The ODBC SQL type decides; the type's name refines it only where ODBC has no type of its
    own (booleans that drivers report as text or bits, JSON, unsigned integers).
    """
    name = (type_name or "").lower()
    if name in SQL_BOOLEAN_TYPE_NAMES or (data_type == SQL_BIT and (size or 1) <= 1):
        return {"kind": "bool"}
    if data_type in _INT_BITS:
        return {"kind": "int", "bits": _INT_BITS[data_type], "unsigned": "unsigned" in name}
    if data_type in (SQL_DECIMAL, SQL_NUMERIC):
        return {"kind": "decimal", "precision": size or None, "scale": digits or 0}
    if data_type == SQL_REAL:
        return {"kind": "float"}
    if data_type in (SQL_FLOAT, SQL_DOUBLE):
        return {"kind": "double"}
    if name in SQL_JSON_TYPE_NAMES:
        return {"kind": "json"}
    if data_type in _TEXT:
        long = data_type in (SQL_LONGVARCHAR, SQL_WLONGVARCHAR) or not size or size <= 0
        return {
            "kind": "str",
            "length": None if long else size,
            "fixed": data_type in (SQL_CHAR, SQL_WCHAR),
        }
    if data_type in _BINARY or data_type == SQL_BIT:
        long = data_type == SQL_LONGVARBINARY or not size or size <= 0
        return {"kind": "bytes", "length": None if long else size, "fixed": data_type == SQL_BINARY}
    if data_type in (SQL_TYPE_DATE, SQL_DATE):
        return {"kind": "date"}
    if data_type in (SQL_TYPE_TIME, SQL_TIME):
        return {"kind": "time", "precision": digits if digits is not None else None}
    if data_type in (SQL_TYPE_TIMESTAMP, SQL_TIMESTAMP):
        return {"kind": "datetime", "precision": digits if digits is not None else None}
    if data_type == SQL_GUID:
        return {"kind": "uuid"}
    return {"kind": "other"}


@dataclass(frozen=True)
class DriverInfo:
    """What ``SQLGetInfo`` says about the driver and the DBMS behind it."""

    dbms: str
    dbms_version: str
    driver: str
    #: identifier quote character ("" when the driver has none)
    quote: str
    #: tables live in schemas (else: in catalogs, as MySQL databases)
    uses_schemas: bool
    #: the connection's current catalog (database)
    catalog: str
    #: SQL_TXN_ISOLATION_OPTION bit mask
    isolation_options: int


def map_error(exc: BaseException, endpoint: Any, what: str = "") -> ToolkitError:
    """A pyodbc error as a redoline error, its text scrubbed of the password."""
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    state = str(args[0]) if len(args) > 1 else ""
    text = str(args[1] if len(args) > 1 else exc).strip()
    text = scrub(" ".join(text.split()), endpoint)
    where = endpoint.display + (f" ({what})" if what else "")
    if (
        state.startswith("28")
        or "access denied" in text.lower()
        or "authentication" in text.lower()
    ):
        return AuthError(
            f"{where}: the server refused the login: {text}",
            hint="check the user and REDOLINE_SOURCE_PASSWORD (or the DSN's credentials)",
        )
    if state == "IM002":
        return ConfigError(
            f"{where}: no such ODBC data source or driver: {text}",
            hint="DSNs are the sections of odbc.ini (odbcinst -q -s), drivers those of "
            "odbcinst.ini (odbcinst -q -d)",
        )
    if state.startswith("08") or state in ("HYT00", "HYT01"):
        return ConnectError(f"{where}: cannot connect: {text}")
    if state == "42S02":
        return MissingObjectError(f"{where}: {text}")
    return ToolkitError(f"{where}: {text}")


class ODBC(Database):
    """A database reached through an ODBC driver (snapshot and verify source)."""

    descriptor = ENGINE

    def __init__(self, endpoint: Any) -> None:
        super().__init__(endpoint)
        self._info: DriverInfo | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ connecting

    def connect(self, **kwargs: Any) -> Any:
        """A pyodbc connection (autocommit unless ``autocommit=False``)."""
        import pyodbc

        autocommit = bool(kwargs.pop("autocommit", True))
        try:
            conn = pyodbc.connect(
                connection_string(self.endpoint), autocommit=autocommit, timeout=LOGIN_TIMEOUT
            )
        except pyodbc.Error as exc:
            raise map_error(exc, self.endpoint, "connecting") from None
        # text from narrow (ANSI) columns as UTF-8, wide ones as the UTF-16 unixODBC speaks
        conn.setdecoding(pyodbc.SQL_CHAR, encoding="utf-8")
        conn.setencoding(encoding="utf-8")
        return conn

    @contextlib.contextmanager
    def cursor(self) -> Iterator[Any]:
        """A cursor on a new autocommit connection, driver errors mapped."""
        import pyodbc

        conn = self.connect()
        try:
            yield conn.cursor()
        except pyodbc.Error as exc:
            raise map_error(exc, self.endpoint) from None
        finally:
            conn.close()

    def info(self) -> DriverInfo:
        """The driver's answers to ``SQLGetInfo`` (asked once)."""
        with self._lock:
            if self._info is None:
                import pyodbc

                conn = self.connect()
                try:
                    get = conn.getinfo
                    self._info = DriverInfo(
                        dbms=str(get(pyodbc.SQL_DBMS_NAME) or ""),
                        dbms_version=str(get(pyodbc.SQL_DBMS_VER) or ""),
                        driver=str(get(pyodbc.SQL_DRIVER_NAME) or ""),
                        quote=str(get(pyodbc.SQL_IDENTIFIER_QUOTE_CHAR) or "").strip(),
                        uses_schemas=bool(get(pyodbc.SQL_SCHEMA_USAGE)),
                        catalog=str(get(pyodbc.SQL_DATABASE_NAME) or ""),
                        isolation_options=int(get(pyodbc.SQL_TXN_ISOLATION_OPTION) or 0),
                    )
                except pyodbc.Error as exc:
                    raise map_error(exc, self.endpoint, "SQLGetInfo") from None
                finally:
                    conn.close()
            return self._info

    # ------------------------------------------------------------------ SQL

    @staticmethod
    def quote(identifier: str) -> str:
        """Standard double-quoted identifier (the generic dialect verify's SQL is written in;
        SQL sent to the driver quotes with :meth:`source_quote`)."""
        return '"' + identifier.replace('"', '""') + '"'

    def source_quote(self, identifier: str) -> str:
        """``identifier`` quoted with the driver's own quote character."""
        q = self.info().quote
        if not q:
            return identifier
        close = "]" if q == "[" else q
        return q + identifier.replace(close, close + close) + close

    def source_table(self, table: TableId) -> str:
        """``table`` as the driver's SQL names it (schema or catalog, then name)."""
        return f"{self.source_quote(table.schema)}.{self.source_quote(table.name)}"

    def predicate_dialect(self) -> str:
        """The sqlglot dialect whose identifier quoting is the driver's."""
        return {"`": "mysql", "[": "tsql"}.get(self.info().quote, "")

    # ------------------------------------------------------------------ catalog

    def _scope(self, table: TableId) -> dict[str, str]:
        """``SQLColumns``/``SQLPrimaryKeys`` arguments naming ``table``."""
        if self.info().uses_schemas:
            return {"schema": table.schema}
        return {"catalog": table.schema}

    def list_tables(self, table_filter: TableFilter | None = None) -> list[TableId]:
        info = self.info()
        with self.cursor() as cur:
            rows = cur.tables(tableType="TABLE").fetchall()
        out = []
        for row in rows:
            catalog, schema, name = row[0], row[1], row[2]
            if info.uses_schemas:
                if schema is None:
                    continue
                space = str(schema)
            else:
                # catalogs are the namespace (MySQL databases): the connection's own only
                if catalog is None or (info.catalog and catalog != info.catalog):
                    continue
                space = str(catalog)
            if space.lower() in _SYSTEM_SCHEMAS:
                continue
            table = TableId(space, str(name))
            if table_filter is None or table_filter(table):
                out.append(table)
        return sorted(set(out))

    def table_schema(self, table: TableId) -> TableSchema:
        scope = self._scope(table)
        with self.cursor() as cur:
            cols = cur.columns(table=table.name, **scope).fetchall()
            cols = [c for c in cols if c.table_name == table.name]
            if not cols:
                raise MissingObjectError(f"{self.endpoint.display}: table {table} does not exist")
            pk = sorted(cur.primaryKeys(table.name, **scope).fetchall(), key=lambda r: r[4])
            stats = cur.statistics(table.name, unique=True, **scope).fetchall()
        columns = []
        for c in sorted(cols, key=lambda c: c.ordinal_position):
            fields = column_kind(c.data_type, c.type_name, c.column_size, c.decimal_digits)
            columns.append(
                Column(
                    name=str(c.column_name),
                    source_type=str(c.type_name or ""),
                    nullable=c.nullable != 0,
                    **fields,
                )
            )
        primary = tuple(str(r[3]) for r in pk)
        by_index: dict[str, list[tuple[int, str]]] = {}
        for s in stats:
            # SQL_TABLE_STAT rows (type 0) are statistics, not indexes
            if s.type == 0 or s.non_unique or s.index_name is None or s.column_name is None:
                continue
            by_index.setdefault(str(s.index_name), []).append(
                (int(s.ordinal_position), str(s.column_name))
            )
        not_null = {c.name for c in columns if not c.nullable}
        uniques = []
        for _name, parts in sorted(by_index.items()):
            key = tuple(n for _, n in sorted(parts))
            if key != primary and all(k in not_null for k in key):
                uniques.append(key)
        schema = TableSchema(table, tuple(columns), primary, tuple(uniques))
        unknown = [c for c in columns if c.kind == "other"]
        if unknown:
            names = ", ".join(f"{c.name} ({c.source_type})" for c in unknown)
            raise SchemaError(
                f"{table}: column(s) of ODBC types redoline cannot read: {names}",
                hint="leave them out with [tables.columns]",
            )
        return schema

    # ------------------------------------------------------------------ roles

    def check_source(self, tables: Sequence[TableId] = ()) -> list[CheckItem]:
        info = self.info()
        return [
            CheckItem(
                "ODBC driver",
                f"{info.driver} ({info.dbms} {info.dbms_version})",
                "reachable",
                True,
                blocking=False,
            ),
            CheckItem(
                "log reading",
                "not available",
                "a log reader",
                False,
                hint="an ODBC source is for snapshot --no-follow and verify only; capture "
                "needs a native connector (mariadb://, postgresql://)",
            ),
        ]

    def check_target(self) -> list[CheckItem]:
        self._no_role("writer (an ODBC database is a source for snapshot and verify)")

    def _no_role(self, role: str) -> NoReturn:
        raise ConfigError(
            f"the odbc engine has no {role}",
            hint="an odbc:// source serves `redoline snapshot --no-follow` and "
            "`redoline verify`; capture and sync need a native connector "
            "(mariadb://, postgresql://)",
        )

    def open_log(self, start: str | None, **kwargs: Any) -> NoReturn:
        self._no_role("log reader role (log reading)")

    def end_position(self) -> NoReturn:
        self._no_role("log reader role (log reading)")

    def open_writer(self) -> NoReturn:
        self._no_role("writer role")

    @staticmethod
    def compare_positions(a: str, b: str) -> int:
        """Snapshot points are UTC times (connectors/odbc/snapshot.py)."""
        return (a > b) - (a < b)
