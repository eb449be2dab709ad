"""The fast path of MySQL/MariaDB capture: TABLE_MAP and ROWS events decoded from raw bytes.

mysql-replication keeps the connection, authentication and the binlog dump protocol, and still
parses the rare framing events (GTID, QUERY, XID, ROTATE ...). The two events that carry the
volume — TABLE_MAP (one before every row event) and WRITE/UPDATE/DELETE_ROWS — are decoded here
straight from the packet bytes, because the library spends most of its time on them: it
re-parses each TABLE_MAP's optional metadata into column objects and decodes every value
through a generic per-column switch.

How this is fast:

* a TABLE_MAP is parsed once per distinct content: :class:`TableMapCache` keys the parse on the
  event's bytes after the table id, so the ten table maps of a ten-statement transaction cost a
  dictionary lookup each;
* each table definition gets one :class:`RowDecoder`, and the decoder compiles one function per
  (columns-present bitmap, row NULL bitmap) it meets: that function unpacks every run of
  fixed-width columns with one precompiled :class:`struct.Struct`, reads variable-length
  columns inline, converts through per-type closures bound at compile time, and builds the
  row dict in one expression. OLTP tables show a handful of NULL patterns, so almost every row
  runs straight-line code with no per-column dispatch;
* a table with more NULL patterns than :data:`MAX_PATTERNS` switches to an interpreted loop
  over the same per-type closures (still exact, a little slower).

Values are exactly those of the library path in :mod:`connectors.mysql.binlog` (the
differential test ``tests/connectors/test_mysql_fastrows.py`` runs both over the same binlog).
What this module cannot decode raises :class:`Unsupported` with the reason when the table map
is parsed; the reader then hands that table's events to the library path and logs it once.

Wire format reference (MySQL and MariaDB share it): an event is a 19-byte header (timestamp,
type, server id, size, next position, flags), a post-header and a body, followed by a 4-byte
CRC32 when ``binlog_checksum=CRC32``.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from connectors.model import Row
from connectors.mysql.values import (
    T_BIT,
    T_BLOB,
    T_DATE,
    T_DATETIME,
    T_DATETIME2,
    T_DECIMAL,
    T_DOUBLE,
    T_ENUM,
    T_FLOAT,
    T_GEOMETRY,
    T_INT24,
    T_JSON,
    T_LONG,
    T_LONG_BLOB,
    T_LONGLONG,
    T_MEDIUM_BLOB,
    T_NEWDATE,
    T_NEWDECIMAL,
    T_NULL,
    T_SET,
    T_SHORT,
    T_STRING,
    T_TIME,
    T_TIME2,
    T_TIMESTAMP,
    T_TIMESTAMP2,
    T_TINY,
    T_TINY_BLOB,
    T_VAR_STRING,
    T_VARCHAR,
    T_YEAR,
    ColumnHints,
    Convert,
    Spec,
    Unsupported,
    codec,
    column_spec,
    text_decoder,
)

__all__ = [
    "MAX_PATTERNS",
    "FastColumn",
    "FastRows",
    "FastTableMap",
    "RowDecoder",
    "TableMapCache",
    "Unsupported",
    "parse_rows_header",
    "parse_table_map",
]

log = logging.getLogger("redoline.capture.mysql")

Bytes = bytes  # FastColumn has a field named ``bytes`` (the library's name), shadowing the type

#: distinct NULL patterns compiled per (table, columns-present bitmap) before falling back to
#: the interpreted loop: bounds the code generated for wide tables with scattered NULLs
MAX_PATTERNS: Final = 64

# ------------------------------------------------------------------------ binlog constants

TABLE_MAP: Final = 19
WRITE_V1, UPDATE_V1, DELETE_V1 = 23, 24, 25
WRITE_V2, UPDATE_V2, DELETE_V2 = 30, 31, 32
# MariaDB log_bin_compress: the row images (after the columns-present bitmaps) are compressed
WRITE_C1, UPDATE_C1, DELETE_C1 = 166, 167, 168
WRITE_C2, UPDATE_C2, DELETE_C2 = 169, 170, 171

#: event type -> (op, post-header has v2 extra data, body compressed)
ROWS_EVENTS: Final[dict[int, tuple[str, bool, bool]]] = {
    WRITE_V1: ("insert", False, False),
    UPDATE_V1: ("update", False, False),
    DELETE_V1: ("delete", False, False),
    WRITE_V2: ("insert", True, False),
    UPDATE_V2: ("update", True, False),
    DELETE_V2: ("delete", True, False),
    WRITE_C2: ("insert", True, True),
    UPDATE_C2: ("update", True, True),
    DELETE_C2: ("delete", True, True),
    WRITE_C1: ("insert", False, True),
    UPDATE_C1: ("update", False, True),
    DELETE_C1: ("delete", False, True),
}

# Columns the SIGNEDNESS metadata has one bit for. YEAR is one (the server counts every integer
# field); BIT is not — checked against MariaDB 10.11's table maps.
_NUMERIC = frozenset(
    {T_TINY, T_SHORT, T_INT24, T_LONG, T_LONGLONG, T_NEWDECIMAL, T_FLOAT, T_DOUBLE, T_YEAR}
)
_ENUM_OR_SET = frozenset({T_ENUM, T_SET})

# optional metadata field types (binlog_row_metadata)
_M_SIGNEDNESS, _M_DEFAULT_CHARSET, _M_COLUMN_CHARSET, _M_COLUMN_NAME = 1, 2, 3, 4
_M_SET_STR_VALUE, _M_ENUM_STR_VALUE, _M_GEOMETRY_TYPE, _M_SIMPLE_PK = 5, 6, 7, 8
_M_PK_WITH_PREFIX, _M_ENUM_SET_DEFAULT_CHARSET, _M_ENUM_SET_COLUMN_CHARSET = 9, 10, 11
_M_VISIBILITY = 12


# ------------------------------------------------------------------------ small readers


def _lenenc(buf: bytes, pos: int) -> tuple[int, int]:
    """A length-encoded integer at ``pos``: (value, position after it)."""
    first = buf[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFC:
        return buf[pos + 1] | buf[pos + 2] << 8, pos + 3
    if first == 0xFD:
        return int.from_bytes(buf[pos + 1 : pos + 4], "little"), pos + 4
    if first == 0xFE:
        return int.from_bytes(buf[pos + 1 : pos + 9], "little"), pos + 9
    raise Unsupported(f"malformed length-encoded integer (first byte {first:#x})")


def _lenenc_ints(data: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(data):
        value, pos = _lenenc(data, pos)
        out.append(value)
    return out


def _lenenc_strings(data: bytes, pos: int, end: int) -> tuple[list[bytes], int]:
    n, pos = _lenenc(data, pos)
    out = []
    for _ in range(n):
        size, pos = _lenenc(data, pos)
        out.append(bytes(data[pos : pos + size]))
        pos += size
    return out, pos


def _msb_bits(data: bytes, count: int) -> list[bool]:
    """``count`` flags packed most significant bit first (SIGNEDNESS, VISIBILITY)."""
    return [bool(data[i >> 3] & (0x80 >> (i & 7))) for i in range(count)]


# ------------------------------------------------------------------------ table maps


@dataclass(slots=True, eq=False)
class FastColumn:
    """One column of a TABLE_MAP event.

    The attribute names are those of mysql-replication's ``Column`` on purpose: the reader
    derives the recorded :class:`~connectors.model.TableSchema` from either parse with the same
    function (``binlog.schema_from_table_map``), so both paths announce identical definitions.
    """

    type: int
    name: str = ""
    unsigned: bool = False
    charset_id: int | None = None
    character_set_name: str | None = None
    collation_name: str | None = None
    enum_values: list[str] | None = None
    set_values: list[str] | None = None
    max_length: int = 0
    length_size: int = 0
    size: int = 0
    fsp: int = 0
    precision: int = 0
    decimals: int = 0
    bits: int = 0
    bytes: int = 0
    geometry_type: int | None = None
    visibility: bool = True
    #: raw label bytes of ENUM/SET (decoded with the column charset once it is known)
    raw_labels: list[Bytes] = field(default_factory=list)


@dataclass(slots=True)
class OptionalMetadata:
    """The parts of ``binlog_row_metadata=FULL`` the reader uses beyond the columns."""

    simple_primary_key_list: list[int] = field(default_factory=list)
    primary_keys_with_prefix: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class FastTableMap:
    """A parsed TABLE_MAP event (shared by every event with the same content)."""

    table_id: int
    schema: str
    table: str
    columns: list[FastColumn]
    null_bitmask: bytes
    optional_metadata: OptionalMetadata
    #: the event's content after the table id: equal keys mean an identical definition
    cache_key: bytes
    #: why the fast decoder cannot take this table (None: it can)
    unsupported: str | None = None
    _decoders: dict[ColumnHints, RowDecoder] = field(default_factory=dict)

    @property
    def column_count(self) -> int:
        return len(self.columns)

    def decoder(self, names: tuple[str, ...], hints: ColumnHints) -> RowDecoder:
        """The row decoder for this definition (built once per catalog ``hints``)."""
        dec = self._decoders.get(hints)
        if dec is None:
            dec = self._decoders[hints] = RowDecoder(self.columns, names, hints)
        return dec


def _column_meta(col: FastColumn, meta: bytes, pos: int) -> int:
    """Read ``col``'s type-specific table-map metadata at ``pos``; the position after it."""
    t = col.type
    if t in (T_FLOAT, T_DOUBLE):
        col.size = meta[pos]
        return pos + 1
    if t in (T_BLOB, T_GEOMETRY, T_JSON, T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB):
        col.length_size = meta[pos]
        return pos + 1
    if t == T_VARCHAR:
        col.max_length = meta[pos] | meta[pos + 1] << 8
        return pos + 2
    if t in (T_STRING, T_VAR_STRING):
        # two bytes, big end first: the real type (ENUM/SET hide here) or the top bits of the
        # length, then the low byte of the length
        word = meta[pos] << 8 | meta[pos + 1]
        real = word >> 8
        if real in _ENUM_OR_SET:
            col.type = real
            col.size = word & 0xFF
        else:
            col.max_length = (((word >> 4) & 0x300) ^ 0x300) + (word & 0xFF)
        return pos + 2
    if t == T_NEWDECIMAL:
        col.precision, col.decimals = meta[pos], meta[pos + 1]
        return pos + 2
    if t == T_BIT:
        col.bits = meta[pos + 1] * 8 + meta[pos]
        col.bytes = (col.bits + 7) // 8
        return pos + 2
    if t in (T_TIMESTAMP2, T_DATETIME2, T_TIME2):
        col.fsp = meta[pos]
        return pos + 1
    if t in _ENUM_OR_SET:
        # only seen in old or foreign binlogs; the library reads no metadata for them
        raise Unsupported(f"column type {t} given directly in the table map")
    if t in (T_DECIMAL, T_NULL):
        raise Unsupported(f"pre-5.0 column type {t}")
    return pos


def _is_character(t: int, mariadb: bool) -> bool:
    # the columns DEFAULT_CHARSET/COLUMN_CHARSET list, in order; MariaDB counts GEOMETRY
    return t in (T_STRING, T_VAR_STRING, T_VARCHAR, T_BLOB) or (t == T_GEOMETRY and mariadb)


def _charsets(
    columns: list[FastColumn],
    pick: Callable[[int], bool],
    default: bytes | None,
    per_column: bytes | None,
) -> list[int] | None:
    """Collation id of each column ``pick`` selects, from DEFAULT_ or COLUMN_CHARSET data."""
    wanted = [i for i, c in enumerate(columns) if pick(c.type)]
    if per_column is not None:
        ids = _lenenc_ints(per_column)
        if len(ids) != len(wanted):
            raise Unsupported("COLUMN_CHARSET metadata does not match the character columns")
        return ids
    if default is not None:
        ints = _lenenc_ints(default)
        base, pairs = ints[0], ints[1:]
        exceptions = dict(zip(pairs[::2], pairs[1::2], strict=True))
        return [exceptions.get(k, base) for k in range(len(wanted))]
    return None


def _charset_names(collation_id: int, dbms: str) -> tuple[str | None, str | None]:
    """(codec name, collation name) of a collation id, from the library's charset table.

    Reusing the library's table (not its code) keeps both paths' column metadata identical.
    """
    from pymysqlreplication.constants import CHARSET

    cs = CHARSET.charset_by_id(str(collation_id), dbms)
    if cs is None:
        return "utf8", None
    return cs.encoding, cs.collation


def parse_table_map(
    event: bytes, start: int, end: int, table_id_size: int, dbms: str
) -> FastTableMap:
    """Parse the TABLE_MAP event whose post-header starts at ``start`` (``end``: before the
    checksum). ``dbms`` is ``"mariadb"`` or ``"mysql"``. Never raises :class:`Unsupported`:
    a table the fast path cannot decode comes back with ``unsupported`` set."""
    table_id = int.from_bytes(event[start : start + table_id_size], "little")
    body = start + table_id_size + 2  # flags
    key = bytes(event[body:end])
    pos = 0
    schema_len = key[pos]
    schema = key[pos + 1 : pos + 1 + schema_len].decode("utf-8")
    pos += 2 + schema_len  # length, name, NUL
    table_len = key[pos]
    table = key[pos + 1 : pos + 1 + table_len].decode("utf-8")
    pos += 2 + table_len
    tm = FastTableMap(table_id, schema, table, [], b"", OptionalMetadata(), key)
    try:
        _parse_columns(tm, key, pos, dbms)
    except Unsupported as exc:
        tm.unsupported = str(exc)
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        tm.unsupported = f"table map not understood ({exc.__class__.__name__}: {exc})"
    return tm


def _parse_columns(tm: FastTableMap, key: bytes, pos: int, dbms: str) -> None:
    ncols, pos = _lenenc(key, pos)
    columns = [FastColumn(t) for t in key[pos : pos + ncols]]
    pos += ncols
    meta_len, pos = _lenenc(key, pos)
    mpos, mend = pos, pos + meta_len
    for col in columns:
        mpos = _column_meta(col, key, mpos)
    if mpos != mend:
        raise Unsupported("column metadata length does not match the column types")
    pos = mend
    nbytes = (ncols + 7) // 8
    tm.null_bitmask = bytes(key[pos : pos + nbytes])
    pos += nbytes
    tm.columns = columns
    mariadb = dbms == "mariadb"
    fields: dict[int, bytes] = {}
    while pos < len(key):
        ftype = key[pos]
        flen, pos = _lenenc(key, pos + 1)
        fields[ftype] = bytes(key[pos : pos + flen])
        pos += flen
    if _M_COLUMN_NAME not in fields:
        return  # no names: the reader refuses the table (binlog_row_metadata is not FULL)
    names, npos = [], 0
    data = fields[_M_COLUMN_NAME]
    while npos < len(data):
        size, npos = _lenenc(data, npos)
        names.append(data[npos : npos + size].decode("utf-8"))
        npos += size
    if len(names) != ncols:
        raise Unsupported("COLUMN_NAME metadata does not match the column count")
    for col, name in zip(columns, names, strict=True):
        col.name = name
    if _M_SIGNEDNESS in fields:
        numeric = [c for c in columns if c.type in _NUMERIC]
        for col, flag in zip(numeric, _msb_bits(fields[_M_SIGNEDNESS], len(numeric)), strict=True):
            col.unsigned = flag
    chars = _charsets(
        columns,
        lambda t: _is_character(t, mariadb),
        fields.get(_M_DEFAULT_CHARSET),
        fields.get(_M_COLUMN_CHARSET),
    )
    enum_set = _charsets(
        columns,
        lambda t: t in _ENUM_OR_SET,
        fields.get(_M_ENUM_SET_DEFAULT_CHARSET),
        fields.get(_M_ENUM_SET_COLUMN_CHARSET),
    )
    it_chars = iter(chars or ())
    it_enum_set = iter(enum_set or ())
    enum_labels = _labels(fields.get(_M_ENUM_STR_VALUE))
    set_labels = _labels(fields.get(_M_SET_STR_VALUE))
    geometry = iter(_lenenc_ints(fields.get(_M_GEOMETRY_TYPE, b"")))
    for col in columns:
        if _is_character(col.type, mariadb):
            cid = next(it_chars, None)
            if cid is None:
                raise Unsupported(f"no character set for column {col.name!r}")
            col.charset_id = cid
            col.character_set_name, col.collation_name = _charset_names(cid, dbms)
        if col.type in _ENUM_OR_SET:
            cid = next(it_enum_set, None)
            if cid is None:
                raise Unsupported(f"no character set for ENUM/SET column {col.name!r}")
            col.charset_id = cid
            col.character_set_name, col.collation_name = _charset_names(cid, dbms)
            raw = next(enum_labels if col.type == T_ENUM else set_labels, None)
            if raw is None:
                raise Unsupported(f"no labels for ENUM/SET column {col.name!r}")
            col.raw_labels = raw
            # the labels are in the column's charset (latin1's 'é' is the byte 0xE9)
            label_codec = codec(col) or "utf-8"
            try:
                decode = text_decoder(label_codec)
                labels = [str(decode(lab)) for lab in raw]
            except (UnicodeDecodeError, LookupError):
                # the library turns such labels into '' (silently wrong): refuse instead
                raise Unsupported(
                    f"ENUM/SET labels of {col.name!r} are not valid {label_codec}"
                ) from None
            if col.type == T_ENUM:
                col.enum_values = ["", *labels]
            else:
                col.set_values = labels
        if col.type == T_GEOMETRY:
            col.geometry_type = next(geometry, None)
    if _M_SIMPLE_PK in fields:
        tm.optional_metadata.simple_primary_key_list = _lenenc_ints(fields[_M_SIMPLE_PK])
    if _M_PK_WITH_PREFIX in fields:
        ints = _lenenc_ints(fields[_M_PK_WITH_PREFIX])
        tm.optional_metadata.primary_keys_with_prefix = dict(
            zip(ints[::2], ints[1::2], strict=True)
        )
    if _M_VISIBILITY in fields:
        for col, visible in zip(columns, _msb_bits(fields[_M_VISIBILITY], ncols), strict=True):
            col.visibility = visible
    for col in columns:
        _check_decodable(col)


def _labels(data: bytes | None) -> Iterator[list[bytes]]:
    if not data:
        return
    pos = 0
    while pos < len(data):
        labels, pos = _lenenc_strings(data, pos, len(data))
        yield labels


def _check_decodable(col: FastColumn) -> None:
    if col.type == T_JSON:
        # MySQL's binary JSON: the library's parser is the only one we have
        raise Unsupported(f"column {col.name!r} is MySQL binary JSON")
    if col.type not in _SUPPORTED:
        raise Unsupported(f"column {col.name!r} has binlog type {col.type}")
    column_spec(col)  # raises Unsupported now rather than when the first row arrives
    name = codec(col)
    if name is not None:
        try:
            "".encode(name)
        except LookupError:
            raise Unsupported(
                f"column {col.name!r} has charset {name!r} unknown to Python"
            ) from None


_SUPPORTED = frozenset(
    {
        T_TINY, T_SHORT, T_INT24, T_LONG, T_LONGLONG, T_FLOAT, T_DOUBLE, T_NEWDECIMAL,
        T_YEAR, T_DATE, T_NEWDATE, T_TIME, T_TIME2, T_DATETIME, T_DATETIME2, T_TIMESTAMP,
        T_TIMESTAMP2, T_BIT, T_ENUM, T_SET, T_VARCHAR, T_VAR_STRING, T_STRING, T_BLOB,
        T_GEOMETRY,
    }
)  # fmt: skip


class TableMapCache:
    """Parsed TABLE_MAP events by content.

    Keyed by the bytes after the table id, so a table re-mapped under a new id (after a
    rotation or a server restart) reuses its parse, and a changed definition never does.
    """

    def __init__(self, dbms: str, limit: int = 4096) -> None:
        self._dbms = dbms
        self._limit = limit
        self._by_key: dict[bytes, FastTableMap] = {}

    def get(self, event: bytes, start: int, end: int, table_id_size: int) -> FastTableMap:
        key = bytes(event[start + table_id_size + 2 : end])
        tm = self._by_key.get(key)
        table_id = int.from_bytes(event[start : start + table_id_size], "little")
        if tm is None:
            if len(self._by_key) >= self._limit:
                self._by_key.clear()  # many definitions over time: start afresh
            tm = parse_table_map(event, start, end, table_id_size, self._dbms)
            self._by_key[key] = tm
        elif tm.table_id != table_id:
            tm = _with_id(tm, table_id)
            self._by_key[key] = tm
        return tm


def _with_id(tm: FastTableMap, table_id: int) -> FastTableMap:
    return FastTableMap(
        table_id,
        tm.schema,
        tm.table,
        tm.columns,
        tm.null_bitmask,
        tm.optional_metadata,
        tm.cache_key,
        tm.unsupported,
        tm._decoders,
    )


# ------------------------------------------------------------------------ rows events


@dataclass(slots=True)
class FastRows:
    """A WRITE/UPDATE/DELETE_ROWS event, its rows still packed in ``buf[pos:end]``."""

    table_id: int
    op: str  # insert | update | delete
    ncols: int
    present: bytes
    present2: bytes
    buf: bytes
    pos: int
    end: int
    #: the next event's position (set by :class:`FastStream`)
    log_pos: int = 0


def parse_rows_header(
    event: bytes, start: int, end: int, event_type: int, table_id_size: int
) -> FastRows:
    """The header of a rows event whose post-header starts at ``start`` (``end``: before the
    checksum); MariaDB's compressed variants are inflated here."""
    op, v2, compressed = ROWS_EVENTS[event_type]
    table_id = int.from_bytes(event[start : start + table_id_size], "little")
    pos = start + table_id_size + 2  # flags
    if v2:
        extra = event[pos] | event[pos + 1] << 8  # includes its own two bytes
        pos += extra
    ncols, pos = _lenenc(event, pos)
    nb = (ncols + 7) >> 3
    present = bytes(event[pos : pos + nb])
    pos += nb
    present2 = present
    if op == "update":
        present2 = bytes(event[pos : pos + nb])
        pos += nb
    if compressed:
        event, pos, end = _inflate(event, pos, end)
    return FastRows(table_id, op, ncols, present, present2, event, pos, end)


def _inflate(event: bytes, pos: int, end: int) -> tuple[bytes, int, int]:
    """MariaDB ``log_bin_compress``: where the row images start, one byte (0x80, the
    algorithm in bits 4-6 with 0 = zlib, the byte count of the length in bits 0-2), the
    big-endian inflated length, then the zlib stream of the images."""
    head = event[pos]
    if head & 0xF0 != 0x80 or not 1 <= head & 7 <= 4:
        raise Unsupported(f"compressed rows event with an unknown header byte {head:#x}")
    nlen = head & 7
    size = int.from_bytes(event[pos + 1 : pos + 1 + nlen], "big")
    data = zlib.decompress(event[pos + 1 + nlen : end])
    if len(data) != size:
        raise Unsupported(f"compressed rows event inflated to {len(data)} bytes, not {size}")
    return data, 0, len(data)


# ------------------------------------------------------------------------ row decoders

Image = Callable[[bytes, int], tuple[Row, int]]


class RowDecoder:
    """Decodes the row images of one table definition.

    :meth:`rows` returns ``(before, after)`` pairs; images hold the present columns only, in
    table order, NULL as ``None`` — exactly what the library path builds.
    """

    def __init__(
        self, columns: list[FastColumn], names: tuple[str, ...], hints: ColumnHints
    ) -> None:
        self.names = names
        self.specs = [column_spec(c, hints.kind(c.name)) for c in columns]
        # per columns-present bitmap: (present column indexes, NULL-bitmap size, patterns)
        self._layouts: dict[bytes, tuple[list[int], int, dict[bytes, Image]]] = {}

    def rows(self, ev: FastRows) -> list[tuple[Row | None, Row | None]]:
        """Every row of ``ev`` as (before, after): inserts have no before, deletes no after."""
        buf, pos, end = ev.buf, ev.pos, ev.end
        present, nbytes, patterns = self._layout(ev.present, ev.ncols)
        out: list[tuple[Row | None, Row | None]] = []
        append = out.append
        get = patterns.get
        if ev.op == "update":
            present2, nbytes2, patterns2 = self._layout(ev.present2, ev.ncols)
            get2 = patterns2.get
            while pos < end:
                nulls = buf[pos : pos + nbytes]
                image = get(nulls) or self._compile(present, nulls, patterns)
                before, pos = image(buf, pos + nbytes)
                nulls = buf[pos : pos + nbytes2]
                image = get2(nulls) or self._compile(present2, nulls, patterns2)
                after, pos = image(buf, pos + nbytes2)
                append((before, after))
            return out
        insert = ev.op == "insert"
        while pos < end:
            nulls = buf[pos : pos + nbytes]
            image = get(nulls) or self._compile(present, nulls, patterns)
            row, pos = image(buf, pos + nbytes)
            append((None, row) if insert else (row, None))
        return out

    def _layout(self, bitmap: Bytes, ncols: int) -> tuple[list[int], int, dict[bytes, Image]]:
        layout = self._layouts.get(bitmap)
        if layout is None:
            if ncols != len(self.specs):
                raise Unsupported(
                    f"rows event has {ncols} columns, its table map {len(self.specs)}"
                )
            present = [i for i in range(ncols) if bitmap[i >> 3] >> (i & 7) & 1]
            layout = self._layouts[bitmap] = (present, (len(present) + 7) >> 3, {})
        return layout

    def _compile(self, present: list[int], nulls: Bytes, patterns: dict[bytes, Image]) -> Image:
        non_null = [i for j, i in enumerate(present) if not nulls[j >> 3] >> (j & 7) & 1]
        if len(patterns) >= MAX_PATTERNS:
            return self._interpreted(present, set(non_null))
        image = _compile_image(self.specs, self.names, present, set(non_null))
        patterns[bytes(nulls)] = image
        return image

    def _interpreted(self, present: list[int], non_null: set[int]) -> Image:
        """The uncompiled decoder for one NULL pattern (too many patterns to compile each)."""
        steps: list[tuple[str, Any, int, Convert | None, int]] = []
        for i in present:
            spec = self.specs[i]
            if i not in non_null:
                steps.append((self.names[i], None, 0, None, 0))
            elif spec.fmt:
                st = struct.Struct("<" + spec.fmt)
                steps.append((self.names[i], st.unpack_from, st.size, spec.conv, 0))
            else:
                steps.append((self.names[i], None, 0, spec.conv, spec.prefix))

        def image(buf: bytes, pos: int) -> tuple[Row, int]:
            row: Row = {}
            for name, unpack, size, conv, prefix in steps:
                if unpack is not None:
                    value = unpack(buf, pos)[0]
                    pos += size
                    row[name] = conv(value) if conv is not None else value
                elif prefix:
                    n = int.from_bytes(buf[pos : pos + prefix], "little")
                    pos += prefix
                    raw = buf[pos : pos + n]
                    pos += n
                    row[name] = conv(raw) if conv is not None else raw
                else:
                    row[name] = None
            return row, pos

        return image


def _compile_image(
    specs: list[Spec], names: tuple[str, ...], present: list[int], non_null: set[int]
) -> Image:
    """Generate the straight-line decoder of one (present columns, NULL pattern).

    Consecutive fixed-width values become one ``struct`` unpack; each length-prefixed value
    is sliced inline; conversions are closures bound by name. Column names never enter the
    generated source (they are bound as ``_k<i>``), so any name is safe.
    """
    env: dict[str, Any] = {}
    lines = ["def image(buf, pos):"]
    values: list[str] = []
    run_fmt: list[str] = []
    run_vars: list[str] = []

    def flush() -> None:
        if not run_fmt:
            return
        st = struct.Struct("<" + "".join(run_fmt))
        sname = f"_s{len(env)}"
        env[sname] = st.unpack_from
        lines.append(f"    {', '.join(run_vars)}, = {sname}(buf, pos)")
        lines.append(f"    pos += {st.size}")
        run_fmt.clear()
        run_vars.clear()

    for i in present:
        key = f"_k{i}"
        env[key] = names[i]
        if i not in non_null:
            values.append(f"{key}: None")
            continue
        spec = specs[i]
        var = f"v{i}"
        if spec.fmt:
            run_fmt.append(spec.fmt)
            run_vars.append(var)
        else:
            flush()
            p = spec.prefix
            if p == 1:
                lines.append("    n = buf[pos]")
            elif p == 2:
                lines.append("    n = buf[pos] | buf[pos + 1] << 8")
            else:
                lines.append(f"    n = int.from_bytes(buf[pos : pos + {p}], 'little')")
            lines.append(f"    pos += {p} + n")
            lines.append(f"    {var} = buf[pos - n : pos]")
        if spec.conv is not None:
            env[f"_c{i}"] = spec.conv
            values.append(f"{key}: _c{i}({var})")
        else:
            values.append(f"{key}: {var}")
    flush()
    lines.append(f"    return {{{', '.join(values)}}}, pos")
    source = "\n".join(lines)
    namespace: dict[str, Any] = {}
    exec(compile(source, "<redoline fastrows image>", "exec"), env, namespace)
    image: Image = namespace["image"]
    return image
