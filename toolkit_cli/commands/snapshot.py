"""`redoline snapshot` and `redoline sync`: initial load, then capture + apply in one process."""

from __future__ import annotations

import datetime as dt
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from apply.point import PointError, PointOutcome, StopPoint
from apply.snapshot import SnapshotOptions, SnapshotReport, load_table_states, run_snapshot
from capture.filters import CaptureFilter
from connectors.base import Database, TableFilter, open_database
from toolkit_cli.commands.apply import (
    EXIT_SKIPPED_EVERYTHING,
    DelayOpt,
    UntilMarkOpt,
    UntilOpOpt,
    UntilTimeOpt,
    UntilXidOpt,
    apply_delay,
    report_point,
    stop_point,
    warn_skipped_everything,
)
from toolkit_cli.config import Config
from toolkit_cli.metrics import MetricsFileOpt, MetricsOpt, observe
from toolkit_cli.options import (
    ConfigOpt,
    JsonOpt,
    PublicationOpt,
    SlotOpt,
    SourceOpt,
    TargetOpt,
    TrailOpt,
    check_table_patterns,
    load_config,
)
from toolkit_cli.output import console, err_console, print_json
from toolkit_cli.sync import SyncOptions, SyncReport, run_sync

__all__ = ["register"]

TablesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tables",
        help="Only these tables (schema.table, globs allowed; repeatable). Default: [tables].",
        show_default=False,
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="Parallel readers on one snapshot. Default: [snapshot]."),
]
ChunkOpt = Annotated[
    int | None,
    typer.Option("--chunk-rows", min=1, help="Rows per key-range chunk. Default: [snapshot]."),
]


def register(app: typer.Typer) -> None:
    app.command("snapshot")(snapshot)
    app.command("sync")(sync)


def _snapshot_options(
    cfg: Config,
    tables: list[str] | None,
    workers: int | None,
    chunk_rows: int | None,
    *,
    pipeline: bool = False,
) -> SnapshotOptions:
    """``pipeline``: sync's snapshot, whose tables are also what capture reads (its
    ``--tables`` is the whole pipeline's selection), so it covers every captured table."""
    table_filter = TableFilter(tuple(tables), ()) if tables else cfg.tables.filter
    # one definition of the filtered view for the snapshot, capture and apply of this run
    view = CaptureFilter.from_config(cfg.tables, table_filter=table_filter)
    return SnapshotOptions(
        source_id=cfg.source().id,
        target_id=cfg.target().id,
        workers=workers or cfg.snapshot.workers,
        chunk_rows=chunk_rows or cfg.snapshot.chunk_rows,
        tables=table_filter,
        full=pipeline or not tables,
        rename=view.target_name,
        view=view,
    )


@contextmanager
def _progress(options: SnapshotOptions, quiet: bool) -> Iterator[None]:
    """Rich progress bars (rows, rows/s, ETA) on stderr, one per table."""
    if quiet or not err_console.is_terminal:
        yield
        return
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )
    tasks: dict[str, Any] = {}

    def on_table(name: str, estimate: int) -> None:
        tasks[name] = bars.add_task(name, total=max(estimate, 1), rate="")

    def progress(name: str, rows: int, estimate: int) -> None:
        if name in tasks:
            task = tasks[name]
            bars.update(task, advance=rows)
            speed = bars.tasks[task].speed
            bars.update(task, rate=f"{speed:,.0f} rows/s" if speed else "")

    options.on_table, options.progress = on_table, progress
    with bars:
        yield


def _print_report(report: SnapshotReport) -> None:
    point = report.point
    if point is not None:
        console.print(
            f"snapshot point {point.start}"
            + (f" .. {point.end}" if point.end != point.start else "")
            + f" ({point.method}; global lock held {point.lock_seconds * 1000:.1f} ms)"
        )
    for t in report.tables:
        console.print(f"  {t.source_table} -> {t.target_table}: {t.state}, {t.rows} rows")
    if report.skipped:
        console.print(f"  already loaded (skipped): {', '.join(report.skipped)}")
    console.print(
        f"{report.rows} rows in {report.seconds:.1f} s ({report.rows_per_second:,.0f} rows/s)"
    )


def snapshot(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    target: TargetOpt = None,
    trail: TrailOpt = None,
    tables: TablesOpt = None,
    workers: WorkersOpt = None,
    chunk_rows: ChunkOpt = None,
    no_follow: Annotated[
        bool,
        typer.Option(
            "--no-follow",
            help="Only copy the tables (a one-off copy); do not capture or catch up.",
        ),
    ] = False,
    slot: SlotOpt = None,
    publication: PublicationOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Load the selected tables from a consistent snapshot into the target.

    All workers read one consistent point of the source (MariaDB: no lock; MySQL: a
    FLUSH TABLES WITH READ LOCK held for milliseconds, reported; PostgreSQL: the snapshot
    exported when the replication slot is created, or a REPEATABLE READ snapshot after an
    existing slot). Chunks commit with their progress, so a rerun after a crash resumes.
    Without --no-follow the run then captures and catches up from the trail until caught up
    (like `redoline sync --until-caught-up`); --no-follow creates no replication slot.
    An odbc:// source (no log to follow) needs --no-follow: docs/source-odbc.md.
    """
    cfg = load_config(
        config, source=source, target=target, trail=trail, slot=slot, publication=publication
    )
    src, tgt = open_database(cfg.source().endpoint), open_database(cfg.target().endpoint)
    check_table_patterns(src, cfg.tables)
    options = _snapshot_options(cfg, tables, workers, chunk_rows)
    with _progress(options, json_out):
        if no_follow:
            options.capture = False  # a one-off copy: no replication slot is created
            report = run_snapshot(src, tgt, options)
            result: dict[str, Any] = report.to_json()
        else:
            sync_report = run_sync(
                src,
                tgt,
                SyncOptions(
                    trail_dir=cfg.trail.dir,
                    state_dir=cfg.state_dir,
                    source_id=cfg.source().id,
                    target_id=cfg.target().id,
                    snapshot=options,
                    until_caught_up=True,
                    key=cfg.trail.key(),
                    source_options=cfg.source().engine_options(),
                    retry_for=cfg.source().retry_budget(True),
                    target_retry_for=cfg.target().retry_budget(True),
                    heartbeat=cfg.source().heartbeat,
                ),
            )
            report = sync_report.snapshot or SnapshotReport()
            result = sync_report.to_json()
    if json_out:
        print_json(result)
    else:
        _print_report(report)


def sync(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    target: TargetOpt = None,
    trail: TrailOpt = None,
    tables: TablesOpt = None,
    workers: WorkersOpt = None,
    chunk_rows: ChunkOpt = None,
    until_caught_up: Annotated[
        bool,
        typer.Option(
            "--until-caught-up",
            help="Stop once the source's end position (taken at start) is applied: for cron. "
            "A second run while one is going exits 8 and does nothing.",
        ),
    ] = False,
    slot: SlotOpt = None,
    publication: PublicationOpt = None,
    until_time: UntilTimeOpt = None,
    until_op: UntilOpOpt = None,
    until_xid: UntilXidOpt = None,
    until_mark: UntilMarkOpt = None,
    delay: DelayOpt = None,
    half: Annotated[
        str | None,
        typer.Option(
            "--half",
            help="Run one half of a pipeline split across two hosts: `source` (capture + ship "
            "to [ship] to) or `target` (receive on [receive] listen + apply). --trail is then "
            "the receiving root ([receive] dir). docs/ship.md.",
            show_default=False,
        ),
    ] = None,
    metrics: MetricsOpt = None,
    metrics_file: MetricsFileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Snapshot what is not loaded yet, then capture and apply in one process.

    The single-host pipeline: the trail lives in --trail, progress in the target and in the
    state directory. Continuous until Ctrl-C/SIGTERM (which finish the current transaction),
    or with --until-caught-up a cron-friendly run that exits 0 when caught up. With
    --until-time/-op/-xid/-mark apply stops at that point and says where (exit 11 when the target
    or its snapshot is already past it: docs/recovery.md). --delay (or [apply] delay) keeps
    the target behind the source by that much: a delayed replica. --half source|target runs
    capture + ship on the source host, receive + apply on the target host (exit 0 with
    --until-caught-up only once the receiver confirmed, or applied, everything).
    """
    if half is not None:
        from toolkit_cli.commands.ship import HalfArgs, sync_half

        given = {
            "--tables": tables,
            "--workers": workers,
            "--chunk-rows": chunk_rows,
            "--until-time": until_time,
            "--until-op": until_op,
            "--until-xid": until_xid,
            "--until-mark": until_mark,
        }
        args = HalfArgs(
            config, source, target, trail, slot, publication, until_caught_up, delay, metrics,
            metrics_file, json_out,
        )  # fmt: skip
        sync_half(half, args, [flag for flag, value in given.items() if value is not None])
        return
    cfg = load_config(
        config, source=source, target=target, trail=trail, slot=slot, publication=publication
    )
    point = stop_point(
        until_time, until_op, until_xid, until_mark, trail_dir=cfg.trail.dir, key=cfg.trail.key()
    )
    src, tgt = open_database(cfg.source().endpoint), open_database(cfg.target().endpoint)
    check_table_patterns(src, cfg.tables)
    if point is not None:
        refuse_fresh_snapshot(point, tgt, cfg.source().id, cfg.trail.dir, cfg.trail.key())
    stop = threading.Event()
    snapshot_options = _snapshot_options(cfg, tables, workers, chunk_rows, pipeline=True)
    options = _sync_options(cfg, snapshot_options, until_caught_up, stop, delay, point)
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        with _progress(options.snapshot, json_out), observe(cfg.state_dir, metrics, metrics_file):
            report = run_sync(src, tgt, options)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _finish(report, options, cfg, point, json_out)
    if point is None and stop.is_set() and not until_caught_up:
        raise typer.Exit(130)


def _sync_options(
    cfg: Config,
    snapshot_options: SnapshotOptions,
    until_caught_up: bool,
    stop: threading.Event,
    delay: str | None,
    point: StopPoint | None,
) -> SyncOptions:
    return SyncOptions(
        trail_dir=cfg.trail.dir,
        state_dir=cfg.state_dir,
        source_id=cfg.source().id,
        target_id=cfg.target().id,
        snapshot=snapshot_options,
        until_caught_up=until_caught_up,
        key=cfg.trail.key(),
        stop_event=stop,
        segment_bytes=cfg.trail.segment_bytes,
        source_options=cfg.source().engine_options(),
        retry_for=cfg.source().retry_budget(until_caught_up),
        target_retry_for=cfg.target().retry_budget(until_caught_up),
        heartbeat=cfg.source().heartbeat,
        apply_options={
            "batch_rows": cfg.apply.batch_rows,
            "batch_ms": cfg.apply.batch_ms,
            "skip_ddl": cfg.apply.skip_ddl,
            "rename": snapshot_options.rename,
            "ignore_origins": frozenset(cfg.apply.ignore_origins),
            "delay": apply_delay(delay, cfg.apply.delay),
        },
        until=point,
        outcome=PointOutcome(),
    )


def _finish(
    report: SyncReport,
    options: SyncOptions,
    cfg: Config,
    point: StopPoint | None,
    json_out: bool,
) -> None:
    """Print what the run did; exit 10/11 when the loop guard or a point says so."""
    app = report.apply
    skipped_everything = app.get("skipped_origin", 0) > 0 and app.get(
        "skipped_origin", 0
    ) >= app.get("transactions", 0)
    if skipped_everything:
        warn_skipped_everything(app["skipped_origin"], frozenset(cfg.apply.ignore_origins))
    if json_out:
        print_json(report.to_json())
        if skipped_everything:
            raise typer.Exit(EXIT_SKIPPED_EVERYTHING)
        if point is not None:
            report_point(point, options.outcome, app.get("applied_op", 0), json_out)
        return
    if report.snapshot is not None:
        _print_report(report.snapshot)
    cap = report.capture
    view = options.snapshot.view
    if view is not None and view.stats.summary():
        # filtering is never silent: say what the predicates kept out or turned around
        console.print(f"filtered: {escape(view.stats.summary())}")
    console.print(
        f"captured {cap.get('transactions', 0)} transactions ({cap.get('changes', 0)} changes); "
        f"applied {app.get('transactions', 0)} transactions, up to operation "
        f"{app.get('applied_op', 0)} ({app.get('collisions', 0)} collisions reconciled)"
    )
    if skipped_everything:
        raise typer.Exit(EXIT_SKIPPED_EVERYTHING)
    if point is not None:
        report_point(point, options.outcome, app.get("applied_op", 0))


def refuse_fresh_snapshot(
    point: StopPoint, target: Database, source_id: str, trail_dir: Path, key: bytes | None
) -> None:
    """A target with nothing loaded gets a snapshot taken now: refuse a point already in the
    past before loading anything (a snapshot holds rows as of its own end)."""
    from capture.trail import TrailReader

    if load_table_states(target, source_id):
        return  # loaded before: apply judges the point against its snapshot's end
    if point.time is not None:
        past = point.time < dt.datetime.now(dt.UTC)
    elif point.position is not None:
        past = True  # a mark names a moment that has passed
    else:
        past = any(
            point.includes(t) if point.op is not None else t.xid == point.xid
            for t in TrailReader(trail_dir, key=key).transactions()
        )
    if past:
        raise PointError(
            f"the target has nothing loaded yet: sync would load it with a snapshot taken now, "
            f"after {point.describe()}; the earliest restorable point for it is now",
            hint="replay into a target that starts before the point (empty, when the trail "
            "reaches back before the rows existed: `redoline apply --until-...`), or undo back "
            "to it on a copy (`redoline undo --to-...`): see docs/recovery.md",
        )
