"""Which replication slot and publication a pipeline uses, and proof that the slot is its own.

A slot feeds exactly one trail. Two pipelines on one cluster sharing a slot would each confirm
what only one of them has made durable, so the other silently misses changes; a slot dropped
and created again under the same name starts later than where the trail stopped. Both are
caught here, from a small record the trail directory keeps, ``pgslot.json`` (the *marker*):

* ``slot``, ``publication``, ``database``, ``system`` (the server's system identifier): what
  the trail is bound to; it is never continued from another server, database or slot;
* ``created``: the slot's consistent point, written the moment this trail's command created
  the slot (``redoline init``, the snapshot, or capture's first run);
* ``position``: the furthest LSN the slot may legitimately be confirmed to without a
  transaction in the trail (the creation point, then heartbeats confirmed past the trail's
  last transaction). A slot whose ``confirmed_flush_lsn`` is ahead of both this and the
  trail's last position was recreated or advanced by someone else (PostgreSQL 15 has no slot
  comment or creation time, but a new slot's consistent point is always past every LSN the
  old one was confirmed to);
* ``dropped``: set by ``redoline drop``; the trail cannot continue.

Names (:func:`resolve_names`): an explicit name (``[source] slot``/``--slot``), else the name
the marker records, else one derived from the pipeline: ``redoline_<source id>_<hash>``, the
hash being the first 8 hex digits of SHA-256 over the trail directory's absolute path (the
source id part is left out while the source id is the default one). Two trails therefore
never pick the same slot by accident, and once the marker exists the name stays with the
trail even if the directory moves. The publication defaults to the slot's name.

A slot that exists while the trail has no marker was not created by this trail: it is
refused (:class:`connectors.errors.ConfigError`), never taken over.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from connectors.errors import ConfigError, ReplicationError
from connectors.postgres.pgoutput import format_lsn, parse_lsn

__all__ = [
    "MARKER_NAME",
    "NAME_RULE",
    "SlotNames",
    "check_owner",
    "default_slot",
    "name_problem",
    "new_marker",
    "read_marker",
    "resolve_names",
    "write_marker",
]

#: the trail's record of the slot it reads
MARKER_NAME: Final = "pgslot.json"
#: PostgreSQL's rule for replication slot names (ReplicationSlotValidateName); publications
#: follow it too, so both can be written into commands without quoting surprises
NAME_RULE: Final = "1 to 63 lower-case letters, digits and underscores"
_NAME_RE: Final = re.compile(r"^[a-z0-9_]{1,63}$")


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a slot or publication name, or None when it can."""
    if isinstance(name, str) and _NAME_RE.match(name):
        return None
    return f"{name!r} is not a usable name: use {NAME_RULE}"


def default_slot(trail_dir: Path, source_id: str | None = None) -> str:
    """The slot name derived from the pipeline (see the module doc)."""
    digest = hashlib.sha256(str(Path(trail_dir).resolve()).encode()).hexdigest()[:8]
    ident = ""
    if source_id and source_id != "default":
        ident = re.sub(r"[^a-z0-9]+", "_", source_id.lower()).strip("_")[:40].strip("_")
    return f"redoline_{ident}_{digest}" if ident else f"redoline_{digest}"


def read_marker(trail_dir: Path | None) -> dict[str, Any] | None:
    """The trail's slot marker, or None when it has none."""
    if trail_dir is None:
        return None
    path = Path(trail_dir) / MARKER_NAME
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ReplicationError(f"cannot read the slot marker {path}: {exc}") from None
    if not isinstance(record, dict):
        raise ReplicationError(f"the slot marker {path} is not a JSON object")
    return record


def write_marker(trail_dir: Path, record: dict[str, Any]) -> None:
    """Durably replace the trail's slot marker (write, fsync, rename, fsync the directory)."""
    directory = Path(trail_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MARKER_NAME
    record = {**record, "updated": dt.datetime.now(dt.UTC).isoformat()}
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_marker(names: SlotNames, database: str, system: str, created: str) -> dict[str, Any]:
    """The record of a slot this trail has just created at LSN ``created``."""
    return {
        "slot": names.slot,
        "publication": names.publication,
        "database": database,
        "system": system,
        "created": created,
        "position": created,
    }


@dataclass(frozen=True)
class SlotNames:
    """The slot and publication a pipeline uses, and what its trail records about them."""

    slot: str
    publication: str
    #: where the marker lives; None for library use with explicit names (nothing recorded)
    trail_dir: Path | None
    marker: dict[str, Any] | None


def resolve_names(
    *,
    slot: str | None = None,
    publication: str | None = None,
    trail_dir: Path | str | None = None,
    source_id: str | None = None,
) -> SlotNames:
    """Explicit name, else the marker's, else derived from the pipeline (module doc)."""
    directory = Path(trail_dir) if trail_dir is not None else None
    marker = read_marker(directory)
    recorded = marker or {}
    chosen = slot or recorded.get("slot")
    if not chosen:
        if directory is None:
            raise ConfigError(
                "no replication slot name: give one, or the trail directory it is derived from",
                key="source.slot",
            )
        chosen = default_slot(directory, source_id)
    pub = publication or recorded.get("publication") or chosen
    for what, key, name in (
        ("slot", "source.slot", chosen),
        ("publication", "source.publication", pub),
    ):
        problem = name_problem(name)
        if problem is not None:
            raise ConfigError(f"{what} name {problem}", key=key)
    return SlotNames(str(chosen), str(pub), directory, marker)


def check_owner(
    names: SlotNames,
    exists: bool,
    *,
    database: str,
    system: str,
    where: str,
    confirmed_flush: int | None = None,
    trail_position: int | None = None,
) -> None:
    """Refuse a slot this trail does not own, and a trail whose slot is gone or replaced.

    ``exists`` says whether the slot is on the server now. With ``confirmed_flush`` (the
    slot's) and ``trail_position`` (the trail's last transaction, None when it has none) the
    slot is also checked not to be ahead of where this trail may have confirmed it.
    """
    if names.trail_dir is None:
        return  # library use with explicit names: no trail to bind
    marker = names.marker
    slot = names.slot
    marker_path = names.trail_dir / MARKER_NAME
    if marker is None:
        if exists:
            raise ConfigError(
                f"replication slot {slot!r} already exists on {where}, but this trail "
                f"({names.trail_dir}) did not create it: it belongs to another pipeline (or "
                "to an interrupted run that never recorded it); it is not taken over",
                key="source.slot",
                hint="give this pipeline its own slot ([source] slot / --slot, or leave it "
                "unset for a name derived from the trail), or drop the stray slot "
                f"(SELECT pg_drop_replication_slot('{slot}')) if nothing uses it",
            )
        return
    if marker.get("dropped"):
        raise ReplicationError(
            f"replication slot {slot!r} of this trail ({names.trail_dir}) was dropped by "
            f"`redoline drop` at {marker['dropped']}: the trail cannot be continued",
            hint="start a new trail (an empty --trail directory) and take a new snapshot",
        )
    for key, now in (("slot", slot), ("database", database), ("system", system)):
        was = marker.get(key)
        if was and now and was != now:
            raise ReplicationError(
                f"this trail was captured through {key} {was!r}, but capture now reads "
                f"{key} {now!r} ({where})",
                hint="point capture at the source and slot this trail came from, or start "
                "a new trail",
            )
    recorded = marker.get("position")
    if not exists:
        at = format_lsn(trail_position) if trail_position is not None else recorded
        raise ReplicationError(
            f"replication slot {slot!r} does not exist, but this trail is bound to it "
            f"(at {at or 'its start'}): it was dropped, and the changes since then are gone "
            "from the server",
            hint="start a new trail (an empty --trail directory) and take a new snapshot; "
            f"or, if nothing was captured or loaded yet, remove {marker_path} and run again",
        )
    if confirmed_flush is None:
        return
    limits = [trail_position] if trail_position is not None else []
    if recorded:
        limits.append(parse_lsn(recorded))
    if not limits:
        return  # an old marker without a position, and an empty trail: nothing to compare
    allowed = max(limits)
    if confirmed_flush > allowed:
        raise ReplicationError(
            f"replication slot {slot!r} is at {format_lsn(confirmed_flush)}, ahead of the "
            f"trail's position {format_lsn(allowed)}: it was recreated or advanced by "
            "something else, and the changes in between are lost",
            hint="give each pipeline its own slot ([source] slot); start a new trail (an "
            "empty --trail directory) and take a new snapshot",
        )
