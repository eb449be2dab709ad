"""Live progress of each stage in this process, and its record in the state directory.

Every stage (capture, ship, receive, apply per target) keeps one :class:`StageProgress` in a
process-wide registry (:func:`stage`); the stage's own code only counts. A :class:`Reporter`
(started by the CLI) writes each one, every second, to ``<state dir>/progress/<stage>-<name>.json``
(a temporary file renamed over the old one, so a reader never sees half a record) and hands
them to whoever else wants them (the Prometheus metrics). ``redoline status`` reads these
records: it never has to open a target that a running applier holds (a DuckDB file is locked
by its writer).

A record says what the stage is doing (``running``, ``retrying``, ``failed``, ``stopped``,
``finished``), how far it got (operation, position, source commit time), what it moved (per
table and operation), its errors by class, its last success, and its lag: from the
heartbeat (:mod:`capture.heartbeat`) when the source writes one, else from positions (an
estimate).

::

    st = progress.stage("apply", "dw")
    st.counted(txn)                       # per committed transaction
    with Reporter(Path(".redoline")):     # the CLI: records every second
        ...
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PROGRESS_DIR",
    "Reporter",
    "StageProgress",
    "read_records",
    "record_path",
    "registry",
    "stage",
    "unapplied",
]

log = logging.getLogger("redoline.progress")

#: folder of the state directory holding one record per stage
PROGRESS_DIR = "progress"

#: how often records are written (seconds)
INTERVAL = 1.0


def _ts(value: float | dt.datetime | None) -> float | None:
    """Seconds since the epoch from a number or a datetime (naive: UTC)."""
    if value is None or isinstance(value, float | int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="microseconds")


@dataclass
class StageProgress:
    """One stage's live progress (written by its one thread, read by the reporter)."""

    #: capture | ship | receive | apply
    kind: str
    #: the source id (capture), destination (ship/receive) or target id (apply)
    name: str
    state: str = "starting"
    started: float = field(default_factory=time.time)
    last_op: int | None = None
    position: str | None = None
    #: the source's commit time of the last transaction handled (seconds since the epoch,
    #: or the transaction's datetime, naive = UTC: see _ts)
    commit_time: float | dt.datetime | None = None
    transactions: int = 0
    changes: int = 0
    #: (schema, table, op) -> changes
    rows: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: (schema, table, op) -> transactions touching it
    txns: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: error class -> count
    errors: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None
    last_error_at: float | None = None
    #: last time the stage did its job (wrote, read, or found nothing to do)
    last_success: float | None = None
    #: the last heartbeat this stage saw: the time the source's heartbeat writer stamped on
    #: it, and when this stage got it (written durably: capture; committed: apply)
    heartbeat_time: float | None = None
    heartbeat_seen: float | None = None
    #: the heartbeat interval (seconds), for the lag between beats: configured (capture) or
    #: the gap between the last two beats seen
    heartbeat_interval: float | None = None
    heartbeat_configured: bool = False
    lag_operations: int | None = None
    lag_bytes: int | None = None
    #: trail segments and bytes on disk (capture, receive)
    trail_segments: int | None = None
    trail_bytes: int | None = None
    #: snapshot: tables done / total, rows copied / estimated
    snapshot: dict[str, int] | None = None
    #: extra fields a stage wants recorded
    extra: dict[str, Any] = field(default_factory=dict)
    #: called by the reporter before each record (what is cheaper to measure once a second
    #: than on every transaction: trail sizes, lag in operations and bytes)
    refresh: Callable[[StageProgress], None] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ------------------------------------------------------------------ what stages call

    def running(self) -> None:
        self.state = "running"
        self.last_success = time.time()

    def ok(self) -> None:
        """The stage did its job just now (and is no longer retrying)."""
        self.last_success = time.time()
        if self.state in ("starting", "retrying"):
            self.state = "running"

    def failed(self, exc: BaseException, *, retrying: bool) -> None:
        """Count an error by class; ``retrying``: the stage keeps trying, else it stopped."""
        with self._lock:
            self.errors[type(exc).__name__] += 1
        self.last_error = str(exc) or type(exc).__name__
        self.last_error_at = time.time()
        self.state = "retrying" if retrying else "failed"

    def done(self, *, stopped: bool) -> None:
        if self.state != "failed":
            self.state = "stopped" if stopped else "finished"

    def counted(self, txn: Any) -> None:
        """A transaction handled: its changes per table and operation, its position.

        On the apply path for every transaction: keys are (schema, table, op) strings, which
        hash in C (a TableId or an Op would call Python per change), no formatting and no
        lock; the reporter's ``dict(counter)`` copy is one C call, atomic under the GIL."""
        keys = [(c.table.schema, c.table.name, c.op._value_) for c in txn.changes]
        self.rows.update(keys)
        self.txns.update(set(keys))
        self.transactions += 1
        self.changes += len(txn.changes)
        self.last_op = txn.last_op
        self.position = txn.position
        self.commit_time = txn.commit_time  # a datetime: converted when read (_ts)

    def beat(self, beat_time: float, seen: float | None = None) -> None:
        """A heartbeat stamped ``beat_time`` reached this stage at ``seen`` (default now)."""
        if self.heartbeat_time is None or beat_time >= self.heartbeat_time:
            if self.heartbeat_time is not None and not self.heartbeat_configured:
                # the writer's interval, as seen here (a stage without the source's config)
                self.heartbeat_interval = max(0.05, beat_time - self.heartbeat_time)
            self.heartbeat_time = beat_time
            self.heartbeat_seen = time.time() if seen is None else seen

    # ------------------------------------------------------------------ what readers get

    def lag_seconds(self, now: float | None = None) -> tuple[float | None, str]:
        """Seconds behind the source and how they were measured: ``heartbeat`` (the last
        heartbeat's delay, growing while the next one is overdue) or ``estimate`` (now minus
        the source commit time of the last transaction handled; an idle source looks late)."""
        now = time.time() if now is None else now
        if self.heartbeat_time is not None and self.heartbeat_seen is not None:
            delay = max(0.0, self.heartbeat_seen - self.heartbeat_time)
            interval = self.heartbeat_interval or 1.0
            overdue = now - self.heartbeat_time - interval
            return round(max(delay, overdue, 0.0), 3), "heartbeat"
        commit = _ts(self.commit_time)
        if commit is not None:
            if self.lag_operations == 0:
                return 0.0, "estimate"
            return round(max(0.0, now - commit), 3), "estimate"
        return None, "estimate"

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        lag, method = self.lag_seconds(now)
        rows = _nest(self.rows)
        txns = _nest(self.txns)
        with self._lock:
            errors = dict(self.errors)
        return {
            "stage": self.kind,
            "name": self.name,
            "pid": os.getpid(),
            "state": self.state,
            "started": _iso(self.started),
            "updated": _iso(now),
            "last_op": self.last_op,
            "position": self.position,
            "last_commit_time": _iso(_ts(self.commit_time)),
            "transactions": self.transactions,
            "changes": self.changes,
            "rows": rows,
            "transactions_by_table": txns,
            "errors": errors,
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "last_success": _iso(self.last_success),
            "heartbeat_time": _iso(self.heartbeat_time),
            "heartbeat_seen": _iso(self.heartbeat_seen),
            "heartbeat_interval": self.heartbeat_interval,
            "lag_seconds": lag,
            "lag_method": method,
            "lag_operations": self.lag_operations,
            "lag_bytes": self.lag_bytes,
            "trail_segments": self.trail_segments,
            "trail_bytes": self.trail_bytes,
            "snapshot": self.snapshot,
            **self.extra,
        }


def named(counter: Counter[tuple[str, str, str]]) -> dict[tuple[str, str], int]:
    """``counter`` keyed by (``schema.table``, operation), from a one-call copy."""
    return {(f"{schema}.{name}", op): n for (schema, name, op), n in dict(counter).items()}


def _nest(counter: Counter[tuple[str, str, str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (table, op), n in sorted(named(counter).items()):
        out.setdefault(table, {})[op] = n
    return out


_registry: dict[tuple[str, str], StageProgress] = {}
_registry_lock = threading.Lock()


def stage(kind: str, name: str) -> StageProgress:
    """This process's progress of stage ``kind`` for ``name`` (made on first use; a later
    run of the same stage in the same process, a reconnect, continues it: counters only grow)."""
    with _registry_lock:
        st = _registry.get((kind, name))
        if st is None:
            st = _registry[(kind, name)] = StageProgress(kind, name)
        return st


def registry() -> list[StageProgress]:
    with _registry_lock:
        return list(_registry.values())


def record_path(state_dir: Path, kind: str, name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return Path(state_dir) / PROGRESS_DIR / f"{kind}-{safe}.json"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def process_alive(pid: Any) -> bool:
    """Whether process ``pid`` (a record's ``pid``) exists."""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def read_records(state_dir: Path) -> list[dict[str, Any]]:
    """Every stage record in ``state_dir``; one that cannot be read or parsed comes back as
    ``{"stage": ..., "name": ..., "unreadable": "<why>"}``."""
    folder = Path(state_dir) / PROGRESS_DIR
    out: list[dict[str, Any]] = []
    try:
        names = sorted(p for p in folder.iterdir() if p.suffix == ".json")
    except FileNotFoundError:
        return out
    for path in names:
        kind, _, name = path.stem.partition("-")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            out.append({"stage": kind, "name": name, "unreadable": f"{path}: {exc}"})
            continue
        out.append(data)
    return out


def unapplied(trail_dir: Path, applied_op: int) -> int | None:
    """Bytes of the trail's segments that hold operations after ``applied_op`` (sealed
    segments by their trailer; the open one counts whole while anything is unapplied)."""
    from capture.trail import list_segment_files
    from capture.trail._format import parse_trailer

    total = 0
    try:
        for _seq, (path, sealed) in sorted(list_segment_files(trail_dir).items()):
            size = path.stat().st_size
            if sealed:
                with open(path, "rb") as f:
                    f.seek(max(0, size - 64 * 1024))
                    trailer = parse_trailer(f.read(), path.name)
                if trailer.last_op > applied_op:
                    total += size
            else:
                total += size
    except (OSError, ValueError, Exception):
        return None
    return total


class Reporter:
    """Writes every registered stage's record each second (a daemon thread), and calls
    ``listeners`` with the stages after each round (metrics). Use as a context manager; on
    exit a last round records the final state."""

    def __init__(
        self,
        state_dir: Path | None,
        *,
        interval: float = INTERVAL,
        listeners: Iterable[Callable[[list[StageProgress]], None]] = (),
        before: Callable[[list[StageProgress]], None] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.interval = interval
        self.listeners = list(listeners)
        self.before = before
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: set[Path] = set()

    def __enter__(self) -> Reporter:
        # a run starts with fresh stages: nothing of an earlier run in this process (tests
        # run many commands in one process) is written into this run's state directory
        with _registry_lock:
            _registry.clear()
        if self.state_dir is not None:
            try:
                (self.state_dir / PROGRESS_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                # progress records help watching; they never stop replication
                log.warning(
                    "cannot write progress records in %s (%s): `redoline status` will not "
                    "see this run",
                    self.state_dir / PROGRESS_DIR,
                    exc.strerror or exc,
                )
                self.state_dir = None
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.round()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.round()
            except Exception:  # progress must never stop replication
                log.debug("progress round failed", exc_info=True)

    def round(self) -> None:
        stages = registry()
        if self.before is not None:
            try:
                self.before(stages)
            except Exception:
                log.debug("progress refresh failed", exc_info=True)
        for st in stages:
            if st.refresh is not None:
                try:
                    st.refresh(st)
                except Exception:
                    log.debug("progress refresh of %s failed", st.kind, exc_info=True)
        now = time.time()
        if self.state_dir is not None:
            for st in stages:
                path = record_path(self.state_dir, st.kind, st.name)
                try:
                    _write_atomic(path, json.dumps(st.to_json(now), indent=1))
                    self._failing.discard(path)
                except OSError as exc:
                    if path not in self._failing:  # once per outage, not every second
                        log.warning("cannot write progress record %s: %s", path, exc)
                    self._failing.add(path)
        for listener in self.listeners:
            try:
                listener(stages)
            except Exception:
                log.debug("progress listener failed", exc_info=True)
