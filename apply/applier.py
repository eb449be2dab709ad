"""The ordered applier: source transactions in, grouped set-based target transactions out.

Consecutive source transactions are grouped into one target transaction, bounded by
``batch_rows`` changes and ``batch_ms`` milliseconds, and committed as soon as the trail has
nothing more to read (:func:`apply.trail_apply.prefetch`). Inside a group each table's changes
are folded to their net effect (:mod:`apply.collapse`) and written by the target's
:class:`connectors.base.Writer` set-based; the checkpoint row is updated in the same target
transaction, so a crash at any instant loses nothing and applies nothing twice.

Barriers: a TRUNCATE writes what is pending before it; a transaction with DDL is applied on
its own, after the group before it has committed, its rows folded and written set-based
between its statements (MySQL commits DDL implicitly; there each DDL statement is marked in
the target before it runs, so a restart after a crash between the statement and the
checkpoint neither runs it twice nor leaves it out: ``_run_ddl``). When the
set-based write of a group fails, the group is rolled back and replayed one statement at a
time, one target transaction per source transaction, which names the exact row and source
transaction the target refuses (and lets ``on_error="skip"`` set aside just that one).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from operator import attrgetter
from typing import Any, Final

from apply.collapse import TableCollapse
from apply.ddl_apply import DdlApplier
from apply.options import ApplyOptions, ApplyStats, SchemaLookup
from capture import progress
from connectors.base import RowRejected, Writer
from connectors.errors import ApplyError, TrailError
from connectors.model import Change, Op, TableId, TableSchema, Transaction

__all__ = ["Applier"]

log = logging.getLogger("redoline.apply")

#: cyclic GC thresholds while applying (Python's default is 700, 10, 10)
_GC_THRESHOLDS: Final = (50_000, 20, 100)
_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


def _gc_relaxed(enter: bool) -> None:
    """Make the cyclic garbage collector run less often while any applier runs.

    Decoding and folding allocate millions of short-lived, acyclic containers (change
    records, row dicts, key tuples), all freed by reference counting; with the default
    thresholds the collector runs every 700 allocations and its older generations keep
    walking the prefetched transactions: 35% of apply's CPU on the bench trail. Rarer
    collections still reclaim any cycle. Counted, so parallel appliers in threads restore
    the old thresholds only when the last one ends.
    """
    global _gc_users, _gc_saved
    with _gc_lock:
        if enter:
            if _gc_users == 0:
                _gc_saved = gc.get_threshold()
                relaxed = zip(_gc_saved, _GC_THRESHOLDS, strict=True)
                gc.set_threshold(*(max(a, b) for a, b in relaxed))
            _gc_users += 1
        else:
            _gc_users -= 1
            if _gc_users == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)


_op_of = attrgetter("op")


class Applier(DdlApplier):
    """Applies transactions in operation order to one writer (see the module doc).

    Typical use::

        applier = Applier(writer, reader.schema, ApplyOptions(target_id="dw"))
        start = applier.start()                    # last applied op from the checkpoint
        stats = applier.run(reader.transactions(start + 1))
    """

    def __init__(self, writer: Writer, schemas: SchemaLookup | None, options: ApplyOptions):
        super().__init__(writer, schemas, options)
        self._ignore = options.ignore_origins or frozenset()
        self.applied_op = 0
        #: (op, position) -> whether this trail holds operation ``op`` at ``position``; checks
        #: a checkpoint from before trails had an identity (set by :func:`apply_trail`)
        self.same_trail: Callable[[int, str | None], bool] | None = None
        self._rejects: Any = None
        self._reject_tables: set[TableId] = set()
        # the open group
        self._group: list[Transaction] = []
        self._collapses: dict[TableId, TableCollapse] = {}
        #: id(target schema) -> its entry in _collapses (see _fold)
        self._open_collapses: dict[int, TableCollapse] = {}
        self._dirty = False
        self._group_rows = 0
        self._group_started = 0.0
        self._group_collision = False
        self._last_log = time.monotonic()
        self._last_log_changes = 0
        #: this target's progress record (capture.progress): counts, lag, errors
        self.progress = progress.stage("apply", options.target_id)

    # ------------------------------------------------------------------ public

    def start(self) -> int:
        """Read (creating if needed) the checkpoint; return the last applied operation."""
        op, position = self.writer.load_checkpoint(self.options.source_id, self.options.target_id)
        op, position = self._check_trail(op, position)
        if self._rowids is not None:
            self._rowids.setup()
        if not self.writer.transactional_ddl:
            mark = self.writer.load_ddl_mark(self.options.source_id, self.options.target_id)
            self._ddl_resume = mark if mark is not None and mark[0] > op else None
        self.applied_op = op
        self.stats.applied_op = op
        self.stats.position = position
        log.info(
            "apply %s -> %s: resuming after operation %d",
            self.options.source_id,
            self.options.target_id,
            op,
        )
        return op

    def _check_trail(self, op: int, position: str | None) -> tuple[int, str | None]:
        """Bind the checkpoint to this trail, or refuse a different one (13(d) of the design:
        operation numbers restart with a new trail, so another trail's op 1 would look
        "already applied" to a checkpoint at 27,357 and be skipped silently)."""
        trail_id = self.options.trail_id
        if not trail_id:
            return op, position
        source_id, target_id = self.options.source_id, self.options.target_id
        bound = self.writer.load_trail_binding(source_id, target_id)
        if bound == trail_id:
            return op, position
        # applied before checkpoints named their trail: the same trail holds the checkpoint's
        # operation at the checkpoint's position, another one does not
        if (
            not bound
            and op
            and not self.options.adopt_trail
            and self.same_trail is not None
            and not self.same_trail(op, position)
        ):
            bound = "(unrecorded: the checkpoint's operation is not this trail's)"
        if bound and not self.options.adopt_trail:
            raise TrailError(
                f"the target's checkpoint for source {source_id!r}, target {target_id!r} "
                f"belongs to trail {bound} (applied through operation {op}); this trail is "
                f"{trail_id}: its operation numbers start again, so applying it from the "
                "checkpoint would skip changes silently",
                hint="point --trail at the trail this target was applied from; or, when the "
                "target already holds everything up to where the new trail starts (or you "
                "reload it with a snapshot first), run `redoline apply --adopt-trail "
                "--until-caught-up` once to apply the new trail from its first operation",
            )
        if bound:
            log.warning(
                "adopting trail %s for %s -> %s: the checkpoint of trail %s (operation %d) is "
                "reset, the new trail is applied from its first operation",
                trail_id,
                source_id,
                target_id,
                bound,
                op,
            )
            op, position = 0, None
        # no binding yet: a new target, or one applied before trails had an identity
        self.writer.bind_trail(source_id, target_id, trail_id, reset=bool(bound))
        return op, position

    def run(
        self,
        transactions: Iterable[Transaction | None],
        *,
        stop: Callable[[], bool] | None = None,
        on_commit: Callable[[int], None] | None = None,
    ) -> ApplyStats:
        """Apply ``transactions``; a ``None`` item says the trail has nothing more for now,
        so the group in progress commits at once (a follower never holds applied work back
        waiting for the next transaction). Returns when the iterable ends or ``stop()`` is
        true between transactions; the group in progress is committed first."""
        started = time.monotonic()
        should_stop = stop or (lambda: False)
        self._on_commit = on_commit
        _gc_relaxed(True)
        try:
            for txn in transactions:
                if txn is not None:
                    self._take(txn)
                if self._group and (txn is None or self._group_due()):
                    self._flush()
                self._progress()
                if should_stop():
                    break
            self._flush()
        finally:
            _gc_relaxed(False)
            self.stats.seconds += time.monotonic() - started
            if self._rejects is not None:
                self._rejects.close()
                self._rejects = None
        return self.stats

    # ------------------------------------------------------------------ intake

    def _take(self, txn: Transaction) -> None:
        # `in` over a C map: most transactions hold no DDL and cost no Python loop here
        any_ddl = Op.DDL in map(_op_of, txn.changes)
        if any_ddl:
            for change in txn.changes:
                if change.op is Op.DDL and change.table_schema is not None:
                    schema = change.table_schema
                    self._history[(schema.table, schema.version)] = schema
        if txn.last_op <= self.applied_op:
            return  # applied before the restart
        if not self.stats.first_op:
            self.stats.first_op = txn.first_op
        if txn.origin in self._ignore:
            # not applied, but its operation numbers still advance the checkpoint
            self.stats.skipped_origin += 1
            if not self._group:
                self._group_started = time.monotonic()
                self._group_collision = self.options.collision
            self._group.append(txn)
            return
        changes = self._selected(txn)
        collision = self.options.collision or txn.first_op <= self.options.collision_until_op
        if self._group and collision != self._group_collision:
            self._flush()
        has_ddl = any_ddl and any(c.op is Op.DDL for c in changes)
        if has_ddl:
            self._flush()
            self._apply_alone(txn, changes, collision)
            return
        missing = self._missing_tables(changes)
        if missing and self._dirty:
            self._flush()  # creating a table commits on MySQL: close the group first
        for table, schema in missing:
            self._create(table, schema)
        if not self._group:
            self._group_started = time.monotonic()
            self._group_collision = collision
        self._group.append(txn)
        try:
            for change in changes:
                self._fold(change, collision)
        except RowRejected as exc:
            self._replay_group(exc.message)
            return
        self._group_rows += len(changes)

    def _selected(self, txn: Transaction) -> list[Change]:
        keep = self.options.table_filter
        if keep is None:
            return txn.changes
        return [c for c in txn.changes if keep(c.table)]

    def _group_due(self) -> bool:
        if self._group_rows >= self.options.batch_rows:
            return True
        return (time.monotonic() - self._group_started) * 1000 >= self.options.batch_ms

    # ------------------------------------------------------------------ folding

    def _fold(self, change: Change, collision: bool) -> None:
        if change.op is Op.TRUNCATE:
            self._write_pending()
            self._truncate(change)
            self._dirty = True
            return
        schema = self.target_schema(change.table, change.schema_version)
        if self._rowids is not None or self.options.source_column:
            change = self._tagged(self._identified(change, schema, collision))
        # by the schema object's identity (no TableId hashing per change); the entries go
        # whenever `_collapses` is written or reset, and `coll.schema is schema` guards reuse
        coll = self._open_collapses.get(id(schema))
        if coll is None or coll.schema is not schema:
            coll = self._collapses.get(schema.table)
            if coll is None or coll.schema is not schema:
                if coll is not None:
                    self._write_pending()
                coll = TableCollapse(schema, schema.identity, collision=collision)
                self._collapses[schema.table] = coll
            self._open_collapses[id(schema)] = coll
        if not coll.add(change):
            self._write_pending()
            self._row(schema, change, collision)
            self._dirty = True

    def _write_pending(self) -> None:
        for coll in self._collapses.values():
            if len(coll):
                self.stats.collisions += self.writer.merge(coll.batch())
                self._dirty = True
        self._collapses.clear()
        self._open_collapses.clear()

    def _row(self, schema: TableSchema, change: Change, collision: bool) -> None:
        before = change.before if change.before is not None else change.key
        self.stats.collisions += self.writer.apply_row(
            schema, schema.identity, change.op, before, change.after, collision=collision
        )

    # ------------------------------------------------------------------ commit

    def _flush(self) -> None:
        if not self._group:
            return
        try:
            self._write_pending()
            self._checkpoint(self._group[-1])
            self.writer.commit()
        except RowRejected as exc:
            self._replay_group(exc.message)
            return
        self._committed(self._group)

    def _committed(self, txns: list[Transaction]) -> None:
        last = txns[-1]
        self.applied_op = last.last_op
        self.stats.applied_op = last.last_op
        self.stats.position = last.position
        self.stats.last_commit_time = last.commit_time
        self.stats.groups += 1
        self.stats.transactions += len(txns)
        self.stats.changes += sum(len(t.changes) for t in txns)
        counted = self.progress.counted
        for t in txns:
            counted(t)
        self.progress.ok()
        self._reset_group()
        if self._on_commit is not None:
            self._on_commit(self.applied_op)

    def _reset_group(self) -> None:
        self._group = []
        self._collapses = {}
        self._open_collapses.clear()
        self._dirty = False
        self._group_rows = 0

    def _checkpoint(self, txn: Transaction) -> None:
        if self._rowids is not None:
            self._rowids.flush()  # same target transaction as the rows it maps
        self.writer.save_checkpoint(
            self.options.source_id,
            self.options.target_id,
            txn.last_op,
            txn.position,
            txn.commit_time,
        )

    def _replay_group(self, reason: str = "") -> None:
        """Roll the group back and apply it again one statement at a time (see module doc)."""
        group = self._group
        self._roll_back()
        self.stats.replayed_groups += 1
        log.info(
            "set-based write refused (%s); replaying %d transactions row by row",
            reason,
            len(group),
        )
        for txn in group:
            changes = [] if txn.origin in self._ignore else self._selected(txn)
            collision = self.options.collision or txn.first_op <= self.options.collision_until_op
            self._apply_rows(txn, changes, collision)

    def _apply_alone(self, txn: Transaction, changes: list[Change], collision: bool) -> None:
        """One source transaction with DDL, in its own target transaction: its statements in
        order, the rows between them folded and written set-based (a PostgreSQL source puts a
        table's definition into the transaction that carries its rows: a backfilling UPDATE
        after ADD COLUMN, a table created during a sync). A write the target refuses sends the
        transaction through :meth:`_apply_rows`, which finds the row."""
        self._ddl_txn, self._ddl_step = txn, 0
        try:
            self._fold_alone(txn, changes, collision or self._resuming(txn))
        except RowRejected as exc:
            self._roll_back()
            if not self.writer.transactional_ddl:
                # its DDL statements committed on their own: resume as after a restart
                mark = self.writer.load_ddl_mark(self.options.source_id, self.options.target_id)
                self._ddl_resume = mark if mark is not None and mark[0] == txn.last_op else None
            log.info(
                "set-based write refused (%s); replaying the transaction row by row", exc.message
            )
            self.stats.replayed_groups += 1
            self._apply_rows(txn, changes, collision)
            return
        self._committed([txn])

    def _fold_alone(self, txn: Transaction, changes: list[Change], collision: bool) -> None:
        for change in self._alone_rows(changes):
            self._fold(change, collision)
        self._write_pending()
        self._commit_alone(txn)

    def _alone_rows(self, changes: list[Change]) -> Iterator[Change]:
        """The row changes of a transaction applied alone, in order, with its DDL statements
        run between them and the tables a row needs created first; what is folded so far is
        written before each (creating a table commits), so the target sees the source's order."""
        # one statement on several tables (RENAME TABLE a TO b) is one change per table in
        # the trail, but runs on the target once, on the tables the trail holds changes of
        statements: dict[str, list[Change]] = {}
        for change in changes:
            if change.op is Op.DDL and change.ddl:
                statements.setdefault(change.ddl, []).append(change)
        ddl_done: set[str] = set()
        for change in changes:
            if change.op is Op.DDL:
                self._write_pending()
                group = statements.get(change.ddl or "", [change])
                self._ddl(change, group, again=change.ddl in ddl_done)
                if change.ddl:
                    ddl_done.add(change.ddl)
                continue
            missing = self._missing_tables([change])
            if missing:
                self._write_pending()
            for table, schema in missing:
                self._create(table, schema)
            yield change

    def _roll_back(self) -> None:
        """Roll back the target transaction and forget what was folded or mapped in it."""
        self.writer.rollback()
        if self._rowids is not None:
            self._rowids.reset()
        self._reset_group()

    def _commit_alone(self, txn: Transaction) -> None:
        """Commit a transaction applied alone with its checkpoint."""
        self._checkpoint(txn)
        if self._ddl_marked:
            # with the checkpoint: the DDL it marked is applied
            self.writer.clear_ddl_mark(self.options.source_id, self.options.target_id)
        self.writer.commit()
        self._ddl_marked = False
        if self._ddl_resume is not None and self._ddl_resume[0] <= txn.last_op:
            self._ddl_resume = None

    def _apply_rows(self, txn: Transaction, changes: list[Change], collision: bool) -> None:
        """One source transaction, statement by statement, in its own target transaction."""
        self._ddl_txn, self._ddl_step = txn, 0
        if self._resuming(txn):
            # the interrupted run committed this transaction's changes up to its DDL (a
            # MySQL target commits before each DDL statement): rows again as collisions
            collision = True
        try:
            for change in self._alone_rows(changes):
                if change.op is Op.TRUNCATE:
                    self._truncate(change)
                    continue
                schema = self.target_schema(change.table, change.schema_version)
                try:
                    self._row(
                        schema, self._tagged(self._identified(change, schema, collision)), collision
                    )
                except RowRejected as exc:
                    raise _Rejected(txn, change, exc) from None
            self._commit_alone(txn)
        except _Rejected as rej:
            self._roll_back()
            self._reject(rej)
            return
        self._committed([txn])

    # ------------------------------------------------------------------ errors

    def _reject(self, rej: _Rejected) -> None:
        txn, change, exc = rej.txn, rej.change, rej.exc
        op_no = txn.first_op + next(
            (i for i, c in enumerate(txn.changes) if c is change), len(txn.changes) - 1
        )
        row = change.after if change.after is not None else (change.before or change.key)
        if self.options.on_error != "skip":
            raise ApplyError(
                f"the target refused source transaction {txn.xid} (operations {txn.first_op}"
                f"..{txn.last_op}, committed {txn.commit_time.isoformat()} at {txn.position}): "
                f"operation {op_no}, {change.op.value} on {change.table}, row {row!r}: "
                f"{exc.message}",
                hint=(
                    f"a table never loaded by a snapshot holds only rows changed since capture "
                    f"started: `redoline snapshot --tables {change.table}` (or `redoline sync`) "
                    "loads it; otherwise "
                    if getattr(exc, "missing", False)
                    else ""
                )
                + "fix the target (or the row) and restart apply; or --on-error skip to set "
                "rejected transactions aside in a reject trail",
            )
        self._write_reject(txn)
        self._checkpoint(txn)
        self.writer.commit()
        self.stats.rejected_transactions += 1
        log.error(
            "REJECTED source transaction %s (operations %d..%d) written to reject trail %s: "
            "operation %d %s on %s: %s",
            txn.xid,
            txn.first_op,
            txn.last_op,
            self.options.reject_dir,
            op_no,
            change.op.value,
            change.table,
            exc.message,
        )
        self._committed([txn])

    def _write_reject(self, txn: Transaction) -> None:
        from capture.trail import TrailWriter

        assert self.options.reject_dir is not None
        if self._rejects is None:
            self._rejects = TrailWriter(
                self.options.reject_dir,
                source_id=f"{self.options.source_id}.rejects.{self.options.target_id}",
            )
            self.stats.reject_dir = str(self.options.reject_dir)
        announce = []
        for change in txn.changes:
            if change.op in (Op.DDL, Op.TRUNCATE) or change.table in self._reject_tables:
                continue
            schema = self.source_schema(change.table, change.schema_version)
            announce.append(Change(Op.DDL, change.table, schema.version, table_schema=schema))
            self._reject_tables.add(change.table)
        copy = replace(txn, changes=[*announce, *txn.changes], first_op=0)
        self._rejects.append(copy)
        self._rejects.flush()

    # ------------------------------------------------------------------ progress

    def _progress(self) -> None:
        now = time.monotonic()
        if now - self._last_log < 10:
            return
        # the rate over the interval since the previous line (stats.seconds is set at the end)
        interval = now - self._last_log
        rate = (self.stats.changes - self._last_log_changes) / interval
        self._last_log, self._last_log_changes = now, self.stats.changes
        # the heartbeat's lag when the source writes one; else an estimate from the last
        # commit time, 0 once nothing is left to apply (an idle source is not lagging)
        seconds, method = self.progress.lag_seconds()
        lag = ""
        if seconds is not None:
            lag = f", lag {seconds:.1f}s" + (" (estimate)" if method == "estimate" else "")
        log.info(
            "applied through operation %d: %d transactions, %d changes, %.0f changes/s%s",
            self.applied_op,
            self.stats.transactions,
            self.stats.changes,
            rate,
            lag,
        )


class _Rejected(Exception):
    def __init__(self, txn: Transaction, change: Change, exc: RowRejected) -> None:
        super().__init__(exc.message)
        self.txn, self.change, self.exc = txn, change, exc
