"""Which redo logs cover an SCN range, per thread, and the gap check.

For each redo thread (one per RAC instance, ``V$THREAD``) the logs overlapping the range come
from ``V$ARCHIVED_LOG`` (available copies of the current incarnation, one per sequence
whatever the destinations) and, for sequences not archived yet, from ``V$LOG``/``V$LOGFILE``
(the online groups). Their sequence numbers must follow each other without a hole from the
log holding the range's first SCN to the one holding its last: a missing sequence is a
terminal error naming the thread, the sequence and the SCNs it held, never a silent skip.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Final

from connectors.errors import ReplicationError
from connectors.oracle.session import Session

__all__ = ["LogFile", "logs_for_range"]

ARCHIVED_SQL: Final = (
    "SELECT NAME, THREAD#, SEQUENCE#, FIRST_CHANGE#, NEXT_CHANGE# FROM V$ARCHIVED_LOG "
    "WHERE STATUS = 'A' AND DELETED = 'NO' AND STANDBY_DEST = 'NO' AND NAME IS NOT NULL "
    "AND NEXT_CHANGE# > :lo AND FIRST_CHANGE# <= :hi "
    "AND RESETLOGS_CHANGE# = (SELECT RESETLOGS_CHANGE# FROM V$DATABASE) "
    "ORDER BY THREAD#, SEQUENCE#, DEST_ID"
)
ONLINE_SQL: Final = (
    "SELECT f.MEMBER, l.THREAD#, l.SEQUENCE#, l.FIRST_CHANGE#, l.NEXT_CHANGE#, l.STATUS "
    "FROM V$LOG l JOIN V$LOGFILE f ON f.GROUP# = l.GROUP# "
    "WHERE l.STATUS IN ('CURRENT', 'ACTIVE', 'INACTIVE') AND (f.STATUS IS NULL OR "
    "f.STATUS <> 'INVALID') AND l.NEXT_CHANGE# > :lo AND l.FIRST_CHANGE# <= :hi "
    "ORDER BY l.THREAD#, l.SEQUENCE#, f.MEMBER"
)
THREADS_SQL: Final = "SELECT THREAD#, ENABLE_CHANGE# FROM V$THREAD WHERE ENABLED <> 'DISABLED'"


@dataclass(frozen=True)
class LogFile:
    name: str
    thread: int
    sequence: int
    first_scn: int
    next_scn: int
    online: bool
    #: the thread's CURRENT online log (its NEXT_CHANGE# is not an end yet)
    current: bool = False


def logs_for_range(s: Session, lo: int, hi: int) -> list[LogFile]:
    """The logs LogMiner needs for SCNs ``lo``..``hi``; ReplicationError on a gap."""
    found: dict[tuple[int, int], LogFile] = {}
    args = {"lo": lo, "hi": hi}
    for name, thread, seq, first, nxt in s.query(ARCHIVED_SQL, args):
        found.setdefault(
            (int(thread), int(seq)),
            LogFile(str(name), int(thread), int(seq), int(first), int(nxt), False),
        )
    for member, thread, seq, first, nxt, status in s.query(ONLINE_SQL, args):
        found.setdefault(
            (int(thread), int(seq)),
            LogFile(
                str(member),
                int(thread),
                int(seq),
                int(first),
                int(nxt),
                True,
                str(status) == "CURRENT",
            ),
        )
    threads = {int(t): int(e or 0) for t, e in s.query(THREADS_SQL)}
    for thread, enabled in sorted(threads.items()):
        logs = sorted((f for f in found.values() if f.thread == thread), key=lambda f: f.sequence)
        _check_thread(thread, enabled, logs, lo, hi)
    return sorted(found.values(), key=lambda f: (f.thread, f.sequence))


def _missing(thread: int, sequence: int, what: str) -> ReplicationError:
    return ReplicationError(
        f"redo thread {thread} sequence {sequence} is missing: {what}; capture cannot "
        "continue without it",
        hint=f"restore it (RMAN: RESTORE ARCHIVELOG SEQUENCE {sequence} THREAD {thread};) and "
        "run again, or take a new snapshot (redoline snapshot) to start after it",
    )


def _check_thread(thread: int, enabled: int, logs: list[LogFile], lo: int, hi: int) -> None:
    if not logs:
        if enabled > hi:
            return  # the thread began after this range
        raise _missing(thread, 0, f"no log of this thread holds SCNs {lo}..{hi}")
    first = logs[0]
    if first.first_scn > lo and enabled <= lo:
        raise _missing(
            thread,
            first.sequence - 1,
            f"it held the SCNs from {lo} (or earlier) to {first.first_scn - 1}",
        )
    for a, b in itertools.pairwise(logs):
        if b.sequence != a.sequence + 1:
            raise _missing(
                thread,
                a.sequence + 1,
                f"it held the SCNs from {a.next_scn} to {b.first_scn - 1}",
            )
    last = logs[-1]
    if not last.current and last.next_scn <= hi:
        raise _missing(thread, last.sequence + 1, f"it holds the SCNs from {last.next_scn} on")
