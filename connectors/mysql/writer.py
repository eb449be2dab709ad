"""MySQL and MariaDB as a target: multi-row INSERT into a temporary staging table, then joins.

pymysql's ``executemany`` folds an ``INSERT ... VALUES`` into statements of many rows (up to
``max_allowed_packet``), which loads staging about as fast as ``LOAD DATA LOCAL`` without a
temporary file and with the driver's own escaping. The connection uses ``CLIENT_FOUND_ROWS``
so an UPDATE reports the rows it *matched* (a row updated to identical values still counts),
which is what the merge compares with the source. Keyless tables delete one of several
identical rows with ``DELETE ... LIMIT n`` (DESIGN.md: Row identity).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

import pymysql
import pymysql.constants.CLIENT

from connectors.base import RowRejected, TableBatch
from connectors.errors import ConnectError
from connectors.model import Column, TableId, TableSchema
from connectors.mysql import MySQL, map_error
from connectors.sqlwriter import (
    CHECKPOINT_SCHEMA,
    Adapter,
    SqlWriter,
    Staged,
    common_adapter,
    json_text,
    uuid_text,
)

__all__ = ["MySQLWriter", "open_writer"]

_stage_ids = itertools.count(1)
#: MySQL error codes that mean "the connection is gone" rather than "the row is bad"
_CONNECTION_CODES = {2002, 2003, 2006, 2013, 2055}


def open_writer(database: MySQL) -> MySQLWriter:
    """A writer on a new connection to ``database`` (autocommit off, FOUND_ROWS on)."""
    conn = database.connect(
        autocommit=False,
        client_flag=pymysql.constants.CLIENT.FOUND_ROWS | pymysql.constants.CLIENT.MULTI_STATEMENTS,
        database=None,
    )
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO'")
        # MariaDB resolves the alias in `DELETE t FROM ... AS t` only with a default database
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{CHECKPOINT_SCHEMA}`")
    conn.commit()
    conn.select_db(CHECKPOINT_SCHEMA)
    return MySQLWriter(database, conn)


def _utc_naive(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _bit_int(value: Any) -> Any:
    if isinstance(value, bytes):
        return int.from_bytes(value, "big")
    if isinstance(value, str):
        return int(value, 2)
    return value


class MySQLWriter(SqlWriter):
    """Writes to MySQL/MariaDB: multi-row INSERT to staging, DELETE/UPDATE ... JOIN."""

    dialect: ClassVar[str] = "mysql"
    placeholder: ClassVar[str] = "%s"
    null_safe_eq: ClassVar[str] = "<=>"

    conn: pymysql.connections.Connection[Any]

    def adapter(self, col: Column) -> Adapter | None:
        kind = col.kind
        if kind in ("json", "array"):
            return json_text
        if kind == "uuid":
            return uuid_text
        if kind in ("timestamptz", "datetime"):
            return _utc_naive
        if kind == "bit":
            return _bit_int
        if kind == "bool":
            return lambda v: int(v) if isinstance(v, bool) else v
        return common_adapter(col)

    # ------------------------------------------------------------------ statements

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        try:
            with self.conn.cursor() as cur:
                return int(cur.execute(sql, params))
        except pymysql.err.MySQLError as exc:
            raise self._map(exc) from None

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        except pymysql.err.MySQLError as exc:
            raise self._map(exc) from None

    def _map(self, exc: pymysql.err.MySQLError) -> Exception:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code in _CONNECTION_CODES or isinstance(exc, pymysql.err.InterfaceError):
            mapped = map_error(exc, self.database.endpoint)
            if isinstance(mapped, ConnectError):
                return mapped
        text = exc.args[1] if len(exc.args) > 1 else str(exc)
        return RowRejected(f"({code}) {text}" if code else str(text))

    def commit(self) -> None:
        try:
            self.conn.commit()
        except pymysql.err.MySQLError as exc:
            raise self._map(exc) from None
        self._stage_used.clear()

    def rollback(self) -> None:
        try:
            self.conn.rollback()
        except pymysql.err.MySQLError:
            pass
        self._stage_used.clear()

    def create_schema(self, schema: str) -> None:
        self.execute(f"CREATE DATABASE IF NOT EXISTS {self.q(schema)}")

    def table_exists(self, table: TableId) -> bool:
        return bool(
            self.query(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name = %s",
                (table.schema, table.name),
            )
        )

    def checkpoint_ddl(self) -> str:
        return super().checkpoint_ddl().replace("TIMESTAMP", "DATETIME(6)")

    def foreign_key_pairs(self) -> list[tuple[TableId, TableId]]:
        rows = self.query(
            "SELECT table_schema, table_name, referenced_table_schema, referenced_table_name "
            "FROM information_schema.key_column_usage WHERE referenced_table_name IS NOT NULL"
        )
        return [(TableId(a, b), TableId(c, d)) for a, b, c, d in rows]

    def limit_one(self, key: Sequence[str]) -> str:
        return "" if key else " LIMIT 1"

    # ------------------------------------------------------------------ staging

    def stage(self, schema: TableSchema, cols: Sequence[Column], data: Staged) -> str:
        table = schema.table
        name = self._stage_names.get(table)
        if name is None:
            name = f"redoline_stage_{next(_stage_ids)}"
            types = dict(
                self.query(
                    "SELECT column_name, column_type FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s",
                    (table.schema, table.name),
                )
            )
            defs = ", ".join(f"{self.q(c.name)} {types[c.name]} NULL" for c in cols)
            key = schema.identity
            index = f", KEY (_op, {', '.join(self.q(k) for k in key)})" if key else ""
            # staging lives in the target table's database so no other database is needed
            name = f"{self.q(table.schema)}.{name}"
            self.execute(
                f"CREATE TEMPORARY TABLE {name} (_op CHAR(1), _id INT, _n INT, {defs}{index}) "
                "ENGINE=InnoDB"
            )
            self._stage_names[table] = name
        else:
            # temporary tables outlive transactions on MySQL: empty it from the last use
            self.execute(f"DELETE FROM {name}")
        self._stage_used.add(name)
        columns = ", ".join(["_op", "_id", "_n", *(self.q(c.name) for c in cols)])
        marks = ", ".join(["%s"] * (len(cols) + 3))
        try:
            with self.conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {name} ({columns}) VALUES ({marks})", data.rows())
        except pymysql.err.MySQLError as exc:
            raise self._map(exc) from None
        return name

    def _drop_stage(self, name: str) -> None:
        self._stage_used.discard(name)
        self.execute(f"DROP TEMPORARY TABLE IF EXISTS {name}")

    def delete_join_sql(self, t: str, stage: str, on: str, op: str) -> str:
        return f"DELETE t FROM {t} AS t JOIN {stage} AS s ON {on} WHERE s._op = '{op}'"

    def update_join_sql(self, t: str, stage: str, set_cols: Sequence[str], on: str, op: str) -> str:
        sets = ", ".join(f"t.{self.q(c)} = s.{self.q(c)}" for c in set_cols)
        return f"UPDATE {t} AS t JOIN {stage} AS s ON {on} SET {sets} WHERE s._op = '{op}'"

    def delete_images(self, batch: TableBatch, t: str, stage: str, names: list[str]) -> int:
        # MySQL has no row address and a multi-table DELETE takes no LIMIT: delete by join
        # the images whose every copy goes, and the rest one statement each with LIMIT n.
        eq = self.image_eq(batch.schema, names)
        found = self.query(
            f"SELECT s._id, s._n, COUNT(*) FROM {stage} s JOIN {t} t ON {eq} "
            "WHERE s._op = 'd' GROUP BY s._id, s._n"
        )
        partial = [int(i) for i, n, count in found if int(count) > int(n)]
        deleted = 0
        if partial:
            marks = ", ".join(["%s"] * len(partial))
            self.execute(
                f"UPDATE {stage} SET _op = 'x' WHERE _op = 'd' AND _id IN ({marks})", partial
            )
        if len(partial) < len(found):
            deleted += self.execute(self.delete_join_sql(t, stage, eq, "d"))
        for i in partial:
            image = batch.deletes[i]
            row = dict(zip(names, image, strict=True))
            where, params = self._where(batch.schema, (), row)
            deleted += self.execute(
                f"DELETE FROM {t} WHERE {where} LIMIT {int(batch.delete_counts[i])}", params
            )
        return deleted
