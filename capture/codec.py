"""Value and record encoding for the change trail (docs/trail-format.md: Value encoding).

Records are MessagePack. Types MessagePack has natively (None, bool, int within 64 bits, float64,
str, bytes, list) are written as such; every other value of the change model is an *ext* type
whose payload is given below, so each value comes back as exactly the type and value it went
in as (Decimal scale, float NaN/-0.0, naive vs aware datetimes, ...).

This module sits on the trail's hot path: the encoders are dispatched by exact type through a
dict, and decoding builds model objects with as few Python calls as possible.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

import msgpack

from connectors.model import (
    UNCHANGED,
    Change,
    Column,
    Interval,
    Json,
    Op,
    TableId,
    TableSchema,
    Transaction,
    Unchanged,
    Value,
)

__all__ = [
    "EXT_BIGINT",
    "EXT_DATE",
    "EXT_DATETIME",
    "EXT_DECIMAL",
    "EXT_FROZENSET",
    "EXT_INTERVAL",
    "EXT_JSON",
    "EXT_ODD_OFFSET",
    "EXT_TIME",
    "EXT_TIMEDELTA",
    "EXT_UNCHANGED",
    "EXT_UUID",
    "ChangeDecoder",
    "decode_change",
    "decode_value",
    "encode_change",
    "encode_value",
    "make_packer",
    "make_unpacker",
    "schema_from_wire",
    "schema_to_wire",
    "to_jsonable",
    "txn_header",
]

# Ext type codes. They are part of the on-disk format: never renumber, only add.
EXT_DECIMAL: Final = 1  # str(Decimal), ASCII
EXT_DATETIME: Final = 2  # datetime.isoformat(), ASCII; offset kept, zone name is not
EXT_DATE: Final = 3  # date.isoformat()
EXT_TIME: Final = 4  # time.isoformat() (with offset for timetz)
EXT_TIMEDELTA: Final = 5  # struct '<qii': days, seconds, microseconds
EXT_INTERVAL: Final = 6  # msgpack [months, days, microseconds]
EXT_JSON: Final = 7  # the document's UTF-8 text
EXT_UUID: Final = 8  # 16 bytes, big-endian (uuid.bytes)
EXT_FROZENSET: Final = 9  # msgpack array of the sorted str members
EXT_UNCHANGED: Final = 10  # empty payload
EXT_BIGINT: Final = 11  # two's complement, little-endian, minimal length
EXT_ODD_OFFSET: Final = 12  # msgpack [naive datetime or time, offset in µs] (see below)

_TD: Final = struct.Struct("<qii")
_ExtType = msgpack.ExtType
_new_ext = tuple.__new__
_Decimal = decimal.Decimal
_DateTime = dt.datetime
_from_iso = dt.datetime.fromisoformat
_UTC = dt.UTC


def _enc_bigint(n: int) -> msgpack.ExtType:
    # Only reached for ints outside msgpack's [-2**63, 2**64-1] range.
    size = (n.bit_length() + 8) // 8
    return _ExtType(EXT_BIGINT, n.to_bytes(size, "little", signed=True))


def _enc_timedelta(v: dt.timedelta) -> msgpack.ExtType:
    return _ExtType(EXT_TIMEDELTA, _TD.pack(v.days, v.seconds, v.microseconds))


def _enc_frozenset(v: frozenset[str]) -> msgpack.ExtType:
    # Sorted so that equal sets encode to equal bytes (the digest and golden files rely on it).
    return _ExtType(EXT_FROZENSET, msgpack.packb(sorted(v), use_bin_type=True))


def _enc_interval(v: Interval) -> msgpack.ExtType:
    return _ExtType(
        EXT_INTERVAL, msgpack.packb([v.months, v.days, v.microseconds], default=_default)
    )


def _enc_odd_offset(v: dt.datetime | dt.time) -> msgpack.ExtType:
    # fromisoformat (3.11) drops the microseconds of a UTC offset; no database has such
    # offsets, but a value that goes in must come out, so they take this slower path.
    offset = v.utcoffset()
    assert offset is not None
    micros = (offset.days * 86_400 + offset.seconds) * 1_000_000 + offset.microseconds
    payload = msgpack.packb([v.replace(tzinfo=None), micros], default=_default)
    return _ExtType(EXT_ODD_OFFSET, payload)


def _enc_datetime(v: dt.datetime) -> msgpack.ExtType:
    # subclasses (pendulum, ...) come here and are stored as plain datetimes
    offset = v.utcoffset()
    if offset is not None and offset.microseconds:
        return _enc_odd_offset(v)
    return _ExtType(EXT_DATETIME, v.isoformat().encode())


def _enc_time(v: dt.time) -> msgpack.ExtType:
    offset = v.utcoffset()
    if offset is not None and offset.microseconds:
        return _enc_odd_offset(v)
    return _ExtType(EXT_TIME, v.isoformat().encode())


_ENCODERS: Final[dict[type, Callable[[Any], msgpack.ExtType]]] = {
    decimal.Decimal: lambda v: _ExtType(EXT_DECIMAL, str(v).encode()),
    dt.datetime: _enc_datetime,
    dt.date: lambda v: _ExtType(EXT_DATE, v.isoformat().encode()),
    dt.time: _enc_time,
    dt.timedelta: _enc_timedelta,
    Interval: _enc_interval,
    Json: lambda v: _ExtType(EXT_JSON, v.text.encode()),
    uuid.UUID: lambda v: _ExtType(EXT_UUID, v.bytes),
    frozenset: _enc_frozenset,
    Unchanged: lambda v: _ExtType(EXT_UNCHANGED, b""),
    int: _enc_bigint,
}

_FALLBACK_ORDER: Final = (
    dt.datetime,
    dt.date,
    dt.time,
    dt.timedelta,
    decimal.Decimal,
    uuid.UUID,
    frozenset,
    int,
)


def _default(obj: Any) -> Any:
    # Called by the C packer for every value it does not know; the commonest OLTP types
    # are tested first, and ExtType is built with tuple.__new__ to skip its Python-level
    # argument validation (the arguments here are always valid): ~30% faster per value.
    kind = type(obj)
    if kind is _Decimal:
        return _new_ext(_ExtType, (EXT_DECIMAL, str(obj).encode()))
    if kind is _DateTime:
        tz = obj.tzinfo
        # UTC (what PostgreSQL timestamptz and MySQL TIMESTAMP arrive as) needs no offset check
        if tz is not None and tz is not _UTC and obj.utcoffset().microseconds:
            return _enc_odd_offset(obj)
        return _new_ext(_ExtType, (EXT_DATETIME, obj.isoformat().encode()))
    if kind is Json:
        return _new_ext(_ExtType, (EXT_JSON, obj.text.encode()))
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        return encoder(obj)
    # Subclasses (pendulum datetimes, IntEnum members, ...): datetime before date.
    for base in _FALLBACK_ORDER:
        if isinstance(obj, base):
            return _ENCODERS[base](obj)
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, set):
        return _enc_frozenset(frozenset(obj))
    raise TypeError(f"the trail cannot store a value of type {type(obj).__name__}: {obj!r}")


def _dec_bigint(data: bytes) -> int:
    return int.from_bytes(data, "little", signed=True)


def _dec_timedelta(data: bytes) -> dt.timedelta:
    days, seconds, micros = _TD.unpack(data)
    return dt.timedelta(days=days, seconds=seconds, microseconds=micros)


def _dec_interval(data: bytes) -> Interval:
    months, days, micros = msgpack.unpackb(data, ext_hook=_ext_hook)
    return Interval(months, days, micros)


def _dec_frozenset(data: bytes) -> frozenset[str]:
    return frozenset(msgpack.unpackb(data, raw=False))


def _dec_odd_offset(data: bytes) -> dt.datetime | dt.time:
    value, micros = msgpack.unpackb(data, ext_hook=_ext_hook)
    return value.replace(tzinfo=dt.timezone(dt.timedelta(microseconds=micros)))


_DECODERS: Final[tuple[Callable[[bytes], Any] | None, ...]] = (
    None,
    lambda b: decimal.Decimal(b.decode()),
    lambda b: dt.datetime.fromisoformat(b.decode()),
    lambda b: dt.date.fromisoformat(b.decode()),
    lambda b: dt.time.fromisoformat(b.decode()),
    _dec_timedelta,
    _dec_interval,
    lambda b: Json(b.decode()),
    lambda b: uuid.UUID(bytes=bytes(b)),
    _dec_frozenset,
    lambda b: UNCHANGED,
    _dec_bigint,
    _dec_odd_offset,
)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_DECIMAL:
        return _Decimal(data.decode())
    if code == EXT_DATETIME:
        return _from_iso(data.decode())
    try:
        decoder = _DECODERS[code]
    except IndexError:
        decoder = None
    if decoder is None:
        raise ValueError(f"unknown value type code {code} in the trail")
    return decoder(data)


def make_packer() -> msgpack.Packer:
    """A MessagePack packer that knows every value type of the change model."""
    return msgpack.Packer(default=_default, use_bin_type=True, datetime=False, autoreset=True)


def make_unpacker() -> msgpack.Unpacker:
    """A streaming MessagePack unpacker matching :func:`make_packer` (feed it bytes)."""
    return msgpack.Unpacker(
        None,
        ext_hook=_ext_hook,
        raw=False,
        strict_map_key=False,
        max_buffer_size=2**31 - 1,
    )


def encode_value(value: Value) -> bytes:
    """One value as MessagePack bytes (used by tests and tools; records use a shared packer)."""
    return msgpack.packb(value, default=_default, use_bin_type=True, datetime=False)


def decode_value(data: bytes) -> Value:
    """Inverse of :func:`encode_value`."""
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


# --------------------------------------------------------------------------- records

_OP_CODES: Final[dict[Op, int]] = {
    Op.INSERT: 0,
    Op.UPDATE: 1,
    Op.DELETE: 2,
    Op.TRUNCATE: 3,
    Op.DDL: 4,
}
_OPS: Final[tuple[Op, ...]] = (Op.INSERT, Op.UPDATE, Op.DELETE, Op.TRUNCATE, Op.DDL)

_COLUMN_FIELDS: Final = (
    "name",
    "kind",
    "source_type",
    "nullable",
    "bits",
    "unsigned",
    "precision",
    "scale",
    "length",
    "fixed",
    "labels",
    "element",
    "generated",
    "charset",
)


def schema_to_wire(schema: TableSchema) -> list[Any]:
    """A table definition as a MessagePack-ready list (see docs/trail-format.md)."""
    return [
        schema.table.schema,
        schema.table.name,
        schema.version,
        [[getattr(c, f) for f in _COLUMN_FIELDS] for c in schema.columns],
        list(schema.primary_key),
        [list(k) for k in schema.unique_keys],
        schema.full_before_image,
    ]


def schema_from_wire(wire: list[Any]) -> TableSchema:
    """Inverse of :func:`schema_to_wire`."""
    schema, name, version, columns, pk, uniques, full = wire[:7]
    cols = []
    for values in columns:
        fields = dict(zip(_COLUMN_FIELDS, values, strict=False))
        fields["labels"] = tuple(fields.get("labels") or ())
        cols.append(Column(**fields))
    return TableSchema(
        table=TableId(schema, name),
        columns=tuple(cols),
        primary_key=tuple(pk),
        unique_keys=tuple(tuple(k) for k in uniques),
        version=version,
        full_before_image=full,
    )


#: table references by id() of the TableId. Readers keep one TableId object per table (PG
#: per relation, MySQL per table map), and TableId's dataclass __hash__/__eq__ cost more than
#: building the reference. Each entry keeps its object alive, so its id is not reused while
#: cached; small, because a reader making a TableId per event fills it with one-off objects.
_REFS_BY_ID: dict[int, tuple[TableId, str | list[str]]] = {}
#: table references by value, behind the one above
_REFS: dict[TableId, str | list[str]] = {}


def _table_ref(table: TableId) -> str | list[str]:
    hit = _REFS_BY_ID.get(id(table))
    if hit is not None and hit[0] is table:
        return hit[1]
    ref = _REFS.get(table)
    if ref is None:
        # NUL cannot occur in MySQL, PostgreSQL, Oracle or SQL Server identifiers, so one
        # string with a NUL separator is the common form; a name holding one is kept exact.
        if "\x00" in table.schema:
            ref = [table.schema, table.name]
        else:
            ref = f"{table.schema}\x00{table.name}"
        if len(_REFS) > 100_000:  # bound it even for a source that churns through tables
            _REFS.clear()
        _REFS[table] = ref
    if len(_REFS_BY_ID) >= 1024:
        _REFS_BY_ID.clear()
    _REFS_BY_ID[id(table)] = (table, ref)
    return ref


def encode_change(change: Change) -> list[Any]:
    """A change as a MessagePack-ready list: op, table, version, key, before, after, ...

    The optional tail (row id, DDL text, table definition) is omitted when empty, which keeps
    the common row change at six fields.
    """
    record: list[Any] = [
        _OP_CODES[change.op],
        _table_ref(change.table),
        change.schema_version,
        change.key,
        change.before,
        change.after,
    ]
    if change.row_id is not None or change.ddl is not None or change.table_schema is not None:
        record.append(change.row_id)
        record.append(change.ddl)
        record.append(None if change.table_schema is None else schema_to_wire(change.table_schema))
    return record


class ChangeDecoder:
    """Turns decoded change records back into :class:`Change` objects.

    Keeps one :class:`TableId` per table so that a block of changes to the same table shares
    it (cheaper to build, and cheaper to hash later in apply).
    """

    __slots__ = ("_tables",)

    def __init__(self) -> None:
        self._tables: dict[str, TableId] = {}

    def table(self, ref: str | list[str]) -> TableId:
        """The TableId for a record's table reference."""
        if type(ref) is list:
            return TableId(ref[0], ref[1])
        assert isinstance(ref, str)
        table = self._tables.get(ref)
        if table is None:
            schema, _, name = ref.partition("\x00")
            table = self._tables[ref] = TableId(schema, name)
        return table

    def change(self, record: list[Any]) -> Change:
        """One :class:`Change` from its record."""
        ref = record[1]
        table = self._tables.get(ref) if type(ref) is str else None
        if table is None:
            table = self.table(ref)
        if len(record) == 6:
            return Change(_OPS[record[0]], table, record[2], record[3], record[4], record[5])
        wire = record[8]
        return Change(
            _OPS[record[0]],
            table,
            record[2],
            record[3],
            record[4],
            record[5],
            record[6],
            record[7],
            None if wire is None else schema_from_wire(wire),
        )

    def changes(self, records: Iterable[list[Any]]) -> Iterator[Change]:
        """Decode a run of records."""
        change = self.change
        for record in records:
            yield change(record)


def decode_change(record: list[Any]) -> Change:
    """Decode one change record (convenience; hot paths keep a :class:`ChangeDecoder`)."""
    return ChangeDecoder().change(record)


def txn_header(txn: Transaction, first_op: int, count: int) -> list[Any]:
    """The record that opens a transaction: xid, position, commit time, origin, first op, n."""
    return [txn.xid, txn.position, txn.commit_time, txn.origin, first_op, count]


# --------------------------------------------------------------------------- JSON view


def to_jsonable(value: Any) -> Any:
    """A JSON-friendly rendering of a value, for dumps and DuckDB queries (lossy, readable).

    Decimals become strings (so no precision is lost), bytes ``"\\\\x<hex>"``, temporal values
    ISO 8601, NaN/inf the strings ``"NaN"``/``"Infinity"``, UNCHANGED ``"<unchanged>"``, JSON
    documents their parsed value.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, Json):
        try:
            return json.loads(value.text)
        except ValueError:
            return value.text
    if isinstance(value, Interval):
        return {"months": value.months, "days": value.days, "microseconds": value.microseconds}
    if isinstance(value, frozenset):
        return sorted(value)
    if value is UNCHANGED:
        return "<unchanged>"
    return repr(value)
