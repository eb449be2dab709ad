"""`redoline init` / `redoline drop`: make a source ready to capture, and undo it.

What that means is the engine's ``prepare`` role (``Database.prepare_source`` /
``release_source``): PostgreSQL's replication slot and publication today. A source whose
engine needs no preparation (MySQL/MariaDB: `redoline check` says what to configure) is a
ConfigError naming the engine and the role.
"""

from __future__ import annotations

from typing import Annotated

import typer

from capture.heartbeat import ensure_table as ensure_heartbeat
from connectors.base import HEARTBEAT_TABLE, Database, open_database
from toolkit_cli.config import Config
from toolkit_cli.options import (
    ConfigOpt,
    JsonOpt,
    PublicationOpt,
    SlotOpt,
    SourceOpt,
    TrailOpt,
    load_config,
)
from toolkit_cli.output import console, print_json

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("drop")(drop)


def _source(
    config: ConfigOpt,
    source: SourceOpt,
    trail: TrailOpt,
    slot: str | None,
    publication: str | None,
    *,
    heartbeat_only: bool = False,
) -> tuple[Database, Config]:
    cfg = load_config(config, source=source, trail=trail, slot=slot, publication=publication)
    db = open_database(cfg.source().endpoint)
    if not (heartbeat_only and cfg.source().heartbeat > 0):
        db.descriptor.role("prepare")  # a ConfigError naming the engine before anything else
    return db, cfg


def init(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    trail: TrailOpt = None,
    slot: SlotOpt = None,
    publication: PublicationOpt = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            help="Seconds preparing the source may wait for running transactions to finish "
            "(PostgreSQL slot creation; default 60).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Prepare the source to capture the selected tables (PostgreSQL: create or reuse the
    slot and publication; MySQL/MariaDB need none: see `redoline check`), and create the
    heartbeat table when [source] heartbeat is set (any source engine).

    The publication lists the tables that [tables] include/exclude select; tables added to the
    selection later are added to it. Every selected table needs a primary key, a replica
    identity index, or REPLICA IDENTITY FULL. Capture also does this on its first run.
    The slot belongs to the trail (--trail / [trail] dir), which records it; a slot of that
    name that the trail did not create is refused, not taken over.
    """
    db, cfg = _source(config, source, trail, slot, publication, heartbeat_only=True)
    src = cfg.source()
    beat = src.heartbeat > 0
    if beat:
        ensure_heartbeat(db)
    fields: dict[str, object] = {"heartbeat_table": str(HEARTBEAT_TABLE) if beat else None}
    lines: list[str] = []
    tables = db.list_tables(cfg.tables.filter)
    if db.descriptor.provides("prepare"):
        # the heartbeat table is prepared (published) with the selected tables
        published = [*tables, HEARTBEAT_TABLE] if beat else tables
        setup = db.prepare_source(
            published, src.options, trail_dir=cfg.trail.dir, source_id=src.id, timeout=timeout
        )
        fields = {**setup.fields, **fields}
        lines = list(setup.lines)
    if beat:
        lines.append(f"heartbeat table [bold]{HEARTBEAT_TABLE}[/]: ready")
    if json_out:
        print_json(fields)
        return
    for line in lines:
        console.print(line)
    if not tables:
        console.print("[yellow]no table is selected yet[/]: check [tables] include/exclude")


def drop(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    trail: TrailOpt = None,
    slot: SlotOpt = None,
    publication: PublicationOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Undo `redoline init` for this trail (PostgreSQL: drop its slot and publication, so the
    server keeps no WAL for it).

    Only the slot the trail (--trail / [trail] dir) recorded is dropped; other pipelines'
    slots are left alone. The trail cannot be continued afterwards.
    """
    db, cfg = _source(config, source, trail, slot, publication)
    src = cfg.source()
    setup = db.release_source(src.options, trail_dir=cfg.trail.dir, source_id=src.id)
    if json_out:
        print_json(setup.fields)
        return
    for line in setup.lines:
        console.print(line)
