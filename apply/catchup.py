"""Catch-up after a snapshot: the trail as the applier must take it (:mod:`apply.snapshot`).

A change to a snapshotted table from a transaction at or before the table's start position is
already in the snapshot and is dropped; transactions up to the latest end position are applied
in collision mode; after that, normal apply. A snapshot of every configured table records its
point as the *scope*: row changes at or before it to a table it did not load are dropped too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from connectors.model import Change, Op, TableId, Transaction

if TYPE_CHECKING:
    from apply.snapshot import TableState

__all__ = ["TableWindow", "catchup_transactions", "table_windows"]


@dataclass(frozen=True)
class TableWindow:
    """A snapshotted table's positions: skip at or before ``start``, collide up to ``end``."""

    start: str
    end: str


def table_windows(states: Iterable[TableState]) -> dict[TableId, TableWindow]:
    """Source table -> its catch-up window, for every loaded table."""
    out = {}
    for s in states:
        if s.state == "loaded" and s.start_position and s.end_position:
            out[TableId.parse(s.source_table)] = TableWindow(s.start_position, s.end_position)
    return out


def catchup_transactions(
    transactions: Iterable[Transaction | None],
    windows: dict[TableId, TableWindow],
    compare: Callable[[str, str], int],
    on_window: Callable[[Transaction], None],
    scope: TableWindow | None = None,
) -> Iterator[Transaction | None]:
    """The trail as catch-up must apply it (see the module doc).

    Drops changes to a snapshotted table from transactions at or before its start position,
    and calls ``on_window(txn)`` for each transaction at or before the latest end position of
    the tables whose start and end differ, which the caller uses to keep the applier in
    collision mode (``ApplyOptions.collision_until_op = txn.first_op``). ``None`` items pass
    through. With ``scope`` (:func:`load_snapshot_scope`), row changes at or before its start
    to a table without a window are dropped too: that table did not exist at the snapshot.
    """

    def latest(ends: list[str]) -> str | None:
        out = ends[0] if ends else None
        for end in ends[1:]:
            if compare(end, out or end) > 0:
                out = end
        return out

    # past the latest end nothing is dropped any more
    last = latest([w.end for w in windows.values()] + ([scope.start] if scope else []))
    # an exact point (start == end: MariaDB's, PostgreSQL's exported snapshots) decides every
    # change by its position alone; only a window between two points needs collision mode,
    # which cannot tell whether a keyless row is already there
    collide = latest([w.end for w in windows.values() if compare(w.start, w.end) < 0])
    for txn in transactions:
        if txn is None or last is None:
            yield txn
            continue
        if compare(txn.position, last) > 0:
            last = None  # past every window: from here on, plain apply
            yield txn
            continue
        kept = []
        held: set[str] = set()  # DDL statements the snapshot holds the effect of
        for change in txn.changes:
            window = windows.get(change.table)
            if window is not None and compare(txn.position, window.start) <= 0:
                if change.op is Op.DDL and change.ddl:
                    held.add(change.ddl)
                continue  # already in the snapshot
            if (
                window is None
                and scope is not None
                and change.op is not Op.DDL
                and compare(txn.position, scope.start) <= 0
            ):
                continue  # the table did not exist at the snapshot's point
            kept.append(change)
        if held:
            # `RENAME TABLE a TO b` where the snapshot loaded b: a's rows are b's, and a was
            # gone when the snapshot read; a (created on the target by earlier trail changes,
            # or by an earlier run) goes rather than being renamed onto the loaded b
            kept = [
                Change(Op.DDL, c.table, c.schema_version)
                if c.op is Op.DDL and c.ddl in held and c.table_schema is None
                else c
                for c in kept
            ]
        if len(kept) != len(txn.changes):
            # keep last_op (the checkpoint) exact: the kept changes end where the txn ended
            txn = dataclasses.replace(txn, changes=kept, first_op=txn.last_op - len(kept) + 1)
        if collide is not None and compare(txn.position, collide) <= 0:
            on_window(txn)
        yield txn
