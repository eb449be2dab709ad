"""The trail reader (in order, continuity-checked, optionally tailing) and trail summaries."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from capture.trail._format import (
    BLOCK_CATALOG,
    BLOCK_CONT_PREV,
    BLOCK_HAS_DDL,
    Frame,
    SegmentHeader,
    list_segment_files,
    parse_frame,
    parse_header,
    parse_trailer,
    sealed_name,
)
from capture.trail._segment import (
    BlockDecoder,
    TxnBuilder,
    parse_segment,
    tail_is_torn,
)
from connectors.errors import TrailError, UnknownDefinitionError
from connectors.model import TableId, TableSchema, Transaction

__all__ = ["SegmentInfo", "TrailInfo", "TrailReader", "trail_info"]

# a header or trailer holds at most three u16-length strings: 200 KB covers any of them
_HEADER_PROBE = 200 * 1024


def _read_header(path: Path) -> SegmentHeader | None:
    """The header of a segment file, None when it is still being created."""
    with open(path, "rb") as f:
        return parse_header(f.read(_HEADER_PROBE), path.name)


class TrailReader:
    """Reads a trail's transactions in operation order (DESIGN.md: Trail format).

    Every segment is checked as it is read: header CRC and version, sequence numbers without
    gaps, operation numbers continuing across blocks and segments, block CRC32C, and for
    sealed segments the SHA-256 in the trailer. A defect raises :class:`TrailError` naming
    the segment and offset; nothing after it is yielded.
    """

    def __init__(self, directory: Path, *, key: bytes | None = None) -> None:
        self.directory = Path(directory)
        self._key = key
        self._decoder = BlockDecoder(key)
        self._history: dict[tuple[TableId, int], TableSchema] = {}
        self._history_scanned = False
        self.source_id: str | None = None
        #: the trail identity of the segments read so far (format 2; "" before)
        self.trail_id = ""

    # ------------------------------------------------------------------ schema history

    def _on_schema(self, table: TableId, schema: TableSchema | None) -> None:
        if schema is not None:
            self._history[(schema.table, schema.version)] = schema

    def schema(self, table: TableId, version: int) -> TableSchema:
        """The definition of ``table`` at ``version``, as the trail recorded it.

        Definitions met while reading are remembered; a version not met yet is looked up in
        the catalog and DDL blocks of every segment present.
        """
        found = self._history.get((table, version))
        if found is None and not self._history_scanned:
            self._scan_history()
            found = self._history.get((table, version))
        if found is None:
            raise UnknownDefinitionError(
                f"the trail holds no definition of {table} version {version}",
                hint="the segments that carried it may have been removed by retention",
            )
        return found

    def _scan_history(self) -> None:
        for seq, (path, sealed) in list_segment_files(self.directory).items():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            if parse_header(data, path.name) is None:
                continue
            parsed = parse_segment(data, path.name, sealed=sealed)
            self._decoder.check_header(parsed.header, path.name)
            builder = TxnBuilder(self._decoder, parsed.header.first_op, self._on_schema)
            for frame in parsed.frames:
                if frame.end > parsed.txn_end:
                    break
                if frame.flags & (BLOCK_CATALOG | BLOCK_HAS_DDL):
                    builder.skip(frame, parsed.header, path.name)
            del seq
        self._history_scanned = True

    # ------------------------------------------------------------------ transactions

    def transactions(
        self,
        start_op: int = 1,
        *,
        follow: bool = False,
        poll: float = 0.2,
        stop: Callable[[], bool] | None = None,
        idle: Callable[[], None] | None = None,
    ) -> Iterator[Transaction]:
        """Whole transactions, in order, whose ``last_op >= start_op`` (an empty transaction,
        which only records a commit position, counts as ending at its ``first_op``).

        Without ``follow`` it ends at the current end of the trail (a write in progress at the
        open segment's tail is not an error). With ``follow`` it tails the open segment and
        waits — on the end of the trail and on a missing segment alike, never skipping —
        until ``stop()`` returns true (checked every ``poll`` seconds while waiting).
        ``idle()`` is called each time it is about to wait: everything the trail held has
        been yielded (a follower's moment to finish what it batched).
        """
        should_stop = stop or (lambda: False)
        if idle is not None:
            should_stop = _calling(idle, should_stop)
        files = list_segment_files(self.directory)
        while not files:
            if not follow or should_stop():
                return
            time.sleep(poll)
            files = list_segment_files(self.directory)
        seq = self._start_sequence(files, start_op)
        builder: TxnBuilder | None = None
        while True:
            entry = files.get(seq)
            if entry is None:
                files = list_segment_files(self.directory)
                entry = files.get(seq)
            if entry is None:
                later = [s for s in files if s > seq]
                if later and not follow:
                    raise TrailError(
                        f"segment {seq} is missing (the trail continues at segment {later[0]})",
                        segment=sealed_name(seq),
                        hint="restore the missing segment; a reader never skips a gap",
                    )
                if not follow or should_stop():
                    return
                time.sleep(poll)
                continue
            path, sealed = entry
            try:
                if sealed:
                    builder = yield from self._read_sealed(path, seq, builder, start_op)
                else:
                    result = yield from self._read_open(
                        path, seq, builder, start_op, follow, poll, should_stop
                    )
                    if result is None:
                        return
                    builder = result
            except FileNotFoundError:
                # renamed by a seal (or removed by retention) between listing and opening
                files = list_segment_files(self.directory)
                if seq in files and files[seq] != entry:
                    continue
                raise TrailError(
                    "segment disappeared while being read", segment=path.name
                ) from None
            seq += 1

    def _start_sequence(self, files: dict[int, tuple[Path, bool]], start_op: int) -> int:
        chosen: int | None = None
        first_seq = min(files)
        first_first_op: int | None = None
        for seq, (path, _sealed) in files.items():
            try:
                header = _read_header(path)
            except FileNotFoundError:
                header = _read_header(self.directory / sealed_name(seq))
            if header is None:
                break
            if first_first_op is None:
                first_first_op = header.first_op
            # strictly before: an empty transaction (no op of its own) numbered start_op may
            # end the previous segment
            if header.first_op < start_op:
                chosen = seq
            else:
                break
        if chosen is None:
            if first_seq != 0 and first_first_op is not None and start_op < first_first_op:
                raise TrailError(
                    f"operation {start_op} is no longer in the trail: it starts at operation "
                    f"{first_first_op} (segment {first_seq}); older segments were removed",
                    segment=sealed_name(first_seq),
                    hint="the consumer fell behind retention; re-seed it from a snapshot",
                )
            chosen = first_seq
        return chosen

    def _begin_segment(
        self,
        header: SegmentHeader,
        name: str,
        seq: int,
        builder: TxnBuilder | None,
    ) -> TxnBuilder:
        if header.sequence != seq:
            raise TrailError(
                f"segment file holds sequence {header.sequence}, its name says {seq} "
                "(renamed or reordered)",
                segment=name,
                offset=12,
            )
        if self.source_id is None:
            self.source_id = header.source_id
        elif header.source_id != self.source_id:
            raise TrailError(
                f"segment belongs to source {header.source_id!r}, the trail to {self.source_id!r}",
                segment=name,
                offset=0,
            )
        if header.trail_id:
            if self.trail_id and header.trail_id != self.trail_id:
                raise TrailError(
                    f"segment belongs to trail {header.trail_id}, the segments before it to "
                    f"{self.trail_id} (two trails mixed in one directory)",
                    segment=name,
                    offset=0,
                )
            self.trail_id = header.trail_id
        self._decoder.check_header(header, name)
        if builder is None:
            return TxnBuilder(self._decoder, header.first_op, self._on_schema)
        if builder.in_transaction:
            raise TrailError("previous segment ended inside a transaction", segment=name)
        if header.first_op != builder.expected:
            raise TrailError(
                f"operation number discontinuity between segments: expected first operation "
                f"{builder.expected}, segment starts at {header.first_op}",
                segment=name,
                offset=20,
            )
        return builder

    def _frame(
        self,
        builder: TxnBuilder,
        frame: Frame,
        header: SegmentHeader,
        name: str,
        start_op: int,
    ) -> Iterator[Transaction]:
        if (
            frame.last_op + 1 < start_op
            and not frame.flags & BLOCK_CATALOG
            and not builder.in_transaction
        ):
            builder.skip(frame, header, name)
            return
        for txn in builder.feed(frame, header, name):
            # an empty transaction sits at its first_op (it records a position only)
            if txn.first_op + max(len(txn.changes) - 1, 0) >= start_op:
                yield txn

    def _read_sealed(
        self, path: Path, seq: int, builder: TxnBuilder | None, start_op: int
    ) -> Generator[Transaction, None, TxnBuilder]:
        data = path.read_bytes()
        parsed = parse_segment(data, path.name, sealed=True)
        builder = self._begin_segment(parsed.header, path.name, seq, builder)
        for frame in parsed.frames:
            yield from self._frame(builder, frame, parsed.header, path.name, start_op)
        assert parsed.trailer is not None
        trailer = parsed.trailer
        self._check_trailer_ops(
            trailer.first_op, trailer.last_op, parsed.header, path.name, builder
        )
        return builder

    @staticmethod
    def _check_trailer_ops(
        first: int, last: int, header: SegmentHeader, name: str, builder: TxnBuilder
    ) -> None:
        if first != header.first_op:
            raise TrailError("trailer and header disagree on the first operation", segment=name)
        if last != builder.expected - 1:
            raise TrailError(
                f"trailer says last operation {last}, the blocks end at {builder.expected - 1}",
                segment=name,
            )

    def _read_open(
        self,
        path: Path,
        seq: int,
        builder: TxnBuilder | None,
        start_op: int,
        follow: bool,
        poll: float,
        should_stop: Callable[[], bool],
    ) -> Generator[Transaction, None, TxnBuilder | None]:
        """Read a segment that was open when listed; returns the builder once the segment is
        sealed and fully read, None when reading should end (no follow, or stop())."""
        name = path.name
        sealed_path = self.directory / sealed_name(seq)
        with open(path, "rb") as f:
            buf = bytearray()
            base = 0  # file offset of buf[0]
            at = 0
            sha = hashlib.sha256()
            header: SegmentHeader | None = None

            def wait() -> bool:
                """Sleep once; False when the reader should give up."""
                if not follow or should_stop():
                    return False
                time.sleep(poll)
                return True

            while header is None:
                buf += f.read()
                header = parse_header(buf, name)
                if header is None and not wait():
                    return None
            assert header is not None
            builder = self._begin_segment(header, name, seq, builder)
            sha.update(buf[: header.size])
            at = header.size
            while True:
                frame = parse_frame(buf, at, base, name)
                if isinstance(frame, Frame):
                    sha.update(memoryview(buf)[at : frame.end - base])
                    at = frame.end - base
                    yield from self._frame(builder, frame, header, name, start_op)
                    if at > 1 << 22:
                        del buf[:at]
                        base += at
                        at = 0
                    continue
                more = f.read()
                if more:
                    buf += more
                    continue
                if frame == "trailer" and sealed_path.exists():
                    buf += f.read()
                    trailer = parse_trailer(memoryview(buf)[at:], sealed_name(seq))
                    if sha.digest() != trailer.digest:
                        raise TrailError(
                            "SHA-256 of the segment body does not match its trailer",
                            segment=sealed_name(seq),
                        )
                    self._check_trailer_ops(
                        trailer.first_op, trailer.last_op, header, sealed_name(seq), builder
                    )
                    return builder
                if frame in ("short", "trailer") and sealed_path.exists():
                    # sealed while we read: what is missing now will never come
                    raise TrailError(
                        "truncated block in a sealed segment",
                        segment=sealed_name(seq),
                        offset=base + at,
                    )
                if not tail_is_torn(buf, at, frame):
                    raise TrailError(
                        "corrupt block in the open segment"
                        + (" (CRC32C mismatch)" if frame == "crc" else ""),
                        segment=name,
                        offset=base + at,
                    )
                if not wait():
                    return None
                if frame in ("crc", "magic"):
                    # a torn tail the writer will cut on restart and overwrite: re-read it
                    del buf[at:]
                    f.seek(base + at)


# ---------------------------------------------------------------------- summaries


@dataclass(slots=True)
class SegmentInfo:
    """One segment as ``trail_info`` sees it (sealed: from its trailer; open: scanned)."""

    sequence: int
    path: Path
    sealed: bool
    size: int
    first_op: int
    last_op: int
    first_position: str
    last_position: str | None
    txn_count: int | None
    change_count: int
    raw_bytes: int
    first_commit_time: str | None
    last_commit_time: str | None
    created_us: int


@dataclass(slots=True)
class TrailInfo:
    """A cheap summary of a trail (for ``redoline status`` and ``trail stats``)."""

    directory: Path
    source_id: str | None
    encrypted: bool
    segments: list[SegmentInfo] = field(default_factory=list)
    bytes_on_disk: int = 0
    raw_bytes: int = 0
    first_op: int = 0
    last_op: int = 0
    last_position: str | None = None
    last_commit_time: str | None = None
    #: identity and source description from the newest segment header (format 2), or from
    #: ``trail-start.json`` while the trail has no segment; "" when unknown (format 1)
    trail_id: str = ""
    source_engine: str = ""
    source_dialect: str = ""
    position_scheme: str = ""
    row_ids: bool = False
    format_version: int = 0

    @property
    def segment_count(self) -> int:
        return len(self.segments)

    @property
    def sealed_count(self) -> int:
        return sum(1 for s in self.segments if s.sealed)


def _open_segment_info(path: Path, seq: int, decoder: BlockDecoder | None) -> SegmentInfo | None:
    data = path.read_bytes()
    header = parse_header(data, path.name)
    if header is None:
        return None
    parsed = parse_segment(data, path.name, sealed=False)
    frames = [f for f in parsed.frames if f.end <= parsed.txn_end]
    last_op = frames[-1].last_op if frames else header.first_op - 1
    position: str | None = None
    commit_time: str | None = None
    if decoder is not None:
        # the last transaction header: walk back to the last block that holds one
        for frame in reversed(frames):
            if frame.flags & BLOCK_CATALOG:
                break
            last_header = None
            for record in decoder.records(frame, header, path.name):
                if type(record[0]) is str:
                    last_header = record
            if last_header is not None:
                position = last_header[1]
                commit_time = last_header[2].isoformat()
                break
            if not frame.flags & BLOCK_CONT_PREV:
                break
    return SegmentInfo(
        sequence=seq,
        path=path,
        sealed=False,
        size=len(data),
        first_op=header.first_op,
        last_op=last_op,
        first_position=header.first_position,
        last_position=position,
        txn_count=None,
        change_count=last_op - header.first_op + 1,
        raw_bytes=sum(f.raw_len for f in frames),
        first_commit_time=None,
        last_commit_time=commit_time,
        created_us=header.created_us,
    )


def trail_info(directory: Path, *, key: bytes | None = None) -> TrailInfo:
    """Summarise a trail from segment headers and trailers, scanning only the open segment.

    Without the key of an encrypted trail everything but the open segment's last position
    and commit time is still reported.
    """
    directory = Path(directory)
    info = TrailInfo(directory, None, False)
    for seq, (path, sealed) in list_segment_files(directory).items():
        try:
            if sealed:
                with open(path, "rb") as f:
                    head = f.read(_HEADER_PROBE)
                    f.seek(0, 2)
                    size = f.tell()
                    f.seek(max(0, size - _HEADER_PROBE))
                    tail = f.read()
                header = parse_header(head, path.name)
                if header is None:
                    raise TrailError("segment header is incomplete", segment=path.name)
                trailer = parse_trailer(tail, path.name)
                segment: SegmentInfo | None = SegmentInfo(
                    sequence=seq,
                    path=path,
                    sealed=True,
                    size=size,
                    first_op=header.first_op,
                    last_op=trailer.last_op,
                    first_position=header.first_position,
                    last_position=trailer.last_position,
                    txn_count=trailer.txn_count,
                    change_count=trailer.change_count,
                    raw_bytes=trailer.raw_bytes,
                    first_commit_time=trailer.first_commit_time,
                    last_commit_time=trailer.last_commit_time,
                    created_us=header.created_us,
                )
            else:
                header = _read_header(path)
                decoder = None
                if header is not None and (not header.encrypted or key is not None):
                    decoder = BlockDecoder(key)
                    decoder.check_header(header, path.name)
                segment = _open_segment_info(path, seq, decoder)
        except FileNotFoundError:
            continue
        if segment is None or header is None:
            continue
        info.source_id = info.source_id or header.source_id
        info.encrypted = info.encrypted or header.encrypted
        info.format_version = header.version
        if header.trail_id:
            info.trail_id = header.trail_id
            info.source_engine = header.source_engine
            info.source_dialect = header.source_dialect
            info.position_scheme = header.position_scheme
            info.row_ids = header.row_ids
        info.segments.append(segment)
    if not info.trail_id:
        # no segment yet, or only format-1 ones: the start record (source host) describes it
        from capture.trail._start import read_trail_start

        start = read_trail_start(directory)
        if start is not None and (not info.source_id or info.source_id == start.source_id):
            info.source_id = start.source_id
            info.trail_id = start.trail_id
            info.source_engine = start.source_engine
            info.source_dialect = start.source_dialect
            info.position_scheme = start.position_scheme
            info.row_ids = start.row_ids
    for segment in info.segments:
        info.bytes_on_disk += segment.size
        info.raw_bytes += segment.raw_bytes
    if info.segments:
        info.first_op = info.segments[0].first_op
        last = info.segments[-1]
        info.last_op = last.last_op
        info.last_position = last.last_position
        info.last_commit_time = last.last_commit_time
        if info.last_position is None and len(info.segments) > 1 and last.change_count == 0:
            info.last_position = info.segments[-2].last_position
            info.last_commit_time = info.segments[-2].last_commit_time
    return info


def _calling(idle: Callable[[], None], stop: Callable[[], bool]) -> Callable[[], bool]:
    """``stop`` that calls ``idle`` first: a following reader asks ``stop()`` exactly when it
    is about to wait for the trail to grow, so that is when its caller hears of it."""

    def check() -> bool:
        idle()
        return stop()

    return check
