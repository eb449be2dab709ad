"""The ordered applier: source transactions in, grouped set-based target transactions out.

Consecutive source transactions are grouped into one target transaction, bounded by
``batch_rows`` changes and ``batch_ms`` milliseconds. Inside a group each table's changes
are folded to their net effect (:mod:`apply.collapse`) and written by the target's
:class:`connectors.base.Writer` set-based; the checkpoint row is updated in the same target
transaction, so a crash at any instant loses nothing and applies nothing twice.

Barriers: a TRUNCATE writes what is pending before it; a transaction with DDL is applied on
its own, after the group before it has committed (MySQL commits DDL implicitly; there each
DDL statement is marked in the target before it runs, so a restart after a crash between the
statement and the checkpoint neither runs it twice nor leaves it out: ``_run_ddl``). When the
set-based write of a group fails, the group is rolled back and replayed one statement at a
time, one target transaction per source transaction, which names the exact row and source
transaction the target refuses (and lets ``on_error="skip"`` set aside just that one).
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from operator import attrgetter
from pathlib import Path
from typing import Any, Final

from apply.collapse import TableCollapse
from apply.ddl import already_applied, ddl_kind, translate_ddl
from apply.names import check_target_names
from apply.point import (
    PointOutcome,
    StopPoint,
    bounded,
    delayed,
    refuse_if_past,
    refuse_inside_snapshot,
)
from apply.rowid import RowidMap, uses_rowid, with_row_key
from apply.typemap import column_type, ensure_table
from capture import progress
from connectors.base import RowRejected, Writer
from connectors.errors import (
    ApplyError,
    ConfigError,
    SchemaError,
    TrailError,
    UnknownDefinitionError,
)
from connectors.model import ROW_KEY, Change, Column, Op, TableId, TableSchema, Transaction

__all__ = [
    "Applier",
    "ApplyOptions",
    "ApplyStats",
    "SchemaLookup",
    "apply_trail",
    "consumer_name",
    "prefetch",
    "register_target",
]

log = logging.getLogger("redoline.apply")

#: (source table, schema version) -> that table's definition (``TrailReader.schema``)
SchemaLookup = Callable[[TableId, int], TableSchema]


@dataclass
class ApplyOptions:
    """How to apply. Snapshot catch-up sets ``collision_until_op``."""

    #: this target's id: the checkpoint row's key and the retention consumer's name
    target_id: str = "default"
    #: the source's id in the checkpoint row (default: the trail's source id)
    source_id: str = "default"
    batch_rows: int = 20_000
    batch_ms: int = 500
    #: collision mode for the whole run
    collision: bool = False
    #: collision mode for transactions that start at or before this operation number only
    collision_until_op: int = 0
    on_error: str = "stop"  # stop | skip
    #: trail directory for rejected transactions (on_error="skip")
    reject_dir: Path | None = None
    skip_ddl: bool = False
    #: N:1: add this column (holding source_id) to every target table and to its key
    source_column: str | None = None
    #: origins whose transactions are not applied: the loop guard of a bidirectional or
    #: cascading topology (``--ignore-origin``, ``[apply] ignore_origins``). None/empty: off,
    #: every transaction is applied (a one-way setup has no loop to guard)
    ignore_origins: frozenset[str] | None = None
    #: source table -> target table (``TablesConfig.target_name``)
    rename: Callable[[TableId], TableId] | None = None
    #: source engine's sqlglot dialect, for DDL translation and same-engine types
    source_dialect: str | None = None
    #: only these source tables (parallel groups); None: all
    table_filter: Callable[[TableId], bool] | None = None
    #: create missing target tables from the trail's definitions
    create_tables: bool = True
    #: the source's changes carry row ids (``Database.has_row_ids``: Oracle ROWID, SQL Server
    #: locator): keyless tables get a surrogate key and a rowid map (:mod:`apply.rowid`)
    row_ids: bool = False
    #: the trail's identity (its header); the target's checkpoint is bound to it, and another
    #: trail is refused (:meth:`Applier.start`). "" : a format-1 trail, not checked
    trail_id: str = ""
    #: accept a different trail than the checkpoint's: apply it from its first operation
    adopt_trail: bool = False
    #: delayed replica: seconds a transaction's source commit time must be older than before
    #: it is applied (``[apply] delay``, ``--delay``; :func:`apply.point.delayed`). 0: none
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.on_error not in ("stop", "skip"):
            raise ConfigError(f"on_error must be stop or skip, not {self.on_error!r}")
        if self.delay < 0:
            raise ConfigError("the apply delay must not be negative")
        if self.on_error == "skip" and self.reject_dir is None:
            raise ConfigError(
                "on_error = skip needs a reject file (a trail directory)",
                hint="--reject-file DIR or [apply] reject_file",
            )


@dataclass
class ApplyStats:
    """What a run did (printed by ``redoline apply --json``)."""

    transactions: int = 0
    changes: int = 0
    groups: int = 0
    collisions: int = 0
    rejected_transactions: int = 0
    skipped_origin: int = 0
    ddl_applied: int = 0
    ddl_skipped: int = 0
    replayed_groups: int = 0
    first_op: int = 0
    applied_op: int = 0
    position: str | None = None
    last_commit_time: dt.datetime | None = None
    seconds: float = 0.0
    reject_dir: str | None = None
    tables_created: list[str] = field(default_factory=list)
    #: delayed replica: the first transaction the delay held back when the run ended (0: none)
    delay_held_op: int = 0
    delay_held_commit_time: dt.datetime | None = None

    @property
    def changes_per_second(self) -> float:
        return self.changes / self.seconds if self.seconds > 0 else 0.0

    @property
    def skipped_everything(self) -> bool:
        """Every transaction this run read was skipped by the loop guard (none applied)."""
        return self.skipped_origin > 0 and self.skipped_origin >= self.transactions


class _Stop(Exception):
    pass


#: seconds between a following apply's looks at the trail's open segment
FOLLOW_POLL: Final = 0.05

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


class Applier:
    """Applies transactions in operation order to one writer (see the module doc).

    Typical use::

        applier = Applier(writer, reader.schema, ApplyOptions(target_id="dw"))
        start = applier.start()                    # last applied op from the checkpoint
        stats = applier.run(reader.transactions(start + 1))
    """

    def __init__(self, writer: Writer, schemas: SchemaLookup | None, options: ApplyOptions):
        self.writer = writer
        self.options = options
        self._lookup = schemas
        self._history: dict[tuple[TableId, int], TableSchema] = {}
        self._targets: dict[tuple[TableId, int], TableSchema] = {}
        self._existing: set[TableId] = set()
        #: tables this run created, checked together for names the target folds into one
        self._created_schemas: dict[TableId, TableSchema] = {}
        self._ignore = options.ignore_origins or frozenset()
        #: target tables a snapshot of this source loaded (their definition is redoline's)
        self.loaded_tables: set[TableId] = set()
        self.stats = ApplyStats()
        self.applied_op = 0
        #: (op, position) -> whether this trail holds operation ``op`` at ``position``; checks
        #: a checkpoint from before trails had an identity (set by :func:`apply_trail`)
        self.same_trail: Callable[[int, str | None], bool] | None = None
        self._rejects: Any = None
        self._rowids = (
            RowidMap(writer, options.target_id, options.source_id) if options.row_ids else None
        )
        self._reject_tables: set[TableId] = set()
        # the open group
        self._group: list[Transaction] = []
        self._collapses: dict[TableId, TableCollapse] = {}
        #: id(target schema) -> its entry in _collapses (see _fold)
        self._open_collapses: dict[int, TableCollapse] = {}
        #: id(source TableId) -> (that TableId, version, _targets, schema) (see target_schema)
        self._fast_targets: dict[int, tuple[TableId, int, Any, TableSchema]] = {}
        self._dirty = False
        self._group_rows = 0
        self._group_started = 0.0
        self._group_collision = False
        self._last_log = time.monotonic()
        self._last_log_changes = 0
        #: this target's progress record (capture.progress): counts, lag, errors
        self.progress = progress.stage("apply", options.target_id)
        # DDL on a target without transactional DDL (see _run_ddl)
        self._ddl_resume: tuple[int, int, str] | None = None
        self._ddl_marked = False
        self._ddl_txn: Transaction | None = None
        self._ddl_step = 0

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
        """Apply ``transactions`` (``None`` items are idle ticks that let a group close on
        time). Returns when the iterable ends or ``stop()`` is true between transactions;
        the group in progress is committed first."""
        started = time.monotonic()
        should_stop = stop or (lambda: False)
        self._on_commit = on_commit
        _gc_relaxed(True)
        try:
            for txn in transactions:
                if txn is not None:
                    self._take(txn)
                if self._group and self._group_due():
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

    # ------------------------------------------------------------------ schemas

    def source_schema(self, table: TableId, version: int) -> TableSchema:
        found = self._history.get((table, version))
        if found is None and self._lookup is not None:
            found = self._lookup(table, version)
            self._history[(table, version)] = found
        if found is None:
            raise SchemaError(f"no definition of {table} version {version} in the trail")
        return found

    def target_schema(self, table: TableId, version: int) -> TableSchema:
        """``table``'s definition as it is on the target: renamed, tagged with the source."""
        # Hot path (twice per change): the trail decoder shares one TableId per table, so
        # look it up by identity instead of hashing the dataclass. An entry holds the
        # TableId (its id cannot be reused meanwhile) and the `_targets` dict it came from
        # (DDL replaces that dict, which retires every entry).
        hit = self._fast_targets.get(id(table))
        if hit is not None and hit[0] is table and hit[1] == version and hit[2] is self._targets:
            return hit[3]
        found = self._targets.get((table, version))
        if found is None:
            src = self.source_schema(table, version)
            found = self._to_target(src)
            self._targets[(table, version)] = found
        self._fast_targets[id(table)] = (table, version, self._targets, found)
        return found

    def _truncated(self, change: Change) -> tuple[TableId, TableSchema | None]:
        """The target table a TRUNCATE empties, with its definition when the trail has one.

        A TRUNCATE can be a table's first change in the trail (its rows came by snapshot, so
        no row event announced it): the trail then holds no definition, yet the target table
        is known by its (renamed) name, which is all emptying it needs.
        """
        try:
            schema = self.target_schema(change.table, change.schema_version)
        except UnknownDefinitionError:
            name = self.options.rename(change.table) if self.options.rename else change.table
            return name, None
        return schema.table, schema

    def _truncate(self, change: Change) -> None:
        target, schema = self._truncated(change)
        # a table known only by name that is not on the target has no rows to remove
        if schema is not None or target in self._existing or self.writer.table_exists(target):
            self.writer.truncate(target)
        self._forget_rows(change.table, schema)

    def _to_target(self, src: TableSchema) -> TableSchema:
        name = self.options.rename(src.table) if self.options.rename else src.table
        if self.options.row_ids and not src.identity:
            src = with_row_key(src)  # identity through the rowid map
        sc = self.options.source_column
        if not sc:
            return replace(src, table=name)
        tag = Column(sc, "str", source_type="", nullable=False, length=128)
        return replace(
            src,
            table=name,
            columns=(tag, *src.columns),
            primary_key=(sc, *src.primary_key) if src.primary_key else (),
            unique_keys=tuple((sc, *u) for u in src.unique_keys),
        )

    def _identified(self, change: Change, schema: TableSchema, collision: bool) -> Change:
        """``change`` carrying its surrogate key when ``schema`` goes through the rowid map."""
        if self._rowids is None or not uses_rowid(schema):
            return change
        return self._rowids.tag(change, collision=collision)

    def _forget_rows(self, source: TableId, schema: TableSchema | None) -> None:
        """A TRUNCATE or DROP of ``source``: its rowid mappings go too."""
        if self._rowids is not None and (schema is None or uses_rowid(schema)):
            self._rowids.forget_table(source)

    def _tagged(self, change: Change) -> Change:
        sc = self.options.source_column
        if not sc:
            return change
        value = {sc: self.options.source_id}
        return replace(
            change,
            key={**value, **change.key} if change.key is not None else None,
            before={**value, **change.before} if change.before is not None else None,
            after={**value, **change.after} if change.after is not None else None,
        )

    def _missing_tables(self, changes: list[Change]) -> list[tuple[TableId, TableSchema]]:
        out: dict[TableId, TableSchema] = {}
        checked: set[int] = set()  # schemas are cached objects: each is looked at once
        for change in changes:
            if change.op is Op.DDL:
                continue
            if change.op is Op.TRUNCATE:
                known = self._truncated(change)[1]
                if known is None:
                    continue  # nothing to create it from; _truncate leaves it alone
                schema = known
            else:
                schema = self.target_schema(change.table, change.schema_version)
            if id(schema) in checked:
                continue
            checked.add(id(schema))
            if schema.table in self._existing or schema.table in out:
                continue
            if self.writer.table_exists(schema.table):
                self._existing.add(schema.table)
            else:
                out[schema.table] = schema
        return list(out.items())

    def _create(self, table: TableId, schema: TableSchema) -> None:
        if not self.options.create_tables:
            raise SchemaError(
                f"target table {table} does not exist",
                hint="create it, or let apply create tables from the trail",
            )
        # two source tables (or columns) must not become one on a case-folding target
        self._created_schemas[table] = schema
        check_target_names(self.writer.database, self._created_schemas.items())
        ensure_table(self.writer, schema, table, source_dialect=self.options.source_dialect)
        self.writer.commit()
        self._existing.add(table)
        self.stats.tables_created.append(str(table))

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
        self.writer.rollback()
        if self._rowids is not None:
            self._rowids.reset()
        self._reset_group()
        self.stats.replayed_groups += 1
        log.info(
            "set-based write refused (%s); replaying %d transactions row by row",
            reason,
            len(group),
        )
        for txn in group:
            changes = [] if txn.origin in self._ignore else self._selected(txn)
            collision = self.options.collision or txn.first_op <= self.options.collision_until_op
            self._apply_alone(txn, changes, collision)

    def _apply_alone(self, txn: Transaction, changes: list[Change], collision: bool) -> None:
        """One source transaction, statement by statement, in its own target transaction."""
        ddl_done: set[str] = set()
        # one statement on several tables (RENAME TABLE a TO b) is one change per table in
        # the trail, but runs on the target once, on the tables the trail holds changes of
        statements: dict[str, list[Change]] = {}
        for change in changes:
            if change.op is Op.DDL and change.ddl:
                statements.setdefault(change.ddl, []).append(change)
        self._ddl_txn, self._ddl_step = txn, 0
        if self._resuming(txn):
            # the interrupted run committed this transaction's changes up to its DDL (a
            # MySQL target commits before each DDL statement): rows again as collisions
            collision = True
        try:
            for change in changes:
                if change.op is Op.DDL:
                    group = statements.get(change.ddl or "", [change])
                    self._ddl(change, group, again=change.ddl in ddl_done)
                    if change.ddl:
                        ddl_done.add(change.ddl)
                    continue
                for table, schema in self._missing_tables([change]):
                    self._create(table, schema)
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
            self._checkpoint(txn)
            if self._ddl_marked:
                # with the checkpoint: the DDL it marked is applied
                self.writer.clear_ddl_mark(self.options.source_id, self.options.target_id)
            self.writer.commit()
            self._ddl_marked = False
            if self._ddl_resume is not None and self._ddl_resume[0] <= txn.last_op:
                self._ddl_resume = None
        except _Rejected as rej:
            self.writer.rollback()
            if self._rowids is not None:
                self._rowids.reset()
            self._reject(rej)
            return
        self._committed([txn])

    # ------------------------------------------------------------------ DDL

    def _resuming(self, txn: Transaction) -> bool:
        """Whether ``txn`` is the one whose DDL an interrupted run marked as running."""
        return self._ddl_resume is not None and self._ddl_resume[0] == txn.last_op

    def _ddl(self, change: Change, group: list[Change], *, again: bool = False) -> None:
        schema = change.table_schema
        source = change.table
        target = self.target_schema(source, schema.version).table if schema else None
        if target is None:
            target = self.options.rename(source) if self.options.rename else source
        self.writer.invalidate(target)  # type: ignore[attr-defined]
        self._existing.discard(target)
        self._targets = {k: v for k, v in self._targets.items() if k[0] != source}
        if schema is None and (change.ddl is None or change.ddl.lstrip()[:4].upper() == "DROP"):
            self._forget_rows(source, None)  # the table's rowid mappings go with it
            self._created_schemas.pop(target, None)
        if again:
            return
        if change.ddl is None:
            if schema is None:
                # gone under this name (catch-up: renamed to a table the snapshot loaded)
                if self.writer.table_exists(target):
                    log.info(
                        "%s: dropped (renamed on the source to a table the snapshot loaded)", target
                    )
                    qt = self.writer.qt  # type: ignore[attr-defined]
                    self._run_ddl(f"DROP TABLE IF EXISTS {qt(target)}", change)
                    self.stats.ddl_applied += 1
            # a definition announced before its first rows: create the table if missing
            elif schema is not None and not self.writer.table_exists(target):
                self._create(target, self._to_target(schema))
            elif schema is not None:
                self._add_missing_columns(target, self._to_target(schema))
            return
        if self._lacks_tables(change, group):
            return
        try:
            statements = translate_ddl(
                change.ddl,
                source_dialect=self.options.source_dialect,
                target_dialect=self.writer.dialect,
                default_schema=source.schema,
                rename=self.options.rename,
                schema_after=self._to_target(schema) if schema is not None else None,
                target_exists=self.writer.table_exists,
                only={c.table for c in group},
            )
        except SchemaError as exc:
            if self.options.skip_ddl:
                log.warning(
                    "SKIPPED DDL (skip_ddl is on) on %s: %s -- %s", source, change.ddl, exc.message
                )
                self.stats.ddl_skipped += 1
                return
            raise
        if any(sql.startswith("CREATE TABLE") for sql in statements):
            if schema is not None:
                self._created_schemas[target] = self._to_target(schema)
                check_target_names(self.writer.database, self._created_schemas.items())
            self.writer.create_schema(target.schema)
        for sql in statements:
            try:
                self._run_ddl(sql, change, group)
            except RowRejected as exc:
                if self.options.skip_ddl:
                    # sqlglot passes some MySQL-only clauses through (ENGINE=, FULLTEXT): the
                    # target is the judge. A MySQL source's DDL is a transaction of its own, so
                    # rolling back drops only this statement (and its earlier parts)
                    self.writer.rollback()
                    log.warning(
                        "SKIPPED DDL (skip_ddl is on) on %s: %s -- the target refused %s: %s",
                        source,
                        change.ddl,
                        sql,
                        exc.message,
                    )
                    self.stats.ddl_skipped += 1
                    return
                raise ApplyError(
                    f"the target refused DDL translated from {change.ddl!r}: {exc.message}\n"
                    f"  statement: {sql}",
                    hint="fix the target by hand and restart, or re-run with --skip-ddl to "
                    "skip statements apply cannot translate",
                ) from None
        self.stats.ddl_applied += 1

    def _run_ddl(self, sql: str, change: Change, group: list[Change] | None = None) -> None:
        """Run one target DDL statement of the transaction being applied alone.

        Where DDL commits on its own (``Writer.transactional_ddl`` false: MySQL), the
        statement is first marked as running, committed; a run that restarts on the marked
        transaction skips the statements before the mark (they ran) and runs the marked one
        only if the target does not show its effect already (:func:`apply.ddl.already_applied`).
        """
        step = self._ddl_step
        self._ddl_step += 1
        if ddl_kind(sql, self.writer.dialect) == "alter" and (
            already_applied(
                sql,
                self.writer.dialect,
                self.writer.table_exists,
                self.writer.column_names,  # type: ignore[attr-defined]
                self._expected_columns(group or [change]),
            )
            is True
        ):
            # the target already has the columns the statement makes: a snapshot loaded the
            # table after the change (a PostgreSQL column change announced after the snapshot
            # that already holds it): running it again could only fail
            log.info("the target already shows the effect of %s: not run again", sql)
            return
        if self.writer.transactional_ddl:
            self.writer.execute(sql)
            return
        txn = self._ddl_txn
        assert txn is not None
        resume = self._ddl_resume
        if resume is not None and resume[0] == txn.last_op and step <= resume[1]:
            if step < resume[1]:
                log.info(
                    "DDL already applied before the restart (operation %d): %s", txn.last_op, sql
                )
                return
            if sql != resume[2]:
                raise ApplyError(
                    f"apply was interrupted while the target ran DDL statement {resume[2]!r} "
                    f"of operation {txn.last_op}, but this run translates that step as "
                    f"{sql!r}: whether the target has it cannot be checked",
                    hint="compare the target table with the source; apply the statement by "
                    "hand if it is missing, then delete the row of redoline."
                    "redoline_ddl_progress for this source and target and restart",
                )
            done = already_applied(
                sql,
                self.writer.dialect,
                self.writer.table_exists,
                self.writer.column_names,  # type: ignore[attr-defined]
                self._expected_columns(group or [change]),
            )
            if done is None:
                raise ApplyError(
                    f"apply was interrupted while the target ran {sql!r} (operation "
                    f"{txn.last_op}), and the target's tables are in neither the state before "
                    "nor the state after it",
                    hint="bring the target to the state after the statement by hand, then "
                    "delete the row of redoline.redoline_ddl_progress for this source and "
                    "target and restart",
                )
            if done:
                log.warning(
                    "DDL ran before the interruption (the target shows its effect), not run "
                    "again: operation %d, %s",
                    txn.last_op,
                    sql,
                )
                return
        self.writer.mark_ddl(self.options.source_id, self.options.target_id, txn.last_op, step, sql)
        self._ddl_marked = True
        self.writer.execute(sql)

    def _expected_columns(self, group: list[Change]) -> Callable[[TableId], set[str] | None]:
        """Target table -> its columns in the trail's definitions after the statement."""
        after: dict[TableId, set[str]] = {}
        for c in group:
            if c.table_schema is not None:
                t = self._to_target(c.table_schema)
                after[t.table] = {col.name for col in t.columns}
        return after.get

    def _lacks_tables(self, change: Change, group: list[Change]) -> bool:
        """An ALTER or RENAME of tables the target does not have (capture and apply with no
        snapshot: a table apply never met): instead of failing on the missing table, the
        target gets the tables from the trail's definitions after the statement, and a
        warning says their rows from before capture started are not there. True: handled."""
        assert change.ddl is not None
        kind = ddl_kind(change.ddl, self.options.source_dialect)
        if kind not in ("alter", "rename"):
            return False
        names = {
            c.table: (self._to_target(c.table_schema).table if c.table_schema else None)
            for c in group
        }
        where = {
            t: new or (self.options.rename(t) if self.options.rename else t)
            for t, new in names.items()
        }
        if kind == "alter" and len(group) == 1:
            if self.writer.table_exists(where[change.table]):
                return False
        elif any(self.writer.table_exists(t) for t in where.values()):
            return False
        made = []
        for c in group:
            if c.table_schema is None:
                continue
            schema = self._to_target(c.table_schema)
            self._create(schema.table, schema)
            made.append(str(schema.table))
        what = (
            f"created {', '.join(made)} from the trail's definition after it"
            if made
            else "skipped it (the trail has no definition of the table yet: its next rows "
            "bring one, and apply creates the table then)"
        )
        log.warning(
            "%s is not on the target: %r applies to a table apply never created, so apply %s. "
            "Rows from before capture started are NOT on the target: load them with "
            "`redoline snapshot` (or `redoline sync`, which snapshots tables not loaded yet)",
            ", ".join(str(t) for t in where.values()),
            change.ddl,
            what,
        )
        self.stats.ddl_applied += 1
        return True

    def _add_missing_columns(self, target: TableId, schema: TableSchema) -> None:
        """A definition without DDL text for a table the target has: its first in the trail
        (the rows came by snapshot, so the trail holds no earlier definition to diff against).
        Columns it has and the target lacks are added. Columns only the target has were
        dropped (or renamed) on the source between the snapshot and the trail's first
        definition: on a table a snapshot of this source created they are dropped too (the
        target's definition is redoline's; verify would report them); on a table redoline did
        not load they are kept (a column of the DBA's own is not ours to drop) and named in a
        warning."""
        have = self.writer.column_names(target)  # type: ignore[attr-defined]
        missing = [c for c in schema.columns if c.name not in have]
        for col in missing:
            ctype = column_type(
                col, self.writer.dialect, source_dialect=self.options.source_dialect
            )
            sql = (
                f"ALTER TABLE {self.writer.qt(target)} "  # type: ignore[attr-defined]
                f"ADD COLUMN {self.writer.q(col.name)} {ctype}"  # type: ignore[attr-defined]
            )
            log.info("%s: adding column %s (the source's definition has it)", target, col.name)
            self.writer.execute(sql)
            self.stats.ddl_applied += 1
        own = {ROW_KEY, self.options.source_column}  # columns apply itself adds
        extra = sorted(have - {c.name for c in schema.columns} - own)
        if extra and target in self.loaded_tables:
            for name in extra:
                log.warning(
                    "%s: dropping column %s: the source dropped or renamed it before the trail "
                    "recorded the table%s",
                    target,
                    name,
                    " (if it was renamed, the values of its new column in rows the snapshot "
                    "loaded are NULL: re-snapshot the table to reload them)"
                    if missing
                    else "",
                )
                self.writer.execute(
                    f"ALTER TABLE {self.writer.qt(target)} "  # type: ignore[attr-defined]
                    f"DROP COLUMN {self.writer.q(name)}"  # type: ignore[attr-defined]
                )
                self.stats.ddl_applied += 1
        elif extra:
            log.warning(
                "%s: target columns %s are not in the source's definition (dropped or renamed "
                "on the source before the trail recorded the table); kept, not written",
                target,
                ", ".join(extra),
            )

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


# --------------------------------------------------------------------------- trail driver


_END = object()


def prefetch(
    source: Iterator[Transaction], *, tick: float, depth: int = 20_000
) -> Iterator[Transaction | None]:
    """Read ``source`` in a thread so trail decoding overlaps target I/O.

    Yields the transactions in order, and ``None`` whenever none arrived for ``tick`` seconds:
    :meth:`Applier.run` takes ``None`` as "idle", the moment to commit a partial batch, so a
    following reader never holds applied work back waiting for the next transaction. At most
    ``depth`` transactions are read ahead. An exception in the reader is raised here, in the
    consumer, once the transactions read before it are consumed.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    failure: list[BaseException] = []

    def pump() -> None:
        try:
            for txn in source:
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
        yield item


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
    (:func:`apply.snapshot.catchup_transactions`), and registers the target's progress for
    retention as :func:`consumer_name` (``progress``, when given, receives it instead:
    parallel groups report to one shared consumer). ``follow`` tails the trail until
    ``stop()``; otherwise returns at the trail's current end (``--until-caught-up``).
    """
    from apply.snapshot import load_snapshot_scope, load_table_states, table_windows
    from capture.trail import TrailReader, trail_info
    from connectors.base import position_comparator

    info = trail_info(trail_dir, key=key)
    if options.source_id == "default" and info.source_id:
        options = replace(options, source_id=info.source_id)
    if options.source_dialect is None and info.source_dialect:
        options = replace(options, source_dialect=info.source_dialect)
    if info.row_ids and not options.row_ids:
        options = replace(options, row_ids=True)
    if info.trail_id and not options.trail_id:
        options = replace(options, trail_id=info.trail_id)
    states = load_table_states(writer.database, options.source_id)
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

    applier.same_trail = same_trail
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
    from apply.snapshot import catchup_transactions
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
    # at the reader's default 0.2 s that wait was a visible part of the heartbeat lag
    source: Iterator[Transaction] = reader.transactions(
        start + 1, follow=follow, stop=should_stop, poll=FOLLOW_POLL
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
        prefetch(source, tick=max(0.01, options.batch_ms / 4000))
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
