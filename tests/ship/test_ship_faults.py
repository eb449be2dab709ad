"""Faults a receiving host meets: its disk fills up mid-segment. The sender keeps retrying,
nothing unconfirmed is lost, and once space is freed the received trail is byte-identical."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from capture.trail import TrailWriter
from connectors.model import Change, Op, TableId, Transaction
from tests.clirun import small_fs
from tests.ship.conftest import (
    ENTRY,
    Certs,
    ReceiverProc,
    digests,
    env_for,
    iptables,
    start_receiver,
)


def _blob_trail(trail: Path, mb: int) -> None:
    table = TableId("bench", "blobs")
    with TrailWriter(trail, source_id="src", segment_bytes=1_000_000) as writer:
        for i in range(1, mb * 8 + 1):
            row = {"id": i, "data": os.urandom(128 * 1024)}  # incompressible
            writer.append(
                Transaction(
                    str(i),
                    f"bin.000001:{i}",
                    dt.datetime.now(dt.UTC),
                    "",
                    [Change(Op.INSERT, table, 1, {"id": i}, None, row)],
                )
            )
        writer.seal()


def test_receiver_disk_full_then_freed(
    tmp_path: Path, certs: Certs, receivers: list[ReceiverProc]
) -> None:
    trail = tmp_path / "src"
    _blob_trail(trail, 3)
    with small_fs(tmp_path / "fs", "1m") as fs:
        r = start_receiver(tmp_path, fs / "recv", "--source-id", "src", *certs.receive_args())
        receivers.append(r)
        sender = subprocess.Popen(
            [*ENTRY, "ship", "--to", r.to, "--trail", str(trail), *certs.ship_args(),
             "--until-caught-up"],
            cwd=tmp_path, env=env_for(tmp_path), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while "No space left on device" not in r.stderr():
            assert time.monotonic() < deadline, r.stderr()
            assert sender.poll() is None, sender.communicate()
            time.sleep(0.1)
        time.sleep(1.0)
        assert sender.poll() is None  # retrying, not failed
        subprocess.run(["mount", "-o", "remount,size=64m", str(fs)], check=True)
        stdout, err = sender.communicate(timeout=60)
        assert sender.returncode == 0, err
        assert "No space left on device" in err and "reconnecting" in err
        assert "caught up" in stdout
        assert digests(fs / "recv" / "src") == digests(trail)
        assert len(digests(trail)) >= 3
        r.stop()


def _ns(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def two_hosts() -> Iterator[tuple[str, str, str, str]]:
    """Two network namespaces joined by a veth pair: (ns_receiver, ns_sender, addr, link)."""
    if os.geteuid() != 0:
        pytest.fail("this fault test makes network namespaces and needs root (CI runs as root)")
    tag = f"{os.getpid() % 100000}"
    a, b, va, vb = f"rlr{tag}", f"rls{tag}", f"rlr{tag}v", f"rls{tag}v"
    octet = os.getpid() % 200 + 20
    addr_a, addr_b = f"10.231.{octet}.1", f"10.231.{octet}.2"
    try:
        _ns("netns", "add", a)
        _ns("netns", "add", b)
        _ns("link", "add", va, "type", "veth", "peer", "name", vb)
        _ns("link", "set", va, "netns", a)
        _ns("link", "set", vb, "netns", b)
        _ns("-n", a, "addr", "add", f"{addr_a}/24", "dev", va)
        _ns("-n", b, "addr", "add", f"{addr_b}/24", "dev", vb)
        for ns, dev in ((a, va), (b, vb)):
            _ns("-n", ns, "link", "set", dev, "up")
            _ns("-n", ns, "link", "set", "lo", "up")
    except subprocess.CalledProcessError as exc:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)
        pytest.fail(f"cannot set up network namespaces: {exc.stderr!r} (needs root and ip netns)")
    try:
        yield a, b, addr_a, vb
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


def test_partition_while_tailing_then_byte_identical(tmp_path: Path) -> None:
    """Every packet between the hosts is dropped for 30 s while capture keeps writing; once
    the network is back everything is across within 25 s (2-4 s in practice; the test takes
    about 45 s)."""
    trail, root = tmp_path / "src", tmp_path / "recv"
    with two_hosts() as (ns_recv, ns_send, addr, _link):
        made = subprocess.run(
            [*ENTRY, "receive", "--init-certs", str(tmp_path / "c"), "--cert-name", addr],
            env=env_for(tmp_path), capture_output=True, text=True,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        c = tmp_path / "c"
        log = tmp_path / "recv.err"
        with open(log, "w") as err:
            receiver = subprocess.Popen(
                ["ip", "netns", "exec", ns_recv, *ENTRY, "receive", "--listen", f"{addr}:7433",
                 "--trail", str(root), "--source-id", "src", "--cert", f"{c}/server.pem",
                 "--key", f"{c}/server.key", "--ca", f"{c}/ca.pem"],
                cwd=tmp_path, env=env_for(tmp_path), stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        writer = TrailWriter(trail, source_id="src", segment_bytes=200_000)
        table = TableId("s", "t")
        n = 0

        def commit(k: int) -> None:
            nonlocal n
            for _ in range(k):
                n += 1
                row = {"id": n, "data": os.urandom(2000)}
                writer.append(
                    Transaction(str(n), f"f:{n}", dt.datetime.now(dt.UTC), "",
                                [Change(Op.INSERT, table, 1, {"id": n}, None, row)])
                )  # fmt: skip
            writer.flush()

        commit(10)
        sender = subprocess.Popen(
            ["ip", "netns", "exec", ns_send, *ENTRY, "ship", "--to", f"{addr}:7433", "--trail",
             str(trail), "--cert", f"{c}/client.pem", "--key", f"{c}/client.key", "--ca",
             f"{c}/ca.pem"],
            cwd=tmp_path, env=env_for(tmp_path), stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            for _ in range(20):  # 2 s of traffic
                commit(20)
                time.sleep(0.1)
            # the partition: every packet vanishes both ways, silently (no link-down, no
            # ICMP), as across a WAN that fails
            for ns in (ns_send, ns_recv):
                iptables(ns, "-I", "INPUT", "-j", "DROP")
            down = time.monotonic()
            while time.monotonic() - down < 30:  # capture goes on for 30 s
                commit(20)
                time.sleep(0.1)
            for ns in (ns_send, ns_recv):
                iptables(ns, "-D", "INPUT", "-j", "DROP")
            up = time.monotonic()
            # the partition held back most of what capture wrote meanwhile
            assert len(digests(root / "src")) < len(digests(trail)) - 20
            commit(20)
            writer.seal()
            writer.close()
            while digests(root / "src") != digests(trail):
                assert sender.poll() is None, sender.communicate()
                assert time.monotonic() - up < 25, "not caught up 25 s after the partition"
                time.sleep(0.2)
            print(f"caught up {time.monotonic() - up:.1f} s after the partition")
        finally:
            for proc in (sender, receiver):
                if proc.poll() is None:
                    proc.terminate()
            _, sent_err = sender.communicate(timeout=30)
            receiver.communicate(timeout=30)
        assert len(digests(trail)) >= 30
        assert "reconnecting" in sent_err


class _FlipProxy:
    """A TCP proxy that flips one bit of the sender's stream once, after ``after`` bytes."""

    def __init__(self, target: int, after: int) -> None:
        import socket
        import threading

        self.after, self.flipped = after, False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = target
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: object, dst: object, outbound: bool) -> None:
        import socket

        assert isinstance(src, socket.socket) and isinstance(dst, socket.socket)
        seen = 0
        try:
            while data := src.recv(65536):
                if outbound and not self.flipped and seen + len(data) > self.after:
                    buf = bytearray(data)
                    buf[self.after - seen] ^= 0x10
                    data = bytes(buf)
                    self.flipped = True
                seen += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def test_a_bit_flipped_in_flight_is_refused_and_resent(
    tmp_path: Path, certs: Certs, receivers: list[ReceiverProc]
) -> None:
    trail = tmp_path / "src"
    _blob_trail(trail, 2)
    r = start_receiver(tmp_path, tmp_path / "recv", "--source-id", "src", *certs.receive_args())
    receivers.append(r)
    proxy = _FlipProxy(r.port, after=700_000)
    done = subprocess.run(
        [*ENTRY, "ship", "--to", f"localhost:{proxy.port}", "--trail", str(trail),
         *certs.ship_args(), "--until-caught-up"],
        cwd=tmp_path, env=env_for(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    proxy.listener.close()
    assert proxy.flipped
    assert done.returncode == 0, done.stderr
    assert "reconnecting" in done.stderr  # TLS refused the altered record; resent from there
    assert digests(tmp_path / "recv" / "src") == digests(trail)
