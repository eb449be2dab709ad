"""Trail retention: which sealed segments may be deleted, and deleting them.

A sealed segment is deleted only when

* every registered consumer (apply targets, shippers; :func:`capture.trail.register_consumer`)
  has applied its last operation, and
* the policy allows it: it is older than ``keep_days`` (by its last commit time), it is not
  among the newest ``keep_segments`` segments, and the newest segments that together hold at
  least ``keep_bytes`` do not include it. Each limit that is set must allow the deletion;
  they are minimums kept for point-in-time replay and undo.

Deletion only ever removes a *prefix* of the trail (oldest first), so what remains stays
continuous. The open segment and the newest sealed segment are never deleted: a restarted
writer continues the operation numbers and the table catalog from them, even when a crash
left the open segment with nothing durable in it. With no consumer
registered nothing is deleted unless ``allow_without_consumers`` is set, because an apply
that has not registered yet would otherwise lose its start.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from capture.trail import SegmentInfo, consumers, trail_info
from capture.trail._writer import fsync_dir
from connectors.errors import ConfigError

__all__ = [
    "ConsumerHold",
    "RetentionPlan",
    "RetentionPolicy",
    "apply_retention",
    "consumer_holds",
    "plan_retention",
]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Minimums to keep; None means "no limit of this kind"."""

    keep_days: float | None = None
    keep_bytes: int | None = None
    keep_segments: int | None = None
    allow_without_consumers: bool = False

    def __post_init__(self) -> None:
        for name in ("keep_days", "keep_bytes", "keep_segments"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"retention {name} must not be negative (got {value})")


@dataclass(slots=True)
class RetentionPlan:
    """What retention would delete, and why the oldest kept segment is kept."""

    delete: list[SegmentInfo] = field(default_factory=list)
    keep: list[SegmentInfo] = field(default_factory=list)
    reason: str = ""

    @property
    def freed_bytes(self) -> int:
        return sum(s.size for s in self.delete)


def _end_time(segment: SegmentInfo) -> dt.datetime | None:
    if not segment.last_commit_time:
        return None
    when = dt.datetime.fromisoformat(segment.last_commit_time)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)  # naive commit times are taken as UTC
    return when


def plan_retention(
    directory: Path, policy: RetentionPolicy, *, now: dt.datetime | None = None
) -> RetentionPlan:
    """Decide which segments may go (nothing is deleted)."""
    now = now or dt.datetime.now(dt.UTC)
    segments = trail_info(Path(directory)).segments
    registered = consumers(Path(directory))
    plan = RetentionPlan(keep=list(segments))
    if not registered and not policy.allow_without_consumers:
        plan.reason = "no consumer is registered"
        return plan
    slowest = min(registered.values()) if registered else None
    # bytes and counts kept by the newest segments, seen from each segment
    newer_bytes = 0
    protected: set[int] = set()
    for index, segment in enumerate(reversed(segments)):
        if policy.keep_segments is not None and index < policy.keep_segments:
            protected.add(segment.sequence)
        if policy.keep_bytes is not None and newer_bytes < policy.keep_bytes:
            protected.add(segment.sequence)
        newer_bytes += segment.size
    last_sealed = max((i for i, s in enumerate(segments) if s.sealed), default=-1)
    for index, segment in enumerate(segments):
        why = ""
        if not segment.sealed:
            why = "it is the open segment"
        elif index == last_sealed:
            why = "it is the newest sealed segment"
        elif slowest is not None and slowest < segment.last_op:
            name = min(registered, key=lambda n: registered[n])
            why = f"consumer {name} has applied only up to operation {slowest}"
        elif segment.sequence in protected:
            why = "keep_segments/keep_bytes keep it"
        elif policy.keep_days is not None:
            end = _end_time(segment)
            if end is None or now - end < dt.timedelta(days=policy.keep_days):
                why = f"it is younger than keep_days={policy.keep_days}"
        if why:
            plan.reason = f"segment {segment.sequence} is kept: {why}"
            break
        plan.delete.append(segment)
    plan.keep = segments[len(plan.delete) :]
    return plan


#: prefixes of the consumer names this version registers: one per apply target
#: (``apply.trail_apply.consumer_name``) and one per shipper; anything else is a name an earlier
#: version used, which nothing updates any more
CURRENT_PREFIXES = ("target.", "ship.")


@dataclass(frozen=True, slots=True)
class ConsumerHold:
    """One registered consumer and the sealed segments it keeps from deletion."""

    name: str
    applied_op: int
    segments: int
    bytes: int

    @property
    def legacy(self) -> bool:
        return not self.name.startswith(CURRENT_PREFIXES)


def consumer_holds(directory: Path) -> list[ConsumerHold]:
    """Every registered consumer with what it holds (slowest first), for ``trail prune``."""
    segments = [s for s in trail_info(Path(directory)).segments if s.sealed]
    out = []
    for name, op in consumers(Path(directory)).items():
        held = [s for s in segments if s.last_op > op]
        out.append(ConsumerHold(name, op, len(held), sum(s.size for s in held)))
    return sorted(out, key=lambda h: (h.applied_op, h.name))


def apply_retention(
    directory: Path,
    policy: RetentionPolicy,
    *,
    now: dt.datetime | None = None,
    dry_run: bool = False,
) -> RetentionPlan:
    """Delete what :func:`plan_retention` allows, oldest first; return the plan."""
    plan = plan_retention(directory, policy, now=now)
    if dry_run or not plan.delete:
        return plan
    for segment in plan.delete:
        try:
            os.unlink(segment.path)
        except FileNotFoundError:
            pass
    fsync_dir(Path(directory))
    return plan
