"""MySQL/MariaDB log positions: what they look like as strings and how they are ordered.

A position names the point just after a committed transaction (the place to resume from)::

    0-1-57@mysql-bin.000003:1234                      MariaDB: GTID state @ file:pos
    0-1-57,1-2-9@mysql-bin.000003:1234                MariaDB with two GTID domains
    3E11FA47-71CA-11E1-9E33-C80AA9429562:1-57@binlog.000003:1234    MySQL 8: GTID set
    mysql-bin.000003:1234                             no GTIDs (file:pos only)

The GTID part is the *whole* state to resume from: on MariaDB the last GTID of every domain
(the form of ``@@gtid_binlog_pos``, usable as ``@slave_connect_state``), on MySQL the executed
GTID set (usable with ``COM_BINLOG_DUMP_GTID``). ``file:pos`` is the end of the commit event
in the server's binlog, so positions from one server are totally ordered by
(file sequence number, offset) — that is what :func:`compare` uses. After a failover to a
replica the files differ and only the GTID part is meaningful; :func:`compare` then orders by
MariaDB sequence numbers per domain (MySQL GTID sets by inclusion).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["BinlogPosition", "compare"]

_FILE = re.compile(r"^(.*?)(\d+)$")


@dataclass(frozen=True, slots=True)
class BinlogPosition:
    """A parsed position: the GTID state (may be empty) and the binlog file and offset."""

    gtid: str
    file: str
    pos: int

    def __str__(self) -> str:
        where = f"{self.file}:{self.pos}"
        return f"{self.gtid}@{where}" if self.gtid else where

    @classmethod
    def parse(cls, text: str) -> BinlogPosition:
        gtid, _, where = text.rpartition("@")
        file, sep, pos = where.rpartition(":")
        if not sep or not file or not pos.isdigit():
            raise ValueError(
                f"{text!r} is not a MySQL/MariaDB position (gtid@file:pos or file:pos)"
            )
        return cls(gtid.strip(), file, int(pos))

    @property
    def file_key(self) -> tuple[str, int]:
        """(base name, sequence number) of the binlog file, for ordering."""
        m = _FILE.match(self.file)
        return (m.group(1), int(m.group(2))) if m else (self.file, 0)

    def mariadb_domains(self) -> dict[int, tuple[int, int]]:
        """MariaDB GTID state as domain -> (server_id, seq); empty for MySQL or no GTID."""
        out: dict[int, tuple[int, int]] = {}
        for part in filter(None, (p.strip() for p in self.gtid.split(","))):
            pieces = part.split("-")
            if len(pieces) != 3 or not all(p.isdigit() for p in pieces):
                return {}
            out[int(pieces[0])] = (int(pieces[1]), int(pieces[2]))
        return out


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as position ``a`` is before, equal to, or after ``b``."""
    pa, pb = BinlogPosition.parse(a), BinlogPosition.parse(b)
    if pa.file_key[0] == pb.file_key[0]:
        ka, kb = (pa.file_key[1], pa.pos), (pb.file_key[1], pb.pos)
        return (ka > kb) - (ka < kb)
    da, db = pa.mariadb_domains(), pb.mariadb_domains()
    if da and db:
        sa = tuple(da.get(d, (0, 0))[1] for d in sorted(set(da) | set(db)))
        sb = tuple(db.get(d, (0, 0))[1] for d in sorted(set(da) | set(db)))
        if sa == sb:
            return 0
        return -1 if all(x <= y for x, y in zip(sa, sb, strict=True)) else 1
    raise ValueError(
        f"positions {a!r} and {b!r} come from different binlog series and carry no MariaDB "
        "GTID state to order them by"
    )
