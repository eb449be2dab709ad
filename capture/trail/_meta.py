"""Around the segments: consumer progress, encryption keys, the full integrity check."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from capture.trail._format import list_segment_files
from capture.trail._reader import TrailReader, _read_header
from capture.trail._segment import parse_segment, tail_is_torn
from capture.trail._writer import fsync_dir
from connectors.errors import ConfigError, TrailError

__all__ = [
    "KEY_ENV_DEFAULT",
    "CheckReport",
    "check_trail",
    "consumers",
    "load_key",
    "register_consumer",
    "remove_consumer",
]

#: the environment variable `--key-env` reads when given no name
KEY_ENV_DEFAULT = "REDOLINE_TRAIL_KEY"

CONSUMERS_DIR = "consumers"


def _file_stem(name: str) -> str:
    """A file name for any consumer name (the record inside keeps the real name)."""
    if not name or len(name) > 200 or "\x00" in name:
        raise ConfigError(f"consumer name {name!r} must be 1 to 200 characters")
    return (
        urllib.parse.quote(name, safe="@:+-_=,")
        if name[0] != "."
        else "%2E" + (urllib.parse.quote(name[1:], safe="@:+-_=,."))
    )


def register_consumer(directory: Path, name: str, applied_op: int) -> None:
    """Record that consumer ``name`` has applied every operation up to ``applied_op``.

    Retention keeps every segment some registered consumer still needs. The record is
    replaced atomically (write, fsync, rename).
    """
    folder = Path(directory) / CONSUMERS_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = {"name": name, "applied_op": int(applied_op), "updated": time.time()}
    tmp = folder / f".{_file_stem(name)}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / f"{_file_stem(name)}.json")
    fsync_dir(folder)


def remove_consumer(directory: Path, name: str) -> None:
    """Forget a consumer (retention then no longer waits for it)."""
    try:
        (Path(directory) / CONSUMERS_DIR / f"{_file_stem(name)}.json").unlink()
    except FileNotFoundError:
        pass


def consumers(directory: Path) -> dict[str, int]:
    """Registered consumers and the last operation each has applied."""
    folder = Path(directory) / CONSUMERS_DIR
    found: dict[str, int] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            found[str(record["name"])] = int(record["applied_op"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TrailError(
                f"consumer record {path} is unreadable: {exc}",
                hint="fix or delete it; retention will not run while it is unreadable",
            ) from None
    return found


def _parse_key(text: bytes, where: str) -> bytes:
    if len(text) == 32:
        return text
    stripped = text.strip()
    if re.fullmatch(rb"[0-9a-fA-F]{64}", stripped):
        return bytes.fromhex(stripped.decode())
    try:
        key = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) == 32:
        return key
    raise ConfigError(
        f"{where} does not hold a 32-byte AES-256 key (raw, 64 hex digits, or base64)",
        hint='make one with: python -c "import os; print(os.urandom(32).hex())"',
    )


def load_key(*, file: Path | None = None, env: str | None = None) -> bytes | None:
    """The trail key from a file or an environment variable (None when neither is given).

    The key is 32 bytes, stored raw, as 64 hex digits, or base64.
    """
    if file is not None and env is not None:
        raise ConfigError("give the trail key either as a file or as a variable, not both")
    if file is not None:
        try:
            return _parse_key(Path(file).read_bytes(), f"key file {file}")
        except OSError as exc:
            raise ConfigError(f"cannot read key file {file}: {exc.strerror}") from None
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"environment variable {env} is not set (trail key)")
        return _parse_key(value.encode(), f"environment variable {env}")
    return None


@dataclass(slots=True)
class CheckReport:
    """What ``check_trail`` verified."""

    segments: int = 0
    transactions: int = 0
    changes: int = 0
    first_op: int = 0
    last_op: int = 0
    torn_tail_bytes: int = 0
    warnings: list[str] = field(default_factory=list)


def check_trail(directory: Path, *, key: bytes | None = None) -> CheckReport:
    """Read and verify the whole trail; raise :class:`TrailError` at the first defect.

    A torn tail in the open segment (a crash during a write) is reported as a warning: the
    writer truncates it when it reopens the trail.
    """
    directory = Path(directory)
    report = CheckReport()
    files = list_segment_files(directory)
    report.segments = len(files)
    if not files:
        return report
    reader = TrailReader(directory, key=key)
    first = True
    head = _read_header(files[min(files)][0])
    for txn in reader.transactions(start_op=head.first_op if head else 1):
        if first:
            report.first_op = txn.first_op
            first = False
        report.transactions += 1
        report.changes += len(txn.changes)
        report.last_op = txn.first_op + len(txn.changes) - 1
    last_seq = max(files)
    path, sealed = files[last_seq]
    if not sealed:
        data = path.read_bytes()
        parsed = parse_segment(data, path.name, sealed=False)
        torn = len(data) - parsed.txn_end
        if parsed.stop != "end" and not tail_is_torn(data, parsed.end, parsed.stop):
            raise TrailError(
                "corrupt block in the open segment", segment=path.name, offset=parsed.end
            )
        if torn:
            report.torn_tail_bytes = torn
            report.warnings.append(
                f"segment {path.name}: {torn} bytes of torn tail at offset {parsed.txn_end} "
                "(an interrupted write; the writer truncates it when it reopens the trail)"
            )
    return report
