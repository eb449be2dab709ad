"""Reading one segment: frames, block payloads, transactions, continuity.

Shared by the reader, the writer's recovery, ``trail check`` and ``trail_info``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import zstandard

from capture import codec
from capture.trail._format import (
    BLOCK_CATALOG,
    BLOCK_CONT_NEXT,
    BLOCK_CONT_PREV,
    BLOCK_HAS_DDL,
    FRAME,
    FRAME_SIZE,
    BlockCipher,
    Frame,
    SegmentHeader,
    SegmentTrailer,
    key_check,
    parse_frame,
    parse_header,
    parse_trailer,
)
from connectors.errors import TrailError
from connectors.model import Op, TableId, TableSchema, Transaction

__all__ = [
    "BlockDecoder",
    "ParsedSegment",
    "TxnBuilder",
    "parse_segment",
    "tail_is_torn",
]


@dataclass(slots=True)
class ParsedSegment:
    """A segment's bytes split into header, valid frames, and what ends them."""

    name: str
    header: SegmentHeader
    frames: list[Frame]
    #: offset just past the last valid frame (where a torn tail starts, or the trailer)
    end: int
    #: offset just past the last frame that ends a transaction (not flagged CONT_NEXT)
    txn_end: int
    #: why frame parsing stopped: "end", "short", "trailer", "magic", "crc"
    stop: str
    trailer: SegmentTrailer | None = None
    digest_ok: bool = False
    size: int = 0
    raw_bytes: int = field(default=0)


def parse_segment(data: bytes, name: str, *, sealed: bool) -> ParsedSegment:
    """Parse a whole segment held in memory.

    For a sealed segment everything is verified (trailer CRC, SHA-256 of the body, frames
    exactly up to the trailer) and any defect raises :class:`TrailError`. For an open segment
    parsing stops at the first frame that is incomplete or invalid; the caller decides whether
    that is a torn tail (``stop`` and ``end`` say where).
    """
    header = parse_header(data, name)
    if header is None:
        raise TrailError("segment header is incomplete", segment=name, offset=0)
    limit = len(data)
    trailer = None
    if sealed:
        trailer = parse_trailer(data, name)
        limit = trailer.offset
        if hashlib.sha256(memoryview(data)[:limit]).digest() != trailer.digest:
            raise TrailError(
                "SHA-256 of the segment body does not match its trailer", segment=name, offset=0
            )
    view = memoryview(data)[:limit]
    frames: list[Frame] = []
    at = header.size
    txn_end = at
    stop = "end"
    raw = 0
    while at < limit:
        frame = parse_frame(view, at, 0, name)
        if isinstance(frame, str):
            stop = frame
            break
        frames.append(frame)
        raw += frame.raw_len
        at = frame.end
        if not frame.flags & BLOCK_CONT_NEXT:
            txn_end = at
    if sealed:
        if stop != "end":
            what = {"crc": "block CRC32C mismatch", "short": "truncated block"}.get(
                stop, "unreadable block frame"
            )
            raise TrailError(f"{what} in a sealed segment", segment=name, offset=at)
        if txn_end != at:
            raise TrailError(
                "sealed segment ends inside a transaction", segment=name, offset=txn_end
            )
    return ParsedSegment(name, header, frames, at, txn_end, stop, trailer, sealed, len(data), raw)


class BlockDecoder:
    """Decrypts, decompresses and unpacks block payloads of one trail."""

    def __init__(self, key: bytes | None) -> None:
        self._key = key
        self._cipher = BlockCipher(key) if key else None
        self._dctx = zstandard.ZstdDecompressor()
        self.changes = codec.ChangeDecoder()

    def check_header(self, header: SegmentHeader, name: str) -> None:
        """Refuse a segment this decoder cannot read (encrypted without key, wrong key)."""
        if header.encrypted:
            if self._key is None:
                raise TrailError(
                    "the trail is encrypted and no key was given",
                    segment=name,
                    hint="pass --key-file or --key-env (the same key capture used)",
                )
            if key_check(self._key) != header.key_check:
                raise TrailError(
                    "wrong encryption key for this trail", segment=name, hint="check --key-file"
                )

    def raw(self, frame: Frame, header: SegmentHeader, name: str) -> bytes:
        """The decompressed payload of ``frame``."""
        payload = frame.payload
        if header.encrypted:
            if self._cipher is None:
                self.check_header(header, name)
            assert self._cipher is not None
            payload = self._cipher.decrypt(
                payload, header.sequence, frame.offset, frame.header, name
            )
        try:
            raw = self._dctx.decompress(payload, max_output_size=frame.raw_len)
        except zstandard.ZstdError as exc:
            raise TrailError(
                f"block does not decompress: {exc}", segment=name, offset=frame.offset
            ) from None
        if len(raw) != frame.raw_len:
            raise TrailError("block length mismatch", segment=name, offset=frame.offset)
        return raw

    def records(self, frame: Frame, header: SegmentHeader, name: str) -> Any:
        """An unpacker positioned on the block's first record."""
        unpacker = codec.make_unpacker()
        unpacker.feed(self.raw(frame, header, name))
        return unpacker

    def catalog(self, frame: Frame, header: SegmentHeader, name: str) -> list[TableSchema]:
        """The table definitions a catalog block carries."""
        try:
            wires = codec.decode_value(self.raw(frame, header, name))
            assert isinstance(wires, list)
            return [codec.schema_from_wire(w) for w in wires]
        except TrailError:
            raise
        except Exception as exc:
            raise TrailError(
                f"catalog block does not decode: {exc}", segment=name, offset=frame.offset
            ) from None


class TxnBuilder:
    """Turns a sequence of blocks back into transactions, checking operation continuity.

    ``expected`` is the operation number the next transaction must start at. ``on_schema`` is
    told about every table definition met (catalog blocks and DDL changes).
    """

    def __init__(
        self,
        decoder: BlockDecoder,
        expected: int,
        on_schema: Callable[[TableId, TableSchema | None], None],
    ) -> None:
        self.decoder = decoder
        self.expected = expected
        self.on_schema = on_schema
        self._txn: Transaction | None = None
        self._remaining = 0
        self._dropping = False

    @property
    def in_transaction(self) -> bool:
        return self._txn is not None

    def skip(self, frame: Frame, header: SegmentHeader, name: str) -> None:
        """Pass over a block without yielding it (its last op is before the start)."""
        if frame.flags & BLOCK_CATALOG:
            self.catalog(frame, header, name)
            return
        if frame.flags & BLOCK_HAS_DDL:
            for record in self.decoder.records(frame, header, name):
                if type(record[0]) is not str and record[0] == 4 and len(record) > 8:
                    change = self.decoder.changes.change(record)
                    self.on_schema(change.table, change.table_schema)
        self._txn = None
        self.expected = frame.last_op + 1
        # the next block may begin with the tail of a transaction we did not keep
        self._dropping = bool(frame.flags & BLOCK_CONT_NEXT)

    def catalog(self, frame: Frame, header: SegmentHeader, name: str) -> None:
        for schema in self.decoder.catalog(frame, header, name):
            self.on_schema(schema.table, schema)

    def feed(self, frame: Frame, header: SegmentHeader, name: str) -> Iterator[Transaction]:
        """Decode one block; yield every transaction it completes."""
        if frame.flags & BLOCK_CATALOG:
            self.catalog(frame, header, name)
            return
        cont_prev = bool(frame.flags & BLOCK_CONT_PREV)
        if cont_prev != (self._txn is not None or self._dropping):
            raise TrailError(
                "block continuation flags do not match its neighbours (a block is missing or "
                "out of order)",
                segment=name,
                offset=frame.offset,
            )
        has_ddl = bool(frame.flags & BLOCK_HAS_DDL)
        change = self.decoder.changes.change
        unpacker = self.decoder.records(frame, header, name)
        last_op = self.expected - 1
        try:
            for record in unpacker:
                if type(record[0]) is str:
                    if self._txn is not None:
                        raise TrailError(
                            "a transaction starts before the previous one ended",
                            segment=name,
                            offset=frame.offset,
                        )
                    # the tail of a transaction before the start ends where the next begins
                    self._dropping = False
                    xid, position, commit_time, origin, first_op, count = record
                    if first_op != self.expected:
                        raise TrailError(
                            f"operation number discontinuity: expected {self.expected}, "
                            f"found {first_op}",
                            segment=name,
                            offset=frame.offset,
                        )
                    txn = Transaction(xid, position, commit_time, origin, [], first_op)
                    self.expected = last_op = first_op + count
                    last_op -= 1
                    if count:
                        txn.changes = [change(r) for r in islice(unpacker, count)]
                        self._remaining = count - len(txn.changes)
                        if self._remaining:
                            self._txn = txn
                            break
                    if has_ddl:
                        self._schemas(txn)
                    yield txn
                elif self._dropping:
                    continue
                elif self._txn is not None:
                    more = [change(r) for r in islice(unpacker, self._remaining - 1)]
                    txn = self._txn
                    txn.changes.append(change(record))
                    txn.changes.extend(more)
                    self._remaining -= 1 + len(more)
                    if self._remaining:
                        break
                    self._txn = None
                    last_op = txn.last_op
                    self._schemas(txn)
                    yield txn
                else:
                    raise TrailError(
                        "change record outside any transaction", segment=name, offset=frame.offset
                    )
        except TrailError:
            raise
        except (ValueError, TypeError, IndexError) as exc:
            raise TrailError(
                f"block payload does not decode: {exc}", segment=name, offset=frame.offset
            ) from None
        if self._dropping and frame.flags & BLOCK_CONT_NEXT:
            # a skipped transaction's tail fills this whole block and goes on in the next
            last_op = frame.last_op
        elif frame.flags & BLOCK_CONT_NEXT:
            self._dropping = False
            if self._txn is None:
                raise TrailError(
                    "block says a transaction continues but none is open",
                    segment=name,
                    offset=frame.offset,
                )
            last_op = self._txn.first_op + len(self._txn.changes) + self._remaining - 1
        elif self._txn is not None:
            self._dropping = False
            raise TrailError(
                "block ends inside a transaction but is not marked as continued",
                segment=name,
                offset=frame.offset,
            )
        if frame.last_op != last_op:
            raise TrailError(
                f"block frame says last operation {frame.last_op}, its content ends at {last_op}",
                segment=name,
                offset=frame.offset,
            )

    def _schemas(self, txn: Transaction) -> None:
        for ch in txn.changes:
            if ch.op is Op.DDL:
                self.on_schema(ch.table, ch.table_schema)


def read_file(path: Path) -> bytes:
    """A segment's bytes (FileNotFoundError passes through: retention may race a reader)."""
    return path.read_bytes()


def tail_is_torn(data: bytes | bytearray | memoryview, at: int, stop: str) -> bool:
    """Whether the unparsable bytes at ``data[at:]`` are a torn write rather than corruption.

    A crash can only leave the *last* write incomplete: a frame whose declared length runs to
    or past the end of the file, a partial trailer, or zero-filled space. Anything followed by
    more data is corruption.
    """
    if stop in ("end", "short", "trailer"):
        return True
    if not bytes(data[at:]).strip(b"\x00"):
        return True
    if stop == "crc":
        stored = FRAME.unpack_from(data, at)[2]
        return at + FRAME_SIZE + stored >= len(data)
    return False
