"""Faults a receiving host meets: its disk fills up mid-segment. The sender keeps retrying,
nothing unconfirmed is lost, and once space is freed the received trail is byte-identical."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from capture.trail import TrailWriter
from connectors.model import Change, Op, TableId, Transaction
from tests.ship.conftest import ENTRY, Certs, ReceiverProc, digests, env_for, start_receiver


@contextmanager
def small_fs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (root only: CI runs as root; elsewhere the test fails)."""
    if os.geteuid() != 0:
        pytest.fail("this fault test mounts a small tmpfs and needs root (CI runs as root)")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _blob_trail(trail: Path, mb: int) -> None:
    table = TableId("bench", "blobs")
    with TrailWriter(trail, source_id="src", segment_bytes=1_000_000) as writer:
        for i in range(1, mb * 8 + 1):
            row = {"id": i, "data": os.urandom(128 * 1024)}  # incompressible
            writer.append(
                Transaction(
                    str(i),
                    f"bin.000001:{i}",
                    dt.datetime.now(dt.UTC),
                    "",
                    [Change(Op.INSERT, table, 1, {"id": i}, None, row)],
                )
            )
        writer.seal()


def test_receiver_disk_full_then_freed(
    tmp_path: Path, certs: Certs, receivers: list[ReceiverProc]
) -> None:
    trail = tmp_path / "src"
    _blob_trail(trail, 3)
    with small_fs(tmp_path / "fs", "1m") as fs:
        r = start_receiver(tmp_path, fs / "recv", "--source-id", "src", *certs.receive_args())
        receivers.append(r)
        sender = subprocess.Popen(
            [*ENTRY, "ship", "--to", r.to, "--trail", str(trail), *certs.ship_args(),
             "--until-caught-up"],
            cwd=tmp_path, env=env_for(tmp_path), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while "No space left on device" not in r.stderr():
            assert time.monotonic() < deadline, r.stderr()
            assert sender.poll() is None, sender.communicate()
            time.sleep(0.1)
        time.sleep(1.0)
        assert sender.poll() is None  # retrying, not failed
        subprocess.run(["mount", "-o", "remount,size=64m", str(fs)], check=True)
        stdout, err = sender.communicate(timeout=60)
        assert sender.returncode == 0, err
        assert "No space left on device" in err and "reconnecting" in err
        assert "caught up" in stdout
        assert digests(fs / "recv" / "src") == digests(trail)
        assert len(digests(trail)) >= 3
        r.stop()
