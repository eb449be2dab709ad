"""Points in the source's history: an operation number, a commit time, a transaction id, or a
named restore point (a mark: a source position or an operation number).

``redoline apply --until-*`` replays the trail up to and including such a point and stops;
``redoline undo --to-*`` reverses everything after one. Both read the point from the trail
(DESIGN.md: Time travel): operation numbers are the trail's own, commit times are the
source's commit timestamps as captured, transaction ids are the source's, a mark's source
position orders against the trail's commit positions by the source engine's rules.

Times: ISO-8601 with a zone (``2026-12-02T14:01:00+01:00``, ``...Z``), a time without a
zone taken as UTC, or relative to now (``-15m``, ``-2h``, ``-1d``, ``-30s``).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.errors import ConfigError, Terminal, ToolkitError, TrailError
from connectors.model import TableId, Transaction

if TYPE_CHECKING:
    from apply.catchup import TableWindow
    from capture.trail import Mark

__all__ = [
    "EXIT_POINT",
    "PointError",
    "PointOutcome",
    "StopPoint",
    "bounded",
    "commit_utc",
    "delayed",
    "describe_txn",
    "mark_op",
    "mark_point",
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
    """Exactly one of ``op``, ``time``, ``xid``, ``position``: the last change to include
    (``position``: every transaction whose commit position is at or before it, ordered by
    ``compare``)."""

    op: int | None = None
    time: dt.datetime | None = None
    xid: str | None = None
    position: str | None = None
    compare: Callable[[str, str], int] | None = field(default=None, compare=False)
    #: how messages name the point (a mark's name), instead of its raw form
    label: str = ""

    def __post_init__(self) -> None:
        given = [x for x in (self.op, self.time, self.xid, self.position) if x is not None]
        if len(given) != 1:
            raise ConfigError(
                "give exactly one point: an operation, a time, a transaction id or a mark"
            )
        if self.position is not None and self.compare is None:
            raise ConfigError("a point at a source position needs the engine's position order")

    def describe(self) -> str:
        if self.label:
            return self.label
        if self.position is not None:
            return f"source position {self.position}"
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
        if self.position is not None:
            assert self.compare is not None
            return self.compare(txn.position, self.position) <= 0
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
    if point.position is not None:
        at = _txn_at(trail_dir, key, applied_op)
        if at is not None and not point.includes(at):
            raise PointError(
                f"the target has already applied through operation {applied_op}, "
                f"{describe_txn(at)}, after {point.describe()}: the earliest point it can be "
                f"brought to is operation {applied_op}",
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


def _mark(trail_dir: Path, name: str, key: bytes | None) -> tuple[Mark, Callable[[str, str], int]]:
    from capture.trail import read_mark, trail_info
    from connectors.base import position_comparator

    mark = read_mark(trail_dir, name)
    info = trail_info(trail_dir, key=key)
    if mark.trail_id and info.trail_id and mark.trail_id != info.trail_id:
        raise TrailError(
            f"{mark.describe()} was taken on another trail (id {mark.trail_id}) than "
            f"{trail_dir} (id {info.trail_id})",
            hint="a mark is only valid in the trail directory it was made in",
        )
    engine = mark.source_engine or info.source_engine
    if mark.position is not None and not engine:
        raise TrailError(
            f"{mark.describe()}: the trail does not name its source engine (format 1), so "
            "the mark's position cannot be ordered against it",
            hint="run `redoline capture` once with this version",
        )
    return mark, position_comparator(engine) if engine else (lambda a, b: 0)


def mark_point(trail_dir: Path, name: str, key: bytes | None) -> StopPoint:
    """The replay point of mark ``name`` (``--until-mark``)."""
    mark, compare = _mark(trail_dir, name, key)
    if mark.op is not None:
        return StopPoint(op=mark.op, label=mark.describe())
    return StopPoint(position=mark.position, compare=compare, label=mark.describe())


def mark_op(trail_dir: Path, name: str, key: bytes | None) -> tuple[str, int | None]:
    """Mark ``name`` as an operation number: the last operation before it (None: the trail
    holds no transaction after the mark yet, so everything in it is before the mark), and
    the mark's description."""
    from capture.trail import TrailReader, trail_info

    mark, compare = _mark(trail_dir, name, key)
    if mark.op is not None:
        return mark.describe(), mark.op
    assert mark.position is not None
    info = trail_info(trail_dir, key=key)
    # what the trail held when the mark was taken was committed before it
    start = max(mark.trail_last_op + 1, info.first_op, 1)
    for txn in TrailReader(trail_dir, key=key).transactions(start):
        if compare(txn.position, mark.position) > 0:
            return mark.describe(), txn.first_op - 1
    return mark.describe(), None


def delayed(
    txns: Iterator[Transaction],
    delay: float,
    *,
    follow: bool,
    stop: Callable[[], bool],
    held: list[Transaction],
) -> Iterator[Transaction]:
    """``txns``, each only once its source commit time is ``delay`` seconds old (a delayed
    replica: human error on the source reaches this target ``delay`` later, time to stop it).

    Waits for a transaction that is too young while ``follow`` (until ``stop()``); otherwise
    ends before it and records it in ``held`` (``--until-caught-up``: caught up as far as the
    delay allows). Commit times are the source's; "now" is this host's clock.
    """
    wait_for = dt.timedelta(seconds=delay)
    for txn in txns:
        while True:
            left = (commit_utc(txn) + wait_for - dt.datetime.now(dt.UTC)).total_seconds()
            if left <= 0:
                break
            if not follow or stop():
                held.append(txn)
                return
            time.sleep(min(left, 0.5))
        yield txn
