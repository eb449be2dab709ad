"""Byte layout of trail segments: header, block frames, trailer, names, keys.

Everything here is pure: bytes in, parsed structures or :class:`TrailError` out. The layout
is documented field by field in docs/trail-format.md; keep the two in step.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import crc32c as _crc32c
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from connectors.errors import TrailError

__all__ = [
    "BLOCK_CATALOG",
    "BLOCK_CONT_NEXT",
    "BLOCK_CONT_PREV",
    "BLOCK_HAS_DDL",
    "BLOCK_MAGIC",
    "FORMAT_VERSION",
    "FRAME",
    "FRAME_SIZE",
    "HEADER_ENCRYPTED",
    "HEADER_ROW_IDS",
    "READABLE_VERSIONS",
    "SEGMENT_MAGIC",
    "TRAILER_MAGIC",
    "BlockCipher",
    "Frame",
    "SegmentHeader",
    "SegmentTrailer",
    "crc32c",
    "encode_frame",
    "encode_header",
    "encode_trailer",
    "key_check",
    "list_segment_files",
    "open_name",
    "parse_frame",
    "parse_header",
    "parse_trailer",
    "sealed_name",
]

SEGMENT_MAGIC: Final = b"RDLT"
BLOCK_MAGIC: Final = b"RDLB"
TRAILER_MAGIC: Final = b"RDLS"
FORMAT_VERSION: Final = 2
#: versions this code reads: 1 lacks the trail identity and the source description
READABLE_VERSIONS: Final = (1, 2)

#: header flag: every block payload is AES-256-GCM encrypted
HEADER_ENCRYPTED: Final = 0x0001
#: header flag: the source's changes carry row ids (Oracle ROWID, SQL Server locator)
HEADER_ROW_IDS: Final = 0x0002

#: block flags
BLOCK_CONT_NEXT: Final = 0x01  # the block's last transaction continues in the next block
BLOCK_CONT_PREV: Final = 0x02  # the block starts with changes of a transaction begun earlier
BLOCK_CATALOG: Final = 0x04  # the payload is the table catalog at the start of the segment
BLOCK_HAS_DDL: Final = 0x08  # the payload holds at least one DDL change

# magic, version, flags, header length, sequence, first op, created (unix µs), key check
_HEADER_FIXED: Final = struct.Struct("<4sHHIQQq8s")
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
# magic, flags, stored length, raw length, last op   (the CRC32C follows as u32)
FRAME: Final = struct.Struct("<4sB3xIIQ")
FRAME_SIZE: Final = FRAME.size + 4
# magic, txn count, change count, block count, raw bytes, first op, last op
_TRAILER_FIXED: Final = struct.Struct("<4s4xQQQQQQ")
_AAD: Final = struct.Struct("<QQ")

_NAME = re.compile(r"^(\d{10})\.(seg|open)$")

crc32c = _crc32c.crc32c


def sealed_name(seq: int) -> str:
    """File name of sealed segment ``seq``."""
    return f"{seq:010d}.seg"


def open_name(seq: int) -> str:
    """File name of the open (still growing) segment ``seq``."""
    return f"{seq:010d}.open"


def list_segment_files(directory: Path) -> dict[int, tuple[Path, bool]]:
    """Segment files by sequence: ``{seq: (path, sealed)}``. Other files are ignored."""
    found: dict[int, tuple[Path, bool]] = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return found
    for name in names:
        m = _NAME.match(name)
        if not m:
            continue
        seq = int(m.group(1))
        if seq in found:
            raise TrailError(
                "both a sealed and an open file exist for this sequence number",
                segment=name,
                hint="keep the .seg file if its trailer verifies (`redoline trail check`)",
            )
        found[seq] = (directory / name, m.group(2) == "seg")
    return dict(sorted(found.items()))


def key_check(key: bytes) -> bytes:
    """8 bytes stored in the header so a wrong key is named as such, not as corruption."""
    return hashlib.sha256(b"redoline trail key check\x00" + key).digest()[:8]


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """The fixed header at offset 0 of every segment."""

    version: int
    flags: int
    sequence: int
    first_op: int
    created_us: int
    key_check: bytes
    source_id: str
    first_position: str
    size: int
    #: the trail's identity (version 2; "" in version 1)
    trail_id: str = ""
    #: the source: connector engine name, sqlglot dialect, position scheme (version 2)
    source_engine: str = ""
    source_dialect: str = ""
    position_scheme: str = ""

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & HEADER_ENCRYPTED)

    @property
    def row_ids(self) -> bool:
        return bool(self.flags & HEADER_ROW_IDS)


def _short_text(text: str, what: str) -> bytes:
    raw = text.encode()
    if len(raw) > 0xFFFF:
        raise TrailError(f"{what} is longer than 65535 bytes: {text[:60]!r}...")
    return raw


def encode_header(
    *,
    sequence: int,
    first_op: int,
    source_id: str,
    first_position: str,
    created_us: int,
    key: bytes | None,
    trail_id: str = "",
    source_engine: str = "",
    source_dialect: str = "",
    position_scheme: str = "",
    row_ids: bool = False,
) -> bytes:
    """The bytes of a segment header (its CRC32C included)."""
    texts = [
        _short_text(source_id, "source id"),
        _short_text(first_position, "position"),
        _short_text(trail_id, "trail id"),
        _short_text(source_engine, "source engine"),
        _short_text(source_dialect, "source dialect"),
        _short_text(position_scheme, "position scheme"),
    ]
    size = _HEADER_FIXED.size + sum(2 + len(t) for t in texts) + 4
    fixed = _HEADER_FIXED.pack(
        SEGMENT_MAGIC,
        FORMAT_VERSION,
        (HEADER_ENCRYPTED if key else 0) | (HEADER_ROW_IDS if row_ids else 0),
        size,
        sequence,
        first_op,
        created_us,
        key_check(key) if key else bytes(8),
    )
    body = fixed + b"".join(_U16.pack(len(t)) + t for t in texts)
    return body + _U32.pack(crc32c(body))


def parse_header(data: bytes | bytearray, name: str) -> SegmentHeader | None:
    """Parse a header from the start of ``data``; None when ``data`` is too short to hold it."""
    if len(data) < 12:
        return None
    if data[:4] != SEGMENT_MAGIC:
        raise TrailError("not a redoline trail segment (bad magic)", segment=name, offset=0)
    version, _flags, size = struct.unpack_from("<HHI", data, 4)
    if version not in READABLE_VERSIONS:
        raise TrailError(
            f"unknown trail format version {version} (this redoline reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))})",
            segment=name,
            offset=4,
            hint="upgrade redoline on this host",
        )
    if size < _HEADER_FIXED.size + 8 or size > 1 << 20:
        raise TrailError(f"implausible header length {size}", segment=name, offset=8)
    if len(data) < size:
        return None
    (stored_crc,) = _U32.unpack_from(data, size - 4)
    if crc32c(bytes(data[: size - 4])) != stored_crc:
        raise TrailError("segment header CRC mismatch", segment=name, offset=0)
    _, version, flags, size, seq, first_op, created, check = _HEADER_FIXED.unpack_from(data, 0)
    at = _HEADER_FIXED.size
    texts = []
    # version 1: source id, first position; version 2 adds the trail id and the source
    for _ in range(2 if version == 1 else 6):
        (n,) = _U16.unpack_from(data, at)
        if at + 2 + n > size - 4:
            raise TrailError("segment header fields overrun its length", segment=name, offset=at)
        texts.append(bytes(data[at + 2 : at + 2 + n]).decode())
        at += 2 + n
    texts += [""] * (6 - len(texts))
    return SegmentHeader(
        version,
        flags,
        seq,
        first_op,
        created,
        check,
        texts[0],
        texts[1],
        size,
        trail_id=texts[2],
        source_engine=texts[3],
        source_dialect=texts[4],
        position_scheme=texts[5],
    )


@dataclass(frozen=True, slots=True)
class Frame:
    """A parsed block frame; ``payload`` is still compressed (and encrypted)."""

    offset: int
    flags: int
    raw_len: int
    last_op: int
    header: bytes
    payload: bytes

    @property
    def end(self) -> int:
        return self.offset + FRAME_SIZE + len(self.payload)


def parse_frame(data: bytes | bytearray | memoryview, at: int, base: int, name: str) -> Frame | str:
    """Parse the block frame at ``data[at:]`` (``base + at`` is its file offset).

    Returns the frame, or a reason string when it cannot be parsed: ``"short"`` (not all of
    it is there yet), ``"trailer"`` (the segment's trailer starts here), ``"magic"`` or
    ``"crc"``. The caller decides whether that is a torn tail or corruption.
    """
    if len(data) - at < FRAME_SIZE:
        head = bytes(data[at : at + 4])
        if head == TRAILER_MAGIC:
            return "trailer"
        if BLOCK_MAGIC.startswith(head) or TRAILER_MAGIC.startswith(head):
            return "short"
        return "magic"
    magic, flags, stored, raw_len, last_op = FRAME.unpack_from(data, at)
    if magic != BLOCK_MAGIC:
        return "trailer" if magic == TRAILER_MAGIC else "magic"
    end = at + FRAME_SIZE + stored
    if end > len(data):
        return "short"
    header = bytes(data[at : at + FRAME.size])
    (stored_crc,) = _U32.unpack_from(data, at + FRAME.size)
    payload = bytes(data[at + FRAME_SIZE : end])
    if crc32c(payload, crc32c(header)) != stored_crc:
        return "crc"
    return Frame(base + at, flags, raw_len, last_op, header, payload)


def encode_frame(
    flags: int,
    raw_len: int,
    last_op: int,
    body: bytes,
    cipher: BlockCipher | None,
    seq: int,
    offset: int,
) -> bytes:
    """A complete block frame around the compressed ``body`` (encrypted when ``cipher``)."""
    if cipher is not None:
        stored = len(body) + cipher.OVERHEAD
        header = FRAME.pack(BLOCK_MAGIC, flags, stored, raw_len, last_op)
        payload = cipher.encrypt(body, seq, offset, header)
    else:
        header = FRAME.pack(BLOCK_MAGIC, flags, len(body), raw_len, last_op)
        payload = body
    return header + _U32.pack(crc32c(payload, crc32c(header))) + payload


class BlockCipher:
    """AES-256-GCM for block payloads: 12-byte random nonce, then ciphertext and 16-byte tag.

    The associated data binds each block to its segment sequence, its file offset and its
    frame header, so a block cannot be moved to another place undetected.
    """

    OVERHEAD: Final = 12 + 16

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise TrailError(f"an AES-256 key is 32 bytes, this one is {len(key)}")
        self._aead = AESGCM(key)

    def encrypt(self, body: bytes, seq: int, offset: int, header: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, body, _AAD.pack(seq, offset) + header)

    def decrypt(self, payload: bytes, seq: int, offset: int, header: bytes, name: str) -> bytes:
        try:
            return self._aead.decrypt(payload[:12], payload[12:], _AAD.pack(seq, offset) + header)
        except InvalidTag:
            raise TrailError(
                "block failed AES-GCM authentication (wrong key, or the block was altered)",
                segment=name,
                offset=offset,
            ) from None


@dataclass(frozen=True, slots=True)
class SegmentTrailer:
    """The trailer written when a segment is sealed."""

    txn_count: int
    change_count: int
    block_count: int
    raw_bytes: int
    first_op: int
    last_op: int
    last_position: str
    first_commit_time: str
    last_commit_time: str
    digest: bytes
    offset: int
    size: int


def encode_trailer(
    *,
    txn_count: int,
    change_count: int,
    block_count: int,
    raw_bytes: int,
    first_op: int,
    last_op: int,
    last_position: str,
    first_commit_time: str,
    last_commit_time: str,
    digest: bytes,
) -> bytes:
    """The bytes of a trailer; ``digest`` is the SHA-256 of every byte before it."""
    fixed = _TRAILER_FIXED.pack(
        TRAILER_MAGIC, txn_count, change_count, block_count, raw_bytes, first_op, last_op
    )
    parts = [fixed]
    for text in (last_position, first_commit_time, last_commit_time):
        raw = _short_text(text, "position")
        parts += [_U16.pack(len(raw)), raw]
    parts.append(digest)
    body = b"".join(parts)
    size = len(body) + 8
    body += _U32.pack(size)
    return body + _U32.pack(crc32c(body))


def parse_trailer(data: bytes | bytearray | memoryview, name: str) -> SegmentTrailer:
    """Parse the trailer at the end of a sealed segment's bytes (not its digest check)."""
    end = len(data)
    if end < 8:
        raise TrailError("sealed segment is too short for a trailer", segment=name, offset=0)
    (size,) = _U32.unpack_from(data, end - 8)
    start = end - size
    if (
        size < _TRAILER_FIXED.size + 6 + 32 + 8
        or start < 0
        or data[start : start + 4] != (TRAILER_MAGIC)
    ):
        raise TrailError(
            "sealed segment has no valid trailer (truncated or overwritten)",
            segment=name,
            offset=max(start, 0),
        )
    (stored_crc,) = _U32.unpack_from(data, end - 4)
    if crc32c(bytes(data[start : end - 4])) != stored_crc:
        raise TrailError("segment trailer CRC mismatch", segment=name, offset=start)
    _, txns, changes, blocks, raw, first_op, last_op = _TRAILER_FIXED.unpack_from(data, start)
    at = start + _TRAILER_FIXED.size
    texts = []
    for _ in range(3):
        (n,) = _U16.unpack_from(data, at)
        texts.append(bytes(data[at + 2 : at + 2 + n]).decode())
        at += 2 + n
    digest = bytes(data[at : at + 32])
    return SegmentTrailer(
        txns,
        changes,
        blocks,
        raw,
        first_op,
        last_op,
        texts[0],
        texts[1],
        texts[2],
        digest,
        start,
        size,
    )
