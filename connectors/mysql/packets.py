"""The fast path's transport: binlog packets read straight off the replication connection
(:class:`PacketReader`) and cut into the events the reader needs (:class:`FastStream`): table
maps and rows events for :mod:`connectors.mysql.fastrows`, and the two framing events of every
transaction; anything else is handed to mysql-replication's parser.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import pymysql
import pymysql.connections

from connectors.mysql.errors import connection_lost
from connectors.mysql.fastrows import (
    ROWS_EVENTS,
    TABLE_MAP,
    FastRows,
    FastTableMap,
    TableMapCache,
    parse_rows_header,
)

__all__ = [
    "FastGtid",
    "FastMap",
    "FastStream",
    "FastXid",
    "PacketReader",
    "StreamConnection",
    "StreamLost",
    "stream_connect",
]

log = logging.getLogger("redoline.capture.mysql")

_MysqlPacket: Any = pymysql.connections.MysqlPacket  # type: ignore[attr-defined]


class StreamLost(Exception):
    """The replication connection dropped (kept out of the library's own silent reconnect)."""


class StreamConnection(pymysql.connections.Connection):
    """A pymysql connection whose lost-connection errors escape mysql-replication.

    The library reconnects by itself on errors 2006/2013 — from its *original* start position
    when it was opened with a GTID, which would feed capture duplicates. We surface the loss
    instead; capture reopens the log from the trail's durable position.
    """

    def _read_packet(self, packet_type: Any = _MysqlPacket) -> Any:
        try:
            return super()._read_packet(packet_type)
        except pymysql.err.OperationalError as exc:
            if connection_lost(exc):
                raise StreamLost(str(exc.args[-1])) from exc
            raise


def stream_connect(**kwargs: Any) -> StreamConnection:
    """mysql-replication's ``pymysql_wrapper``: a :class:`StreamConnection`."""
    # the library passes pymysql's deprecated spellings, which warn
    if "db" in kwargs:
        kwargs.setdefault("database", kwargs.pop("db"))
    if "passwd" in kwargs:
        kwargs.setdefault("password", kwargs.pop("passwd"))
    return StreamConnection(**kwargs)


# ------------------------------------------------------------------------ the event stream


XID: Final = 16
MARIADB_GTID: Final = 162
_U32_AT = struct.Struct("<I").unpack_from
_GTID_BODY = struct.Struct("<QIB").unpack_from  # MariaDB GTID: seq_no, domain_id, flags


@dataclass(slots=True)
class FastXid:
    """An XID event (a transaction's commit), read here: one per transaction, and the
    library's packet wrapper costs as much as decoding a few rows. Fields as the library's."""

    log_pos: int
    timestamp: int


@dataclass(slots=True)
class FastGtid:
    """A MariaDB GTID event (a transaction's start), read here like :class:`FastXid`.
    Fields as the library's ``MariadbGtidEvent``."""

    log_pos: int
    server_id: int
    gtid_seq_no: int
    domain_id: int
    flags: int

    @property
    def gtid(self) -> str:
        return f"{self.domain_id}-{self.server_id}-{self.gtid_seq_no}"


@dataclass(slots=True)
class FastMap:
    """A TABLE_MAP event the fast path decoded (``log_pos``: the next event's position)."""

    log_pos: int
    table_map: FastTableMap


class FastStream:
    """A BinLogStreamReader's events, with TABLE_MAP and ROWS events decoded here.

    The library keeps the connection (it opens it on the first :meth:`__iter__` step), the
    dump protocol and every other event: a packet that is not ours is pushed back and the
    library's own ``fetchone`` reads it, so rotation, format description, heartbeats and MySQL
    GTID bookkeeping stay exactly the library's. Yields the library's events, :class:`FastMap`,
    :class:`FastRows`, and the two framing events of every transaction, :class:`FastXid` and
    (MariaDB) :class:`FastGtid`.

    A table the fast path cannot decode (:attr:`FastTableMap.unsupported`) goes to the library
    whole — table map and rows — and is logged once with the reason.

    The stream must be opened without the library's table filters (``only_schemas`` ...): a
    filtered event makes the library read further packets itself, and a rows event whose
    table map it never saw would be dropped by it silently. The reader filters instead.
    """

    def __init__(self, stream: Any, dbms: str) -> None:
        self._stream = stream
        self._mariadb = dbms == "mariadb"
        self._maps = TableMapCache(dbms)
        #: table id -> its table map, for tables whose latest map went the fast way
        self._fast: dict[int, FastTableMap] = {}
        self._pending: Any = None
        self._packets: PacketReader | None = None
        self._checksum = 4
        self._table_id_size = 6
        self._described = False
        self._refused: set[tuple[str, str, str]] = set()

    def __iter__(self) -> Iterator[Any]:
        stream = self._stream
        first = stream.fetchone()  # the library connects and starts the dump
        if first is None:
            return
        yield first
        conn = stream._stream_connection
        packets = self._packets = PacketReader(conn)
        # the library reads through this hook: first the packet we pushed back, else the socket
        # (through our reader too: it holds bytes the connection's own reader never saw)
        conn._read_packet = self._library_read
        read = packets.read
        fast, maps = self._fast, self._maps
        while True:
            data = read()
            etype = data[5] if len(data) > 19 and data[0] == 0 else -1
            if etype in ROWS_EVENTS and self._described:
                table_id = int.from_bytes(data[20 : 20 + self._table_id_size], "little")
                if table_id in fast:
                    end = len(data) - self._checksum
                    rows = parse_rows_header(data, 20, end, etype, self._table_id_size)
                    yield _with_pos(rows, data)
                    continue
            elif etype == TABLE_MAP and self._described:
                end = len(data) - self._checksum
                tm = maps.get(data, 20, end, self._table_id_size)
                if tm.unsupported is None:
                    fast[tm.table_id] = tm
                    yield FastMap(int.from_bytes(data[14:18], "little"), tm)
                    continue
                fast.pop(tm.table_id, None)
                self._refuse(tm)
            elif etype == XID and self._described:
                yield FastXid(int.from_bytes(data[14:18], "little"), _U32_AT(data, 1)[0])
                continue
            elif etype == MARIADB_GTID and self._described and self._mariadb:
                seq_no, domain_id, flags = _GTID_BODY(data, 20)
                yield FastGtid(
                    int.from_bytes(data[14:18], "little"),
                    _U32_AT(data, 6)[0],
                    seq_no,
                    domain_id,
                    flags,
                )
                continue
            elif etype == 15:
                self._describe(data)
            self._pending = packets.packet(data)
            ev = stream.fetchone()
            if ev is None:
                return
            if type(ev).__name__ == "TableMapEvent":
                fast.pop(ev.table_id, None)
            yield ev

    def _library_read(self, packet_type: Any = None) -> Any:
        pkt = self._pending
        if pkt is not None:
            self._pending = None
            return pkt
        # The library skipped an event and reads on by itself. Harmless unless it swallows a
        # rows event of a table we decode: refuse loudly rather than lose rows.
        assert self._packets is not None
        data = self._packets.read()
        if len(data) > 19 and data[0] == 0:
            etype = data[5]
            table_id = int.from_bytes(data[20 : 20 + self._table_id_size], "little")
            if etype == TABLE_MAP:
                self._fast.pop(table_id, None)
            elif etype in ROWS_EVENTS and table_id in self._fast:
                from connectors.errors import ReplicationError

                raise ReplicationError(
                    "the binlog library skipped ahead over a row event of a captured table",
                    hint='run capture with decoder = "library" and report this',
                )
        return self._packets.packet(data)

    def _describe(self, data: bytes) -> None:
        """Checksum and table-id width from a FORMAT_DESCRIPTION event (before its checksum:
        the algorithm byte, 0 = none, 1 = CRC32; post-header lengths from offset 20+57)."""
        alg = data[-5]
        self._checksum = 4 if alg == 1 else 0
        post = data[20 + 57 : len(data) - 5]
        if len(post) >= TABLE_MAP:
            self._table_id_size = 4 if post[TABLE_MAP - 1] == 6 else 6
        self._described = alg in (0, 1)

    def _refuse(self, tm: FastTableMap) -> None:
        key = (tm.schema, tm.table, tm.unsupported or "")
        if key not in self._refused:
            self._refused.add(key)
            log.warning(
                "fast decoder: %s.%s is decoded by mysql-replication instead (%s)",
                tm.schema,
                tm.table,
                tm.unsupported,
            )


_MAX_PACKET: Final = 0xFFFFFF
_CHUNK: Final = 1 << 18


class PacketReader:
    """MySQL protocol packets of a dump connection, straight from its buffered socket.

    pymysql's ``_read_packet`` costs about 3 µs a packet in Python (two buffered reads, a
    struct unpack, a packet object, an error check), as much as decoding a small row. This
    reads the socket in large chunks and slices each packet's payload out of the chunk, so a
    packet costs a few bytecodes and one copy. Same checks as pymysql: the sequence number, a
    lost connection or timeout (``OperationalError`` 2013, which the reader reports as a lost
    binlog connection), an error packet raised as pymysql raises it, and payloads of 16 MiB
    or more continued in the next packets. Once it has read, every read of the connection
    must come through it (it holds bytes the connection's own reader never saw).
    """

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._rfile = conn._rfile
        self._seq: int = conn._next_seq_id
        self._buf = b""
        self._pos = 0
        self._packet_type: Any = pymysql.connections.MysqlPacket  # type: ignore[attr-defined]
        self._encoding: str = conn.encoding

    def read(self) -> bytes:
        """The next packet's payload (the dump stream's first byte: 0 OK, 0xFE EOF)."""
        buf, pos = self._buf, self._pos
        head = pos + 4
        if head <= len(buf):
            n = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            end = head + n
            if end <= len(buf) and buf[pos + 3] == self._seq and n < _MAX_PACKET:
                self._pos = end
                self._seq = (self._seq + 1) & 0xFF
                data = buf[head:end]
                if data and data[0] == 0xFF:
                    self.packet(data).raise_for_error()
                return data
        return self._read_slow()

    def packet(self, data: bytes) -> Any:
        """``data`` as the pymysql packet object the library expects."""
        return self._packet_type(data, self._encoding)

    def _read_slow(self) -> bytes:
        parts = []
        while True:
            header = self._take(4)
            n = header[0] | header[1] << 8 | header[2] << 16
            if header[3] != self._seq:
                self._conn._force_close()
                if header[3] == 0:  # MariaDB sends its shutdown error with sequence 0
                    raise pymysql.err.OperationalError(
                        2013, "Lost connection to MySQL server during query"
                    )
                raise pymysql.err.InternalError(
                    f"Packet sequence number wrong - got {header[3]} expected {self._seq}"
                )
            self._seq = (self._seq + 1) & 0xFF
            parts.append(self._take(n))
            if n < _MAX_PACKET:
                break
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if data and data[0] == 0xFF:
            self.packet(data).raise_for_error()
        return data

    def _take(self, n: int) -> bytes:
        """``n`` bytes: what the chunk holds, then from the socket (a large payload is read
        to its exact size, never by growing the chunk)."""
        buf, pos = self._buf, self._pos
        have = len(buf) - pos
        if have >= n:
            self._pos = pos + n
            return buf[pos : pos + n]
        out = buf[pos:]
        self._buf, self._pos = b"", 0
        need = n - have
        if need >= _CHUNK:
            return out + self._recv(need, exact=True)
        chunk = self._recv(need, exact=False)
        while len(chunk) < need:
            chunk += self._recv(need - len(chunk), exact=False)
        self._buf, self._pos = chunk, need
        return out + chunk[:need]

    def _recv(self, n: int, *, exact: bool) -> bytes:
        while True:
            try:
                # read1: what one receive brings (up to a chunk), without waiting for more
                data = self._rfile.read(n) if exact else self._rfile.read1(max(n, _CHUNK))
                break
            except InterruptedError:
                continue
            except OSError as exc:
                self._conn._force_close()
                raise pymysql.err.OperationalError(
                    2013, f"Lost connection to MySQL server during query ({exc})"
                ) from None
            except BaseException:
                self._conn._force_close()
                raise
        if not data or (exact and len(data) < n):
            self._conn._force_close()
            raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")
        return data


def _with_pos(rows: FastRows, data: bytes) -> FastRows:
    rows.log_pos = int.from_bytes(data[14:18], "little")
    return rows
