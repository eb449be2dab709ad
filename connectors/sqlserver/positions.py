"""SQL Server log positions: a commit LSN and the sequence value of a change inside it.

CDC names every change by ``__$start_lsn`` (the commit LSN of its transaction, shared by all
its changes) and ``__$seqval`` (its place inside the transaction), both ``binary(10)``.
Compared as bytes, big-endian, they order the same as the integers they spell, so a position
is written as two 20-digit hex numbers::

    0000002a000001e80003:0000002a000001e00002      commit LSN : seqval

A transaction's commit position is its commit LSN and the seqval of its last change; a point
that is not a change (a trail start, a snapshot's bounds) has seqval ``ffff...``: everything
committed at or before that LSN is behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_SEQ", "Lsn", "Position", "compare", "lsn_from_text"]

#: the seqval of a point after every change of its commit LSN
MAX_SEQ: Final = (1 << 80) - 1


@dataclass(frozen=True, slots=True, order=True)
class Lsn:
    """A ``binary(10)`` log sequence number (virtual log file, block, slot)."""

    value: int

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray | None) -> Lsn | None:
        """The LSN of a ``binary(10)`` column (None or all zero bytes: none)."""
        if raw is None:
            return None
        n = int.from_bytes(bytes(raw), "big")
        return cls(n) if n else None

    def to_bytes(self) -> bytes:
        return self.value.to_bytes(10, "big")

    def next(self) -> Lsn:
        """The smallest LSN after this one (``sys.fn_cdc_increment_lsn``)."""
        return Lsn(self.value + 1)

    def previous(self) -> Lsn:
        """The largest LSN before this one (``sys.fn_cdc_decrement_lsn``)."""
        return Lsn(self.value - 1)

    def __str__(self) -> str:
        return f"{self.value:020x}"


def lsn_from_text(text: str) -> Lsn:
    """An LSN from SQL Server's text forms: ``0x0000002A000001E80003`` (a binary literal) or
    ``0000002a:000001e8:0003`` (log views such as ``sys.dm_db_log_stats``, hex parts)."""
    t = text.strip()
    if t.lower().startswith("0x"):
        return Lsn(int(t[2:], 16))
    parts = t.split(":")
    if len(parts) == 3:
        vlf, block, slot = (int(p, 16) for p in parts)
        return Lsn((vlf << 48) | (block << 16) | slot)
    if len(t) == 20:
        return Lsn(int(t, 16))
    raise ValueError(f"{text!r} is not a SQL Server LSN")


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """(commit LSN, seqval): the point just after a change, or after a whole commit LSN."""

    lsn: Lsn
    seqval: int = MAX_SEQ

    def __str__(self) -> str:
        return f"{self.lsn}:{self.seqval:020x}"

    @classmethod
    def parse(cls, text: str) -> Position:
        lsn, sep, seq = text.strip().partition(":")
        if not sep or len(lsn) != 20 or len(seq) != 20:
            raise ValueError(
                f"{text!r} is not a SQL Server position (20 hex digits, ':', 20 hex digits)"
            )
        try:
            return cls(Lsn(int(lsn, 16)), int(seq, 16))
        except ValueError:
            raise ValueError(f"{text!r} is not a SQL Server position (hex digits)") from None

    @property
    def whole(self) -> bool:
        """Past every change of its commit LSN (not inside a transaction)."""
        return self.seqval == MAX_SEQ


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as position ``a`` is before, equal to, or after ``b``."""
    x, y = Position.parse(a), Position.parse(b)
    return (x > y) - (x < y)
