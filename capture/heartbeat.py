"""The source heartbeat: honest lag, idle or busy, and a PostgreSQL slot that keeps moving.

With ``[source] heartbeat = "1s"`` capture upserts one row of
:data:`connectors.base.HEARTBEAT_TABLE` (``source_id``, ``beat_us``: capture's clock in
microseconds) every interval, on its own connection. The row change goes through the
source's log, the trail and apply like any other change, queued behind whatever the source
committed before it, so when a stage sees it, ``now - beat_us`` is how far behind that stage
is. Between beats the lag shown is the last beat's delay, growing once the next beat is
overdue (:meth:`capture.progress.StageProgress.lag_seconds`): a stalled pipeline never looks
current, an idle one never looks late.

Apply never writes the heartbeat table to a target (it is redoline's own, like the
checkpoint): it strips those changes from the transaction, keeps the checkpoint exact, and
records the beat in its progress record when the target transaction holding it commits.

The engine's SQL (table, upsert) lives in its connector (``Database.create_heartbeat``,
``Database.write_heartbeat``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

from connectors.base import HEARTBEAT_TABLE, Database
from connectors.errors import ConfigError, Terminal, ToolkitError, Transient
from connectors.model import Transaction

__all__ = ["HEARTBEAT_TABLE", "HeartbeatWriter", "ensure_table", "split_heartbeat"]

log = logging.getLogger("redoline.heartbeat")


def ensure_table(db: Database) -> None:
    """Create the heartbeat table when missing; a clear error when the user may not."""
    try:
        db.create_heartbeat()
    except NotImplementedError:
        raise ConfigError(
            f"{db.endpoint.display}: a {db.engine} source has no heartbeat table",
            key="source.heartbeat",
            hint="remove [source] heartbeat; lag is then estimated from positions",
        ) from None
    except ToolkitError as exc:
        if isinstance(exc, Transient) and not isinstance(exc, Terminal):
            raise  # unreachable: the caller retries
        raise ConfigError(
            f"cannot create the heartbeat table {HEARTBEAT_TABLE} on {db.endpoint.display}: "
            f"{exc.message}",
            key="source.heartbeat",
            hint="run `redoline init` as a user who may create it, or remove [source] heartbeat",
        ) from None


class HeartbeatWriter:
    """A daemon thread that upserts the heartbeat row every ``interval`` seconds until
    stopped. Failures are logged (once per outage) and retried at the next beat: the
    heartbeat never stops capture."""

    def __init__(self, db: Database, source_id: str, interval: float) -> None:
        self.db, self.source_id, self.interval = db, source_id, interval
        self._stop = threading.Event()
        self._conn: Any = None
        self._failing = False
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> HeartbeatWriter:
        self._thread.start()
        return self

    def beat(self) -> bool:
        """Write one beat now; False when it failed."""
        try:
            if self._conn is None:
                self._conn = self.db.connect()
            self.db.write_heartbeat(self._conn, self.source_id, int(time.time() * 1_000_000))
        except Exception as exc:
            if not self._failing:
                log.warning("heartbeat: cannot write to %s: %s", self.db.endpoint.display, exc)
            self._failing = True
            self._close()
            return False
        if self._failing:
            log.info("heartbeat: writing again")
        self._failing = False
        return True

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.beat()
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a slow source): do not burst to catch up
                next_at, delay = time.monotonic(), 0.0
            if self._stop.wait(delay):
                break
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._close()


def split_heartbeat(txn: Transaction) -> tuple[Transaction, float | None]:
    """``txn`` without its heartbeat changes, and the beat it carried (seconds since the
    epoch; None when it carried none). The operation numbers stay exact: the stripped
    transaction still ends at ``txn.last_op``, so the checkpoint records it as applied."""
    changes = txn.changes
    if not changes or changes[-1].table.name != HEARTBEAT_TABLE.name:
        return txn, None  # the common case, decided without a loop
    beat: float | None = None
    kept = []
    for change in changes:
        if change.table == HEARTBEAT_TABLE:
            value = (change.after or {}).get("beat_us")
            if isinstance(value, int):
                beat = max(beat or 0.0, value / 1_000_000)
            continue
        kept.append(change)
    if len(kept) == len(changes):
        return txn, None
    last = txn.last_op
    return dataclasses.replace(txn, changes=kept, first_op=last - len(kept) + 1), beat
