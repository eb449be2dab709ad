"""`redoline init` / `redoline drop`: the PostgreSQL replication slot and publication."""

from __future__ import annotations

from typing import Annotated

import typer

from capture.heartbeat import ensure_table as ensure_heartbeat
from connectors.base import HEARTBEAT_TABLE, open_database
from connectors.errors import ConfigError
from connectors.postgres import PostgreSQL
from connectors.postgres.logical import DEFAULT_SLOT_TIMEOUT, drop_slot, init_slot
from connectors.postgres.ownership import resolve_names
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
) -> tuple[PostgreSQL, Config]:
    cfg = load_config(config, source=source, trail=trail, slot=slot, publication=publication)
    db = open_database(cfg.source().endpoint)
    if heartbeat_only and not isinstance(db, PostgreSQL) and cfg.source().heartbeat > 0:
        return db, cfg  # type: ignore[return-value]  # init: the heartbeat table only
    if not isinstance(db, PostgreSQL):
        raise ConfigError(
            f"{db.endpoint.display}: init and drop manage PostgreSQL slots; a {db.engine} source "
            "needs no setup beyond `redoline check`"
        )
    return db, cfg


def init(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    trail: TrailOpt = None,
    slot: SlotOpt = None,
    publication: PublicationOpt = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            help="Seconds slot creation may wait for running transactions to finish.",
        ),
    ] = DEFAULT_SLOT_TIMEOUT,
    json_out: JsonOpt = False,
) -> None:
    """Create (or reuse) the PostgreSQL slot and publication for the selected tables, and
    the heartbeat table when [source] heartbeat is set (any source engine).

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
        if not isinstance(db, PostgreSQL):
            if json_out:
                print_json({"heartbeat_table": str(HEARTBEAT_TABLE)})
            else:
                console.print(f"heartbeat table [bold]{HEARTBEAT_TABLE}[/]: ready")
            return
    tables = db.list_tables(cfg.tables.filter)
    # the heartbeat table is published with the selected tables (capture.heartbeat)
    published = [*tables, HEARTBEAT_TABLE] if beat else tables
    setup = init_slot(
        db,
        published,
        slot=src.slot,
        publication=src.publication,
        trail_dir=cfg.trail.dir,
        source_id=src.id,
        timeout=timeout,
    )
    if json_out:
        print_json(
            {
                "slot": setup.slot,
                "slot_created": setup.slot_created,
                "publication": setup.publication,
                "publication_created": setup.publication_created,
                "tables_added": [str(t) for t in setup.tables_added],
                "position": setup.position,
                "heartbeat_table": str(HEARTBEAT_TABLE) if beat else None,
            }
        )
        return
    verb = "created" if setup.slot_created else "reusing"
    console.print(f"replication slot [bold]{setup.slot}[/]: {verb}, at {setup.position}")
    verb = "created" if setup.publication_created else "reusing"
    console.print(f"publication [bold]{setup.publication}[/]: {verb}")
    for table in setup.tables_added:
        console.print(f"  + {table}")
    if beat:
        console.print(f"heartbeat table [bold]{HEARTBEAT_TABLE}[/]: ready, published")
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
    """Drop this trail's PostgreSQL slot and publication (the server then keeps no WAL for it).

    Only the slot the trail (--trail / [trail] dir) recorded is dropped; other pipelines'
    slots are left alone. The trail cannot be continued afterwards.
    """
    db, cfg = _source(config, source, trail, slot, publication)
    src = cfg.source()
    names = resolve_names(
        slot=src.slot, publication=src.publication, trail_dir=cfg.trail.dir, source_id=src.id
    )
    had_slot, had_pub = drop_slot(
        db,
        slot=names.slot,
        publication=names.publication,
        trail_dir=cfg.trail.dir,
        source_id=src.id,
    )
    slot, publication = names.slot, names.publication
    if json_out:
        print_json(
            {
                "slot": slot,
                "slot_dropped": had_slot,
                "publication": publication,
                "publication_dropped": had_pub,
            }
        )
        return
    console.print(f"replication slot {slot}: {'dropped' if had_slot else 'did not exist'}")
    console.print(f"publication {publication}: {'dropped' if had_pub else 'did not exist'}")
