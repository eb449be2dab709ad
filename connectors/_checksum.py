"""What the three ``checksum`` role modules share: repair literals, key predicates, and the
SQL the engines spell alike.

Each engine's ``Checksum`` subclasses :class:`ChecksumBase` and states how its dialect
differs through class attributes (booleans, NaN and infinities, the row address of a limited
DELETE) and small hooks (bytes, BIT, durations, intervals, arrays, documents); the walk over
Python value types is written once here, so a value type added to the change model is handled
in one place.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from connectors.model import Column, Interval, Json

__all__ = ["ChecksumBase", "sql_string"]


def sql_string(text: str) -> str:
    """``text`` as a standard SQL string literal (quotes doubled, backslash literal)."""
    return "'" + text.replace("'", "''") + "'"


class ChecksumBase:
    """Shared part of a checksum dialect; subclasses override the attributes and hooks."""

    #: engine name in error messages
    engine_name: ClassVar[str]
    #: literals of True and False
    true: ClassVar[str] = "true"
    false: ClassVar[str] = "false"
    #: an integer bound for a bool column is written as a boolean literal
    bool_from_int: ClassVar[bool] = True
    #: NaN, +inf and -inf (NULL where the engine cannot hold them)
    float_specials: ClassVar[tuple[str, str, str]] = ("NULL", "NULL", "NULL")
    #: suffix that types a finite float literal as a double
    float_cast: ClassVar[str] = ""
    #: aware datetimes are written as naive UTC (the engine has no zone in the value)
    naive_instants: ClassVar[bool] = False
    #: a time of day keeps its offset (PostgreSQL timetz)
    time_keeps_offset: ClassVar[bool] = False
    #: physical row address for a limited DELETE (None: the engine has DELETE ... LIMIT)
    row_address: ClassVar[str | None] = None

    # ------------------------------------------------------------------ SQL alike

    def row_text(self, pieces: Sequence[str]) -> str:
        """The pieces joined by ``|`` with NULL spelled ``~`` (never a piece's first char)."""
        return "(" + " || '|' || ".join(f"coalesce({p}, '~')" for p in pieces) + ")"

    def hash_hex(self, text: str) -> str:
        """The first 64 bits of MD5(text) as 16 lowercase hex digits."""
        return f"left(md5({text}), 16)"

    def raw(self, sql: str, column: Column) -> str:
        """The column as fetched for display and repair."""
        return sql

    def delete_copies(self, table_sql: str, where: str, copies: int) -> str:
        """DELETE at most ``copies`` rows matching ``where`` (duplicates in keyless tables)."""
        if self.row_address is None:
            return f"DELETE FROM {table_sql} WHERE {where} LIMIT {copies}"
        a = self.row_address
        return (
            f"DELETE FROM {table_sql} WHERE {a} IN "
            f"(SELECT {a} FROM {table_sql} WHERE {where} LIMIT {copies})"
        )

    # ------------------------------------------------------------------ repair

    def key_match(self, column_sql: str, value: Any, column: Column) -> str:
        """A predicate ``column = value`` (``IS NULL`` for None)."""
        if value is None:
            return f"{column_sql} IS NULL"
        return f"{column_sql} = {self.literal(value, column)}"

    def literal(self, value: Any, column: Column) -> str:
        """``value`` as a literal of this engine for ``column``."""
        if value is None:
            return "NULL"
        if (
            isinstance(value, dict)
            or (isinstance(value, list) and column.kind != "array")
            or (column.kind == "json" and not isinstance(value, str | Json))
        ):
            # drivers decode json (psycopg: dict, list, number, bool), and a list bound for a
            # non-array column is stored as JSON (as apply does on MySQL): write JSON text
            # the characters themselves, not \u escapes: a JSON-as-text target keeps the
            # text, and verify compares it with the source's
            return self.string(json.dumps(value, separators=(", ", ": "), ensure_ascii=False))
        if isinstance(value, bool):
            return self.true if value else self.false
        if isinstance(value, int):
            if column.kind == "bool" and self.bool_from_int:
                return self.true if value else self.false
            if column.kind == "bit":
                return self.bit_literal(value, column)
            return str(value)
        if isinstance(value, float):
            if value != value:
                return self.float_specials[0]
            if value in (float("inf"), float("-inf")):
                return self.float_specials[1 if value > 0 else 2]
            return f"{value!r}{self.float_cast}"
        if isinstance(value, decimal.Decimal):
            return str(value) if value.is_finite() else self.decimal_special(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return self.bytes_literal(bytes(value), column)
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None and self.naive_instants:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            elif value.tzinfo is None and column.kind == "timestamptz" and not self.naive_instants:
                value = value.replace(tzinfo=dt.UTC)  # verify reads naive instants in UTC
            return f"'{value.isoformat(sep=' ', timespec='microseconds')}'"
        if isinstance(value, dt.date):
            return f"'{value.isoformat()}'"
        if isinstance(value, dt.time):
            if not self.time_keeps_offset:
                value = value.replace(tzinfo=None)
            return f"'{value.isoformat(timespec='microseconds')}'"
        if isinstance(value, dt.timedelta):
            return self.duration_literal(value, column)
        if isinstance(value, Interval):
            text = f"{value.months} months {value.days} days {value.microseconds} microseconds"
            return self.interval_literal(text, column)
        if isinstance(value, uuid.UUID):
            return self.string(str(value))
        if isinstance(value, Json):
            return self.string(value.text)
        if isinstance(value, frozenset | set):
            return self.string(",".join(sorted(value)))
        if isinstance(value, list):
            return self.array_literal(value, column)
        return self.string(str(value))

    # ------------------------------------------------------------------ hooks

    def string(self, text: str) -> str:
        """``text`` as a string literal."""
        return sql_string(text)

    def bit_literal(self, value: int, column: Column) -> str:
        """An integer bound for a BIT column."""
        return str(value)

    def bytes_literal(self, data: bytes, column: Column) -> str:
        """Binary data (or a BIT column's bytes, big-endian)."""
        raise NotImplementedError

    def decimal_special(self, value: decimal.Decimal) -> str:
        """A decimal NaN or infinity."""
        return "NULL"

    def duration_literal(self, value: dt.timedelta, column: Column) -> str:
        """A ``timedelta`` (MySQL TIME on the source)."""
        return self.interval_literal(f"{value.total_seconds()} seconds", column)

    def interval_literal(self, text: str, column: Column) -> str:
        """An interval given as PostgreSQL-style text (``1 months 2 days 3 microseconds``)."""
        raise self.cannot_write("Interval", column)

    def array_literal(self, value: list[Any], column: Column) -> str:
        """An array (elements are rendered with :meth:`literal` for the same column)."""
        raise self.cannot_write("list", column)

    def cannot_write(self, what: str, column: Column) -> TypeError:
        return TypeError(f"cannot write {what} to {self.engine_name} column {column.name}")
