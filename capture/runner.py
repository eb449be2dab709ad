"""The capture loop: a source's log into the trail, exactly once, for any engine.

::

    result = run_capture(db, Path("trail"), CaptureOptions(source_id="shop"))

The trail is the checkpoint. An empty trail starts where its start record says
(``trail-start.json``, :func:`capture.trail.fix_trail_start`, fixed once by the first run of
capture, sync or snapshot). On start the :class:`~capture.trail.TrailWriter` recovers the
trail (a torn tail left by ``kill -9`` is cut) and its ``last_position`` is the commit
position of the last durable transaction; the log is reopened just after it. Each committed
transaction is filtered (:mod:`capture.filters`), appended and flushed (fsync) *before* the
reader is told (``confirm``), so a crash at any instant neither loses nor repeats a
transaction.

The loop knows nothing about engines: it uses ``Database.open_log``, the
:class:`connectors.log.LogReader` protocol and ``Database.has_log``. Transient errors
(connection lost, server restarting) reopen the log from the trail's position with
exponential backoff; terminal ones propagate.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capture import heartbeat, progress
from capture.assembly import SpilledTransaction, TransactionAssembler
from capture.filters import CaptureFilter
from capture.retry import Retry
from capture.trail import START_FILE, TrailWriter, fix_trail_start, list_segment_files
from connectors.base import HEARTBEAT_TABLE, Database
from connectors.errors import (
    ConfigError,
    ConnectError,
    Terminal,
    TrailError,
    Transient,
)
from connectors.log import Begin, Commit, Heartbeat, LogReader, Rollback, RowEvent
from connectors.model import Transaction

__all__ = ["CaptureOptions", "CaptureResult", "run_capture"]

log = logging.getLogger("redoline.capture")


@dataclass
class CaptureOptions:
    """How to run capture. Only ``source_id`` is required."""

    #: the source id stamped on the trail and as every transaction's origin
    source_id: str
    #: which tables, columns and rows to capture
    filters: CaptureFilter = field(default_factory=CaptureFilter)
    #: stop (exit 0) once the source's end position measured at start is in the trail
    until_caught_up: bool = False
    segment_bytes: int = 10_000_000
    #: AES-256 key for trail encryption at rest (None: plain)
    key: bytes | None = None
    #: set it (e.g. from a signal handler) to stop after the current transaction
    stop_event: threading.Event | None = None
    #: where a new trail starts (None: the source's current end). Used only the first time,
    #: when the trail's start record is made (:func:`capture.trail.fix_trail_start`)
    start_position: str | None = None
    #: engine-specific reader options (MySQL: ``server_id``, ``heartbeat``; PostgreSQL:
    #: ``slot``, ``publication``)
    reader_options: dict[str, Any] = field(default_factory=dict)
    #: transient-error retries before giving up (None: forever)
    max_retries: int | None = None
    #: seconds a transient error may last before the run gives up with exit 75 (None:
    #: forever; the CLI gives ``--until-caught-up`` runs a finite default)
    retry_for: float | None = None
    #: told of every failed attempt (attempt number, seconds failing, message): ``sync``
    #: records it for ``redoline status``
    on_retry: Callable[[int, float, str], None] | None = None
    #: first and largest backoff delay in seconds
    backoff: tuple[float, float] = (0.5, 30.0)
    #: seconds between progress log lines
    progress_every: float = 10.0
    #: bound on memory held by open transactions before they spill to disk
    memory_bytes: int = 64 * 1024 * 1024
    #: group commit: fsync at most every this many seconds while transactions keep coming
    #: (also when the log goes idle, and before stopping); 0 = fsync every transaction
    flush_interval: float = 0.05
    #: seconds between heartbeat rows written on the source (``[source] heartbeat``,
    #: :mod:`capture.heartbeat`); 0: no heartbeat, lag is estimated from positions
    heartbeat: float = 0.0


@dataclass
class CaptureResult:
    """What a capture run did (the ``--json`` summary)."""

    transactions: int = 0
    changes: int = 0
    filtered_changes: int = 0
    first_position: str | None = None
    last_position: str | None = None
    last_op: int = 0
    caught_up: bool = False
    stopped: bool = False
    reconnects: int = 0
    seconds: float = 0.0
    lag_seconds: float | None = None
    #: what the row predicates did, per table (``capture.filters.FilterStats.to_json``)
    filter: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def run_capture(db: Database, trail_dir: Path, options: CaptureOptions) -> CaptureResult:
    """Capture ``db``'s log into the trail at ``trail_dir`` until stopped or caught up."""
    if not db.has_log:
        raise ConfigError(
            f"{db.endpoint.display}: the {db.engine} connector cannot capture changes",
            hint="capture from a MySQL/MariaDB or PostgreSQL source",
        )
    stop = options.stop_event or threading.Event()
    result = CaptureResult()
    started = time.monotonic()
    st = progress.stage("capture", options.source_id)
    st.refresh = lambda s: _trail_size(s, trail_dir)
    try:
        result = _capture(db, trail_dir, options, stop, result, started, st)
    except BaseException as exc:
        if st.state != "failed":
            st.failed(exc, retrying=False)
        raise
    st.done(stopped=result.stopped or (stop.is_set() and not result.caught_up))
    return result


def _trail_size(st: progress.StageProgress, trail_dir: Path) -> None:
    segments = list_segment_files(trail_dir)
    total = 0
    for path, _sealed in segments.values():
        try:
            total += path.stat().st_size
        except OSError:
            pass
    st.trail_segments, st.trail_bytes = len(segments), total


def _capture(
    db: Database,
    trail_dir: Path,
    options: CaptureOptions,
    stop: threading.Event,
    result: CaptureResult,
    started: float,
    st: progress.StageProgress,
) -> CaptureResult:
    retry = Retry(
        "capture",
        retry_for=options.retry_for,
        backoff=options.backoff,
        on_retry=options.on_retry,
        hint="nothing was lost; run again when the source is reachable ([source] retry_for "
        "sets how long a run keeps trying)",
        progress=st,
    )
    # where an empty trail starts is fixed once, durably, by whichever run comes first (this
    # one, or a sync/snapshot before its snapshot): a later run of a still-empty trail (nothing
    # selected changed yet, or a kill before the first transaction) resumes from the same point
    filters = options.filters
    while True:
        try:
            trail_start = fix_trail_start(
                trail_dir, source_id=options.source_id, source=db, position=options.start_position
            )
            if not filters.trivial:
                # the predicates compare text as the source's SQL does (as the snapshot's query
                # did), and a view that cannot be decided from the log is refused before reading
                filters.bind(db)
                filters.check_source(db, db.list_tables(filters.tables))
            if options.heartbeat > 0:
                heartbeat.ensure_table(db)
            break
        except Exception as exc:
            if stop.wait(retry.failed(exc)):
                return result
    with TrailWriter(
        trail_dir,
        source_id=options.source_id,
        segment_bytes=options.segment_bytes,
        key=options.key,
        start=trail_start,
    ) as writer:
        result.first_position = writer.last_position
        result.last_op = writer.last_op
        st.last_op, st.position = writer.last_op, writer.last_position
        st.heartbeat_interval = options.heartbeat or None
        st.heartbeat_configured = options.heartbeat > 0
        st.running()
        beats = None
        if options.heartbeat > 0:
            beats = heartbeat.HeartbeatWriter(db, options.source_id, options.heartbeat)
            if options.until_caught_up:
                beats.beat()  # one beat before the end position is taken: lag for cron runs
                beats.stop()
                beats = None
            else:
                beats.start()
        try:
            _loop(db, writer, options, stop, result, retry)
        finally:
            if beats is not None:
                beats.stop()
        result.stopped = stop.is_set() and not result.caught_up
        result.last_position = writer.last_position
        result.last_op = writer.last_op
    if not filters.trivial:
        result.filter = filters.stats.to_json()
        summary = filters.stats.summary()
        if summary:
            log.info("capture: %s (per table: %s)", summary, result.filter)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _loop(
    db: Database,
    writer: TrailWriter,
    options: CaptureOptions,
    stop: threading.Event,
    result: CaptureResult,
    retry: Retry,
) -> None:
    """Read the log into the trail until stopped or finished, reopening after failures."""
    while not stop.is_set():
        try:
            done = _run_once(db, writer, options, stop, result, retry.succeeded)
            if done:
                break
        except Exception as exc:
            if (
                options.max_retries is not None
                and retry.failures >= options.max_retries
                and isinstance(exc, Transient)
                and not isinstance(exc, Terminal)
            ):
                raise ConnectError(
                    f"capture gave up after {retry.failures} retries: {exc}",
                    hint="the source stayed unreachable; run capture again later",
                ) from exc
            delay = retry.failed(exc)
            result.reconnects += 1
            if stop.wait(delay):
                break


def _run_once(
    db: Database,
    writer: TrailWriter,
    options: CaptureOptions,
    stop: threading.Event,
    result: CaptureResult,
    recovered: Callable[[], None] = lambda: None,
) -> bool:
    """Read the log from the trail's position until the reader ends; True when finished."""
    assert writer.start is not None
    start = writer.last_position or writer.start.start_position
    if start is None and not db.keeps_position:
        raise TrailError(
            f"the trail {writer.directory} has no transaction and its start record no position",
            hint=f"delete {writer.directory / START_FILE} while the trail is still empty; the "
            "next run starts at the source's current end",
        )
    reader = _open_reader(db, writer, options, start)
    watcher = _StopWatcher(stop, reader)
    assembler = TransactionAssembler(memory_bytes=options.memory_bytes)
    filters = options.filters
    trivial = filters.trivial
    beating = options.heartbeat > 0
    ticker = _Progress(options.progress_every)
    origin = options.source_id
    st = progress.stage("capture", options.source_id)
    trail_dir = writer.directory
    st.refresh = lambda s: _trail_size(s, trail_dir)  # also on a stage made since run_capture
    flusher = _Flusher(writer, reader, options.flush_interval, st)
    try:
        first = True
        for event in reader.events():
            if first:
                first = False
                recovered()
            kind = type(event)
            if kind is RowEvent:
                change = event.change  # type: ignore[union-attr]
                if not trivial and not (beating and change.table == HEARTBEAT_TABLE):
                    kept = filters.apply(change)
                    if kept is None:
                        result.filtered_changes += 1
                        continue
                    change = kept  # an update may have become a delete or an insert
                assembler.change(event.xid, change, event.size)  # type: ignore[union-attr]
            elif kind is Commit:
                assert isinstance(event, Commit)
                txn = assembler.commit(
                    event.xid,
                    position=event.position,
                    commit_time=event.commit_time,
                    origin=event.origin or origin,
                )
                if _write(writer, txn, result, st):
                    flusher.written(event.position)
                ticker.tick(result, st)
            elif kind is Begin:
                assembler.begin(event.xid)  # type: ignore[union-attr]
            elif kind is Rollback:
                assembler.rollback(event.xid)  # type: ignore[union-attr]
            elif kind is Heartbeat:
                assert isinstance(event, Heartbeat)
                flusher.flush()  # the log is idle here: make what we have durable now
                if not assembler.open_xids:
                    reader.confirm(event.position)
                    _read_through(st, event)
                ticker.tick(result, st)
                if event.caught_up:
                    result.caught_up = True
                    return True
        # the reader returned: asked to stop, or caught up without a final heartbeat
        return stop.is_set() or options.until_caught_up
    finally:
        flusher.flush()
        watcher.cancel()
        assembler.close()
        reader.close()


def _read_through(st: progress.StageProgress, event: Heartbeat) -> None:
    """Nothing is open at ``event``: the trail holds everything the source had up to it."""
    st.ok()
    # the record says so (verify's re-check learns that log past the last captured commit
    # holds nothing to apply), and an idle source's estimate does not grow (a keepalive: now)
    st.position = event.position
    st.commit_time = event.source_time or time.time()


def _open_reader(
    db: Database, writer: TrailWriter, options: CaptureOptions, start: str | None
) -> LogReader:
    """The source's log reader from ``start``, told what the trail and the filters need."""
    catalog: Any = writer.catalog
    if callable(catalog):
        catalog = catalog()
    # trail_dir: a reader may keep a small marker beside the segments (PostgreSQL records its
    # slot's identity and heartbeat positions confirmed past the last transaction there)
    # source_id: a reader may derive names of its own from it (PostgreSQL's default slot)
    reader_options = {
        "source_id": options.source_id,
        **options.reader_options,
        "catalog": dict(catalog),
        "trail_dir": writer.directory,
        # the columns a [tables.columns] view keeps: a reader that looks for column changes
        # on its own (PostgreSQL) ignores the others
        "column_subset": options.filters.column_subset,
    }
    tables = options.filters.tables
    if options.heartbeat > 0:
        tables = dataclasses.replace(tables, also=(*tables.also, HEARTBEAT_TABLE))
    return db.open_log(
        start,
        tables=tables,
        until_caught_up=options.until_caught_up,
        options=reader_options,
    )


def _write(
    writer: TrailWriter,
    txn: Transaction | SpilledTransaction,
    result: CaptureResult,
    st: progress.StageProgress,
) -> bool:
    """Append ``txn`` (not yet durable); False when filtering left it empty."""
    spilled = isinstance(txn, SpilledTransaction)
    count = txn.change_count if isinstance(txn, SpilledTransaction) else len(txn.changes)
    try:
        if count == 0:
            return False
        writer.append(txn)
        if spilled:
            st.transactions += 1
            st.changes += count
            st.last_op, st.position = writer.last_op, txn.position
        else:
            st.counted(txn)
            if isinstance(txn, Transaction) and txn.changes[-1].table.name == HEARTBEAT_TABLE.name:
                beat = heartbeat.split_heartbeat(txn)[1]
                if beat is not None:
                    st.beat(beat)
    finally:
        if isinstance(txn, SpilledTransaction):
            txn.close()
    result.transactions += 1
    result.changes += count
    result.last_position = txn.position
    return True


class _Flusher:
    """Group commit: one fsync for the transactions appended within ``interval`` seconds.

    Exactly-once holds because the source hears of a position (``confirm``) only after the
    fsync that made it durable, and a restart resumes after the trail's last *durable*
    transaction (an appended but unflushed tail is cut or kept whole by recovery).
    """

    def __init__(
        self,
        writer: TrailWriter,
        reader: Any,
        interval: float,
        st: progress.StageProgress | None = None,
    ) -> None:
        self.writer, self.reader, self.interval = writer, reader, interval
        self.st = st
        self.pending: str | None = None
        self.since = 0.0

    def written(self, position: str) -> None:
        now = time.monotonic()
        if self.pending is None:
            self.since = now
        self.pending = position
        if now - self.since >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self.pending is None:
            return
        self.writer.flush()
        self.reader.confirm(self.pending)
        self.pending = None
        if self.st is not None:
            self.st.ok()


class _StopWatcher:
    """Forwards the stop event to the reader (whose ``stop`` is signal-safe)."""

    def __init__(self, stop: threading.Event, reader: Any) -> None:
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, args=(stop, reader), name="capture-stop", daemon=True
        )
        self._thread.start()

    def _watch(self, stop: threading.Event, reader: Any) -> None:
        while not self._done.is_set():
            if stop.wait(0.2):
                reader.stop()
                return

    def cancel(self) -> None:
        self._done.set()


class _Progress:
    """Logs throughput and lag every ``every`` seconds."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.last = time.monotonic()
        self.last_changes = 0

    def tick(self, result: CaptureResult, st: progress.StageProgress) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        # the heartbeat's measure when the source writes one; else the estimate, which an
        # idle reader keeps current (its keepalives say the trail holds everything)
        lag, method = st.lag_seconds()
        result.lag_seconds = lag
        rate = (result.changes - self.last_changes) / (now - self.last)
        log.info(
            "capture: %d transactions, %d changes (%.0f/s), lag %s, at %s",
            result.transactions,
            result.changes,
            rate,
            "unknown"
            if lag is None
            else f"{lag:.1f}s" + (" (estimate)" if method == "estimate" else ""),
            result.last_position,
        )
        self.last, self.last_changes = now, result.changes
