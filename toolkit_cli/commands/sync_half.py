"""`redoline sync --half source|target`: one half of a pipeline split across two hosts."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from capture.filters import CaptureFilter
from connectors.base import open_database
from connectors.errors import ConfigError
from ship import Receiver
from toolkit_cli.commands.apply import apply_delay
from toolkit_cli.commands.ship import no_sender_error, receive_options, ship_options
from toolkit_cli.config import Config
from toolkit_cli.metrics import observe
from toolkit_cli.options import check_table_patterns, load_config
from toolkit_cli.output import console, err_console, print_json
from toolkit_cli.sync import SyncOptions
from toolkit_cli.sync_halves import HalfReport, run_source_half, run_target_half

__all__ = ["HALVES", "HalfArgs", "sync_half"]

HALVES = ("source", "target")
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class HalfArgs:
    """The `sync` flags that mean something to a half."""

    config: Path | None
    source: str | None
    target: str | None
    trail: Path | None
    slot: str | None
    publication: str | None
    until_caught_up: bool
    delay: str | None
    metrics: str | None
    metrics_file: Path | None
    json_out: bool


def sync_half(half: str, args: HalfArgs, refused: list[str]) -> None:
    """Run ``half`` of a two-host pipeline (docs/ship.md); exit 0 when caught up (cron),
    130 after SIGTERM, 75 when a target half waited in vain for its sender."""
    if half not in HALVES:
        raise ConfigError(f"--half must be source or target, not {half!r}")
    if refused:
        raise ConfigError(
            f"{', '.join(refused)}: not used by `sync --half {half}`",
            hint="the initial load is `redoline snapshot` (docs/ship.md); a point in time is "
            "`redoline apply --until-...` on the target host",
        )
    stop = threading.Event()
    if half == "source":
        report, cfg = _source(args, stop), None
    else:
        report, cfg = _target(args, stop)
    if args.json_out:
        print_json(report.to_json())
    else:
        _print(report)
    if report.caught_up:
        return
    if cfg is not None and report.receive.get("timed_out") and not stop.is_set():
        raise no_sender_error(cfg)
    raise typer.Exit(EXIT_INTERRUPTED)


def _signals(*events: threading.Event) -> dict[int, Any]:
    def handler(signum: int, frame: Any) -> None:
        for event in events:
            event.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _run(cfg: Config, args: HalfArgs, events: tuple[threading.Event, ...], run: Any) -> Any:
    previous = _signals(*events)
    try:
        with observe(cfg.state_dir, args.metrics, args.metrics_file):
            return run()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _source(args: HalfArgs, stop: threading.Event) -> HalfReport:
    """Capture + ship."""
    cfg = load_config(
        args.config,
        source=args.source,
        trail=args.trail,
        slot=args.slot,
        publication=args.publication,
    )
    src = cfg.source()
    db = open_database(src.endpoint)
    check_table_patterns(db, cfg.tables)
    until = args.until_caught_up
    ships = ship_options(cfg, stop, src.id, until_caught_up=until)
    options = SyncOptions(
        trail_dir=cfg.trail.dir,
        state_dir=cfg.state_dir,
        source_id=src.id,
        until_caught_up=until,
        key=cfg.trail.key(),
        stop_event=stop,
        segment_bytes=cfg.trail.segment_bytes,
        source_options=src.engine_options(),
        retry_for=src.retry_budget(until),
        heartbeat=src.heartbeat,
    )
    filters = CaptureFilter.from_config(cfg.tables)
    report: HalfReport = _run(
        cfg, args, (stop,), lambda: run_source_half(db, options, ships, filters)
    )
    return report


def _target(args: HalfArgs, stop: threading.Event) -> tuple[HalfReport, Any]:
    """Receive + apply."""
    cfg = load_config(args.config, target=args.target)
    tgt = cfg.target()
    recv_stop = threading.Event()
    ropts = receive_options(cfg, recv_stop, until_caught_up=args.until_caught_up, root=args.trail)
    if len(ropts.sources) != 1:
        raise ConfigError(
            f"`sync --half target` applies one source's trail; [receive] sources names "
            f"{len(ropts.sources)} ({', '.join(sorted(ropts.sources))})",
            key="receive.sources",
            hint="for several sources run `redoline receive` and one `redoline apply --trail "
            "ROOT/SOURCE_ID` per source",
        )
    (source_id,) = ropts.sources
    until = args.until_caught_up
    options = SyncOptions(
        trail_dir=ropts.root / source_id,
        state_dir=cfg.state_dir,
        source_id=source_id,
        target_id=tgt.id,
        until_caught_up=until,
        key=cfg.trail.key(),
        stop_event=stop,
        target_retry_for=tgt.retry_budget(until),
        apply_options={
            "batch_rows": cfg.apply.batch_rows,
            "batch_ms": cfg.apply.batch_ms,
            "skip_ddl": cfg.apply.skip_ddl,
            "rename": cfg.tables.target_name,
            "ignore_origins": frozenset(cfg.apply.ignore_origins),
            "delay": apply_delay(args.delay, cfg.apply.delay),
        },
    )
    db = open_database(tgt.endpoint)
    receiver = Receiver(ropts)
    host, port = receiver.bind()
    err_console.print(f"receiving on {host}:{port} into {ropts.root}")
    report: HalfReport = _run(
        cfg, args, (stop, recv_stop), lambda: run_target_half(db, options, receiver)
    )
    return report, ropts


def _print(report: HalfReport) -> None:
    if report.half == "source":
        cap = report.capture
        console.print(
            f"captured {cap.get('transactions', 0)} transactions ({cap.get('changes', 0)} changes)"
        )
        for name, r in report.ship.items():
            console.print(
                f"shipped to {name}: {r['segments']} segments acknowledged, {r['bytes']} bytes "
                f"sent, last acknowledged segment {r['acked_segment']}"
            )
    else:
        got, app = report.receive, report.apply
        console.print(
            f"received {got.get('segments', 0)} segments ({got.get('bytes', 0)} bytes) in "
            f"{got.get('sessions', 0)} sessions; applied {app.get('transactions', 0)} "
            f"transactions, up to operation {app.get('applied_op', 0)}"
        )
    console.print("caught up" if report.caught_up else "stopped")
