"""A trail's birth record: its identity, its source, and where on the source's log it starts.

``trail-start.json`` beside the segments is written once, durably, before anything depends on
it (DESIGN.md: Orchestration): ``redoline sync`` and ``redoline snapshot`` fix it *before* the
snapshot, ``redoline capture`` before reading the log. Every later run of any command resumes
from it, so a trail that stays empty across runs (an idle source, a kill before the first
transaction) still starts where the first run decided, and nothing committed in between is lost.

The identity and the source description also travel in every segment header (format version 2),
so a trail shipped to another host describes itself without this file.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from capture.trail._format import list_segment_files, parse_header

if TYPE_CHECKING:
    from connectors.base import Database

from connectors.errors import TrailError

__all__ = ["LEGACY_START_FILE", "START_FILE", "TrailStart", "fix_trail_start", "read_trail_start"]

START_FILE = "trail-start.json"
#: the start marker of earlier versions (a position only): read once, then superseded
LEGACY_START_FILE = "capture-start"


log = logging.getLogger("redoline.trail")


@dataclass(frozen=True)
class TrailStart:
    """What ``trail-start.json`` holds."""

    trail_id: str
    source_id: str
    #: connector engine name (``connectors.base.position_comparator`` takes it); "" unknown
    source_engine: str = ""
    source_dialect: str = ""
    position_scheme: str = ""
    row_ids: bool = False
    #: the source's URL as displayed (never a password): named when a trail is refused
    source_url: str = ""
    #: where capture starts on an empty trail; None: the source keeps it (a PostgreSQL slot),
    #: or the trail already held segments when the record was made
    start_position: str | None = None
    created: float = 0.0

    @staticmethod
    def describe(source: Database | None, source_id: str, position: str | None) -> TrailStart:
        """A new record for ``source`` (None: unknown, e.g. a writer used on its own)."""
        return TrailStart(
            trail_id=uuid.uuid4().hex,
            source_id=source_id,
            source_engine=source.engine if source is not None else "",
            source_dialect=source.dialect if source is not None else "",
            position_scheme=source.position_scheme if source is not None else "",
            row_ids=source.has_row_ids if source is not None else False,
            source_url=source.endpoint.display if source is not None else "",
            start_position=position,
            created=time.time(),
        )


def read_trail_start(directory: Path) -> TrailStart | None:
    """The trail's start record, or None when it has none yet."""
    path = Path(directory) / START_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        fields = set(TrailStart.__dataclass_fields__)
        return TrailStart(**{k: v for k, v in data.items() if k in fields})
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise TrailError(
            f"{path} is unreadable: {exc}",
            hint="restore it from a backup; it fixes where the trail starts on the source",
        ) from None


def _write(directory: Path, record: TrailStart, *, replace_existing: bool) -> bool:
    """Write ``record`` durably; False when another run created the file first."""
    path = directory / START_FILE
    tmp = directory / f".{START_FILE}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(asdict(record), f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        if replace_existing:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic create-if-absent: two first runs agree on one
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def fix_trail_start(
    directory: Path,
    *,
    source_id: str,
    source: Database | None = None,
    position: str | None = None,
) -> TrailStart:
    """The trail's start record, made once (durably) if it does not exist yet.

    A new record for an empty trail starts at ``position``, else at the source's current end
    (``source.end_position()``), unless the source keeps its own start
    (``Database.keeps_position``). A record made without a source (a bare
    :class:`~capture.trail.TrailWriter`) is completed the first time a source is given.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    existing = read_trail_start(directory)
    if existing is not None:
        if existing.source_id != source_id:
            raise TrailError(
                f"the trail {directory} belongs to source {existing.source_id!r}, "
                f"not {source_id!r}",
                hint="use a separate trail directory per source",
            )
        if source is not None and existing.source_engine:
            if existing.source_engine != source.engine:
                raise TrailError(
                    f"the trail {directory} was written by a {existing.source_engine} source "
                    f"({existing.source_url or 'URL not recorded'}), not by {source.engine} "
                    f"{source.endpoint.display}",
                    hint="give each source its own trail directory ([trail] dir / --trail)",
                )
            if existing.source_url and existing.source_url != source.endpoint.display:
                log.warning(
                    "the trail %s was started from %s; now reading %s (same engine: a moved "
                    "server or a new host name is fine, another server's log is not)",
                    directory,
                    existing.source_url,
                    source.endpoint.display,
                )
        if existing.source_engine or source is None:
            return existing
        # made by a writer that did not know the source: complete it, keep its identity
        start = existing.start_position
        if start is None and not source.keeps_position and not list_segment_files(directory):
            start = position or source.end_position()
        described = TrailStart.describe(source, source_id, start)
        completed = replace(described, trail_id=existing.trail_id, created=existing.created)
        _write(directory, completed, replace_existing=True)
        return completed
    start = position
    if start is None:
        try:
            start = (directory / LEGACY_START_FILE).read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            start = None
    files = list_segment_files(directory)
    if files:
        start = None  # capture resumes from the trail's own last position
    elif start is None and source is not None and not source.keeps_position:
        start = source.end_position()
    record = TrailStart.describe(source, source_id, start)
    if files:
        # the record was lost or the trail predates it: keep the identity its headers carry
        path, _sealed = files[max(files)]
        with open(path, "rb") as f:
            header = parse_header(f.read(1 << 16), path.name)
        if header is not None and header.trail_id:
            record = replace(record, trail_id=header.trail_id)
    if not _write(directory, record, replace_existing=False):
        return fix_trail_start(directory, source_id=source_id, source=source, position=position)
    return record
