"""`redoline check`: every replication prerequisite, its value now, and how to fix it."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import typer

from capture.filters import CaptureFilter
from connectors.base import CheckItem, open_database
from connectors.errors import ToolkitError
from toolkit_cli.options import ConfigOpt, JsonOpt, SourceOpt, TargetOpt, TrailOpt, load_config
from toolkit_cli.output import console, print_json

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("check")(check)


def check(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    target: TargetOpt = None,
    trail: TrailOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check every configured source and target for replication prerequisites.

    Sources (MySQL/MariaDB): binlog on, ROW format, FULL row image, FULL row metadata, GTID,
    server_id, grants. Sources (PostgreSQL): wal_level=logical, free slots and WAL senders,
    the REPLICATION attribute, replica identity of keyless selected tables, and REPLICA IDENTITY
    FULL for tables whose [tables.where] reads non-key columns. Sources (Oracle): ARCHIVELOG,
    supplemental logging (database and per table), LogMiner privileges. Sources (SQL Server):
    CDC on the database and tables, the capture job, retention, snapshot isolation. The Oracle
    and SQL Server checks have not yet been run against a live server. Targets: reachable
    and writable. Locally: a source is configured, and the trail directory is not readable by
    other users. Exits 1 when anything blocks replication, 0 otherwise.
    """
    cfg = load_config(config, source=source, target=target, trail=trail)
    if not cfg.sources and not cfg.targets:
        raise typer.BadParameter("nothing to check: give --source/--target or a config file")
    report: list[dict[str, Any]] = []
    blocked = False
    local = _local_checks(bool(cfg.sources), cfg.trail.dir)
    if local:
        setup: dict[str, Any] = {
            "role": "setup",
            "name": "local",
            "url": str(cfg.trail.dir),
            "items": [vars(c) for c in local],
            "error": None,
        }
        blocked |= any(c.blocking and not c.ok for c in local)
        report.append(setup)
        if not json_out:
            _print(setup, local)
    for role, items in (("source", cfg.sources), ("target", cfg.targets)):
        for name, entry in items.items():
            db = open_database(entry.endpoint)
            result: dict[str, Any] = {
                "role": role,
                "name": name,
                "url": entry.endpoint.display,
                "items": [],
                "error": None,
            }
            try:
                if role == "source":
                    tables = db.list_tables(cfg.tables.filter)
                    checks = db.check_source(tables) + _view_checks(cfg, db, tables)
                else:
                    checks = db.check_target()
            except ToolkitError as exc:
                result["error"] = str(exc)
                checks = [CheckItem("connect", exc.message, "connected", False, exc.hint or "")]
            result["items"] = [vars(c) for c in checks]
            blocked |= any(c.blocking and not c.ok for c in checks)
            report.append(result)
            if not json_out:
                _print(result, checks)
    if json_out:
        print_json({"ok": not blocked, "endpoints": report})
    elif blocked:
        console.print("[bold red]Replication is blocked[/]: fix the items marked ✗ above.")
    else:
        console.print("[bold green]All prerequisites met.[/]")
    raise typer.Exit(1 if blocked else 0)


def _local_checks(has_source: bool, trail_dir: Path) -> list[CheckItem]:
    """What is wrong on this host or in the configuration, before any server is asked."""
    items: list[CheckItem] = []
    if not has_source:
        # checking only a target must not read as "replication can start"
        items.append(
            CheckItem(
                "source",
                "none configured",
                "a source to replicate from",
                False,
                "give --source URL or a [source] section; only the target was checked",
            )
        )
    exposed = _readable_by_others(trail_dir)
    if exposed:
        items.append(
            CheckItem(
                "trail privacy",
                f"{len(exposed)} path(s) readable by others, e.g. {exposed[0]}",
                "0700 directories, 0600 files (the trail holds full row images)",
                False,
                f"chmod -R go-rwx {trail_dir}",
                blocking=False,
            )
        )
    return items


def _readable_by_others(trail_dir: Path) -> list[str]:
    if not trail_dir.is_dir():
        return []
    paths = [trail_dir, *trail_dir.rglob("*")]
    return [str(p) for p in paths if p.lstat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)]


def _view_checks(cfg: Any, db: Any, tables: list[Any]) -> list[CheckItem]:
    """[tables] columns/where that capture would refuse (e.g. a predicate on non-key
    columns of a table whose updates are logged with the key alone)."""
    view = CaptureFilter.from_config(cfg.tables)
    if view.trivial:
        return []
    return [
        CheckItem(f"filtered view {table}", message, "decidable from the log", False, hint)
        for table, message, hint in view.problems(db, tables)
    ]


def _print(result: dict[str, Any], checks: list[CheckItem]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"{result['role']} {result['name']}: {escape(result['url'])}", title_justify="left"
    )
    for col in ("", "setting", "now", "needs", "how to fix"):
        table.add_column(col)
    for item in checks:
        mark = "[green]✓[/]" if item.ok else ("[red]✗[/]" if item.blocking else "[yellow]![/]")
        table.add_row(
            mark,
            escape(item.name),
            escape(item.value),
            escape(item.expected),
            "" if item.ok else escape(item.hint),
        )
    console.print(table)
