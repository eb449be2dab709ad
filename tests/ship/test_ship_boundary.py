"""What of an open segment the sender ships: whole transactions only, never a header or catalog
alone (capture's recovery rewrites a segment holding nothing else, with other bytes)."""

from __future__ import annotations

from pathlib import Path

from capture.trail import TrailWriter, list_segment_files
from capture.trail._format import BLOCK_CATALOG, BLOCK_CONT_NEXT
from capture.trail._segment import parse_segment
from ship._sender import _boundary
from tests.capture.helpers import make_txn


def _open_segment(directory: Path) -> bytes:
    files = list_segment_files(directory)
    path, sealed = files[max(files)]
    assert not sealed
    return path.read_bytes()


def test_a_segment_holding_only_its_header_and_catalog_is_not_shipped(tmp_path: Path) -> None:
    with TrailWriter(tmp_path, source_id="src", segment_bytes=1500) as writer:
        for i in range(1, 30):
            writer.append(make_txn(i, 5))
        writer.flush()
    data = _open_segment(tmp_path)
    parsed = parse_segment(data, "open", sealed=False)
    assert len(parsed.frames) >= 2 and parsed.frames[0].flags & BLOCK_CATALOG
    first_txn_end = parsed.frames[1].end
    assert not parsed.frames[1].flags & BLOCK_CONT_NEXT
    # everything complete is shipped
    assert _boundary(data, 0) == parsed.txn_end
    # the segment as a kill -9 between its catalog and its first transaction leaves it:
    # nothing of it is shipped (recovery deletes it and writes another)
    head_and_catalog = data[: parsed.frames[0].end]
    assert _boundary(head_and_catalog, 0) == 0
    assert _boundary(data[: parsed.frames[0].end - 1], 0) == 0
    # with the first transaction complete, all of it goes, header included
    assert _boundary(data[:first_txn_end], 0) == first_txn_end
    # and the writer's recovery agrees: a segment cut after its catalog is gone on reopen
    files = list_segment_files(tmp_path)
    path, _ = files[max(files)]
    path.write_bytes(head_and_catalog)
    with TrailWriter(tmp_path, source_id="src", segment_bytes=1500):
        pass
    assert max(list_segment_files(tmp_path)) < max(files)
