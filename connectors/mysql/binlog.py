"""The MySQL/MariaDB binlog reader: binlog events in, engine-neutral log events out.

mysql-replication speaks the replication protocol and parses the framing events (rotate,
GTID, query, XID, table map with its ``binlog_row_metadata=FULL`` optional metadata). Row
images are decoded here, by :func:`compile_decoders`, for two reasons:

* correctness — the library gets several cases wrong and we must not pass them on
  (each has a test in ``tests/connectors/test_mysql_binlog_types.py``): negative TIME with a
  fraction (``-01:00:00.25`` comes out as ``-01:00:00.75``), BIT (a ``'0101'`` string, we give
  an ``int``), the empty SET (``None``, we give ``frozenset()``), BINARY(n) (trailing zero bytes
  lost, and an all-zero value comes back as the *string* ``''``), TIMESTAMP (a naive datetime in
  the process' idea of UTC; we give an aware UTC datetime);
* speed — one compiled decoder per table definition instead of a per-value type switch.

Schema as of the event: every row is decoded with the TABLE_MAP event that precedes it, and
the :class:`~connectors.model.TableSchema` recorded in the trail is derived from that table
map (names, types, signedness, charsets, ENUM/SET labels, primary key, nullability). Two
attributes the table map does not carry are taken from the server's catalog when a table
definition is first met: which LONGTEXT columns are MariaDB JSON, and which columns are
generated (documented in docs/capture-mysql.md).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import re
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pymysql
import pymysql.connections
import sqlglot
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.event import (
    FormatDescriptionEvent,
    GtidEvent,
    HeartbeatLogEvent,
    IntvarEvent,
    MariadbAnnotateRowsEvent,
    MariadbBinLogCheckPointEvent,
    MariadbGtidEvent,
    MariadbGtidListEvent,
    MariadbStartEncryptionEvent,
    NotImplementedEvent,
    PreviousGtidsEvent,
    QueryEvent,
    RandEvent,
    RotateEvent,
    RowsQueryLogEvent,
    StopEvent,
    UserVarEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.json_binary import parse_json
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)
from sqlglot import exp

from connectors.base import TableFilter
from connectors.errors import (
    ConnectError,
    PrerequisiteError,
    ReplicationError,
    SchemaError,
)
from connectors.log import Begin, Commit, Heartbeat, LogEvent, Rollback, RowEvent
from connectors.model import Change, Column, Json, Op, Row, TableId, TableSchema, Value
from connectors.mysql.fastrows import (
    FastGtid,
    FastMap,
    FastRows,
    FastStream,
    FastTableMap,
    FastXid,
    RowDecoder,
    text_decoder,
)
from connectors.mysql.positions import BinlogPosition

if TYPE_CHECKING:
    from connectors.mysql import MySQL

__all__ = ["BinlogReader", "compile_decoders", "end_position", "schema_from_table_map"]

log = logging.getLogger("redoline.capture.mysql")

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

# Event types with no table data that may appear anywhere (unknown to the library, so they
# reach us as NotImplementedEvent): ignoring them loses nothing.
_BENIGN_EVENTS = {
    5,  # INTVAR (auto-increment for statement logging)
    13,  # RAND
    14,  # USER_VAR
    27,  # HEARTBEAT
    28,  # IGNORABLE
    29,  # ROWS_QUERY (MySQL binlog_rows_query_log_events)
    34,  # ANONYMOUS_GTID (MySQL without GTIDs: a transaction starts)
    35,  # PREVIOUS_GTIDS
    160,  # MariaDB ANNOTATE_ROWS
    161,  # MariaDB BINLOG_CHECKPOINT
    163,  # MariaDB GTID_LIST
    164,  # MariaDB START_ENCRYPTION
}
#: event classes the library parses that carry nothing to capture (or are checked elsewhere:
#: statement-logged DML is caught at its QUERY event). Any other class stops capture.
_BENIGN_CLASSES = frozenset(
    {
        FormatDescriptionEvent,
        PreviousGtidsEvent,
        StopEvent,
        IntvarEvent,
        RandEvent,
        UserVarEvent,
        RowsQueryLogEvent,
        MariadbAnnotateRowsEvent,
        MariadbBinLogCheckPointEvent,
        MariadbGtidListEvent,
        MariadbStartEncryptionEvent,
    }
)
_MYSQL_PARTIAL_JSON_EVENT = 39  # PARTIAL_UPDATE_ROWS: binlog_row_value_options=PARTIAL_JSON
_MYSQL_PAYLOAD_EVENT = 40  # binlog_transaction_compression
_MARIADB_COMPRESSED = range(165, 172)  # log_bin_compress: QUERY and ROWS *_COMPRESSED_EVENT
_LOST_CODES = (2006, 2013, 2014, 2055)
_GTID_STANDALONE = 1  # MariaDB GTID flag: the group is one statement without BEGIN/COMMIT


_MysqlPacket: Any = pymysql.connections.MysqlPacket  # type: ignore[attr-defined]


class _StreamLost(Exception):
    """The replication connection dropped (kept out of the library's own silent reconnect)."""


class _StreamConnection(pymysql.connections.Connection):
    """A pymysql connection whose lost-connection errors escape mysql-replication.

    The library reconnects by itself on errors 2006/2013 — from its *original* start position
    when it was opened with a GTID, which would feed capture duplicates. We surface the loss
    instead; capture reopens the log from the trail's durable position.
    """

    def _read_packet(self, packet_type: Any = _MysqlPacket) -> Any:
        try:
            return super()._read_packet(packet_type)
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in _LOST_CODES:
                raise _StreamLost(str(exc.args[-1])) from exc
            raise


def _stream_connect(**kwargs: Any) -> _StreamConnection:
    # the library passes pymysql's deprecated spellings, which warn
    if "db" in kwargs:
        kwargs.setdefault("database", kwargs.pop("db"))
    if "passwd" in kwargs:
        kwargs.setdefault("password", kwargs.pop("passwd"))
    return _StreamConnection(**kwargs)


# --------------------------------------------------------------------------- row decoding

Decoder = Callable[[bytes, int], tuple[Value, int]]

_S8, _U8 = struct.Struct("<b"), struct.Struct("<B")
_S16, _U16 = struct.Struct("<h"), struct.Struct("<H")
_S32, _U32 = struct.Struct("<i"), struct.Struct("<I")
_S64, _U64 = struct.Struct("<q"), struct.Struct("<Q")
_F32, _F64 = struct.Struct("<f"), struct.Struct("<d")
_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
_CHARSET_MAXLEN = {"utf8mb4": 4, "utf8mb3": 3, "utf8": 3, "ucs2": 2, "utf16": 4, "utf32": 4}


def _fixed(st: struct.Struct) -> Decoder:
    unpack, size = st.unpack_from, st.size

    def dec(buf: bytes, pos: int) -> tuple[Value, int]:
        return unpack(buf, pos)[0], pos + size

    return dec


def _int24(unsigned: bool) -> Decoder:
    def dec(buf: bytes, pos: int) -> tuple[Value, int]:
        return int.from_bytes(buf[pos : pos + 3], "little", signed=not unsigned), pos + 3

    return dec


def _frac(fsp: int) -> tuple[int, int]:
    """(bytes, multiplier to microseconds) of a fractional-seconds part of ``fsp`` digits."""
    nbytes = (fsp + 1) // 2
    return nbytes, (1, 10_000, 100, 1)[nbytes]


def _time2(fsp: int) -> Decoder:
    # MySQL TIME2: one big-endian integer of 3 + fbytes bytes, offset binary; its absolute value
    # is (hms << 8*fbytes) | frac. Decoding it as one integer keeps negative fractions right.
    fbytes, mult = _frac(fsp)
    size = 3 + fbytes
    offset = 0x800000 << (8 * fbytes)
    shift, mask = 8 * fbytes, (1 << (8 * fbytes)) - 1

    def dec(buf: bytes, pos: int) -> tuple[Value, int]:
        v = int.from_bytes(buf[pos : pos + size], "big") - offset
        a = -v if v < 0 else v
        hms = a >> shift
        td = dt.timedelta(
            hours=(hms >> 12) & 0x3FF,
            minutes=(hms >> 6) & 0x3F,
            seconds=hms & 0x3F,
            microseconds=(a & mask) * mult,
        )
        return (-td if v < 0 else td), pos + size

    return dec


def _time_old(buf: bytes, pos: int) -> tuple[Value, int]:
    v = int.from_bytes(buf[pos : pos + 3], "little", signed=True)
    a = abs(v)
    td = dt.timedelta(hours=a // 10000, minutes=a // 100 % 100, seconds=a % 100)
    return (-td if v < 0 else td), pos + 3


def _datetime2(fsp: int) -> Decoder:
    fbytes, mult = _frac(fsp)
    size = 5 + fbytes

    def dec(buf: bytes, pos: int) -> tuple[Value, int]:
        v = int.from_bytes(buf[pos : pos + 5], "big") - 0x8000000000
        us = int.from_bytes(buf[pos + 5 : pos + size], "big") * mult if fbytes else 0
        ymd, hms = v >> 17, v & 0x1FFFF
        ym = ymd >> 5
        try:
            value: Value = dt.datetime(
                ym // 13, ym % 13, ymd & 31, hms >> 12, (hms >> 6) & 63, hms & 63, us
            )
        except ValueError:
            value = None  # zero date ('0000-00-00 ...'): no Python equivalent (documented)
        return value, pos + size

    return dec


def _datetime_old(buf: bytes, pos: int) -> tuple[Value, int]:
    v = _U64.unpack_from(buf, pos)[0]
    d, t = divmod(v, 1_000_000)
    try:
        value: Value = dt.datetime(
            d // 10000, d // 100 % 100, d % 100, t // 10000, t // 100 % 100, t % 100
        )
    except ValueError:
        value = None
    return value, pos + 8


def _timestamp2(fsp: int) -> Decoder:
    fbytes, mult = _frac(fsp)
    size = 4 + fbytes

    def dec(buf: bytes, pos: int) -> tuple[Value, int]:
        secs = int.from_bytes(buf[pos : pos + 4], "big")
        us = int.from_bytes(buf[pos + 4 : pos + size], "big") * mult if fbytes else 0
        if secs == 0 and us == 0:
            return None, pos + size  # the zero timestamp (documented)
        return _EPOCH + dt.timedelta(seconds=secs, microseconds=us), pos + size

    return dec


def _timestamp_old(buf: bytes, pos: int) -> tuple[Value, int]:
    secs = _U32.unpack_from(buf, pos)[0]
    return (_EPOCH + dt.timedelta(seconds=secs) if secs else None), pos + 4


def _date(buf: bytes, pos: int) -> tuple[Value, int]:
    v = int.from_bytes(buf[pos : pos + 3], "little")
    try:
        value: Value = dt.date(v >> 9, (v >> 5) & 15, v & 31)
    except ValueError:
        value = None
    return value, pos + 3


def _year(buf: bytes, pos: int) -> tuple[Value, int]:
    v = buf[pos]
    return (v + 1900 if v else 0), pos + 1


def _newdecimal(precision: int, scale: int) -> Decoder:
    intg = precision - scale
    intg0, intg0x = divmod(intg, 9)
    frac0, frac0x = divmod(scale, 9)
    lead = _DIG2BYTES[intg0x]
    trail = _DIG2BYTES[frac0x]
    size = lead + intg0 * 4 + frac0 * 4 + trail

    def dec(buf: bytes, pos: int) -> tuple[Value, int]:
        data = bytearray(buf[pos : pos + size])
        negative = not data[0] & 0x80
        data[0] ^= 0x80
        if negative:
            data = bytearray(b ^ 0xFF for b in data)
        i = 0
        parts = []
        if lead:
            parts.append(str(int.from_bytes(data[:lead], "big")))
            i = lead
        for _ in range(intg0):
            parts.append(f"{int.from_bytes(data[i : i + 4], 'big'):09d}")
            i += 4
        text = "".join(parts) or "0"
        fparts = []
        for _ in range(frac0):
            fparts.append(f"{int.from_bytes(data[i : i + 4], 'big'):09d}")
            i += 4
        if trail:
            fparts.append(f"{int.from_bytes(data[i : i + trail], 'big'):0{frac0x}d}")
        if fparts:
            text += "." + "".join(fparts)
        return decimal.Decimal(("-" if negative else "") + text), pos + size

    return dec


def _prefixed(prefix: int, convert: Callable[[bytes], Value] | None) -> Decoder:
    def dec(buf: bytes, pos: int) -> tuple[Value, int]:
        n = int.from_bytes(buf[pos : pos + prefix], "little")
        start = pos + prefix
        raw = buf[start : start + n]
        return (convert(raw) if convert else raw), start + n

    return dec


def _text(encoding: str) -> Callable[[bytes], Value]:
    return text_decoder(encoding)


def _binary_padded(length: int) -> Callable[[bytes], Value]:
    # The binlog stores BINARY(n) with its trailing zero bytes stripped; MySQL returns the
    # value padded to n bytes, so we pad it back.
    def convert(raw: bytes) -> Value:
        return raw.ljust(length, b"\0")

    return convert


def _json_text(raw: bytes) -> Value:
    return Json(raw.decode("utf-8"))


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


def _bit(nbytes: int) -> Decoder:
    def dec(buf: bytes, pos: int) -> tuple[Value, int]:
        return int.from_bytes(buf[pos : pos + nbytes], "big"), pos + nbytes

    return dec


def _enum(size: int, labels: tuple[str, ...]) -> Decoder:
    table = ("", *labels)  # index 0 is MySQL's '' for an invalid value

    def dec(buf: bytes, pos: int) -> tuple[Value, int]:
        idx = int.from_bytes(buf[pos : pos + size], "little")
        return (table[idx] if idx < len(table) else ""), pos + size

    return dec


def _set(size: int, labels: tuple[str, ...]) -> Decoder:
    cache: dict[int, frozenset[str]] = {}

    def dec(buf: bytes, pos: int) -> tuple[Value, int]:
        mask = int.from_bytes(buf[pos : pos + size], "little")
        value = cache.get(mask)
        if value is None:
            value = cache[mask] = frozenset(lab for i, lab in enumerate(labels) if mask >> i & 1)
        return value, pos + size

    return dec


def _encoding(col: Any) -> str | None:
    """Python codec of a character column, None for the binary charset."""
    name = (col.character_set_name or "utf8").lower()
    if name == "binary" or (col.collation_name or "") == "binary":
        return None
    return {"utf8mb4": "utf-8", "utf8mb3": "utf-8", "utf8": "utf-8", "latin1": "cp1252"}.get(
        name, name
    )


def _charset(col: Any) -> str | None:
    return (col.collation_name or "").split("_")[0] or None


def _column_decoder(col: Any, is_json: bool) -> Decoder:
    t = col.type
    unsigned = bool(col.unsigned)
    if t == FIELD_TYPE.TINY:
        return _fixed(_U8 if unsigned else _S8)
    if t == FIELD_TYPE.SHORT:
        return _fixed(_U16 if unsigned else _S16)
    if t == FIELD_TYPE.INT24:
        return _int24(unsigned)
    if t == FIELD_TYPE.LONG:
        return _fixed(_U32 if unsigned else _S32)
    if t == FIELD_TYPE.LONGLONG:
        return _fixed(_U64 if unsigned else _S64)
    if t == FIELD_TYPE.FLOAT:
        return _fixed(_F32)
    if t == FIELD_TYPE.DOUBLE:
        return _fixed(_F64)
    if t == FIELD_TYPE.NEWDECIMAL:
        return _newdecimal(col.precision, col.decimals)
    if t == FIELD_TYPE.YEAR:
        return _year
    if t in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        return _date
    if t == FIELD_TYPE.TIME2:
        return _time2(col.fsp)
    if t == FIELD_TYPE.TIME:
        return _time_old
    if t == FIELD_TYPE.DATETIME2:
        return _datetime2(col.fsp)
    if t == FIELD_TYPE.DATETIME:
        return _datetime_old
    if t == FIELD_TYPE.TIMESTAMP2:
        return _timestamp2(col.fsp)
    if t == FIELD_TYPE.TIMESTAMP:
        return _timestamp_old
    if t == FIELD_TYPE.BIT:
        return _bit(col.bytes)
    if t == FIELD_TYPE.ENUM:
        return _enum(col.size, tuple(col.enum_values[1:] if col.enum_values else ()))
    if t == FIELD_TYPE.SET:
        return _set(col.size, tuple(col.set_values or ()))
    if t in (FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING):
        enc = _encoding(col)
        prefix = 2 if col.max_length > 255 else 1
        if enc is None:
            fixed = t == FIELD_TYPE.STRING
            return _prefixed(prefix, _binary_padded(col.max_length) if fixed else None)
        return _prefixed(prefix, _text(enc))
    if t == FIELD_TYPE.BLOB:
        enc = _encoding(col)
        if is_json:
            return _prefixed(col.length_size, _json_text)
        return _prefixed(col.length_size, None if enc is None else _text(enc))
    if t == FIELD_TYPE.JSON:
        return _prefixed(col.length_size, _mysql_json)
    if t == FIELD_TYPE.GEOMETRY:
        return _prefixed(col.length_size, None)
    raise SchemaError(
        f"column {col.name!r} has binlog type {t}, which redoline cannot decode",
        hint="exclude the table ([tables] exclude) or the column ([tables.columns])",
    )


def compile_decoders(columns: list[Any], json_columns: set[str]) -> list[Decoder]:
    """One decoder per table-map column (``json_columns``: MariaDB JSON, stored as LONGTEXT)."""
    return [_column_decoder(c, c.name in json_columns) for c in columns]


# --------------------------------------------------------------------------- table map -> schema

_INT_TYPES = {
    FIELD_TYPE.TINY: ("tinyint", 8),
    FIELD_TYPE.SHORT: ("smallint", 16),
    FIELD_TYPE.INT24: ("mediumint", 24),
    FIELD_TYPE.LONG: ("int", 32),
    FIELD_TYPE.LONGLONG: ("bigint", 64),
}
_BLOB_NAMES = {1: "tiny", 2: "", 3: "medium", 4: "long"}


def _quote_labels(labels: tuple[str, ...]) -> str:
    return ",".join("'" + lab.replace("'", "''") + "'" for lab in labels)


def _library_labels(col: Any, labels: Any) -> tuple[str, ...]:
    """ENUM/SET labels as the library decoded them. It turns a label that is not UTF-8 (a
    latin1 column's 'é') into '', which would silently change the data; the server never
    holds two equal labels, so a repeated one means exactly that."""
    out = tuple(labels)
    if len(set(out)) != len(out):
        raise SchemaError(
            f"the ENUM/SET labels of column {col.name!r} are in a charset the library "
            "decoder cannot read",
            hint='capture with decoder = "fast" (the default), which reads them',
        )
    return out


def _schema_column(col: Any, nullable: bool, is_json: bool, generated: bool) -> Column:
    t = col.type
    common: dict[str, Any] = {"name": col.name, "nullable": nullable, "generated": generated}
    if t in _INT_TYPES:
        name, bits = _INT_TYPES[t]
        unsigned = bool(col.unsigned)
        return Column(
            kind="int",
            source_type=name + (" unsigned" if unsigned else ""),
            bits=bits,
            unsigned=unsigned,
            **common,
        )
    if t == FIELD_TYPE.NEWDECIMAL:
        return Column(
            kind="decimal",
            source_type=f"decimal({col.precision},{col.decimals})",
            precision=col.precision,
            scale=col.decimals,
            unsigned=bool(col.unsigned),
            **common,
        )
    if t == FIELD_TYPE.FLOAT:
        return Column(kind="float", source_type="float", **common)
    if t == FIELD_TYPE.DOUBLE:
        return Column(kind="double", source_type="double", **common)
    if t == FIELD_TYPE.YEAR:
        return Column(kind="year", source_type="year", **common)
    if t in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        return Column(kind="date", source_type="date", **common)
    if t in (FIELD_TYPE.TIME2, FIELD_TYPE.TIME):
        fsp = getattr(col, "fsp", 0)
        src = f"time({fsp})" if fsp else "time"
        return Column(kind="duration", source_type=src, precision=fsp, **common)
    if t in (FIELD_TYPE.DATETIME2, FIELD_TYPE.DATETIME):
        fsp = getattr(col, "fsp", 0)
        src = f"datetime({fsp})" if fsp else "datetime"
        return Column(kind="datetime", source_type=src, precision=fsp, **common)
    if t in (FIELD_TYPE.TIMESTAMP2, FIELD_TYPE.TIMESTAMP):
        fsp = getattr(col, "fsp", 0)
        src = f"timestamp({fsp})" if fsp else "timestamp"
        return Column(kind="timestamptz", source_type=src, precision=fsp, **common)
    if t == FIELD_TYPE.BIT:
        return Column(kind="bit", source_type=f"bit({col.bits})", bits=col.bits, **common)
    if t == FIELD_TYPE.ENUM:
        labels = _library_labels(col, col.enum_values[1:] if col.enum_values else ())
        return Column(
            kind="enum",
            source_type=f"enum({_quote_labels(labels)})",
            labels=labels,
            charset=_charset(col),
            **common,
        )
    if t == FIELD_TYPE.SET:
        labels = _library_labels(col, col.set_values or ())
        return Column(
            kind="set",
            source_type=f"set({_quote_labels(labels)})",
            labels=labels,
            charset=_charset(col),
            **common,
        )
    if t in (FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING):
        fixed = t == FIELD_TYPE.STRING
        if _encoding(col) is None:
            name = "binary" if fixed else "varbinary"
            return Column(
                kind="bytes",
                source_type=f"{name}({col.max_length})",
                length=col.max_length,
                fixed=fixed,
                **common,
            )
        charset = _charset(col)
        length = col.max_length // _CHARSET_MAXLEN.get(charset or "", 1)
        name = "char" if fixed else "varchar"
        return Column(
            kind="str",
            source_type=f"{name}({length})",
            length=length,
            fixed=fixed,
            charset=charset,
            **common,
        )
    if t == FIELD_TYPE.BLOB:
        prefix = _BLOB_NAMES.get(col.length_size, "long")
        if is_json:
            return Column(kind="json", source_type="json", charset=_charset(col), **common)
        if _encoding(col) is None:
            return Column(kind="bytes", source_type=f"{prefix}blob", **common)
        return Column(kind="str", source_type=f"{prefix}text", charset=_charset(col), **common)
    if t == FIELD_TYPE.JSON:
        return Column(kind="json", source_type="json", **common)
    if t == FIELD_TYPE.GEOMETRY:
        return Column(kind="other", source_type="geometry", **common)
    return Column(kind="other", source_type=f"binlog type {t}", **common)


def schema_from_table_map(
    event: TableMapEvent,
    *,
    json_columns: set[str] = frozenset(),  # type: ignore[assignment]
    generated: set[str] = frozenset(),  # type: ignore[assignment]
    version: int = 1,
) -> TableSchema:
    """The table definition a TABLE_MAP event (with ``binlog_row_metadata=FULL``) proves."""
    table = TableId(event.schema, event.table)
    nullmask = event.null_bitmask
    cols = []
    for i, col in enumerate(event.columns):
        if not col.name:
            raise PrerequisiteError(
                f"the binlog has no column names for {table} (binlog_row_metadata is not FULL "
                "where this event was written)",
                hint="SET GLOBAL binlog_row_metadata = 'FULL' on the source, then start capture "
                "from a position written after the change (re-snapshot the table)",
            )
        nullable = bool(nullmask[i >> 3] >> (i & 7) & 1)
        cols.append(_schema_column(col, nullable, col.name in json_columns, col.name in generated))
    meta = event.optional_metadata
    pk_idx = list(meta.simple_primary_key_list) or sorted(meta.primary_keys_with_prefix)
    primary = tuple(cols[i].name for i in pk_idx if i < len(cols))
    return TableSchema(table, tuple(cols), primary, (), version)


def _same_shape(a: TableSchema, b: TableSchema) -> bool:
    return a.columns == b.columns and a.primary_key == b.primary_key and a.table == b.table


# --------------------------------------------------------------------------- DDL


def _kind_of(dtype: exp.DataType) -> tuple[str, dict[str, Any]]:
    """Engine-neutral kind of a column type written in a DDL statement (best effort)."""
    name = dtype.this.name.lower()
    text = dtype.sql("mysql").lower()
    extra: dict[str, Any] = {"source_type": text}
    ints = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "bigint": 64}
    bits = ints.get(name.removeprefix("u"))
    if bits is not None:
        return "int", {
            **extra,
            "bits": bits,
            "unsigned": name.startswith("u") or "unsigned" in text,
        }
    simple = {
        "decimal": "decimal",
        "float": "float",
        "double": "double",
        "date": "date",
        "time": "duration",
        "datetime": "datetime",
        "timestamp": "timestamptz",
        "timestampltz": "timestamptz",
        "timestamptz": "timestamptz",
        "year": "year",
        "json": "json",
        "bit": "bit",
        "enum": "enum",
        "set": "set",
    }
    params = [
        int(p.this.name)
        for p in dtype.expressions
        if isinstance(p, exp.DataTypeParam) and p.this.name.isdigit()
    ]
    if name in simple:
        kind = simple[name]
        # without these a translated ALTER ... ADD COLUMN gets an unbounded type on the target
        if kind == "decimal":
            extra["precision"] = params[0] if params else 10  # MySQL's DECIMAL = DECIMAL(10,0)
            extra["scale"] = params[1] if len(params) > 1 else 0
        elif kind in ("duration", "datetime", "timestamptz"):
            extra["precision"] = params[0] if params else 0
        return kind, extra
    if "char" in name or "text" in name:
        if params and "char" in name:
            extra["length"] = params[0]
            extra["fixed"] = not name.startswith("var")
        return "str", extra
    if "binary" in name or "blob" in name:
        return "bytes", extra
    return "other", extra


def _coldef_column(coldef: exp.ColumnDef) -> Column:
    dtype = coldef.args.get("kind")
    kind, extra = _kind_of(dtype) if isinstance(dtype, exp.DataType) else ("other", {})
    # sqlglot parses an explicit NULL as NotNullColumnConstraint(allow_null=True)
    nullable = not any(
        isinstance(cons := c.args.get("kind"), exp.PrimaryKeyColumnConstraint)
        or (isinstance(cons, exp.NotNullColumnConstraint) and not cons.args.get("allow_null"))
        for c in coldef.args.get("constraints") or []
    )
    return Column(name=coldef.name, kind=kind, nullable=nullable, **extra)


def derive_after_ddl(
    previous: TableSchema | None, table: TableId, statement: exp.Expression | None
) -> TableSchema | None:
    """The table definition after ``statement``, derived without asking the server.

    Covers CREATE TABLE and ALTER TABLE ADD/DROP/RENAME/CHANGE/MODIFY COLUMN. Anything else
    keeps the previous definition; the TABLE_MAP of the next row change is the authority and
    capture records a corrected definition then if the derivation was short.
    """
    if isinstance(statement, exp.Create):
        schema_def = statement.this
        if isinstance(schema_def, exp.Schema):
            cols = [e for e in schema_def.expressions if isinstance(e, exp.ColumnDef)]
            primary: list[str] = []
            for e in schema_def.expressions:
                if isinstance(e, exp.PrimaryKey):
                    primary += [c.name for c in e.expressions]
            for c in cols:
                for cons in c.args.get("constraints") or []:
                    if isinstance(cons.args.get("kind"), exp.PrimaryKeyColumnConstraint):
                        primary.append(c.name)
            return TableSchema(table, tuple(_coldef_column(c) for c in cols), tuple(primary))
        return previous
    if not isinstance(statement, exp.Alter) or previous is None:
        return previous
    columns = list(previous.columns)
    primary_key = list(previous.primary_key)
    for action in statement.args.get("actions") or []:
        if isinstance(action, exp.ColumnDef):
            columns.append(_coldef_column(action))
        elif isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "COLUMN":
            # (sqlglot keeps the dropped column in `tables`; older versions in `this`)
            node = action.this or next(iter(action.args.get("tables") or []), None)
            gone = node.name if node is not None else ""
            columns = [c for c in columns if c.name != gone]
            primary_key = [c for c in primary_key if c != gone]
        elif isinstance(action, exp.RenameColumn):
            old, new = action.this.name, action.args["to"].name
            columns = [replace(c, name=new) if c.name == old else c for c in columns]
            primary_key = [new if c == old else c for c in primary_key]
        elif isinstance(action, exp.ModifyColumn) and isinstance(action.this, exp.ColumnDef):
            # CHANGE [COLUMN] old new TYPE ... / MODIFY [COLUMN] name TYPE ...: the column is
            # redefined where it stands (FIRST/AFTER are not followed: the table map is)
            changed = _coldef_column(action.this)
            source = action.args.get("rename_from")
            old = source.name if source is not None else changed.name
            if old in primary_key:
                changed = replace(changed, nullable=False)
            columns = [changed if c.name == old else c for c in columns]
            primary_key = [changed.name if c == old else c for c in primary_key]
    return replace(previous, columns=tuple(columns), primary_key=tuple(primary_key))


_DML_WORDS = re.compile(r"^\s*(?:/\*.*?\*/\s*)*(INSERT|UPDATE|DELETE|REPLACE|LOAD)\b", re.I | re.S)
_TABLE_AFTER = re.compile(
    r"\b(?:TABLE|INTO|UPDATE|FROM|ON)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?"
    r"((?:`(?:[^`]|``)+`|\w+)(?:\s*\.\s*(?:`(?:[^`]|``)+`|\w+))?)",
    re.I,
)
_LEAD = r"^\s*(?:/\*.*?\*/\s*)*"
#: one identifier: backquoted, or a bare run (MariaDB takes a reserved word such as `select`
#: bare after a dot, and bare names may be non-ASCII)
_IDENT = r"(?:`(?:[^`]|``)+`|[^\s`.,;()/]+)"
_QNAME = re.compile(rf"\s*({_IDENT})(?:\s*\.\s*({_IDENT}))?")
#: statement heads that name tables, and what they do: the table names follow the match
_HEADS: list[tuple[str, re.Pattern[str]]] = [
    (
        "create",
        re.compile(
            _LEAD
            + r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?TABLE\b\s*(?:IF\s+NOT\s+EXISTS\s+)?",
            re.I | re.S,
        ),
    ),
    (
        "alter",
        re.compile(
            _LEAD + r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:ONLINE\s+|OFFLINE\s+)?"
            r"(?:UNIQUE\s+|FULLTEXT\s+|SPATIAL\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?"
            rf"{_IDENT}\s+(?:USING\s+\w+\s+)?ON\s+",
            re.I | re.S,
        ),
    ),
    (
        "alter",
        re.compile(
            _LEAD + r"ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE\b\s*(?:IF\s+EXISTS\s+)?",
            re.I | re.S,
        ),
    ),
    (
        "alter",
        re.compile(_LEAD + rf"DROP\s+INDEX\s+(?:IF\s+EXISTS\s+)?{_IDENT}\s+ON\s+", re.I | re.S),
    ),
    (
        "drop",
        re.compile(_LEAD + r"DROP\s+(?:TEMPORARY\s+)?TABLES?\b\s*(?:IF\s+EXISTS\s+)?", re.I | re.S),
    ),
    ("truncate", re.compile(_LEAD + r"TRUNCATE\b\s*(?:TABLE\b\s*)?", re.I | re.S)),
    ("rename", re.compile(_LEAD + r"RENAME\s+TABLES?\b\s*", re.I | re.S)),
    (
        "dropdb",
        re.compile(_LEAD + r"DROP\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+EXISTS\s+)?", re.I | re.S),
    ),
]
#: ALTER TABLE ... RENAME [TO|AS] new (not RENAME COLUMN/INDEX/KEY/CONSTRAINT)
_ALTER_RENAME = re.compile(
    r"[\s,]RENAME\s+(?:TO\s+|AS\s+)?(?!(?:COLUMN|INDEX|KEY|CONSTRAINT)\b)", re.I
)


def _unquote(ident: str) -> str:
    if ident.startswith("`"):
        return ident[1:-1].replace("``", "`")
    return ident


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _name(text: str, default_schema: str) -> TableId:
    m = _QNAME.fullmatch(text.strip())
    if m is None:
        return TableId(default_schema, text.strip())
    if m.group(2) is None:
        return TableId(default_schema, _unquote(m.group(1)))
    return TableId(_unquote(m.group(1)), _unquote(m.group(2)))


@dataclass
class _Ddl:
    """What a QUERY event does to tables."""

    kind: str  # create | alter | drop | rename | truncate | dropdb | unknown | dml
    tables: list[TableId]
    renamed: list[tuple[TableId, TableId]] = field(default_factory=list)
    parsed: exp.Expression | None = None
    #: the statement with every table name it names backquoted (what the trail records, so
    #: apply parses `acc.select` as the table it is); None: the query as it came
    text: str | None = None


def _names_at(query: str, pos: int, default_schema: str) -> tuple[TableId, int, int] | None:
    """The (schema.)table name starting at ``pos``: the name, its span's start and end."""
    m = _QNAME.match(query, pos)
    if m is None:
        return None
    word = m.group(1)
    if m.group(2) is None:
        return TableId(default_schema, _unquote(word)), m.start(1), m.end()
    return TableId(_unquote(word), _unquote(m.group(2))), m.start(1), m.end()


def _reads_as(raw: str, table: TableId) -> bool:
    """Whether sqlglot reads the name ``raw`` as ``table`` (no reserved word in it)."""
    try:
        node = sqlglot.parse_one(f"SELECT 1 FROM {raw}", read="mysql").find(exp.Table)
    except Exception:  # sqlglot raises several types
        return False
    return node is not None and node.name == table.name and (not node.db or node.db == table.schema)


def classify_query(query: str, default_schema: str) -> _Ddl | None:
    """Tables a DDL (or statement-logged DML) names; None for statements touching no table.

    Table names are read by hand, not by sqlglot, which refuses reserved words that MariaDB
    takes bare after a dot (``TRUNCATE acc.select``): a statement whose names cannot be read
    comes back as kind ``unknown`` and stops capture rather than being dropped.
    """
    if _DML_WORDS.match(query):
        return _Ddl("dml", [_name(t, default_schema) for t in _TABLE_AFTER.findall(query)])
    found_head = next(((k, h.match(query)) for k, h in _HEADS if h.match(query)), None)
    if found_head is None:
        # not about a table's data: CREATE/ALTER/DROP of users, views, triggers, routines,
        # events, databases (CREATE DATABASE), SET, GRANT ...
        return None
    kind, m = found_head
    assert m is not None
    if kind == "dropdb":
        word = _QNAME.match(query, m.end())
        if word is None:
            return _Ddl("unknown", [])
        return _Ddl("dropdb", [TableId(_unquote(word.group(1)), "")])
    spans: list[tuple[int, int, TableId]] = []
    pos = m.end()
    renamed: list[tuple[TableId, TableId]] = []
    while True:
        first = _names_at(query, pos, default_schema)
        if first is None:
            return _Ddl("unknown", [])
        spans.append((first[1], first[2], first[0]))
        pos = first[2]
        if kind == "rename":
            to = re.compile(r"\s+TO\s+", re.I).match(query, pos)
            second = _names_at(query, to.end(), default_schema) if to else None
            if second is None:
                return _Ddl("unknown", [])
            spans.append((second[1], second[2], second[0]))
            renamed.append((first[0], second[0]))
            pos = second[2]
        if kind not in ("drop", "rename"):
            break
        comma = re.compile(r"\s*,").match(query, pos)
        if comma is None:
            break
        pos = comma.end()
    # a name sqlglot does not read as written (a reserved word) is backquoted in the text
    # the trail records, so apply reads the same table (backquotes change nothing for MariaDB)
    quoted = query
    for a, b, table in reversed(spans):
        raw = query[a:b]
        if not _reads_as(raw, table):
            schema = _quote(table.schema) + "." if "." in raw.replace("``", "") else ""
            quoted = quoted[:a] + schema + _quote(table.name) + quoted[b:]
    names = [t for _a, _b, t in spans]
    if kind == "rename":
        return _Ddl("rename", names, renamed, text=quoted if quoted != query else None)
    if kind in ("drop", "truncate"):
        return _Ddl(kind, names, text=quoted if quoted != query else None)
    parsed: Any
    try:
        parsed = sqlglot.parse_one(quoted, read="mysql")
    except Exception:  # sqlglot raises several types; a DDL it cannot parse is still a DDL
        parsed = None
    if isinstance(parsed, exp.Command):
        parsed = None
    table = names[0]
    if kind == "alter":
        rename_to: TableId | None = None
        if parsed is not None:
            action = next(
                (a for a in parsed.args.get("actions") or [] if isinstance(a, exp.AlterRename)),
                None,
            )
            if action is not None:
                rename_to = TableId(action.this.db or default_schema, action.this.name)
        elif (r := _ALTER_RENAME.search(quoted, spans[0][1])) is not None:
            found = _names_at(quoted, r.end(), default_schema)
            if found is None:
                return _Ddl("unknown", [table])
            rename_to, a, b = found
            raw = quoted[a:b]
            if not _reads_as(raw, rename_to):
                schema = _quote(rename_to.schema) + "." if "." in raw.replace("``", "") else ""
                quoted = quoted[:a] + schema + _quote(rename_to.name) + quoted[b:]
        if rename_to is not None:
            return _Ddl(
                "rename",
                [table, rename_to],
                [(table, rename_to)],
                text=quoted if quoted != query else None,
            )
    return _Ddl(kind, [table], parsed=parsed, text=quoted if quoted != query else None)


# --------------------------------------------------------------------------- positions


def end_position(db: MySQL) -> str:
    """The source's current end of binlog, as a position string (GTID state @ file:pos)."""
    rows = db.query("SHOW MASTER STATUS")
    if not rows:
        raise PrerequisiteError(
            f"{db.endpoint.display}: binary logging is off",
            hint="start the server with log_bin=mysql-bin (see `redoline check`)",
        )
    file, pos = str(rows[0][0]), int(rows[0][1])
    if db.is_mariadb():
        ((gtid,),) = db.query("SELECT @@GLOBAL.gtid_binlog_pos")
    else:
        gtid = rows[0][4] if len(rows[0]) > 4 else ""
    gtid = str(gtid or "").replace("\n", "").replace(" ", "")
    return str(BinlogPosition(gtid, file, pos))


# --------------------------------------------------------------------------- the reader


@dataclass
class _TableInfo:
    table: TableId
    schema: TableSchema
    names: tuple[str, ...]
    decoders: list[Decoder]
    identity: tuple[str, ...]
    #: the fast path's decoder (connectors/mysql/fastrows.py) when its table map went that way
    fast: RowDecoder | None = None
    #: the fast path's table-map content this info was built from (its cache key object)
    key: bytes | None = None
    #: the reader's catalog generation at which ``schema`` was found to be the catalogued one
    #: (a repeat of the same table map then needs no check: see BinlogReader._run)
    verified: int = -1
    #: columns-present bitmaps known to hold every stored column (a full row image)
    full: set[bytes] = field(default_factory=set)


@dataclass
class _Txn:
    xid: str | None = None
    #: a BEGIN (or a non-standalone MariaDB GTID) opened it: queries inside do not end it
    transactional: bool = False
    begun: bool = False
    #: definitions recorded inside this transaction (None: dropped), catalogued at commit
    announced: dict[TableId, TableSchema | None] = field(default_factory=dict)


_OPS = {WriteRowsEvent: Op.INSERT, UpdateRowsEvent: Op.UPDATE, DeleteRowsEvent: Op.DELETE}
_FAST_OPS = {"insert": Op.INSERT, "update": Op.UPDATE, "delete": Op.DELETE}


class BinlogReader:
    """A :class:`connectors.log.LogReader` over a MySQL/MariaDB binlog.

    ``options`` (all optional): ``catalog`` — the table definitions the trail already holds
    (``TrailWriter.catalog()``), so versions continue and nothing is announced twice;
    ``server_id`` — the replica id we announce (unique among the source's replicas);
    ``heartbeat`` — seconds between server heartbeats when idle (how fast :meth:`stop` is
    noticed on an idle source); ``decoder`` — ``"fast"`` (default: TABLE_MAP and ROWS events
    decoded by :mod:`connectors.mysql.fastrows`, per-table fallback to the library) or
    ``"library"`` (mysql-replication parses every event; for support cases).
    """

    def __init__(
        self,
        db: MySQL,
        start: str | None,
        *,
        tables: TableFilter,
        until_caught_up: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        options = options or {}
        self._db = db
        self._filter = tables
        self._until = until_caught_up
        self._catalog: dict[TableId, TableSchema] = dict(options.get("catalog") or {})
        #: bumped whenever ``_catalog`` changes (see _TableInfo.verified)
        self._catalog_gen = 0
        self._server_id = int(options.get("server_id") or 4_199_001)
        self._heartbeat = float(options.get("heartbeat", 1.0))
        self._decoder = str(options.get("decoder") or "fast")
        if self._decoder not in ("fast", "library"):
            raise ValueError(f'decoder must be "fast" or "library", not {self._decoder!r}')
        self._stop = threading.Event()
        self._stream: BinLogStreamReader | None = None
        self._selected: dict[TableId, bool] = {}
        self._by_id: dict[int, _TableInfo | None] = {}
        self._infos: dict[str | bytes, _TableInfo] = {}
        self._hints: dict[TableId, tuple[set[str], set[str]]] = {}
        self._mariadb = db.is_mariadb()
        self._check_server()
        self._end = BinlogPosition.parse(end_position(db)) if until_caught_up else None
        self._end_file_cache: tuple[str, int] = ("", 0)
        self._start = (
            BinlogPosition.parse(start) if start else BinlogPosition.parse(end_position(db))
        )
        self._file = self._start.file
        self._domains = self._start.mariadb_domains()
        self._gtid_set: Any = None
        if not self._mariadb and self._start.gtid:
            from pymysqlreplication.gtid import GtidSet

            self._gtid_set = GtidSet(self._start.gtid)

    # ------------------------------------------------------------------ protocol

    def confirm(self, position: str) -> None:
        """Nothing to do: a binlog has no server-side slot; the trail is the checkpoint."""

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except Exception:  # closing a dead socket may fail; nothing is lost
                pass
            self._stream = None

    def events(self) -> Iterator[LogEvent]:
        if self._end is not None and self._reached_end(self._start.file, self._start.pos):
            yield Heartbeat(str(self._start), caught_up=True)
            return
        self._stream = self._open_stream()
        try:
            if self._decoder == "fast":
                yield from self._run(
                    FastStream(self._stream, "mariadb" if self._mariadb else "mysql")
                )
            else:
                yield from self._run(self._stream)
        except _StreamLost as exc:
            raise ConnectError(
                f"{self._db.endpoint.display}: the binlog connection dropped ({exc})",
                hint="capture reconnects by itself; check the server if this repeats",
            ) from None
        except pymysql.err.MySQLError as exc:
            if isinstance(exc, pymysql.err.OperationalError) and exc.args[0] in _LOST_CODES:
                # the fast path's packet reader (fastrows.PacketReader) reports a loss so
                raise ConnectError(
                    f"{self._db.endpoint.display}: the binlog connection dropped ({exc.args[-1]})",
                    hint="capture reconnects by itself; check the server if this repeats",
                ) from None
            raise self._map_stream_error(exc) from None
        finally:
            self.close()

    # ------------------------------------------------------------------ internals

    def _check_server(self) -> None:
        variables = dict(
            self._db.query(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
                "('binlog_format', 'binlog_row_image', 'binlog_row_metadata', 'log_bin')"
            )
        )
        wanted = {
            "log_bin": "ON",
            "binlog_format": "ROW",
            "binlog_row_image": "FULL",
            "binlog_row_metadata": "FULL",
        }
        for name, value in wanted.items():
            now = str(variables.get(name, "(not set)")).upper()
            if now != value:
                raise PrerequisiteError(
                    f"{self._db.endpoint.display}: {name} is {now}, capture needs {value}",
                    hint=f"SET GLOBAL {name} = '{value}' (and in the server configuration); "
                    "see `redoline check`",
                )

    def _open_stream(self) -> BinLogStreamReader:
        from connectors.mysql import mysql_connect_args

        args = mysql_connect_args(self._db.endpoint)
        args.pop("database", None)
        args.pop("local_infile", None)
        # a dead server is noticed when no heartbeat arrived for a while
        args["read_timeout"] = max(10, int(self._heartbeat * 10))
        kwargs: dict[str, Any] = {
            "connection_settings": args,
            "server_id": self._server_id,
            # always blocking: MariaDB resets a non-blocking dump connection mid-stream; the
            # end for until_caught_up is the position measured at open
            "blocking": True,
            "filter_non_implemented_events": False,
            "slave_heartbeat": self._heartbeat,
            "pymysql_wrapper": _stream_connect,
            "enable_logging": False,
        }
        schemas = self._filter.schemas()
        # the fast path needs every event from the library (see FastStream); it drops other
        # schemas' rows before decoding them by itself
        if schemas is not None and self._decoder == "library":
            kwargs["only_schemas"] = sorted(schemas)  # drop other schemas' rows before decoding
        start = self._start
        if start.gtid:
            kwargs["auto_position"] = start.gtid
            kwargs["is_mariadb"] = self._mariadb
        else:
            kwargs.update(log_file=start.file, log_pos=start.pos, resume_stream=True)
        log.info("reading the binlog of %s from %s", self._db.endpoint.display, start)
        return BinLogStreamReader(**kwargs)

    def _map_stream_error(self, exc: pymysql.err.MySQLError) -> Exception:
        code = exc.args[0] if exc.args else None
        text = exc.args[-1] if exc.args else str(exc)
        if code == 1236:
            return ReplicationError(
                f"{self._db.endpoint.display}: the binlog can no longer be read from "
                f"{self._start} ({text})",
                hint="the source purged the binlog (or GTID history) capture needs; nothing was "
                "skipped. Re-snapshot the tables (`redoline snapshot`) and start capture from "
                "the snapshot's position; keep binlogs longer (expire_logs_days / "
                "binlog_expire_logs_seconds) so it does not happen again",
            )
        from connectors.mysql import map_error

        return map_error(exc, self._db.endpoint)

    def _reached_end(self, file: str, pos: int) -> bool:
        assert self._end is not None
        if file != self._end_file_cache[0]:
            self._end_file_cache = (file, BinlogPosition("", file, 0).file_key[1])
        end = self._end
        return (self._end_file_cache[1], pos) >= (end.file_key[1], end.pos)

    def _position(self, pos: int) -> str:
        if self._mariadb and self._domains:
            gtid = ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self._domains.items()))
        elif self._gtid_set is not None:
            gtid = str(self._gtid_set).replace("\n", "")
        else:
            gtid = ""
        return str(BinlogPosition(gtid, self._file, pos))

    def _is_selected(self, table: TableId) -> bool:
        ok = self._selected.get(table)
        if ok is None:
            ok = self._selected[table] = self._filter(table)
        return ok

    def _catalog_hints(self, table: TableId) -> tuple[set[str], set[str]]:
        """MariaDB JSON columns and generated columns: the two facts a table map lacks."""
        hints = self._hints.get(table)
        if hints is None:
            rows = self._db.query(
                "SELECT column_name, data_type, extra FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                (table.schema, table.name),
            )
            generated = {str(n) for n, _t, x in rows if "GENERATED" in str(x or "").upper()}
            json_cols = {str(n) for n, t, _x in rows if str(t).lower() == "json"}
            if self._mariadb:
                checks = self._db.query(
                    "SELECT check_clause FROM information_schema.check_constraints "
                    "WHERE constraint_schema = %s AND table_name = %s",
                    (table.schema, table.name),
                )
                for (clause,) in checks:
                    m = re.fullmatch(r"\s*json_valid\(`((?:[^`]|``)+)`\)\s*", str(clause), re.I)
                    if m:
                        json_cols.add(m.group(1).replace("``", "`"))
            hints = self._hints[table] = (json_cols, generated)
        return hints

    def _table_map(self, ev: TableMapEvent | FastTableMap, txn: _Txn) -> list[LogEvent]:
        table = TableId(ev.schema, ev.table)
        if not self._is_selected(table):
            self._by_id[ev.table_id] = None
            return []
        key = (
            ev.cache_key
            if isinstance(ev, FastTableMap)
            else repr(
                (
                    table,
                    ev.null_bitmask,
                    [vars(c) for c in ev.columns],
                    ev.optional_metadata.simple_primary_key_list,
                )
            )
        )
        info = self._infos.get(key)
        if info is None:
            json_cols, generated = self._catalog_hints(table)
            schema = schema_from_table_map(ev, json_columns=json_cols, generated=generated)
            info = _TableInfo(
                table,
                schema,
                schema.column_names,
                compile_decoders(ev.columns, json_cols),
                schema.identity,
            )
            if isinstance(ev, FastTableMap):
                info.fast = ev.decoder(schema.column_names, frozenset(json_cols))
                info.key = ev.cache_key
            self._infos[key] = info
        self._by_id[ev.table_id] = info
        known = self._known(txn, table)
        if known is not None and _same_shape(known, info.schema):
            if known.version != info.schema.version:
                info.schema = known
            if table not in txn.announced:
                info.verified = self._catalog_gen
            return []
        version = known.version + 1 if known is not None else 1
        info.schema = replace(info.schema, version=version)
        txn.announced[table] = info.schema
        out: list[LogEvent] = self._begin(txn)
        out.append(
            RowEvent(
                txn.xid or "",
                Change(Op.DDL, table, version, table_schema=info.schema),
            )
        )
        return out

    def _begin(self, txn: _Txn) -> list[LogEvent]:
        if txn.begun:
            return []
        txn.begun = True
        if txn.xid is None:
            txn.xid = f"{self._file}:{self._here}"
        return [Begin(txn.xid)]

    def _rows(self, ev: Any, txn: _Txn) -> Iterator[LogEvent]:
        info = self._by_id.get(ev.table_id)
        if info is None:
            return
        if not txn.begun:
            yield from self._begin(txn)
        xid = txn.xid or ""
        op = _OPS[type(ev)]
        table, schema = info.table, info.schema
        version, names, decoders, identity = (
            schema.version,
            info.names,
            info.decoders,
            info.identity,
        )
        packet = ev.packet
        buf = packet.read(ev.event_size - packet.read_bytes)
        ncols = ev.number_of_columns
        present1 = _present(ev.columns_present_bitmap, ncols)
        present2 = _present(ev.columns_present_bitmap2, ncols) if op is Op.UPDATE else present1
        self._check_full(info, ev.columns_present_bitmap, ncols, txn)
        if op is Op.UPDATE:
            self._check_full(info, ev.columns_present_bitmap2, ncols, txn)
        pos, end = 0, len(buf)
        while pos < end:
            if op is Op.UPDATE:
                before, pos = _image(buf, pos, present1, names, decoders)
                after, pos = _image(buf, pos, present2, names, decoders)
                key = {c: before[c] for c in identity} if identity else None
                yield RowEvent(xid, Change(op, table, version, key, before, after))
            elif op is Op.INSERT:
                after, pos = _image(buf, pos, present1, names, decoders)
                key = {c: after[c] for c in identity} if identity else None
                yield RowEvent(xid, Change(op, table, version, key, None, after))
            else:
                before, pos = _image(buf, pos, present1, names, decoders)
                key = {c: before[c] for c in identity} if identity else None
                yield RowEvent(xid, Change(op, table, version, key, before, None))

    def _fast_rows(self, ev: FastRows, txn: _Txn) -> Iterator[LogEvent]:
        """The fast path's twin of :meth:`_rows` (images from the table's RowDecoder)."""
        info = self._by_id.get(ev.table_id)
        if info is None:
            return
        if info.fast is None:
            raise ReplicationError(
                f"rows of {info.table} reached the fast decoder without its table map",
                hint='run capture with decoder = "library" and report this',
            )
        full = info.full
        if ev.present not in full or ev.present2 not in full:
            self._check_full(info, ev.present, ev.ncols, txn)
            self._check_full(info, ev.present2, ev.ncols, txn)
        if not txn.begun:
            yield from self._begin(txn)
        xid = txn.xid or ""
        op = _FAST_OPS[ev.op]
        table, version, identity = info.table, info.schema.version, info.identity
        # the event's packed bytes, counted once, spare the assembler a walk over every value
        # for its memory estimate (the sum over the event's rows is what matters)
        size = ev.end - ev.pos
        if len(identity) == 1:
            # the common one-column key: a dict display, not a comprehension (a call per row)
            (k,) = identity
            for before, after in info.fast.rows(ev):
                image: Row = before if before is not None else after  # type: ignore[assignment]
                yield RowEvent(xid, Change(op, table, version, {k: image[k]}, before, after), size)
                size = 0
            return
        for before, after in info.fast.rows(ev):
            image = before if before is not None else after  # type: ignore[assignment]
            key = {c: image[c] for c in identity} if identity else None
            yield RowEvent(xid, Change(op, table, version, key, before, after), size)
            size = 0

    def _check_full(self, info: _TableInfo, bitmap: bytes, ncols: int, txn: _Txn) -> None:
        """Stop on a partial row image: a session with binlog_row_image=MINIMAL or NOBLOB
        logs only some columns (the key, the changed ones), and a row missing the others
        would be applied as if they were NULL or lost. Generated columns may be left out."""
        bitmap = bytes(bitmap)
        if bitmap in info.full:
            return
        present = set(_present(bitmap, ncols))
        missing = [
            c.name
            for i, c in enumerate(info.schema.columns)
            if i not in present and not c.generated
        ]
        if not missing and ncols == len(info.schema.columns):
            info.full.add(bitmap)
            return
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ReplicationError(
            f"a partial row image of {info.table} at {self._file}:{self._here} (the end of its "
            f"rows event, transaction {txn.xid or '?'}) lacks column(s) {shown}: the session "
            "that wrote it had binlog_row_image=MINIMAL or NOBLOB, and such a row cannot be "
            "replicated",
            hint="set binlog_row_image=FULL for every session and server (SET GLOBAL "
            "binlog_row_image='FULL', reconnect clients, and set it in the server's config "
            f"file), then re-snapshot {info.table}",
        )

    def _known(self, txn: _Txn, table: TableId) -> TableSchema | None:
        if table in txn.announced:
            return txn.announced[table]
        return self._catalog.get(table)

    def _query(self, ev: QueryEvent, txn: _Txn) -> tuple[list[LogEvent], bool]:
        """Events for a QUERY event, and whether it ends the transaction (commit included)."""
        query = ev.query.strip()
        upper = query[:20].upper()
        if upper.startswith("BEGIN") or upper.startswith("START TRANSACTION"):
            txn.transactional = True
            return [], False
        if upper.startswith("COMMIT"):
            return self._commit(ev, txn), True
        if upper.startswith("ROLLBACK") and not upper.startswith("ROLLBACK TO"):
            return ([Rollback(txn.xid or "")] if txn.begun else []), True
        if upper.startswith("XA ") and txn.begun:
            raise ReplicationError(
                f"XA transaction {txn.xid} changes a captured table; XA is not supported",
                hint="exclude the table, or avoid XA on the source",
            )
        schema = ev.schema.decode() if isinstance(ev.schema, bytes) else str(ev.schema or "")
        ddl = classify_query(query, schema)
        if ddl is not None and ddl.kind == "unknown":
            raise ReplicationError(
                f"cannot tell which tables the DDL statement {query[:300]!r} at "
                f"{self._file}:{self._here} touches; stopping rather than drop it",
                hint="apply it to the target by hand if it touches a captured table, then "
                "resume capture from after it (or exclude the table and re-snapshot it)",
            )
        if ddl is not None and ddl.kind == "dropdb":
            # the database's tables the trail knows go, as a DROP TABLE of each would
            gone = ddl.tables[0].schema
            known = {**self._catalog, **txn.announced}
            tables = sorted(t for t, v in known.items() if t.schema == gone and v is not None)
            names = ", ".join(f"{_quote(t.schema)}.{_quote(t.name)}" for t in tables)
            ddl = _Ddl("drop", tables, text=f"DROP TABLE IF EXISTS {names}")
        selected = [t for t in (ddl.tables if ddl else []) if self._is_selected(t)]
        out: list[LogEvent] = []
        if ddl is not None and selected:
            if ddl.kind == "dml":
                raise ReplicationError(
                    f"a statement-logged change touches {selected[0]}: {query[:200]!r}; it "
                    "cannot be captured as rows",
                    hint="set binlog_format=ROW for every session (SET GLOBAL "
                    "binlog_format='ROW' and reconnect clients), then re-snapshot the table",
                )
            out += self._begin(txn)
            out += self._ddl_changes(ddl, selected, ddl.text or query, txn)
        if txn.transactional:
            return out, False
        return out + self._commit(ev, txn), True

    def _ddl_changes(
        self, ddl: _Ddl, selected: list[TableId], query: str, txn: _Txn
    ) -> list[LogEvent]:
        out: list[LogEvent] = []
        xid = txn.xid or ""
        # the renames in statement order, over the names as they were before it: a swap
        # (`a TO tmp, b TO a, tmp TO b`) ends with a and b swapped and tmp gone
        names: dict[TableId, TableSchema | None] = {}
        for a, b in ddl.renamed:
            moved = names.pop(a) if a in names else self._known(txn, a)
            names[a] = None
            names[b] = replace(moved, table=b) if moved is not None else None
        if ddl.kind == "drop" and len(set(selected)) < len(set(ddl.tables)):
            # `DROP TABLE x, y` with y not selected: the trail (and the target) drop x only
            query = "DROP TABLE IF EXISTS " + ", ".join(
                f"{_quote(t.schema)}.{_quote(t.name)}" for t in dict.fromkeys(selected)
            )
        for table in dict.fromkeys(selected):
            prev = self._known(txn, table)
            version = (prev.version + 1) if prev else 1
            if ddl.kind == "truncate":
                out.append(RowEvent(xid, Change(Op.TRUNCATE, table, prev.version if prev else 1)))
                continue
            after: TableSchema | None
            if ddl.kind == "drop":
                after = None
            elif table in names:
                after = names[table]  # None: gone under this name
            else:
                after = derive_after_ddl(prev, table, ddl.parsed)
            if after is not None:
                after = replace(after, version=version)
            # the next table map of this table is decoded afresh (and re-announced if the
            # derivation above fell short)
            self._hints.pop(table, None)
            self._infos = {k: v for k, v in self._infos.items() if v.table != table}
            out.append(RowEvent(xid, Change(Op.DDL, table, version, ddl=query, table_schema=after)))
            txn.announced[table] = after
        return out

    def _commit(self, ev: Any, txn: _Txn) -> list[LogEvent]:
        position = self._position(self._here)  # the commit event's next position
        if txn.announced:
            self._catalog_gen += 1
        for table, schema in txn.announced.items():
            if schema is None:
                self._catalog.pop(table, None)
            else:
                self._catalog[table] = schema
        if not txn.begun:
            return [Heartbeat(position, source_time=_ts(ev.timestamp))]
        return [Commit(txn.xid or "", position, _ts(ev.timestamp))]

    def _run(self, stream: BinLogStreamReader | FastStream) -> Iterator[LogEvent]:
        txn = _Txn()
        in_group = False
        self._here = self._start.pos
        by_id = self._by_id
        for ev in stream:
            t = type(ev)
            if t is FastRows:
                self._here = ev.log_pos
                yield from self._fast_rows(ev, txn)
                continue
            if t is FastMap:
                self._here = ev.log_pos
                tm = ev.table_map
                info = by_id.get(tm.table_id)
                # the table map a transaction repeats before each statement: the same content
                # under the same id, its definition already checked against an unchanged
                # catalog, and nothing announced in this transaction that could shadow it
                if (
                    info is not None
                    and info.key is tm.cache_key
                    and info.verified == self._catalog_gen
                    and not txn.announced
                ):
                    continue
                yield from self._table_map(tm, txn)
                continue
            self._here = ev.log_pos if t is FastXid or t is FastGtid else ev.packet.log_pos
            if t in _OPS:
                yield from self._rows(ev, txn)
                continue
            if t is TableMapEvent:
                yield from self._table_map(ev, txn)
                continue
            ended = False
            if t is XidEvent or t is FastXid:
                yield from self._commit(ev, txn)
                ended = True
            elif t is MariadbGtidEvent or t is FastGtid:
                self._domains[ev.domain_id] = (ev.server_id, ev.gtid_seq_no)
                txn = _Txn(xid=ev.gtid, transactional=not ev.flags & _GTID_STANDALONE)
                in_group = True
            elif t is GtidEvent:
                from pymysqlreplication.gtid import Gtid, GtidSet

                self._gtid_set = (self._gtid_set or GtidSet(None)) + Gtid(ev.gtid)
                txn = _Txn(xid=ev.gtid)
                in_group = True
            elif t is QueryEvent:
                if not in_group:
                    txn = _Txn()
                    in_group = True
                events, ended = self._query(ev, txn)
                yield from events
            elif t is RotateEvent:
                self._file = ev.next_binlog
            elif t is HeartbeatLogEvent:
                if not in_group:
                    if self._stop.is_set():
                        return
                    # idle source: lets capture flush its group commit and confirm
                    yield Heartbeat(self._position(self._here))
            elif t is XAPrepareEvent:
                if txn.begun:
                    raise ReplicationError(
                        f"XA transaction {txn.xid} changes a captured table; XA is not supported",
                        hint="exclude the table, or avoid XA on the source",
                    )
                ended = True
            elif t is NotImplementedEvent:
                self._unknown(ev, txn)
            elif t not in _BENIGN_CLASSES:
                # a class we do not handle (MySQL partial JSON updates, a malformed event, a
                # statement-based LOAD DATA ...): never let its rows go by silently
                self._unknown(ev, txn)
            if ended:
                txn = _Txn()
                in_group = False
                if self._stop.is_set():
                    return
            if not in_group and self._end is not None and self._reached_end(self._file, self._here):
                yield Heartbeat(self._position(self._here), caught_up=True)
                return
        if not self._stop.is_set():
            raise ConnectError(
                f"{self._db.endpoint.display}: the binlog stream ended unexpectedly",
                hint="capture reconnects by itself; check the server if this repeats",
            )

    def _unknown(self, ev: Any, txn: _Txn) -> None:
        code = ev.event_type
        if code in _BENIGN_EVENTS:
            return
        if code == _MYSQL_PARTIAL_JSON_EVENT:
            raise ReplicationError(
                "the binlog holds partial JSON updates (binlog_row_value_options=PARTIAL_JSON), "
                "which carry only a diff of the JSON document and cannot be replicated as rows",
                hint="SET GLOBAL binlog_row_value_options = '' on the source, then re-snapshot "
                "the tables whose JSON columns were updated",
            )
        if code == _MYSQL_PAYLOAD_EVENT:
            raise ReplicationError(
                "the binlog holds compressed transactions (binlog_transaction_compression), "
                "which redoline does not decode",
                hint="SET GLOBAL binlog_transaction_compression = OFF on the source, then "
                "re-snapshot the tables whose changes were compressed",
            )
        if code in _MARIADB_COMPRESSED:
            raise ReplicationError(
                "the binlog holds compressed events (log_bin_compress), which redoline does "
                "not decode",
                hint="SET GLOBAL log_bin_compress = OFF on the source, then re-snapshot the "
                "tables whose changes were compressed",
            )
        raise ReplicationError(
            f"binlog event type {code} at {self._file}:{ev.packet.log_pos} is unknown to "
            f"redoline (transaction {txn.xid}); stopping rather than risk dropping rows",
            hint="report this with the server version; mysqlbinlog shows the event",
        )


def _ts(timestamp: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, UTC)


_PRESENT_CACHE: dict[tuple[bytes, int], list[int]] = {}


def _present(bitmap: bytes, ncols: int) -> list[int]:
    key = (bytes(bitmap), ncols)
    out = _PRESENT_CACHE.get(key)
    if out is None:
        out = _PRESENT_CACHE[key] = [i for i in range(ncols) if bitmap[i >> 3] >> (i & 7) & 1]
    return out


def _image(
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
