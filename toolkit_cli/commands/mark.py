"""`redoline mark NAME`: record a named restore point in the trail directory."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from capture.trail import Mark, TrailReader, remove_mark, trail_info, write_mark
from connectors.base import open_database
from connectors.errors import ConfigError
from toolkit_cli.options import ConfigOpt, JsonOpt, SourceOpt, TrailOpt, load_config
from toolkit_cli.output import console, print_json

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("mark")(mark_command)


def mark_command(
    name: Annotated[
        str,
        typer.Argument(
            help="The restore point's name: letters, digits, _ . : @ + - (up to 100).",
            show_default=False,
        ),
    ],
    config: ConfigOpt = None,
    source: SourceOpt = None,
    trail: TrailOpt = None,
    at_op: Annotated[
        int | None,
        typer.Option(
            "--at-op",
            min=0,
            help="Mark the point right after this operation number (a transaction's last) "
            "instead of the source's current position; needs no source connection.",
            show_default=False,
        ),
    ] = None,
    remove: Annotated[
        bool, typer.Option("--remove", help="Delete the mark NAME instead of recording it.")
    ] = False,
    source_name: Annotated[
        str | None,
        typer.Option("--source-name", help="Which [sources.NAME] to use.", show_default=False),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Record a named restore point: the source's end-of-log position now (or --at-op N).

    Replay to it with `apply`/`sync --until-mark NAME`, undo back to it with `undo --to-mark
    NAME`; `trail stats` lists the marks. Every transaction committed before the mark is
    before it, also when capture has not read them yet. The mark is a file in the trail
    directory (marks/NAME.json), durable when the command returns; a running capture is not
    disturbed. A name that exists is refused (exit 2): a mark never moves.
    """
    cfg = load_config(config, source=source, trail=trail)
    directory = cfg.trail.dir
    if remove:
        remove_mark(directory, name)
        console.print(f"mark {name!r} removed")
        return
    if not directory.is_dir():
        raise ConfigError(
            f"trail directory {directory} does not exist: a mark belongs to a trail",
            hint="run `redoline capture` (or sync) once first, or pass --trail DIR",
        )
    key = cfg.trail.key()
    info = trail_info(directory, key=key)
    now = dt.datetime.now(dt.UTC)
    if at_op is not None:
        _check_boundary(directory, key, at_op, info.first_op, info.last_op)
        mark = Mark(
            name,
            now,
            op=at_op,
            trail_last_op=info.last_op,
            trail_id=info.trail_id,
            source_engine=info.source_engine,
        )
    else:
        db = open_database(cfg.source(source_name).endpoint)
        if info.source_engine and info.source_engine != db.engine:
            raise ConfigError(
                f"the trail {directory} was captured from a {info.source_engine} source, the "
                f"configured source is {db.engine}",
                hint="point --source/--trail at the pair that belongs together",
            )
        # the trail's end first: everything it holds then was committed before the position
        last_op = info.last_op
        position = db.end_position()
        mark = Mark(
            name,
            now,
            position=position,
            trail_last_op=last_op,
            trail_id=info.trail_id,
            source_engine=db.engine,
        )
    path = write_mark(directory, mark)
    if json_out:
        print_json({**mark.to_json(), "file": str(path)})
        return
    console.print(f"recorded {mark.describe()} in {path}")


def _check_boundary(directory: Path, key: bytes | None, op: int, first: int, last: int) -> None:
    """``--at-op`` must end a transaction (transactions replay whole) inside the trail."""
    if op > last:
        raise ConfigError(f"--at-op {op}: the trail ends at operation {last}")
    if op < first - 1:
        raise ConfigError(
            f"--at-op {op} is before the retained trail, which starts at operation {first}"
        )
    if op in (0, first - 1, last):
        return
    for txn in TrailReader(directory, key=key).transactions(op):
        if txn.last_op == op or txn.first_op > op:
            return
        raise ConfigError(
            f"--at-op {op} is inside transaction {txn.xid} (operations {txn.first_op}.."
            f"{txn.last_op}), which applies whole",
            hint=f"mark --at-op {txn.first_op - 1} or --at-op {txn.last_op}",
        )
