"""`redoline init` / `redoline drop`: the PostgreSQL replication slot and publication."""

from __future__ import annotations

from typing import Annotated

import typer

from connectors.base import open_database
from connectors.errors import ConfigError
from connectors.postgres import PostgreSQL
from connectors.postgres.logical import (
    DEFAULT_PUBLICATION,
    DEFAULT_SLOT,
    DEFAULT_SLOT_TIMEOUT,
    drop_slot,
    init_slot,
)
from toolkit_cli.config import Config
from toolkit_cli.options import ConfigOpt, JsonOpt, SourceOpt, load_config
from toolkit_cli.output import console, print_json

__all__ = ["register"]

SlotOpt = Annotated[
    str, typer.Option("--slot", help="Name of the logical replication slot (pgoutput).")
]
PublicationOpt = Annotated[
    str, typer.Option("--publication", help="Name of the publication listing the tables.")
]


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("drop")(drop)


def _source(config: ConfigOpt, source: SourceOpt) -> tuple[PostgreSQL, Config]:
    cfg = load_config(config, source=source)
    db = open_database(cfg.source().endpoint)
    if not isinstance(db, PostgreSQL):
        raise ConfigError(
            f"{db.endpoint.display}: init and drop manage PostgreSQL slots; a {db.engine} source "
            "needs no setup beyond `redoline check`"
        )
    return db, cfg


def init(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    slot: SlotOpt = DEFAULT_SLOT,
    publication: PublicationOpt = DEFAULT_PUBLICATION,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            help="Seconds slot creation may wait for running transactions to finish.",
        ),
    ] = DEFAULT_SLOT_TIMEOUT,
    json_out: JsonOpt = False,
) -> None:
    """Create (or reuse) the PostgreSQL slot and publication for the selected tables.

    The publication lists the tables that [tables] include/exclude select; tables added to the
    selection later are added to it. Every selected table needs a primary key, a replica
    identity index, or REPLICA IDENTITY FULL. Capture also does this on its first run.
    """
    db, cfg = _source(config, source)
    tables = db.list_tables(cfg.tables.filter)
    setup = init_slot(db, tables, slot=slot, publication=publication, timeout=timeout)
    if json_out:
        print_json(
            {
                "slot": setup.slot,
                "slot_created": setup.slot_created,
                "publication": setup.publication,
                "publication_created": setup.publication_created,
                "tables_added": [str(t) for t in setup.tables_added],
                "position": setup.position,
            }
        )
        return
    verb = "created" if setup.slot_created else "reusing"
    console.print(f"replication slot [bold]{setup.slot}[/]: {verb}, at {setup.position}")
    verb = "created" if setup.publication_created else "reusing"
    console.print(f"publication [bold]{setup.publication}[/]: {verb}")
    for table in setup.tables_added:
        console.print(f"  + {table}")
    if not tables:
        console.print("[yellow]no table is selected yet[/]: check [tables] include/exclude")


def drop(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    slot: SlotOpt = DEFAULT_SLOT,
    publication: PublicationOpt = DEFAULT_PUBLICATION,
    json_out: JsonOpt = False,
) -> None:
    """Drop the PostgreSQL slot and publication (the server then keeps no WAL for redoline).

    A trail captured through the slot cannot be continued afterwards.
    """
    db, _ = _source(config, source)
    had_slot, had_pub = drop_slot(db, slot=slot, publication=publication)
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
