"""`redoline sync --half source` on the "source host" and `--half target` on the "target host",
as users run them: subprocesses, config files, services killed with -9 and restarted, then the
cron form (`--until-caught-up`) of both halves. The oracle reads both databases row by row
through their drivers (no redoline code, no verify)."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg
import pymysql
import pytest

from connectors.endpoint import Endpoint
from tests.ship.conftest import ENTRY, Certs, digests, env_for, redoline

pytestmark = [pytest.mark.mariadb]

SOURCE_ID = "shop"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mysql(db: Endpoint) -> pymysql.connections.Connection:
    return pymysql.connect(
        host=db.host, port=db.port, user="root", database=db.database, autocommit=True
    )


@dataclass
class Hosts:
    source: Path
    target: Path
    shop: Path  # the source host's config
    dr: Path  # the target host's config
    target_url: str
    #: (table) -> rows of the target, sorted, read through its own driver
    read_target: Callable[[str], list[tuple[object, ...]]]

    @property
    def trail(self) -> Path:
        return self.source / "trail"

    @property
    def received(self) -> Path:
        return self.target / "received" / SOURCE_ID


class Half:
    """One half running as a service (a subprocess), as systemd would run it."""

    def __init__(self, cwd: Path, config: Path, half: str, *extra: str) -> None:
        self.log = cwd / f"{half}.{time.monotonic_ns()}.err"
        self.out = self.log.with_suffix(".out")
        with open(self.log, "w") as err, open(self.out, "w") as out:
            self.proc = subprocess.Popen(
                [*ENTRY, "sync", "-c", str(config), "--half", half, *extra],
                cwd=cwd,
                env=env_for(cwd),
                stdout=out,
                stderr=err,
                text=True,
            )

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)

    def term(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("did not stop on SIGTERM: " + self.log.read_text()) from None

    def alive(self) -> None:
        assert self.proc.poll() is None, self.log.read_text()


@pytest.fixture
def halves() -> Iterator[list[Half]]:
    started: list[Half] = []
    yield started
    for h in started:
        if h.proc.poll() is None:
            h.proc.kill()
            h.proc.wait()


def _write_configs(
    tmp_path: Path, source: Endpoint, target_url: str, certs: Certs, port: int
) -> tuple[Path, Path, Path, Path]:
    src_host, dst_host = tmp_path / "source-host", tmp_path / "target-host"
    src_host.mkdir()
    dst_host.mkdir()
    c = certs.dir
    shop = src_host / "shop.toml"
    shop.write_text(
        f"""
[source]
url = "mariadb://root@{source.host}:{source.port}/{source.database}"
id = "{SOURCE_ID}"

[trail]
dir = "{src_host / "trail"}"
segment_mb = 0.03

[ship]
to = "127.0.0.1:{port}"
cert = "{c}/client.pem"
key = "{c}/client.key"
ca = "{c}/ca.pem"

[state]
dir = "{src_host / "state"}"
"""
    )
    dr = dst_host / "dr.toml"
    dr.write_text(
        f"""
[target]
url = "{target_url}"

[receive]
listen = "127.0.0.1:{port}"
dir = "{dst_host / "received"}"
sources = ["{SOURCE_ID}"]
cert = "{c}/server.pem"
key = "{c}/server.key"
ca = "{c}/ca.pem"
retry_for = "60s"

[state]
dir = "{dst_host / "state"}"
"""
    )
    return src_host, dst_host, shop, dr


@pytest.fixture(params=["duckdb", "postgresql"])
def hosts(
    request: pytest.FixtureRequest, mysql_db: Endpoint, tmp_path: Path, certs: Certs
) -> Hosts:
    if request.param == "duckdb":
        path = tmp_path / "replica.duckdb"
        target_url = f"duckdb://{path}"

        def read(table: str) -> list[tuple[object, ...]]:
            with duckdb.connect(str(path), read_only=True) as db:
                rows = db.execute(f'SELECT * FROM "{mysql_db.database}"."{table}"').fetchall()
            return sorted((tuple(r) for r in rows), key=repr)
    else:
        pg: Endpoint = request.getfixturevalue("pg_db")
        target_url = f"postgresql://postgres@{pg.host}:{pg.port}/{pg.database}"

        def read(table: str) -> list[tuple[object, ...]]:
            with psycopg.connect(
                host=pg.host, port=pg.port, user="postgres", dbname=pg.database
            ) as conn:
                rows = conn.execute(f'SELECT * FROM "{mysql_db.database}"."{table}"').fetchall()
            return sorted((tuple(r) for r in rows), key=repr)

    src, dst, shop, dr = _write_configs(tmp_path, mysql_db, target_url, certs, _free_port())
    return Hosts(src, dst, shop, dr, target_url, read)


def _source_rows(db: Endpoint, table: str) -> list[tuple[object, ...]]:
    conn = _mysql(db)
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM `{table}`")
        rows = sorted((tuple(r) for r in cur.fetchall()), key=repr)
    conn.close()
    return rows


def _workload(db: Endpoint, stop: threading.Event, seed: int) -> int:
    """Random OLTP transactions on a keyed and a keyless table until ``stop``."""
    rnd = random.Random(seed)
    conn = pymysql.connect(host=db.host, port=db.port, user="root", database=db.database)
    done = 0
    next_id = 1000
    with conn.cursor() as cur:
        while not stop.is_set():
            for _ in range(rnd.randint(1, 5)):
                pick = rnd.random()
                if pick < 0.45:
                    next_id += 1
                    cur.execute(
                        "INSERT INTO items VALUES (%s, %s, %s)",
                        (next_id, f"n{next_id}-" + "x" * rnd.randint(0, 200), rnd.randint(0, 99)),
                    )
                elif pick < 0.75:
                    cur.execute(
                        "UPDATE items SET qty = qty + 1, name = CONCAT(LEFT(name, 150), 'u') "
                        "WHERE id = %s",
                        (rnd.randint(1, next_id),),
                    )
                elif pick < 0.85:
                    cur.execute("DELETE FROM items WHERE id = %s", (rnd.randint(1, next_id),))
                else:
                    cur.execute(
                        "INSERT INTO notes VALUES (%s, %s)", (rnd.randint(0, 9), f"note {done}")
                    )
            conn.commit()
            done += 1
            time.sleep(rnd.random() * 0.01)
    conn.close()
    return done


def _wait_for(what: str, check: Callable[[], bool], timeout: float, *logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: " + "\n".join(p.read_text()[-3000:] for p in logs))
        time.sleep(0.1)


def test_two_host_sync_with_kills_then_cron(
    hosts: Hosts, mysql_db: Endpoint, halves: list[Half]
) -> None:
    conn = _mysql(mysql_db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(255), qty INT)")
        cur.execute("CREATE TABLE notes (k INT, body VARCHAR(100))")  # no key
        cur.executemany(
            "INSERT INTO items VALUES (%s, %s, %s)", [(i, f"item-{i}", i % 7) for i in range(300)]
        )
        cur.execute("INSERT INTO notes VALUES (1, 'first'), (1, 'first'), (2, NULL)")
    conn.close()
    # the initial load, once, from the source host (it reaches both databases)
    loaded = redoline(
        "snapshot", "-c", str(hosts.shop), "--target", hosts.target_url, cwd=hosts.source
    )
    assert loaded.returncode == 0, loaded.stderr

    halves.append(target := Half(hosts.target, hosts.dr, "target"))
    halves.append(source := Half(hosts.source, hosts.shop, "source"))
    stop = threading.Event()
    counted: list[int] = []
    worker = threading.Thread(
        target=lambda: counted.append(_workload(mysql_db, stop, seed=16)), daemon=True
    )
    worker.start()
    try:
        # kill -9 the source half mid-stream (capture and ship both in flight), restart it
        _wait_for(
            "segments received",
            lambda: len(digests(hosts.received)) >= 2,
            60,
            source.log,
            target.log,
        )
        source.kill9()
        halves.append(source := Half(hosts.source, hosts.shop, "source"))
        time.sleep(1.0)
        # then the target half (receive and apply both in flight), restart it
        held = len(digests(hosts.received))
        _wait_for(
            "more segments received",
            lambda: len(digests(hosts.received)) > held,
            60,
            source.log,
            target.log,
        )
        target.kill9()
        time.sleep(0.5)
        halves.append(target := Half(hosts.target, hosts.dr, "target"))
        time.sleep(2.0)
        source.alive()
        target.alive()
    finally:
        stop.set()
        worker.join(30)
    assert counted and counted[0] > 50, counted
    time.sleep(1.0)
    # services stop on SIGTERM with 130 (systemd: SuccessExitStatus=130)
    assert source.term() == 130, source.log.read_text()
    assert target.term() == 130, target.log.read_text()

    # the cron form: the target half waits for the sender; both exit 0 once caught up
    cron_target = Half(hosts.target, hosts.dr, "target", "--until-caught-up", "--json")
    halves.append(cron_target)
    shipped = redoline(
        "sync", "-c", str(hosts.shop), "--half", "source", "--until-caught-up", "--json",
        cwd=hosts.source,
    )  # fmt: skip
    assert shipped.returncode == 0, shipped.stderr
    assert cron_target.proc.wait(timeout=120) == 0, cron_target.log.read_text()
    report = json.loads(cron_target.out.read_text())
    assert report["half"] == "target" and report["caught_up"] is True
    assert report["receive"]["sender_caught_up"] is True
    sent = json.loads(shipped.stdout)
    assert sent["half"] == "source" and sent["caught_up"] is True

    # the received trail is the sent one, byte for byte (open segment included)
    assert digests(hosts.received, sealed_only=False) == digests(hosts.trail, sealed_only=False)
    assert len(digests(hosts.trail)) >= 4
    # and the target equals the source, row by row
    for table in ("items", "notes"):
        expected = _source_rows(mysql_db, table)
        assert hosts.read_target(table) == expected, table
    assert len(_source_rows(mysql_db, "items")) > 300


def test_cron_halves_exit_codes(
    mysql_db: Endpoint, tmp_path: Path, certs: Certs, halves: list[Half]
) -> None:
    """A target half with no sender gives up with 75 after [receive] retry_for; a source half
    whose receiver is unreachable gives up with 75 after [ship] retry_for; a bad --half is 2."""
    port = _free_port()
    src, dst, shop, dr = _write_configs(
        tmp_path, mysql_db, f"duckdb://{tmp_path / 'r.duckdb'}", certs, port
    )
    dr.write_text(dr.read_text().replace('retry_for = "60s"', 'retry_for = "1s"'))
    shop.write_text(shop.read_text().replace("[ship]\n", '[ship]\nretry_for = "1s"\n'))
    started = time.monotonic()
    waited = redoline("sync", "-c", str(dr), "--half", "target", "--until-caught-up", cwd=dst)
    assert waited.returncode == 75, waited.stderr
    assert "no sender finished caught up within 1 s" in waited.stderr
    assert time.monotonic() - started < 30
    unreachable = redoline(
        "sync", "-c", str(shop), "--half", "source", "--until-caught-up", cwd=src
    )
    assert unreachable.returncode == 75, unreachable.stderr
    assert "shipping to 127.0.0.1" in unreachable.stderr
    bad = redoline("sync", "-c", str(shop), "--half", "middle", cwd=src)
    assert bad.returncode == 2 and "--half must be source or target" in bad.stderr
    refused = redoline("sync", "-c", str(shop), "--half", "source", "--until-op", "5", cwd=src)
    assert refused.returncode == 2 and "--until-op: not used by" in refused.stderr
