"""``redoline sync``: snapshot when needed, capture and apply, in one process, one host.

::

    report = run_sync(source_db, target_db, SyncOptions(trail_dir=Path("trail"), ...))

Order of events, so nothing is lost between the snapshot and the log:

1. The trail's start point is fixed *before* the snapshot, once, durably
   (``trail-start.json``, :func:`capture.trail.fix_trail_start`): the source's end position
   when the trail is new; every later run (cron, restart after a kill) resumes from that
   record or from the trail's last transaction, so every change after it reaches the trail,
   even when the trail stayed empty between runs. A source that keeps its
   position on the server (``Database.keeps_position``: PostgreSQL's slot) needs no such
   point: its snapshot creates the slot (or starts from it), and capture starts only after
   the snapshot, from the slot, so the two are continuous.
2. Tables not loaded yet are snapshotted (:func:`apply.snapshot.run_snapshot`).
3. Capture runs (a thread; or, ``until_caught_up``, to the source's end position first).
4. Apply (:func:`apply.trail_apply.apply_trail`, the same path as ``redoline apply``) reads
   the trail through :func:`apply.catchup.catchup_transactions`: changes the snapshot
   already holds are dropped, the undecidable window is applied in collision mode, then
   plain apply. ``until_caught_up`` stops at the end of the trail; otherwise it follows
   the trail until :attr:`SyncOptions.stop_event` is set (SIGTERM/Ctrl-C in the CLI), after
   the current transaction.

This chaining lives above the stages (DESIGN.md, orchestration): capture, ship and apply each
run alone, and nothing inside ``apply/`` knows that a capture or a snapshot precedes it, so a
shipping stage can sit between them.

A lock file in the state directory keeps two runs for the same source and target from
overlapping (cron): the second raises :class:`LockedError` (exit code 8) and does nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apply.snapshot import (
    SnapshotOptions,
    SnapshotReport,
    run_snapshot,
)
from capture import progress
from capture.trail import trail_info
from connectors.base import Database
from connectors.errors import LockedError, ToolkitError

__all__ = [
    "SyncOptions",
    "SyncReport",
    "hold_lock",
    "record_status",
    "run_sync",
]

log = logging.getLogger("redoline.sync")

STATUS_FILE = "last-run.json"


@dataclass
class SyncOptions:
    """What ``run_sync`` needs beyond the two databases."""

    trail_dir: Path
    state_dir: Path = Path(".redoline")
    source_id: str = "default"
    target_id: str = "default"
    snapshot: SnapshotOptions = field(default_factory=SnapshotOptions)
    #: passed to :class:`apply.options.ApplyOptions` (ids are filled in)
    apply_options: dict[str, Any] = field(default_factory=dict)
    #: capture filters (``capture.filters.CaptureFilter``); None: the snapshot's tables
    capture_filter: Any = None
    until_caught_up: bool = False
    skip_snapshot: bool = False
    key: bytes | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    segment_bytes: int = 10_000_000
    #: the source engine's own options, for its log reader and its snapshot alike
    #: (PostgreSQL: ``slot``, ``publication``); the trail directory and source id are added
    source_options: dict[str, Any] = field(default_factory=dict)
    #: seconds capture retries an unreachable source before exit 75 (None: forever)
    retry_for: float | None = None
    #: seconds apply reconnects to an unreachable target before exit 75 (None: forever)
    target_retry_for: float | None = None
    #: apply up to and including this point, then stop (``apply.point.StopPoint``)
    until: Any = None
    #: where a bounded apply stopped (``apply.point.PointOutcome``), filled by the run
    outcome: Any = None
    #: seconds between heartbeat rows on the source (``[source] heartbeat``); 0: none
    heartbeat: float = 0.0


@dataclass
class SyncReport:
    """What one run did (``--json``)."""

    snapshot: SnapshotReport | None = None
    capture: dict[str, Any] = field(default_factory=dict)
    apply: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot.to_json() if self.snapshot else None,
            "capture": self.capture,
            "apply": self.apply,
            "seconds": round(self.seconds, 3),
        }


@contextlib.contextmanager
def hold_lock(state_dir: Path, name: str) -> Iterator[Path]:
    """An exclusive, non-blocking lock file; :class:`LockedError` when another run holds it.

    ``flock`` is released by the kernel when the process dies, so a crashed run never leaves
    a stale lock behind.
    """
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = path.read_text().strip() if path.exists() else "?"
        raise LockedError(
            f"another redoline run holds {path} (process {holder or '?'}); nothing was done",
            hint="let it finish; cron runs overlap when one takes longer than the interval",
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield path
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def record_status(state_dir: Path, name: str, **fields: Any) -> None:
    """Merge ``fields`` into the state directory's run record (read by ``redoline status``)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    entry = data.setdefault(name, {})
    entry.update(fields)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _apply(
    target: Database,
    options: SyncOptions,
    on_retry: Callable[[int, float, str], None],
    *,
    follow: bool | None = None,
    stop: Callable[[], bool] | None = None,
) -> Any:
    """The one apply path (:func:`apply.trail_apply.apply_trail`) over the trail into ``target``.

    ``follow`` and ``stop`` default to the run's (follow unless ``until_caught_up``; the
    stop event)."""
    from apply.options import ApplyOptions
    from apply.reconnect import apply_reconnecting

    apply_options = ApplyOptions(
        **{
            **options.apply_options,
            "source_id": options.source_id,
            "target_id": options.target_id,
        }
    )
    return apply_reconnecting(
        target,
        options.trail_dir,
        apply_options,
        key=options.key,
        follow=not options.until_caught_up if follow is None else follow,
        stop=stop or options.stop_event.is_set,
        retry_for=options.target_retry_for,
        on_retry=on_retry,
        until=options.until,
        outcome=options.outcome,
    )


def run_sync(source: Database, target: Database, options: SyncOptions) -> SyncReport:
    """Snapshot (if needed), capture and apply; see the module doc for the order."""
    from capture.runner import CaptureOptions, run_capture
    from capture.trail import fix_trail_start

    started = time.monotonic()
    report = SyncReport()
    name = f"sync-{options.source_id}-{options.target_id}"
    with hold_lock(options.state_dir, name):
        record_status(options.state_dir, name, started=_now(), finished=None, error=None)
        try:
            # capture must start no later than the snapshot: the trail's start point is fixed
            # (once, durably) before it; later runs, whatever they find in the trail, resume
            # from that record or from the trail's last transaction, never from "now"
            fix_trail_start(options.trail_dir, source_id=options.source_id, source=source)
            # a slot-keeping source's snapshot creates the slot: capture may not create it
            # first (the snapshot would lose its exact point), so it starts afterwards
            capture_first = not source.keeps_position or options.skip_snapshot
            cap_opts = CaptureOptions(
                source_id=options.source_id,
                until_caught_up=options.until_caught_up,
                segment_bytes=options.segment_bytes,
                key=options.key,
                stop_event=options.stop_event,
                reader_options=dict(options.source_options),
                retry_for=options.retry_for,
                on_retry=_retry_recorder(options.state_dir, name, "capture"),
                heartbeat=options.heartbeat,
            )
            if options.capture_filter is not None:
                cap_opts.filters = options.capture_filter
            elif options.snapshot.view is not None:
                # the same view the snapshot loaded: its columns, its predicate
                cap_opts.filters = options.snapshot.view
            else:
                from capture.filters import CaptureFilter

                # capture what the snapshot selects: never the whole server (which holds
                # redoline's own state when the target is the source server)
                cap_opts.filters = CaptureFilter(options.snapshot.tables)
            capture_thread = None
            cap_errors: list[BaseException] = []

            def capture() -> None:
                try:
                    report.capture = run_capture(source, options.trail_dir, cap_opts).to_json()
                except BaseException as exc:  # surfaced by the main thread
                    cap_errors.append(exc)
                    options.stop_event.set()

            if not options.until_caught_up:
                capture_thread = threading.Thread(target=capture, name="capture", daemon=True)
                if capture_first:
                    capture_thread.start()
            if not options.skip_snapshot:
                # the snapshot may create the source's slot: it belongs to this trail
                source_options = {
                    **options.snapshot.source_options,
                    **options.source_options,
                    "trail_dir": options.trail_dir,
                    "source_id": options.source_id,
                    "trail_position": trail_info(options.trail_dir, key=options.key).last_position,
                }
                report.snapshot = run_snapshot(
                    source,
                    target,
                    _observed(
                        dataclasses.replace(
                            options.snapshot,
                            source_id=options.source_id,
                            target_id=options.target_id,
                            source_options=source_options,
                        ),
                        options.target_id,
                    ),
                )
                st = progress.stage("apply", options.target_id)
                if st.snapshot is not None:
                    st.snapshot["tables_done"] = st.snapshot["tables_total"]
            if capture_thread is not None and not capture_first:
                capture_thread.start()
            if options.until_caught_up:
                report.capture = run_capture(source, options.trail_dir, cap_opts).to_json()
            stats = _apply(target, options, _retry_recorder(options.state_dir, name, "apply"))
            report.apply = _stats_json(stats)
            if capture_thread is not None:
                options.stop_event.set()
                capture_thread.join()
            if cap_errors:
                raise cap_errors[0]
        except ToolkitError as exc:
            record_status(options.state_dir, name, error=str(exc), error_at=_now())
            raise
        except Exception as exc:
            record_status(options.state_dir, name, error=repr(exc), error_at=_now())
            raise
        report.seconds = time.monotonic() - started
        record_status(options.state_dir, name, finished=_now(), last=report.to_json())
    return report


def _observed(snapshot: SnapshotOptions, target_id: str) -> SnapshotOptions:
    """``snapshot`` also counting its tables and rows into the target's progress record."""
    st = progress.stage("apply", target_id)
    counts = st.snapshot = {"tables_total": 0, "tables_done": 0, "rows": 0, "rows_estimate": 0}
    on_table, on_rows = snapshot.on_table, snapshot.progress

    def table(name: str, estimate: int) -> None:
        counts["tables_total"] += 1
        counts["rows_estimate"] += max(0, estimate)
        if on_table is not None:
            on_table(name, estimate)

    def rows(name: str, n: int, estimate: int) -> None:
        counts["rows"] += n
        if on_rows is not None:
            on_rows(name, n, estimate)

    return dataclasses.replace(snapshot, on_table=table, progress=rows)


def _retry_recorder(state_dir: Path, name: str, stage: str) -> Callable[[int, float, str], None]:
    """Record a stage's failed attempt in the run record, so `redoline status` shows a
    continuous run that keeps retrying (it logs each attempt too); attempt 0 clears it."""

    def record(attempt: int, waited: float, message: str) -> None:
        if attempt == 0:  # working again
            record_status(state_dir, name, retrying=None)
            return
        record_status(
            state_dir,
            name,
            retrying={
                "stage": stage,
                "attempt": attempt,
                "failing_seconds": round(waited, 1),
                "error": message,
                "at": _now(),
            },
        )

    return record


def _stats_json(stats: Any) -> dict[str, Any]:
    out = dict(vars(stats))
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in out.items()}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
