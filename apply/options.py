"""What an apply run is told (:class:`ApplyOptions`) and what it reports (:class:`ApplyStats`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from connectors.errors import ConfigError
from connectors.model import TableId, TableSchema

__all__ = ["ApplyOptions", "ApplyStats", "SchemaLookup"]

#: (source table, schema version) -> that table's definition (``TrailReader.schema``)
SchemaLookup = Callable[[TableId, int], TableSchema]


@dataclass
class ApplyOptions:
    """How to apply. Snapshot catch-up sets ``collision_until_op``."""

    #: this target's id: the checkpoint row's key and the retention consumer's name
    target_id: str = "default"
    #: the source's id in the checkpoint row (default: the trail's source id)
    source_id: str = "default"
    batch_rows: int = 20_000
    batch_ms: int = 500
    #: collision mode for the whole run
    collision: bool = False
    #: collision mode for transactions that start at or before this operation number only
    collision_until_op: int = 0
    on_error: str = "stop"  # stop | skip
    #: trail directory for rejected transactions (on_error="skip")
    reject_dir: Path | None = None
    skip_ddl: bool = False
    #: N:1: add this column (holding source_id) to every target table and to its key
    source_column: str | None = None
    #: origins whose transactions are not applied: the loop guard of a bidirectional or
    #: cascading topology (``--ignore-origin``, ``[apply] ignore_origins``). None/empty: off,
    #: every transaction is applied (a one-way setup has no loop to guard)
    ignore_origins: frozenset[str] | None = None
    #: source table -> target table (``TablesConfig.target_name``)
    rename: Callable[[TableId], TableId] | None = None
    #: source engine's sqlglot dialect, for DDL translation and same-engine types
    source_dialect: str | None = None
    #: only these source tables (parallel groups); None: all
    table_filter: Callable[[TableId], bool] | None = None
    #: create missing target tables from the trail's definitions
    create_tables: bool = True
    #: the source's changes carry row ids (``Database.has_row_ids``: Oracle ROWID, SQL Server
    #: locator): keyless tables get a surrogate key and a rowid map (:mod:`apply.rowid`)
    row_ids: bool = False
    #: the trail's identity (its header); the target's checkpoint is bound to it, and another
    #: trail is refused (:meth:`Applier.start`). "" : a format-1 trail, not checked
    trail_id: str = ""
    #: accept a different trail than the checkpoint's: apply it from its first operation
    adopt_trail: bool = False
    #: delayed replica: seconds a transaction's source commit time must be older than before
    #: it is applied (``[apply] delay``, ``--delay``; :func:`apply.point.delayed`). 0: none
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.on_error not in ("stop", "skip"):
            raise ConfigError(f"on_error must be stop or skip, not {self.on_error!r}")
        if self.delay < 0:
            raise ConfigError("the apply delay must not be negative")
        if self.on_error == "skip" and self.reject_dir is None:
            raise ConfigError(
                "on_error = skip needs a reject file (a trail directory)",
                hint="--reject-file DIR or [apply] reject_file",
            )


@dataclass
class ApplyStats:
    """What a run did (printed by ``redoline apply --json``)."""

    transactions: int = 0
    changes: int = 0
    groups: int = 0
    collisions: int = 0
    rejected_transactions: int = 0
    skipped_origin: int = 0
    ddl_applied: int = 0
    ddl_skipped: int = 0
    replayed_groups: int = 0
    first_op: int = 0
    applied_op: int = 0
    position: str | None = None
    last_commit_time: dt.datetime | None = None
    seconds: float = 0.0
    reject_dir: str | None = None
    tables_created: list[str] = field(default_factory=list)
    #: delayed replica: the first transaction the delay held back when the run ended (0: none)
    delay_held_op: int = 0
    delay_held_commit_time: dt.datetime | None = None

    @property
    def changes_per_second(self) -> float:
        return self.changes / self.seconds if self.seconds > 0 else 0.0

    @property
    def skipped_everything(self) -> bool:
        """Every transaction this run read was skipped by the loop guard (none applied)."""
        return self.skipped_origin > 0 and self.skipped_origin >= self.transactions
