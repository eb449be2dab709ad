"""What a connector's log reader hands to capture: engine-neutral log events.

A source connector turns its engine's log (binlog, pgoutput, LogMiner, CDC tables) into this
stream. Capture (``capture/``) never looks behind it: it feeds the events to the transaction
assembler, writes committed transactions to the trail, and tells the reader when the trail is
durable up to a position (so PostgreSQL can confirm its slot).

Ordering contract: events come in log order. ``Begin``/``RowEvent``/``Commit`` of different
transactions may interleave (Oracle); binlog and pgoutput deliver each transaction whole.
Every ``Commit`` carries the commit position, and positions of successive commits increase.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from connectors.model import Change

__all__ = [
    "Begin",
    "Commit",
    "Heartbeat",
    "LogEvent",
    "LogReader",
    "Rollback",
    "RowEvent",
]


@dataclass(slots=True)
class Begin:
    """A source transaction starts."""

    xid: str


@dataclass(slots=True)
class RowEvent:
    """One change (row, truncate or DDL/schema announcement) inside transaction ``xid``."""

    xid: str
    change: Change
    #: the change's size in the source's log format, when the reader has it at no cost:
    #: capture then bounds memory from it instead of visiting every value
    size: int | None = None


@dataclass(slots=True)
class Commit:
    """Transaction ``xid`` committed at ``position`` (the position to resume *after*)."""

    xid: str
    position: str
    commit_time: dt.datetime
    #: the origin the source recorded for this transaction (loop prevention), if any
    origin: str | None = None


@dataclass(slots=True)
class Rollback:
    """Transaction ``xid`` rolled back: drop everything seen for it."""

    xid: str


@dataclass(slots=True)
class Heartbeat:
    """The log advanced to ``position`` with nothing to capture (filtered or idle).

    Capture may confirm such a position to the source (PostgreSQL slot advance) once every
    earlier transaction is durable; ``caught_up`` is True when the reader has reached the
    source's end position as measured when it started (for ``--until-caught-up``).
    """

    position: str
    caught_up: bool = False
    source_time: dt.datetime | None = None


LogEvent = Begin | RowEvent | Commit | Rollback | Heartbeat


class LogReader(Protocol):
    """Reads one source's log from a position. Returned by ``Database.open_log``."""

    def events(self) -> Iterator[LogEvent]:
        """Log events in order, from just after the start position, until :meth:`stop` or,
        when opened with ``until_caught_up``, until the end position taken at open time
        (the reader then yields a final ``Heartbeat(caught_up=True)`` and returns)."""
        ...

    def confirm(self, position: str) -> None:
        """Everything up to and including ``position`` is durable in the trail."""
        ...

    def stop(self) -> None:
        """Ask :meth:`events` to return after the current transaction (signal-safe)."""
        ...

    def close(self) -> None: ...
