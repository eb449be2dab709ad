"""Points in the source's history: an operation number, a commit time, or a transaction id.

``redoline apply --until-*`` replays the trail up to and including such a point and stops;
``redoline undo --to-*`` reverses everything after one. Both read the point from the trail
(DESIGN.md: Time travel): operation numbers are the trail's own, commit times are the
source's commit timestamps as captured, transaction ids are the source's.

Times: ISO-8601 with a zone (``2026-12-02T14:01:00+01:00``, ``...Z``), a time without a
zone taken as UTC, or relative to now (``-15m``, ``-2h``, ``-1d``, ``-30s``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.errors import ConfigError, Terminal, ToolkitError
from connectors.model import TableId, Transaction

if TYPE_CHECKING:
    from apply.snapshot import TableWindow

__all__ = [
    "EXIT_POINT",
    "PointError",
    "PointOutcome",
    "StopPoint",
    "bounded",
    "commit_utc",
    "describe_txn",
    "parse_time",
    "refuse_if_past",
    "refuse_inside_snapshot",
]

#: the asked point cannot be reached: the target or the retained trail is past it, or the
#: trail ends before it (docs/exit-codes.md)
EXIT_POINT = 11


class PointError(ToolkitError, Terminal):
    """The point in time asked for cannot be reached from this target and trail."""

    exit_code = EXIT_POINT


_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """An aware UTC datetime from ISO-8601 (no zone: UTC) or a relative ``-15m``."""
    text = text.strip()
    now = now or dt.datetime.now(dt.UTC)
    rel = _RELATIVE.match(text)
    if rel:
        return now - dt.timedelta(seconds=float(rel.group(1)) * _UNITS[rel.group(2)])
    try:
        value = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise ConfigError(
            f"cannot read {text!r} as a time",
            hint="give ISO-8601 with a zone (2026-12-02T14:01:00+01:00 or ...Z; without a zone "
            "it is UTC) or a relative time such as -15m, -2h, -1d",
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # documented: a time without a zone is UTC
    return value.astimezone(dt.UTC)


def commit_utc(txn: Transaction) -> dt.datetime:
    """The transaction's commit time as aware UTC (captured naive times are UTC)."""
    t = txn.commit_time
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


@dataclass(frozen=True)
class StopPoint:
    """Exactly one of ``op``, ``time``, ``xid``: the last change to include."""

    op: int | None = None
    time: dt.datetime | None = None
    xid: str | None = None

    def __post_init__(self) -> None:
        given = [x for x in (self.op, self.time, self.xid) if x is not None]
        if len(given) != 1:
            raise ConfigError("give exactly one point: an operation, a time or a transaction id")

    def describe(self) -> str:
        if self.op is not None:
            return f"operation {self.op}"
        if self.time is not None:
            return f"time {self.time.isoformat()}"
        return f"transaction {self.xid}"

    def includes(self, txn: Transaction) -> bool:
        """Whether ``txn`` lies at or before the point (for xid: is the point's transaction
        or, as the caller walks in order, one before it)."""
        if self.op is not None:
            return txn.last_op <= self.op
        if self.time is not None:
            return commit_utc(txn) <= self.time
        return True


@dataclass
class PointOutcome:
    """What :func:`bounded` saw: whether the point was reached, and where it stopped."""

    reached: bool = False
    last: Transaction | None = None
    #: --until-op inside a transaction: that transaction (not applied: it is atomic)
    straddled: Transaction | None = None
    #: the first transaction read (to tell "already past the point" apart)
    first: Transaction | None = None


def bounded(
    txns: Iterator[Transaction], point: StopPoint, outcome: PointOutcome
) -> Iterator[Transaction]:
    """``txns`` up to and including ``point``; ends there without reading further (so a
    following reader does not wait for the next transaction once the point is passed)."""
    for txn in txns:
        if outcome.first is None:
            outcome.first = txn
        if point.xid is not None:
            yield txn
            outcome.last = txn
            if txn.xid == point.xid:
                outcome.reached = True
                return
            continue
        if not point.includes(txn):
            if point.op is not None and txn.first_op <= point.op:
                outcome.straddled = txn
            else:
                outcome.reached = True
            return
        yield txn
        outcome.last = txn
        if point.op is not None and txn.last_op == point.op:
            outcome.reached = True
            return


def _txn_at(trail_dir: Path, key: bytes | None, op: int) -> Transaction | None:
    """The transaction that ends at operation ``op`` (None when retention removed it)."""
    from capture.trail import TrailReader

    for txn in TrailReader(trail_dir, key=key).transactions(op):
        if txn.last_op >= op:
            return txn if txn.first_op <= op or txn.last_op == op else None
    return None


def describe_txn(txn: Transaction) -> str:
    """``transaction X (operations a..b, committed T)`` for messages."""
    return (
        f"transaction {txn.xid} (operations {txn.first_op}..{txn.last_op}, committed "
        f"{commit_utc(txn).isoformat()})"
    )


def refuse_if_past(trail_dir: Path, key: bytes | None, applied_op: int, point: StopPoint) -> None:
    """Refuse a point the target has already applied past: replay only moves forward."""
    if applied_op <= 0:
        return
    hint = (
        "a target only replays forward: load a fresh copy (a snapshot taken before the point, "
        "then `redoline apply --until-...`), or reverse the later changes with `redoline undo`"
    )
    if point.op is not None:
        if applied_op > point.op:
            raise PointError(
                f"the target has already applied through operation {applied_op}, past "
                f"{point.describe()}: the earliest point it can be brought to is operation "
                f"{applied_op}",
                hint=hint,
            )
        return
    if point.time is not None:
        at = _txn_at(trail_dir, key, applied_op)
        if at is not None and commit_utc(at) > point.time:
            raise PointError(
                f"the target has already applied through operation {applied_op}, "
                f"{describe_txn(at)}, after {point.describe()}: the earliest point it can be "
                f"brought to is {commit_utc(at).isoformat()}",
                hint=hint,
            )
        return
    from capture.trail import TrailReader

    for txn in TrailReader(trail_dir, key=key).transactions(1):
        if txn.first_op > applied_op:
            return
        if txn.xid == point.xid and txn.last_op < applied_op:
            raise PointError(
                f"the target has already applied through operation {applied_op}, past "
                f"{describe_txn(txn)}: the earliest point it can be brought to is operation "
                f"{applied_op}",
                hint=hint,
            )


def refuse_inside_snapshot(
    windows: dict[TableId, TableWindow],
    compare: Callable[[str, str], int],
    outcome: PointOutcome,
    point: StopPoint,
) -> None:
    """A snapshot holds the rows as of its end position: a point before it is unreachable."""
    ends = [w.end for w in windows.values()]
    latest = ends[0]
    for end in ends[1:]:
        if compare(end, latest) > 0:
            latest = end
    last = outcome.last
    # nothing applied this run: refuse_if_past judged the checkpoint already
    if last is not None and compare(last.position, latest) < 0:
        raise PointError(
            f"{point.describe()} is before the end of the snapshot this target was loaded "
            f"from (source position {latest}): the target holds rows as of that position, so "
            f"the earliest restorable point is position {latest}",
            hint="restore from a copy loaded before the point, or use `redoline undo`",
        )
