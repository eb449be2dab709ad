"""Oracle positions: where a commit stands in the redo, and where mining must restart.

A position names the point just after a committed transaction::

    8812345.1.42.1b2.10.0@8812001     commit SCN . thread . redo sequence . block . offset .
                                      SSN  @ restart SCN
    8812345@8812001                   every commit at or before SCN 8812345 (a snapshot point,
                                      a trail start, an idle heartbeat)

The commit record's place in the redo (thread, and the ``RS_ID`` of its redo record: log
sequence, block, byte offset; with the ``SSN``) orders commits that share an SCN, which
happens on RAC where each instance writes its own thread. The restart SCN is the first SCN
holding a change of a transaction still open at that point: resuming mines from there and
drops every transaction whose commit is at or before the position, so nothing is lost and
nothing repeated. It does not take part in the order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["OraclePosition", "compare", "parse_rs_id"]

_RS_ID = re.compile(r"^\s*0x([0-9a-fA-F]+)\.([0-9a-fA-F]+)\.([0-9a-fA-F]+)\s*$")


def parse_rs_id(rs_id: str) -> tuple[int, int, int]:
    """``' 0x00002a.000001b2.0010 '`` -> (log sequence, block, byte offset)."""
    m = _RS_ID.match(rs_id or "")
    if not m:
        raise ValueError(f"{rs_id!r} is not a LogMiner RS_ID (0xSEQ.BLOCK.OFFSET)")
    return int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16)


@dataclass(frozen=True, slots=True)
class OraclePosition:
    """A parsed position (module doc). ``record`` is None for "all of SCN ``scn``"."""

    scn: int
    restart: int
    #: (thread, sequence, block, offset, ssn) of the commit record
    record: tuple[int, int, int, int, int] | None = None

    def __str__(self) -> str:
        if self.record is None:
            return f"{self.scn}@{self.restart}"
        t, seq, blk, off, ssn = self.record
        return f"{self.scn}.{t}.{seq}.{blk:x}.{off:x}.{ssn}@{self.restart}"

    @property
    def key(self) -> tuple[int, ...]:
        """The order: SCN, then the commit record's place; "all of SCN" after every record."""
        if self.record is None:
            return (self.scn, 1)
        return (self.scn, 0, *self.record)

    @classmethod
    def parse(cls, text: str) -> OraclePosition:
        head, sep, restart = text.partition("@")
        parts = head.split(".")
        try:
            if not sep:
                raise ValueError
            scn = int(parts[0])
            if len(parts) == 1:
                return cls(scn, int(restart))
            if len(parts) != 6:
                raise ValueError
            t, seq, ssn = int(parts[1]), int(parts[2]), int(parts[5])
            blk, off = int(parts[3], 16), int(parts[4], 16)
            return cls(scn, int(restart), (t, seq, blk, off, ssn))
        except ValueError:
            raise ValueError(
                f"{text!r} is not an Oracle position (SCN@RESTART or "
                "SCN.THREAD.SEQUENCE.BLOCK.OFFSET.SSN@RESTART)"
            ) from None

    @classmethod
    def at_scn(cls, scn: int, restart: int | None = None) -> OraclePosition:
        return cls(scn, scn + 1 if restart is None else restart)


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as position ``a`` is before, equal to, or after ``b``."""
    ka, kb = OraclePosition.parse(a).key, OraclePosition.parse(b).key
    return (ka > kb) - (ka < kb)
