"""The trail writer: appends committed transactions to numbered, checksummed segments."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import zstandard

from capture import codec
from capture.assembly import SpilledTransaction
from capture.trail._format import (
    BLOCK_CATALOG,
    BLOCK_CONT_NEXT,
    BLOCK_CONT_PREV,
    BLOCK_HAS_DDL,
    BlockCipher,
    encode_frame,
    encode_header,
    encode_trailer,
    key_check,
    list_segment_files,
    open_name,
    parse_header,
    parse_trailer,
    sealed_name,
)
from capture.trail._segment import (
    BlockDecoder,
    ParsedSegment,
    TxnBuilder,
    parse_segment,
    tail_is_torn,
)
from capture.trail._start import START_FILE, TrailStart, fix_trail_start
from connectors.errors import LockedError, TrailError
from connectors.model import Op, TableId, TableSchema, Transaction

__all__ = ["TrailWriter", "fsync_dir"]

DEFAULT_BLOCK_BYTES = 256 * 1024


def fsync_dir(directory: Path) -> None:
    """Make a create/rename/unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _array_header_len(n: int) -> int:
    """Bytes of the MessagePack header of an array of ``n`` elements."""
    return 1 if n < 16 else 3 if n < 0x10000 else 5


class TrailWriter:
    """Appends transactions to a trail directory (DESIGN.md: Trail format).

    Opening recovers the trail: the open segment's torn tail (a block, or a transaction's
    blocks, that a crash left incomplete) is truncated; a seal interrupted before its rename
    is completed. One writer per trail at a time (an exclusive lock; :class:`LockedError`).

    ``last_op`` and ``last_position`` describe the last *appended* transaction; after
    :meth:`flush` (and right after opening) that is also the last durable one, which
    ``durable_op`` always tells.
    """

    def __init__(
        self,
        directory: Path,
        *,
        source_id: str,
        segment_bytes: int = 10_000_000,
        key: bytes | None = None,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        compression_level: int = 3,
        start: TrailStart | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.source_id = source_id
        #: the trail's identity and source description, stamped on every new segment header
        self.start = start
        self.segment_bytes = segment_bytes
        self.block_bytes = max(1024, min(block_bytes, segment_bytes))
        self._key = key
        self._cipher = BlockCipher(key) if key else None
        self._cctx = zstandard.ZstdCompressor(level=compression_level)
        self._packer = codec.make_packer()
        self.last_op = 0
        self.last_position: str | None = None
        self.durable_op = 0
        self._catalog: dict[TableId, TableSchema] = {}
        self._next_seq = 0
        self._fd: int | None = None
        # state of the open segment (see _reset_segment_state)
        self._seq = -1
        self._size = 0
        self._sha = hashlib.sha256()
        self._txns = 0
        self._changes = 0
        self._blocks = 0
        self._raw = 0
        self._first_op: int | None = None
        self._first_time: dt.datetime | None = None
        self._last_time: dt.datetime | None = None
        self._dir_dirty = False
        self._header_trail_id = ""
        self._parts: list[bytes | memoryview] = []
        self._pending_len = 0
        self._pending_flags = 0
        self._pending_last_op = 0
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / "writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise LockedError(
                f"another process is writing the trail {self.directory}",
                hint="stop the other capture first",
            ) from None
        try:
            self._recover()
            if self.start is None:
                self.start = fix_trail_start(self.directory, source_id=source_id)
            if self._header_trail_id and self._header_trail_id != self.start.trail_id:
                raise TrailError(
                    f"the trail's segments belong to trail {self._header_trail_id}, its "
                    f"{START_FILE} to {self.start.trail_id}",
                    hint="the directory mixes two trails: restore the matching "
                    f"{START_FILE} or use a new trail directory",
                )
        except BaseException:
            self._release()
            raise

    # ------------------------------------------------------------------ public API

    def append(self, txn: Transaction | SpilledTransaction) -> None:
        """Append one committed transaction (buffered; durable after :meth:`flush`).

        ``txn.first_op`` 0 means "number it": it becomes ``last_op + 1`` (and is set on the
        object). Any other value must be exactly ``last_op + 1``.
        """
        if self._lock_fd < 0:
            raise TrailError("the trail writer is closed")
        first = txn.first_op or self.last_op + 1
        if first != self.last_op + 1:
            raise TrailError(
                f"transaction {txn.xid} starts at operation {first}, the trail is at "
                f"{self.last_op}: operation numbers must continue without gap or reuse"
            )
        if len(txn.position) > 0x3FFF and len(txn.position.encode()) > 0xFFFF:
            # it would not fit the segment trailer: refuse now, not at seal time
            raise TrailError(f"transaction {txn.xid}: position longer than 65535 bytes")
        if isinstance(txn, SpilledTransaction):
            count = txn.change_count
            changes: Any = txn.iter_changes()
        else:
            count = len(txn.changes)
            changes = txn.changes
        last = first + count - 1
        created = self._fd is None
        if created:
            self._start_segment(first, txn.position)
        snapshot = self._snapshot()
        try:
            ddl = self._encode(txn, first, count, last, changes)
        except BaseException:
            self._restore(snapshot, created)
            raise
        for table, schema in ddl:
            if schema is None:
                self._catalog.pop(table, None)
            else:
                self._catalog[table] = schema
        txn.first_op = first
        self.last_op = last
        self.last_position = txn.position
        self._txns += 1
        self._changes += count
        if self._first_time is None:
            self._first_time = txn.commit_time
        self._last_time = txn.commit_time
        if self._pending_len >= self.block_bytes:
            self._emit(self._pending_flags)
        if self._size + self._pending_len >= self.segment_bytes:
            self.seal()

    def flush(self) -> None:
        """Write what is buffered and fsync: every appended transaction is then durable."""
        if self._fd is None:
            return
        if self._parts:
            self._emit(self._pending_flags)
        os.fsync(self._fd)
        if self._dir_dirty:
            fsync_dir(self.directory)
            self._dir_dirty = False
        self.durable_op = self.last_op

    def seal(self) -> None:
        """Seal the open segment: trailer with SHA-256, fsync, atomic rename to ``.seg``.

        The next append starts a new segment. Sealing with no open segment does nothing.
        """
        if self._fd is None:
            return
        self.flush()
        assert self._first_op is not None and self._first_time is not None
        assert self._last_time is not None and self.last_position is not None
        trailer = encode_trailer(
            txn_count=self._txns,
            change_count=self._changes,
            block_count=self._blocks,
            raw_bytes=self._raw,
            first_op=self._first_op,
            last_op=self.last_op,
            last_position=self.last_position,
            first_commit_time=self._first_time.isoformat(),
            last_commit_time=self._last_time.isoformat(),
            digest=self._sha.digest(),
        )
        _write_all(self._fd, trailer)
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        os.rename(self.directory / open_name(self._seq), self.directory / sealed_name(self._seq))
        fsync_dir(self.directory)
        self._next_seq = self._seq + 1
        self._reset_segment_state()

    def close(self) -> None:
        """Flush and release the trail; the last segment stays open (not sealed)."""
        if self._lock_fd < 0:
            return
        try:
            self.flush()
        finally:
            self._release()

    def __enter__(self) -> TrailWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def catalog(self) -> dict[TableId, TableSchema]:
        """The current table definitions (what the next segment's catalog block will hold)."""
        return dict(self._catalog)

    # ------------------------------------------------------------------ segments

    def _reset_segment_state(self) -> None:
        self._seq = -1
        self._size = 0
        self._sha = hashlib.sha256()
        self._txns = 0
        self._changes = 0
        self._blocks = 0
        self._raw = 0
        self._first_op = None
        self._first_time = None
        self._last_time = None
        self._dir_dirty = False
        self._parts = []
        self._pending_len = 0
        self._pending_flags = 0
        self._pending_last_op = 0

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _start_segment(self, first_op: int, first_position: str) -> None:
        seq = self._next_seq
        ident = self.start
        assert ident is not None  # set in __init__
        header = encode_header(
            sequence=seq,
            first_op=first_op,
            source_id=self.source_id,
            first_position=first_position,
            created_us=time.time_ns() // 1000,
            key=self._key,
            trail_id=ident.trail_id,
            source_engine=ident.source_engine,
            source_dialect=ident.source_dialect,
            position_scheme=ident.position_scheme,
            row_ids=ident.row_ids,
        )
        raw = codec.encode_value([codec.schema_to_wire(s) for s in self._catalog.values()])
        catalog = encode_frame(
            BLOCK_CATALOG,
            len(raw),
            first_op - 1,
            self._cctx.compress(raw),
            self._cipher,
            seq,
            len(header),
        )
        path = self.directory / open_name(seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            _write_all(fd, header + catalog)
        except BaseException:
            os.close(fd)
            path.unlink()
            raise
        self._fd = fd
        self._seq = seq
        self._size = len(header) + len(catalog)
        self._sha.update(header)
        self._sha.update(catalog)
        self._blocks = 1
        self._raw = len(raw)
        self._first_op = first_op
        self._dir_dirty = True
        self._pending_last_op = first_op - 1

    def _encode(
        self, txn: Any, first: int, count: int, last: int, changes: Any
    ) -> list[tuple[TableId, TableSchema | None]]:
        if type(changes) is list:
            # In memory: pack the header and every change as one array in a single C call
            # and keep the bytes after the array's header, which are exactly the records one
            # after the other (about a third of the per-change cost of packing each one).
            encode = codec.encode_change
            records = [codec.txn_header(txn, first, count), *map(encode, changes)]
            packed = self._packer.pack(records)
            body = memoryview(packed)[_array_header_len(len(records)) :]
            size = self._pending_len + len(body)
            if size < self.block_bytes:  # no block boundary inside: else the loop below
                self._parts.append(body)
                flags = self._pending_flags
                ddl = [(c.table, c.table_schema) for c in changes if c.op is Op.DDL]
                if ddl:
                    flags |= BLOCK_HAS_DDL
                self._pending_len = size
                self._pending_flags = flags
                self._pending_last_op = last
                return ddl
        return self._encode_each(txn, first, count, last, changes)

    def _encode_each(
        self, txn: Any, first: int, count: int, last: int, changes: Any
    ) -> list[tuple[TableId, TableSchema | None]]:
        """Encode record by record, cutting blocks where a transaction outgrows one."""
        pack = self._packer.pack
        encode = codec.encode_change
        cap = self.block_bytes
        ddl: list[tuple[TableId, TableSchema | None]] = []
        parts = self._parts
        record = pack(codec.txn_header(txn, first, count))
        parts.append(record)
        size = self._pending_len + len(record)
        flags = self._pending_flags
        seen = 0
        for change in changes:
            if size >= cap:
                # A transaction larger than a block continues in the next one.
                self._pending_len = size
                self._pending_last_op = last
                self._emit(flags | BLOCK_CONT_NEXT)
                parts = self._parts
                size = 0
                flags = BLOCK_CONT_PREV
            record = pack(encode(change))
            parts.append(record)
            size += len(record)
            seen += 1
            if change.op is Op.DDL:
                flags |= BLOCK_HAS_DDL
                ddl.append((change.table, change.table_schema))
        if seen != count:
            raise TrailError(f"transaction {txn.xid} announced {count} changes but yielded {seen}")
        self._pending_len = size
        self._pending_flags = flags
        self._pending_last_op = last
        return ddl

    def _emit(self, flags: int) -> None:
        """Compress (and encrypt) the pending records into one block and write it."""
        assert self._fd is not None
        raw = b"".join(self._parts)
        frame = encode_frame(
            flags,
            len(raw),
            self._pending_last_op,
            self._cctx.compress(raw),
            self._cipher,
            self._seq,
            self._size,
        )
        _write_all(self._fd, frame)
        self._sha.update(frame)
        self._size += len(frame)
        self._blocks += 1
        self._raw += len(raw)
        # a new list (not .clear()): an append that fails can still restore the old one
        self._parts = []
        self._pending_len = 0
        self._pending_flags = 0

    def _snapshot(self) -> tuple[Any, ...]:
        return (
            self._size,
            self._sha.copy(),
            self._blocks,
            self._raw,
            self._parts,
            len(self._parts),
            self._pending_len,
            self._pending_flags,
            self._pending_last_op,
        )

    def _restore(self, snap: tuple[Any, ...], created: bool) -> None:
        """Undo a failed append, so that a half-encoded transaction never reaches the trail."""
        if created:
            assert self._fd is not None
            os.close(self._fd)
            self._fd = None
            (self.directory / open_name(self._seq)).unlink()
            self._reset_segment_state()
            return
        size, sha, blocks, raw, parts, nparts, plen, pflags, plast = snap
        if self._size != size:
            assert self._fd is not None
            os.ftruncate(self._fd, size)
        del parts[nparts:]
        self._size, self._sha, self._blocks, self._raw = size, sha, blocks, raw
        self._parts, self._pending_len = parts, plen
        self._pending_flags, self._pending_last_op = pflags, plast

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> None:
        while True:
            files = list_segment_files(self.directory)
            if not files:
                return
            seq = max(files)
            path, sealed = files[seq]
            data = path.read_bytes()
            if not sealed and self._finish_interrupted_seal(seq, path, data):
                continue
            if not sealed:
                kept = self._cut_torn_tail(seq, path, data)
                if kept is None:
                    continue
                data = kept
            self._adopt(seq, path, data, sealed)
            return

    def _check_header_fields(self, name: str, source_id: str, check: bytes, enc: bool) -> None:
        if source_id != self.source_id:
            raise TrailError(
                f"this trail belongs to source {source_id!r}, not {self.source_id!r}",
                segment=name,
                hint="use a separate trail directory per source",
            )
        if enc and not self._key:
            raise TrailError(
                "the trail is encrypted; the writer needs its key",
                segment=name,
                hint="pass the key capture used (key file or environment variable)",
            )
        if self._key and not enc:
            raise TrailError(
                "the trail is not encrypted but a key was given",
                segment=name,
                hint="encrypt a trail from its start: use a new trail directory",
            )
        if self._key and key_check(self._key) != check:
            raise TrailError("wrong encryption key for this trail", segment=name)

    def _finish_interrupted_seal(self, seq: int, path: Path, data: bytes) -> bool:
        """A crash between writing the trailer and the rename: complete the rename."""
        try:
            trailer = parse_trailer(data, path.name)
        except TrailError:
            return False
        if hashlib.sha256(data[: trailer.offset]).digest() != trailer.digest:
            return False
        os.rename(path, self.directory / sealed_name(seq))
        fsync_dir(self.directory)
        return True

    def _cut_torn_tail(self, seq: int, path: Path, data: bytes) -> bytes | None:
        """Truncate what a crash left half-written; None when nothing of the segment remains."""
        name = path.name
        header = parse_header(data, name)
        if header is None:
            # the segment was being created: nothing in it was ever reported durable
            path.unlink()
            fsync_dir(self.directory)
            return None
        parsed = parse_segment(data, name, sealed=False)
        if not tail_is_torn(data, parsed.end, parsed.stop):
            raise TrailError(
                "corrupt block in the middle of the open segment (not a torn write)",
                segment=name,
                offset=parsed.end,
                hint="run `redoline trail check`; restore the segment from the target host",
            )
        keep = parsed.txn_end
        if keep < len(data):
            with open(path, "r+b") as f:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
            data = data[:keep]
        if not any(not f.flags & BLOCK_CATALOG for f in parsed.frames if f.end <= keep):
            path.unlink()
            fsync_dir(self.directory)
            return None
        return data

    def _adopt(self, seq: int, path: Path, data: bytes, sealed: bool) -> None:
        """Load the state of the last segment: op numbers, position, catalog, counters."""
        name = path.name
        parsed: ParsedSegment = parse_segment(data, name, sealed=sealed)
        header = parsed.header
        self._check_header_fields(name, header.source_id, header.key_check, header.encrypted)
        self._header_trail_id = header.trail_id
        decoder = BlockDecoder(self._key)
        catalog: dict[TableId, TableSchema] = {}

        def on_schema(table: TableId, schema: TableSchema | None) -> None:
            if schema is None:
                catalog.pop(table, None)
            else:
                catalog[table] = schema

        builder = TxnBuilder(decoder, header.first_op, on_schema)
        txns = changes = 0
        first_time: dt.datetime | None = None
        last_time: dt.datetime | None = None
        last_position = header.first_position
        for frame in parsed.frames:
            for txn in builder.feed(frame, header, name):
                txns += 1
                changes += len(txn.changes)
                if first_time is None:
                    first_time = txn.commit_time
                last_time = txn.commit_time
                last_position = txn.position
        self._catalog = catalog
        self.last_op = self.durable_op = builder.expected - 1
        self.last_position = last_position
        if sealed:
            self._next_seq = seq + 1
            return
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._seq = seq
        self._next_seq = seq
        self._size = len(data)
        self._sha = hashlib.sha256(data)
        self._txns, self._changes = txns, changes
        self._blocks = len(parsed.frames)
        self._raw = parsed.raw_bytes
        self._first_op = header.first_op
        self._first_time, self._last_time = first_time, last_time
        self._pending_last_op = self.last_op
