"""`redoline undo`: reverse selected changes of the trail, as SQL or executed."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from apply.point import mark_op, parse_time
from apply.undo import (
    UndoPlan,
    UndoResult,
    UndoSelection,
    execute_undo,
    plan_undo,
    render_undo,
)
from capture.trail import load_key, trail_info
from connectors.base import open_database
from connectors.errors import ConfigError
from connectors.model import TableId
from toolkit_cli.options import ConfigOpt, JsonOpt, SourceOpt, TargetOpt, TrailOpt, load_config
from toolkit_cli.output import console, err_console, print_json

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("undo")(undo_command)


_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")


ToTimeOpt = Annotated[
    str | None,
    typer.Option(
        "--to-time",
        help="Reverse every transaction committed after this time. ISO-8601 with a zone "
        "(2026-12-02T14:01:00+01:00, ...Z); a time without a zone is UTC; or relative: "
        "-15m, -2h, -1d.",
        show_default=False,
    ),
]

ToOpOpt = Annotated[
    int | None,
    typer.Option(
        "--to-op",
        min=0,
        help="Reverse every change after this operation number.",
        show_default=False,
    ),
]

XidOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--xid",
        help="Reverse this source transaction (repeatable); later ones are kept.",
        show_default=False,
    ),
]

OpsOpt = Annotated[
    str | None,
    typer.Option(
        "--ops", help="Reverse the changes numbered A..B (inclusive).", show_default=False
    ),
]

ToMarkOpt = Annotated[
    str | None,
    typer.Option(
        "--to-mark",
        help="Reverse every transaction committed after the restore point `redoline mark "
        "NAME` recorded.",
        show_default=False,
    ),
]

TablesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tables",
        help="Only changes on these source tables (schema.table, * allowed; repeatable).",
        show_default=False,
    ),
]

OnOpt = Annotated[
    str | None,
    typer.Option(
        "--on",
        help="source or target: where the undo applies (its SQL dialect, and where "
        "--execute runs it). No default: say which.",
        show_default=False,
    ),
]

ExecuteOpt = Annotated[
    bool,
    typer.Option(
        "--execute",
        help="Run the undo in one transaction after checking every row still holds what "
        "the trail recorded (default: print the SQL).",
    ),
]

ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="With --execute: overwrite rows that changed since (each is reported).",
    ),
]

SourceNameOpt = Annotated[
    str | None,
    typer.Option("--source-name", help="Which [sources.NAME] to use.", show_default=False),
]

TargetNameOpt = Annotated[
    str | None,
    typer.Option("--target-name", help="Which [targets.NAME] to use.", show_default=False),
]


def undo_command(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    target: TargetOpt = None,
    trail: TrailOpt = None,
    to_time: ToTimeOpt = None,
    to_op: ToOpOpt = None,
    xid: XidOpt = None,
    ops: OpsOpt = None,
    to_mark: ToMarkOpt = None,
    tables: TablesOpt = None,
    on: OnOpt = None,
    execute: ExecuteOpt = False,
    force: ForceOpt = False,
    source_name: SourceNameOpt = None,
    target_name: TargetNameOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Reverse selected changes from the trail (--to-time, --to-op, --to-mark, --xid or
    --ops): insert <-> delete, update back to its before
    image, newest first, folded per row into set-based statements.

    Prints the SQL by default. --execute --on source|target runs it in one transaction after a
    conflict check: every reversed row must still hold the image the trail recorded, else
    nothing is changed, the rows are listed and the exit code is 1 (--force overwrites them
    and reports each). DDL or TRUNCATE in the range, or changes without a full before image
    (PostgreSQL needs REPLICA IDENTITY FULL), are refused (exit 6); a point before the retained
    trail exits 11 naming the earliest restorable point. See docs/recovery.md.
    """
    if on not in ("source", "target"):
        raise ConfigError("--on source|target is required: say where the undo applies (no default)")
    if force and not execute:
        raise ConfigError("--force only applies with --execute")
    span = _span(ops)
    cfg = load_config(config, source=source, target=target, trail=trail)
    key = load_key(file=cfg.trail.key_file, env=cfg.trail.key_env)
    if to_mark is not None:
        to_op = _mark_op(cfg.trail.dir, to_mark, to_op, key)
    selection = UndoSelection(
        to_op=to_op,
        to_time=parse_time(to_time) if to_time is not None else None,
        xids=tuple(xid or ()),
        ops=span,
        tables=tuple(tables or ()),
    )
    rename: Callable[[TableId], TableId] | None = None  # the source: its own names
    if on == "source":
        endpoint = cfg.source(source_name).endpoint
    else:
        endpoint = cfg.target(target_name).endpoint
        rename = cfg.tables.target_name
    plan = plan_undo(cfg.trail.dir, selection, key=key)
    if plan.filtered_out:
        err_console.print(
            f"--tables: {plan.filtered_out} change(s) in the range on other tables are NOT undone"
        )
    if not plan.changes:
        err_console.print(f"nothing to undo: no change matches {selection.describe()}")
        return
    database = open_database(endpoint)
    # printing connects too: the script follows the database's foreign keys
    writer = database.open_writer()
    try:
        if not execute:
            print(render_undo(plan, database, rename=rename, writer=writer), end="")
            return
        result = execute_undo(plan, writer, rename=rename, force=force)
    finally:
        writer.close()
    _report(on, selection, plan, result, json_out)


def _span(ops: str | None) -> tuple[int, int] | None:
    """``--ops A..B`` as (A, B)."""
    if ops is None:
        return None
    m = _RANGE.match(ops.strip())
    if not m:
        raise ConfigError(f"--ops {ops!r}: give a range A..B of operation numbers")
    return int(m.group(1)), int(m.group(2))


def _mark_op(trail_dir: Path, to_mark: str, to_op: int | None, key: bytes | None) -> int:
    """The operation ``--to-mark`` undoes back to (the trail's last when nothing follows it)."""
    if to_op is not None:
        raise ConfigError("give exactly one of --to-time, --to-op, --to-mark, --xid, --ops")
    described, op = mark_op(trail_dir, to_mark, key)
    if op is None:
        # the trail holds nothing after the mark yet: nothing in it is to be undone
        last = trail_info(trail_dir, key=key).last_op
        err_console.print(f"{described}: the trail holds no transaction after it yet")
        return last
    err_console.print(f"{described}: undoing the changes after operation {op}")
    return op


def _report(
    on: str, selection: UndoSelection, plan: UndoPlan, result: UndoResult, json_out: bool
) -> None:
    """What an executed undo did, as JSON or a sentence; overwritten conflicts on stderr."""
    if json_out:
        print_json(
            {
                "selection": selection.describe(),
                "changes": plan.changes,
                "transactions": plan.transactions,
                "first_op": plan.first_op,
                "last_op": plan.last_op,
                "deleted": result.deleted,
                "updated": result.updated,
                "inserted": result.inserted,
                "overridden": result.overridden,
                "conflicts": result.conflicts,
            }
        )
    else:
        console.print(
            f"undone on the {on}: {plan.changes} change(s) of {plan.transactions} "
            f"transaction(s) (operations {plan.first_op}..{plan.last_op}): {result.deleted} "
            f"row(s) deleted, {result.updated} updated, {result.inserted} inserted"
        )
    if result.overridden:
        err_console.print(
            f"--force: {result.overridden} conflicting row(s) overwritten:\n  "
            + "\n  ".join(result.conflicts)
        )
