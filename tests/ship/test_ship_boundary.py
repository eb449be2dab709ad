"""What of an open segment the sender ships: whole transactions only, never a header or catalog
alone (capture's recovery rewrites a segment holding nothing else, with other bytes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from capture.trail import TrailWriter, list_segment_files
from capture.trail._format import BLOCK_CATALOG, BLOCK_CONT_NEXT
from capture.trail._segment import parse_segment
from ship._sender import _boundary
from tests.capture.helpers import make_txn
from tests.ship.conftest import (
    Certs,
    ReceiverProc,
    digests,
    env_for,
    start_receiver,
    write_trail,
)


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


#: `redoline` whose sender refuses to send bytes of an open segment that it has not fsynced
#: (the descriptor's size at its last fsync must cover them): exit 97 names the range
_SYNCED_BEFORE_SENT = """
import os, sys
import ship._sender as sender
synced = {}
real_fsync = os.fsync
def fsync(fd):
    real_fsync(fd)
    synced[fd] = max(synced.get(fd, 0), os.fstat(fd).st_size)
os.fsync = fsync
real_send = sender._Session.send_range
def send_range(self, fd, seq, start, end, data=None, hasher=None):
    if data is not None and synced.get(fd, 0) < end:
        print(f"UNSYNCED segment {seq} bytes {start}-{end}", file=sys.stderr, flush=True)
        os._exit(97)
    return real_send(self, fd, seq, start, end, data, hasher)
sender._Session.send_range = send_range
from toolkit_cli.app import main
main()
"""


def test_open_segment_bytes_are_durable_before_they_are_shipped(
    tmp_path: Path, certs: Certs, receivers: list[ReceiverProc]
) -> None:
    """The sender fsyncs the open segment before shipping from it: after a power loss of the
    source host its trail still holds every transaction a receiver holds (capture flushes on
    its own schedule, and a receiver holding bytes the source lost refused the rewritten
    segment)."""
    trail = tmp_path / "src"
    write_trail(trail, 1, 40)  # sealed segments and an open one with whole transactions
    files = list_segment_files(trail)
    assert not files[max(files)][1] and any(sealed for _, sealed in files.values())
    r = start_receiver(tmp_path, tmp_path / "recv", "--source-id", "src", *certs.receive_args())
    receivers.append(r)
    done = subprocess.run(
        [sys.executable, "-c", _SYNCED_BEFORE_SENT, "ship", "--to", r.to, "--trail", str(trail),
         *certs.ship_args(), "--until-caught-up"],
        cwd=tmp_path, env=env_for(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert digests(tmp_path / "recv" / "src", sealed_only=False) == digests(
        trail, sealed_only=False
    )
    r.stop()
