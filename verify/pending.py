"""Whether apply still has work before a source position, from the capture's progress record.

verify's online re-check waits until apply has reached the source's end position taken before
the first pass (:func:`verify.engine.wait_for_apply`). Apply's checkpoint holds the position
of the last *captured* commit, while a source's end position also moves with log records no
replicated table holds (PostgreSQL: another table's writes, checkpoints, the server's own
records), so a caught-up apply may never reach it. Capture's progress record settles it: when
capture has read the source's log past that position with everything before it in the trail
(``position``, updated on idle keepalives too) and every applier of this source has applied
capture's last operation (``last_op``), nothing before the position is left to apply. A
capture that has stopped (a cron run that ended, or a process that died) writes nothing more,
so once apply has applied its last operation nothing is left either: the re-check runs then
instead of waiting the whole timeout for a position no run will reach.

This needs the state directory capture writes to (``[state] dir``): on another host, or with
no capture record, the re-check falls back to waiting for the position itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from capture.progress import process_alive, read_records
from connectors.base import Database
from connectors.checkpoint import Checkpoint

__all__ = ["capture_settled"]

#: the states of a capture record whose run goes on
RUNNING = ("starting", "running", "retrying")


def capture_settled(
    source: Database, state_dir: Path, source_id: str
) -> Callable[[str, Sequence[Checkpoint]], bool]:
    """``settled(end_position, checkpoints)``: True when source ``source_id``'s capture record
    in ``state_dir`` has read past ``end_position`` and each of ``checkpoints`` (the target's
    appliers) of that source has applied through capture's last operation."""

    def settled(end_position: str, checkpoints: Sequence[Checkpoint]) -> bool:
        ours = [c for c in checkpoints if c.source_id == source_id]
        if not ours:
            return False
        for record in read_records(state_dir):
            if record.get("stage") != "capture" or record.get("name") != source_id:
                continue
            position, last_op = record.get("position"), record.get("last_op")
            if not isinstance(position, str) or not isinstance(last_op, int):
                return False
            # a capture that has stopped (or died) writes nothing more: what it wrote is all
            # apply can reach, however far the source's log has moved since
            stopped = record.get("state") not in RUNNING or not process_alive(record.get("pid"))
            try:
                if not stopped and source.compare_positions(position, end_position) < 0:
                    return False
            except (ValueError, NotImplementedError):
                return False  # positions of another format: cannot decide
            return all(c.applied_op >= last_op for c in ours)
        return False

    return settled
