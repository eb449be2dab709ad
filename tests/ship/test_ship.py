"""`redoline receive` + `redoline ship` as users run them: real processes, TLS 1.3, the
received trail byte-identical (SHA-256 per segment), refusals with exit code and message on
both sides, mid-segment resume after kill -9 of either side."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from capture.trail import TrailWriter, consumers, list_segment_files
from ship import shipping_lag
from tests.capture.helpers import make_txn
from tests.ship.conftest import (
    ENTRY,
    Certs,
    ReceiverProc,
    digests,
    env_for,
    first_error,
    redoline,
    start_receiver,
    write_trail,
)


def _ship(
    r: ReceiverProc, trail: Path, certs: Certs, *extra: str
) -> subprocess.CompletedProcess[str]:
    return redoline(
        "ship",
        "--to",
        r.to,
        "--trail",
        str(trail),
        *certs.ship_args(),
        "--until-caught-up",
        *extra,
        cwd=trail.parent,
    )


def test_ship_until_caught_up_is_byte_identical_and_acknowledged(
    tmp_path: Path, certs: Certs, receivers: list[ReceiverProc]
) -> None:
    trail = tmp_path / "src"
    write_trail(trail, 1, 300)
    r = start_receiver(tmp_path, tmp_path / "recv", "--source-id", "src", *certs.receive_args())
    receivers.append(r)
    done = _ship(r, trail, certs)
    assert done.returncode == 0, done.stderr
    assert "caught up" in done.stdout
    sent = digests(trail, sealed_only=False)
    got = digests(tmp_path / "recv" / "src", sealed_only=False)
    assert len(sent) >= 4 and got == sent  # sealed segments and the open one's bytes
    assert (tmp_path / "recv" / "src" / "trail-start.json").read_bytes() == (
        trail / "trail-start.json"
    ).read_bytes()
    # the acknowledgement is a retention consumer: up to the last sealed segment's last op
    sealed = [p for p, s in list_segment_files(trail).values() if s]
    from capture.trail._format import parse_trailer

    last_op = parse_trailer(sealed[-1].read_bytes(), sealed[-1].name).last_op
    assert consumers(trail) == {"ship.127.0.0.1_" + str(r.port): last_op}
    lag = shipping_lag(trail)
    assert [(x["lag_segments"], x["lag_bytes"]) for x in lag] == [(0, 0)]
    # nothing new: a second run is a no-op that still exits 0 (idempotent)
    again = _ship(r, trail, certs)
    assert again.returncode == 0, again.stderr
    assert digests(tmp_path / "recv" / "src", sealed_only=False) == sent
    # new transactions and a seal: shipped, and lag was visible before
    write_trail(trail, 301, 50, seal=True)
    assert shipping_lag(trail)[0]["lag_bytes"] > 0
    third = _ship(r, trail, certs)
    assert third.returncode == 0, third.stderr
    assert digests(tmp_path / "recv" / "src", sealed_only=False) == digests(trail, False)
    assert r.stop() == 130
    assert "received" in r.stderr()


def test_receiver_until_caught_up_exits_0_for_cron(tmp_path: Path, certs: Certs) -> None:
    trail = tmp_path / "src"
    write_trail(trail, 1, 100, seal=True)
    r = start_receiver(
        tmp_path,
        tmp_path / "recv",
        "--source-id",
        "src",
        "--until-caught-up",
        *certs.receive_args(),
    )
    done = _ship(r, trail, certs)
    assert done.returncode == 0, done.stderr
    assert r.proc.wait(timeout=20) == 0, r.stderr()
    assert digests(tmp_path / "recv" / "src") == digests(trail)


def test_refusals_name_the_reason_on_both_sides_and_write_nothing(
    tmp_path: Path, certs: Certs, receivers: list[ReceiverProc]
) -> None:
    trail = tmp_path / "src"
    write_trail(trail, 1, 50)
    (tmp_path / "token").write_text("right-token\n")
    (tmp_path / "wrong").write_text("wrong-token\n")
    root = tmp_path / "recv"
    d = certs.dir
    r = start_receiver(
        tmp_path,
        root,
        "--source-id",
        "other",
        "--cert",
        f"{d}/server.pem",
        "--key",
        f"{d}/server.key",
        "--ca",
        f"{d}/ca.pem",
        "--token-file",
        str(tmp_path / "token"),
    )
    receivers.append(r)
    ca = ["--ca", f"{d}/ca.pem"]

    def ship(*args: str) -> subprocess.CompletedProcess[str]:
        return redoline(
            "ship", "--to", r.to, "--trail", str(trail), "--until-caught-up", *args, cwd=tmp_path
        )

    # wrong token (no client certificate)
    bad = ship(*ca, "--token-file", str(tmp_path / "wrong"))
    assert bad.returncode == 3, bad.stderr
    assert "authentication failed: wrong token" in first_error(bad.stderr)
    # right token, but the receiver was not told to accept source id "src"
    bad = ship(*ca, "--token-file", str(tmp_path / "token"))
    assert bad.returncode == 3, bad.stderr
    assert "source id 'src' is not accepted" in first_error(bad.stderr)
    # a receiver certificate the sender cannot verify (another CA)
    other = redoline("receive", "--init-certs", str(tmp_path / "other"), cwd=tmp_path)
    assert other.returncode == 0
    bad = ship("--ca", str(tmp_path / "other" / "ca.pem"), "--token-file", str(tmp_path / "token"))
    assert bad.returncode == 3, bad.stderr
    assert "certificate could not be verified" in first_error(bad.stderr)
    # a client certificate from another CA
    o = tmp_path / "other"
    bad = ship(*ca, "--cert", f"{o}/client.pem", "--key", f"{o}/client.key")
    assert bad.returncode == 3, bad.stderr
    assert "rejected this sender's client certificate" in first_error(bad.stderr)
    # on the first connection: the receiver's TLS alert reaches the sender (it was lost to a
    # reset now and then, and the sender retried a network fault for up to a minute)
    assert "reconnecting" not in bad.stderr, bad.stderr
    # plain TCP
    with socket.create_connection(("127.0.0.1", r.port), timeout=10) as s:
        s.sendall(b"HELLO plain\n")
        try:
            answer = s.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # closed without a word of protocol
    time.sleep(0.3)
    log = r.stderr()
    assert "authentication failed: wrong token" in log
    assert "source id 'src' is not accepted" in log
    assert "TLS handshake failed" in log or "refused" in log
    assert "client certificate was not accepted" in log
    assert "plain TCP (not TLS)" in log
    assert not root.exists() or list(root.iterdir()) == []  # nothing written
    assert r.proc.poll() is None  # a service survives bad senders


def test_receiver_without_sender_authentication_refuses_to_start(
    tmp_path: Path, certs: Certs
) -> None:
    d = certs.dir
    bad = redoline(
        "receive",
        "--trail",
        str(tmp_path / "r"),
        "--source-id",
        "src",
        "--cert",
        f"{d}/server.pem",
        "--key",
        f"{d}/server.key",
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert "must authenticate senders" in first_error(bad.stderr)


def test_a_number_held_with_other_content_is_refused_naming_both_digests(
    tmp_path: Path, certs: Certs, receivers: list[ReceiverProc]
) -> None:
    trail = tmp_path / "src"
    write_trail(trail, 1, 100, seal=True)
    r = start_receiver(tmp_path, tmp_path / "recv", "--source-id", "src", *certs.receive_args())
    receivers.append(r)
    assert _ship(r, trail, certs).returncode == 0
    held = sorted((tmp_path / "recv" / "src").glob("*.seg"))[-1]
    data = bytearray(held.read_bytes())
    data[-40] ^= 0x01  # inside the trailer's digest: other content under the same number
    held.write_bytes(bytes(data))
    import hashlib

    theirs = hashlib.sha256(bytes(data)).hexdigest()
    mine = hashlib.sha256((trail / held.name).read_bytes()).hexdigest()
    bad = _ship(r, trail, certs)
    assert bad.returncode == 7, bad.stderr
    line = first_error(bad.stderr)
    assert "other content" in line and theirs in line and mine in line
    time.sleep(0.3)
    assert theirs in r.stderr() and mine in r.stderr()


def test_kill_9_receiver_then_sender_resume_mid_segment(
    tmp_path: Path, certs: Certs, receivers: list[ReceiverProc]
) -> None:
    trail = tmp_path / "src"
    root = tmp_path / "recv"
    writer = TrailWriter(trail, source_id="src", segment_bytes=10_000_000)
    op = 0

    def commit(n: int) -> None:
        nonlocal op
        for _ in range(n):
            op += 1
            writer.append(make_txn(op, 3))
        writer.flush()

    commit(20)
    r = start_receiver(tmp_path, root, "--source-id", "src", *certs.receive_args())
    receivers.append(r)
    sender = subprocess.Popen(
        [*ENTRY, "ship", "--to", r.to, "--trail", str(trail), *certs.ship_args()],
        cwd=tmp_path,
        env=env_for(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    received = root / "src" / "0000000000.open"

    def wait_size(at_least: int) -> int:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if received.exists() and received.stat().st_size >= at_least:
                return received.stat().st_size
            time.sleep(0.02)
        raise AssertionError(f"received segment did not reach {at_least} bytes")

    # the open segment is tailed: what capture flushed arrives within a second
    t0 = time.monotonic()
    wait_size((trail / "0000000000.open").stat().st_size)
    assert time.monotonic() - t0 < 5
    r.kill9()
    partial = received.stat().st_size
    commit(20)
    r2 = start_receiver(tmp_path, root, "--source-id", "src", *certs.receive_args(), port=r.port)
    receivers.append(r2)
    wait_size((trail / "0000000000.open").stat().st_size)
    assert f"resuming at segment 0 offset {partial}" in r2.stderr()
    assert partial > 0
    # the open segment is tailed: each flushed transaction arrives well under a second later
    lags = []
    for _ in range(10):
        commit(1)
        t0 = time.monotonic()
        wait_size((trail / "0000000000.open").stat().st_size)
        lags.append(time.monotonic() - t0)
    assert sorted(lags)[5] < 0.5, lags
    # now the sender dies; more commits; a cron-style run resumes mid-segment
    sender.kill()  # SIGKILL
    sender.communicate()
    partial = received.stat().st_size
    commit(30)
    writer.seal()
    writer.close()
    done = _ship(r2, trail, certs)
    assert done.returncode == 0, done.stderr
    assert f"resuming at segment 0 offset {partial}" in r2.stderr()
    assert digests(root / "src") == digests(trail)
    assert "0000000000.seg" in digests(trail)


def test_one_source_to_two_receivers_each_acknowledges(
    tmp_path: Path, certs: Certs, receivers: list[ReceiverProc]
) -> None:
    trail = tmp_path / "src"
    write_trail(trail, 1, 120, seal=True)
    a = start_receiver(tmp_path, tmp_path / "a", "--source-id", "src", *certs.receive_args())
    b = start_receiver(tmp_path, tmp_path / "b", "--source-id", "src", *certs.receive_args())
    receivers += [a, b]
    done = redoline(
        "ship",
        "--to",
        a.to,
        "--to",
        b.to,
        "--trail",
        str(trail),
        *certs.ship_args(),
        "--until-caught-up",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert digests(tmp_path / "a" / "src") == digests(trail) == digests(tmp_path / "b" / "src")
    assert set(consumers(trail)) == {f"ship.127.0.0.1_{a.port}", f"ship.127.0.0.1_{b.port}"}
    states = [json.loads(p.read_text()) for p in trail.glob("ship-*.json")]
    assert len(states) == 2


def test_two_sources_into_one_receiver(
    tmp_path: Path, certs: Certs, receivers: list[ReceiverProc]
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    with TrailWriter(one, source_id="alpha", segment_bytes=4000) as w:
        for i in range(1, 60):
            w.append(make_txn(i))
    with TrailWriter(two, source_id="beta", segment_bytes=4000) as w:
        for i in range(1, 80):
            w.append(make_txn(i))
    root = tmp_path / "recv"
    r = start_receiver(
        tmp_path, root, "--source-id", "alpha", "--source-id", "beta", *certs.receive_args()
    )
    receivers.append(r)
    for trail in (one, two):
        done = _ship(r, trail, certs)
        assert done.returncode == 0, done.stderr
    assert digests(root / "alpha", False) == digests(one, False)
    assert digests(root / "beta", False) == digests(two, False)


def test_retention_keeps_every_segment_no_receiver_confirmed(
    tmp_path: Path, certs: Certs, receivers: list[ReceiverProc]
) -> None:
    from capture.retention import RetentionPolicy, plan_retention
    from capture.trail import register_consumer

    trail = tmp_path / "src"
    write_trail(trail, 1, 200, seal=True)
    register_consumer(trail, "target.local", 10**9)  # apply on the source host is done
    assert plan_retention(trail, RetentionPolicy()).delete  # without shipping: prunable
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    cfg = tmp_path / "ship.toml"
    cfg.write_text("[ship]\nretry_for = 1\n")
    down = redoline(
        "ship", "--to", f"127.0.0.1:{closed}", "--trail", str(trail), *certs.ship_args(),
        "--until-caught-up", "--name", "dr1", "-c", str(cfg), cwd=tmp_path,
    )  # fmt: skip
    assert down.returncode == 75, down.stderr
    assert "failed for 1 s" in first_error(down.stderr)
    assert plan_retention(trail, RetentionPolicy()).delete == []  # held for the receiver
    r = start_receiver(tmp_path, tmp_path / "recv", "--source-id", "src", *certs.receive_args())
    receivers.append(r)
    assert _ship(r, trail, certs, "--name", "dr1").returncode == 0  # the same destination
    plan = plan_retention(trail, RetentionPolicy())
    assert len(plan.delete) == len(digests(trail)) - 1  # all but the newest sealed one


def test_ship_metrics_file_counts_what_the_receiver_acknowledged(
    tmp_path: Path, certs: Certs, receivers: list[ReceiverProc]
) -> None:
    """`ship --until-caught-up --metrics-file`: the textfile says how many segments and bytes
    the receiver acknowledged (compared with the segment files themselves), and the stage's
    progress record says it finished."""
    trail = tmp_path / "src"
    write_trail(trail, 1, 300, seal=True)
    r = start_receiver(tmp_path, tmp_path / "recv", "--source-id", "src", *certs.receive_args())
    receivers.append(r)
    prom = tmp_path / "ship.prom"
    done = _ship(r, trail, certs, "--metrics-file", str(prom))
    assert done.returncode == 0, done.stderr
    sealed = [p for p, s in list_segment_files(trail).values() if s]
    values = {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in prom.read_text().splitlines()
        if line and not line.startswith("#")
    }
    (segments,) = [v for k, v in values.items() if k.startswith("redoline_shipped_segments_total")]
    (sent,) = [v for k, v in values.items() if k.startswith("redoline_shipped_bytes_total")]
    assert segments == len(sealed)
    assert sent >= sum(p.stat().st_size for p in sealed)
    record = json.loads(
        next((trail.parent / ".redoline" / "progress").glob("ship-*.json")).read_text()
    )
    assert record["state"] == "finished" and record["lag_bytes"] == 0
    assert r.stop() == 130
