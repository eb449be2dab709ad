"""The trail: round trips, continuity, recovery, corruption, encryption, tailing, golden files.

Regenerate the golden trails (only when the format changes on purpose, with a version bump):
``python -m tests.capture.test_trail --regen``.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import shutil
import struct
import sys
import threading
import time
from pathlib import Path

import pytest

from capture.assembly import TransactionAssembler
from capture.trail import (
    START_FILE,
    TrailReader,
    TrailStart,
    TrailWriter,
    check_trail,
    consumers,
    list_segment_files,
    load_key,
    open_name,
    register_consumer,
    sealed_name,
    trail_info,
)
from capture.trail._format import (
    BLOCK_CONT_NEXT,
    BLOCK_CONT_PREV,
    FRAME_SIZE,
    parse_frame,
    parse_header,
)
from connectors.errors import ConfigError, LockedError, TrailError
from connectors.model import Change, Op, TableId, Transaction
from tests.capture.helpers import (
    ORDERS,
    ORDERS_V1,
    ORDERS_V2,
    make_txn,
    same_txns,
    sample_workload,
)

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_KEY = bytes(range(32))
KEY = os.urandom(32)


def write(directory: Path, txns: list[Transaction], **kw: object) -> None:
    with TrailWriter(directory, source_id="src", **kw) as writer:  # type: ignore[arg-type]
        for txn in txns:
            writer.append(txn)


def read(directory: Path, start: int = 1, key: bytes | None = None) -> list[Transaction]:
    return list(TrailReader(directory, key=key).transactions(start))


def numbered(txns: list[Transaction]) -> list[Transaction]:
    op = 1
    for txn in txns:
        txn.first_op = op
        op += len(txn.changes)
    return txns


# ---------------------------------------------------------------------- round trips


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_round_trip_across_segments(tmp_path: Path, key: bytes | None) -> None:
    txns = sample_workload(60)
    write(tmp_path, txns, segment_bytes=2000, key=key)
    files = list_segment_files(tmp_path)
    assert len(files) > 3
    assert list(files) == list(range(len(files)))
    assert all(sealed for _, sealed in list(files.values())[:-1])
    back = read(tmp_path, key=key)
    assert same_txns(back, numbered(sample_workload(60)))
    assert back[-1].last_op == sum(len(t.changes) for t in txns)


def test_operation_numbers_assigned_and_enforced(tmp_path: Path) -> None:
    with TrailWriter(tmp_path, source_id="src") as writer:
        assert writer.last_op == 0 and writer.last_position is None
        txn = make_txn(1, 4)
        writer.append(txn)
        assert (txn.first_op, txn.last_op, writer.last_op) == (1, 4, 4)
        explicit = make_txn(2, 2)
        explicit.first_op = 5
        writer.append(explicit)
        for wrong in (5, 8, 1):
            bad = make_txn(3)
            bad.first_op = wrong
            with pytest.raises(TrailError, match="must continue"):
                writer.append(bad)
        assert writer.last_op == 6 and writer.last_position == explicit.position
    with TrailWriter(tmp_path, source_id="src") as writer:
        assert writer.last_op == 6 and writer.last_position == explicit.position


def test_start_op_yields_whole_transactions(tmp_path: Path) -> None:
    write(tmp_path, [make_txn(i, 5) for i in range(1, 41)], segment_bytes=1500)
    assert len(list_segment_files(tmp_path)) > 3
    for start in (1, 2, 5, 6, 99, 100, 101, 200):
        back = read(tmp_path, start)
        assert back[0].first_op <= start <= back[0].last_op
        assert back[-1].last_op == 200
    assert read(tmp_path, 201) == []


def test_schema_history_from_a_late_segment(tmp_path: Path) -> None:
    write(tmp_path, sample_workload(60), segment_bytes=1500)
    last_seq = max(list_segment_files(tmp_path))
    late = read(tmp_path, 100)
    assert late[0].first_op > 1
    # a reader that starts late finds v1 (carried in each segment's catalog) and v2 (DDL)
    reader = TrailReader(tmp_path)
    txns = list(reader.transactions(100))
    assert txns
    assert reader.schema(ORDERS, 1) == ORDERS_V1
    assert reader.schema(ORDERS, 2) == ORDERS_V2
    # only the last segment left: its catalog still defines the table
    for seq in range(last_seq):
        path, _ = list_segment_files(tmp_path)[seq]
        path.unlink()
    fresh = TrailReader(tmp_path)
    assert fresh.schema(ORDERS, 2) == ORDERS_V2
    with pytest.raises(TrailError, match=r"no definition of lab\.zoo version 7"):
        fresh.schema(TableId("lab", "zoo"), 7)


def test_writer_reopens_with_catalog_and_position(tmp_path: Path) -> None:
    write(tmp_path, sample_workload(10))
    with TrailWriter(tmp_path, source_id="src") as writer:
        assert writer.catalog() == {ORDERS: ORDERS_V2}  # lab.zoo was dropped
        writer.seal()
    with TrailWriter(tmp_path, source_id="src") as writer:  # last segment sealed now
        assert writer.catalog() == {ORDERS: ORDERS_V2}
        writer.append(make_txn(99))
    reader = TrailReader(tmp_path)
    assert list(reader.transactions())[-1].xid == "x99"
    assert [p.name for p, _ in list_segment_files(tmp_path).values()] == [
        sealed_name(0),
        open_name(1),
    ]


def test_source_id_and_lock(tmp_path: Path) -> None:
    write(tmp_path, [make_txn(1)])
    with pytest.raises(TrailError, match="belongs to source 'src'"):
        TrailWriter(tmp_path, source_id="other")
    with TrailWriter(tmp_path, source_id="src"), pytest.raises(LockedError):
        TrailWriter(tmp_path, source_id="src")


def test_transaction_larger_than_the_cap(tmp_path: Path) -> None:
    big = make_txn(1, 3000)
    write(tmp_path, [make_txn(0), big, make_txn(2)], segment_bytes=20_000, block_bytes=4096)
    # the big transaction continues across marked blocks, inside one segment
    files = list_segment_files(tmp_path)
    path = files[0][0]
    data = path.read_bytes()
    header = parse_header(data, path.name)
    assert header is not None
    flags = []
    at = header.size
    while True:
        frame = parse_frame(data, at, 0, path.name)
        if isinstance(frame, str):
            break
        flags.append(frame.flags)
        at = frame.end
    assert sum(1 for f in flags if f & BLOCK_CONT_NEXT) > 5
    assert sum(1 for f in flags if f & BLOCK_CONT_PREV) > 5
    assert len(data) > 20_000  # a segment holds whole transactions, so this one overflows
    back = read(tmp_path)
    assert [len(t.changes) for t in back] == [3, 3000, 3]
    assert same_txns(back, numbered([make_txn(0), make_txn(1, 3000), make_txn(2)]))
    # starting inside the big transaction yields it whole
    assert [t.xid for t in read(tmp_path, 1500)] == ["x1", "x2"]
    assert [t.xid for t in read(tmp_path, 3004)] == ["x2"]


def test_spilled_transaction_streams_into_the_trail(tmp_path: Path) -> None:
    asm = TransactionAssembler(memory_bytes=20_000, spill_dir=tmp_path)
    big = make_txn(1, 2000)
    for change in big.changes:
        asm.change("big", change)
    spilled = asm.commit("big", position="p1", commit_time=big.commit_time, origin="src")
    assert not isinstance(spilled, Transaction)
    (tmp_path / "t").mkdir()
    with TrailWriter(tmp_path / "t", source_id="src", block_bytes=8192) as writer, spilled:
        writer.append(spilled)
    (back,) = read(tmp_path / "t")
    big.first_op, big.xid, big.position = 1, "big", "p1"
    assert same_txns([back], [big])
    assert not spilled.path.exists()


def test_empty_transaction_moves_the_position(tmp_path: Path) -> None:
    with TrailWriter(tmp_path, source_id="src") as writer:
        writer.append(make_txn(1))
        empty = Transaction("e", "pos-e", dt.datetime(2025, 1, 1), "src", [])
        writer.append(empty)
        assert writer.last_op == 3 and writer.last_position == "pos-e"
    assert trail_info(tmp_path).last_position == "pos-e"


def test_failed_append_leaves_no_trace(tmp_path: Path) -> None:
    with TrailWriter(tmp_path, source_id="src", block_bytes=1024) as writer:
        writer.append(make_txn(1))
        bad = make_txn(2, 200)
        bad.changes[150].after = {"x": object()}  # type: ignore[dict-item]
        with pytest.raises(TypeError):
            writer.append(bad)
        writer.append(make_txn(3))
    assert [t.xid for t in read(tmp_path)] == ["x1", "x3"]
    assert check_trail(tmp_path).changes == 6


# ---------------------------------------------------------------------- recovery


def test_recovery_truncates_a_torn_tail(tmp_path: Path) -> None:
    write(tmp_path, [make_txn(i) for i in range(1, 6)])
    path = tmp_path / open_name(0)
    good = path.stat().st_size
    # a crash in the middle of writing the next block: half a frame at the end
    with TrailWriter(tmp_path, source_id="src") as writer:
        writer.append(make_txn(6))
        writer.flush()
    full = path.read_bytes()
    path.write_bytes(full[: good + (len(full) - good) // 2])
    assert [t.xid for t in read(tmp_path)] == [f"x{i}" for i in range(1, 6)]
    report = check_trail(tmp_path)
    assert report.torn_tail_bytes > 0 and report.warnings
    with TrailWriter(tmp_path, source_id="src") as writer:
        assert writer.last_op == 15
        assert path.stat().st_size == good
        writer.append(make_txn(7))
    assert [t.xid for t in read(tmp_path)][-2:] == ["x5", "x7"]
    assert check_trail(tmp_path).torn_tail_bytes == 0


def test_recovery_drops_an_unfinished_large_transaction(tmp_path: Path) -> None:
    write(tmp_path, [make_txn(1)])
    path = tmp_path / open_name(0)
    good = path.stat().st_size
    writer = TrailWriter(tmp_path, source_id="src", block_bytes=1024)
    writer.append(make_txn(2, 500))  # several CONT_NEXT blocks, complete
    writer.flush()
    writer.close()
    data = path.read_bytes()
    # keep only the first continued blocks: as if the process died mid-transaction
    header = parse_header(data, path.name)
    assert header is not None
    at = good
    for _ in range(3):
        frame = parse_frame(data, at, 0, path.name)
        assert not isinstance(frame, str) and frame.flags & BLOCK_CONT_NEXT
        at = frame.end
    path.write_bytes(data[:at] + b"\x00" * 100)
    assert [t.xid for t in read(tmp_path)] == ["x1"]
    with TrailWriter(tmp_path, source_id="src") as writer:
        assert writer.last_op == 3 and path.stat().st_size == good


def test_recovery_of_segment_that_was_being_created(tmp_path: Path) -> None:
    write(tmp_path, [make_txn(1)])
    with TrailWriter(tmp_path, source_id="src") as writer:
        writer.seal()
    (tmp_path / open_name(1)).write_bytes(b"RDLT\x01")
    with TrailWriter(tmp_path, source_id="src") as writer:
        assert writer.last_op == 3
        writer.append(make_txn(2))
    assert [t.xid for t in read(tmp_path)] == ["x1", "x2"]


def test_recovery_completes_an_interrupted_seal(tmp_path: Path) -> None:
    write(tmp_path, [make_txn(1)])
    with TrailWriter(tmp_path, source_id="src") as writer:
        writer.seal()
    # crash after the trailer was written and synced, before the rename
    os.rename(tmp_path / sealed_name(0), tmp_path / open_name(0))
    with TrailWriter(tmp_path, source_id="src") as writer:
        assert (tmp_path / sealed_name(0)).exists()
        writer.append(make_txn(2))
    assert [t.xid for t in read(tmp_path)] == ["x1", "x2"]


def test_corruption_inside_the_open_segment_is_not_truncated(tmp_path: Path) -> None:
    write(tmp_path, [make_txn(i) for i in range(1, 4)], block_bytes=1024)
    with TrailWriter(tmp_path, source_id="src") as writer:
        for i in range(4, 40):
            writer.append(make_txn(i))
            writer.flush()
    path = tmp_path / open_name(0)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(TrailError, match="corrupt block"):
        TrailWriter(tmp_path, source_id="src")
    with pytest.raises(TrailError, match=f"segment {open_name(0)} offset"):
        read(tmp_path)


# ---------------------------------------------------------------------- corruption


@pytest.fixture
def sealed_trail(tmp_path: Path) -> Path:
    directory = tmp_path / "trail"
    write(directory, [make_txn(i, 4) for i in range(1, 61)], segment_bytes=1200)
    with TrailWriter(directory, source_id="src") as writer:
        writer.seal()
    assert len(list_segment_files(directory)) >= 5
    return directory


def _segment(directory: Path, seq: int) -> Path:
    return list_segment_files(directory)[seq][0]


@pytest.mark.parametrize("where", ["header", "block", "trailer", "digest-only"])
def test_flipped_byte_in_a_sealed_segment(sealed_trail: Path, where: str) -> None:
    path = _segment(sealed_trail, 2)
    data = bytearray(path.read_bytes())
    header = parse_header(bytes(data), path.name)
    assert header is not None
    offset = {
        "header": 30,
        "block": header.size + FRAME_SIZE + 40,
        "trailer": len(data) - 20,
        "digest-only": header.size + FRAME_SIZE + 5,
    }[where]
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(TrailError) as exc:
        read(sealed_trail)
    assert exc.value.segment == path.name
    with pytest.raises(TrailError):
        check_trail(sealed_trail)


def test_truncated_sealed_segment(sealed_trail: Path) -> None:
    path = _segment(sealed_trail, 1)
    data = path.read_bytes()
    path.write_bytes(data[:-30])
    with pytest.raises(TrailError, match="no valid trailer") as exc:
        read(sealed_trail)
    assert exc.value.segment == path.name and exc.value.offset is not None


def test_missing_middle_segment(sealed_trail: Path) -> None:
    _segment(sealed_trail, 2).unlink()
    with pytest.raises(TrailError, match="segment 2 is missing"):
        read(sealed_trail)
    # the reader refuses before yielding anything beyond the gap
    reader = TrailReader(sealed_trail).transactions()
    seen = []
    with pytest.raises(TrailError):
        for txn in reader:
            seen.append(txn)
    assert seen and seen[-1].last_op < _first_op_of(sealed_trail, 3)


def _first_op_of(directory: Path, seq: int) -> int:
    header = parse_header(_segment(directory, seq).read_bytes(), "x")
    assert header is not None
    return header.first_op


def test_reordered_segments(sealed_trail: Path) -> None:
    a, b = _segment(sealed_trail, 1), _segment(sealed_trail, 2)
    tmp = a.with_suffix(".tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    with pytest.raises(TrailError, match="name says 1"):
        read(sealed_trail)


def test_segment_renumbered_to_close_a_gap(sealed_trail: Path) -> None:
    # remove segment 2 and rename the later ones down: names are consecutive again, but the
    # header sequence and the operation numbers are not
    files = list_segment_files(sealed_trail)
    files[2][0].unlink()
    for seq in range(3, len(files)):
        files[seq][0].rename(sealed_trail / sealed_name(seq - 1))
    with pytest.raises(TrailError, match="name says 2"):
        read(sealed_trail)


def test_operation_discontinuity_between_segments(sealed_trail: Path, tmp_path: Path) -> None:
    # a segment of the same trail identity with other op numbers (a copy of the trail
    # written again from its start record)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(sealed_trail / START_FILE, other / START_FILE)
    write(other, [make_txn(i, 2) for i in range(1, 200)], segment_bytes=1200)
    with TrailWriter(other, source_id="src") as writer:
        writer.seal()
    shutil.copy(_segment(other, 2), _segment(sealed_trail, 2))
    with pytest.raises(TrailError, match="discontinuity") as exc:
        read(sealed_trail)
    assert exc.value.segment == sealed_name(2)


def test_segment_of_another_trail_is_refused(sealed_trail: Path, tmp_path: Path) -> None:
    # the same source, the same operation numbers, but another trail (a new trail directory)
    other = tmp_path / "other"
    write(other, [make_txn(i, 2) for i in range(1, 200)], segment_bytes=1200)
    shutil.copy(_segment(other, 2), _segment(sealed_trail, 2))
    with pytest.raises(TrailError, match="two trails mixed") as exc:
        read(sealed_trail)
    assert exc.value.segment == sealed_name(2)


def test_unknown_format_version(sealed_trail: Path) -> None:
    path = _segment(sealed_trail, 0)
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, 4, 9)
    path.write_bytes(bytes(data))
    with pytest.raises(TrailError, match="unknown trail format version 9") as exc:
        read(sealed_trail)
    assert exc.value.offset == 4


def test_start_before_retained_history(sealed_trail: Path) -> None:
    _segment(sealed_trail, 0).unlink()
    with pytest.raises(TrailError, match="no longer in the trail"):
        read(sealed_trail, 1)
    assert read(sealed_trail, _first_op_of(sealed_trail, 1))


# ---------------------------------------------------------------------- encryption


def test_wrong_and_missing_key(tmp_path: Path) -> None:
    write(tmp_path, [make_txn(i) for i in range(5)], key=KEY, segment_bytes=800)
    assert trail_info(tmp_path, key=KEY).encrypted
    with pytest.raises(TrailError, match="encrypted and no key"):
        read(tmp_path)
    with pytest.raises(TrailError, match="wrong encryption key"):
        read(tmp_path, key=bytes(32))
    with pytest.raises(TrailError, match="wrong encryption key"):
        TrailWriter(tmp_path, source_id="src", key=bytes(32))
    with pytest.raises(TrailError, match="needs its key"):
        TrailWriter(tmp_path, source_id="src")
    assert len(read(tmp_path, key=KEY)) == 5
    # row data is encrypted (positions and times in headers/trailers are not, by design)
    raw = b"".join(p.read_bytes() for p, _ in list_segment_files(tmp_path).values())
    assert b"paid" not in raw and b"status" not in raw


def test_encrypted_block_moved_is_refused(tmp_path: Path) -> None:
    write(tmp_path, [make_txn(i) for i in range(3)], key=KEY)
    path = tmp_path / open_name(0)
    data = path.read_bytes()
    header = parse_header(data, path.name)
    assert header is not None
    # recompute the CRC after a change so only AES-GCM can notice it
    frame = parse_frame(data, header.size, 0, path.name)
    assert not isinstance(frame, str)
    frame2 = parse_frame(data, frame.end, 0, path.name)
    assert not isinstance(frame2, str)
    payload = bytearray(frame2.payload)
    payload[-1] ^= 1
    from capture.trail._format import crc32c

    crc = struct.pack("<I", crc32c(bytes(payload), crc32c(frame2.header)))
    data = data[: frame.end] + frame2.header + crc + bytes(payload) + data[frame2.end :]
    path.write_bytes(data)
    with pytest.raises(TrailError, match="AES-GCM"):
        read(tmp_path, key=KEY)


def test_load_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "raw.key"
    raw.write_bytes(KEY)
    hexed = tmp_path / "hex.key"
    hexed.write_text(KEY.hex() + "\n")
    assert load_key(file=raw) == KEY and load_key(file=hexed) == KEY
    monkeypatch.setenv("TK", KEY.hex())
    assert load_key(env="TK") == KEY
    assert load_key() is None
    (tmp_path / "short.key").write_text("abcd")
    with pytest.raises(ConfigError, match="32-byte"):
        load_key(file=tmp_path / "short.key")
    with pytest.raises(ConfigError, match="not set"):
        load_key(env="NOPE_NOT_SET")


# ---------------------------------------------------------------------- tailing


def test_tailing_reader_sees_appends_and_seals(tmp_path: Path) -> None:
    write(tmp_path, [make_txn(1)])
    got: list[str] = []
    done = threading.Event()

    def follow() -> None:
        for txn in TrailReader(tmp_path).transactions(follow=True, poll=0.01, stop=done.is_set):
            got.append(txn.xid)

    thread = threading.Thread(target=follow)
    thread.start()
    with TrailWriter(tmp_path, source_id="src", segment_bytes=900) as writer:
        for i in range(2, 30):
            writer.append(make_txn(i))
            writer.flush()
            time.sleep(0.002)
    deadline = time.monotonic() + 10
    while len(got) < 29 and time.monotonic() < deadline:
        time.sleep(0.01)
    done.set()
    thread.join(5)
    assert got == [f"x{i}" for i in range(1, 30)]
    assert len(list_segment_files(tmp_path)) > 2


def test_tailing_reader_waits_on_a_gap(sealed_trail: Path, tmp_path: Path) -> None:
    hidden = tmp_path / "hidden.seg"
    shutil.move(_segment(sealed_trail, 2), hidden)
    got: list[int] = []
    done = threading.Event()

    def follow() -> None:
        for txn in TrailReader(sealed_trail).transactions(follow=True, poll=0.01, stop=done.is_set):
            got.append(txn.first_op)

    thread = threading.Thread(target=follow)
    thread.start()
    time.sleep(0.3)
    waiting_at = list(got)
    assert waiting_at and waiting_at[-1] < _first_op_of(sealed_trail, 3)
    shutil.move(hidden, sealed_trail / sealed_name(2))  # the missing segment arrives
    deadline = time.monotonic() + 10
    while len(got) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    done.set()
    thread.join(5)
    assert got == [1 + 4 * i for i in range(60)]


def test_follow_on_an_empty_trail_stops(tmp_path: Path) -> None:
    t0 = time.monotonic()
    calls = iter(range(5))
    assert (
        list(
            TrailReader(tmp_path).transactions(
                follow=True, poll=0.01, stop=lambda: next(calls, 99) >= 3
            )
        )
        == []
    )
    assert time.monotonic() - t0 < 2


# ---------------------------------------------------------------------- info, consumers


def test_trail_info(tmp_path: Path) -> None:
    assert trail_info(tmp_path).segments == []
    write(tmp_path, [make_txn(i, 4) for i in range(1, 31)], segment_bytes=1500)
    info = trail_info(tmp_path)
    assert info.source_id == "src" and not info.encrypted
    assert (info.first_op, info.last_op) == (1, 120)
    assert info.last_position == make_txn(30).position
    assert info.last_commit_time == make_txn(30).commit_time.isoformat()
    assert info.bytes_on_disk == sum(
        p.stat().st_size for p, _ in list_segment_files(tmp_path).values()
    )
    assert info.raw_bytes > info.bytes_on_disk
    assert info.sealed_count == info.segment_count - 1


def test_consumers(tmp_path: Path) -> None:
    register_consumer(tmp_path, "apply-pg", 10)
    register_consumer(tmp_path, "ship.dr", 3)
    register_consumer(tmp_path, "apply-pg", 12)
    register_consumer(tmp_path, "../odd/name ✓", 4)
    assert consumers(tmp_path) == {"apply-pg": 12, "ship.dr": 3, "../odd/name ✓": 4}
    assert all(p.parent == tmp_path / "consumers" for p in tmp_path.rglob("*.json"))
    with pytest.raises(ConfigError):
        register_consumer(tmp_path, "", 1)


# ---------------------------------------------------------------------- golden


def _golden_txns() -> list[Transaction]:
    txns = sample_workload(12)
    txns.append(make_txn(500, 1200))  # continued blocks
    txns.append(make_txn(501))  # in the open segment
    return txns


def regenerate_golden() -> None:
    """Write the golden trails (plain and encrypted) from :func:`_golden_txns`."""
    for name, key in (("plain", None), ("encrypted", GOLDEN_KEY)):
        directory = GOLDEN / name
        shutil.rmtree(directory, ignore_errors=True)
        with TrailWriter(
            directory,
            source_id="golden",
            segment_bytes=1500,
            block_bytes=2048,
            key=key,
            start=GOLDEN_START,
        ) as writer:
            for txn in _golden_txns():
                writer.append(txn)
        (directory / "writer.lock").unlink()
        (directory / START_FILE).unlink(missing_ok=True)


GOLDEN_START = TrailStart(
    trail_id="0123456789abcdef0123456789abcdef",
    source_id="golden",
    source_engine="mysql",
    source_dialect="mysql",
    position_scheme="mysql-binlog",
)


# v1-*: written by format version 1 (no trail identity, no source description); kept to
# prove old trails stay readable
@pytest.mark.parametrize("name", ["plain", "encrypted", "v1-plain", "v1-encrypted"])
def test_golden_trail_reads_back(name: str, tmp_path: Path) -> None:
    key = GOLDEN_KEY if name.endswith("encrypted") else None
    directory = tmp_path / name
    shutil.copytree(GOLDEN / name, directory)  # the reader must not need to write
    assert same_txns(read(directory, key=key), numbered(_golden_txns()))
    info = trail_info(directory, key=key)
    assert info.source_id == "golden" and info.segment_count >= 3
    if name.startswith("v1-"):
        assert info.format_version == 1 and info.trail_id == "" and info.source_engine == ""
    else:
        assert info.format_version == 2 and info.trail_id == GOLDEN_START.trail_id
        assert (info.source_engine, info.source_dialect) == ("mysql", "mysql")
        assert info.position_scheme == "mysql-binlog" and not info.row_ids
    reader = TrailReader(directory, key=key)
    list(reader.transactions(30))
    assert reader.schema(ORDERS, 2) == ORDERS_V2
    # the golden files are byte-for-byte what is checked in
    assert not (GOLDEN / name / "writer.lock").exists()


def test_whole_transaction_packing_writes_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer packs an in-memory transaction in one call; the bytes must be those of
    packing record by record (block cuts included), which spilled transactions still use."""
    monkeypatch.setattr(time, "time_ns", lambda: 1_700_000_000_000_000_000)  # header field
    txns = [*_golden_txns(), make_txn(502, 40), make_txn(503, 3)]
    for name, per_record in (("whole", False), ("each", True)):
        if per_record:
            monkeypatch.setattr(TrailWriter, "_encode", TrailWriter._encode_each)
        with TrailWriter(
            tmp_path / name,
            source_id="s",
            segment_bytes=1500,
            block_bytes=2048,
            start=TrailStart(trail_id="t", source_id="s"),
        ) as writer:
            for txn in copy.deepcopy(txns):
                writer.append(txn)
        (tmp_path / name / "writer.lock").unlink()
    whole = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert whole == sorted(p.name for p in (tmp_path / "each").iterdir()) and len(whole) > 2
    for file in whole:
        assert (tmp_path / "whole" / file).read_bytes() == (tmp_path / "each" / file).read_bytes()


def test_change_model_ops_cover_the_format() -> None:
    # a new Op needs a code in capture.codec; this fails loudly when one is added
    from capture import codec

    assert {Change(op, ORDERS).op for op in Op} == set(codec._OP_CODES)


if __name__ == "__main__" and "--regen" in sys.argv:
    regenerate_golden()


# ---------------------------------------------------------------------- property, kill -9

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.capture.test_codec import values  # noqa: E402

rows = st.dictionaries(st.text(min_size=1, max_size=6), values, max_size=6)
changes = st.builds(
    Change,
    st.sampled_from([Op.INSERT, Op.UPDATE, Op.DELETE, Op.TRUNCATE]),
    st.builds(TableId, st.text(min_size=1, max_size=5), st.text(min_size=1, max_size=5)),
    st.integers(1, 5),
    rows | st.none(),
    rows | st.none(),
    rows | st.none(),
    st.text(max_size=4) | st.none(),
)
transactions = st.builds(
    Transaction,
    st.text(max_size=8),
    st.text(max_size=12),
    st.datetimes(),
    st.text(max_size=4),
    st.lists(changes, max_size=6),
)


@given(st.lists(transactions, min_size=1, max_size=8), st.booleans())
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_transactions_round_trip(
    tmp_path_factory: pytest.TempPathFactory, txns: list[Transaction], encrypted: bool
) -> None:
    directory = tmp_path_factory.mktemp("prop")
    key = KEY if encrypted else None
    write(directory, txns, segment_bytes=1200, block_bytes=1024, key=key)
    assert same_txns(read(directory, key=key), numbered(txns))


_CHILD = """
import sys
from pathlib import Path
from capture.trail import TrailWriter
from tests.capture.helpers import make_txn
with TrailWriter(Path(sys.argv[1]), source_id="src", segment_bytes=4000, block_bytes=1024) as w:
    i = 0
    while True:
        i += 1
        w.append(make_txn(i, 1 + i % 40))
        if i % 3 == 0:
            w.flush()
            print(w.durable_op, flush=True)
"""


def test_kill_9_loses_nothing_durable(tmp_path: Path) -> None:
    import subprocess

    root = Path(__file__).resolve().parents[2]
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tmp_path)],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        durable = 0
        for _ in range(20 + 15 * round_):
            line = proc.stdout.readline()
            if not line:
                break
            durable = int(line)
        proc.kill()  # SIGKILL: no flush, no close, possibly mid-write
        proc.wait()
        proc.stdout.close()
        assert durable > 0
        with TrailWriter(tmp_path, source_id="src") as writer:
            assert writer.last_op >= durable
            last = writer.last_op
        back = read(tmp_path)
        assert back[-1].last_op == last
        check_trail(tmp_path)
        # the next run appends after what survived, numbering on
        with TrailWriter(tmp_path, source_id="src") as writer:
            writer.append(make_txn(10_000 + round_))
        assert read(tmp_path)[-1].first_op == last + 1


def test_every_start_op_when_transactions_span_blocks(tmp_path: Path) -> None:
    # Transactions larger than a block, so a skipped block often ends inside one whose tail
    # (one block or several) precedes the start; regression: the reader refused such starts.
    txns = [make_txn(i, 40 if i % 3 else 400) for i in range(1, 25)]
    write(tmp_path, txns, segment_bytes=200_000, block_bytes=2048)
    everything = read(tmp_path)
    last = everything[-1].last_op
    for start in range(1, last + 1, 7):
        back = read(tmp_path, start)
        assert back[0].first_op <= start <= back[0].last_op
        assert [t.xid for t in back] == [t.xid for t in everything if t.last_op >= start]


def test_follow_says_when_it_has_read_everything(tmp_path: Path) -> None:
    """``idle()`` comes once the reader has yielded all the trail held, before it waits: not
    between transactions it could read at once, and again after each batch that arrives."""
    write(tmp_path, [make_txn(i) for i in range(1, 6)])
    seen: list[str] = []
    idle_after: list[int] = []
    done = threading.Event()

    def idle() -> None:
        if not idle_after or idle_after[-1] != len(seen):
            idle_after.append(len(seen))

    def follow() -> None:
        for txn in TrailReader(tmp_path).transactions(
            follow=True, poll=0.01, stop=done.is_set, idle=idle
        ):
            seen.append(txn.xid)

    thread = threading.Thread(target=follow)
    thread.start()
    deadline = time.monotonic() + 10
    while idle_after != [5] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert idle_after == [5]
    with TrailWriter(tmp_path, source_id="src") as writer:
        for i in range(6, 9):
            writer.append(make_txn(i))
        writer.flush()  # three transactions become visible at once
    while idle_after != [5, 8] and time.monotonic() < deadline:
        time.sleep(0.01)
    done.set()
    thread.join(5)
    assert idle_after == [5, 8] and seen == [f"x{i}" for i in range(1, 9)]
