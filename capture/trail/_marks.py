"""Restore points: named points of the source's history, kept beside the trail's segments.

A mark is one small JSON file, ``marks/<name>.json`` in the trail directory, written once
and never changed (``redoline mark NAME``; docs/trail-format.md). It is kept out of the
segments on purpose: segments have one writer, which holds ``writer.lock`` for as long as a
capture runs, and a DBA marks a point *while* capture runs. A sidecar file needs no lock
and no cooperation from the writer, so a running capture is neither stopped nor disturbed,
and the mark is durable the moment the command returns (write, fsync, atomic
create-if-absent by ``link``, fsync of the directory).

A mark names a point of the source, not of the trail: the source's end-of-log position when
it was taken (every transaction committed before it is included, every later one is not),
so it is exact even when capture lags behind, and it resolves to an operation number once the
trail holds the first transaction after it. A mark can also name an operation number
directly (``--at-op``, no source needed).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from capture.trail._writer import fsync_dir
from connectors.errors import ConfigError, TrailError

__all__ = ["MARKS_DIR", "Mark", "list_marks", "read_mark", "remove_mark", "write_mark"]

MARKS_DIR = "marks"

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,99}$")


@dataclass(frozen=True)
class Mark:
    """One restore point. Exactly one of ``position`` and ``op`` is set."""

    name: str
    #: wall-clock time (UTC) the mark was taken: informational, the point is position/op
    time: dt.datetime
    #: the source's end-of-log position when marked: transactions committed at or before it
    #: are before the mark
    position: str | None = None
    #: or an operation number: the mark is right after it
    op: int | None = None
    #: the trail's last operation when marked (every transaction up to it is before the mark)
    trail_last_op: int = 0
    trail_id: str = ""
    source_engine: str = ""

    def describe(self) -> str:
        where = f"source position {self.position}" if self.position else f"operation {self.op}"
        return f"mark {self.name!r} ({where}, marked {self.time.isoformat()})"

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["time"] = self.time.isoformat()
        return out


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"mark name {name!r} is not allowed",
            hint="1 to 100 characters: letters, digits, _ . : @ + - (not starting with . : @ + -)",
        )
    return name


def write_mark(directory: Path, mark: Mark) -> Path:
    """Record ``mark`` durably; refuse a name that exists (a mark is never moved)."""
    check_name(mark.name)
    if (mark.position is None) == (mark.op is None):
        raise ConfigError("a mark holds a source position or an operation number")
    folder = Path(directory) / MARKS_DIR
    if not folder.is_dir():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fsync_dir(Path(directory))
    final = folder / f"{mark.name}.json"
    data = json.dumps({**mark.to_json(), "created": time.time()}, indent=1).encode()
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{mark.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, final)  # atomic and never replaces: two `mark NAME` at once, one wins
    except FileExistsError:
        raise ConfigError(
            f"a mark named {mark.name!r} exists already ({final})",
            hint="pick another name; a mark never moves (delete it with `redoline mark "
            f"--remove {mark.name}` first if it must)",
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(folder)
    return final


def _parse(path: Path) -> Mark:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        when = dt.datetime.fromisoformat(raw["time"])
        return Mark(
            name=str(raw["name"]),
            time=when if when.tzinfo else when.replace(tzinfo=dt.UTC),
            position=raw.get("position"),
            op=None if raw.get("op") is None else int(raw["op"]),
            trail_last_op=int(raw.get("trail_last_op") or 0),
            trail_id=str(raw.get("trail_id") or ""),
            source_engine=str(raw.get("source_engine") or ""),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrailError(
            f"mark file {path} is unreadable: {exc}", hint="fix or delete it"
        ) from None


def read_mark(directory: Path, name: str) -> Mark:
    """The mark called ``name``; a :class:`ConfigError` listing the marks when absent."""
    check_name(name)
    path = Path(directory) / MARKS_DIR / f"{name}.json"
    if not path.exists():
        known = ", ".join(m.name for m in list_marks(directory)) or "none"
        raise ConfigError(
            f"no mark named {name!r} in the trail {directory} (marks: {known})",
            hint="`redoline mark NAME` records one; `redoline trail stats` lists them",
        )
    return _parse(path)


def list_marks(directory: Path) -> list[Mark]:
    """Every mark, oldest first."""
    folder = Path(directory) / MARKS_DIR
    if not folder.is_dir():
        return []
    marks = [_parse(p) for p in folder.glob("*.json") if not p.name.startswith(".")]
    return sorted(marks, key=lambda m: (m.time, m.name))


def remove_mark(directory: Path, name: str) -> None:
    """Delete the mark called ``name`` (a :class:`ConfigError` when there is none)."""
    read_mark(directory, name)
    folder = Path(directory) / MARKS_DIR
    (folder / f"{name}.json").unlink()
    fsync_dir(folder)
