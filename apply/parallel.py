"""Opt-in parallel apply by table groups (docs/apply.md: Parallel apply and consistency).

The trail is applied by N independent appliers, each with its own connection, its own
checkpoint row (``<target id>#<i>/<N>``) and its own slice of the tables. Tables linked by a
foreign key on the target are kept in one group so a child row never arrives before its
parent. What is given up: a source transaction that touches tables of two groups is
committed on the target as two transactions, at different moments; and a reader of the
target can see group A ahead of group B. Each group on its own stays exactly-once and in
source order.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from apply.options import ApplyOptions, ApplyStats
from apply.trail_apply import apply_trail, register_target
from connectors.base import Database
from connectors.model import TableId

__all__ = ["TableGroups", "apply_parallel"]


class TableGroups:
    """Assigns tables to ``n`` groups: FK-connected tables together, others by name hash."""

    def __init__(self, n: int, fk_pairs: Iterable[tuple[TableId, TableId]] = ()) -> None:
        self.n = max(1, n)
        self._parent: dict[TableId, TableId] = {}
        for a, b in fk_pairs:
            self._union(a, b)

    def _find(self, t: TableId) -> TableId:
        parent = self._parent.setdefault(t, t)
        if parent != t:
            parent = self._find(parent)
            self._parent[t] = parent
        return parent

    def _union(self, a: TableId, b: TableId) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            # the smaller name is the root, so the assignment does not depend on pair order
            lo, hi = sorted((ra, rb))
            self._parent[hi] = lo

    def group(self, table: TableId) -> int:
        """The group of ``table`` (stable across runs for the same FK graph and ``n``)."""
        root = self._find(table)
        return zlib.crc32(str(root).encode()) % self.n


def apply_parallel(
    database: Database,
    trail_dir: Path,
    options: ApplyOptions,
    n: int,
    *,
    key: bytes | None = None,
    follow: bool = False,
    stop: Callable[[], bool] | None = None,
) -> list[ApplyStats]:
    """Run ``n`` appliers over the trail in threads, one table group each.

    Retention sees one consumer for the target (:func:`apply.trail_apply.consumer_name`): the
    slowest group's progress, registered once every group has reported its start.
    """
    probe = database.open_writer()
    try:
        fk_pairs: list[tuple[TableId, TableId]] = getattr(probe, "foreign_key_pairs", lambda: [])()
        probe.commit()
    finally:
        probe.close()
    groups = TableGroups(n, fk_pairs)
    rename = options.rename or (lambda t: t)
    results: list[ApplyStats | None] = [None] * n
    errors: list[BaseException] = []
    failed = threading.Event()

    def should_stop() -> bool:
        return failed.is_set() or (stop is not None and stop())

    applied: list[int | None] = [None] * n
    progress_lock = threading.Lock()

    def progress(i: int, op: int) -> None:
        with progress_lock:
            applied[i] = op
            done = [a for a in applied if a is not None]
            if len(done) == n:
                register_target(trail_dir, options.target_id, min(done))

    def worker(i: int) -> None:
        opts = replace(
            options,
            target_id=f"{options.target_id}#{i}/{n}",
            table_filter=lambda t, i=i: groups.group(rename(t)) == i,  # type: ignore[misc]
        )
        writer = database.open_writer()
        try:
            results[i] = apply_trail(
                writer,
                trail_dir,
                opts,
                key=key,
                follow=follow,
                stop=should_stop,
                progress=lambda op, i=i: progress(i, op),  # type: ignore[misc]
            )
        except BaseException as exc:
            errors.append(exc)
            failed.set()
        finally:
            writer.close()

    threads = [threading.Thread(target=worker, args=(i,), name=f"apply-{i}") for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]
