"""MySQL and MariaDB: connection, introspection and replication prerequisites.

Role modules beside this one: the binlog reader (capture), the writer (apply), checksum SQL
(verify). The differences between MySQL 8 and MariaDB that matter here: GTID format
(``uuid:1-5`` vs ``domain-server-seq``), ``binlog_row_metadata`` (MySQL 8.0.1+, MariaDB
10.5+), and JSON (a native type on MySQL, an alias of LONGTEXT with a CHECK on MariaDB).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pymysql
import pymysql.cursors

from connectors.base import HEARTBEAT_TABLE, CheckItem, Database, TableFilter
from connectors.endpoint import Endpoint
from connectors.errors import MissingObjectError
from connectors.model import Column, TableId, TableSchema
from connectors.mysql.descriptor import ENGINE
from connectors.mysql.errors import map_error
from connectors.sqlwriter import CHECKPOINT_SCHEMA

if TYPE_CHECKING:
    from connectors.log import LogReader

__all__ = ["DATABASE_OPTIONS", "TABLE_OPTIONS", "MySQL", "map_error", "mysql_connect_args"]

#: every database and table redoline creates on a MySQL/MariaDB target, whatever the server's
#: or the database's default (a stock MariaDB's is latin1, which holds almost none of Unicode)
DATABASE_OPTIONS = "CHARACTER SET utf8mb4"
TABLE_OPTIONS = "DEFAULT CHARSET=utf8mb4"

_INT_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64}
_SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")


def mysql_connect_args(endpoint: Endpoint, **overrides: Any) -> dict[str, Any]:
    """pymysql.connect keyword arguments for ``endpoint`` (TLS parameters honoured)."""
    args: dict[str, Any] = {
        "host": endpoint.host,
        "port": endpoint.port,
        "user": endpoint.user or "root",
        "password": endpoint.password.reveal(),
        "charset": "utf8mb4",
        "autocommit": True,
        "connect_timeout": 10,
        "local_infile": True,
    }
    if endpoint.database:
        args["database"] = endpoint.database
    params = endpoint.param
    ssl: dict[str, Any] = {}
    for key in ("ca", "cert", "key"):
        if f"ssl_{key}" in params:
            ssl[key] = params[f"ssl_{key}"]
    if ssl or params.get("ssl") in ("1", "true", "required"):
        # Everything goes in pymysql's ssl dict: its ssl_verify_* keyword arguments replace
        # that dict and so would drop the CA (verification then used the system store).
        verify = params.get("ssl_verify") in ("1", "true")
        ssl["check_hostname"] = verify
        ssl["verify_mode"] = verify or "ca" in ssl
        args["ssl"] = ssl
    args.update(overrides)
    return args


class MySQL(Database):
    """MySQL 8 and MariaDB 10.5+."""

    descriptor = ENGINE

    def connect(self, **kwargs: Any) -> pymysql.connections.Connection[Any]:
        try:
            return pymysql.connect(**mysql_connect_args(self.endpoint, **kwargs))
        except pymysql.err.MySQLError as exc:
            raise map_error(exc, self.endpoint) from None

    @staticmethod
    def quote(identifier: str) -> str:
        return "`" + identifier.replace("`", "``") + "`"

    def query(self, sql: str, args: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement on a short-lived connection and return all rows."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        except pymysql.err.MySQLError as exc:
            raise map_error(exc, self.endpoint) from None
        finally:
            conn.close()

    def is_mariadb(self) -> bool:
        ((version,),) = self.query("SELECT VERSION()")
        return "mariadb" in str(version).lower()

    # ------------------------------------------------------------------ introspection

    def list_tables(self, table_filter: TableFilter | None = None) -> list[TableId]:
        rows = self.query(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN %s "
            "ORDER BY table_schema, table_name",
            (_SYSTEM_SCHEMAS,),
        )
        scope = self.scoped(table_filter)
        return [t for t in (TableId(str(s), str(n)) for s, n in rows) if scope(t)]

    def scoped(self, table_filter: TableFilter | None) -> TableFilter:
        """``table_filter`` within this endpoint: the URL's database when the filter selects
        everything (``mariadb://h/shop`` means shop, not every database on the server), and
        never redoline's own state database (checkpoints and snapshot progress a redoline
        target on the same server keeps there)."""
        include = table_filter.include if table_filter is not None else ("*.*",)
        exclude = table_filter.exclude if table_filter is not None else ()
        if include == ("*.*",) and self.endpoint.database:
            include = (f"{self.endpoint.database}.*",)
        also = table_filter.also if table_filter is not None else ()
        return TableFilter(include, (*exclude, f"{CHECKPOINT_SCHEMA}.*"), also)

    def list_schemas(self) -> list[str]:
        rows = self.query(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN %s "
            "ORDER BY 1",
            (_SYSTEM_SCHEMAS,),
        )
        return [str(r[0]) for r in rows]

    def table_schema(self, table: TableId) -> TableSchema:
        conn = self.connect()
        try:
            return introspect(conn, table)
        except pymysql.err.MySQLError as exc:
            raise map_error(exc, self.endpoint) from None
        finally:
            conn.close()

    # ------------------------------------------------------------------ log

    def open_log(
        self,
        start: str | None,
        *,
        tables: TableFilter,
        until_caught_up: bool = False,
        options: dict[str, Any] | None = None,
    ) -> LogReader:
        """A binlog reader from just after ``start`` (positions: connectors.mysql.positions)."""
        from connectors.mysql.binlog import BinlogReader

        return BinlogReader(
            self,
            start,
            tables=self.scoped(tables),
            until_caught_up=until_caught_up,
            options=options,
        )

    def create_heartbeat(self) -> None:
        t = HEARTBEAT_TABLE
        self.query(f"CREATE DATABASE IF NOT EXISTS {self.quote(t.schema)}")
        self.query(
            f"CREATE TABLE IF NOT EXISTS {self.qualified(t)} (source_id VARCHAR(191) NOT NULL "
            "PRIMARY KEY, beat_us BIGINT NOT NULL) ENGINE=InnoDB"
        )

    def write_heartbeat(self, conn: Any, source_id: str, beat_us: int) -> None:
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {self.qualified(HEARTBEAT_TABLE)} (source_id, beat_us) "
                    "VALUES (%s, %s) ON DUPLICATE KEY UPDATE beat_us = VALUES(beat_us)",
                    (source_id, beat_us),
                )
            conn.commit()
        except pymysql.err.MySQLError as exc:
            raise map_error(exc, self.endpoint) from None

    def end_position(self) -> str:
        from connectors.mysql.binlog import end_position

        return end_position(self)

    # ------------------------------------------------------------------ checks

    def check_source(self, tables: Sequence[TableId] = ()) -> list[CheckItem]:
        variables = dict(
            self.query(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_format', "
                "'binlog_row_image', 'binlog_row_metadata', 'gtid_mode', 'gtid_strict_mode', "
                "'server_id', 'version', 'log_bin_compress', 'binlog_transaction_compression')"
            )
        )
        mariadb = "mariadb" in str(variables.get("version", "")).lower()
        items = [
            _setting(variables, "log_bin", "ON", "start the server with log_bin=mysql-bin"),
            _setting(variables, "binlog_format", "ROW", "SET GLOBAL binlog_format = 'ROW'"),
            _setting(variables, "binlog_row_image", "FULL", "SET GLOBAL binlog_row_image = 'FULL'"),
            _setting(
                variables,
                "binlog_row_metadata",
                "FULL",
                "SET GLOBAL binlog_row_metadata = 'FULL' (gives column names in the binlog)",
            ),
        ]
        server_id = str(variables.get("server_id", "0"))
        items.append(
            CheckItem(
                "server_id",
                server_id,
                "non-zero",
                server_id not in ("", "0"),
                "set server_id to a unique non-zero number in the server configuration",
            )
        )
        if mariadb:
            strict = str(variables.get("gtid_strict_mode", "OFF"))
            items.append(
                CheckItem(
                    "gtid_strict_mode",
                    strict,
                    "ON (recommended)",
                    strict.upper() in ("ON", "1"),
                    "SET GLOBAL gtid_strict_mode = ON keeps GTID positions strictly ordered",
                    blocking=False,
                )
            )
            compress = str(variables.get("log_bin_compress", "OFF"))
            items.append(
                CheckItem(
                    "log_bin_compress",
                    compress,
                    "OFF",
                    compress.upper() in ("OFF", "0"),
                    "SET GLOBAL log_bin_compress = OFF (compressed events are not decoded)",
                )
            )
        else:
            gtid = str(variables.get("gtid_mode", "OFF"))
            items.append(
                CheckItem(
                    "gtid_mode",
                    gtid,
                    "ON (recommended)",
                    gtid.upper() == "ON",
                    "enable GTIDs (gtid_mode=ON, enforce_gtid_consistency=ON); file:pos works "
                    "without them but does not survive a failover",
                    blocking=False,
                )
            )
        items.extend(self._grant_checks())
        return items

    def _grant_checks(self) -> list[CheckItem]:
        grants = " ".join(str(r[0]) for r in self.query("SHOW GRANTS")).upper()
        has_all = "ALL PRIVILEGES ON *.*" in grants
        user = self.endpoint.user or "root"
        out = []
        for priv in ("REPLICATION SLAVE", "REPLICATION CLIENT", "SELECT"):
            # MariaDB 10.5+ spells REPLICATION CLIENT as BINLOG MONITOR and adds REPLICA names.
            aliases = {
                "REPLICATION SLAVE": ("REPLICATION SLAVE", "REPLICATION REPLICA"),
                "REPLICATION CLIENT": ("REPLICATION CLIENT", "BINLOG MONITOR"),
                "SELECT": ("SELECT",),
            }[priv]
            ok = has_all or any(a in grants for a in aliases)
            out.append(
                CheckItem(
                    f"grant {priv}",
                    "yes" if ok else "no",
                    "yes",
                    ok,
                    f"GRANT {priv} ON *.* TO '{user}'@'%'",
                )
            )
        return out

    def full_before_image_fix(self, table: TableId) -> str:
        return "SET GLOBAL binlog_row_image = FULL (and in the server's configuration)"

    def check_target(self) -> list[CheckItem]:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@read_only")
                (read_only,) = cur.fetchone() or (0,)
        finally:
            conn.close()
        return [
            CheckItem("reachable", "yes", "yes", True),
            CheckItem(
                "read_only",
                "ON" if read_only else "OFF",
                "OFF",
                not read_only,
                "SET GLOBAL read_only = OFF on the target (or give the user SUPER)",
            ),
        ]


def _setting(variables: dict[Any, Any], name: str, expected: str, hint: str) -> CheckItem:
    value = str(variables.get(name, "(not set)"))
    ok = value.upper() == expected or (expected == "ON" and value == "1")
    return CheckItem(name, value, expected, ok, hint)


def introspect(conn: Any, table: TableId) -> TableSchema:
    """Read ``table``'s definition from information_schema over ``conn``."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT column_name, data_type, column_type, is_nullable, numeric_precision, "
            "numeric_scale, character_maximum_length, datetime_precision, extra, "
            "character_set_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (table.schema, table.name),
        )
        cols = cur.fetchall()
        if not cols:
            raise MissingObjectError(
                f"table {table} does not exist on the MySQL/MariaDB source",
                hint="check the table name and the [tables] include patterns",
            )
        cur.execute(
            "SELECT index_name, column_name, non_unique, nullable FROM "
            "information_schema.statistics WHERE table_schema = %s AND table_name = %s "
            "ORDER BY index_name = 'PRIMARY' DESC, index_name, seq_in_index",
            (table.schema, table.name),
        )
        stats = cur.fetchall()
        json_cols = _mariadb_json_columns(cur, table)
    columns = tuple(_column(row, json_cols) for row in cols)
    primary: list[str] = []
    uniques: dict[str, list[str]] = {}
    nullable_index: set[str] = set()
    for index_name, column_name, non_unique, nullable in stats:
        if index_name == "PRIMARY":
            primary.append(str(column_name))
        elif not int(non_unique):
            uniques.setdefault(str(index_name), []).append(str(column_name))
            if nullable == "YES":
                nullable_index.add(str(index_name))
    unique_keys = tuple(tuple(c) for n, c in uniques.items() if n not in nullable_index)
    return TableSchema(table, columns, tuple(primary), unique_keys)


def _mariadb_json_columns(cur: Any, table: TableId) -> set[str]:
    """MariaDB's JSON is LONGTEXT with a json_valid() CHECK: find those columns."""
    try:
        cur.execute(
            "SELECT constraint_name, check_clause FROM information_schema.check_constraints "
            "WHERE constraint_schema = %s AND table_name = %s",
            (table.schema, table.name),
        )
    except pymysql.err.MySQLError:
        return set()
    out = set()
    for _name, clause in cur.fetchall():
        match = re.fullmatch(r"\s*json_valid\(`((?:[^`]|``)+)`\)\s*", str(clause), re.I)
        if match:
            out.add(match.group(1).replace("``", "`"))
    return out


def _column(row: tuple[Any, ...], json_cols: set[str]) -> Column:
    name, data_type, column_type, nullable, num_prec, num_scale, char_len, dt_prec, extra, cs = row
    name, data_type, column_type = str(name), str(data_type).lower(), str(column_type)
    ctype = column_type.lower()
    common: dict[str, Any] = {
        "name": name,
        "source_type": column_type,
        "nullable": nullable == "YES",
        "generated": "GENERATED" in str(extra or "").upper(),
        "charset": cs,
    }
    if name in json_cols or data_type == "json":
        return Column(kind="json", **common)
    if data_type in _INT_BITS:
        return Column(kind="int", bits=_INT_BITS[data_type], unsigned="unsigned" in ctype, **common)
    if data_type in ("decimal", "numeric"):
        return Column(
            kind="decimal",
            precision=int(num_prec),
            scale=int(num_scale or 0),
            unsigned="unsigned" in ctype,
            **common,
        )
    if data_type == "float":
        return Column(kind="float", unsigned="unsigned" in ctype, **common)
    if data_type in ("double", "real"):
        return Column(kind="double", unsigned="unsigned" in ctype, **common)
    if data_type == "date":
        return Column(kind="date", **common)
    if data_type == "time":
        return Column(kind="duration", precision=int(dt_prec or 0), **common)
    if data_type == "datetime":
        return Column(kind="datetime", precision=int(dt_prec or 0), **common)
    if data_type == "timestamp":
        return Column(kind="timestamptz", precision=int(dt_prec or 0), **common)
    if data_type == "year":
        return Column(kind="year", **common)
    if data_type in ("char", "varchar"):
        return Column(kind="str", length=int(char_len), fixed=data_type == "char", **common)
    if data_type in ("tinytext", "text", "mediumtext", "longtext"):
        return Column(kind="str", **common)
    if data_type in ("binary", "varbinary"):
        return Column(kind="bytes", length=int(char_len), fixed=data_type == "binary", **common)
    if data_type in ("tinyblob", "blob", "mediumblob", "longblob"):
        return Column(kind="bytes", **common)
    if data_type in ("enum", "set"):
        return Column(kind=data_type, labels=_labels(column_type), **common)
    if data_type == "bit":
        return Column(kind="bit", bits=int(num_prec or 1), **common)
    if data_type == "uuid":  # MariaDB 10.7+
        return Column(kind="uuid", **common)
    return Column(kind="other", **common)


def _labels(column_type: str) -> tuple[str, ...]:
    """The labels of ``enum('a','b''c')`` / ``set(...)`` as MySQL prints them."""
    inner = column_type[column_type.index("(") + 1 : column_type.rindex(")")]
    return tuple(m.replace("''", "'") for m in re.findall(r"'((?:[^']|'')*)'", inner))
