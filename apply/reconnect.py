"""Apply that outlives the target going away: reopen the writer and resume from the checkpoint.

The checkpoint lives in the target, in the same transaction as the data (DESIGN.md: Exactly
once), so after a dropped connection nothing is half applied: a new writer resumes right after
the last committed target transaction. Transient errors are retried with backoff — forever in
continuous runs (each attempt logged), for ``retry_for`` seconds in ``--until-caught-up`` runs,
which then end with :class:`connectors.errors.RetriesExhaustedError` (exit 75).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from apply.options import ApplyOptions, ApplyStats
from apply.point import PointOutcome, StopPoint
from apply.trail_apply import apply_trail
from capture import progress
from capture.retry import Retry
from connectors.base import Database

__all__ = ["apply_reconnecting"]

log = logging.getLogger("redoline.apply")

#: counters that add up over the attempts of one run (the rest describe the last state)
_SUMMED = (
    "transactions",
    "changes",
    "groups",
    "collisions",
    "rejected_transactions",
    "skipped_origin",
    "ddl_applied",
    "ddl_skipped",
    "replayed_groups",
    "seconds",
)


def apply_reconnecting(
    database: Database,
    trail_dir: Path,
    options: ApplyOptions,
    *,
    key: bytes | None = None,
    follow: bool = False,
    stop: Callable[[], bool] | None = None,
    retry_for: float | None = None,
    backoff: tuple[float, float] = (0.5, 30.0),
    on_retry: Callable[[int, float, str], None] | None = None,
    until: StopPoint | None = None,
    outcome: PointOutcome | None = None,
) -> ApplyStats:
    """:func:`apply.trail_apply.apply_trail` on a writer of ``database``, reconnecting when the
    target drops or cannot be reached (see the module doc)."""
    should_stop = stop or (lambda: False)
    total: ApplyStats | None = None
    retry = Retry(
        "apply",
        retry_for=retry_for,
        backoff=backoff,
        on_retry=on_retry,
        hint="nothing was lost: the target's checkpoint is where the last committed "
        "transaction left it; run again when the target is back ([target] retry_for sets how "
        "long a run keeps trying)",
        progress=progress.stage("apply", options.target_id),
    )
    while True:
        try:
            writer = database.open_writer()
            retry.succeeded()  # connected (again)
            try:
                stats = apply_trail(
                    writer,
                    trail_dir,
                    options,
                    key=key,
                    follow=follow,
                    stop=should_stop,
                    until=until,
                    outcome=outcome,
                )
            finally:
                try:
                    writer.close()
                except Exception:  # the connection may be the thing that failed
                    log.debug("closing the target writer failed", exc_info=True)
            return _merge(total, stats)
        except Exception as exc:
            deadline = time.monotonic() + retry.failed(exc)
            while time.monotonic() < deadline:
                if should_stop():
                    return total or ApplyStats()
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _merge(total: ApplyStats | None, last: ApplyStats) -> ApplyStats:
    if total is None:
        return last
    for f in fields(ApplyStats):
        if f.name in _SUMMED:
            setattr(last, f.name, getattr(total, f.name) + getattr(last, f.name))
    if total.first_op:
        last.first_op = total.first_op
    return last
