"""How a stage retries a transient failure: backoff, a time budget, a word for each attempt.

Capture (an unreachable source) and apply (a target that went away) share it::

    retry = Retry("capture", retry_for=300, on_retry=record)
    while True:
        try:
            work()
            break
        except Exception as exc:
            delay = retry.failed(exc)   # re-raises terminal errors; exit 75 past the budget
            time.sleep(delay)

Terminal errors (:class:`connectors.errors.Terminal`, or anything not
:class:`~connectors.errors.Transient`) are raised at once: retrying cannot help.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from connectors.errors import RetriesExhaustedError, Terminal, Transient

__all__ = ["Retry"]

log = logging.getLogger("redoline.retry")


class Retry:
    """Retry bookkeeping of one stage (see the module doc)."""

    def __init__(
        self,
        stage: str,
        *,
        retry_for: float | None = None,
        backoff: tuple[float, float] = (0.5, 30.0),
        on_retry: Callable[[int, float, str], None] | None = None,
        hint: str = "nothing was lost; run again when the server is reachable",
        progress: Any = None,
    ) -> None:
        self.stage = stage
        self.retry_for = retry_for
        self.backoff = backoff
        self.on_retry = on_retry
        self.hint = hint
        self.failures = 0
        self._since = 0.0
        #: the stage's :class:`capture.progress.StageProgress`: errors by class, retrying
        self.progress = progress

    def failed(self, exc: BaseException) -> float:
        """Count a failed attempt; the delay before the next one. Raises ``exc`` when it is
        terminal, :class:`RetriesExhaustedError` (exit 75) when the budget is spent."""
        if not isinstance(exc, Transient) or isinstance(exc, Terminal):
            if self.progress is not None:
                self.progress.failed(exc, retrying=False)
            raise exc
        now = time.monotonic()
        self.failures += 1
        if self.failures == 1:
            self._since = now
        waited = now - self._since
        if self.progress is not None:
            self.progress.failed(exc, retrying=True)
        if self.retry_for is not None and waited >= self.retry_for:
            if self.progress is not None:
                self.progress.state = "failed"
            raise RetriesExhaustedError(
                f"{self.stage} gave up after {waited:.0f}s and {self.failures} attempts: {exc}",
                hint=self.hint,
            ) from exc
        delay = min(self.backoff[1], self.backoff[0] * 2 ** (self.failures - 1))
        if self.retry_for is not None:
            delay = max(0.1, min(delay, self.retry_for - waited))
        if self.on_retry is not None:
            self.on_retry(self.failures, waited, str(exc))
        log.warning(
            "%s: %s; attempt %d failed (%.0fs so far), retrying in %.1fs",
            self.stage,
            exc,
            self.failures,
            waited,
            delay,
        )
        return delay

    def succeeded(self) -> None:
        """The stage works again (after failed attempts: tell ``on_retry`` with attempt 0)."""
        if self.failures and self.on_retry is not None:
            self.on_retry(0, 0.0, "")
        if self.progress is not None:
            self.progress.ok()
        self.failures = 0
