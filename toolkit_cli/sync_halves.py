"""``redoline sync --half source|target``: the pipeline split across two hosts, one process each.

::

    source host:  capture ─► trail ─► ship ──TLS──►  target host:  receive ─► trail ─► apply

:func:`run_source_half` chains capture and ship (to every ``[ship] to``);
:func:`run_target_half` chains receive and apply (of the one source it accepts). Each stage is
the one its own command runs (``capture``, ``ship``, ``receive``, ``apply``): this module only
starts them together and stops them together (DESIGN.md, orchestration), so a DBA runs two
services instead of four.

``until_caught_up`` (cron) means, on each side, that everything is where it must be:

* source half: capture reached the source's end position as measured at start, *then* every
  receiver confirmed every byte of the trail as it stood then (sealed segments by number, size
  and SHA-256; the open segment's bytes by ``SYNCED``, after the receiver's fsync);
* target half: a sender said it finished caught up, and everything received is applied.
  With no sender connected for ``ReceiveOptions.wait_for`` seconds the receiver gives up:
  what arrived is applied, then :class:`~connectors.errors.RetriesExhaustedError` (exit 75).

The initial load is not part of either half: ``redoline snapshot`` loads the target once from
a host that reaches both databases (docs/ship.md); apply on the target host then honours its
snapshot windows like any apply.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capture.trail import START_FILE, list_segment_files
from connectors.base import Database
from connectors.errors import ToolkitError
from ship import Receiver, ShipOptions, run_ship_all
from toolkit_cli.sync import (
    SyncOptions,
    _apply,
    _now,
    _retry_recorder,
    _stats_json,
    hold_lock,
    record_status,
)

__all__ = ["HalfReport", "run_source_half", "run_target_half"]


@dataclass
class HalfReport:
    """What one run of a half did (``--json``)."""

    half: str
    capture: dict[str, Any] = field(default_factory=dict)
    ship: dict[str, Any] = field(default_factory=dict)
    receive: dict[str, Any] = field(default_factory=dict)
    apply: dict[str, Any] = field(default_factory=dict)
    #: ``until_caught_up``: everything this half is responsible for is done
    caught_up: bool = False
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"half": self.half}
        for key in ("capture", "ship") if self.half == "source" else ("receive", "apply"):
            out[key] = getattr(self, key)
        out["caught_up"] = self.caught_up
        out["seconds"] = round(self.seconds, 3)
        return out


def _has_trail(directory: Path) -> bool:
    return (directory / START_FILE).exists() or bool(list_segment_files(directory))


def _recorded(state_dir: Any, name: str, report: HalfReport, run: Any) -> HalfReport:
    """Run ``run()`` under the half's lock, its start, end and error in the run record."""
    started = time.monotonic()
    with hold_lock(state_dir, name):
        record_status(state_dir, name, started=_now(), finished=None, error=None)
        try:
            run()
        except ToolkitError as exc:
            record_status(state_dir, name, error=str(exc), error_at=_now())
            raise
        except Exception as exc:
            record_status(state_dir, name, error=repr(exc), error_at=_now())
            raise
        report.seconds = time.monotonic() - started
        record_status(state_dir, name, finished=_now(), last=report.to_json())
    return report


def run_source_half(
    source: Database, options: SyncOptions, ships: list[ShipOptions], capture_filter: Any
) -> HalfReport:
    """Capture into ``options.trail_dir`` and ship it to each of ``ships``.

    Continuous: capture runs in a thread, shipping tails the trail, both stop on
    ``options.stop_event`` (or when either fails: the error is raised). ``until_caught_up``:
    capture to the source's end, then ship until every receiver confirmed all of it. Every
    ``ShipOptions.stop_event`` must be ``options.stop_event``.
    """
    from capture.runner import CaptureOptions, run_capture
    from capture.trail import fix_trail_start

    report = HalfReport("source")
    name = f"sync-{options.source_id}-source"
    stop = options.stop_event

    def run() -> None:
        fix_trail_start(options.trail_dir, source_id=options.source_id, source=source)
        cap_opts = CaptureOptions(
            source_id=options.source_id,
            filters=capture_filter,
            until_caught_up=options.until_caught_up,
            segment_bytes=options.segment_bytes,
            key=options.key,
            stop_event=stop,
            reader_options=dict(options.source_options),
            retry_for=options.retry_for,
            on_retry=_retry_recorder(options.state_dir, name, "capture"),
            heartbeat=options.heartbeat,
        )
        cap_errors: list[BaseException] = []

        def capture() -> None:
            try:
                report.capture = run_capture(source, options.trail_dir, cap_opts).to_json()
            except BaseException as exc:  # raised by the calling thread
                cap_errors.append(exc)
                stop.set()

        if options.until_caught_up:
            capture()  # the trail's end is fixed before shipping measures its goal
            if cap_errors:
                raise cap_errors[0]
            if not report.capture.get("caught_up"):
                return  # stopped by a signal: nothing more to do
            results, errors = run_ship_all(ships, stop)
        else:
            thread = threading.Thread(target=capture, name="capture", daemon=True)
            thread.start()
            try:
                results, errors = run_ship_all(ships, stop)
            finally:
                stop.set()
                while thread.is_alive():
                    thread.join(0.2)
            if cap_errors:
                raise cap_errors[0]
        report.ship = {
            n: {
                "segments": r.segments,
                "bytes": r.bytes,
                "acked_segment": r.acked_seq,
                "caught_up": r.caught_up,
                "reconnects": r.reconnects,
            }
            for n, r in results.items()
        }
        if errors:
            raise next(iter(errors.values()))
        report.caught_up = bool(report.capture.get("caught_up")) and all(
            results[s.name].caught_up for s in ships
        )

    return _recorded(options.state_dir, name, report, run)


def run_target_half(target: Database, options: SyncOptions, receiver: Receiver) -> HalfReport:
    """Receive into ``receiver``'s root and apply ``root/<source id>`` to ``target``.

    ``receiver`` is bound already (the caller says where it listens) and accepts
    ``options.source_id``; its ``stop_event`` must be set, with ``options.stop_event``, on
    SIGTERM: the receiver also sets it itself when it is caught up or gives up waiting.
    Apply follows the received trail while receiving; a caught-up (or given-up) receiver is
    followed by one last apply to the end of what arrived.
    """
    report = HalfReport("target")
    name = f"sync-{options.source_id}-{options.target_id}"
    recv_stop = receiver.opts.stop_event
    signalled = options.stop_event

    def run() -> None:
        options.trail_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        recv_errors: list[BaseException] = []

        def serve() -> None:
            try:
                receiver.serve()
            except BaseException as exc:  # raised by the calling thread
                recv_errors.append(exc)
                recv_stop.set()

        thread = threading.Thread(target=serve, name="receive", daemon=True)
        thread.start()
        on_retry = _retry_recorder(options.state_dir, name, "apply")
        stats = None
        stopping = lambda: signalled.is_set() or recv_stop.is_set()  # noqa: E731
        try:
            # apply needs the trail's start record (engine, dialect, trail id): the receiver
            # writes it at a sender's first contact
            while not _has_trail(options.trail_dir) and not stopping():
                recv_stop.wait(0.1)
            if _has_trail(options.trail_dir):
                stats = _apply(target, options, on_retry, follow=True, stop=stopping)
        finally:
            recv_stop.set()
            while thread.is_alive():
                thread.join(0.2)
        if recv_errors:
            raise recv_errors[0]
        got = receiver.result
        if (
            options.until_caught_up
            and not signalled.is_set()
            and (got.caught_up or got.timed_out)
            and _has_trail(options.trail_dir)
        ):
            # what arrived before the sender said BYE: to its end, then stop
            stats = _apply(target, options, on_retry, follow=False, stop=signalled.is_set)
        report.receive = {
            "segments": got.segments,
            "bytes": got.bytes,
            "sessions": got.sessions,
            "sender_caught_up": got.caught_up,
            "timed_out": got.timed_out,
        }
        report.apply = _stats_json(stats) if stats is not None else {}
        report.caught_up = got.caught_up and not signalled.is_set()

    return _recorded(options.state_dir, name, report, run)
