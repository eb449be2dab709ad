"""``redoline init`` / ``drop`` for PostgreSQL: the replication slot and the publication.

The engine-neutral entry points (:func:`prepare_source`, :func:`release_source`) return a
:class:`connectors.base.SourceSetup`: fields for ``--json`` and lines for people.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from connectors.base import Database, SourceSetup
from connectors.model import TableId
from connectors.postgres.descriptor import PostgresOptions
from connectors.postgres.ownership import resolve_names
from connectors.postgres.slots import DEFAULT_SLOT_TIMEOUT, drop_slot, init_slot

__all__ = ["prepare_source", "release_source"]


def prepare_source(
    db: Database,
    tables: Sequence[TableId],
    options: PostgresOptions,
    *,
    trail_dir: Path,
    source_id: str,
    timeout: float | None = None,
) -> SourceSetup:
    """Create (or reuse) this trail's slot and a publication listing ``tables``."""
    from connectors.postgres import PostgreSQL

    assert isinstance(db, PostgreSQL)
    setup = init_slot(
        db,
        tables,
        slot=options.slot,
        publication=options.publication,
        trail_dir=trail_dir,
        source_id=source_id,
        timeout=DEFAULT_SLOT_TIMEOUT if timeout is None else timeout,
    )
    slot_verb = "created" if setup.slot_created else "reusing"
    pub_verb = "created" if setup.publication_created else "reusing"
    return SourceSetup(
        fields={
            "slot": setup.slot,
            "slot_created": setup.slot_created,
            "publication": setup.publication,
            "publication_created": setup.publication_created,
            "tables_added": [str(t) for t in setup.tables_added],
            "position": setup.position,
        },
        lines=[
            f"replication slot [bold]{setup.slot}[/]: {slot_verb}, at {setup.position}",
            f"publication [bold]{setup.publication}[/]: {pub_verb}",
            *(f"  + {table}" for table in setup.tables_added),
        ],
    )


def release_source(
    db: Database, options: PostgresOptions, *, trail_dir: Path, source_id: str
) -> SourceSetup:
    """Drop the slot and the publication this trail recorded (others' are left alone)."""
    from connectors.postgres import PostgreSQL

    assert isinstance(db, PostgreSQL)
    names = resolve_names(
        slot=options.slot, publication=options.publication, trail_dir=trail_dir, source_id=source_id
    )
    had_slot, had_pub = drop_slot(
        db,
        slot=names.slot,
        publication=names.publication,
        trail_dir=trail_dir,
        source_id=source_id,
    )
    return SourceSetup(
        fields={
            "slot": names.slot,
            "slot_dropped": had_slot,
            "publication": names.publication,
            "publication_dropped": had_pub,
        },
        lines=[
            f"replication slot {names.slot}: {'dropped' if had_slot else 'did not exist'}",
            f"publication {names.publication}: {'dropped' if had_pub else 'did not exist'}",
        ],
    )
