"""Running the CLI the way users do — a subprocess — and the small fixtures fault tests share."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["first_error", "redoline", "small_fs"]


def redoline(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    umask: int = 0o022,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``redoline ARGS`` in ``cwd`` with no config file but what the arguments name."""
    (cwd / "none.toml").touch()
    return subprocess.run(
        [sys.executable, "-c", "from toolkit_cli.app import main; main()", *args],
        cwd=cwd,
        env={**os.environ, "REDOLINE_CONFIG": str(cwd / "none.toml"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=lambda: os.umask(umask),
    )


def first_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The first ``error:`` line of stderr; there must be one, and no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert lines, proc.stderr
    return lines[0]


@contextlib.contextmanager
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
