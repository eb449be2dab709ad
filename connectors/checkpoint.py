"""Reading apply checkpoints from outside apply: the one place that knows the table's shape.

Apply writes its checkpoint through the target's Writer (``load_checkpoint`` /
``save_checkpoint``, in the same transaction as the data). ``redoline status`` and verify's
wait for apply read it here, over whatever connection they hold, without creating anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.base import Database
from connectors.model import TableId
from connectors.sqlwriter import CHECKPOINT_SCHEMA, CHECKPOINT_TABLE

__all__ = ["Checkpoint", "read_checkpoints"]


@dataclass(frozen=True)
class Checkpoint:
    """One applier's progress on a target."""

    source_id: str
    target_id: str
    #: the last applied operation number (0: nothing yet)
    applied_op: int
    #: the source position of the last applied transaction (None: nothing yet)
    position: str | None
    #: its commit time on the source (naive UTC, or None)
    commit_time: dt.datetime | None


def read_checkpoints(
    target: Database,
    query: Callable[[str], Sequence[Sequence[Any]]],
    source_id: str | None = None,
) -> list[Checkpoint] | None:
    """Every applier's checkpoint on ``target`` (of ``source_id`` only, when given), read
    through ``query``; None when the target holds no checkpoint table (or cannot be read)."""
    table = target.qualified(TableId(CHECKPOINT_SCHEMA, CHECKPOINT_TABLE))
    try:
        rows = query(
            f"SELECT source_id, target_id, applied_op, position, commit_time FROM {table} "
            "ORDER BY source_id, target_id"
        )
    except Exception:  # no such table (each driver says so its own way): nothing replicates
        return None
    return [
        Checkpoint(
            source_id=str(r[0]),
            target_id=str(r[1]),
            applied_op=int(r[2] or 0),
            position=None if r[3] is None else str(r[3]),
            commit_time=r[4],
        )
        for r in rows
        if source_id is None or str(r[0]) == source_id
    ]
