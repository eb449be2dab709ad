"""Open transactions as LogMiner shows them, held until their COMMIT or ROLLBACK row.

LogMiner without COMMITTED_DATA_ONLY returns every redo record as it was written: the changes
of concurrent transactions interleave, and a transaction that rolls back (whole, to a
savepoint, or one failed statement) shows its undone changes again as compensating rows with
``ROLLBACK = 1`` (Oracle Database Reference, V$LOGMNR_CONTENTS). A :class:`TxBuffer` keeps each
open transaction's records in log order; a compensating row cancels the latest change of the
same row (same table and ROWID) not yet cancelled, since undo runs newest first. Records stay
raw (SQL text) until the commit: a rolled-back transaction is never parsed.

Memory is bounded: above ``spill_bytes`` the largest open transaction moves to a temporary
file; only a small index (table and ROWID per record, for cancellation) stays in memory.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NamedTuple

__all__ = ["Record", "TxBuffer"]


class Record(NamedTuple):
    """One V$LOGMNR_CONTENTS row (continuation rows already joined)."""

    scn: int
    op: int
    rollback: bool
    owner: str
    table: str
    row_id: str
    sql: str
    rs_id: str
    ssn: int
    status: int = 0
    info: str = ""


#: operations a compensating row can cancel (row changes and the LOB pieces of one)
_DATA_OPS = frozenset({1, 2, 3})


@dataclass
class _Open:
    first_scn: int
    records: list[Record] = field(default_factory=list)
    size: int = 0
    #: spilled: the file, and per record (owner, table, row_id, op) for cancellation
    file: IO[bytes] | None = None
    path: Path | None = None
    index: list[tuple[str, str, str, int]] = field(default_factory=list)
    cancelled: set[int] = field(default_factory=set)

    def count(self) -> int:
        return len(self.index) if self.file is not None else len(self.records)


class TxBuffer:
    """Open transactions by xid (module doc)."""

    def __init__(self, spill_bytes: int, spill_dir: Path | None = None) -> None:
        self.spill_bytes = spill_bytes
        self.spill_dir = spill_dir
        self._open: dict[str, _Open] = {}
        self._held = 0
        self.spills = 0

    def __contains__(self, xid: str) -> bool:
        return xid in self._open

    def oldest_scn(self) -> int | None:
        """The first SCN of any open transaction's records (where mining must restart)."""
        return min((t.first_scn for t in self._open.values()), default=None)

    def first_scn(self, xid: str) -> int | None:
        """The SCN of the first record held for ``xid`` (None: nothing held)."""
        txn = self._open.get(xid)
        return None if txn is None else txn.first_scn

    def add(self, xid: str, rec: Record) -> None:
        txn = self._open.get(xid)
        if txn is None:
            txn = self._open[xid] = _Open(rec.scn)
        elif rec.scn < txn.first_scn:
            txn.first_scn = rec.scn  # RAC threads merged by SCN: not strictly ordered rows
        if rec.rollback and rec.op in _DATA_OPS:
            self._cancel(txn, rec)
            return
        if txn.file is not None:
            pickle.dump(rec, txn.file, protocol=pickle.HIGHEST_PROTOCOL)
            txn.index.append((rec.owner, rec.table, rec.row_id, rec.op))
            return
        size = 120 + len(rec.sql)
        txn.records.append(rec)
        txn.size += size
        self._held += size
        if self._held > self.spill_bytes:
            self._spill_largest()

    def _cancel(self, txn: _Open, rec: Record) -> None:
        """Drop the latest live change of the row ``rec`` undoes (none: nothing held)."""
        if txn.file is not None:
            for i in range(len(txn.index) - 1, -1, -1):
                owner, table, row_id, op = txn.index[i]
                if i in txn.cancelled or op not in _DATA_OPS:
                    continue
                if (owner, table, row_id) == (rec.owner, rec.table, rec.row_id):
                    txn.cancelled.add(i)
                    return
            return
        for i in range(len(txn.records) - 1, -1, -1):
            r = txn.records[i]
            if r.op in _DATA_OPS and (r.owner, r.table, r.row_id) == (
                rec.owner,
                rec.table,
                rec.row_id,
            ):
                del txn.records[i]
                size = 120 + len(r.sql)
                txn.size -= size
                self._held -= size
                return

    def _spill_largest(self) -> None:
        _xid, txn = max(
            ((x, t) for x, t in self._open.items() if t.file is None), key=lambda i: i[1].size
        )
        fd, name = tempfile.mkstemp(prefix="redoline-oracle-", suffix=".spill", dir=self.spill_dir)
        txn.file = os.fdopen(fd, "wb", buffering=1 << 20)
        txn.path = Path(name)
        for rec in txn.records:
            pickle.dump(rec, txn.file, protocol=pickle.HIGHEST_PROTOCOL)
            txn.index.append((rec.owner, rec.table, rec.row_id, rec.op))
        self._held -= txn.size
        txn.records, txn.size = [], 0
        self.spills += 1

    def pop(self, xid: str) -> Iterator[Record]:
        """The committed transaction's live records, in log order (from disk if spilled)."""
        txn = self._open.pop(xid, None)
        if txn is None:
            return iter(())
        self._held -= txn.size
        if txn.file is None:
            return iter(txn.records)
        return self._replay(txn)

    @staticmethod
    def _replay(txn: _Open) -> Iterator[Record]:
        assert txn.file is not None and txn.path is not None
        txn.file.close()
        try:
            with open(txn.path, "rb") as f:
                for i in range(len(txn.index)):
                    rec = pickle.load(f)
                    if i not in txn.cancelled:
                        yield rec
        finally:
            txn.path.unlink(missing_ok=True)

    def drop(self, xid: str) -> None:
        """The transaction rolled back (or is already in the trail): forget it."""
        txn = self._open.pop(xid, None)
        if txn is None:
            return
        self._held -= txn.size
        if txn.file is not None and txn.path is not None:
            txn.file.close()
            txn.path.unlink(missing_ok=True)

    def close(self) -> None:
        for xid in list(self._open):
            self.drop(xid)
