"""Oracle through LogMiner (``oracledb`` thin mode): what the rest of redoline may know
(:mod:`connectors.engine`).

Not yet run against a live server: everything here is tested against a scripted fake of the
documented views (docs/capture-oracle.md lists what a first live run must confirm).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from connectors.engine import EngineDescriptor

__all__ = ["ENGINE", "OracleOptions"]


@dataclass(frozen=True)
class OracleOptions:
    """The ``[source]`` keys of an Oracle source."""

    #: SCNs mined per LogMiner session
    mine_window: int = 100_000
    #: bytes of open transactions held in memory before the largest spills to disk
    spill_bytes: int = 64 * 1024 * 1024
    #: seconds between polls of an idle source
    poll_interval: float = 1.0

    def problems(self) -> Iterator[tuple[str, str]]:
        for key in ("mine_window", "spill_bytes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                yield key, f"must be a positive whole number, not {value!r}"
        if not isinstance(self.poll_interval, int | float) or self.poll_interval <= 0:
            yield "poll_interval", f"must be a positive number, not {self.poll_interval!r}"


ENGINE = EngineDescriptor(
    name="oracle",
    title="Oracle",
    schemes=("oracle",),
    database="connectors.oracle:Oracle",
    dialect="oracle",
    placeholder=":1",
    default_port=1521,
    roles={
        "log_reader": "logminer",
        "positions": "positions",
        "snapshot": "snapshot",
        "prepare": "prepare",
        # verify hashes the rows on this host (checksum.py): no engine SQL digest
        "checksum": "checksum",
    },
    options=OracleOptions,
    has_log=True,
    position_scheme="oracle-scn",
    has_row_ids=True,
)
