"""Checksum SQL for verify on MySQL/MariaDB: canonical row text, chunk hashes, repair literals.

The canonical text of every value must be byte-identical to what the PostgreSQL and DuckDB
modules produce for the same value (docs/verify.md has the table). MySQL specifics handled
here: ``TIMESTAMP`` is read in a ``+00:00`` session so it comes out in UTC, strings in a
non-UTF-8 charset are converted to utf8mb4 before hashing (MD5 hashes bytes), ``DIV`` is
integer division, and a limited ``DELETE`` is ``DELETE ... LIMIT n``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pymysql

from connectors._checksum import ChecksumBase
from connectors.model import Column, TableId

from . import MySQL, map_error

__all__ = ["Checksum", "Session"]

_UTF8 = {None, "", "utf8mb4", "utf8mb3", "utf8", "ascii", "binary"}

#: starts every chunk digest query, so the session can tell a truncated GROUP_CONCAT
_DIGEST = "/* redoline digest */ "
#: GROUP_CONCAT's limit in verify sessions; verify keeps a digested chunk's text far smaller
#: (verify/engine.py), so hitting it means the catalog's size estimate was wrong
_CONCAT_LIMIT = 64 << 20


class Session:
    """One connection for verify: UTC session, autocommit reads, one-transaction scripts."""

    def __init__(self, db: MySQL) -> None:
        self.db = db
        self.conn = db.connect()
        with self.conn.cursor() as cur:
            for stmt in Checksum.script_prelude:
                cur.execute(stmt)
            cur.execute(f"SET SESSION group_concat_max_len = {_CONCAT_LIMIT}")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql)
                rows = list(cur.fetchall())
                if cur.warning_count and sql.startswith(_DIGEST):
                    # GROUP_CONCAT cut the text short (a warning, not an error): the digest
                    # covers part of the chunk, so it must not be trusted as equal
                    return [(row[0], None) for row in rows]
                return rows
        except pymysql.err.MySQLError as exc:
            raise map_error(exc, self.db.endpoint) from None

    def run_script(self, statements: Sequence[str]) -> None:
        """Run ``statements`` in one transaction; roll back on any error."""
        try:
            self.conn.begin()
            with self.conn.cursor() as cur:
                for stmt in statements:
                    cur.execute(stmt)
            self.conn.commit()
        except pymysql.err.MySQLError as exc:
            self.conn.rollback()
            raise map_error(exc, self.db.endpoint) from None

    def close(self) -> None:
        self.conn.close()


class Checksum(ChecksumBase):
    """MySQL/MariaDB SQL for verify's canonical encoding and hashes."""

    engine_name = "MySQL"
    true, false = "1", "0"
    #: a bool column is TINYINT(1): its integers are written as they are
    bool_from_int = False
    #: MySQL has no NaN/inf: NULL is the closest it can hold (docs/verify.md: Limits)
    float_specials = ("NULL", "NULL", "NULL")
    #: the session time zone is UTC and DATETIME holds no zone
    naive_instants = True

    #: session settings that make literals mean what they say: TIMESTAMP in UTC, and
    #: backslash as an escape character (repair doubles it)
    script_prelude: tuple[str, ...] = (
        "SET time_zone = '+00:00'",
        "SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', '')",
    )

    def __init__(self, db: MySQL, *, writable: bool = False) -> None:
        self.db = db

    def session(self) -> Session:
        return Session(self.db)

    # ------------------------------------------------------------------ canonical text

    def canonical(self, sql: str, column: Column, canon: str, scale: int | None) -> str:
        """SQL giving ``sql``'s canonical text (NULL stays NULL) for canonical kind ``canon``."""
        # CONCAT(x) spells a number or a temporal value as CAST(x AS CHAR) does, but skips
        # CAST's charset conversion: on 1M rows of INT, DECIMAL and DATETIME(6) the row text
        # took 0.40 s of server CPU with CAST/DATE_FORMAT and 0.24 s with CONCAT.
        if canon == "int":
            return f"CONCAT({sql})"
        if canon == "decimal":
            if column.kind == "decimal" and column.scale == scale:
                return f"CONCAT({sql})"
            return f"CONCAT(CAST({sql} AS DECIMAL(65, {scale or 0})))"
        if canon == "double":
            return _double(f"({sql})")
        if canon == "bytes":
            return f"HEX({sql})"
        if canon == "date":
            return f"CONCAT({sql})"
        if canon == "time":
            return f"TIME_FORMAT({sql}, '%H:%i:%s.%f')"
        if canon == "datetime":
            # six fractional digits, as DATE_FORMAT's %f; TIMESTAMP in the session's +00:00
            if column.precision == 6:
                return f"CONCAT({sql})"
            return f"CONCAT(CAST({sql} AS DATETIME(6)))"
        if canon == "bit":
            return f"BIN({sql})"
        # text: length-prefixed so column boundaries can never shift between columns
        value = sql
        if column.kind == "bytes":
            value = f"HEX({sql})"
        elif column.kind not in ("str", "enum", "set", "json") or column.charset not in _UTF8:
            value = f"CONVERT({sql} USING utf8mb4)"
        elif column.kind == "json" and column.source_type.lower() == "json":
            value = f"CAST({sql} AS CHAR)"
        if canon == "char":
            value = f"TRIM(TRAILING ' ' FROM {value})"
        return f"CONCAT(CHAR_LENGTH({value}), ':', {value})"

    def row_text(self, pieces: Sequence[str]) -> str:
        """The pieces joined by ``|`` with NULL spelled ``~`` (never a piece's first char)."""
        return "CONCAT_WS('|', " + ", ".join(f"COALESCE({p}, '~')" for p in pieces) + ")"

    def hash64(self, text: str) -> str:
        """The first 64 bits of MD5(text) as an unsigned integer."""
        return f"CAST(CONV(LEFT(MD5({text}), 16), 16, 10) AS UNSIGNED)"

    def hash_hex(self, text: str) -> str:
        return f"LEFT(MD5({text}), 16)"

    def digest_sql(self, text: str, source: str, order: Sequence[str]) -> str:
        """One MD5 over the chunk's texts instead of one per row (MD5() costs MariaDB about
        0.35 us a call through OpenSSL 3, more than building the row text).

        No ORDER BY: InnoDB reads a key range of its clustered index (the primary key, or the
        first unique NOT NULL key) in key order, and GROUP_CONCAT's ORDER BY sorts anyway
        (1M rows: 0.50 s without, 0.94 s with). Rows read in another order only make the
        chunk look different, and its bisection sums order-free hashes.
        """
        return f"{_DIGEST}SELECT COUNT(*), MD5(GROUP_CONCAT({text} SEPARATOR '\n')) {source}"

    def bucket(self, text: str, bits: int) -> str:
        """A bucket number in [0, 2**bits) from MD5 bits that ``hash64`` does not use."""
        return f"(CONV(SUBSTRING(MD5({text}), 25, 8), 16, 10) & {(1 << bits) - 1})"

    def int_div(self, sql: str, lo: int, width: int) -> str:
        return f"(({sql} - ({lo})) DIV {width})"

    def estimate_sql(self, table: TableId) -> str:
        """One row: the optimizer's row count and data size (no scan; InnoDB COUNT(*) scans)."""
        return (
            "SELECT TABLE_ROWS, DATA_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
            f"{_string(table.schema)} AND TABLE_NAME = {_string(table.name)}"
        )

    # ------------------------------------------------------------------ repair

    def string(self, text: str) -> str:
        return _string(text)

    def bit_literal(self, value: int, column: Column) -> str:
        return f"b'{value:b}'"

    def bytes_literal(self, data: bytes, column: Column) -> str:
        if column.kind == "bit":
            return f"b'{int.from_bytes(data, 'big'):b}'" if data else "b'0'"
        return f"X'{data.hex()}'" if data else "''"

    def duration_literal(self, value: dt.timedelta, column: Column) -> str:
        return f"'{_duration(value)}'"


def _double(x: str) -> str:
    """Exact, engine-neutral text of a double: ``[-]M p E`` with x = M * 2**(E-52).

    M is the 53-bit integer significand; scaling by powers of two is exact in IEEE
    arithmetic on every engine, where decimal formatting differs (1e20 vs 1e+20, and where
    each engine switches to exponents). LOG2 may be off by one next to a power of two, so a
    significand outside [2**52, 2**53) is halved or doubled (exactly) and the exponent
    corrected. Engines do not share common subexpressions, so each branch repeats as little
    as possible; values below 1e-290 (where 2**(52-E) would overflow) take a slower path
    that splits the scaling in two.
    """
    e = f"CAST(FLOOR(LOG2(ABS({x}))) AS SIGNED)"
    m = f"(ABS({x}) * POW(2, 52 - {e}))"
    half = f"((52 - {e}) DIV 2)"
    tiny = f"(ABS({x}) * POW(2, {half}) * POW(2, (52 - {e}) - {half}))"
    body = (
        f"CASE WHEN {m} >= 9007199254740992 THEN CONCAT(CAST({m} / 2 AS UNSIGNED), 'p', {e} + 1) "
        f"WHEN {m} < 4503599627370496 THEN CONCAT(CAST({m} * 2 AS UNSIGNED), 'p', {e} - 1) "
        f"ELSE CONCAT(CAST({m} AS UNSIGNED), 'p', {e}) END"
    )
    slow = body.replace(m, tiny)
    return (
        f"CASE WHEN {x} = 0 THEN '0' WHEN ABS({x}) < 1e-290 THEN CONCAT(IF({x} < 0, '-', ''), "
        f"{slow}) ELSE CONCAT(IF({x} < 0, '-', ''), {body}) END"
    )


def _string(text: str) -> str:
    # backslash is an escape in MySQL's default sql_mode, so it is doubled too
    return "'" + text.replace("\\", "\\\\").replace("'", "''").replace("\0", "\\0") + "'"


def _duration(value: dt.timedelta) -> str:
    micros = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    seconds, frac = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    return f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.{frac:06d}"
