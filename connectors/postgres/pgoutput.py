"""A decoder for PostgreSQL's ``pgoutput`` logical replication protocol (version 1).

Reference: "Logical Replication Message Formats" in the PostgreSQL documentation. Every message
starts with one type byte::

    B Begin     final_lsn int64, commit_time int64 (µs since 2000-01-01 UTC), xid int32
    C Commit    flags int8, commit_lsn int64, end_lsn int64, commit_time int64
    O Origin    commit_lsn int64, name cstring
    R Relation  relid int32, namespace cstring, name cstring, replident int8,
                ncols int16, then per column: flags int8 (1 = part of the key), name cstring,
                type oid int32, typmod int32
    Y Type      type oid int32, namespace cstring, name cstring
    I Insert    relid int32, 'N', TupleData
    U Update    relid int32, optional 'K' or 'O' TupleData (old key / old row), 'N' TupleData
    D Delete    relid int32, 'K' or 'O', TupleData
    T Truncate  nrels int32, options int8 (1 cascade, 2 restart identity), relids int32...
    M Message   flags int8 (1 transactional), lsn int64, prefix cstring, length int32, bytes

    TupleData   ncols int16, then per column a kind byte:
                'n' NULL, 'u' unchanged TOASTed value (not sent), 't' text: int32 length + bytes,
                'b' binary: int32 length + bytes (only when asked for binary; we never are)

Column values stay raw bytes here (``None`` for NULL, :data:`connectors.model.UNCHANGED` for an
unchanged TOAST value): turning text into typed values needs the catalog, which is
:mod:`connectors.postgres.relations`' job. The streaming messages of protocol version 2 (S, E, c,
A) are not decoded: we ask for version 1, in which the server only sends whole committed
transactions.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from connectors.errors import ReplicationError
from connectors.model import UNCHANGED, Unchanged

__all__ = [
    "PG_EPOCH",
    "BeginMsg",
    "CommitMsg",
    "DeleteMsg",
    "InsertMsg",
    "Message",
    "MessageMsg",
    "OriginMsg",
    "RelationColumn",
    "RelationMsg",
    "TruncateMsg",
    "TupleShapeError",
    "TupleValue",
    "TypeMsg",
    "UpdateMsg",
    "compile_tuple_reader",
    "decode",
    "format_lsn",
    "parse_lsn",
    "pg_time",
]

#: PostgreSQL's timestamp epoch; protocol timestamps count microseconds from it.
PG_EPOCH: Final = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

#: a column's value as it travels: text bytes, None (NULL) or UNCHANGED (TOAST not sent)
TupleValue = bytes | None | Unchanged

# The streaming replication protocol's CopyData frames that carry the messages: an XLogData
# frame is b"w", WAL start int64, WAL end int64, send time int64, then one pgoutput message; a
# primary keepalive is b"k", WAL end int64, send time int64, reply requested int8.
#: kind byte of a frame carrying a message
XLOGDATA: Final = ord("w")
#: kind byte of a primary keepalive
KEEPALIVE: Final = ord("k")
#: where the pgoutput message starts in an XLogData frame
MESSAGE_AT: Final = 25
#: in an Insert, Update or Delete frame: the relation id (int32) after the message's tag,
RELID_AT: Final = MESSAGE_AT + 1
#: the kind byte of the first tuple after it (TUPLE_NEW, TUPLE_KEY or TUPLE_OLD),
TUPLE_KIND_AT: Final = RELID_AT + 4
#: and the first TupleData
TUPLE_AT: Final = TUPLE_KIND_AT + 1
#: message tags of row changes
INSERT: Final = ord("I")
UPDATE: Final = ord("U")
DELETE: Final = ord("D")
#: tuple kinds: the new row, the old row's key columns, the whole old row
TUPLE_NEW: Final = ord("N")
TUPLE_KEY: Final = ord("K")
TUPLE_OLD: Final = ord("O")

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_BEGIN = struct.Struct(">QqI")
_COMMIT = struct.Struct(">BQQq")
_TRUNC = struct.Struct(">iB")
_MSG = struct.Struct(">BQ")


def format_lsn(lsn: int) -> str:
    """``lsn`` in PostgreSQL's text form, e.g. ``0/16B3748``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """The 64-bit integer behind an LSN written as ``XXXXXXXX/XXXXXXXX``."""
    high, sep, low = text.strip().partition("/")
    if not sep:
        raise ValueError(f"{text!r} is not a PostgreSQL LSN (expected e.g. 0/16B3748)")
    try:
        hi, lo = int(high, 16), int(low, 16)
    except ValueError:
        raise ValueError(f"{text!r} is not a PostgreSQL LSN (expected e.g. 0/16B3748)") from None
    if not (0 <= hi <= 0xFFFFFFFF and 0 <= lo <= 0xFFFFFFFF):
        raise ValueError(f"{text!r} is out of range for a PostgreSQL LSN")
    return (hi << 32) | lo


def pg_time(micros: int) -> dt.datetime:
    """A protocol timestamp (µs since 2000-01-01 UTC) as an aware datetime."""
    return PG_EPOCH + dt.timedelta(microseconds=micros)


@dataclass(slots=True)
class BeginMsg:
    final_lsn: int
    commit_time: dt.datetime
    xid: int


@dataclass(slots=True)
class CommitMsg:
    flags: int
    commit_lsn: int
    #: the end of the commit record: where a restart resumes after this transaction
    end_lsn: int
    commit_time: dt.datetime


@dataclass(slots=True)
class OriginMsg:
    commit_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class RelationColumn:
    name: str
    type_oid: int
    typmod: int
    #: part of the replica identity (every column is, under REPLICA IDENTITY FULL)
    key: bool


@dataclass(frozen=True, slots=True)
class RelationMsg:
    relid: int
    namespace: str
    name: str
    #: 'd' default (primary key), 'n' nothing, 'f' full, 'i' index
    replident: str
    columns: tuple[RelationColumn, ...]


@dataclass(slots=True)
class TypeMsg:
    type_oid: int
    namespace: str
    name: str


@dataclass(slots=True)
class InsertMsg:
    relid: int
    new: list[TupleValue]


@dataclass(slots=True)
class UpdateMsg:
    relid: int
    #: 'K' (old key only), 'O' (whole old row, REPLICA IDENTITY FULL) or '' (key unchanged)
    old_kind: str
    old: list[TupleValue] | None
    new: list[TupleValue]


@dataclass(slots=True)
class DeleteMsg:
    relid: int
    old_kind: str
    old: list[TupleValue]


@dataclass(slots=True)
class TruncateMsg:
    relids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(slots=True)
class MessageMsg:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = (
    BeginMsg
    | CommitMsg
    | OriginMsg
    | RelationMsg
    | TypeMsg
    | InsertMsg
    | UpdateMsg
    | DeleteMsg
    | TruncateMsg
    | MessageMsg
)


def _cstring(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(0, pos)
    return buf[pos:end].decode(), end + 1


def _tuple(buf: bytes, pos: int) -> tuple[list[TupleValue], int]:
    """One TupleData at ``pos``; returns the values and the offset after them."""
    (ncols,) = _I16.unpack_from(buf, pos)
    pos += 2
    values: list[TupleValue] = []
    append = values.append
    unpack_len = _I32.unpack_from
    for _ in range(ncols):
        kind = buf[pos]
        pos += 1
        if kind == 0x74:  # 't'
            (length,) = unpack_len(buf, pos)
            pos += 4
            append(buf[pos : pos + length])
            pos += length
        elif kind == 0x6E:  # 'n'
            append(None)
        elif kind == 0x75:  # 'u'
            append(UNCHANGED)
        elif kind == 0x62:  # 'b'
            raise ReplicationError(
                "pgoutput sent a binary column value, but redoline asks for text values",
                hint="do not set the 'binary' option on the publication subscriber side",
            )
        else:
            raise ReplicationError(f"pgoutput: unknown tuple column kind {chr(kind)!r}")
    return values, pos


class TupleShapeError(ValueError):
    """A TupleData that a compiled reader does not expect (column count, a binary value)."""


def compile_tuple_reader(
    columns: Sequence[tuple[str, Callable[[Any], Any] | None, bool]],
) -> Callable[[bytes, int], tuple[dict[str, Any], int]]:
    """A function reading one TupleData at an offset straight into a row dict.

    ``columns`` gives, per column in order: its name, how its text becomes a value (``None``:
    the text as ``str``) and whether that callable takes ``str`` (else the raw bytes). The
    function returns the row and the offset after the tuple. It is generated once per Relation
    message as straight-line code, one block per column, so a row costs no per-column loop,
    dispatch or intermediate list (:func:`_tuple` followed by a conversion loop cost about
    twice as much). It raises :class:`TupleShapeError` for a tuple of another shape and lets
    conversion errors through: callers then take the general path, which reports them.
    """
    lines = ["def read(buf, pos):", f"    if unpack16(buf, pos)[0] != {len(columns)}:"]
    lines.append("        raise TupleShapeError")
    lines.append("    pos += 2")
    env: dict[str, Any] = {
        "unpack16": _I16.unpack_from,
        "unpack32": _I32.unpack_from,
        "UNCHANGED": UNCHANGED,
        "TupleShapeError": TupleShapeError,
    }
    for i, (_name, conv, takes_str) in enumerate(columns):
        raw = "buf[pos + 5 : end]"
        if conv is None:
            expr = f"{raw}.decode()"
        else:
            env[f"c{i}"] = conv
            expr = f"c{i}({raw}.decode())" if takes_str else f"c{i}({raw})"
        lines += [
            "    kind = buf[pos]",
            "    if kind == 0x74:",  # 't'
            "        end = pos + 5 + unpack32(buf, pos + 1)[0]",
            f"        v{i} = {expr}",
            "        pos = end",
            "    elif kind == 0x6E:",  # 'n'
            f"        v{i} = None",
            "        pos += 1",
            "    elif kind == 0x75:",  # 'u'
            f"        v{i} = UNCHANGED",
            "        pos += 1",
            "    else:",
            "        raise TupleShapeError",
        ]
    # repr() of a str is always a valid literal: constant keys build the dict in one step
    items = ", ".join(f"{name!r}: v{i}" for i, (name, _c, _s) in enumerate(columns))
    lines.append(f"    return {{{items}}}, pos")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<redoline pgoutput tuple reader>", "exec"), env, namespace)
    reader: Callable[[bytes, int], tuple[dict[str, Any], int]] = namespace["read"]
    return reader


def decode(buf: bytes) -> Message:
    """Decode one pgoutput message (the payload of an XLogData frame)."""
    tag = buf[0]
    if tag == 0x49:  # 'I'
        (relid,) = _U32.unpack_from(buf, 1)
        if buf[5] != 0x4E:
            raise ReplicationError(f"pgoutput: Insert without a new tuple (got {buf[5]:#x})")
        new, _ = _tuple(buf, 6)
        return InsertMsg(relid, new)
    if tag == 0x55:  # 'U'
        (relid,) = _U32.unpack_from(buf, 1)
        pos = 5
        old_kind = ""
        old: list[TupleValue] | None = None
        if buf[pos] in (0x4B, 0x4F):  # 'K' / 'O'
            old_kind = chr(buf[pos])
            old, pos = _tuple(buf, pos + 1)
        if buf[pos] != 0x4E:
            raise ReplicationError(f"pgoutput: Update without a new tuple (got {buf[pos]:#x})")
        new, _ = _tuple(buf, pos + 1)
        return UpdateMsg(relid, old_kind, old, new)
    if tag == 0x44:  # 'D'
        (relid,) = _U32.unpack_from(buf, 1)
        old_kind = chr(buf[5])
        old_row, _ = _tuple(buf, 6)
        return DeleteMsg(relid, old_kind, old_row)
    if tag == 0x42:  # 'B'
        final_lsn, ts, xid = _BEGIN.unpack_from(buf, 1)
        return BeginMsg(final_lsn, pg_time(ts), xid)
    if tag == 0x43:  # 'C'
        flags, commit_lsn, end_lsn, ts = _COMMIT.unpack_from(buf, 1)
        return CommitMsg(flags, commit_lsn, end_lsn, pg_time(ts))
    if tag == 0x52:  # 'R'
        return _relation(buf)
    if tag == 0x4F:  # 'O'
        (lsn,) = struct.unpack_from(">Q", buf, 1)
        name, _ = _cstring(buf, 9)
        return OriginMsg(lsn, name)
    if tag == 0x59:  # 'Y'
        (oid,) = _U32.unpack_from(buf, 1)
        namespace, pos = _cstring(buf, 5)
        name, _ = _cstring(buf, pos)
        return TypeMsg(oid, namespace, name)
    if tag == 0x54:  # 'T'
        nrels, options = _TRUNC.unpack_from(buf, 1)
        relids = struct.unpack_from(f">{nrels}I", buf, 6)
        return TruncateMsg(tuple(relids), bool(options & 1), bool(options & 2))
    if tag == 0x4D:  # 'M'
        flags, lsn = _MSG.unpack_from(buf, 1)
        prefix, pos = _cstring(buf, 10)
        (length,) = _I32.unpack_from(buf, pos)
        content = bytes(buf[pos + 4 : pos + 4 + length])
        return MessageMsg(bool(flags & 1), lsn, prefix, content)
    raise ReplicationError(
        f"pgoutput: unsupported message type {chr(tag)!r}",
        hint="redoline speaks pgoutput protocol version 1 (no streaming of in-progress "
        "transactions)",
    )


def _relation(buf: bytes) -> RelationMsg:
    (relid,) = _U32.unpack_from(buf, 1)
    namespace, pos = _cstring(buf, 5)
    name, pos = _cstring(buf, pos)
    replident = chr(buf[pos])
    (ncols,) = _I16.unpack_from(buf, pos + 1)
    pos += 3
    columns = []
    for _ in range(ncols):
        flags = buf[pos]
        colname, pos = _cstring(buf, pos + 1)
        type_oid, typmod = struct.unpack_from(">Ii", buf, pos)
        pos += 8
        columns.append(RelationColumn(colname, type_oid, typmod, bool(flags & 1)))
    # pg_catalog is sent as an empty namespace (the protocol's shorthand)
    return RelationMsg(relid, namespace or "pg_catalog", name, replident, tuple(columns))
