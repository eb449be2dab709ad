"""Waiting for apply before verify re-checks: the source's end position and the target's
checkpoint positions (``redoline.redoline_checkpoint``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from connectors.base import Database
from connectors.checkpoint import Checkpoint, read_checkpoints
from connectors.checksum import checksum_sql
from connectors.errors import ToolkitError

__all__ = ["Settled", "source_end_position", "wait_for_apply"]

log = logging.getLogger("redoline.verify")

#: ``settled(end_position, checkpoints)``: nothing before the position is left to apply
Settled = Callable[[str, Sequence[Checkpoint]], bool]


def source_end_position(source: Database) -> str | None:
    """The source's end-of-log position now (None when it has no log or cannot say)."""
    if not source.has_log:
        return None
    try:
        return source.end_position()
    except (ToolkitError, NotImplementedError):
        return None
    except Exception:  # a source without binlog/slot rights: fall back to waiting
        log.debug("cannot read the source's end position", exc_info=True)
        return None


def wait_for_apply(
    source: Database,
    target: Database,
    end_position: str | None,
    wait: float,
    settled: Settled | None = None,
) -> bool:
    """Wait until apply has written the target past ``end_position``; True when it has.

    Apply records the source position of the last transaction it applied in the target's
    checkpoint table (``redoline.redoline_checkpoint``, one row per applier). When that table
    exists and the source could tell its end position at the start of the first pass, this
    polls until every applier's position is at or past it, or ``settled(end_position,
    checkpoints)`` says nothing before it is left to apply (a source's log moves on with
    records no replicated table holds, which apply never "reaches";
    :func:`verify.pending.capture_settled`), at most ``max(60, 12 * wait)`` seconds.
    Otherwise — no replication into this target, or a source without a log — it simply
    waits ``wait`` seconds.
    """
    found = _checkpoints(target)
    if end_position is None or found is None:
        time.sleep(wait)
        return False
    deadline = time.monotonic() + max(60.0, 12 * wait)
    while True:
        positions = [c.position for c in found]
        try:
            if positions and all(
                p is not None and source.compare_positions(p, end_position) >= 0 for p in positions
            ):
                return True
            if settled is not None and settled(end_position, found):
                return True
        except (ValueError, NotImplementedError, ToolkitError):
            time.sleep(wait)  # positions of another format: cannot decide, just wait
            return False
        if time.monotonic() >= deadline:
            log.warning(
                "apply has not reached %s on %s after %.0f s; re-checking anyway",
                end_position,
                target.endpoint.display,
                max(60.0, 12 * wait),
            )
            return False
        time.sleep(0.5)
        found = _checkpoints(target) or []


def _checkpoints(target: Database) -> list[Checkpoint] | None:
    """Every applier's checkpoint on ``target``; None without a checkpoint table."""
    try:
        session = checksum_sql(target).session()
    except ToolkitError:
        return None
    try:
        return read_checkpoints(target, session.query)
    finally:
        session.close()
