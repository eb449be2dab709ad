"""PostgreSQL values: the text form pgoutput (and a text-mode query) sends, as typed values.

The reader's session fixes that text form (``SESSION_OPTIONS``): ISO dates, PostgreSQL-style
intervals, UTC instants, hex bytea, round-trip-exact floats. :func:`converter` picks, per type
OID, the function that turns one value's bytes into the change model's value; :data:`INLINE`
lists the ones a compiled tuple reader (:func:`connectors.postgres.pgoutput.compile_tuple_reader`)
may call inline.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from collections.abc import Callable
from typing import Any, Final

import psycopg

from connectors.model import Interval, Json, Value

__all__ = [
    "BUILTIN",
    "INLINE",
    "SESSION_OPTIONS",
    "Converter",
    "converter",
    "parse_array",
    "parse_interval",
]

# Session settings that fix the text format pgoutput's output functions produce, whatever the
# server's defaults: ISO dates, PostgreSQL-style intervals, UTC instants, hex bytea,
# round-trip-exact floats.
SESSION_OPTIONS: Final = (
    "-c DateStyle=ISO -c IntervalStyle=postgres -c TimeZone=UTC -c bytea_output=hex "
    "-c extra_float_digits=3"
)


def _text(raw: bytes) -> str:
    return raw.decode()


def _bool(raw: bytes) -> bool:
    return raw == b"t"


def _decimal(raw: bytes) -> decimal.Decimal:
    return decimal.Decimal(raw.decode())


def _bytea(raw: bytes) -> bytes:
    if raw[:2] != b"\\x":
        raise ValueError("bytea not in hex format")
    return bytes.fromhex(raw[2:].decode())


def _date(raw: bytes) -> dt.date:
    text = raw.decode()
    if text == "infinity":
        return dt.date.max
    if text == "-infinity":
        return dt.date.min
    return dt.date.fromisoformat(text)


def _time(raw: bytes) -> dt.time:
    text = raw.decode()
    if text.startswith("24:00:00"):
        # PostgreSQL allows 24:00:00; Python's time stops at 23:59:59.999999
        text = "23:59:59.999999" + text[8:].lstrip(".0123456789")
    return dt.time.fromisoformat(text)


def _timestamp(raw: bytes) -> dt.datetime:
    text = raw.decode()
    if text == "infinity":
        return dt.datetime.max
    if text == "-infinity":
        return dt.datetime.min
    return dt.datetime.fromisoformat(text)


def _timestamptz(raw: bytes) -> dt.datetime:
    text = raw.decode()
    if text == "infinity":
        return dt.datetime.max.replace(tzinfo=dt.UTC)
    if text == "-infinity":
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(text)


_INTERVAL_PART = re.compile(
    r"([+-]?\d+) (years|year|mons|mon|days|day)|([+-])?(\d+):(\d+):(\d+)(?:\.(\d+))?"
)


def parse_interval(text: str) -> Interval:
    """An interval in PostgreSQL's ``IntervalStyle=postgres`` output, e.g.
    ``1 year 2 mons -3 days +04:05:06.5``."""
    months = days = micros = 0
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _INTERVAL_PART.match(text, pos)
        if match is None:
            raise ValueError(f"cannot parse interval {text!r}")
        if match.group(1) is not None:
            n, unit = int(match.group(1)), match.group(2)
            if unit.startswith("year"):
                months += 12 * n
            elif unit.startswith("mon"):
                months += n
            else:
                days += n
        else:
            sign = -1 if match.group(3) == "-" else 1
            frac = (match.group(7) or "").ljust(6, "0")[:6]
            micros += sign * (
                (int(match.group(4)) * 3600 + int(match.group(5)) * 60 + int(match.group(6)))
                * 1_000_000
                + int(frac)
            )
        pos = match.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
    return Interval(months, days, micros)


def _interval(raw: bytes) -> Interval:
    return parse_interval(raw.decode())


def _uuid(raw: bytes) -> uuid.UUID:
    return uuid.UUID(raw.decode())


def _json(raw: bytes) -> Json:
    return Json(raw.decode())


Converter = Callable[[bytes], Value]

#: built-in type OIDs (pg_type.dat) and how their text output becomes a typed value
BUILTIN: Final[dict[int, Converter]] = {
    16: _bool,
    17: _bytea,
    18: _text,  # "char"
    19: _text,  # name
    20: int,
    21: int,
    23: int,
    25: _text,
    26: int,  # oid
    114: _json,
    700: float,
    701: float,
    1042: _text,  # char(n): the padding is part of the value PostgreSQL sends
    1043: _text,
    1082: _date,
    1083: _time,
    1114: _timestamp,
    1184: _timestamptz,
    1186: _interval,
    1266: _time,  # timetz: fromisoformat keeps the offset
    1700: _decimal,
    2950: _uuid,
    3802: _json,
}

#: the converters above as a compiled tuple reader calls them inline (see
#: :func:`pgoutput.compile_tuple_reader`): ``(callable or None for str, takes str)``. They are
#: strict: a value they refuse (``±infinity``, a BC date) raises, and the row then takes the
#: general path through the converters above, which handle it or name the column.
INLINE: Final[dict[Converter, tuple[Callable[[Any], Any] | None, bool]]] = {
    _text: (None, False),
    int: (int, False),
    float: (float, False),
    _bool: (b"t".__eq__, False),
    _decimal: (decimal.Decimal, True),
    _date: (dt.date.fromisoformat, True),
    _timestamp: (dt.datetime.fromisoformat, True),
    _timestamptz: (dt.datetime.fromisoformat, True),
    _json: (Json, True),
    _uuid: (uuid.UUID, True),
}


def parse_array(text: str, element: Converter, delimiter: str = ",") -> list[Any]:
    """A PostgreSQL array literal (``{1,NULL,"a \\"b\\""}``, nested for more dimensions) as
    a list of typed values; ``NULL`` elements become None."""
    if text.startswith("["):  # explicit bounds, e.g. [0:1]={1,2}: the values are what we keep
        text = text[text.index("=") + 1 :]
    if '"' not in text and text.count("{") == 1 and text[0] == "{" and text[-1] == "}":
        # one dimension, nothing quoted: PostgreSQL quotes any element holding a delimiter,
        # brace, quote, backslash or space, so a split is exact (the common OLTP case; the
        # character loop below is ~5x slower)
        if len(text) == 2:
            return []
        tokens = text[1:-1].split(delimiter)
        if (element is int or element is float) and "N" not in text and "n" not in text:
            return list(map(element, tokens))  # no NULL, NaN or Infinity: they take str too
        return [None if token.upper() == "NULL" else element(token.encode()) for token in tokens]
    value, pos = _array_level(text, 0, element, delimiter)
    if pos != len(text):
        raise ValueError(f"trailing characters in array literal {text!r}")
    return value


def _array_level(text: str, pos: int, element: Converter, delimiter: str) -> tuple[list[Any], int]:
    if text[pos] != "{":
        raise ValueError(f"array literal {text!r}: expected '{{' at {pos}")
    pos += 1
    out: list[Any] = []
    if text[pos] == "}":
        return out, pos + 1
    while True:
        ch = text[pos]
        if ch == "{":
            sub, pos = _array_level(text, pos, element, delimiter)
            out.append(sub)
        elif ch == '"':
            pos += 1
            buf = []
            while text[pos] != '"':
                if text[pos] == "\\":
                    pos += 1
                buf.append(text[pos])
                pos += 1
            pos += 1
            out.append(element("".join(buf).encode()))
        else:
            end = pos
            while text[end] != delimiter and text[end] != "}":
                end += 1
            token = text[pos:end].strip()
            out.append(None if token.upper() == "NULL" else element(token.encode()))
            pos = end
        if text[pos] == delimiter:
            pos += 1
            continue
        if text[pos] == "}":
            return out, pos + 1
        raise ValueError(f"array literal {text!r}: unexpected {text[pos]!r} at {pos}")


def converter(
    conn: psycopg.Connection[Any], type_oid: int, _cache: dict[int, Converter] | None = None
) -> Converter:
    """How a value of type ``type_oid`` arrives as text and becomes a typed value: built-ins
    directly, domains as their base type, arrays element by element, enums and anything
    else as text."""
    cache = _cache if _cache is not None else {}
    if type_oid in BUILTIN:
        return BUILTIN[type_oid]
    if type_oid in cache:
        return cache[type_oid]
    row = conn.execute(
        "SELECT typtype, typcategory, typbasetype, typelem, typdelim FROM pg_type WHERE oid = %s",
        (type_oid,),
    ).fetchone()
    conv: Converter = _text
    if row is not None:
        typtype, category, basetype, elem, delim = row
        if typtype == "d":
            conv = converter(conn, int(basetype), cache)
        elif category == "A" and int(elem):
            element = converter(conn, int(elem), cache)
            delimiter = str(delim)

            def conv(raw: bytes, _e: Converter = element, _d: str = delimiter) -> Value:
                return parse_array(raw.decode(), _e, _d)

    cache[type_oid] = conv
    return conv
