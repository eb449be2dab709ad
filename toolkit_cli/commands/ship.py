"""`redoline ship` (source host) and `redoline receive` (target host): the trail over TLS 1.3."""

from __future__ import annotations

import re
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from capture.filters import CaptureFilter
from capture.trail import list_segment_files, read_trail_start
from capture.trail._format import parse_header
from connectors.base import open_database
from connectors.errors import ConfigError, RetriesExhaustedError, ToolkitError
from ship import (
    ReceiveOptions,
    Receiver,
    ShipOptions,
    ShipResult,
    Token,
    client_context,
    init_certs,
    run_ship_all,
    server_context,
)
from toolkit_cli.config import Config, retry_budget

if TYPE_CHECKING:
    from toolkit_cli.sync_halves import HalfReport
from toolkit_cli.metrics import MetricsFileOpt, MetricsOpt, observe
from toolkit_cli.options import ConfigOpt, JsonOpt, check_table_patterns, load_config
from toolkit_cli.output import console, err_console, print_json

__all__ = [
    "HALVES",
    "HalfArgs",
    "TlsFlags",
    "print_ship",
    "raise_first",
    "receive_options",
    "register",
    "ship_options",
    "ship_summary",
    "sync_half",
]

EXIT_INTERRUPTED = 130

CertOpt = Annotated[
    Path | None,
    typer.Option("--cert", help="This side's certificate (PEM). Overrides [ship]/[receive] cert."),
]
KeyOpt = Annotated[
    Path | None,
    typer.Option("--key", help="The private key of --cert (PEM). Overrides [ship]/[receive] key."),
]
CaOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca",
        help="CA certificate (PEM) that signed the other side's certificate. Overrides "
        "[ship]/[receive] ca.",
    ),
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        help="File holding the shared token (never the token itself on the command line). "
        "Overrides [ship]/[receive] token_file.",
    ),
]
TokenEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--token-env",
        help="Environment variable holding the shared token. Overrides [ship]/[receive] token_env.",
    ),
]
TrailDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--trail",
        help="ship: the trail directory to send ([trail] dir). receive: the root under which "
        "each accepted source id gets its own trail directory ([receive] dir).",
        show_default=False,
    ),
]
UntilOpt = Annotated[
    bool,
    typer.Option(
        "--until-caught-up",
        help="ship: stop once everything the trail held at start is confirmed (exit 0). "
        "receive: stop after a sender finished caught up and none is connected. For cron.",
    ),
]


@dataclass(frozen=True)
class TlsFlags:
    """--cert/--key/--ca/--token-file/--token-env as given (None: the config's)."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    token_file: Path | None = None
    token_env: str | None = None


def register(app: typer.Typer) -> None:
    app.command("ship")(ship)
    app.command("receive")(receive)


def parse_address(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", text.strip())
    if m is None:
        raise ConfigError(f"{what} {text!r} is not HOST:PORT", hint="e.g. 127.0.0.1:7433")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} {text!r}: port out of range")
    return host, port


def _signals(*events: threading.Event) -> dict[int, Any]:
    def handler(signum: int, frame: Any) -> None:
        for event in events:
            event.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore(previous: dict[int, Any]) -> None:
    for sig, old in previous.items():
        signal.signal(sig, old)


def _source_id(trail: Path, configured: str | None) -> str:
    start = read_trail_start(trail)
    if start is not None and start.source_id:
        return start.source_id
    for path, _ in list_segment_files(trail).values():
        with open(path, "rb") as f:
            header = parse_header(f.read(1 << 16), path.name)
        if header is not None:
            return header.source_id
    if configured:
        return configured
    raise ConfigError(
        f"the trail {trail} has no start record and no segment yet: its source id is unknown",
        hint="run `redoline capture` once first, or configure [source] id",
    )


def ship_options(
    cfg: Config,
    stop: threading.Event,
    source_id: str,
    *,
    until_caught_up: bool,
    to: list[str] | None = None,
    name: str | None = None,
    tls: TlsFlags | None = None,
) -> list[ShipOptions]:
    """One :class:`ShipOptions` per destination: the flags over ``[ship]``."""
    sc = cfg.ship
    tls = tls or TlsFlags()
    dests = list(to or sc.to)
    if not dests:
        raise ConfigError("no receiver given", hint='--to HOST:PORT or [ship] to = "HOST:PORT"')
    name = name or sc.name
    if name and len(dests) > 1:
        raise ConfigError("--name names one destination; several --to get HOST_PORT names")
    addresses = [parse_address(dest, "--to") for dest in dests]
    context = client_context(tls.cert or sc.cert, tls.key or sc.key, tls.ca or sc.ca)
    token = Token.load(tls.token_file or sc.token_file, tls.token_env or sc.token_env, "ship")
    # a cron run must end: a receiver unreachable for a minute is reported (exit 75)
    retry_for = sc.retry_for if sc.retry_for is not None else (60.0 if until_caught_up else None)
    return [
        ShipOptions(
            trail=cfg.trail.dir,
            host=host,
            port=port,
            context=context,
            token=token,
            source_id=source_id,
            name=name or re.sub(r"[^A-Za-z0-9.-]", "_", f"{host}_{port}"),
            until_caught_up=until_caught_up,
            retry_for=retry_for,
            stop_event=stop,
        )
        for host, port in addresses
    ]


def ship_summary(results: dict[str, ShipResult]) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "segments": r.segments,
            "bytes": r.bytes,
            "acked_segment": r.acked_seq,
            "caught_up": r.caught_up,
            "reconnects": r.reconnects,
        }
        for name, r in results.items()
    }


def print_ship(results: dict[str, ShipResult]) -> None:
    for n, r in results.items():
        state = "caught up" if r.caught_up else "stopped"
        console.print(
            f"ship {state} ({n}): {r.segments} segments acknowledged, {r.bytes} bytes sent, "
            f"last acknowledged segment {r.acked_seq}"
        )


def raise_first(errors: dict[str, ToolkitError]) -> None:
    """Print every destination's error but the first, then raise the first (its exit code)."""
    if not errors:
        return
    first = next(iter(errors.values()))
    for n, exc in list(errors.items())[1:]:
        console.print(f"[red]error ({n}):[/] {exc.message}")
    raise first


def ship(
    config: ConfigOpt = None,
    to: Annotated[
        list[str] | None,
        typer.Option(
            "--to",
            help="Receiver HOST:PORT; repeat for several receivers (each acknowledges on its "
            "own). Overrides [ship] to.",
            show_default=False,
        ),
    ] = None,
    trail: TrailDirOpt = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Name of this destination: the trail consumer is ship.NAME. Default: "
            "HOST_PORT of --to. Overrides [ship] name.",
        ),
    ] = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    ca: CaOpt = None,
    token_file: TokenFileOpt = None,
    token_env: TokenEnvOpt = None,
    until_caught_up: UntilOpt = False,
    metrics: MetricsOpt = None,
    metrics_file: MetricsFileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Send the trail's segments to `redoline receive` on the target host, over TLS 1.3.

    The open segment is tailed, so the receiving side lags well under a second. Each sealed
    segment counts as delivered once the receiver confirms its number, size and SHA-256; the
    confirmation is recorded as the trail consumer ship.NAME, so `trail prune` keeps everything
    a receiver does not hold. Reconnects after network trouble and resumes mid-segment.
    Runs until Ctrl-C/SIGTERM (exit 130), or with --until-caught-up until done (exit 0).
    """
    cfg = load_config(config, trail=trail)
    trail_dir = cfg.trail.dir
    stop = threading.Event()
    tls = TlsFlags(cert, key, ca, token_file, token_env)
    options = ship_options(
        cfg, stop, "", until_caught_up=until_caught_up, to=to, name=name, tls=tls
    )
    # flags and addresses are checked before the trail is looked at
    source_id = _source_id(trail_dir, next(iter(cfg.sources.values())).id if cfg.sources else None)
    for opts in options:
        opts.source_id = source_id
    previous = _signals(stop)
    try:
        with observe(cfg.state_dir, metrics, metrics_file):
            results, errors = run_ship_all(options, stop)
    finally:
        _restore(previous)
    if json_out:
        print_json(
            {"trail": str(trail_dir), "source_id": source_id, "destinations": ship_summary(results)}
        )
    else:
        print_ship(results)
    raise_first(errors)
    if any(r.stopped for r in results.values()):
        raise typer.Exit(EXIT_INTERRUPTED)


def receive_options(
    cfg: Config,
    stop: threading.Event,
    *,
    until_caught_up: bool,
    listen: str | None = None,
    root: Path | None = None,
    source_ids: list[str] | None = None,
    tls: TlsFlags | None = None,
) -> ReceiveOptions:
    """The receiver's options: the flags over ``[receive]``."""
    rc = cfg.receive
    tls = tls or TlsFlags()
    root = root or rc.dir
    if root is None:
        raise ConfigError("no receiving directory", hint="--trail DIR or [receive] dir")
    sources = frozenset(source_ids or rc.sources)
    if not sources:
        raise ConfigError(
            "the receiver accepts no source id",
            key="receive.sources",
            hint="--source-id ID (as the sender's trail records it) or [receive] sources",
        )
    host, port = parse_address(listen or rc.listen, "--listen")
    token = Token.load(tls.token_file or rc.token_file, tls.token_env or rc.token_env, "receive")
    context = server_context(tls.cert or rc.cert, tls.key or rc.key, tls.ca or rc.ca, token)
    return ReceiveOptions(
        host=host,
        port=port,
        root=root,
        sources=sources,
        context=context,
        token=token,
        until_caught_up=until_caught_up,
        stop_event=stop,
        wait_for=retry_budget(rc.retry_for, until_caught_up),
    )


def no_sender_error(options: ReceiveOptions) -> RetriesExhaustedError:
    """A cron receiver that waited ``wait_for`` seconds and no sender finished caught up."""
    return RetriesExhaustedError(
        f"no sender finished caught up within {options.wait_for:.0f} s of waiting for one "
        f"(listening on {options.host}:{options.port}); what arrived is kept",
        hint="run the sending side's cron job at the same time, or raise [receive] retry_for",
    )


def receive(
    config: ConfigOpt = None,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            help="HOST:PORT to listen on. Overrides [receive] listen. Default 127.0.0.1:7433 "
            "(only this host: give the address other hosts reach explicitly).",
        ),
    ] = None,
    trail: TrailDirOpt = None,
    source_id: Annotated[
        list[str] | None,
        typer.Option(
            "--source-id",
            help="A source id to accept (repeat for several). Overrides [receive] sources. "
            "Senders of other source ids are refused.",
            show_default=False,
        ),
    ] = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    ca: CaOpt = None,
    token_file: TokenFileOpt = None,
    token_env: TokenEnvOpt = None,
    until_caught_up: UntilOpt = False,
    init_certs_dir: Annotated[
        Path | None,
        typer.Option(
            "--init-certs",
            help="Write a private CA and a server and a client certificate into this "
            "directory (ca.pem, server.pem, server.key, client.pem, client.key), then exit.",
        ),
    ] = None,
    cert_name: Annotated[
        list[str] | None,
        typer.Option(
            "--cert-name",
            help="With --init-certs: a host name or address senders use to reach this "
            "receiver (repeat; localhost and 127.0.0.1 are always included).",
            show_default=False,
        ),
    ] = None,
    metrics: MetricsOpt = None,
    metrics_file: MetricsFileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Receive shipped trails on the target host: one trail directory per source id under
    --trail, each segment acknowledged only once its SHA-256 verified and it is on disk.

    Apply reads a received trail like a local one (`redoline apply --trail ROOT/SOURCE_ID`).
    Runs until Ctrl-C/SIGTERM (exit 130), or with --until-caught-up until a sender is done
    (exit 0; 75 when none finished within [receive] retry_for, default 300 s).
    """
    if init_certs_dir is not None:
        written = init_certs(init_certs_dir, list(cert_name or []))
        if json_out:
            print_json({"written": [str(p) for p in written]})
        else:
            console.print(f"wrote {', '.join(str(p) for p in written)}")
        return
    cfg = load_config(config)
    stop = threading.Event()
    options = receive_options(
        cfg,
        stop,
        until_caught_up=until_caught_up,
        listen=listen,
        root=trail,
        source_ids=source_id,
        tls=TlsFlags(cert, key, ca, token_file, token_env),
    )
    receiver = Receiver(options)
    bound_host, bound_port = receiver.bind()
    console.print(f"receiving on {bound_host}:{bound_port} into {options.root}")
    previous = _signals(stop)
    try:
        with observe(cfg.state_dir, metrics, metrics_file):
            result = receiver.serve()
    finally:
        _restore(previous)
    if json_out:
        print_json({"segments": result.segments, "bytes": result.bytes})
    else:
        console.print(
            f"receive stopped: {result.segments} segments, {result.bytes} bytes in "
            f"{result.sessions} sessions"
        )
    if result.timed_out:
        raise no_sender_error(options)
    if not result.caught_up:
        raise typer.Exit(EXIT_INTERRUPTED)


# ------------------------------------------------------------------ sync --half

HALVES = ("source", "target")


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
    receiving: ReceiveOptions | None = None
    if half == "source":
        report = _source_half(args, stop)
    else:
        report, receiving = _target_half(args, stop)
    if args.json_out:
        print_json(report.to_json())
    else:
        _print_half(report)
    if report.caught_up:
        return
    if receiving is not None and report.receive.get("timed_out") and not stop.is_set():
        raise no_sender_error(receiving)
    raise typer.Exit(EXIT_INTERRUPTED)


def _run_half(cfg: Config, args: HalfArgs, events: tuple[threading.Event, ...], run: Any) -> Any:
    previous = _signals(*events)
    try:
        with observe(cfg.state_dir, args.metrics, args.metrics_file):
            return run()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _source_half(args: HalfArgs, stop: threading.Event) -> HalfReport:
    """Capture + ship."""
    from toolkit_cli.sync import SyncOptions
    from toolkit_cli.sync_halves import run_source_half

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
    report: HalfReport = _run_half(
        cfg, args, (stop,), lambda: run_source_half(db, options, ships, filters)
    )
    return report


def _target_half(args: HalfArgs, stop: threading.Event) -> tuple[HalfReport, ReceiveOptions]:
    """Receive + apply."""
    from toolkit_cli.commands.apply import apply_delay
    from toolkit_cli.sync import SyncOptions
    from toolkit_cli.sync_halves import run_target_half

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
    report: HalfReport = _run_half(
        cfg, args, (stop, recv_stop), lambda: run_target_half(db, options, receiver)
    )
    return report, ropts


def _print_half(report: HalfReport) -> None:
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
