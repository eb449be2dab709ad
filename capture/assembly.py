"""Transaction assembly: interleaved log events in, committed transactions out.

A source log interleaves the changes of concurrent transactions and also carries changes of
transactions that roll back. :class:`TransactionAssembler` groups changes per source
transaction id and hands out a transaction only at its commit, in commit order (the order the
commits are fed in); rolled-back transactions vanish. It is engine-neutral: connectors call
``begin``/``change``/``commit``/``rollback`` as their log dictates.

Memory is bounded: when the changes held for open transactions exceed ``memory_bytes``
(estimated), the largest open transaction is spilled to a temporary file, and from then on its
changes go straight to that file. At commit it comes out as a :class:`SpilledTransaction`,
which streams its changes back from disk; :meth:`capture.trail.TrailWriter.append` takes
either kind, so a transaction larger than memory is never materialised.

Operation numbers are assigned at commit when the assembler is given ``next_op``; otherwise
the transaction leaves with ``first_op == 0`` and the trail writer numbers it.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from capture import codec
from connectors.model import Change, Row, Transaction

__all__ = ["SpilledTransaction", "TransactionAssembler"]

_PER_CHANGE = 120  # object overhead of a Change and its dicts, roughly
_PER_VALUE = 56


def _estimate(change: Change) -> int:
    """A cheap estimate of the memory a change holds (exactness is not needed, speed is)."""
    size = _PER_CHANGE
    row: Row | None
    for row in (change.key, change.before, change.after):
        if row:
            size += _PER_VALUE * len(row)
            for value in row.values():
                if type(value) is str or type(value) is bytes:
                    size += len(value)
    if change.ddl:
        size += len(change.ddl)
    return size


class _Spill:
    """An open transaction's changes on disk."""

    def __init__(self, directory: Path | None) -> None:
        fd, name = tempfile.mkstemp(prefix="redoline-txn-", suffix=".spill", dir=directory)
        self.path = Path(name)
        self.file: IO[bytes] = os.fdopen(fd, "wb", buffering=1 << 20)
        self.count = 0
        self._packer = codec.make_packer()
        self.finalizer = weakref.finalize(self, _remove, self.path)

    def write(self, change: Change) -> None:
        self.file.write(self._packer.pack(codec.encode_change(change)))
        self.count += 1


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


class SpilledTransaction:
    """A committed transaction whose changes live in a temporary file.

    Same header fields as :class:`Transaction`; ``change_count`` instead of ``len(changes)``;
    :meth:`iter_changes` streams the changes (it may be called more than once). Call
    :meth:`close` (or use it as a context manager) once it is written; the file is also
    removed when the object is garbage-collected.
    """

    def __init__(
        self,
        xid: str,
        position: str,
        commit_time: dt.datetime,
        origin: str,
        spill: _Spill,
        first_op: int = 0,
    ) -> None:
        self.xid = xid
        self.position = position
        self.commit_time = commit_time
        self.origin = origin
        self.first_op = first_op
        self.change_count = spill.count
        self.path = spill.path
        self._spill = spill  # keeps the file alive: its finalizer removes it
        self._finalizer = spill.finalizer

    @property
    def last_op(self) -> int:
        return self.first_op + self.change_count - 1

    def iter_changes(self) -> Iterator[Change]:
        """The changes in log order, read back from disk."""
        decoder = codec.ChangeDecoder()
        with open(self.path, "rb") as f:
            unpacker = codec.make_unpacker()
            while chunk := f.read(1 << 20):
                unpacker.feed(chunk)
                for record in unpacker:
                    yield decoder.change(record)

    def load(self) -> Transaction:
        """The whole transaction in memory (for small consumers and tests)."""
        return Transaction(
            self.xid,
            self.position,
            self.commit_time,
            self.origin,
            list(self.iter_changes()),
            self.first_op,
        )

    def close(self) -> None:
        """Remove the temporary file."""
        self._finalizer()

    def __enter__(self) -> SpilledTransaction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Open:
    __slots__ = ("changes", "size", "spill")

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.size = 0
        self.spill: _Spill | None = None


class TransactionAssembler:
    """Groups interleaved changes per source transaction; emits committed ones at commit.

    ``memory_bytes`` bounds the (estimated) memory held by open transactions; above it the
    largest one spills to a file in ``spill_dir`` (default: the system temp directory).
    ``next_op``, when given, is the operation number of the next change to be emitted.
    """

    def __init__(
        self,
        *,
        memory_bytes: int = 64 * 1024 * 1024,
        spill_dir: Path | None = None,
        next_op: int | None = None,
    ) -> None:
        self.memory_bytes = memory_bytes
        self.spill_dir = spill_dir
        self.next_op = next_op
        self._open: dict[str, _Open] = {}
        self._held = 0

    @property
    def open_xids(self) -> list[str]:
        """Source transaction ids begun and neither committed nor rolled back."""
        return list(self._open)

    @property
    def held_bytes(self) -> int:
        """Estimated bytes of changes held in memory."""
        return self._held

    def begin(self, xid: str) -> None:
        """A transaction starts (optional: a change for an unknown xid begins it)."""
        self._open.setdefault(xid, _Open())

    def change(self, xid: str, change: Change, size: int | None = None) -> None:
        """A change of transaction ``xid``, in log order.

        ``size``, when the reader knows it, is the change's size in the source's log format
        (:attr:`connectors.log.RowEvent.size`): the memory estimate then counts values
        instead of visiting each (a third of the assembler's cost per change otherwise).
        """
        txn = self._open.get(xid)
        if txn is None:
            txn = self._open[xid] = _Open()
        if txn.spill is not None:
            txn.spill.write(change)
            return
        txn.changes.append(change)
        if size is None:
            size = _estimate(change)
        else:
            # the log holds every value's payload (text or binary) once per image, so it
            # bounds the strings and bytes the values keep; the rest is per-value overhead
            n = 0
            if change.key:
                n = len(change.key)
            if change.before:
                n += len(change.before)
            if change.after:
                n += len(change.after)
            size += _PER_CHANGE + _PER_VALUE * n
        txn.size += size
        self._held += size
        if self._held > self.memory_bytes:
            self._spill_largest()

    def commit(
        self, xid: str, *, position: str, commit_time: dt.datetime, origin: str
    ) -> Transaction | SpilledTransaction:
        """Transaction ``xid`` committed at ``position``: return it, ready for the trail.

        A transaction with no changes (or never seen) comes out empty; callers may skip it.
        """
        txn = self._open.pop(xid, None) or _Open()
        self._held -= txn.size
        first_op = 0
        count = txn.spill.count if txn.spill is not None else len(txn.changes)
        if self.next_op is not None:
            first_op = self.next_op
            self.next_op += count
        if txn.spill is not None:
            txn.spill.file.close()
            return SpilledTransaction(xid, position, commit_time, origin, txn.spill, first_op)
        return Transaction(xid, position, commit_time, origin, txn.changes, first_op)

    def rollback(self, xid: str) -> None:
        """Transaction ``xid`` rolled back: forget it."""
        txn = self._open.pop(xid, None)
        if txn is None:
            return
        self._held -= txn.size
        if txn.spill is not None:
            txn.spill.file.close()
            txn.spill.finalizer()

    def close(self) -> None:
        """Drop every open transaction (e.g. capture stops; the log will be re-read)."""
        for xid in list(self._open):
            self.rollback(xid)

    def _spill_largest(self) -> None:
        _xid, txn = max(
            ((x, t) for x, t in self._open.items() if t.spill is None),
            key=lambda item: item[1].size,
        )
        spill = _Spill(self.spill_dir)
        for change in txn.changes:
            spill.write(change)
        txn.spill = spill
        txn.changes = []
        self._held -= txn.size
        txn.size = 0
