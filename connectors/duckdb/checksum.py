"""Checksum SQL for verify on DuckDB: canonical row text, chunk hashes, repair literals.

The canonical text of every value must be byte-identical to what the MySQL and PostgreSQL
modules produce (docs/verify.md has the table). DuckDB specifics: one database object per
file, so every worker thread gets its own cursor of one shared connection; ``TIME`` has no
``strftime`` and is formatted through a timestamp; a limited ``DELETE`` goes through
``rowid``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import duckdb

from connectors._checksum import ChecksumBase, sql_string
from connectors.errors import ToolkitError
from connectors.model import Column, TableId

from . import DuckDB

__all__ = ["Checksum", "Session"]


class Session:
    """A cursor of the checksum's shared connection (DuckDB allows one per file)."""

    def __init__(self, owner: Checksum) -> None:
        self.owner = owner
        self.conn = owner.shared().cursor()
        self.conn.execute("SET TimeZone = 'UTC'")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            return list(self.conn.execute(sql).fetchall())
        except duckdb.Error as exc:
            raise ToolkitError(f"{self.owner.db.endpoint.display}: {exc}") from None

    def run_script(self, statements: Sequence[str]) -> None:
        """Run ``statements`` in one transaction; roll back on any error."""
        try:
            self.conn.execute("BEGIN TRANSACTION")
            for stmt in statements:
                self.conn.execute(stmt)
            self.conn.execute("COMMIT")
        except duckdb.Error as exc:
            self.conn.execute("ROLLBACK")
            raise ToolkitError(f"{self.owner.db.endpoint.display}: {exc}") from None

    def close(self) -> None:
        self.conn.close()
        self.owner.release()


class Checksum(ChecksumBase):
    """DuckDB SQL for verify's canonical encoding and hashes."""

    engine_name = "DuckDB"
    float_specials = ("'nan'::DOUBLE", "'inf'::DOUBLE", "'-inf'::DOUBLE")
    float_cast = "::DOUBLE"
    row_address = "rowid"

    script_prelude: tuple[str, ...] = ()

    def __init__(self, db: DuckDB, *, writable: bool = False) -> None:
        self.db = db
        #: verify only reads; a read-only open coexists with other readers of the file
        self.writable = writable
        self._lock = threading.Lock()
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._users = 0

    def shared(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._conn is None:
                read_only = (
                    not self.writable
                    and self.db.path != ":memory:"
                    and os.path.exists(self.db.path)
                )
                self._conn = self.db.connect(read_only=read_only)
            self._users += 1
            return self._conn

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users <= 0 and self._conn is not None:
                self._conn.close()
                self._conn = None

    def session(self) -> Session:
        return Session(self)

    # ------------------------------------------------------------------ canonical text

    def canonical(self, sql: str, column: Column, canon: str, scale: int | None) -> str:
        """SQL giving ``sql``'s canonical text (NULL stays NULL) for canonical kind ``canon``."""
        kind = column.kind
        if canon == "int":
            return (
                f"CAST(CAST({sql} AS HUGEINT) AS VARCHAR)"
                if kind == "bool"
                else (f"CAST({sql} AS VARCHAR)")
            )
        if canon == "decimal":
            if scale is None or (kind == "decimal" and column.scale == scale):
                return f"CAST({sql} AS VARCHAR)"
            return f"CAST(CAST({sql} AS DECIMAL(38, {scale})) AS VARCHAR)"
        if canon == "double":
            return _double(f"CAST({sql} AS DOUBLE)")
        if canon == "bytes":
            return f"hex({sql})"
        if canon == "date":
            return f"strftime(CAST({sql} AS DATE), '%Y-%m-%d')"
        if canon == "time":
            return f"strftime(DATE '2000-01-01' + CAST({sql} AS TIME), '%H:%M:%S.%f')"
        if canon == "datetime":
            return f"strftime({sql}, '%Y-%m-%d %H:%M:%S.%f')"
        if canon == "bit":
            return (
                f"CASE WHEN {sql} IS NULL THEN NULL "
                f"ELSE coalesce(nullif(ltrim(CAST({sql} AS VARCHAR), '0'), ''), '0') END"
            )
        value = f"hex({sql})" if kind == "bytes" else f"CAST({sql} AS VARCHAR)"
        if canon == "char":
            value = f"rtrim({value}, ' ')"
        return f"(CAST(length({value}) AS VARCHAR) || ':' || {value})"

    def hash64(self, text: str) -> str:
        return f"CAST('0x' || left(md5({text}), 16) AS UBIGINT)"

    def digest_sql(self, text: str, source: str, order: Sequence[str]) -> str:
        """One md5() over the chunk's texts in key order (DuckDB scans in parallel, so the
        aggregate orders its input itself)."""
        return (
            f"SELECT count(*), md5(string_agg({text}, chr(10) ORDER BY {', '.join(order)})) "
            f"{source}"
        )

    def bucket(self, text: str, bits: int) -> str:
        return f"(CAST('0x' || substr(md5({text}), 25, 8) AS UBIGINT) & {(1 << bits) - 1})"

    def int_div(self, sql: str, lo: int, width: int) -> str:
        return f"((CAST({sql} AS HUGEINT) - ({lo})) // {width})"

    def raw(self, sql: str, column: Column) -> str:
        """The column as fetched: TIMESTAMPTZ as naive UTC (the driver needs pytz otherwise)."""
        if column.kind == "timestamptz":
            return f"CAST({sql} AS TIMESTAMP)"
        return sql

    def estimate_sql(self, table: TableId) -> str:
        """One row: DuckDB's estimated row count of the table (it keeps no byte size)."""
        return (
            "SELECT estimated_size, NULL FROM duckdb_tables() WHERE database_name = "
            f"current_database() AND schema_name = {_string(table.schema)} "
            f"AND table_name = {_string(table.name)}"
        )

    # ------------------------------------------------------------------ repair

    def bytes_literal(self, data: bytes, column: Column) -> str:
        return f"from_hex('{data.hex()}')"

    def interval_literal(self, text: str, column: Column) -> str:
        return f"INTERVAL '{text}'"

    def array_literal(self, value: list[Any], column: Column) -> str:
        return "[" + ", ".join(self.literal(v, column) for v in value) + "]"


def _double(x: str) -> str:
    """Exact, engine-neutral text of a double (see connectors/mysql/checksum.py)."""
    e = f"CAST(floor(log2(abs({x}))) AS BIGINT)"
    m = f"(abs({x}) * pow(2.0, 52 - {e}))"
    half = f"((52 - {e}) // 2)"
    tiny = f"(abs({x}) * pow(2.0, {half}) * pow(2.0, (52 - {e}) - {half}))"
    body = (
        f"CASE WHEN {m} >= 9007199254740992.0 "
        f"THEN CAST(CAST({m} / 2 AS BIGINT) AS VARCHAR) || 'p' || CAST({e} + 1 AS VARCHAR) "
        f"WHEN {m} < 4503599627370496.0 "
        f"THEN CAST(CAST({m} * 2 AS BIGINT) AS VARCHAR) || 'p' || CAST({e} - 1 AS VARCHAR) "
        f"ELSE CAST(CAST({m} AS BIGINT) AS VARCHAR) || 'p' || CAST({e} AS VARCHAR) END"
    )
    slow = body.replace(m, tiny)
    sign = f"(CASE WHEN {x} < 0 THEN '-' ELSE '' END)"
    return (
        f"CASE WHEN {x} = 0 THEN '0' WHEN isnan({x}) THEN 'nan' "
        f"WHEN isinf({x}) AND {x} > 0 THEN 'inf' WHEN isinf({x}) THEN '-inf' "
        f"WHEN abs({x}) < 1e-290 THEN {sign} || ({slow}) "
        f"ELSE {sign} || ({body}) END"
    )


_string = sql_string
