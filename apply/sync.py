"""``redoline sync``: snapshot when needed, capture and apply, in one process, one host.

::

    report = run_sync(source_db, target_db, SyncOptions(trail_dir=Path("trail"), ...))

Order of events, so nothing is lost between the snapshot and the log:

1. When the trail is empty, the source's end position is taken *before* the snapshot and
   capture starts there; every change after it reaches the trail. A source that keeps its
   position on the server (``Database.keeps_position``: PostgreSQL's slot) needs no such
   point: its snapshot creates the slot (or starts from it), and capture starts only after
   the snapshot, from the slot, so the two are continuous.
2. Tables not loaded yet are snapshotted (:func:`apply.snapshot.run_snapshot`).
3. Capture runs (a thread; or, ``until_caught_up``, to the source's end position first).
4. Apply reads the trail through :func:`apply.snapshot.catchup_transactions`: changes the
   snapshot already holds are dropped, the undecidable window is applied in collision mode,
   then plain apply. ``until_caught_up`` stops at the end of the trail; otherwise it follows
   the trail until :attr:`SyncOptions.stop_event` is set (SIGTERM/Ctrl-C in the CLI), after
   the current transaction.

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apply.snapshot import (
    SnapshotOptions,
    SnapshotReport,
    catchup_transactions,
    load_table_states,
    run_snapshot,
    table_windows,
)
from connectors.base import Database
from connectors.errors import LockedError, ToolkitError
from connectors.model import Transaction

__all__ = [
    "SyncOptions",
    "SyncReport",
    "apply_with_catchup",
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
    #: passed to :class:`apply.applier.ApplyOptions` (ids are filled in)
    apply_options: dict[str, Any] = field(default_factory=dict)
    #: capture filters (``capture.filters.CaptureFilter``); None: the snapshot's tables
    capture_filter: Any = None
    until_caught_up: bool = False
    skip_snapshot: bool = False
    key: bytes | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    segment_bytes: int = 10_000_000


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
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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


def apply_with_catchup(
    source: Database,
    target: Database,
    trail_dir: Path,
    *,
    source_id: str,
    target_id: str,
    follow: bool,
    stop: threading.Event,
    key: bytes | None = None,
    apply_options: dict[str, Any] | None = None,
) -> Any:
    """Apply the trail to ``target`` from its checkpoint, with snapshot catch-up rules.

    Returns the applier's :class:`apply.applier.ApplyStats`.
    """
    from apply.applier import Applier, ApplyOptions, prefetch
    from capture.trail import TrailReader, register_consumer

    extra: dict[str, Any] = {}
    if source_id == target_id and "ignore_origins" not in (apply_options or {}):
        # capture stamps every transaction with the source id; the loop guard's default
        # (skip origin == target id) would then skip all of them. CLI URLs without a config
        # give both ids "default"; a one-way sync has no loop to guard.
        extra["ignore_origins"] = frozenset()
    options = ApplyOptions(
        **{**(apply_options or {}), **extra, "source_id": source_id, "target_id": target_id}
    )
    if options.source_dialect is None:
        options = dataclasses.replace(options, source_dialect=source.dialect)
    if source.has_row_ids:
        options = dataclasses.replace(options, row_ids=True)
    windows = table_windows(load_table_states(target, source_id))
    reader = TrailReader(trail_dir, key=key)
    writer = target.open_writer()
    try:
        applier = Applier(writer, reader.schema, options)
        start = applier.start()
        consumer = f"{target_id}"
        register_consumer(trail_dir, consumer, start)

        def in_window(txn: Transaction) -> None:
            # the applier decides per transaction: collide while inside a snapshot window
            applier.options.collision_until_op = max(
                applier.options.collision_until_op, txn.first_op
            )

        txns: Any = reader.transactions(start + 1, follow=follow, stop=stop.is_set)
        if follow:
            txns = prefetch(txns, tick=max(0.01, options.batch_ms / 4000))
        txns = catchup_transactions(txns, windows, source.compare_positions, in_window)
        stats = applier.run(txns, stop=stop.is_set)
        register_consumer(trail_dir, consumer, applier.applied_op)
        return stats
    finally:
        writer.close()


def run_sync(source: Database, target: Database, options: SyncOptions) -> SyncReport:
    """Snapshot (if needed), capture and apply; see the module doc for the order."""
    from capture.runner import CaptureOptions, run_capture
    from capture.trail import trail_info

    started = time.monotonic()
    report = SyncReport()
    name = f"sync-{options.source_id}-{options.target_id}"
    with hold_lock(options.state_dir, name):
        record_status(options.state_dir, name, started=_now(), finished=None, error=None)
        try:
            info = trail_info(options.trail_dir, key=options.key)
            start_position = None
            if info.last_op == 0 and not source.keeps_position:
                # capture must start no later than the snapshot: fix the point first, once
                # (a cron run that found nothing to capture must not move it past what
                # changed since: the snapshot of that first run does not hold it)
                from capture.runner import start_marker

                start_position = start_marker(source, options.trail_dir)
            # a slot-keeping source's snapshot creates the slot: capture may not create it
            # first (the snapshot would lose its exact point), so it starts afterwards
            capture_first = not source.keeps_position or options.skip_snapshot
            cap_opts = CaptureOptions(
                source_id=options.source_id,
                until_caught_up=options.until_caught_up,
                segment_bytes=options.segment_bytes,
                key=options.key,
                stop_event=options.stop_event,
                start_position=start_position,
            )
            if options.capture_filter is not None:
                cap_opts.filters = options.capture_filter
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
                report.snapshot = run_snapshot(
                    source,
                    target,
                    dataclasses.replace(options.snapshot, source_id=options.source_id),
                )
            if capture_thread is not None and not capture_first:
                capture_thread.start()
            if options.until_caught_up:
                report.capture = run_capture(source, options.trail_dir, cap_opts).to_json()
            stats = apply_with_catchup(
                source,
                target,
                options.trail_dir,
                source_id=options.source_id,
                target_id=options.target_id,
                follow=not options.until_caught_up,
                stop=options.stop_event,
                key=options.key,
                apply_options=options.apply_options,
            )
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


def _stats_json(stats: Any) -> dict[str, Any]:
    out = dict(vars(stats))
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in out.items()}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
