"""`redoline ship` (source host) and `redoline receive` (target host): the trail over TLS 1.3."""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from capture.trail import list_segment_files, read_trail_start
from capture.trail._format import parse_header
from connectors.errors import ConfigError, ToolkitError
from ship import (
    ReceiveOptions,
    Receiver,
    ShipOptions,
    ShipResult,
    Token,
    client_context,
    init_certs,
    run_ship,
    server_context,
)
from toolkit_cli.metrics import MetricsFileOpt, MetricsOpt, observe
from toolkit_cli.options import ConfigOpt, JsonOpt, load_config
from toolkit_cli.output import console, print_json

__all__ = ["register"]

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


def _signals(stop: threading.Event) -> dict[int, Any]:
    def handler(signum: int, frame: Any) -> None:
        stop.set()

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
    sc = cfg.ship
    dests = list(to or sc.to)
    if not dests:
        raise ConfigError("no receiver given", hint='--to HOST:PORT or [ship] to = "HOST:PORT"')
    name = name or sc.name
    if name and len(dests) > 1:
        raise ConfigError("--name names one destination; several --to get HOST_PORT names")
    addresses = [parse_address(dest, "--to") for dest in dests]
    context = client_context(cert or sc.cert, key or sc.key, ca or sc.ca)
    token = Token.load(token_file or sc.token_file, token_env or sc.token_env, "ship")
    trail_dir = cfg.trail.dir
    source_id = _source_id(trail_dir, next(iter(cfg.sources.values())).id if cfg.sources else None)
    stop = threading.Event()
    options = []
    for host, port in addresses:
        options.append(
            ShipOptions(
                trail=trail_dir,
                host=host,
                port=port,
                context=context,
                token=token,
                source_id=source_id,
                name=name or re.sub(r"[^A-Za-z0-9.-]", "_", f"{host}_{port}"),
                until_caught_up=until_caught_up,
                retry_for=sc.retry_for
                if sc.retry_for is not None
                else (60.0 if until_caught_up else None),
                stop_event=stop,
            )
        )
    results: dict[str, ShipResult] = {}
    errors: dict[str, ToolkitError] = {}

    def one(opts: ShipOptions) -> None:
        try:
            results[opts.name] = run_ship(opts)
        except ToolkitError as exc:
            errors[opts.name] = exc
            if not until_caught_up:
                stop.set()  # a service stops whole, so its supervisor sees the failure

    previous = _signals(stop)
    observing = contextlib.ExitStack()
    observing.enter_context(observe(cfg.state_dir, metrics, metrics_file))
    try:
        if len(options) == 1:
            one(options[0])
        else:
            threads = [threading.Thread(target=one, args=(o,), daemon=True) for o in options]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
    finally:
        observing.close()
        _restore(previous)
    summary = {
        name: {
            "segments": r.segments,
            "bytes": r.bytes,
            "acked_segment": r.acked_seq,
            "caught_up": r.caught_up,
            "reconnects": r.reconnects,
        }
        for name, r in results.items()
    }
    if json_out:
        print_json({"trail": str(trail_dir), "source_id": source_id, "destinations": summary})
    else:
        for n, r in results.items():
            state = "caught up" if r.caught_up else "stopped"
            console.print(
                f"ship {state} ({n}): {r.segments} segments acknowledged, {r.bytes} bytes sent, "
                f"last acknowledged segment {r.acked_seq}"
            )
    if errors:
        first = next(iter(errors.values()))
        if len(errors) > 1:
            for n, exc in list(errors.items())[1:]:
                console.print(f"[red]error ({n}):[/] {exc.message}")
        raise first
    if any(r.stopped for r in results.values()):
        raise typer.Exit(EXIT_INTERRUPTED)


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
    Runs until Ctrl-C/SIGTERM (exit 130), or with --until-caught-up until a sender is done.
    """
    if init_certs_dir is not None:
        written = init_certs(init_certs_dir, list(cert_name or []))
        if json_out:
            print_json({"written": [str(p) for p in written]})
        else:
            console.print(f"wrote {', '.join(str(p) for p in written)}")
        return
    cfg = load_config(config)
    rc = cfg.receive
    root = trail or rc.dir
    if root is None:
        raise ConfigError("no receiving directory", hint="--trail DIR or [receive] dir")
    sources = frozenset(source_id or rc.sources)
    if not sources:
        raise ConfigError(
            "the receiver accepts no source id",
            key="receive.sources",
            hint="--source-id ID (as the sender's trail records it) or [receive] sources",
        )
    host, port = parse_address(listen or rc.listen, "--listen")
    token = Token.load(token_file or rc.token_file, token_env or rc.token_env, "receive")
    context = server_context(cert or rc.cert, key or rc.key, ca or rc.ca, token)
    stop = threading.Event()
    receiver = Receiver(
        ReceiveOptions(
            host=host,
            port=port,
            root=root,
            sources=sources,
            context=context,
            token=token,
            until_caught_up=until_caught_up,
            stop_event=stop,
        )
    )
    bound_host, bound_port = receiver.bind()
    console.print(f"receiving on {bound_host}:{bound_port} into {root}")
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
    if not until_caught_up:
        raise typer.Exit(EXIT_INTERRUPTED)
