"""MySQL and MariaDB as a target: ``LOAD DATA LOCAL`` into a temporary staging table, then joins.

The staging rows are written as tab-separated text (built column by column with one converter
per column type, far cheaper than the driver's per-value escaping) to a private temporary file
and sent with ``LOAD DATA LOCAL INFILE``. ``LOCAL`` turns conversion errors into warnings, so
any warning that is not a note rejects the group (the applier replays it row by row and names
the row). A value the text path does not know, or a server with ``local_infile`` off, falls
back to pymysql's multi-row ``executemany``. The connection uses ``CLIENT_FOUND_ROWS``
so an UPDATE reports the rows it *matched* (a row updated to identical values still counts),
which is what the merge compares with the source. Keyless tables delete one of several
identical rows with ``DELETE ... LIMIT n`` (DESIGN.md: Row identity).
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pymysql
import pymysql.constants.CLIENT

from connectors.base import RowRejected, TableBatch
from connectors.errors import ConnectionFailure
from connectors.model import Column, TableId, TableSchema
from connectors.mysql import DATABASE_OPTIONS, TABLE_OPTIONS, MySQL, map_error
from connectors.mysql.errors import CONNECTION_CODES, NO_LOCAL_INFILE
from connectors.mysql.loaddata import load_file
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
_NULL = "\\N"


class _NotText(Exception):
    """A staged value the text path does not convert (the batch uses executemany)."""


def _escape(value: str) -> str:
    # LOAD DATA's default format: backslash escapes, tab between fields, newline between rows
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\t" in value:
        value = value.replace("\t", "\\t")
    if "\n" in value:
        value = value.replace("\n", "\\n")
    if "\r" in value:
        value = value.replace("\r", "\\r")
    if "\0" in value:
        value = value.replace("\0", "\\0")
    return value


def _datetime_text(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        raise _NotText  # as executemany always did: the driver's own rendering
    return value.isoformat(" ")


def _time_text(value: dt.time) -> str:
    if value.tzinfo is not None:
        raise _NotText
    return value.isoformat()


#: value type -> its LOAD DATA text; a type not here sends the batch through executemany
_TEXT: dict[type, Callable[[Any], str]] = {
    int: int.__repr__,
    bool: lambda v: "1" if v else "0",
    float: float.__repr__,
    decimal.Decimal: lambda v: format(v, "f"),
    str: _escape,
    dt.datetime: _datetime_text,
    dt.date: dt.date.isoformat,
    dt.time: _time_text,
}


def _text_column(values: list[Any], kind: str) -> list[str]:
    """One staged column as LOAD DATA fields."""
    if kind == "bytes":
        if not all(v is None or type(v) is bytes for v in values):
            raise _NotText
        return [_NULL if v is None else v.hex() for v in values]
    if kind == "bit":  # binary digits, as loaddata.load_statement reads them
        if not all(v is None or type(v) is int for v in values):
            raise _NotText
        return [_NULL if v is None else format(v, "b") for v in values]
    types = set(map(type, values))
    has_null = type(None) in types
    types.discard(type(None))
    fns = [_TEXT.get(t) for t in types]
    if None in fns:
        raise _NotText
    if len(fns) == 1:
        fn = fns[0]
        if not has_null:
            return list(map(fn, values))  # type: ignore[arg-type]
        return [_NULL if v is None else fn(v) for v in values]  # type: ignore[misc]
    text = _TEXT
    return [_NULL if v is None else text[type(v)](v) for v in values]


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
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{CHECKPOINT_SCHEMA}` {DATABASE_OPTIONS}")
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
    float4_type: ClassVar[str] = "FLOAT"
    #: every DDL statement commits implicitly (and what was pending before it)
    transactional_ddl: ClassVar[bool] = False

    conn: pymysql.connections.Connection[Any]

    def __init__(self, database: MySQL, conn: pymysql.connections.Connection[Any]) -> None:
        super().__init__(database, conn)
        #: stage with LOAD DATA LOCAL (off after the server refused it once)
        self._load_data = True
        self._tmpdir: str | None = None
        #: staging table name -> its CREATE TEMPORARY TABLE (re-run to empty it)
        self._stage_ddl: dict[str, str] = {}
        #: staging table name -> whether updates from it may use INSERT ... ON DUPLICATE KEY
        self._upsert_ok: dict[str, bool] = {}

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
        if code in CONNECTION_CODES or isinstance(exc, pymysql.err.InterfaceError):
            mapped = map_error(exc, self.database.endpoint)
            if isinstance(mapped, ConnectionFailure):
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
        # not the server's default charset: a stock MariaDB's latin1 refuses most of Unicode
        self.execute(f"CREATE DATABASE IF NOT EXISTS {self.q(schema)} {DATABASE_OPTIONS}")

    def column_names(self, table: TableId) -> set[str]:
        rows = self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = %s",
            (table.schema, table.name),
        )
        return {str(r[0]) for r in rows}

    def table_exists(self, table: TableId) -> bool:
        return bool(
            self.query(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name = %s",
                (table.schema, table.name),
            )
        )

    def checkpoint_ddl(self) -> str:
        ddl = super().checkpoint_ddl().replace("TIMESTAMP", "DATETIME(6)")
        return f"{ddl} {TABLE_OPTIONS}"

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
            # the target column's own charset and collation: a staging column in the
            # database's default (latin1 on a stock server) would refuse what the target
            # holds, and the joins compare as the target does
            types = {
                name: ctype + (f" CHARACTER SET {cs} COLLATE {coll}" if cs else "")
                for name, ctype, cs, coll in self.query(
                    "SELECT column_name, column_type, character_set_name, collation_name "
                    "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                    (table.schema, table.name),
                )
            }
            defs = ", ".join(f"{self.q(c.name)} {types[c.name]} NULL" for c in cols)
            key = schema.identity
            index = f", KEY (_op, {', '.join(self.q(k) for k in key)})" if key else ""
            # staging lives in the target table's database so no other database is needed
            name = f"{self.q(table.schema)}.{name}"
            self._stage_ddl[name] = (
                f"CREATE TEMPORARY TABLE {name} (_op CHAR(1), _id INT, _n INT, {defs}{index}) "
                "ENGINE=InnoDB"
            )
            self.execute(self._stage_ddl[name])
            self._stage_names[table] = name
            self._upsert_ok[name] = self._can_upsert(table, key)
        else:
            # Temporary tables outlive transactions on MySQL: empty it from the last use.
            # Dropping and re-creating takes ~0.3 ms where DELETE of 20k rows took ~20 ms;
            # TRUNCATE would be as quick but commits implicitly. (TEMPORARY DDL does not.)
            self.execute(f"DROP TEMPORARY TABLE IF EXISTS {name}")
            self.execute(self._stage_ddl[name])
        self._stage_used.add(name)
        if self._load_data and self._load(name, cols, data):
            return name
        columns = ", ".join(["_op", "_id", "_n", *(self.q(c.name) for c in cols)])
        marks = ", ".join(["%s"] * (len(cols) + 3))
        try:
            with self.conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {name} ({columns}) VALUES ({marks})", data.rows())
        except pymysql.err.MySQLError as exc:
            raise self._map(exc) from None
        return name

    def _load(self, name: str, cols: Sequence[Column], data: Staged) -> bool:
        """``LOAD DATA LOCAL`` ``data`` into staging ``name``; False: use executemany."""
        try:
            fields = [
                data.ops,
                list(map(str, range(len(data)))),
                list(map(str, data.counts)),
                *(_text_column(v, c.kind) for v, c in zip(data.columns, cols, strict=True)),
            ]
            text = "\n".join(map("\t".join, zip(*fields, strict=True))) + "\n"
            payload = text.encode("utf-8")
        except (_NotText, UnicodeEncodeError):
            return False
        columns = [("_op", "str"), ("_id", "int"), ("_n", "int")]
        columns += [(self.q(c.name), c.kind) for c in cols]
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="redoline-apply-")
        path = os.path.join(self._tmpdir, "stage.tsv")
        with open(path, "wb") as f:
            f.write(payload)
        try:
            loaded, bad = load_file(self.conn, path, name, columns)
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args else None
            if code in NO_LOCAL_INFILE:
                self._load_data = False
                return False
            raise self._map(exc) from None
        if bad:
            raise RowRejected(f"staging rows for {name} gave warnings: {'; '.join(bad)}")
        if loaded != len(data):
            raise RowRejected(f"staging {name} loaded {loaded} of {len(data)} rows")
        return True

    def close(self) -> None:
        super().close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _drop_stage(self, name: str) -> None:
        self._stage_used.discard(name)
        self._stage_ddl.pop(name, None)
        self._upsert_ok.pop(name, None)
        self.execute(f"DROP TEMPORARY TABLE IF EXISTS {name}")

    def delete_join_sql(self, t: str, stage: str, on: str, op: str) -> str:
        return f"DELETE t FROM {t} AS t JOIN {stage} AS s ON {on} WHERE s._op = '{op}'"

    def update_join_sql(self, t: str, stage: str, set_cols: Sequence[str], on: str, op: str) -> str:
        sets = ", ".join(f"t.{self.q(c)} = s.{self.q(c)}" for c in set_cols)
        return f"UPDATE {t} AS t JOIN {stage} AS s ON {on} SET {sets} WHERE s._op = '{op}'"

    def _can_upsert(self, table: TableId, key: Sequence[str]) -> bool:
        """Whether ``INSERT ... ON DUPLICATE KEY UPDATE`` on ``table`` is exactly an update by
        ``key``: the key is its primary key (InnoDB checks the clustered index first, so a row
        whose key exists is always the one updated, and a clash on another unique key still
        fails as an UPDATE would) or its only unique key, and no trigger sees the INSERT."""
        if not key:
            return False
        rows = self.query(
            "SELECT index_name, column_name FROM information_schema.statistics "
            "WHERE table_schema = %s AND table_name = %s AND non_unique = 0 "
            "ORDER BY index_name, seq_in_index",
            (table.schema, table.name),
        )
        unique: dict[str, list[str]] = {}
        for index, column in rows:
            unique.setdefault(str(index), []).append(str(column))
        wanted = list(key)
        if unique.get("PRIMARY") != wanted and list(unique.values()) != [wanted]:
            return False
        triggers = self.query(
            "SELECT COUNT(*) FROM information_schema.triggers "
            "WHERE event_object_schema = %s AND event_object_table = %s",
            (table.schema, table.name),
        )
        return not triggers[0][0]

    def update_staged(
        self, batch: TableBatch, t: str, stage: str, set_cols: Sequence[str], op: str
    ) -> int:
        # MariaDB runs `UPDATE t JOIN stage` through an internal temporary table whenever the
        # staging table drives the join (it always does: it is the small side), and that is
        # an Aria table on disk (Created_tmp_disk_tables +1 per statement): the code path of
        # an intermittent server crash (signal 11 in create_tmp_table / ha_maria::drop_table).
        # INSERT ... SELECT ... ON DUPLICATE KEY UPDATE from the staging table creates none
        # (and took 116-168 ms where the join took 171-337 ms for 20k rows). It would insert
        # a staged row whose key is missing, so those are set aside first (op 'm') and put
        # back afterwards for the caller's missing-row handling.
        if not self._upsert_ok.get(stage):
            return super().update_staged(batch, t, stage, set_cols, op)
        key = batch.key
        on = " AND ".join(f"t.{self.q(k)} = s.{self.q(k)}" for k in key)
        missing = self.execute(
            f"UPDATE {stage} AS s SET s._op = 'm' WHERE s._op = '{op}' "
            f"AND NOT EXISTS (SELECT 1 FROM {t} AS t WHERE {on})"
        )
        names = [*key, *set_cols]
        cols = ", ".join(self.q(c) for c in names)
        scols = ", ".join(f"s.{self.q(c)}" for c in names)
        # (a table of key columns only has nothing to set: a no-op assignment keeps it valid)
        sets = ", ".join(f"{self.q(c)} = VALUES({self.q(c)})" for c in set_cols or key[:1])
        self.execute(
            f"INSERT INTO {t} ({cols}) SELECT {scols} FROM {stage} AS s WHERE s._op = '{op}' "
            f"ON DUPLICATE KEY UPDATE {sets}"
        )
        if missing:
            self.execute(f"UPDATE {stage} SET _op = '{op}' WHERE _op = 'm'")
        expected = len(batch.updates) if op == "u" else len(batch.inserts)
        return expected - missing

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
