"""Options shared by every command, so each one reads the same way (`--help` teaches them)."""

from __future__ import annotations

import difflib
import fnmatch
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from connectors.base import Database, TableFilter
from connectors.errors import ConfigError
from toolkit_cli import config as config_mod

__all__ = [
    "ConfigOpt",
    "JsonOpt",
    "PublicationOpt",
    "SlotOpt",
    "SourceOpt",
    "TargetOpt",
    "TrailOpt",
    "check_table_patterns",
    "load_config",
]

log = logging.getLogger("redoline")

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
    source_options: dict[str, Any] | None = None,
) -> config_mod.Config:
    """The configuration with the command's flags applied on top (flag > env > file);
    ``source_options``: flags of engine-specific ``[source]`` keys (the engine checks them)."""
    return config_mod.load(
        config,
        source=source,
        target=target,
        trail=trail,
        slot=slot,
        publication=publication,
        source_options=source_options,
    )


def check_table_patterns(db: Database, tables: config_mod.TablesConfig) -> None:
    """Refuse ``[tables] include`` patterns that can only be typos; warn about empty ones.

    A pattern that matches no table is a typo unless it names an existing schema through a
    table glob (``shop.*`` on a database whose tables do not exist yet): that is allowed,
    with a warning, since its tables may be created later.
    """
    patterns = [p for p in tables.include if p != "*.*"]
    if not patterns:
        return
    names = [str(t) for t in db.list_tables(TableFilter())]
    schemas = db.list_schemas()
    for pattern in patterns:
        if any(fnmatch.fnmatchcase(name, pattern) for name in names):
            continue
        schema, _, table = pattern.partition(".")
        if any(ch in table for ch in "*?[") and any(
            fnmatch.fnmatchcase(s, schema) for s in schemas
        ):
            log.warning("[tables] include %r matches no table yet", pattern)
            continue
        close = difflib.get_close_matches(
            pattern, names + [f"{s}.*" for s in schemas], n=3, cutoff=0.5
        )
        raise ConfigError(
            f"[tables] include pattern {pattern!r} matches no table on {db.endpoint.display}",
            key="tables.include",
            hint=f"did you mean {', '.join(close)}?"
            if close
            else "patterns are schema.table globs (MySQL: database.table), e.g. shop.*",
        )
