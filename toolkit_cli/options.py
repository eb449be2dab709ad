"""Options shared by every command, so each one reads the same way (`--help` teaches them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toolkit_cli import config as config_mod

__all__ = [
    "ConfigOpt",
    "JsonOpt",
    "PublicationOpt",
    "SlotOpt",
    "SourceOpt",
    "TargetOpt",
    "TrailOpt",
    "load_config",
]

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML configuration file. Default: $REDOLINE_CONFIG, else ./redoline.toml if it "
        "exists.",
        show_default=False,
    ),
]
SourceOpt = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="Source database URL, e.g. mariadb://repl@db1:3306/shop or "
        "postgresql://repl@db1/shop. Overrides [source] url and $REDOLINE_SOURCE_URL. Put the "
        "password in $REDOLINE_SOURCE_PASSWORD, not here (process arguments are visible to "
        "every user).",
        show_default=False,
    ),
]
TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target",
        help="Target database URL, e.g. duckdb:///var/lib/redoline/replica.duckdb or "
        "postgresql://app@db2/shop. Overrides [target] url and $REDOLINE_TARGET_URL; password "
        "in $REDOLINE_TARGET_PASSWORD.",
        show_default=False,
    ),
]
TrailOpt = Annotated[
    Path | None,
    typer.Option(
        "--trail",
        help="Trail directory. Overrides [trail] dir and $REDOLINE_TRAIL_DIR. Default: ./trail",
        show_default=False,
    ),
]
SlotOpt = Annotated[
    str | None,
    typer.Option(
        "--slot",
        help="PostgreSQL sources: the logical replication slot of this pipeline. Overrides "
        "[source] slot. Default: the one the trail records, else redoline_<source id>_<hash "
        "of the trail directory>. A slot the trail did not create is refused.",
        show_default=False,
    ),
]
PublicationOpt = Annotated[
    str | None,
    typer.Option(
        "--publication",
        help="PostgreSQL sources: the publication listing the tables. Overrides [source] "
        "publication. Default: the one the trail records, else the slot's name.",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")
]


def load_config(
    config: Path | None = None,
    *,
    source: str | None = None,
    target: str | None = None,
    trail: Path | None = None,
    slot: str | None = None,
    publication: str | None = None,
) -> config_mod.Config:
    """The configuration with the command's flags applied on top (flag > env > file)."""
    return config_mod.load(
        config,
        source=source,
        target=target,
        trail=trail,
        slot=slot,
        publication=publication,
    )
