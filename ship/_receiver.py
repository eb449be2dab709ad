"""``redoline receive``: accept shipped segments into one trail directory per source id.

A session per sender connection (a thread each: few senders, blocking file I/O). Bytes of the
segment being shipped are written to ``N.open`` only as whole blocks whose CRC32C verifies, so
apply on this host can tail it like a local trail. On ``SEAL`` the trailer and SHA-256 are
checked, the file is fsynced and renamed to ``N.seg``, and only then acknowledged.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import hashlib
import json
import logging
import os
import queue
import select
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capture import progress
from capture.trail import START_FILE, list_segment_files, open_name, sealed_name
from capture.trail._format import (
    BLOCK_MAGIC,
    FRAME,
    FRAME_SIZE,
    TRAILER_MAGIC,
    Frame,
    crc32c,
    parse_frame,
    parse_header,
    parse_trailer,
)
from capture.trail._writer import fsync_dir
from connectors.errors import (
    AuthError,
    ConfigError,
    LockedError,
    StorageError,
    ToolkitError,
    TrailError,
)
from ship import _wire as w
from ship._tls import Token

_U32 = struct.Struct("<I")

__all__ = ["ReceiveOptions", "ReceiveResult", "Receiver", "file_sha256"]

log = logging.getLogger("redoline.receive")

#: a sender idle for longer than this is gone (it sends SYNC every few seconds when idle)
SESSION_TIMEOUT = 60.0


def file_sha256(path: Path, limit: int | None = None) -> tuple[int, Any]:
    """(size, running SHA-256) of the first ``limit`` bytes of ``path`` (all when None)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while limit is None or size < limit:
            chunk = f.read(1 << 20 if limit is None else min(1 << 20, limit - size))
            if not chunk:
                break
            h.update(chunk)
            size += len(chunk)
    return size, h


def _close_after_alert(tls: ssl.SSLSocket) -> None:
    """Close a connection whose handshake failed so the sender reads the TLS alert: in TLS 1.3
    the client has finished its side and sent its first message before the server refuses its
    certificate, and closing with that message unread makes the kernel send a reset, which
    can destroy the alert before the sender reads it (it then saw a bare EOF, took it for a
    network fault and retried for up to a minute). So: end our side after the alert, read
    what the sender sent until it closes (1 s at most), then close."""
    try:
        tls.shutdown(socket.SHUT_WR)
        tls.settimeout(0.2)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and tls.recv(4096):
            pass
    except OSError:
        pass
    finally:
        tls.close()


@dataclass
class ReceiveOptions:
    """How the receiver listens and whom it accepts."""

    host: str
    port: int
    root: Path
    sources: frozenset[str]
    context: ssl.SSLContext
    token: Token
    until_caught_up: bool = False
    stop_event: threading.Event = field(default_factory=threading.Event)
    #: ``until_caught_up``: seconds to wait with no sender connected before giving up
    #: (:attr:`ReceiveResult.timed_out`); None: forever
    wait_for: float | None = None


@dataclass
class ReceiveResult:
    segments: int = 0
    bytes: int = 0
    sessions: int = 0
    stopped: bool = False
    #: ``until_caught_up``: a sender finished caught up and none was left connected
    caught_up: bool = False
    #: ``until_caught_up``: ``wait_for`` passed with no sender connected
    timed_out: bool = False
    #: per source id: the last sealed segment held
    sources: dict[str, int | None] = field(default_factory=dict)


def _recover_open(path: Path) -> int:
    """Truncate a received ``.open`` back to its last whole, CRC-valid block; its size."""
    data = path.read_bytes()
    header = parse_header(data, path.name) if len(data) >= 12 else None
    if header is None:
        good = 0
    else:
        at = good = header.size
        while True:
            got = parse_frame(data, at, 0, path.name)
            if not isinstance(got, Frame):
                break  # a torn tail, or the trailer of an interrupted seal: received again
            at = good = got.end
    if good != len(data):
        with open(path, "r+b") as f:
            f.truncate(good)
            os.fsync(f.fileno())
    return good


def _whole_frames(buf: bytearray | memoryview, at: int) -> tuple[int, str]:
    """Advance over whole blocks whose CRC32C verifies (without copying their payloads).

    Returns the offset after the last one and why it stopped: ``short`` (more bytes needed),
    ``trailer`` (the segment's trailer starts there) or ``bad``.
    """
    view = memoryview(buf)
    try:
        while True:
            if len(buf) - at < FRAME_SIZE:
                head = bytes(view[at : at + 4])
                return at, "trailer" if head == TRAILER_MAGIC else "short"
            magic, _flags, stored, _raw, _last = FRAME.unpack_from(buf, at)
            if magic != BLOCK_MAGIC:
                return at, "trailer" if magic == TRAILER_MAGIC else "bad"
            end = at + FRAME_SIZE + stored
            if end > len(buf):
                return at, "short"
            (crc,) = _U32.unpack_from(buf, at + FRAME.size)
            body = view[at + FRAME_SIZE : end]
            if crc32c(body, crc32c(view[at : at + FRAME.size])) != crc:
                return at, "bad"
            body.release()
            at = end
    finally:
        view.release()


class _Segment:
    """The segment being received: ``N.open``, its running digest, bytes not yet whole."""

    def __init__(self, directory: Path, seq: int, source_id: str) -> None:
        self.seq = seq
        self.source_id = source_id
        self.path = directory / open_name(seq)
        self.directory = directory
        if self.path.exists():
            self.written = _recover_open(self.path)
            _, self.sha = file_sha256(self.path, self.written)
        else:
            self.written = 0
            self.sha = hashlib.sha256()
        # kept open across messages; closed by seal() or close()
        self.file = open(self.path, "ab")  # noqa: SIM115
        self.pending = bytearray()
        self.header_done = self.written > 0
        self.trailer_at: int | None = None

    def add(self, offset: int, chunk: bytes | memoryview) -> None:
        if offset != self.written + len(self.pending):
            raise w.PeerError(
                f"segment {self.seq}: data at offset {offset}, expected "
                f"{self.written + len(self.pending)}"
            )
        # whole blocks are checked and written straight from the message; only a block
        # split across messages is gathered in ``pending``
        buf: bytearray | memoryview
        if self.pending:
            self.pending += chunk
            buf = self.pending
        else:
            buf = memoryview(chunk)
        at = 0
        name = self.path.name
        if not self.header_done:
            header = parse_header(bytes(buf) if isinstance(buf, memoryview) else buf, name)
            if header is None:
                self._keep(buf, 0)
                return
            if header.sequence != self.seq:
                raise TrailError(f"header says segment {header.sequence}", segment=name)
            if header.source_id != self.source_id:
                raise TrailError(
                    f"the segment belongs to source {header.source_id!r}, the sender "
                    f"announced {self.source_id!r}",
                    segment=name,
                )
            at = header.size
            self.header_done = True
        if self.trailer_at is None:
            at, stop = _whole_frames(buf, at)
            if stop == "trailer":
                self.trailer_at = self.written + at
            elif stop == "bad":
                raise w.PeerError(
                    f"segment {self.seq}: block at offset {self.written + at} arrived "
                    "damaged (CRC32C); not written, resending"
                )
        if at:
            with memoryview(buf)[:at] as view:
                self.file.write(view)
                self.sha.update(view)
            self.written += at
            self.file.flush()
        self._keep(buf, at)

    def _keep(self, buf: bytearray | memoryview, at: int) -> None:
        """Keep ``buf[at:]`` (bytes not yet whole) in ``pending``."""
        if buf is self.pending:
            del self.pending[:at]
        else:
            self.pending = bytearray(buf[at:])

    def seal(self, size: int, sender_sha: str) -> str:
        name = self.path.name
        if self.written + len(self.pending) != size:
            raise w.PeerError(
                f"segment {self.seq}: sealed at {size} bytes, received "
                f"{self.written + len(self.pending)}"
            )
        tail = bytes(self.pending)
        if not tail.startswith(TRAILER_MAGIC):
            raise TrailError("sealed without a trailer", segment=name, offset=self.written)
        trailer = parse_trailer(tail, name)
        if trailer.offset != 0:
            raise TrailError("trailer does not follow the last block", segment=name)
        if trailer.digest != self.sha.digest():
            raise TrailError(
                f"SHA-256 of the received bytes {self.sha.hexdigest()} differs from the "
                f"trailer's {trailer.digest.hex()}",
                segment=name,
            )
        self.file.write(tail)
        self.sha.update(tail)
        got = self.sha.hexdigest()
        if got != sender_sha:
            raise TrailError(
                f"received SHA-256 {got} differs from the sender's {sender_sha}",
                segment=name,
            )
        self.file.flush()
        return got

    def make_durable(self) -> None:
        """fsync, rename ``N.open`` to ``N.seg``, fsync the directory (after :meth:`seal`)."""
        os.fsync(self.file.fileno())
        self.file.close()
        os.rename(self.path, self.directory / sealed_name(self.seq))
        fsync_dir(self.directory)

    def sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass


class _Sealer:
    """Makes verified segments durable off the session thread, in order, so the next
    segment's bytes keep flowing during the fsync. Acknowledgements come back through
    ``ready`` and a wake-up pipe: only the session thread touches the TLS socket."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[tuple[_Segment | None, dict[str, Any]] | None] = queue.Queue()
        self.ready: collections.deque[dict[str, Any]] = collections.deque()
        self.error: OSError | None = None
        self.wake_r, self.wake_w = os.pipe()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def submit(self, seg: _Segment | None, ack: dict[str, Any]) -> None:
        self.jobs.put((seg, ack))

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            seg, ack = job
            try:
                if seg is not None and self.error is None:
                    seg.make_durable()
            except OSError as exc:
                self.error = exc
                if seg is not None:
                    seg.close()
            else:
                if self.error is None:
                    self.ready.append(ack)
            os.write(self.wake_w, b"x")

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(60)
        os.close(self.wake_r)
        os.close(self.wake_w)


@dataclass
class _Inbound:
    """One sender's session: who it is and what it is in the middle of."""

    ch: w.Channel
    peer: str
    source_id: str = ""
    directory: Path = Path()
    next_seq: int | None = None
    seg: _Segment | None = None
    sealer: _Sealer | None = None
    lock_fd: int | None = None


class Receiver:
    """Listen, authenticate senders, receive their segments (see module docstring)."""

    def __init__(self, options: ReceiveOptions) -> None:
        self.opts = options
        self.result = ReceiveResult()
        self._lock = threading.Lock()
        self._active: set[socket.socket] = set()
        self._sock: socket.socket | None = None
        #: the live session of each source id: a newer authenticated one replaces it (the old
        #: one is a sender that vanished in a partition, its connection not yet timed out)
        self._by_source: dict[str, ssl.SSLSocket] = {}

    def bind(self) -> tuple[str, int]:
        """Open the listening socket (before serving, so a caller learns the port)."""
        try:
            infos = socket.getaddrinfo(
                self.opts.host, self.opts.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise ConfigError(f"cannot listen on {self.opts.host}: {exc}") from None
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot listen on {self.opts.host}:{self.opts.port}: {exc.strerror}",
                key="receive.listen",
            ) from None
        sock.listen(16)
        sock.settimeout(0.2)
        self._sock = sock
        host, port = sock.getsockname()[:2]
        return host, port

    def serve(self) -> ReceiveResult:
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        stop = self.opts.stop_event
        threads: list[threading.Thread] = []
        waiting_since = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    conn, addr = self._sock.accept()
                except TimeoutError:
                    waiting_since = self._check_wait(waiting_since)
                    continue
                peer = f"{addr[0]}:{addr[1]}"
                t = threading.Thread(target=self._session, args=(conn, peer), daemon=True)
                with self._lock:
                    self._active.add(conn)
                t.start()
                threads.append(t)
        finally:
            self._sock.close()
            with self._lock:
                for conn in self._active:
                    try:
                        conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            for t in threads:
                t.join(timeout=10)
        return self.result

    def _check_wait(self, since: float) -> float:
        """A cron receiver gives up after ``wait_for`` seconds without a connected sender;
        a connected one restarts the wait. Returns when the current wait began."""
        with self._lock:
            busy = bool(self._active)
        now = time.monotonic()
        if busy or not self.opts.until_caught_up:
            return now
        if self.opts.wait_for is not None and now - since > self.opts.wait_for:
            self.result.timed_out = True
            self.opts.stop_event.set()
        return since

    # ------------------------------------------------------------------ one session

    def _session(self, conn: socket.socket, peer: str) -> None:
        caught_up = False
        try:
            caught_up = self._run_session(conn, peer)
        finally:
            conn.close()
            with self._lock:
                self._active.discard(conn)
                idle = not self._active
            if caught_up and self.opts.until_caught_up and idle:
                self.result.caught_up = True
                self.opts.stop_event.set()

    def _handshake(self, conn: socket.socket, peer: str) -> ssl.SSLSocket | None:
        conn.settimeout(15)
        try:
            first = conn.recv(1, socket.MSG_PEEK)
        except OSError:
            return None
        if first and first != b"\x16":  # not a TLS handshake record
            log.error(
                "plain TCP (not TLS) connection from %s refused: redoline shipping speaks "
                "TLS 1.3 only",
                peer,
            )
            return None
        tls = self.opts.context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        try:
            tls.do_handshake()
            return tls
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            if "CERTIFICATE" in reason.upper() or "CA" in reason.split("_"):
                what = "its client certificate was not accepted (not signed by [receive] ca?)"
            elif "VERSION" in reason.upper() or "PROTOCOL" in reason.upper():
                what = "TLS 1.3 is required"
            else:
                what = "TLS handshake failed"
            log.error("sender %s refused: %s (%s)", peer, what, reason)
            _close_after_alert(tls)
        except OSError as exc:
            log.warning("sender %s: connection lost during the TLS handshake (%s)", peer, exc)
            tls.close()
        return None

    def _run_session(self, conn: socket.socket, peer: str) -> bool:
        tls = self._handshake(conn, peer)
        if tls is None:
            return False
        with self._lock:
            self._active.discard(conn)
            self._active.add(tls)
            self.result.sessions += 1
        ch = w.Channel(tls, f"sender {peer}")
        inb = _Inbound(ch, peer)
        try:
            tls.settimeout(SESSION_TIMEOUT)
            self._welcome(tls, inb)
            inb.sealer = _Sealer()
            return self._receive(tls, inb, inb.sealer)
        except w.PeerError as exc:
            if inb.source_id:  # a sender that never said HELLO has no stage to mark
                progress.stage("receive", inb.source_id).failed(exc, retrying=True)
            log.warning("%s; the sender resumes where it left off", exc.message)
        except OSError as exc:
            err: ToolkitError = (
                StorageError.from_oserror(exc, "received segment")
                if StorageError.handles(exc) or exc.errno == errno.ENOSPC
                else TrailError(f"cannot write the received segment: {exc}")
            )
            self._refuse(ch, err, peer)
        except ToolkitError as exc:
            self._refuse(ch, exc, peer)
        finally:
            if inb.seg is not None:
                inb.seg.close()
            if inb.sealer is not None:
                inb.sealer.close()  # segments already verified still become durable
            if inb.lock_fd is not None:
                os.close(inb.lock_fd)
            ch.close()
            with self._lock:
                self._active.discard(tls)
                for sid, sock in list(self._by_source.items()):
                    if sock is tls:
                        del self._by_source[sid]
        return False

    def _welcome(self, tls: ssl.SSLSocket, inb: _Inbound) -> None:
        """HELLO in, authenticated, the source's directory locked, WELCOME out."""
        peer = inb.peer
        kind, payload = inb.ch.recv()
        if kind != w.HELLO:
            raise w.PeerError(f"sender {peer}: expected HELLO")
        hello = w.decode(payload, peer)
        source_id = inb.source_id = self._authenticate(tls, hello, peer)
        directory = inb.directory = self.opts.root / source_id
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock:
            old = self._by_source.get(source_id)
            self._by_source[source_id] = tls
        if old is not None:
            log.warning("sender %s replaces the previous session of source %s", peer, source_id)
            try:
                old.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        inb.lock_fd = self._lock_source(directory, source_id)
        state = self._state(directory, hello, source_id)
        inb.ch.send_json(w.WELCOME, state)
        log.info(
            "sender %s: source %s, resuming at segment %s offset %s",
            peer,
            source_id,
            state["next_seq"],
            state["offset"],
        )
        inb.next_seq = state["next_seq"]

    def _receive(self, tls: ssl.SSLSocket, inb: _Inbound, sealer: _Sealer) -> bool:
        """Messages until BYE (True: the sender is caught up) or the sender's ERROR."""
        ch, peer = inb.ch, inb.peer
        while True:
            while sealer.ready:
                ch.send_json(w.ACK, sealer.ready.popleft())
            if sealer.error is not None:
                raise sealer.error
            if not ch.readable():
                ready, _, _ = select.select([tls.fileno(), sealer.wake_r], [], [], SESSION_TIMEOUT)
                if not ready:
                    raise w.PeerError(f"sender {peer}: silent for {SESSION_TIMEOUT:.0f} s")
                if sealer.wake_r in ready:
                    os.read(sealer.wake_r, 4096)
                continue
            kind, view = ch.recv_view()
            if kind == w.DATA:
                self._data(inb, view)
                continue
            payload = bytes(view)
            if kind == w.SEAL:
                self._seal(inb, sealer, w.decode(payload, peer))
            elif kind == w.SYNC:
                seg = inb.seg
                if seg is not None:
                    seg.sync()
                ch.send_json(
                    w.SYNCED,
                    {"seq": seg.seq if seg else None, "offset": seg.written if seg else 0},
                )
            elif kind == w.BYE:
                return bool(w.decode(payload, peer).get("caught_up"))
            elif kind == w.ERROR:
                body = w.decode(payload, peer)
                log.error("sender %s gave up: %s", peer, body.get("message"))
                return False
            else:
                raise w.PeerError(f"sender {peer}: unknown message type {kind}")

    def _data(self, inb: _Inbound, view: memoryview) -> None:
        seq, offset = w.DATA_HEAD.unpack_from(view, 0)
        if inb.seg is None or inb.seg.seq != seq:
            if inb.seg is not None or (inb.next_seq is not None and seq != inb.next_seq):
                raise w.PeerError(f"sender {inb.peer}: data for segment {seq} out of order")
            inb.seg = _Segment(inb.directory, seq, inb.source_id)
        inb.seg.add(offset, view[w.DATA_HEAD.size :])  # checked and written, not kept
        self.result.bytes += len(view) - w.DATA_HEAD.size

    def _seal(self, inb: _Inbound, sealer: _Sealer, body: dict[str, Any]) -> None:
        seq = int(body["seq"])
        ack = {"seq": seq, "size": int(body["size"])}
        seg = inb.seg
        if seg is None or seg.seq != seq:
            sealer.submit(None, {**ack, "sha256": self._held_duplicate(inb.directory, seq, body)})
        else:
            digest = seg.seal(int(body["size"]), str(body["sha256"]))
            sealer.submit(seg, {**ack, "sha256": digest})  # ACK once durable
            inb.seg = None
            self.result.segments += 1
            st = progress.stage("receive", inb.source_id)
            st.ok()
            st.extra.update(
                segments_received=st.extra.get("segments_received", 0) + 1,
                bytes_received=self.result.bytes,
            )
            log.info("segment %d of %s received (sha256 %s)", seq, inb.source_id, digest)
        inb.next_seq = seq + 1

    def _refuse(self, ch: w.Channel, exc: ToolkitError, peer: str) -> None:
        log.error("sender %s refused: %s", peer, exc.message)
        try:
            ch.send_json(
                w.ERROR,
                {
                    "message": exc.message,
                    "hint": exc.hint,
                    "exit_code": exc.exit_code,
                    "kind": type(exc).__name__,
                },
            )
        except (OSError, ssl.SSLError):
            pass

    def _authenticate(self, tls: ssl.SSLSocket, hello: dict[str, Any], peer: str) -> str:
        if hello.get("version") != w.PROTOCOL_VERSION:
            raise ConfigError(
                f"shipping protocol version {hello.get('version')} is not supported (this "
                f"receiver speaks {w.PROTOCOL_VERSION})",
                hint="run the same redoline version on both hosts",
            )
        source_id = str(hello.get("source_id") or "")
        has_cert = bool(tls.getpeercert())
        token = str(hello.get("token") or "")
        if not has_cert and not self.opts.token.matches(token):
            raise AuthError(
                "authentication failed: "
                + ("wrong token" if token else "no client certificate and no token"),
                hint="the sender's [ship] token_file/token_env must hold the receiver's token, "
                "or the sender needs a client certificate signed by the receiver's CA",
            )
        if source_id not in self.opts.sources:
            raise AuthError(
                f"source id {source_id!r} is not accepted by this receiver (accepted: "
                f"{', '.join(sorted(self.opts.sources))})",
                hint="add it to [receive] sources (or --source-id) on the receiving host",
            )
        return source_id

    def _lock_source(self, directory: Path, source_id: str) -> int:
        fd = os.open(directory / "writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + 10  # a replaced session needs a moment to let go
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise LockedError(
                        f"another process is writing source {source_id!r} on this receiver "
                        f"({directory / 'writer.lock'} is locked)"
                    ) from None
                time.sleep(0.05)

    def _state(self, directory: Path, hello: dict[str, Any], source_id: str) -> dict[str, Any]:
        files = list_segment_files(directory)
        trail_id = ""
        if files:
            first = next(iter(files.values()))[0]
            with open(first, "rb") as f:
                header = parse_header(f.read(1 << 16), first.name)
            trail_id = header.trail_id if header else ""
        theirs = str(hello.get("trail_id") or "")
        if trail_id and theirs and trail_id != theirs:
            raise TrailError(
                f"this receiver holds trail {trail_id} for source {source_id!r}; the sender "
                f"ships trail {theirs}",
                hint="a source id names one trail: give the new trail another source id, or "
                "move the received directory away",
            )
        start = hello.get("start")
        if isinstance(start, str) and not (directory / START_FILE).exists():
            try:
                json.loads(start)
            except ValueError:
                raise TrailError(f"the sender's {START_FILE} is not JSON") from None
            tmp = directory / f".{START_FILE}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(start)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, directory / START_FILE)
            fsync_dir(directory)
        last: dict[str, Any] | None = None
        next_seq: int | None = None
        offset = 0
        sealed = [seq for seq, (_, is_sealed) in files.items() if is_sealed]
        if sealed:
            seq = sealed[-1]
            size, h = file_sha256(directory / sealed_name(seq))
            last = {"seq": seq, "size": size, "sha256": h.hexdigest()}
            next_seq = seq + 1
        opened = [seq for seq, (_, is_sealed) in files.items() if not is_sealed]
        if opened:
            next_seq = opened[-1]
            offset = _recover_open(directory / open_name(next_seq))
        return {"next_seq": next_seq, "offset": offset, "last": last, "trail_id": trail_id}

    def _held_duplicate(self, directory: Path, seq: int, body: dict[str, Any]) -> str:
        path = directory / sealed_name(seq)
        if not path.exists():
            raise w.PeerError(f"SEAL for segment {seq}, which is neither open nor held")
        _, h = file_sha256(path)
        if h.hexdigest() != body["sha256"]:
            raise TrailError(
                f"segment {seq} is already held with other content: held SHA-256 "
                f"{h.hexdigest()}, sent SHA-256 {body['sha256']}",
                hint="two different trails under one source id?",
            )
        return str(body["sha256"])
