"""MySQL/MariaDB row values: one set of converters from binlog bytes to the change model's
values, shared by both row decoders (the fast one in :mod:`connectors.mysql.fastrows` and the
library path in :mod:`connectors.mysql.binlog`).

Each column type is either fixed-width — a :mod:`struct` format and an optional conversion of
the unpacked field — or length-prefixed — the prefix size and an optional conversion of the
raw bytes (:class:`Spec`, from :func:`column_spec`). The fast decoder compiles specs into
straight-line code; the library path runs them one column at a time (:func:`decoder`).
"""

from __future__ import annotations

import codecs
import datetime as dt
import decimal
import json
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from pymysqlreplication.json_binary import parse_json

from connectors.model import Json, Row, Value

__all__ = [
    "ColumnHints",
    "Convert",
    "Decoder",
    "Spec",
    "Unsupported",
    "codec",
    "column_spec",
    "decoder",
    "present_columns",
    "read_image",
    "text_decoder",
]

# column types (include/mysql_com.h enum_field_types)
T_DECIMAL, T_TINY, T_SHORT, T_LONG, T_FLOAT, T_DOUBLE, T_NULL = 0, 1, 2, 3, 4, 5, 6
T_TIMESTAMP, T_LONGLONG, T_INT24, T_DATE, T_TIME, T_DATETIME, T_YEAR = 7, 8, 9, 10, 11, 12, 13
T_NEWDATE, T_VARCHAR, T_BIT, T_TIMESTAMP2, T_DATETIME2, T_TIME2 = 14, 15, 16, 17, 18, 19
T_JSON, T_NEWDECIMAL, T_ENUM, T_SET = 245, 246, 247, 248
T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB, T_BLOB = 249, 250, 251, 252
T_VAR_STRING, T_STRING, T_GEOMETRY = 253, 254, 255

UTC = dt.UTC
_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
#: server charset name -> Python codec; the library's table already says cp1252 for latin1,
#: the name is mapped too so a bare "latin1" never decodes 0x80-0x9F as ISO-8859-1
_TEXT_CODECS: Final = {"utf8mb4": "utf-8", "utf8mb3": "utf-8", "utf8": "utf-8", "latin1": "cp1252"}

#: one value at ``pos`` of a row image: (value, position after it)
Decoder = Callable[[bytes, int], tuple[Value, int]]


@dataclass(frozen=True)
class ColumnHints:
    """Kinds the source's catalog knows that a table map cannot tell."""

    #: MariaDB JSON columns (stored as LONGTEXT with a json_valid CHECK)
    json: frozenset[str] = frozenset()
    #: MariaDB UUID columns (stored as BINARY(16))
    uuid: frozenset[str] = frozenset()

    def kind(self, name: str) -> str | None:
        if name in self.json:
            return "json"
        if name in self.uuid:
            return "uuid"
        return None


class Unsupported(Exception):
    """A column the fast decoder cannot decode (the library path takes the table; reason in
    args)."""


Convert = Callable[[Any], Value]


@dataclass(frozen=True, slots=True)
class Spec:
    """How one column's value is laid out in a row image, and converted."""

    fmt: str  # struct format of a fixed-width column ("" for length-prefixed)
    conv: Convert | None
    prefix: int = 0  # length-prefix bytes of a variable-width column


def _int_from(signed: bool) -> Convert:
    def conv(raw: bytes) -> Value:
        return int.from_bytes(raw, "little", signed=signed)

    return conv


def _year(v: int) -> Value:
    return v + 1900 if v else 0


def _date(raw: bytes) -> Value:
    v = raw[0] | raw[1] << 8 | raw[2] << 16
    try:
        return dt.date(v >> 9, (v >> 5) & 15, v & 31)
    except ValueError:
        return None  # zero date (or zero month/day): no Python equivalent


def _frac(fsp: int) -> tuple[int, int]:
    nbytes = (fsp + 1) // 2
    return nbytes, (1, 10_000, 100, 1)[nbytes]


def _time2(fsp: int) -> Convert:
    # TIME2 is one big-endian offset-binary integer: (hms << 8*fbytes) | fraction. Negating the
    # whole integer (not the parts) is what keeps negative fractions right.
    fbytes, mult = _frac(fsp)
    offset = 0x800000 << (8 * fbytes)
    shift, mask = 8 * fbytes, (1 << (8 * fbytes)) - 1
    timedelta = dt.timedelta

    def conv(raw: bytes) -> Value:
        v = int.from_bytes(raw, "big") - offset
        a = -v if v < 0 else v
        hms = a >> shift
        td = timedelta(
            hours=(hms >> 12) & 0x3FF,
            minutes=(hms >> 6) & 0x3F,
            seconds=hms & 0x3F,
            microseconds=(a & mask) * mult,
        )
        return -td if v < 0 else td

    return conv


def _time_old(raw: bytes) -> Value:
    v = int.from_bytes(raw, "little", signed=True)
    a = -v if v < 0 else v
    td = dt.timedelta(hours=a // 10000, minutes=a // 100 % 100, seconds=a % 100)
    return -td if v < 0 else td


def _datetime2(fsp: int) -> Convert:
    fbytes, mult = _frac(fsp)
    datetime = dt.datetime
    fbits, fmask = 8 * fbytes, (1 << (8 * fbytes)) - 1
    from_bytes = int.from_bytes

    def conv(raw: bytes) -> Value:
        # 40 bits: sign bit, year*13+month (17 bits), day (5), hour (5), minute (6), second (6),
        # then the fraction's bytes: read as one integer (a slice and a call fewer)
        w = from_bytes(raw, "big")
        us = (w & fmask) * mult
        v = (w >> fbits) - 0x8000000000
        ymd, hms = v >> 17, v & 0x1FFFF
        ym = ymd >> 5
        try:
            return datetime(ym // 13, ym % 13, ymd & 31, hms >> 12, (hms >> 6) & 63, hms & 63, us)
        except ValueError:
            return None  # zero date

    return conv


def _datetime_old(v: int) -> Value:
    d, t = divmod(v, 1_000_000)
    try:
        return dt.datetime(d // 10000, d // 100 % 100, d % 100, t // 10000, t // 100 % 100, t % 100)
    except ValueError:
        return None


def _timestamp2(fsp: int) -> Convert:
    fbytes, mult = _frac(fsp)
    fromtimestamp = dt.datetime.fromtimestamp

    def conv(raw: bytes) -> Value:
        secs = raw[0] << 24 | raw[1] << 16 | raw[2] << 8 | raw[3]
        us = int.from_bytes(raw[4:], "big") * mult if fbytes else 0
        if not secs and not us:
            return None  # the zero timestamp
        return fromtimestamp(secs, UTC).replace(microsecond=us)

    return conv


def _timestamp_old(secs: int) -> Value:
    return dt.datetime.fromtimestamp(secs, UTC) if secs else None


def _newdecimal(precision: int, scale: int) -> tuple[int, Convert]:
    """(size, conversion) of DECIMAL(precision, scale) in its binary form: groups of nine
    digits in four big-endian bytes, a shorter group at the outer ends, the sign in the top
    bit (and every byte inverted when negative).

    The conversion is generated per (precision, scale): the value is read as one integer,
    its sign bit (and, when negative, every bit) flipped with one XOR, and each group cut
    off with a mask and a shift, so a DECIMAL(12,2) costs about a third of a loop over the
    groups (it is one of the commonest OLTP columns). Only integer literals enter the code.
    """
    intg0, intg0x = divmod(precision - scale, 9)
    frac0, frac0x = divmod(scale, 9)
    lead, trail = _DIG2BYTES[intg0x], _DIG2BYTES[frac0x]
    size = lead + 4 * intg0 + 4 * frac0 + trail
    sign = 1 << (8 * size - 1)
    lines = [
        "def conv(raw):",
        "    v = from_bytes(raw, 'big')",
        f"    if v & {sign}:",
        f"        v ^= {sign}",
        "        s = ''",
        "    else:",
        f"        v ^= {((1 << (8 * size)) - 1) ^ sign}",
        "        s = '-'",
    ]
    # from the low end: the fraction's short trailing group, its words, the integer's words,
    # and what is left is the integer's short leading group; each term scaled by its place
    fterms: list[str] = []
    place = 1
    if trail:
        lines += [f"    f = v & {(1 << (8 * trail)) - 1}", f"    v >>= {8 * trail}"]
        fterms.append("f")
        place = 10**frac0x
    for k in range(frac0):
        lines += [f"    f{k} = v & 0xFFFFFFFF", "    v >>= 32"]
        fterms.append(f"f{k} * {place}")
        place *= 10**9
    iterms: list[str] = []
    place = 1
    for k in range(intg0):
        lines += [f"    i{k} = v & 0xFFFFFFFF", "    v >>= 32"]
        iterms.append(f"i{k} * {place}")
        place *= 10**9
    if lead:
        iterms.append(f"v * {place}")
    ip = " + ".join(iterms) or "0"
    if scale:
        lines.append(f"    return Decimal(f'{{s}}{{{ip}}}.{{{' + '.join(fterms)}:0{scale}d}}')")
    else:
        lines.append(f"    return Decimal(f'{{s}}{{{ip}}}')")
    namespace: dict[str, Any] = {}
    env = {"from_bytes": int.from_bytes, "Decimal": decimal.Decimal}
    exec(compile("\n".join(lines), "<redoline fastrows decimal>", "exec"), env, namespace)
    conv: Convert = namespace["conv"]
    return size, conv


def _bit(raw: bytes) -> Value:
    return int.from_bytes(raw, "big")


def _enum(labels: tuple[str, ...]) -> Convert:
    table = ("", *labels)  # index 0 is MySQL's '' for an invalid value
    n = len(table)

    def conv(idx: int) -> Value:
        return table[idx] if idx < n else ""

    return conv


def _set(labels: tuple[str, ...], size: int) -> Convert:
    cache: dict[int, frozenset[str]] = {}

    def conv(mask: Any) -> Value:
        if size == 3:
            mask = int.from_bytes(mask, "little")
        value = cache.get(mask)
        if value is None:
            value = cache[mask] = frozenset(lab for i, lab in enumerate(labels) if mask >> i & 1)
        return value

    return conv


def _latin1_undefined(exc: UnicodeError) -> tuple[str, int]:
    # MariaDB's latin1 is cp1252 with the five bytes cp1252 leaves undefined (0x81, 0x8D,
    # 0x8F, 0x90, 0x9D) mapped to the code point of the same number, as its own conversion
    # to utf8mb4 does; Python's cp1252 refuses them
    assert isinstance(exc, UnicodeDecodeError)
    return chr(exc.object[exc.start]), exc.start + 1


codecs.register_error("redoline-mariadb-latin1", _latin1_undefined)


def text_decoder(codec: str) -> Convert:
    """bytes -> str for a character column in Python codec ``codec`` (``_codec``), MariaDB's
    latin1 included. Shared with the library path (``binlog._text``)."""
    if codec == "utf-8":
        return _utf8
    if codec == "cp1252":
        return lambda raw: raw.decode("cp1252", "redoline-mariadb-latin1")

    def conv(raw: bytes) -> Value:
        return raw.decode(codec)

    return conv


def _utf8(raw: bytes) -> Value:
    return raw.decode("utf-8")


def _padded(length: int) -> Convert:
    # the binlog strips BINARY(n)'s trailing zero bytes; the column's value has them
    def conv(raw: bytes) -> Value:
        return raw.ljust(length, b"\0")

    return conv


def _json_text(raw: bytes) -> Value:
    return Json(raw.decode("utf-8"))


def _uuid(raw: bytes) -> Value:
    # MariaDB UUID: 16 bytes in the value's own order, trailing zero bytes stripped as BINARY's
    return uuid.UUID(bytes=raw.ljust(16, b"\0"))


def _mysql_json(raw: bytes) -> Value:
    if not raw:
        return Json("null")
    return Json(json.dumps(_jsonable(parse_json(raw[0], raw[1:])), ensure_ascii=False))


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, dict):
        return {_jsonable(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def codec(col: Any) -> str | None:
    """Python codec of a character column; None for binary data."""
    name = (col.character_set_name or "utf8").lower()
    if name == "binary" or (col.collation_name or "") == "binary":
        return None
    return _TEXT_CODECS.get(name, name)


_INT_FMT = {T_TINY: "b", T_SHORT: "h", T_LONG: "i", T_LONGLONG: "q"}
_SET_FMT = {1: "B", 2: "H", 3: "3s", 4: "I", 8: "Q"}


def column_spec(col: Any, hint: str | None = None) -> Spec:
    """How ``col`` (a table-map column: :class:`~connectors.mysql.fastrows.FastColumn` or the
    library's, which share attribute names) is read; ``hint``: the kind the catalog knows and
    the table map cannot tell (``json``: MariaDB JSON, stored as LONGTEXT; ``uuid``: MariaDB
    UUID, stored as BINARY(16)). :class:`Unsupported` when it cannot be decoded."""
    t = col.type
    if t in _INT_FMT:
        fmt = _INT_FMT[t]
        return Spec(fmt.upper() if col.unsigned else fmt, None)
    if t == T_INT24:
        return Spec("3s", _int_from(not col.unsigned))
    if t == T_FLOAT:
        return Spec("f", None)
    if t == T_DOUBLE:
        return Spec("d", None)
    if t == T_NEWDECIMAL:
        size, conv = _newdecimal(col.precision, col.decimals)
        return Spec(f"{size}s", conv)
    if t == T_YEAR:
        return Spec("B", _year)
    if t in (T_DATE, T_NEWDATE):
        return Spec("3s", _date)
    if t == T_TIME2:
        return Spec(f"{3 + _frac(col.fsp)[0]}s", _time2(col.fsp))
    if t == T_TIME:
        return Spec("3s", _time_old)
    if t == T_DATETIME2:
        return Spec(f"{5 + _frac(col.fsp)[0]}s", _datetime2(col.fsp))
    if t == T_DATETIME:
        return Spec("Q", _datetime_old)
    if t == T_TIMESTAMP2:
        return Spec(f"{4 + _frac(col.fsp)[0]}s", _timestamp2(col.fsp))
    if t == T_TIMESTAMP:
        return Spec("I", _timestamp_old)
    if t == T_BIT:
        return Spec(f"{col.bytes}s", _bit)
    if t == T_ENUM:
        if col.size not in (1, 2):
            raise Unsupported(f"ENUM column {col.name!r} of {col.size} bytes")
        return Spec("B" if col.size == 1 else "H", _enum(tuple(col.enum_values or ())[1:]))
    if t == T_SET:
        if col.size not in _SET_FMT:
            raise Unsupported(f"SET column {col.name!r} of {col.size} bytes")
        return Spec(_SET_FMT[col.size], _set(tuple(col.set_values or ()), col.size))
    if hint == "uuid" and t == T_STRING:
        return Spec("", _uuid, 2 if col.max_length > 255 else 1)
    if t in (T_VARCHAR, T_VAR_STRING, T_STRING):
        prefix = 2 if col.max_length > 255 else 1
        name = codec(col)
        if name is None:
            return Spec("", _padded(col.max_length) if t == T_STRING else None, prefix)
        return Spec("", text_decoder(name), prefix)
    if t in (T_BLOB, T_GEOMETRY):
        if not 1 <= col.length_size <= 4:
            raise Unsupported(f"column {col.name!r} has a {col.length_size}-byte length")
        if t == T_GEOMETRY:
            return Spec("", None, col.length_size)
        if hint == "json":
            return Spec("", _json_text, col.length_size)
        name = codec(col)
        return Spec("", None if name is None else text_decoder(name), col.length_size)
    if t == T_JSON:
        return Spec("", _mysql_json, col.length_size)
    raise Unsupported(f"column {col.name!r} has binlog type {t}")


def decoder(spec: Spec) -> Decoder:
    """``spec`` as a one-column decoder (the library path, column by column)."""
    conv = spec.conv
    if spec.fmt:
        st = struct.Struct("<" + spec.fmt)
        unpack, size = st.unpack_from, st.size
        if conv is None:
            return lambda buf, pos: (unpack(buf, pos)[0], pos + size)
        return lambda buf, pos: (conv(unpack(buf, pos)[0]), pos + size)
    prefix = spec.prefix

    def dec(buf: bytes, pos: int) -> tuple[Value, int]:
        n = int.from_bytes(buf[pos : pos + prefix], "little")
        start = pos + prefix
        raw = buf[start : start + n]
        return (conv(raw) if conv is not None else raw), start + n

    return dec


# ------------------------------------------------------------------ the library path's rows

_PRESENT_CACHE: dict[tuple[bytes, int], list[int]] = {}
#: columns-present bitmaps remembered: a long-running capture of many wide tables with
#: partial images would otherwise grow the cache without end
_PRESENT_LIMIT = 4096


def present_columns(bitmap: bytes, ncols: int) -> list[int]:
    """Indexes of the columns a rows event's columns-present bitmap names."""
    key = (bytes(bitmap), ncols)
    out = _PRESENT_CACHE.get(key)
    if out is None:
        if len(_PRESENT_CACHE) >= _PRESENT_LIMIT:
            _PRESENT_CACHE.clear()
        out = _PRESENT_CACHE[key] = [i for i in range(ncols) if bitmap[i >> 3] >> (i & 7) & 1]
    return out


def read_image(
    buf: bytes, pos: int, present: list[int], names: tuple[str, ...], decoders: list[Decoder]
) -> tuple[Row, int]:
    nbytes = (len(present) + 7) >> 3
    nulls = buf[pos : pos + nbytes]
    pos += nbytes
    row: Row = {}
    for j, i in enumerate(present):
        if nulls[j >> 3] >> (j & 7) & 1:
            row[names[i]] = None
        else:
            row[names[i]], pos = decoders[i](buf, pos)
    return row, pos
