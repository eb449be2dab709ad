"""Shipping tests run `redoline receive` and `redoline ship` as real processes."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from capture.trail import TrailWriter, list_segment_files
from tests.capture.helpers import make_txn

ENTRY = [sys.executable, "-c", "from toolkit_cli.app import main; main()"]


def env_for(cwd: Path) -> dict[str, str]:
    (cwd / "none.toml").touch()
    return {**os.environ, "REDOLINE_CONFIG": str(cwd / "none.toml"), "NO_COLOR": "1"}


def redoline(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENTRY, *args],
        cwd=cwd,
        env=env_for(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def first_error(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert lines, text
    assert "Traceback" not in text, text
    return lines[0]


def digests(directory: Path, sealed_only: bool = True) -> dict[str, str]:
    """SHA-256 per segment file (the oracle: plain hashlib over the bytes)."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for _, (path, sealed) in list_segment_files(directory).items()
        if sealed or not sealed_only
    }


@dataclass
class Certs:
    dir: Path

    def receive_args(self) -> list[str]:
        d = self.dir
        return ["--cert", f"{d}/server.pem", "--key", f"{d}/server.key", "--ca", f"{d}/ca.pem"]

    def ship_args(self) -> list[str]:
        d = self.dir
        return ["--cert", f"{d}/client.pem", "--key", f"{d}/client.key", "--ca", f"{d}/ca.pem"]


@dataclass
class ReceiverProc:
    proc: subprocess.Popen[str]
    port: int
    root: Path
    log: Path
    args: list[str] = field(default_factory=list)

    @property
    def to(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)


def start_receiver(
    cwd: Path, root: Path, *args: str, port: int = 0, name: str = "recv"
) -> ReceiverProc:
    log = cwd / f"{name}.{time.monotonic_ns()}.err"
    out = cwd / f"{name}.{time.monotonic_ns()}.out"
    cmd = [*ENTRY, "receive", "--listen", f"127.0.0.1:{port}", "--trail", str(root), *args]
    with open(log, "w") as err, open(out, "w") as stdout:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env_for(cwd), stdout=stdout, stderr=err, text=True
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = re.search(r"receiving on [^ ]+:(\d+)", out.read_text())
        if m:
            return ReceiverProc(proc, int(m.group(1)), root, log, list(args))
        if proc.poll() is not None:
            raise AssertionError(f"receiver exited {proc.returncode}: {log.read_text()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("receiver did not start: " + log.read_text())


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    done = redoline("receive", "--init-certs", str(tmp_path / "certs"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return Certs(tmp_path / "certs")


@pytest.fixture
def receivers() -> Iterator[list[ReceiverProc]]:
    started: list[ReceiverProc] = []
    yield started
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


def write_trail(directory: Path, first: int, count: int, seal: bool = False) -> None:
    """Transactions ``first`` .. ``first + count - 1`` into the trail (small segments)."""
    with TrailWriter(directory, source_id="src", segment_bytes=4000) as writer:
        for i in range(first, first + count):
            writer.append(make_txn(i, 3))
        if seal:
            writer.seal()


def iptables(ns: str, *args: str) -> str:
    """``iptables ARGS`` inside the namespace ``ns`` (the test fails with the reason)."""
    if shutil.which("iptables") is None:
        pytest.fail("iptables is not installed (apt-get install iptables; .ci/setup.sh does)")
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "iptables", *args], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.fail(f"iptables {' '.join(args)} in {ns}: {done.stderr.strip()}")
    return done.stdout
