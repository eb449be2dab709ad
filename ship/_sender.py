"""``redoline ship``: send a trail's segments to a receiver until each is acknowledged.

Sealed segments are sent whole; the open segment is tailed (polled every 20 ms) and sent up to
its last complete transaction, so the receiving side's apply sees a transaction well under a
second after capture wrote it. A segment counts as delivered only when the receiver
acknowledges its number, size and SHA-256; that acknowledgement is recorded as a trail
consumer (``ship.<name>``), so retention never prunes what a receiver does not hold.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import json
import logging
import os
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capture import progress
from capture.trail import (
    START_FILE,
    consumers,
    list_segment_files,
    open_name,
    read_trail_start,
    register_consumer,
    sealed_name,
)
from capture.trail._format import (
    BLOCK_CATALOG,
    BLOCK_CONT_NEXT,
    BLOCK_MAGIC,
    FRAME,
    FRAME_SIZE,
    parse_header,
    parse_trailer,
)
from connectors.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    ConnectSetupError,
    LockedError,
    RetriesExhaustedError,
    StorageError,
    Terminal,
    ToolkitError,
    TrailError,
)
from ship import _wire as w
from ship._tls import Token

__all__ = [
    "STATE_PREFIX",
    "ShipOptions",
    "ShipResult",
    "consumer_name",
    "run_ship",
    "run_ship_all",
]

log = logging.getLogger("redoline.ship")

CHUNK = 1 << 20
#: sealed segments in flight before the sender waits for their acknowledgement
UNACKED_MAX = 4
POLL = 0.02
#: a receiver that takes no byte and sends none for this long is gone: reconnect
IO_TIMEOUT = 60.0
#: bytes sent that the receiver's TCP has not acknowledged for this long mean the link is gone
#: (a partition): the kernel drops the connection (TCP_USER_TIMEOUT) and the sender reconnects.
#: TCP alone would wait for its next backed-off retransmission, up to minutes after the link is
#: back; a slow receiver does not trip it, since its TCP still acknowledges what arrives.
LINK_TIMEOUT = 15.0
#: an idle sender confirms durability (and that the link is alive) this often
SYNC_EVERY = 1.0
#: ``<trail>/ship-<name>.json``: what the receiver confirmed, for ``redoline status``
STATE_PREFIX = "ship-"


def consumer_name(name: str) -> str:
    return f"ship.{name}"


@dataclass
class ShipOptions:
    """Where to ship one trail, and how."""

    trail: Path
    host: str
    port: int
    context: ssl.SSLContext
    token: Token
    source_id: str
    #: this destination's name: its consumer record and state file
    name: str
    until_caught_up: bool = False
    #: seconds a connection problem may last before giving up (None: forever)
    retry_for: float | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)


@dataclass
class ShipResult:
    segments: int = 0
    bytes: int = 0
    caught_up: bool = False
    stopped: bool = False
    acked_seq: int | None = None
    reconnects: int = 0


def _error_from_peer(body: dict[str, Any], peer: str) -> ToolkitError:
    # the receiver's disk being full or its directory busy is retried like a network
    # outage (someone frees space; a replaced session lets go): ConnectError is transient
    kinds: dict[str, type[ToolkitError]] = {
        "AuthError": AuthError,
        "TrailError": TrailError,
        "ConfigError": ConfigError,
    }
    cls = kinds.get(str(body.get("kind")), ConnectError)
    message = f"the receiver {peer} refused: {body.get('message')}"
    return cls(message, hint=body.get("hint"))


def _local_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _trail_id(trail: Path, files: dict[int, tuple[Path, bool]]) -> str:
    start = read_trail_start(trail)
    if start is not None and start.trail_id:
        return start.trail_id
    for path, _ in files.values():
        with open(path, "rb") as f:
            header = parse_header(f.read(1 << 16), path.name)
        return header.trail_id if header else ""
    return ""


def _last_op(path: Path) -> int:
    data = path.read_bytes()
    return parse_trailer(data, path.name).last_op


def _boundary(data: bytes, base: int) -> int:
    """Offset (file-relative) of the end of the last complete transaction in ``data``, which
    starts at file offset ``base`` on a frame (or file) boundary; ``base`` when none.

    The header and the catalog block never end a shipped range on their own: capture's
    recovery deletes an open segment holding nothing else and writes it anew (other bytes),
    which a receiver holding the old ones refused as a conflict for ever (a kill -9 of the
    source host between a segment's catalog and its first transaction)."""
    at = 0
    good = base
    if base == 0:
        if len(data) < 12:
            return 0
        (hlen,) = struct.unpack_from("<I", data, 8)
        if len(data) < hlen:
            return 0
        at = hlen  # the header goes with the segment's first transaction
    while len(data) - at >= FRAME_SIZE:
        magic, flags, stored, _raw, _last = FRAME.unpack_from(data, at)
        if magic != BLOCK_MAGIC:
            break  # the trailer (the segment is being sealed): sent with the sealed file
        end = at + FRAME_SIZE + stored
        if end > len(data):
            break
        at = end
        if not flags & (BLOCK_CONT_NEXT | BLOCK_CATALOG):
            good = base + at
    return good


class _Session:
    def __init__(self, opts: ShipOptions, result: ShipResult, lock: threading.Lock) -> None:
        self.opts = opts
        self.result = result
        self.peer = f"{opts.host}:{opts.port}"
        self.ch: w.Channel | None = None
        self.goal: tuple[int, int] | None = None
        self._state_lock = lock
        #: sealed segments sent and not yet acknowledged, oldest first (seq, size, digest, path)
        self.unacked: collections.deque[tuple[int, int, str, Path]] = collections.deque()

    # -------------------------------------------------------------- connecting

    def connect(self) -> w.Channel:
        o = self.opts
        try:
            raw = socket.create_connection((o.host, o.port), timeout=15)
        except OSError as exc:
            raise ConnectError(f"cannot reach the receiver {self.peer}: {exc}") from None
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(LINK_TIMEOUT * 1000))
        try:
            tls = o.context.wrap_socket(raw, server_hostname=o.host)
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            raise ConnectSetupError(
                f"the receiver {self.peer}'s certificate could not be verified "
                f"({exc.verify_message})",
                hint="[ship] ca / --ca must be the CA that signed the receiver's certificate "
                "(ca.pem from `redoline receive --init-certs`), and the host in --to must be "
                "one of the certificate's names",
            ) from None
        except ssl.SSLError as exc:
            raw.close()
            raise ConnectSetupError(
                f"TLS with the receiver {self.peer} failed: {exc.reason or exc} (TLS 1.3 is "
                "required on both sides)"
            ) from None
        except OSError as exc:
            raw.close()
            raise ConnectError(f"connection to the receiver {self.peer} lost: {exc}") from None
        tls.settimeout(IO_TIMEOUT)
        return w.Channel(tls, f"receiver {self.peer}")

    def expect(self, *kinds: int) -> tuple[int, dict[str, Any]]:
        assert self.ch is not None
        try:
            kind, payload = self.ch.recv()
        except w.PeerError as exc:
            text = exc.message
            # TLS 1.3 reports a rejected client certificate at the first read, as an alert
            if "alert" in text and ("certificate" in text or "unknown ca" in text):
                raise AuthError(
                    f"the receiver {self.peer} rejected this sender's client certificate ({text})",
                    hint="[ship] cert/key must be signed by the receiver's [receive] ca, or "
                    "use a token ([ship] token_file / token_env)",
                ) from None
            raise
        body = w.decode(payload, self.peer)
        if kind == w.ERROR:
            raise _error_from_peer(body, self.peer)
        if kind not in kinds:
            raise w.PeerError(f"receiver {self.peer}: unexpected message type {kind}")
        return kind, body

    # -------------------------------------------------------------- session

    def run(self) -> bool:
        """One connection: True when caught up, False when stopped."""
        o = self.opts
        files = list_segment_files(o.trail)
        trail_id = _trail_id(o.trail, files)
        start = None
        if (o.trail / START_FILE).exists():
            # sent verbatim: the receiving side's apply reads the same birth record
            start = (o.trail / START_FILE).read_text(encoding="utf-8")
        self.unacked.clear()
        self.ch = self.connect()
        hello = {
            "version": w.PROTOCOL_VERSION,
            "source_id": o.source_id,
            "trail_id": trail_id,
            "start": start,
        }
        if o.token:
            hello["token"] = o.token.value.decode()
        self.ch.send_json(w.HELLO, hello)
        _, welcome = self.expect(w.WELCOME)
        theirs = str(welcome.get("trail_id") or "")
        if theirs and trail_id and theirs != trail_id:
            self.refuse(
                TrailError(
                    f"the receiver {self.peer} holds trail {theirs} for source "
                    f"{o.source_id!r}; this trail is {trail_id}"
                )
            )
        last = welcome.get("last")
        if last is not None:
            self.check_held(files, last)
        if files and self.goal is None and o.until_caught_up:
            seq = max(files)
            self.goal = (seq, files[seq][0].stat().st_size)
        next_seq = welcome.get("next_seq")
        offset = int(welcome.get("offset") or 0)
        if next_seq is None:
            next_seq = min(files) if files else 0
        elif files and next_seq < min(files):
            self.refuse(
                TrailError(
                    f"the receiver {self.peer} needs segment {next_seq}, which this trail no "
                    f"longer holds (first held: {min(files)})",
                    hint="retention pruned it before this receiver acknowledged it (was the "
                    "shipper's consumer record removed?): re-seed the receiver",
                )
            )
        while not o.stop_event.is_set():
            done = self.ship_segment(int(next_seq), offset)
            if done:
                caught_up = not o.stop_event.is_set()
                self.finish(caught_up)
                return caught_up
            next_seq, offset = int(next_seq) + 1, 0
        self.finish(False)
        return False

    def refuse(self, exc: ToolkitError) -> None:
        assert self.ch is not None
        try:
            self.ch.send_json(w.ERROR, {"message": exc.message, "kind": type(exc).__name__})
        except OSError:
            pass
        raise exc

    def check_held(self, files: dict[int, tuple[Path, bool]], last: dict[str, Any]) -> None:
        seq = int(last["seq"])
        if seq in files and files[seq][1]:
            path = files[seq][0]
            mine = _local_sha(path)
            if mine != last["sha256"]:
                self.refuse(
                    TrailError(
                        f"segment {seq} is held by the receiver {self.peer} with other "
                        f"content: receiver SHA-256 {last['sha256']}, sender SHA-256 {mine}",
                        hint="two different trails under one source id? the receiver's "
                        "directory for this source must be moved away",
                    )
                )
            self.acknowledged(seq, path)
        elif files and seq > max(files):
            self.refuse(
                TrailError(
                    f"the receiver {self.peer} holds segment {seq}, beyond this trail's last "
                    f"({max(files)}): another trail under the same source id?"
                )
            )

    def acknowledged(self, seq: int, path: Path) -> None:
        o = self.opts
        register_consumer(o.trail, consumer_name(o.name), _last_op(path))
        self.result.acked_seq = seq
        self.save_state(seq, None, 0)

    def save_state(self, acked: int | None, open_seq: int | None, offset: int) -> None:
        o = self.opts
        state = {
            "name": o.name,
            "receiver": self.peer,
            "acked_seq": acked,
            "open_seq": open_seq,
            "open_offset": offset,
            "updated": time.time(),
        }
        path = o.trail / f"{STATE_PREFIX}{o.name}.json"
        tmp = path.with_suffix(".tmp")
        with self._state_lock:
            tmp.write_text(json.dumps(state), encoding="utf-8")
            os.replace(tmp, path)

    def caught_up(self, seq: int, offset: int, sealed_done: bool) -> bool:
        if not self.opts.until_caught_up:
            return False
        if self.goal is None:
            return True  # the trail was empty at start
        gseq, gsize = self.goal
        return seq > gseq or (seq == gseq and (sealed_done or offset >= gsize))

    def ship_segment(self, seq: int, offset: int) -> bool:
        """Send segment ``seq`` from ``offset`` until it is sealed and acknowledged.

        Returns True when shipping is caught up (``--until-caught-up``) instead."""
        o = self.opts
        assert self.ch is not None
        seg_path, open_path = o.trail / sealed_name(seq), o.trail / open_name(seq)
        last_sync = time.monotonic()
        # wait for the segment to exist
        while True:
            if seg_path.exists() or open_path.exists():
                break
            if self.caught_up(seq, 0, False) or o.stop_event.is_set():
                return True
            last_sync = self.idle(seq, 0, last_sync)
        try:
            # the descriptor survives the writer's rename of N.open to N.seg
            f = open(open_path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            f = open(seg_path, "rb")  # noqa: SIM115
        with f:
            fd = f.fileno()
            while True:
                sealed = seg_path.exists()
                size = os.fstat(fd).st_size
                if sealed:
                    h = hashlib.sha256()
                    at = 0
                    while at < offset:  # resumed mid-segment: the receiver holds these
                        chunk = os.pread(fd, min(CHUNK, offset - at), at)
                        h.update(chunk)
                        at += len(chunk)
                    self.send_range(fd, seq, offset, size, hasher=h)
                    self.seal(seq, size, h.hexdigest(), seg_path)
                    return self.caught_up(seq, size, True)
                if size > offset:
                    data = os.pread(fd, size - offset, offset)
                    end = _boundary(data, offset)
                    if end > offset:
                        # durable here before it leaves (capture's own fsync may not have
                        # come yet): after a power loss of this host the trail still holds
                        # what a receiver holds, and capture resumes after it
                        os.fsync(fd)
                        self.send_range(fd, seq, offset, end, data)
                        offset = end
                        continue
                if self.caught_up(seq, offset, False):
                    self.sync(seq)
                    return True
                if o.stop_event.is_set():
                    return False
                last_sync = self.idle(seq, offset, last_sync)

    def idle(self, seq: int, offset: int, last_sync: float) -> float:
        if time.monotonic() - last_sync >= SYNC_EVERY:
            self.sync(seq)
            return time.monotonic()
        self.opts.stop_event.wait(POLL)
        return last_sync

    def sync(self, seq: int) -> None:
        assert self.ch is not None
        self.read_acks(0)
        self.ch.send_json(w.SYNC, {"seq": seq})
        _, body = self.expect(w.SYNCED)
        if body.get("seq") is not None:
            self.save_state(self.result.acked_seq, int(body["seq"]), int(body["offset"]))

    def send_range(
        self,
        fd: int,
        seq: int,
        start: int,
        end: int,
        data: bytes | None = None,
        hasher: Any = None,
    ) -> None:
        assert self.ch is not None
        at = start
        while at < end:
            n = min(CHUNK, end - at)
            if data is not None:
                chunk = memoryview(data)[at - start : at - start + n]
                self.ch.send_data(seq, at, chunk)
            else:
                # read straight into the message buffer behind its head: no copy per MiB
                buf = self.ch.data_buffer(n)
                chunk = buf[w.DATA_PREFIX :]
                if os.preadv(fd, [chunk], at) != n:
                    raise TrailError(f"segment {seq} shrank while being shipped")
                self.ch.send_data_buffer(seq, at, buf)
            if hasher is not None:
                hasher.update(chunk)
            at += n
            self.result.bytes += n

    def seal(self, seq: int, size: int, digest: str, path: Path) -> None:
        """Send SEAL; the ACK is read later, so the next segment's bytes flow while the
        receiver verifies, fsyncs and renames this one (at most UNACKED_MAX outstanding)."""
        assert self.ch is not None
        self.ch.send_json(w.SEAL, {"seq": seq, "size": size, "sha256": digest})
        self.unacked.append((seq, size, digest, path))
        self.read_acks(UNACKED_MAX)

    def read_acks(self, keep: int) -> None:
        """Read ACKs until at most ``keep`` seals are outstanding (and any already arrived)."""
        assert self.ch is not None
        while self.unacked and (len(self.unacked) > keep or self.ch.readable()):
            seq, size, digest, path = self.unacked[0]
            _, ack = self.expect(w.ACK)
            if ack.get("seq") != seq or ack.get("sha256") != digest or ack.get("size") != size:
                raise w.PeerError(f"receiver {self.peer}: acknowledgement {ack} does not match")
            self.unacked.popleft()
            self.result.segments += 1
            self.acknowledged(seq, path)
            log.info("segment %d acknowledged by %s (sha256 %s)", seq, self.peer, digest)

    def peer_reason(self) -> ToolkitError | None:
        """After a failed write: the ERROR the receiver sent before closing, if it did."""
        if self.ch is None:
            return None
        try:
            self.ch.sock.settimeout(1.0)
            while True:
                kind, payload = self.ch.recv()
                if kind == w.ERROR:
                    return _error_from_peer(w.decode(payload, self.peer), self.peer)
        except (OSError, ToolkitError):
            return None

    def finish(self, caught_up: bool) -> None:
        assert self.ch is not None
        self.read_acks(0)
        try:
            self.ch.send_json(w.BYE, {"caught_up": caught_up})
        except OSError:
            pass
        self.ch.close()


def _lock(trail: Path, name: str) -> int:
    trail.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(trail / f".ship-{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockedError(f"another `redoline ship` is shipping {trail} to {name}") from None
    return fd


def _hold_everything(opts: ShipOptions) -> None:
    """Before the first acknowledgement, hold every segment the trail has: retention must not
    prune what this destination has not confirmed, even if it was never reached."""
    if consumer_name(opts.name) in consumers(opts.trail):
        return
    files = list_segment_files(opts.trail)
    first_op = 1
    if files:
        path = next(iter(files.values()))[0]
        with open(path, "rb") as f:
            header = parse_header(f.read(1 << 16), path.name)
        first_op = header.first_op if header is not None else 1
    register_consumer(opts.trail, consumer_name(opts.name), first_op - 1)


def _refresh(st: progress.StageProgress, opts: ShipOptions, result: ShipResult) -> None:
    """The ship stage's record: what was sent and acknowledged, what is not yet."""
    from ship._lag import shipping_lag

    if result.acked_seq is not None and st.extra.get("acked_segment") != result.acked_seq:
        st.ok()
    st.extra.update(
        acked_segment=result.acked_seq,
        segments_acknowledged=result.segments,
        bytes_sent=result.bytes,
        reconnects=result.reconnects,
    )
    for dest in shipping_lag(opts.trail):
        if dest.get("name") == opts.name:
            st.lag_bytes = dest["lag_bytes"]
            st.extra["lag_segments"] = dest["lag_segments"]


def run_ship(opts: ShipOptions) -> ShipResult:
    """Ship until stopped (or caught up), reconnecting with backoff after network trouble."""
    if not opts.trail.is_dir():
        raise ConfigError(f"the trail directory {opts.trail} does not exist")
    result = ShipResult()
    lock_fd = _lock(opts.trail, opts.name)
    state_lock = threading.Lock()
    session = _Session(opts, result, state_lock)
    st = progress.stage("ship", opts.name)
    st.refresh = lambda s: _refresh(s, opts, result)
    st.running()
    failing_since: float | None = None
    delay = 0.2
    try:
        _hold_everything(opts)
        while not opts.stop_event.is_set():
            moved = (result.bytes, result.acked_seq)
            try:
                result.caught_up = session.run()
                result.stopped = not result.caught_up
                st.done(stopped=result.stopped)
                return result
            except (ConnectError, OSError) as exc:
                if isinstance(exc, Terminal):
                    raise
                if isinstance(exc, OSError) and StorageError.handles(exc):
                    raise
                reason = session.peer_reason() if isinstance(exc, OSError) else None
                if isinstance(reason, Terminal):
                    raise reason from None
                if session.ch is not None:
                    session.ch.close()
                    session.ch = None
                shown: BaseException = reason if reason is not None else exc
                message = shown.message if isinstance(shown, ToolkitError) else str(shown)
                now = time.monotonic()
                if (result.bytes, result.acked_seq) != moved:
                    failing_since, delay = None, 0.2  # that session moved data: a new outage
                failing_since = failing_since or now
                if opts.retry_for is not None and now - failing_since > opts.retry_for:
                    raise RetriesExhaustedError(
                        f"shipping to {session.peer} failed for {opts.retry_for:.0f} s: {message}",
                        hint="check the receiver runs and the network between the hosts; "
                        "the next run resumes where this one stopped",
                    ) from None
                log.warning("%s; reconnecting in %.1f s", message, delay)
                st.failed(exc, retrying=True)
                result.reconnects += 1
                opts.stop_event.wait(delay)
                delay = min(delay * 2, 5.0)
        result.stopped = True
        st.done(stopped=True)
        return result
    except BaseException as exc:
        st.failed(exc, retrying=False)
        raise
    finally:
        os.close(lock_fd)


def run_ship_all(
    options: list[ShipOptions], stop: threading.Event
) -> tuple[dict[str, ShipResult], dict[str, ToolkitError]]:
    """:func:`run_ship` to every destination at once (a thread each): results and errors by
    destination name.

    A continuous run stops whole (``stop``) when one destination fails, so its supervisor
    sees the failure; a cron run lets the others finish."""
    results: dict[str, ShipResult] = {}
    errors: dict[str, ToolkitError] = {}

    def one(opts: ShipOptions) -> None:
        try:
            results[opts.name] = run_ship(opts)
        except ToolkitError as exc:
            errors[opts.name] = exc
            if not opts.until_caught_up:
                stop.set()

    if len(options) == 1:
        one(options[0])
        return results, errors
    threads = [threading.Thread(target=one, args=(o,), daemon=True) for o in options]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # short joins: the calling thread stays responsive to signals
    return results, errors
