"""The shipping wire protocol: length-prefixed messages over one TLS 1.3 stream.

Every message is ``u8 type ‖ u32 length ‖ payload`` (little-endian). Control messages carry a
UTF-8 JSON object; ``DATA`` carries ``u64 sequence ‖ u64 offset`` and then segment bytes. The
full exchange is documented in docs/ship.md; keep the two in step.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import struct
from typing import Any, Final

from connectors.errors import ConnectError

__all__ = [
    "ACK",
    "BYE",
    "DATA",
    "DATA_PREFIX",
    "ERROR",
    "HELLO",
    "MAX_MESSAGE",
    "PROTOCOL_VERSION",
    "SEAL",
    "SYNC",
    "SYNCED",
    "WELCOME",
    "Channel",
    "PeerError",
]

PROTOCOL_VERSION: Final = 1

HELLO: Final = 0x01  # sender -> receiver: who I am, which source, token
WELCOME: Final = 0x02  # receiver -> sender: where to resume
DATA: Final = 0x03  # sender -> receiver: segment bytes at an offset
SEAL: Final = 0x04  # sender -> receiver: the segment is complete (size, SHA-256)
ACK: Final = 0x05  # receiver -> sender: the sealed segment is durable (number, size, SHA-256)
SYNC: Final = 0x06  # sender -> receiver: make the open segment durable up to here
SYNCED: Final = 0x07  # receiver -> sender: it is
BYE: Final = 0x08  # sender -> receiver: the session ends on purpose
ERROR: Final = 0x09  # either way: a refusal, the last message before closing

_HEAD: Final = struct.Struct("<BI")
DATA_HEAD: Final = struct.Struct("<QQ")
#: no message is larger than this (a DATA chunk is at most 1 MiB): a bigger length is a
#: corrupt or hostile stream, refused before allocating
MAX_MESSAGE: Final = 4 << 20
#: bytes before a DATA message's segment bytes (message head, sequence, offset)
DATA_PREFIX: Final = _HEAD.size + DATA_HEAD.size
_BUF_SIZE: Final = MAX_MESSAGE + (1 << 18)


class PeerError(ConnectError):
    """The peer closed the connection or broke the protocol (transient: reconnect)."""


class Channel:
    """One TLS connection, read and written as messages."""

    def __init__(self, sock: ssl.SSLSocket | socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        # received bytes live in _buf[_start:_end]; recv_into fills it in place (no new
        # object per TLS record), a message is copied out once
        self._buf = bytearray(_BUF_SIZE)
        self._view = memoryview(self._buf)
        self._start = self._end = 0
        self._out = bytearray()

    def send(self, kind: int, payload: bytes | memoryview = b"") -> None:
        self.sock.sendall(_HEAD.pack(kind, len(payload)) + bytes(payload))

    def send_json(self, kind: int, body: dict[str, Any]) -> None:
        self.send(kind, json.dumps(body).encode())

    def send_data(self, seq: int, offset: int, chunk: bytes | memoryview) -> None:
        head = _HEAD.pack(DATA, DATA_HEAD.size + len(chunk)) + DATA_HEAD.pack(seq, offset)
        # one write: a separate 21-byte write would cost a TLS record of its own
        self.sock.sendall(head + chunk)

    def data_buffer(self, n: int) -> memoryview:
        """A reusable buffer for a ``DATA`` message of ``n`` segment bytes: fill
        ``view[DATA_PREFIX:]`` (e.g. with ``os.preadv``), then :meth:`send_data_buffer`."""
        if len(self._out) < DATA_PREFIX + n:
            self._out = bytearray(DATA_PREFIX + n)
        return memoryview(self._out)[: DATA_PREFIX + n]

    def send_data_buffer(self, seq: int, offset: int, view: memoryview) -> None:
        _HEAD.pack_into(view, 0, DATA, len(view) - _HEAD.size)
        DATA_HEAD.pack_into(view, _HEAD.size, seq, offset)
        self.sock.sendall(view)

    def _fill(self, n: int) -> None:
        if self._end - self._start >= n:
            return
        if self._start + n > len(self._buf):  # make room: move what is held to the front
            held = self._end - self._start
            self._view[:held] = self._view[self._start : self._end]
            self._start, self._end = 0, held
        while self._end - self._start < n:
            try:
                got = self.sock.recv_into(self._view[self._end :])
            except TimeoutError:
                raise PeerError(f"{self.peer}: no answer (timed out)") from None
            except (ssl.SSLError, OSError) as exc:
                raise PeerError(f"{self.peer}: connection lost ({exc})") from None
            if not got:
                raise PeerError(f"{self.peer}: the connection was closed")
            self._end += got

    def readable(self) -> bool:
        """True when a message (or part of one) can be read without waiting."""
        if self._end > self._start:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        ready, _, _ = select.select([self.sock], [], [], 0)
        return bool(ready)

    def recv(self) -> tuple[int, bytes]:
        """The next message: (type, payload)."""
        kind, view = self.recv_view()
        return kind, bytes(view)

    def recv_view(self) -> tuple[int, memoryview]:
        """The next message, its payload a view of the receive buffer: valid only until the
        next ``recv``/``recv_view`` (the DATA path checks and writes it without a copy)."""
        self._fill(_HEAD.size)
        kind, length = _HEAD.unpack_from(self._buf, self._start)
        if length > MAX_MESSAGE:
            raise PeerError(f"{self.peer}: message of {length} bytes (corrupt stream?)")
        self._fill(_HEAD.size + length)
        at = self._start + _HEAD.size
        self._start = at + length
        if self._start == self._end:
            self._start = self._end = 0
        return kind, self._view[at : at + length]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def decode(payload: bytes, peer: str) -> dict[str, Any]:
    """A control message's JSON object."""
    try:
        body = json.loads(payload)
    except ValueError:
        raise PeerError(f"{peer}: malformed control message") from None
    if not isinstance(body, dict):
        raise PeerError(f"{peer}: malformed control message")
    return body
