"""Initial load without downtime: parallel consistent snapshot, bulk load, then catch-up.

::

    report = run_snapshot(source_db, target_db, SnapshotOptions(source_id="shop"))
    txns = catchup_transactions(reader.transactions(...), windows, compare)   # apply.catchup

How it fits together (DESIGN.md: Snapshot and catch-up):

1. **Snapshot.** :func:`connectors.snapshot.open_snapshot` gives ``workers`` source
   connections on one consistent point and its :class:`~connectors.snapshot.SnapshotPoint`.
   Each table is created on the target (:func:`apply.typemap.create_table_sql`: mapped types,
   primary key, unique keys), cut into key-range chunks, and the chunks are read in parallel
   and bulk-loaded: PostgreSQL ``COPY FROM STDIN`` and MySQL/MariaDB ``LOAD DATA LOCAL
   INFILE`` (one connection per worker), DuckDB ``read_csv`` into ``INSERT ... SELECT`` (one
   loader, as DuckDB has one writer).
2. **Resumable.** Progress lives in the target, in ``redoline.snapshot_tables`` and
   ``redoline.snapshot_chunks``; a chunk's rows and its "done" mark commit in one target
   transaction, so after a crash only unfinished chunks are read again. A resumed table keeps
   the *earliest* start position and takes the *latest* end position of the runs that loaded
   it, which widens its collision window to cover both snapshot points.
3. **Catch-up.** :func:`apply.catchup.catchup_transactions` filters the trail for the applier:
   a change to a snapshotted table from a transaction at or before the table's start position
   is already in the snapshot and is dropped; transactions up to the latest end position are
   applied in collision mode (``ApplyOptions.collision_until_op`` is raised as they pass);
   after that, normal apply. The source keeps taking writes the whole time. A snapshot of every
   configured table also records its point as the *scope*: a table it did not load did not
   exist then, so row changes to such a table at or before that point are moot (its DDL still
   applies: a DROP before the point removes what an earlier apply created).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apply.catchup import TableWindow
from apply.names import check_target_names
from apply.rowid import SnapshotKeys, with_row_key
from apply.typemap import create_table_sql
from capture.filters import CaptureFilter
from connectors._bulk import CHUNKS, STATE_SCHEMA, TABLES, BulkTarget
from connectors.base import Database, TableFilter
from connectors.errors import ConfigError, DefinitionChangedError, SchemaError, ToolkitError
from connectors.model import ROW_KEY, TableId, TableSchema
from connectors.snapshot import KeyRange, SnapshotPoint, decode_key, encode_key, open_snapshot

__all__ = [
    "ProgressHook",
    "SnapshotOptions",
    "SnapshotReport",
    "TableState",
    "load_snapshot_scope",
    "load_table_states",
    "run_snapshot",
]

log = logging.getLogger("redoline.snapshot")
#: new snapshots for tables whose definition changed under the snapshot's read, before they
#: are left failed (DDL that keeps recurring during the load)
_RELOAD_TRIES = 3


#: (target table, rows just loaded, rows estimated for the table) -> None
ProgressHook = Callable[[str, int, int], None]


@dataclass
class SnapshotOptions:
    """What to snapshot and how."""

    source_id: str = "default"
    #: the applier's target id: keys the rowid map of keyless tables of row-id sources
    target_id: str = "default"
    workers: int = 2
    chunk_rows: int = 50_000
    tables: TableFilter = field(default_factory=TableFilter)
    #: source table -> target table (``TablesConfig.target_name``)
    rename: Callable[[TableId], TableId] = lambda t: t
    #: the filtered view (``[tables]`` columns and where, :class:`capture.filters.
    #: CaptureFilter`): its column list and predicate go into the source query and the
    #: target table has only its columns. None: whole tables.
    view: CaptureFilter | None = None
    #: load these tables again even when a previous run finished them
    force: bool = False
    #: the selection is every table of the configuration (no ``--tables``): a table it does
    #: not load did not exist at the snapshot's point (see :func:`load_snapshot_scope`)
    full: bool = False
    #: called as chunks land, for progress bars
    progress: ProgressHook | None = None
    #: called once per table before loading: (target table, estimated rows)
    on_table: Callable[[str, int], None] | None = None
    #: catch-up will follow from the source's log: a PostgreSQL source then creates (or uses)
    #: its replication slot so the snapshot is continuous with it; False for a one-off copy
    capture: bool = True
    #: the source engine's own snapshot options (PostgreSQL: ``slot``, ``publication``,
    #: ``trail_dir``, ``source_id``, ``trail_position``; see connectors/postgres/snapshot.py)
    source_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TableState:
    """One table's snapshot as the target's progress table records it."""

    source_table: str
    target_table: str
    state: str  # loading | loaded | failed
    start_position: str | None
    end_position: str | None
    rows: int = 0
    chunks_total: int = 0
    chunks_done: int = 0
    lock_seconds: float = 0.0
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass
class SnapshotReport:
    """What a snapshot run did (``--json``)."""

    point: SnapshotPoint | None = None
    tables: list[TableState] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def failed(self) -> list[TableState]:
        return [t for t in self.tables if t.state == "failed"]

    def to_json(self) -> dict[str, Any]:
        return {
            "point": dataclasses.asdict(self.point) if self.point else None,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second),
            "lock_seconds": self.point.lock_seconds if self.point else 0.0,
            "tables": [dataclasses.asdict(t) for t in self.tables],
            "skipped": self.skipped,
        }


# --------------------------------------------------------------------------- targets


def _drop_if_stale(
    tgt: BulkTarget, conn: Any, table: TableId, view: TableSchema, resuming: bool
) -> bool:
    """Drop the target table when its columns are not the source's definition now: it lacks
    one (a column added or renamed on the source after an earlier, interrupted run created
    it: its chunks could not load), or, when it is loaded from scratch anyway, it has one the
    source no longer has (apply created it before a column was dropped: catch-up drops that
    DDL as already in the snapshot). True: dropped, so it is created again and loaded."""
    if not tgt.table_exists(conn, table):
        return False
    fold = str.lower if tgt.db.folds_column_names else str
    have = {fold(name) for name in tgt.column_names(conn, table)}
    wanted = {fold(c.name) for c in view.columns}
    lacking = sorted(wanted - have)
    extra = [] if resuming else sorted(have - wanted - {fold(ROW_KEY)})
    if not lacking and not extra:
        return False
    log.warning(
        "%s: the target table's columns differ from the source's definition (%s): created "
        "again and loaded from scratch",
        table,
        "; ".join(
            part
            for part in (
                f"lacks {', '.join(lacking)}" if lacking else "",
                f"has {', '.join(extra)} the source dropped" if extra else "",
            )
            if part
        ),
    )
    tgt.execute(conn, f"DROP TABLE {tgt.qt(table)}")
    return True


def _target(db: Database) -> BulkTarget:
    """The target engine's bulk path and progress tables (its ``bulk`` role)."""
    target: BulkTarget = db.descriptor.role("bulk").BulkTarget(db)
    return target


def _check_not_source(
    source: Database, target: Database, tables: Iterable[TableId], options: SnapshotOptions
) -> None:
    """Refuse to load a table into itself (the load starts by emptying the target table)."""
    a, b = source.endpoint, target.endpoint
    if source.descriptor is not target.descriptor or (a.host, a.port) != (b.host, b.port):
        return
    if source.descriptor.database_scopes_schemas and a.database != b.database:
        return
    same = [str(t) for t in tables if options.rename(t) == t]
    if same:
        raise ConfigError(
            f"the target is the source server and {', '.join(same)} would be loaded into itself",
            hint="map the tables to another schema or database with [tables] rename",
        )


# --------------------------------------------------------------------------- state


def load_table_states(target_db: Database, source_id: str) -> list[TableState]:
    """Every table's snapshot state for ``source_id`` on the target ([] when none)."""
    tgt = _target(target_db)
    conn = tgt.connect()
    try:
        if not tgt.table_exists(conn, TableId(STATE_SCHEMA, TABLES)):
            return []
        return _read_states(tgt, conn, source_id)
    finally:
        conn.close()


def load_snapshot_scope(target_db: Database, source_id: str) -> TableWindow | None:
    """The point of the last snapshot of every configured table for ``source_id`` (None when
    there was none): catch-up drops row changes at or before it to tables it did not load."""
    tgt = _target(target_db)
    conn = tgt.connect()
    try:
        if not tgt.table_exists(conn, TableId(STATE_SCHEMA, TABLES)):
            return None
        rows = tgt.execute(
            conn,
            tgt.sql(
                f"SELECT start_position, end_position FROM {tgt.state(TABLES)} "
                "WHERE source_id = %s AND target_table = %s AND state = %s"
            ),
            [source_id, _SCOPE_NAME, SCOPE],
        )
        return TableWindow(rows[0][0], rows[0][1]) if rows else None
    finally:
        conn.close()


def _read_states(tgt: BulkTarget, conn: Any, source_id: str) -> list[TableState]:
    rows = tgt.execute(
        conn,
        tgt.sql(
            "SELECT source_table, target_table, state, start_position, end_position, "
            "rows_loaded, chunks_total, lock_seconds, error, started_at, finished_at, "
            f"(SELECT count(*) FROM {tgt.state(CHUNKS)} c WHERE c.source_id = t.source_id "
            "AND c.target_table = t.target_table AND c.done = 1) "
            f"FROM {tgt.state(TABLES)} t WHERE source_id = %s AND target_table <> %s "
            "ORDER BY target_table"
        ),
        [source_id, _SCOPE_NAME],
    )
    return [
        TableState(
            source_table=r[0],
            target_table=r[1],
            state=r[2],
            start_position=r[3],
            end_position=r[4],
            rows=int(r[5] or 0),
            chunks_total=int(r[6] or 0),
            lock_seconds=float(r[7] or 0.0),
            error=r[8],
            started_at=r[9],
            finished_at=r[10],
            chunks_done=int(r[11] or 0),
        )
        for r in rows
    ]


# --------------------------------------------------------------------------- run


@dataclass
class _Job:
    state: TableState
    schema: TableSchema
    target: TableId
    columns: tuple[str, ...]
    chunks: list[KeyRange]
    estimate: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    remaining: int = 0
    #: the row predicate in the source's SQL (``[tables.where]``), or None
    where: str | None = None
    #: failed because DDL changed the table under the snapshot's read (a new one can load it)
    changed: bool = False
    #: this run created the target table (so it may drop it to follow a changed definition)
    created: bool = False
    #: the target's definition when it differs from ``schema``: keyless on a source with row
    #: ids, its rows are read with their row id as :data:`ROW_KEY` (apply/rowid.py)
    keyed: TableSchema | None = None


def run_snapshot(source: Database, target: Database, options: SnapshotOptions) -> SnapshotReport:
    """Snapshot every selected source table that is not loaded yet into ``target``.

    Raises :class:`SchemaError` (after recording it) when any table failed; the others are
    loaded and recorded as such.
    """
    started = time.monotonic()
    report = SnapshotReport()
    tgt = _target(target)
    control = tgt.connect()
    try:
        for stmt in tgt.state_ddl():
            tgt.execute(control, stmt)
        done = {
            s.source_table: s
            for s in _read_states(tgt, control, options.source_id)
            if s.state == "loaded"
        }
        tables = source.list_tables(options.tables)
        _forget_gone(tgt, control, source, tables, options.source_id)
        todo = [t for t in tables if options.force or str(t) not in done]
        report.skipped = [str(t) for t in tables if t not in todo]
        if not todo:
            report.tables = list(done.values())
            return report
        _check_not_source(source, target, todo, options)
        # names that fold into one on the target are refused before anything is loaded
        check_target_names(
            target,
            [
                (
                    options.rename(t),
                    options.view.project_schema(schema) if options.view is not None else schema,
                )
                for t, schema in source.table_schemas(todo).items()
            ],
        )
        if options.view is not None and options.capture:
            # refuse a view streaming could not keep exact before loading anything
            options.view.check_source(source, todo)
        session_cm = open_snapshot(
            source,
            options.workers,
            tables=todo,
            capture=options.capture,
            options=options.source_options,
        )
        with contextlib.closing(session_cm) as session:
            report.point = session.point
            jobs = [_prepare(tgt, control, session, source, t, options) for t in todo]
            # a table DDL changed while it was planned stays in: a new snapshot reloads it
            jobs = [
                j for j in jobs if j.state.state != "failed" or j.changed or _fail_only(report, j)
            ]
            _load_all(tgt, session, jobs, options)
        jobs = _reload_changed(tgt, control, source, jobs, options)
        for job in jobs:
            if job.state.state != "failed":
                job.state.state = "loaded"
                job.state.finished_at = time.time()
            _save_table(tgt, control, options.source_id, job.state)
            report.tables.append(job.state)
        report.rows = sum(j.state.rows for j in jobs)
        if options.full and not report.failed and report.point is not None:
            # CI campaign seed 33003: a table captured, then dropped before the snapshot, had
            # its trail updates replayed onto rows no snapshot loaded (apply stopped, exit 6)
            _save_table(tgt, control, options.source_id, _scope_state(report.point))
    finally:
        control.close()
        tgt.close()
    report.seconds = time.monotonic() - started
    if report.failed:
        names = ", ".join(f"{t.source_table} ({t.error})" for t in report.failed)
        raise SchemaError(
            f"the snapshot of {len(report.failed)} table(s) failed: {names}",
            hint="fix the cause and run sync (or snapshot) again: the other tables stay "
            "loaded, finished chunks are kept (a table whose definition changed during the "
            "snapshot is loaded again from scratch), and `redoline status` shows each table's "
            "state",
        )
    return report


def _scope_state(point: SnapshotPoint) -> TableState:
    return TableState(
        source_table=_SCOPE_NAME,
        target_table=_SCOPE_NAME,
        state=SCOPE,
        start_position=point.start,
        end_position=point.end,
        finished_at=time.time(),
    )


def _fail_only(report: SnapshotReport, job: _Job) -> bool:
    report.tables.append(job.state)
    return False


def _prepare(
    tgt: BulkTarget,
    conn: Any,
    session: Any,
    source: Database,
    table: TableId,
    options: SnapshotOptions,
) -> _Job:
    """Create the target table, plan (or reload the plan of) its chunks, record it."""
    target_name = options.rename(table)
    key = str(target_name)
    prior = {s.target_table: s for s in _read_states(tgt, conn, options.source_id)}.get(key)
    point: SnapshotPoint = session.point
    state = TableState(
        source_table=str(table),
        target_table=key,
        state="loading",
        start_position=point.start,
        end_position=point.end,
        lock_seconds=point.lock_seconds,
        started_at=time.time(),
    )
    try:
        schema = source.table_schema(table)
    except ToolkitError as exc:
        # renamed or dropped since the tables were listed (DDL during the snapshot): this
        # table fails, the others load
        state.state, state.error = "failed", exc.message
        _save_table(tgt, conn, options.source_id, state)
        return _Job(state, TableSchema(table, ()), target_name, (), [], 0)
    job = _Job(state, schema, target_name, (), [], 0)
    try:
        # the filtered view: only its columns are read and created, only its rows are read
        view = options.view.project_schema(schema) if options.view is not None else schema
        if source.has_row_ids and not view.identity:
            view = job.keyed = with_row_key(view)
        job.columns = tuple(c.name for c in view.columns if not c.generated)
        job.where = options.view.where_sql(table, source.dialect) if options.view else None
        resuming = prior is not None and prior.state == "loading" and not options.force
        recreated = _drop_if_stale(tgt, conn, target_name, view, resuming)
        if recreated or not tgt.table_exists(conn, target_name):
            tgt.execute(conn, tgt.create_schema_sql(target_name.schema))
            tgt.execute(
                conn,
                create_table_sql(view, tgt.dialect, target_name, source_dialect=source.dialect),
            )
            job.created = True
        if job.keyed is not None:
            SnapshotKeys.create_map(tgt, conn)
        resumable = (
            prior is not None
            and prior.state == "loading"
            and not options.force
            and not recreated
            # the chunks loaded before hold the earlier point: catch-up must start there, so
            # resume only when that point is known and orders against this one; otherwise
            # the table is loaded again from scratch on this snapshot
            and _earliest(session, prior.start_position, point.start) is not None
        )
        if resumable:
            assert prior is not None
            _resume_chunks(tgt, conn, session, prior, job, options.source_id)
        else:
            _plan_chunks(tgt, conn, session, job, options)
        _save_table(tgt, conn, options.source_id, state)
        job.estimate = max(session.estimate_rows(schema), state.rows)
        job.remaining = len(job.chunks)
    except ToolkitError as exc:
        tgt.rollback(conn)
        state.state, state.error = "failed", exc.message
        job.changed = isinstance(exc, DefinitionChangedError)
        _save_table(tgt, conn, options.source_id, state)
    return job


def _resume_chunks(
    tgt: BulkTarget, conn: Any, session: Any, prior: TableState, job: _Job, source_id: str
) -> None:
    """Take up the chunks an interrupted snapshot of ``job``'s table left to load."""
    state, point = job.state, session.point
    # keep the earliest start: rows loaded by the earlier run reflect that point
    state.start_position = _earliest(session, prior.start_position, point.start)
    state.rows = prior.rows
    state.started_at = prior.started_at
    rows = tgt.execute(
        conn,
        tgt.sql(
            f"SELECT chunk_no, lower_key, upper_key, done, rows_loaded FROM "
            f"{tgt.state(CHUNKS)} WHERE source_id = %s AND target_table = %s "
            "ORDER BY chunk_no"
        ),
        [source_id, state.target_table],
    )
    job.chunks = [KeyRange(int(r[0]), decode_key(r[1]), decode_key(r[2])) for r in rows if not r[3]]
    state.chunks_total = len(rows)
    state.rows = sum(int(r[4] or 0) for r in rows if r[3])
    if not any(r[3] for r in rows):
        # nothing of the earlier run stayed (a keyless table is one chunk): every row
        # comes from this point, so the table's window starts here, not before (a
        # window makes catch-up collide, which cannot tell a keyless row is there)
        state.start_position = point.start


def _plan_chunks(
    tgt: BulkTarget, conn: Any, session: Any, job: _Job, options: SnapshotOptions
) -> None:
    """Empty ``job``'s target table and plan (and record) its chunks afresh."""
    state, key = job.state, job.state.target_table
    tgt.begin(conn)
    tgt.execute(conn, f"DELETE FROM {tgt.qt(job.target)}")
    if job.keyed is not None:
        _keys(options, job, 0).forget_table(tgt, conn)
    tgt.execute(
        conn,
        tgt.sql(f"DELETE FROM {tgt.state(CHUNKS)} WHERE source_id = %s AND target_table = %s"),
        [options.source_id, key],
    )
    job.chunks = session.plan_chunks(job.schema, options.chunk_rows)
    for c in job.chunks:
        tgt.execute(
            conn,
            tgt.sql(
                f"INSERT INTO {tgt.state(CHUNKS)} (source_id, target_table, chunk_no, "
                "lower_key, upper_key, done, rows_loaded) VALUES (%s, %s, %s, %s, %s, 0, 0)"
            ),
            [options.source_id, key, c.number, encode_key(c.lower), encode_key(c.upper)],
        )
    state.chunks_total = len(job.chunks)
    _save_table(tgt, conn, options.source_id, state)
    tgt.commit(conn)


def _reload_changed(
    tgt: BulkTarget, conn: Any, source: Database, jobs: list[_Job], options: SnapshotOptions
) -> list[_Job]:
    """``jobs`` with each table DDL changed under the snapshot's read loaded again from a new
    snapshot (its own start point, so catch-up skips what that snapshot holds, the DDL
    included). A table whose columns or keys differ now gets its target table created again
    when this run created it, and stays failed otherwise (the target table is the user's)."""
    for _ in range(_RELOAD_TRIES):
        again: list[_Job] = []
        for job in jobs:
            if not job.changed:
                continue
            job.changed = False
            try:
                now = source.table_schema(job.schema.table)
            except ToolkitError as exc:
                job.state.error = f"{job.state.error}; then: {exc.message}"
                continue
            if _shape(now) != _shape(job.schema):
                if not job.created:
                    job.state.error = f"{job.state.error}; its columns or keys changed too"
                    continue
                # created from the old definition by this run and holding no rows to keep:
                # _prepare creates it again from the new one (catch-up skips the DDL)
                tgt.execute(conn, f"DROP TABLE {tgt.qt(job.target)}")
            again.append(job)
        if not again:
            break
        for job in again:
            # recorded failed first: _prepare then loads it from scratch on the new point
            _save_table(tgt, conn, options.source_id, job.state)
        names = ", ".join(j.state.source_table for j in again)
        log.warning("DDL changed %s during the snapshot: loading again on a new snapshot", names)
        session_cm = open_snapshot(
            source,
            options.workers,
            tables=[j.schema.table for j in again],
            capture=False,  # the trail's start point is the first snapshot's; nothing to make
            options=options.source_options,
        )
        with contextlib.closing(session_cm) as session:
            fresh = [_prepare(tgt, conn, session, source, j.schema.table, options) for j in again]
            _load_all(tgt, session, [j for j in fresh if j.state.state != "failed"], options)
        by_table = {j.state.source_table: j for j in fresh}
        jobs = [by_table.get(j.state.source_table, j) for j in jobs]
    return jobs


def _shape(schema: TableSchema) -> tuple[Any, ...]:
    cols = tuple((c.name, c.kind, c.source_type, c.nullable) for c in schema.columns)
    return cols, schema.primary_key, schema.unique_keys


def _earliest(session: Any, a: str | None, b: str) -> str | None:
    """The earlier of two snapshot points; None when ``a`` is unknown or they do not order."""
    if not a:
        return None
    try:
        return a if session.compare_positions(a, b) < 0 else b
    except ValueError:
        return None


def _forget_gone(
    tgt: BulkTarget, conn: Any, source: Database, tables: list[TableId], source_id: str
) -> None:
    """Forget the unfinished snapshot of a table the source no longer has (renamed or dropped
    after an interrupted run): nothing can finish it, and apply would refuse the target for it
    forever. The trail's RENAME or DROP deals with what the target holds of it."""
    selected = {str(t) for t in tables}
    for state in _read_states(tgt, conn, source_id):
        if state.state == "loaded" or state.source_table in selected:
            continue
        table = TableId.parse(state.source_table)
        if source.list_tables(TableFilter((f"{table.schema}.{table.name}",))):
            continue  # still there, only outside this run's selection
        log.warning(
            "%s: its interrupted snapshot is forgotten: the source no longer has the table",
            state.source_table,
        )
        for name in (TABLES, CHUNKS):
            tgt.execute(
                conn,
                tgt.sql(
                    f"DELETE FROM {tgt.state(name)} WHERE source_id = %s AND target_table = %s"
                ),
                [source_id, state.target_table],
            )


def _save_table(tgt: BulkTarget, conn: Any, source_id: str, s: TableState) -> None:
    tgt.execute(
        conn,
        tgt.sql(f"DELETE FROM {tgt.state(TABLES)} WHERE source_id = %s AND target_table = %s"),
        [source_id, s.target_table],
    )
    tgt.execute(
        conn,
        tgt.sql(
            f"INSERT INTO {tgt.state(TABLES)} (source_id, target_table, source_table, state, "
            "start_position, end_position, rows_loaded, chunks_total, lock_seconds, error, "
            "started_at, finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ),
        [
            source_id,
            s.target_table,
            s.source_table,
            s.state,
            s.start_position,
            s.end_position,
            s.rows,
            s.chunks_total,
            s.lock_seconds,
            s.error,
            s.started_at,
            s.finished_at,
        ],
    )


def _finish_chunk(
    tgt: BulkTarget,
    options: SnapshotOptions,
    job: _Job,
    chunk: KeyRange,
    conn: Any,
    data: Any,
    keys: SnapshotKeys | None,
) -> None:
    """Load one chunk read from the source and mark it done, in one target transaction (with
    the rowid mappings of its rows, ``keys``, when the table goes through the rowid map)."""
    tgt.begin(conn)
    try:
        schema = job.schema if job.keyed is None else job.keyed
        n = tgt.load(conn, job.target, schema, job.columns, data)
        if keys is not None:
            keys.load(tgt, conn)
        tgt.execute(
            conn,
            tgt.sql(
                f"UPDATE {tgt.state(CHUNKS)} SET done = 1, rows_loaded = %s "
                "WHERE source_id = %s AND target_table = %s AND chunk_no = %s"
            ),
            [n, options.source_id, job.state.target_table, chunk.number],
        )
        tgt.commit(conn)
    except BaseException:
        tgt.rollback(conn)
        raise
    with job.lock:
        job.state.rows += n
        job.remaining -= 1
    if options.progress:
        options.progress(job.state.target_table, n, job.estimate)


def _load_all(tgt: BulkTarget, session: Any, jobs: list[_Job], options: SnapshotOptions) -> None:
    """Read every pending chunk with ``session.workers`` threads and load it."""
    tasks: queue.Queue[tuple[_Job, KeyRange] | None] = queue.Queue()
    for job in jobs:
        if options.on_table:
            options.on_table(job.state.target_table, job.estimate)
        for chunk in job.chunks:
            tasks.put((job, chunk))
    workers = session.workers
    for _ in range(workers):
        tasks.put(None)
    errors: list[BaseException] = []
    # DuckDB: readers hand finished chunks to the one loader thread
    handoff: queue.Queue[Any] = queue.Queue(maxsize=workers * 2)

    def reader(w: int) -> None:
        conn = tgt.connect() if tgt.parallel else None
        try:
            while True:
                item = tasks.get()
                if item is None:
                    return
                job, chunk = item
                if job.state.state == "failed":
                    continue
                try:
                    args = (w, job.schema, chunk, tgt.fmt, job.columns, job.where)
                    keys = None if job.keyed is None else _keys(options, job, chunk.number)
                    data = (
                        session.read_chunk(*args)
                        if keys is None
                        else session.read_chunk(*args, row_ids=keys)
                    )
                    if conn is not None:
                        _finish_chunk(tgt, options, job, chunk, conn, data, keys)
                    else:
                        handoff.put((job, chunk, list(data), keys))
                except ToolkitError as exc:
                    job.state.state, job.state.error = "failed", exc.message
                    job.changed = isinstance(exc, DefinitionChangedError)
                    log.error("snapshot of %s failed: %s", job.state.source_table, exc.message)
                except Exception as exc:  # the target's own error: record it on the table
                    job.state.state = "failed"
                    job.state.error = str(exc).strip().splitlines()[0] if str(exc) else repr(exc)
                    log.error("snapshot of %s failed: %s", job.state.source_table, exc)
        except BaseException as exc:
            errors.append(exc)
        finally:
            if conn is not None:
                conn.close()

    def loader() -> None:
        conn = tgt.connect()
        try:
            while True:
                item = handoff.get()
                if item is None:
                    return
                job, chunk, data, keys = item
                if job.state.state == "failed":
                    continue
                try:
                    _finish_chunk(tgt, options, job, chunk, conn, data, keys)
                except Exception as exc:
                    job.state.state = "failed"
                    job.state.error = str(exc).strip().splitlines()[0]
                    log.error("loading %s failed: %s", job.state.target_table, exc)
        except BaseException as exc:
            errors.append(exc)
            # keep draining so readers never block on a dead loader
            while handoff.get() is not None:
                pass
        finally:
            conn.close()

    threads = [threading.Thread(target=reader, args=(w,), daemon=True) for w in range(workers)]
    load_thread = None
    if not tgt.parallel:
        load_thread = threading.Thread(target=loader, daemon=True)
        load_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if load_thread is not None:
        handoff.put(None)
        load_thread.join()
    if errors:
        raise errors[0]


def _keys(options: SnapshotOptions, job: _Job, chunk: int) -> SnapshotKeys:
    return SnapshotKeys(options.target_id, options.source_id, job.schema.table, chunk)


# --------------------------------------------------------------------------- catch-up


#: the state of the row recording a snapshot of every configured table (its point)
SCOPE = "scope"
_SCOPE_NAME = "*"


def state_path(state_dir: Path, name: str) -> Path:
    """A file in the state directory (created)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    return state_dir / name
