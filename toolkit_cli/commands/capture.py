"""`redoline capture`: read the source's log into the trail (continuously, or until caught up)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated, Any

import typer
from rich.markup import escape

from capture.filters import CaptureFilter
from capture.runner import CaptureOptions, run_capture
from connectors.base import open_database
from toolkit_cli.metrics import MetricsFileOpt, MetricsOpt, observe
from toolkit_cli.options import (
    ConfigOpt,
    JsonOpt,
    PublicationOpt,
    SlotOpt,
    SourceOpt,
    TrailOpt,
    check_table_patterns,
    load_config,
)
from toolkit_cli.output import console, print_json

__all__ = ["register"]

#: exit code after Ctrl-C / SIGTERM (toolkit_cli.exit_codes)
EXIT_INTERRUPTED = 130


def register(app: typer.Typer) -> None:
    app.command("capture")(capture)


def capture(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    trail: TrailOpt = None,
    until_caught_up: Annotated[
        bool,
        typer.Option(
            "--until-caught-up",
            help="Stop once the source's end position, as measured at start, is in the trail "
            "(exit 0). For cron.",
        ),
    ] = False,
    decoder: Annotated[
        str | None,
        typer.Option(
            "--decoder",
            help='MySQL/MariaDB row decoder: "fast" (default) or "library" (mysql-replication, '
            "for support cases). Overrides [source] decoder.",
        ),
    ] = None,
    slot: SlotOpt = None,
    publication: PublicationOpt = None,
    metrics: MetricsOpt = None,
    metrics_file: MetricsFileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Capture the source's committed transactions into the trail, exactly once.

    Resumes after the last transaction in the trail (an empty trail starts at the source's
    current end). Runs until Ctrl-C/SIGTERM, which stop it after the current transaction
    (exit 130), or with --until-caught-up until the source's end position (exit 0).
    Renames in [tables.rename] are left to apply; include/exclude, columns and where
    filter here (an update that moves a row out of the predicate becomes a delete, one that
    moves it in an insert).
    """
    cfg = load_config(
        config,
        source=source,
        trail=trail,
        slot=slot,
        publication=publication,
        source_options={"decoder": decoder},
    )
    src = cfg.source()
    db = open_database(src.endpoint)
    check_table_patterns(db, cfg.tables)
    stop = threading.Event()
    options = CaptureOptions(
        source_id=src.id,
        filters=CaptureFilter.from_config(cfg.tables),
        until_caught_up=until_caught_up,
        segment_bytes=cfg.trail.segment_bytes,
        key=cfg.trail.key(),
        stop_event=stop,
        reader_options=src.engine_options(),
        retry_for=src.retry_budget(until_caught_up),
        heartbeat=src.heartbeat,
    )
    previous = _install_signals(stop)
    try:
        with observe(cfg.state_dir, metrics, metrics_file):
            result = run_capture(db, cfg.trail.dir, options)
    finally:
        _restore_signals(previous)
    summary = {"source": src.endpoint.display, "trail": str(cfg.trail.dir), **result.to_json()}
    if json_out:
        print_json(summary)
    else:
        if options.filters.stats.summary():
            console.print(f"filtered: {escape(options.filters.stats.summary())}")
        state = "caught up" if result.caught_up else "stopped" if result.stopped else "done"
        console.print(
            f"capture {state}: {result.transactions} transactions, {result.changes} changes "
            f"into {cfg.trail.dir} (last position {result.last_position})"
        )
    if result.stopped:
        raise typer.Exit(EXIT_INTERRUPTED)


def _install_signals(stop: threading.Event) -> dict[int, Any]:
    def handler(signum: int, frame: Any) -> None:
        stop.set()  # the capture loop finishes the current transaction, then returns

    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, old in previous.items():
        signal.signal(sig, old)
