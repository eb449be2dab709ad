"""The one apply path over a trail directory: :func:`apply_trail` and its helpers."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from apply.applier import Applier
from apply.options import ApplyOptions, ApplyStats
from apply.point import (
    PointOutcome,
    StopPoint,
    bounded,
    delayed,
    refuse_if_past,
    refuse_inside_snapshot,
)
from connectors.base import Writer
from connectors.errors import SchemaError, TrailError
from connectors.model import TableId, Transaction

if TYPE_CHECKING:
    from apply.snapshot import TableState

__all__ = ["apply_trail", "consumer_name", "prefetch", "register_target"]

log = logging.getLogger("redoline.apply")

#: seconds between a following apply's looks at the trail's open segment
FOLLOW_POLL: Final = 0.05


_END = object()
_IDLE = object()


class TailSignal:
    """Passed as a following reader's ``idle`` callback: :func:`prefetch` hears through it
    that the reader has handed out everything the trail holds."""

    def __init__(self) -> None:
        self.notify: Callable[[], None] | None = None

    def __call__(self) -> None:
        if self.notify is not None:
            self.notify()


def prefetch(
    source: Iterator[Transaction],
    *,
    tick: float,
    depth: int = 20_000,
    tail: TailSignal | None = None,
) -> Iterator[Transaction | None]:
    """Read ``source`` in a thread so trail decoding overlaps target I/O.

    Yields the transactions in order, and ``None`` as "idle": when the consumer has taken
    every transaction read before ``source``'s reader reached the trail's end (``tail``, its
    ``idle`` callback) and nothing was read since, and whenever none arrived for ``tick``
    seconds. :meth:`Applier.run` commits its group on ``None``: under a steady load a group
    is what the trail received since the last commit, so the heartbeat's lag is not a batch
    window, while a backlog (the reader never at the end) still fills groups by size and
    time. At most ``depth`` transactions are read ahead. An exception in the reader is
    raised here, in the consumer, once the transactions read before it are consumed.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    failure: list[BaseException] = []
    told = [True]  # an idle mark is queued and no transaction since: do not queue another

    def at_tail() -> None:  # in the pump thread, from inside the reader
        if not told[0]:
            told[0] = True
            q.put(_IDLE)

    if tail is not None:
        tail.notify = at_tail

    def pump() -> None:
        try:
            for txn in source:
                told[0] = False
                q.put(txn)
        except BaseException as exc:  # handed to the consumer
            failure.append(exc)
        finally:
            q.put(_END)

    thread = threading.Thread(target=pump, name="trail-reader", daemon=True)
    thread.start()
    while True:
        try:
            item = q.get(timeout=tick)
        except queue.Empty:
            yield None
            continue
        if item is _END:
            if failure:
                raise failure[0]
            return
        if item is not _IDLE:
            yield item
        elif q.empty():
            yield None
        # else: the reader found more since that mark, so the trail was not idle for apply;
        # the group grows to what arrived while the target was busy (a slow target gets
        # bigger groups, not one commit per capture flush)


def consumer_name(target_id: str) -> str:
    """The one retention consumer name of a target, whichever command applies to it."""
    return f"target.{target_id}"


def _legacy_consumer(name: str, target_id: str) -> bool:
    """Names earlier versions registered for ``target_id``: ``<id>`` (sync), ``apply.<id>``
    (apply) and ``apply.<id>.<i>of<n>`` (parallel apply)."""
    if name in (target_id, f"apply.{target_id}"):
        return True
    prefix = f"apply.{target_id}."
    if not name.startswith(prefix):
        return False
    i, sep, n = name[len(prefix) :].partition("of")
    return bool(sep) and i.isdigit() and n.isdigit()


def register_target(trail_dir: Path, target_id: str, applied_op: int) -> None:
    """Record ``target_id``'s progress for retention under :func:`consumer_name`, and drop the
    names earlier versions used for it (a name nobody updates would hold segments forever)."""
    from capture.trail import consumers, register_consumer, remove_consumer

    register_consumer(trail_dir, consumer_name(target_id), applied_op)
    for name in consumers(trail_dir):
        if _legacy_consumer(name, target_id):
            remove_consumer(trail_dir, name)
            log.info("retention consumer %r replaced by %r", name, consumer_name(target_id))


def apply_trail(
    writer: Writer,
    trail_dir: Path,
    options: ApplyOptions,
    *,
    key: bytes | None = None,
    follow: bool = False,
    stop: Callable[[], bool] | None = None,
    progress: Callable[[int], None] | None = None,
    until: StopPoint | None = None,
    outcome: PointOutcome | None = None,
) -> ApplyStats:
    """Apply the trail in ``trail_dir`` to ``writer`` from just after its checkpoint.

    ``until`` bounds the run at a point of the source's history (:mod:`apply.point`): it
    applies up to and including it and records in ``outcome`` whether and where it stopped.

    The one apply path (``apply``, ``sync``, ``snapshot``, parallel groups, the demo): it
    reads the trail's own description of its source (header: engine, dialect, row ids,
    identity), honours the snapshot's catch-up windows recorded in the target
    (:func:`apply.catchup.catchup_transactions`), and registers the target's progress for
    retention as :func:`consumer_name` (``progress``, when given, receives it instead:
    parallel groups report to one shared consumer). ``follow`` tails the trail until
    ``stop()``; otherwise returns at the trail's current end (``--until-caught-up``).
    """
    from apply.catchup import table_windows
    from apply.snapshot import load_snapshot_scope, load_table_states
    from capture.trail import TrailReader, trail_info
    from connectors.base import position_comparator

    info = trail_info(trail_dir, key=key)
    options = _described(options, info)
    states = load_table_states(writer.database, options.source_id)
    _refuse_unfinished(states)
    windows = table_windows(states)
    scope = load_snapshot_scope(writer.database, options.source_id)
    compare: Callable[[str, str], int] | None = None
    if windows or scope:
        if not info.source_engine:
            raise TrailError(
                f"the target holds snapshot catch-up windows, but the trail {trail_dir} was "
                "written by an older redoline (format 1) and does not name its source engine, "
                "so its positions cannot be ordered against them",
                hint="run `redoline capture` once with this version (new segments carry the "
                "source), or apply with `redoline sync`",
            )
        compare = position_comparator(info.source_engine)
    reader = TrailReader(trail_dir, key=key)
    applier = Applier(writer, reader.schema, options)
    applier.loaded_tables = {TableId.parse(s.target_table) for s in states}
    applier.same_trail = _same_trail(trail_dir, key, info)
    st = applier.progress
    st.refresh = _lag_refresher(trail_dir, key, options.source_id)
    try:
        return _apply_trail(
            applier,
            st,
            reader,
            info,
            trail_dir,
            options,
            windows,
            compare,
            scope=scope,
            key=key,
            follow=follow,
            stop=stop,
            progress=progress,
            until=until,
            outcome=outcome,
        )
    except BaseException as exc:
        st.failed(exc, retrying=False)
        raise


def _described(options: ApplyOptions, info: Any) -> ApplyOptions:
    """``options`` completed from the trail's header (``info``: :func:`capture.trail.trail_info`):
    its source id, dialect, row ids and identity, where the caller left them unset."""
    if options.source_id == "default" and info.source_id:
        options = replace(options, source_id=info.source_id)
    if options.source_dialect is None and info.source_dialect:
        options = replace(options, source_dialect=info.source_dialect)
    if info.row_ids and not options.row_ids:
        options = replace(options, row_ids=True)
    if info.trail_id and not options.trail_id:
        options = replace(options, trail_id=info.trail_id)
    return options


def _refuse_unfinished(states: list[TableState]) -> None:
    """Refuse to apply while a snapshot of a table on this target has not finished."""
    unfinished = [s for s in states if s.state != "loaded"]
    if unfinished:
        # the trail's changes to a half-loaded table would land on rows that are not there
        # (or are stale): the snapshot must finish first (it resumes by chunk)
        names = ", ".join(f"{s.target_table} ({s.state})" for s in unfinished[:5])
        more = f" and {len(unfinished) - 5} more" if len(unfinished) > 5 else ""
        raise SchemaError(
            f"the snapshot of {len(unfinished)} table(s) on this target did not finish: "
            f"{names}{more}; applying the trail now would leave them different from the source",
            hint="run `redoline sync` (or `redoline snapshot`) again to finish the snapshot; "
            "it resumes where it stopped",
        )


def _same_trail(trail_dir: Path, key: bytes | None, info: Any) -> Callable[[int, str | None], bool]:
    """:attr:`Applier.same_trail` for the trail in ``trail_dir`` (``info``: its header)."""
    from capture.trail import TrailReader

    def same_trail(op: int, position: str | None) -> bool:
        if not info.segments or op > info.last_op:
            return False
        if op < info.first_op:
            return True  # retention removed that part: nothing left to compare against
        # the transaction ending at ``op`` (or an empty one after it, which ends there too)
        for txn in TrailReader(trail_dir, key=key).transactions(op):
            if txn.last_op > op:
                break
            if txn.position == position:
                return True
        return False

    return same_trail


def _lag_refresher(trail_dir: Path, key: bytes | None, source_id: str) -> Callable[[Any], None]:
    """How far a target is behind the trail, measured once a second by the progress
    reporter: operations (the trail's last, from this process's capture when it runs here,
    else from the trail every few seconds) and bytes of the segments still to apply."""
    from capture.progress import registry, unapplied
    from capture.trail import trail_info

    cache: dict[str, float] = {"at": 0.0, "last_op": 0.0}

    def refresh(st: Any) -> None:
        applied = st.last_op or 0
        last = None
        for other in registry():
            if other.kind == "capture" and other.name == source_id and other.last_op is not None:
                last = other.last_op
        if last is None:
            now = time.monotonic()
            if now - cache["at"] >= 5:
                cache["last_op"] = trail_info(trail_dir, key=key).last_op
                cache["at"] = now
            last = int(cache["last_op"])
        st.lag_operations = max(0, last - applied)
        st.lag_bytes = unapplied(trail_dir, applied) if st.lag_operations else 0

    return refresh


def _apply_trail(
    applier: Applier,
    st: Any,
    reader: Any,
    info: Any,
    trail_dir: Path,
    options: ApplyOptions,
    windows: Any,
    compare: Callable[[str, str], int] | None,
    *,
    scope: Any = None,
    key: bytes | None,
    follow: bool,
    stop: Callable[[], bool] | None,
    progress: Callable[[int], None] | None,
    until: StopPoint | None,
    outcome: PointOutcome | None,
) -> ApplyStats:
    from apply.catchup import catchup_transactions
    from capture.heartbeat import split_heartbeat

    start = applier.start()
    st.last_op = start
    st.position = applier.stats.position
    st.running()
    if info.segments and start > info.last_op:
        raise TrailError(
            f"the target has applied through operation {start}, but the trail {trail_dir} "
            f"ends at operation {info.last_op}: it is not the trail this target was applied "
            "from",
            hint="point --trail at the right trail, or run `redoline apply --adopt-trail "
            "--until-caught-up` once to apply this trail from its first operation",
        )
    should_stop = stop or (lambda: False)
    last_register = [0.0]

    def report(op: int) -> None:
        if progress is not None:
            progress(op)
        else:
            register_target(trail_dir, options.target_id, op)

    #: (last operation, beat time) of heartbeats read but not yet committed on the target
    beats: list[tuple[int, float]] = []

    def committed(op: int) -> None:
        while beats and beats[0][0] <= op:
            st.beat(beats.pop(0)[1])
        now = time.monotonic()
        if now - last_register[0] >= 2:
            report(op)
            last_register[0] = now

    report(start)
    # a following reader looks for new trail bytes every 50 ms (a read of what was appended):
    # at the reader's default 0.2 s that wait was a visible part of the heartbeat lag. It
    # says (``tail``) when it has read everything: the moment apply commits what it batched
    tail = TailSignal()
    source: Iterator[Transaction] = reader.transactions(
        start + 1, follow=follow, stop=should_stop, poll=FOLLOW_POLL, idle=tail
    )
    held: list[Transaction] = []
    if options.delay > 0:
        source = delayed(source, options.delay, follow=follow, stop=should_stop, held=held)
    if until is not None:
        outcome = outcome if outcome is not None else PointOutcome()
        refuse_if_past(trail_dir, key, start, until)
        source = bounded(source, until, outcome)

    def without_heartbeat(items: Iterable[Transaction | None]) -> Iterator[Transaction | None]:
        # the heartbeat row is redoline's own: read, never written (capture.heartbeat)
        for txn in items:
            if txn is not None and txn.changes:
                txn, beat = split_heartbeat(txn)
                if beat is not None:
                    beats.append((txn.last_op, beat))
            yield txn

    txns: Iterable[Transaction | None] = without_heartbeat(
        prefetch(source, tick=max(0.01, options.batch_ms / 4000), tail=tail)
    )
    if compare is not None:

        def in_window(txn: Transaction) -> None:
            # collide while inside a snapshot window: the applier decides per transaction
            applier.options.collision_until_op = max(
                applier.options.collision_until_op, txn.first_op
            )

        txns = catchup_transactions(txns, windows, compare, in_window, scope)
    stats = applier.run(txns, stop=should_stop, on_commit=committed)
    report(applier.applied_op)
    st.done(stopped=should_stop())
    if held:
        stats.delay_held_op = held[0].first_op
        stats.delay_held_commit_time = held[0].commit_time
    if until is not None and outcome is not None and compare is not None and outcome.reached:
        refuse_inside_snapshot(windows, compare, outcome, until)
    return stats
