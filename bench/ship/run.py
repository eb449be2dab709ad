"""Shipping throughput beside a raw TLS 1.3 copy of the same bytes, and added lag at a steady
transaction rate.

1. A trail of ``--mb`` MB (incompressible row images, 10 MB segments) is written once.
2. Raw TLS: ``openssl s_server`` receives the concatenated segment bytes from ``openssl
   s_client`` (TLS 1.3, the same certificates); MB/s from the client's start until the server's
   output holds every byte.
3. Shipping: `redoline receive` (a separate process) and :func:`ship.run_ship` until caught up
   (in this process, so interpreter start-up is not counted); MB/s until the last segment is
   acknowledged (received, SHA-256 checked, fsynced, renamed).
4. Lag: a writer commits ``--tps`` transactions per second (flushed each), a `redoline ship`
   service tails the open segment; lag of a transaction = the time its last byte appears in
   the received ``.open`` minus the time its flush returned. p50 / p99 over ``--lag-seconds``.

    python -m bench.ship.run [--mb 1000] [--tps 1000] [--lag-seconds 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from capture.trail import TrailWriter, list_segment_files
from connectors.model import Change, Op, TableId, Transaction, Value
from ship import ShipOptions, Token, client_context, init_certs, run_ship

__all__ = ["main"]

ENTRY = [sys.executable, "-c", "from toolkit_cli.app import main; main()"]
TABLE = TableId("bench", "blobs")


def _txn(i: int, payload: bytes) -> Transaction:
    row: dict[str, Value] = {"id": i, "data": payload}
    return Transaction(
        xid=str(i),
        position=f"bin.000001:{i}",
        commit_time=dt.datetime.now(dt.UTC),
        origin="",
        changes=[Change(Op.INSERT, TABLE, 1, {"id": i}, None, row)],
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _receiver(root: Path, certs: Path, cwd: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    out = cwd / f"recv-{port}.out"
    env = {**os.environ, "REDOLINE_CONFIG": str(cwd / "none.toml")}
    (cwd / "none.toml").touch()
    with open(out, "wb") as stdout:
        proc = subprocess.Popen(
            [*ENTRY, "-q", "receive", "--listen", f"127.0.0.1:{port}", "--trail", str(root),
             "--source-id", "bench", "--cert", str(certs / "server.pem"), "--key",
             str(certs / "server.key"), "--ca", str(certs / "ca.pem")],
            cwd=cwd, env=env, stdout=stdout, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    while not re.search(r"receiving on", out.read_text()):
        if proc.poll() is not None:
            raise SystemExit("the receiver did not start")
        time.sleep(0.05)
    return proc, port


def _options(trail: Path, port: int, certs: Path, **kw: object) -> ShipOptions:
    ctx = client_context(certs / "client.pem", certs / "client.key", certs / "ca.pem")
    return ShipOptions(
        trail=trail, host="127.0.0.1", port=port, context=ctx, token=Token(),
        source_id="bench", name=f"bench{port}", **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def make_trail(trail: Path, mb: int) -> int:
    rng = os.urandom
    with TrailWriter(trail, source_id="bench", segment_bytes=10_000_000) as writer:
        i = 0
        while True:
            i += 1
            writer.append(_txn(i, rng(256 * 1024)))
            if (
                i % 40 == 0
                and sum(p.stat().st_size for p, _ in list_segment_files(trail).values())
                >= mb * 1_000_000
            ):
                break  # fmt: skip
        writer.seal()
    return sum(p.stat().st_size for p, _ in list_segment_files(trail).values())


def raw_tls(trail: Path, certs: Path, work: Path) -> float:
    """Seconds for openssl s_client -> s_server to move the trail's bytes over TLS 1.3."""
    blob = work / "all.bin"
    with open(blob, "wb") as out:
        for path, _ in list_segment_files(trail).values():
            with open(path, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    total = blob.stat().st_size
    port = _free_port()
    sink = work / "sink.bin"
    with open(sink, "wb") as sink_f:
        server = subprocess.Popen(
            ["openssl", "s_server", "-accept", str(port), "-cert", str(certs / "server.pem"),
             "-key", str(certs / "server.key"), "-tls1_3", "-quiet", "-naccept", "1"],
            # s_server ends at EOF on its stdin: a pipe kept open until we are done
            stdout=sink_f, stderr=subprocess.DEVNULL, stdin=subprocess.PIPE,
        )  # fmt: skip
    time.sleep(0.5)
    start = time.perf_counter()
    with open(blob, "rb") as src:
        client = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-quiet",
             "-CAfile", str(certs / "ca.pem")],  # -quiet: stays connected after EOF
            stdin=src, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        while sink.stat().st_size < total:
            if server.poll() is not None:
                break
            time.sleep(0.002)
        elapsed = time.perf_counter() - start
    for proc in (client, server):
        proc.send_signal(signal.SIGTERM)
        proc.communicate()
    got = sink.stat().st_size
    blob.unlink()
    sink.unlink()
    if got < total:
        raise SystemExit(f"raw TLS copy moved {got} of {total} bytes")
    return elapsed


def durable_copy(trail: Path, work: Path) -> float:
    """Seconds to write the trail's segments to new files the way the receiver makes them
    durable (write, fsync, rename, fsync the directory), with no network and no checks:
    the floor for any receiver that acknowledges only what is on disk. The raw TLS copy
    above writes to the page cache only."""
    out = work / "durable"
    out.mkdir()
    dfd = os.open(out, os.O_RDONLY)
    start = time.perf_counter()
    for path, _ in list_segment_files(trail).values():
        tmp = out / (path.name + ".tmp")
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        os.rename(tmp, out / path.name)
        os.fsync(dfd)
    elapsed = time.perf_counter() - start
    os.close(dfd)
    shutil.rmtree(out)
    return elapsed


def ship_once(trail: Path, certs: Path, work: Path) -> float:
    root = work / "recv"
    proc, port = _receiver(root, certs, work)
    try:
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        result = run_ship(_options(trail, port, certs, until_caught_up=True))
        elapsed = time.perf_counter() - start
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, _, usage = os.wait4(proc.pid, 0)
    # where the time goes: CPU seconds of each side against the wall clock (a shared machine
    # shows up as CPU well below wall time)
    sender_cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    print(f"ship: {elapsed:.2f} s wall; CPU: sender {sender_cpu:.2f} s, receiver "
          f"{usage.ru_utime + usage.ru_stime:.2f} s (start-up included)")  # fmt: skip
    assert result.caught_up
    for path, _ in list_segment_files(trail).values():
        if (root / "bench" / path.name).stat().st_size != path.stat().st_size:
            raise SystemExit(f"{path.name} was not shipped whole")
    shutil.rmtree(root)
    return elapsed


def lag(certs: Path, work: Path, tps: int, seconds: float) -> list[float]:
    trail = work / "lag-trail"
    root = work / "lag-recv"
    proc, port = _receiver(root, certs, work)
    stop = threading.Event()
    marks: list[tuple[int, float]] = []  # (source size after the flush, time)
    writer = TrailWriter(trail, source_id="bench", segment_bytes=1_000_000_000)
    writer.append(_txn(0, b"x"))
    writer.flush()
    shipper = threading.Thread(
        target=run_ship, args=(_options(trail, port, certs, stop_event=stop),), daemon=True
    )
    shipper.start()
    received = root / "bench" / "0000000000.open"
    seen: list[tuple[int, float]] = []

    def watch() -> None:
        last = -1
        while not stop.is_set():
            try:
                size = received.stat().st_size
            except FileNotFoundError:
                size = 0
            if size != last:
                seen.append((size, time.perf_counter()))
                last = size
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    source = trail / "0000000000.open"
    payload = os.urandom(200)
    t0 = time.perf_counter()
    n = int(tps * seconds)
    for i in range(1, n + 1):
        due = t0 + i / tps
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        writer.append(_txn(i, payload))
        writer.flush()
        marks.append((source.stat().st_size, time.perf_counter()))
    time.sleep(1.0)
    stop.set()
    shipper.join(10)
    watcher.join(5)
    writer.close()
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    lags = []
    j = 0
    for size, at in marks:
        while j < len(seen) and seen[j][0] < size:
            j += 1
        if j == len(seen):
            raise SystemExit("a transaction never arrived")
        lags.append(max(0.0, seen[j][1] - at))
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1000, help="trail size in MB")
    parser.add_argument("--tps", type=int, default=1000)
    parser.add_argument("--lag-seconds", type=float, default=10.0)
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds (raw TLS, ship, lag each); medians shown"
    )
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: tmp)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ship-", dir=args.dir))
    try:
        certs = work / "certs"
        init_certs(certs, [])
        trail = work / "trail"
        t = time.perf_counter()
        total = make_trail(trail, args.mb)
        print(f"trail: {total / 1e6:.0f} MB in {len(list_segment_files(trail))} segments "
              f"(written in {time.perf_counter() - t:.1f} s)")  # fmt: skip
        rows: list[tuple[float, float, float, float, float]] = []
        for r in range(1, args.repeat + 1):
            raw = raw_tls(trail, certs, work)
            disk = durable_copy(trail, work)
            shipped = ship_once(trail, certs, work)
            raw_rate, ship_rate = total / raw / 1e6, total / shipped / 1e6
            disk_rate = total / disk / 1e6
            print(f"round {r}: raw TLS 1.3 copy (openssl s_client -> s_server): "
                  f"{raw_rate:.0f} MB/s; durable local copy (write+fsync per segment): "
                  f"{disk_rate:.0f} MB/s; redoline ship -> receive (acknowledged, fsynced): "
                  f"{ship_rate:.0f} MB/s = {100 * ship_rate / raw_rate:.0f}% of raw TLS, "
                  f"{100 * ship_rate / min(raw_rate, disk_rate):.0f}% of the slower of "
                  "the two")  # fmt: skip
            lags = sorted(lag(certs, work, args.tps, args.lag_seconds))
            p50 = statistics.median(lags) * 1000
            p99 = lags[int(len(lags) * 0.99) - 1] * 1000
            print(f"round {r}: added lag at {args.tps} txn/s over {len(lags)} transactions: "
                  f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lags[-1] * 1000:.1f} ms")  # fmt: skip
            rows.append((raw_rate, disk_rate, ship_rate, p50, p99))
        if args.repeat > 1:
            med = [statistics.median(col) for col in zip(*rows, strict=True)]
            ratio = statistics.median(s / r for r, _, s, _, _ in rows)
            floor = statistics.median(s / min(r, d) for r, d, s, _, _ in rows)
            print(f"median of {args.repeat}: raw TLS {med[0]:.0f} MB/s, durable copy "
                  f"{med[1]:.0f} MB/s, ship {med[2]:.0f} MB/s; ship/raw TLS {100 * ratio:.0f}%, "
                  f"ship/slower of the two {100 * floor:.0f}% (per round); lag p50 "
                  f"{med[3]:.1f} ms, p99 {med[4]:.1f} ms")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
