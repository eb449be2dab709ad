"""PostgreSQL: what the rest of redoline may know about it (:mod:`connectors.engine`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from connectors.engine import EngineDescriptor

__all__ = ["ENGINE", "PostgresOptions"]


@dataclass(frozen=True)
class PostgresOptions:
    """The ``[source]`` keys of a PostgreSQL source."""

    #: replication slot (None: the trail's recorded one, else derived from the pipeline;
    #: connectors/postgres/ownership.py)
    slot: str | None = None
    #: publication (None: the trail's recorded one, else the slot's name)
    publication: str | None = None

    def problems(self) -> Iterator[tuple[str, str]]:
        from connectors.postgres.ownership import name_problem

        for key in ("slot", "publication"):
            value = getattr(self, key)
            if value is not None:
                problem = name_problem(value)
                if problem is not None:
                    yield key, problem


ENGINE = EngineDescriptor(
    name="postgresql",
    title="PostgreSQL",
    schemes=("postgresql", "postgres"),
    database="connectors.postgres:PostgreSQL",
    dialect="postgres",
    placeholder="%s",
    default_port=5432,
    roles={
        "log_reader": "logical",
        "positions": "positions",
        "snapshot": "snapshot",
        "writer": "writer",
        "bulk": "bulk",
        "types": "types",
        "checksum": "checksum",
        "prepare": "prepare",
    },
    options=PostgresOptions,
    has_log=True,
    keeps_position=True,
    position_scheme="pg-lsn",
    database_scopes_schemas=True,
    ddl_retype_using=True,
)
