"""`redoline dev-servers`: throwaway MariaDB and PostgreSQL for trying redoline out.

The same code starts the servers the test suite uses: replication-ready, in their own
directory, on free loopback ports, with passwordless local root/postgres users.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from connectors import devservers
from toolkit_cli.options import JsonOpt
from toolkit_cli.output import console, print_json

__all__ = ["app"]

NAME = "dev-servers"
app = typer.Typer(
    help="Start, stop and list throwaway MariaDB and PostgreSQL servers for trying redoline "
    "(the same servers the tests use). Never for production data.",
    no_args_is_help=True,
)

DirOpt = Annotated[
    Path,
    typer.Option("--dir", help="Where the servers keep their data and state."),
]
_DEFAULT_DIR = Path(".redoline/dev-servers")


@app.command()
def up(
    directory: DirOpt = _DEFAULT_DIR,
    engine: Annotated[
        list[str] | None,
        typer.Option("--engine", help="mariadb and/or postgresql (default: both)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Start the servers (reuses running ones) and print their URLs."""
    state = directory / "state.json"
    running = [s for s in devservers.load_state(state) if s.alive()]
    wanted = engine or list(devservers.STARTERS)
    for name in wanted:
        start = devservers.STARTERS.get(name)
        if start is None:
            raise typer.BadParameter(f"unknown engine {name!r}", param_hint="--engine")
        if any(s.engine == name for s in running):
            continue
        running.append(start(directory / name))
    devservers.save_state(state, running)
    _show(running, json_out)


@app.command()
def down(directory: DirOpt = _DEFAULT_DIR) -> None:
    """Stop the servers (their data stays in --dir until you delete it)."""
    state = directory / "state.json"
    for server in devservers.load_state(state):
        devservers.stop(server)
        console.print(f"stopped {server.engine} on port {server.port}")
    devservers.save_state(state, [])


@app.command()
def status(directory: DirOpt = _DEFAULT_DIR, json_out: JsonOpt = False) -> None:
    """List the servers and whether they are running."""
    _show(devservers.load_state(directory / "state.json"), json_out)


def _show(servers: list[devservers.DevServer], json_out: bool) -> None:
    if json_out:
        print_json([{**s.to_json(), "running": s.alive()} for s in servers])
        return
    if not servers:
        console.print("no dev servers (start them with: redoline dev-servers up)")
    for s in servers:
        state = "[green]running[/]" if s.alive() else "[red]stopped[/]"
        console.print(f"{s.engine:<11} {state}  {s.url}")
