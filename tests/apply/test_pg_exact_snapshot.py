"""PostgreSQL sources: every snapshot sits at an exact point of the slot's stream.

* The pipeline's slot already exists (``redoline capture`` ran first, then ``sync``): the
  snapshot used to be a REPEATABLE READ taken after the slot's confirmed position, and the
  window between was applied in collision mode, which cannot tell whether a keyless row is
  already in the snapshot: the target got duplicates. The snapshot now comes from a
  temporary slot's exported snapshot, whose consistent point is exact.
* A table created while a continuous ``sync`` runs is loaded without stopping it (it used to
  stop with exit 6): capture snapshots it at an exact point of the stream and carries its
  rows in the trail, the way a MariaDB source's CREATE TABLE and inserts travel.

Both server profiles (tuned and stock). The CLI runs in a subprocess while a writer keeps
the source busy; the oracle compares the rows of both sides as multisets, read through
psycopg.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors import devservers
from connectors.endpoint import Endpoint

pytestmark = pytest.mark.postgres

_SERVERS = {"tuned": "postgres_server", "stock": "postgres_stock_server"}


@pytest.fixture(params=sorted(_SERVERS))
def pg_pair(request: pytest.FixtureRequest) -> Iterator[tuple[Endpoint, Endpoint]]:
    """A source and a target database on one PostgreSQL server of each profile."""
    server: devservers.DevServer = request.getfixturevalue(_SERVERS[request.param])
    admin = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"
    tag = f"{os.getpid()}_{request.param}_{abs(hash(request.node.name)) % 10**6}"
    names = (f"xs_{tag}", f"xt_{tag}")
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    src, dst = (Endpoint.parse(f"postgresql://postgres@127.0.0.1:{server.port}/{n}") for n in names)
    yield src, dst
    with psycopg.connect(admin, autocommit=True) as conn:
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = ANY(%s)", (list(names),)
        ).fetchall():
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _connect(ep: Endpoint) -> psycopg.Connection[Any]:
    return psycopg.connect(
        f"host={ep.host} port={ep.port} user=postgres dbname={ep.database}", autocommit=True
    )


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from toolkit_cli.app import main; main()", *args]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDOLINE_")}
    env["NO_COLOR"] = "1"
    return env


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cmd(*args), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=240
    )


def _config(tmp_path: Path, src: Endpoint, dst: Endpoint) -> str:
    path = tmp_path / "redoline.toml"
    path.write_text(
        f'[source]\nurl = "{src.url()}"\nid = "src"\n'
        f'[target]\nurl = "{dst.url()}"\nid = "dst"\n'
        f'[trail]\ndir = "{tmp_path / "trail"}"\n'
        f'[state]\ndir = "{tmp_path / "state"}"\n'
        '[tables]\ninclude = ["public.*"]\n'
        "[snapshot]\nworkers = 3\nchunk_rows = 70\n"
    )
    return str(path)


def _rows(ep: Endpoint, table: str) -> Counter[tuple[Any, ...]]:
    with _connect(ep) as conn:
        return Counter(tuple(r) for r in conn.execute(f'SELECT * FROM public."{table}"'))


def _tables(ep: Endpoint) -> set[str]:
    with _connect(ep) as conn:
        return {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }


def _assert_same(src: Endpoint, dst: Endpoint) -> None:
    tables = _tables(src)
    assert tables <= _tables(dst), f"missing on the target: {tables - _tables(dst)}"
    for table in sorted(tables):
        want, got = _rows(src, table), _rows(dst, table)
        assert got == want, (
            f"{table}: {sum((got - want).values())} extra and {sum((want - got).values())} "
            f"missing rows on the target (source has {sum(want.values())})"
        )


class _Writer:
    """Keeps writing duplicate rows into the keyless table and changing the keyed one."""

    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep
        self.stop = threading.Event()
        self.commits = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with _connect(self.ep) as conn:
            i = 0
            while not self.stop.is_set():
                i += 1
                with conn.transaction():
                    conn.execute("INSERT INTO bag VALUES (%s, 'dup'), (%s, 'dup')", (i % 7, i % 7))
                    conn.execute("UPDATE acc SET v = v + 1 WHERE id = %s", (i % 300,))
                    conn.execute("INSERT INTO acc VALUES (%s, 0)", (1000 + i,))
                self.commits += 1
                time.sleep(0.003)

    def __enter__(self) -> _Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def _schema(src: Endpoint) -> None:
    with _connect(src) as conn:
        conn.execute("CREATE TABLE bag (k int, v text)")
        conn.execute("ALTER TABLE bag REPLICA IDENTITY FULL")
        conn.execute("CREATE TABLE acc (id int PRIMARY KEY, v int NOT NULL)")
        conn.execute("INSERT INTO bag SELECT g % 5, 'dup' FROM generate_series(1, 200) g")
        conn.execute("INSERT INTO acc SELECT g, 0 FROM generate_series(0, 299) g")


def test_sync_after_capture_keyless_exact(
    pg_pair: tuple[Endpoint, Endpoint], tmp_path: Path
) -> None:
    """capture first (the slot exists), then sync under writes: no duplicate keyless row."""
    src, dst = pg_pair
    _schema(src)
    config = _config(tmp_path, src, dst)
    first = _run(tmp_path, "capture", "-c", config, "--until-caught-up")
    assert first.returncode == 0, first.stdout + first.stderr
    with _connect(src) as conn:
        # in the trail's future, and in the snapshot: what the old window applied twice
        conn.execute("INSERT INTO bag SELECT 9, 'late' FROM generate_series(1, 50)")
        conn.execute("DELETE FROM bag WHERE ctid IN (SELECT ctid FROM bag WHERE k = 1 LIMIT 3)")
    with _Writer(src) as writer:
        time.sleep(0.3)
        synced = _run(tmp_path, "sync", "-c", config, "--until-caught-up")
        assert synced.returncode == 0, synced.stdout + synced.stderr
    assert writer.commits > 0
    final = _run(tmp_path, "sync", "-c", config, "--until-caught-up")
    assert final.returncode == 0, final.stdout + final.stderr
    _assert_same(src, dst)


def _wait_same(src: Endpoint, dst: Endpoint, proc: subprocess.Popen[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            _assert_same(src, dst)
            return
        except (AssertionError, psycopg.Error):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
        time.sleep(0.5)


def test_new_table_during_continuous_sync(
    pg_pair: tuple[Endpoint, Endpoint], tmp_path: Path
) -> None:
    """Tables created while `redoline sync` runs are loaded without stopping it: rows from
    before they were noticed (the CREATE TABLE AS among them), and changes after."""
    src, dst = pg_pair
    _schema(src)
    config = _config(tmp_path, src, dst)
    proc = subprocess.Popen(
        _cmd("sync", "-c", config),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with _Writer(src):
            _wait_same_tables(dst, {"bag", "acc"}, proc)
            with _connect(src) as conn:
                conn.execute("CREATE TABLE fresh (id int PRIMARY KEY, v text)")
                conn.execute("INSERT INTO fresh SELECT g, 'f' || g FROM generate_series(1, 500) g")
                conn.execute(
                    "CREATE TABLE loose AS SELECT g % 3 AS k, 'x' AS v "
                    "FROM generate_series(1, 300) g"
                )
                conn.execute("ALTER TABLE loose REPLICA IDENTITY FULL")
                # changes while capture notices, snapshots and streams them
                for i in range(40):
                    conn.execute("INSERT INTO fresh VALUES (%s, 'late')", (1000 + i,))
                    conn.execute("UPDATE fresh SET v = 'u' WHERE id = %s", (i + 1,))
                    conn.execute(
                        "INSERT INTO loose VALUES (%s, 'dup'), (%s, 'dup')", (i % 2, i % 2)
                    )
                    conn.execute("DELETE FROM fresh WHERE id = %s", (400 + i,))
                    time.sleep(0.05)
        _wait_same(src, dst, proc, 60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    _assert_same(src, dst)
    assert sum(_rows(dst, "fresh").values()) == 500 + 40 - 40
    assert sum(_rows(dst, "loose").values()) == 300 + 80


def _wait_same_tables(dst: Endpoint, tables: set[str], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not tables <= _tables(dst):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first snapshot never landed"
        time.sleep(0.3)
    time.sleep(1)


def test_resumed_snapshot_reloads_keyless_table_at_the_new_point(
    pg_pair: tuple[Endpoint, Endpoint], tmp_path: Path
) -> None:
    """sync killed (-9) while the snapshot loads: a keyless table none of whose rows were
    loaded yet is loaded whole by the next run, and the rows inserted in between are not
    applied a second time by catch-up."""
    src, dst = pg_pair
    with _connect(src) as conn:
        conn.execute("CREATE TABLE aa (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO aa SELECT g, repeat('a', 50) FROM generate_series(1, 60000) g")
        conn.execute("CREATE TABLE zz (k int, v text)")
        conn.execute("ALTER TABLE zz REPLICA IDENTITY FULL")
        conn.execute("INSERT INTO zz SELECT g % 4, 'z' FROM generate_series(1, 100) g")
    config = _config(tmp_path, src, dst)
    text = (
        Path(config)
        .read_text()
        .replace("workers = 3\nchunk_rows = 70", "workers = 1\nchunk_rows = 300")
    )
    Path(config).write_text(text)
    proc = subprocess.Popen(
        _cmd("sync", "-c", config, "--until-caught-up"),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the snapshot never loaded a chunk of aa"
            try:
                with _connect(dst) as conn:
                    done = dict(
                        conn.execute(
                            "SELECT target_table, count(*) FILTER (WHERE done = 1) "
                            "FROM redoline.snapshot_chunks GROUP BY target_table"
                        ).fetchall()
                    )
            except psycopg.Error:
                done = {}
            if done.get("public.aa", 0) >= 1:
                break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.communicate()
    assert done.get("public.zz", 0) == 0, done
    with _connect(src) as conn:
        conn.execute("INSERT INTO zz SELECT 7, 'between' FROM generate_series(1, 30)")
        conn.execute("UPDATE aa SET v = 'changed' WHERE id % 1000 = 0")
    again = _run(tmp_path, "sync", "-c", config, "--until-caught-up")
    assert again.returncode == 0, again.stdout + again.stderr
    _assert_same(src, dst)


def test_new_table_survives_a_kill_before_its_rows_reach_the_trail(
    pg_pair: tuple[Endpoint, Endpoint], tmp_path: Path
) -> None:
    """A transaction left open holds up the new table's snapshot (PostgreSQL waits for it
    before the slot is consistent); sync is killed -9 meanwhile. The trail's marker still
    lists the table, so the next continuous capture loads it, and nothing is lost or
    doubled (capture alone: no snapshot step of sync covers for it)."""
    src, dst = pg_pair
    _schema(src)
    config = _config(tmp_path, src, dst)
    marker = tmp_path / "trail" / "pgslot.json"

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            _cmd("sync", "-c", config),
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    proc = start()
    blocker = _connect(src)
    try:
        _wait_same_tables(dst, {"bag", "acc"}, proc)
        blocker.execute("BEGIN")
        blocker.execute("INSERT INTO acc VALUES (-1, 0)")  # an xid the slot must wait for
        with _connect(src) as conn:
            conn.execute("CREATE TABLE fresh (id int PRIMARY KEY, v text)")
            conn.execute("INSERT INTO fresh SELECT g, 'f' FROM generate_series(1, 100) g")
        deadline = time.monotonic() + 30
        while "public.fresh" not in (marker.read_text() if marker.exists() else ""):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "capture never noticed the new table"
            time.sleep(0.05)
        time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.kill()
        proc.communicate()
    with _connect(src) as conn:
        conn.execute("INSERT INTO fresh SELECT g, 'after' FROM generate_series(101, 150) g")
        conn.execute("UPDATE fresh SET v = 'u' WHERE id <= 10")
    blocker.execute("COMMIT")
    blocker.close()
    # capture alone now (no snapshot step to fall back on): the marker's list makes it load
    # the table again, through the trail
    proc = subprocess.Popen(
        _cmd("capture", "-c", config),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "new_tables" in marker.read_text():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, marker.read_text()
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    applied = _run(tmp_path, "apply", "-c", config, "--until-caught-up")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    _assert_same(src, dst)
