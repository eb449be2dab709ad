"""Checksum SQL for verify on PostgreSQL: canonical row text, chunk hashes, repair literals.

The canonical text of every value must be byte-identical to what the MySQL and DuckDB modules
produce (docs/verify.md has the table). PostgreSQL specifics: the session runs with
``TimeZone=UTC`` and ``DateStyle=ISO`` so timestamptz and dates print the same everywhere,
``char(n)`` keeps the blank padding its applications read (``bpchar::text`` would drop it),
MD5 bits become a signed
``bigint`` (sums are taken modulo 2**64 by the caller), and a limited ``DELETE`` goes through
``ctid``.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from typing import Any

import psycopg

from connectors._checksum import ChecksumBase, sql_string
from connectors.model import Column, TableId

from . import PostgreSQL, map_error

__all__ = ["Checksum", "Session"]


class Session:
    """One connection for verify: UTC/ISO session, autocommit reads, one-transaction scripts."""

    def __init__(self, db: PostgreSQL) -> None:
        self.db = db
        self.conn = db.connect()
        self.conn.execute("SET TimeZone = 'UTC'")
        self.conn.execute("SET DateStyle = 'ISO, YMD'")
        self.conn.execute("SET IntervalStyle = 'postgres'")
        self.conn.execute("SET extra_float_digits = 3")
        # JIT-compiling the long canonical expression costs more than it saves per chunk
        self.conn.execute("SET jit = off")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            return list(self.conn.execute(sql.encode()).fetchall())
        except psycopg.Error as exc:
            raise map_error(exc, self.db.endpoint) from None

    def run_script(self, statements: Sequence[str]) -> None:
        """Run ``statements`` in one transaction; roll back on any error."""
        try:
            with self.conn.transaction():
                for stmt in statements:
                    self.conn.execute(stmt.encode())
        except psycopg.Error as exc:
            raise map_error(exc, self.db.endpoint) from None

    def close(self) -> None:
        self.conn.close()


class Checksum(ChecksumBase):
    """PostgreSQL SQL for verify's canonical encoding and hashes (literals assume
    standard_conforming_strings)."""

    engine_name = "PostgreSQL"
    float_specials = ("'NaN'::float8", "'Infinity'::float8", "'-Infinity'::float8")
    float_cast = "::float8"
    time_keeps_offset = True
    row_address = "ctid"

    script_prelude: tuple[str, ...] = ("SET TimeZone = 'UTC'",)

    def __init__(self, db: PostgreSQL, *, writable: bool = False) -> None:
        self.db = db

    def session(self) -> Session:
        return Session(self.db)

    # ------------------------------------------------------------------ canonical text

    def canonical(self, sql: str, column: Column, canon: str, scale: int | None) -> str:
        """SQL giving ``sql``'s canonical text (NULL stays NULL) for canonical kind ``canon``."""
        kind = column.kind
        if canon == "int":
            return f"({sql})::int::text" if kind == "bool" else f"({sql})::text"
        if canon == "decimal":
            if scale is None or (kind == "decimal" and column.scale == scale):
                return f"({sql})::text"
            return f"round(({sql})::numeric, {scale})::text"
        if canon == "double":
            return _double(f"({sql})::float8")
        if canon == "bytes":
            return f"upper(encode({sql}, 'hex'))"
        if canon == "date":
            return f"({sql})::text"
        if canon == "time":
            if kind == "interval":
                return f"to_char({sql}, 'HH24:MI:SS.US')"
            return f"to_char(({sql})::time, 'HH24:MI:SS.US')"
        if canon == "duration":
            # microseconds, signed (a day counts 24 hours; MySQL TIME has no months)
            return f"trunc(extract(epoch from {sql}) * 1000000)::text"
        if canon == "interval":
            # months, days and microseconds: interval_out's spelling is PostgreSQL's own
            months = f"(extract(year from {sql}) * 12 + extract(month from {sql}))::bigint"
            micros = (
                f"(extract(hour from {sql}) * 3600000000 + extract(minute from {sql}) * 60000000"
                f" + extract(microseconds from {sql}))::bigint"
            )
            return (
                f"CASE WHEN {sql} IS NULL THEN NULL ELSE {months}::text || ',' || "
                f"extract(day from {sql})::bigint::text || ',' || {micros}::text END"
            )
        if canon == "datetime":
            return f"to_char({sql}, 'YYYY-MM-DD HH24:MI:SS.US')"
        if canon == "bit":
            bits = f"({sql})::text"
            return (
                f"CASE WHEN {sql} IS NULL THEN NULL "
                f"ELSE coalesce(nullif(ltrim({bits}, '0'), ''), '0') END"
            )
        if kind == "bytes":
            value = f"upper(encode({sql}, 'hex'))"
        elif canon == "array" and kind == "array":
            value = f"array_to_json({sql})::text"  # compact JSON, as MySQL and DuckDB spell it
        elif kind == "str" and column.fixed:
            # char(n) as applications read it, blanks included: the cast to text strips them
            value = f"textin(bpcharout({sql}))"
        else:
            value = f"({sql})::text"
        return f"(char_length({value})::text || ':' || {value})"

    def hash64(self, text: str) -> str:
        """The first 64 bits of md5(text) as a (signed) bigint."""
        return f"('x' || left(md5({text}), 16))::bit(64)::bigint"

    def digest_sql(self, text: str, source: str, order: Sequence[str]) -> str:
        """One md5() over the chunk's texts instead of one per row (a per-row md5 and its
        bit(64) reading cost 0.65 us a row). The ordered subquery lets the planner read the
        key index in order (an aggregate's own ORDER BY sorts every chunk); should rows come
        in another order, the chunk only looks different and its bisection sums row hashes.
        """
        return (
            f"SELECT count(*), md5(string_agg(t, E'\\n')) FROM (SELECT {text} AS t {source} "
            f"ORDER BY {', '.join(order)}) AS chunk"
        )

    def bucket(self, text: str, bits: int) -> str:
        return f"(('x' || substr(md5({text}), 25, 8))::bit(32)::int & {(1 << bits) - 1})"

    def int_div(self, sql: str, lo: int, width: int) -> str:
        return f"floor((({sql})::numeric - ({lo})) / {width})"

    def estimate_sql(self, table: TableId) -> str:
        """One row: the planner's row estimate (-1 when never analyzed) and the table's size
        with TOAST and indexes."""
        return (
            "SELECT c.reltuples::bigint, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = "
            f"c.relnamespace WHERE n.nspname = {_string(table.schema)} "
            f"AND c.relname = {_string(table.name)}"
        )

    # ------------------------------------------------------------------ repair

    def bit_literal(self, value: int, column: Column) -> str:
        return f"B'{value:0{column.bits or 1}b}'"

    def bytes_literal(self, data: bytes, column: Column) -> str:
        if column.kind == "bit":
            n = column.bits or len(data) * 8
            return f"B'{int.from_bytes(data, 'big'):0{n}b}'"
        return f"'\\x{data.hex()}'::bytea"

    def decimal_special(self, value: decimal.Decimal) -> str:
        return f"'{value}'::numeric"

    def interval_literal(self, text: str, column: Column) -> str:
        return f"'{text}'::interval"

    def array_literal(self, value: list[Any], column: Column) -> str:
        text = "ARRAY[" + ", ".join(self.literal(v, column) for v in value) + "]"
        # typed: ARRAY[] and ARRAY[NULL] have no element type of their own
        declared = column.source_type
        return f"{text}::{declared}" if declared.endswith("[]") else text


def _double(x: str) -> str:
    """Exact, engine-neutral text of a double (see connectors/mysql/checksum.py)."""
    e = f"floor(ln(abs({x})) / ln(2::float8))::int"
    m = f"(abs({x}) * power(2::float8, 52 - {e}))"
    half = f"((52 - {e}) / 2)"
    tiny = f"(abs({x}) * power(2::float8, {half}) * power(2::float8, (52 - {e}) - {half}))"
    body = (
        f"CASE WHEN {m} >= 9007199254740992::float8 "
        f"THEN ({m} / 2)::bigint::text || 'p' || ({e} + 1)::text "
        f"WHEN {m} < 4503599627370496::float8 "
        f"THEN ({m} * 2)::bigint::text || 'p' || ({e} - 1)::text "
        f"ELSE {m}::bigint::text || 'p' || {e}::text END"
    )
    slow = body.replace(m, tiny)
    sign = f"(CASE WHEN {x} < 0 THEN '-' ELSE '' END)"
    return (
        f"CASE WHEN {x} = 0 THEN '0' WHEN {x} = 'NaN'::float8 THEN 'nan' "
        f"WHEN {x} = 'Infinity'::float8 THEN 'inf' WHEN {x} = '-Infinity'::float8 THEN '-inf' "
        f"WHEN abs({x}) < 1e-290::float8 THEN {sign} || ({slow}) "
        f"ELSE {sign} || ({body}) END"
    )


_string = sql_string
