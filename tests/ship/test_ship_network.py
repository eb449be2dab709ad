"""Shipping over a bad network: 10 % packet loss, 200 ms delay with jitter, reordering and
duplication, each between two network namespaces made by the test, while capture keeps
writing. Each ends with every segment's SHA-256 equal on both sides and the received trail,
applied by ``redoline apply`` to DuckDB, equal row for row to the workload's own replay.

What each fault really is (this kernel has no ``sch_netem``, so no ``tc netem``):

* **loss** is the kernel's: iptables ``-m statistic --mode random --probability 0.1 -j DROP``
  on the INPUT chain of both namespaces' veth ends (10 % of the packets each way vanish).
* **delay, reordering, duplication** are done to real IP packets by a userspace router in
  the test: each namespace has a TUN device instead of a veth, and the router reads every
  packet one namespace sends and writes it into the other after a delay drawn per packet
  (200 ms ± 50 ms each way, which also reorders, as netem's jitter does), or holds back
  some packets so later ones overtake them, or writes some packets twice. TCP in the
  namespaces' kernels sees genuinely late, out-of-order and duplicate segments; the tests
  assert from the kernels' own counters (``/proc/net/netstat``: out-of-order queue, DSACKs)
  that it did. What TCP then hands to redoline is, by design, the original byte stream: these
  tests prove the protocol and its timeouts cope with the resulting stalls, retransmissions
  and bursts, not that redoline reorders anything itself.

They need root (network namespaces, iptables, /dev/net/tun); without it they fail with the
reason (CI runs as root).
"""

from __future__ import annotations

import datetime as dt
import decimal
import fcntl
import heapq
import os
import random
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest

from capture.trail import TrailWriter
from tests.apply.workload import Workload
from tests.ship.conftest import ENTRY, digests, env_for
from tests.ship.conftest import iptables as _iptables
from tests.ship.test_ship_faults import two_hosts

Impair = Callable[[random.Random], list[float]]  # delays (s) of the copies to deliver; [] drops


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"ip {' '.join(args)}: {done.stderr.strip()} (needs root and ip netns)")


class _Router:
    """Forwards IP packets between two TUN devices, each impaired per packet."""

    def __init__(self, fds: tuple[int, int], impair: tuple[Impair, Impair]) -> None:
        self.fds, self.impair = fds, impair
        self.rng = random.Random(7)
        self.heap: list[tuple[float, int, int, bytes]] = []
        self.cv = threading.Condition()
        self.n = 0
        self.stop = False
        self.packets = [0, 0]
        self.copies = [0, 0]
        self.overtaken = [0, 0]  # delivered after a packet that arrived later (same direction)
        self.last_arrival = [-1, -1]
        self.threads = [
            threading.Thread(target=self._read, args=(0,), daemon=True),
            threading.Thread(target=self._read, args=(1,), daemon=True),
            threading.Thread(target=self._deliver, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _read(self, side: int) -> None:
        while not self.stop:
            try:
                packet = os.read(self.fds[side], 65536)
            except OSError:
                return
            with self.cv:
                self.packets[side] += 1
                now = time.monotonic()
                for delay in self.impair[side](self.rng):
                    self.n += 1
                    self.copies[side] += 1
                    heapq.heappush(self.heap, (now + delay, self.n, side, packet))
                self.cv.notify()

    def _deliver(self) -> None:
        with self.cv:
            while not self.stop:
                if not self.heap:
                    self.cv.wait(0.5)
                    continue
                due, n, side, packet = self.heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self.cv.wait(wait)
                    continue
                heapq.heappop(self.heap)
                if n < self.last_arrival[side]:
                    self.overtaken[side] += 1
                self.last_arrival[side] = max(self.last_arrival[side], n)
                try:
                    os.write(self.fds[1 - side], packet)
                except OSError:
                    pass  # the namespace is gone, or the device is down: a lost packet

    def close(self) -> None:
        with self.cv:
            self.stop = True
            self.cv.notify()
        for fd in self.fds:
            os.close(fd)


def _tun(name: str) -> int:
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        # TUNSETIFF, IFF_TUN | IFF_NO_PI: bare IP packets
        fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0001 | 0x1000))
    except OSError as exc:
        pytest.fail(f"cannot make a TUN device ({exc}): needs root and /dev/net/tun")
    return fd


@contextmanager
def routed_hosts(to_receiver: Impair, to_sender: Impair) -> Iterator[tuple[str, str, str, _Router]]:
    """Two network namespaces joined through :class:`_Router`: (ns_recv, ns_send, addr, router)."""
    if os.geteuid() != 0:
        pytest.fail("this fault test makes network namespaces and needs root (CI runs as root)")
    tag = f"{os.getpid() % 100000}"
    a, b = f"rlq{tag}", f"rlt{tag}"
    octet = os.getpid() % 200 + 20
    addr_a, addr_b = f"10.232.{octet}.1", f"10.232.{octet}.2"
    for ns in (a, b):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    router = None
    try:
        _ip("netns", "add", a)
        _ip("netns", "add", b)
        fa, fb = _tun(f"{a}t"), _tun(f"{b}t")
        for ns, dev, mine, peer in ((a, f"{a}t", addr_a, addr_b), (b, f"{b}t", addr_b, addr_a)):
            _ip("link", "set", dev, "netns", ns)
            _ip("-n", ns, "addr", "add", mine, "peer", peer, "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        # side 0 reads what the receiver's namespace sends
        router = _Router((fa, fb), (to_sender, to_receiver))
        yield a, b, addr_a, router
    finally:
        if router is not None:
            router.close()
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _tcp_counters(ns: str) -> dict[str, int]:
    """The namespace's TcpExt counters (its own kernel's view of what arrived)."""
    text = subprocess.run(
        ["ip", "netns", "exec", ns, "cat", "/proc/net/netstat"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lines = [line.split() for line in text.splitlines() if line.startswith("TcpExt:")]
    names, values = lines[0], lines[1]
    return {k: int(v) for k, v in zip(names[1:], values[1:], strict=True)}


def _ship_and_apply(tmp_path: Path, ns_recv: str, ns_send: str, addr: str) -> dict[str, Any]:
    """Capture writes while a `ship` service sends to a `receive` service across the link;
    then the trail is sealed, the received copy must equal it segment by segment, and the
    received trail applied to DuckDB must equal the workload's replay."""
    trail, root = tmp_path / "src", tmp_path / "recv"
    c = tmp_path / "c"
    made = subprocess.run(
        [*ENTRY, "receive", "--init-certs", str(c), "--cert-name", addr],
        env=env_for(tmp_path), capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with open(tmp_path / "recv.err", "w") as err:
        receiver = subprocess.Popen(
            ["ip", "netns", "exec", ns_recv, *ENTRY, "receive", "--listen", f"{addr}:7433",
             "--trail", str(root), "--source-id", "src", "--cert", f"{c}/server.pem",
             "--key", f"{c}/server.key", "--ca", f"{c}/ca.pem"],
            cwd=tmp_path, env=env_for(tmp_path), stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    wl = Workload(seed=16)
    writer = TrailWriter(trail, source_id="src", segment_bytes=100_000)
    writer.append(wl.announce())
    for _ in range(200):
        writer.append(wl.transaction(30))
    writer.flush()
    with open(tmp_path / "ship.err", "w") as err:
        sender = subprocess.Popen(
            ["ip", "netns", "exec", ns_send, *ENTRY, "ship", "--to", f"{addr}:7433", "--trail",
             str(trail), "--cert", f"{c}/client.pem", "--key", f"{c}/client.key", "--ca",
             f"{c}/ca.pem"],
            cwd=tmp_path, env=env_for(tmp_path), stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    started = time.monotonic()
    try:
        for _ in range(40):  # capture goes on for 4 s: the open segment is tailed meanwhile
            for _ in range(20):
                writer.append(wl.transaction(30))
            writer.flush()
            time.sleep(0.1)
        writer.seal()
        writer.close()
        sent = digests(trail)
        assert len(sent) >= 8, sent
        deadline = time.monotonic() + 90
        while digests(root / "src") != sent:
            assert sender.poll() is None, (tmp_path / "ship.err").read_text()
            assert receiver.poll() is None, (tmp_path / "recv.err").read_text()
            assert time.monotonic() < deadline, (
                "not caught up: " + (tmp_path / "ship.err").read_text()[-2000:]
            )
            time.sleep(0.2)
        took = time.monotonic() - started
    finally:
        for proc in (sender, receiver):
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=30)
    # the received trail applied on the "target host"; the oracle is the workload's replay,
    # read back with plain DuckDB SELECTs
    target = tmp_path / "replica.duckdb"
    applied = subprocess.run(
        [*ENTRY, "-q", "apply", "--trail", str(root / "src"), "--target", f"duckdb://{target}",
         "--until-caught-up"],
        cwd=tmp_path, env=env_for(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    with duckdb.connect(str(target), read_only=True) as db:
        keyed = db.execute(
            "SELECT id, customer, amount, created, note FROM shop.orders ORDER BY id"
        ).fetchall()
        keyless = db.execute("SELECT kind, qty, tag FROM shop.events").fetchall()
    expected = wl.expected_keyed()
    assert len(keyed) == len(expected) > 5000
    assert [_norm(r) for r in keyed] == [_norm(r) for r in expected]
    assert sorted(map(_norm, keyless), key=repr) == sorted(
        map(_norm, wl.expected_keyless()), key=repr
    )
    shutil.rmtree(trail)  # a large tmp tree per test is not kept
    return {"seconds": took, "segments": len(sent)}


def _norm(row: tuple[Any, ...]) -> tuple[Any, ...]:
    out: list[Any] = []
    for v in row:
        if isinstance(v, decimal.Decimal):
            v = v.quantize(decimal.Decimal("0.01"))
        elif isinstance(v, dt.datetime):
            v = v.replace(tzinfo=None)
        out.append(v)
    return tuple(out)


def test_ten_percent_packet_loss(tmp_path: Path) -> None:
    """The kernel drops 10 % of the packets arriving in each namespace (both directions)."""
    with two_hosts() as (ns_recv, ns_send, addr, _link):
        for ns in (ns_recv, ns_send):
            # one packet per MTU, as on a wire (a veth otherwise passes 64 KB TSO packets)
            _ip("-n", ns, "link", "set", f"{ns}v", "gso_max_segs", "1")
            _iptables(ns, "-A", "INPUT", "-p", "tcp")  # counts every packet arriving
            _iptables(ns, "-A", "INPUT", "-p", "tcp", "-m", "statistic", "--mode", "random",
                      "--probability", "0.1", "-j", "DROP")  # fmt: skip
        before = _tcp_counters(ns_send)
        _ship_and_apply(tmp_path, ns_recv, ns_send, addr)
        after = _tcp_counters(ns_send)
        for ns in (ns_recv, ns_send):
            listing = _iptables(ns, "-L", "INPUT", "-v", "-x", "-n")
            rules = [ln.split() for ln in listing.splitlines()[2:] if ln.strip()]
            total, dropped = int(rules[0][0]), int(rules[1][0])
            # the loss happened, in both directions, at about the rate asked
            assert total > 200 and 0.04 < dropped / total < 0.2, listing
        assert (
            after["TCPLostRetransmit"] + after["TCPSackRecovery"] + after["TCPTimeouts"]
            > before["TCPLostRetransmit"] + before["TCPSackRecovery"] + before["TCPTimeouts"]
        )


def test_200ms_delay_with_jitter(tmp_path: Path) -> None:
    """Every packet, both ways, is delivered 150-250 ms after it was sent (uniform)."""

    def late(rng: random.Random) -> list[float]:
        return [0.2 + rng.uniform(-0.05, 0.05)]

    with routed_hosts(late, late) as (ns_recv, ns_send, addr, router):
        ran = _ship_and_apply(tmp_path, ns_recv, ns_send, addr)
        recv = _tcp_counters(ns_recv)
    assert router.packets[1] > 300 and router.copies == router.packets
    assert router.overtaken[1] > 10  # jitter reorders, as netem's does
    assert recv["TCPOFOQueue"] > 0, recv
    assert ran["seconds"] > 2


def test_reordering(tmp_path: Path) -> None:
    """A quarter of the packets each way are held back 10-30 ms: later packets overtake them."""

    def shuffle(rng: random.Random) -> list[float]:
        return [rng.uniform(0.01, 0.03)] if rng.random() < 0.25 else [0.0]

    with routed_hosts(shuffle, shuffle) as (ns_recv, ns_send, addr, router):
        _ship_and_apply(tmp_path, ns_recv, ns_send, addr)
        recv = _tcp_counters(ns_recv)
    assert router.overtaken[1] > 50, router.overtaken
    assert recv["TCPOFOQueue"] > 0, recv


def test_duplication(tmp_path: Path) -> None:
    """10 % of the packets each way arrive twice (the copy 0-5 ms after the original)."""

    def twice(rng: random.Random) -> list[float]:
        return [0.0, rng.uniform(0.0, 0.005)] if rng.random() < 0.1 else [0.0]

    with routed_hosts(twice, twice) as (ns_recv, ns_send, addr, router):
        _ship_and_apply(tmp_path, ns_recv, ns_send, addr)
        recv = _tcp_counters(ns_recv)
    assert router.copies[1] - router.packets[1] > 30, (router.copies, router.packets)
    # the receiving kernel saw segments it already had and said so (D-SACK)
    assert recv["TCPDSACKOldSent"] + recv["TCPDSACKOfoSent"] > 0, recv
