"""How long `verify` waits before its re-check beside a running `sync`, through the CLI.

The re-check waits for apply to reach the source's end position taken before the first pass.
On PostgreSQL that is the WAL insert position, which moves with writes no captured table
sees (another table, a checkpoint, the server's own records), so apply's checkpoint (the
last *captured* commit) may never reach it: verify used to wait its full 60 s. The oracle is
the wall clock and the target's rows read with its own driver.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pymysql
import pytest

from capture.progress import record_path
from connectors.checkpoint import Checkpoint
from connectors.endpoint import Endpoint
from connectors.postgres import PostgreSQL
from tests.clirun import redoline
from verify.pending import capture_settled

#: a capture record of a run that goes on (this process stands for it)
_RUNNING = {"state": "running", "pid": os.getpid()}


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize(
    ("record", "applied", "settled"),
    [
        ({"position": "0/300", "last_op": 40, **_RUNNING}, [40], True),  # past the end, applied
        ({"position": "0/300", "last_op": 40, **_RUNNING}, [40, 39], False),  # one applier behind
        ({"position": "0/1FF", "last_op": 40, **_RUNNING}, [40], False),  # not past the end yet
        ({"position": "0/200", "last_op": 40, **_RUNNING}, [41], True),  # exactly at it
        ({"position": None, "last_op": 40, **_RUNNING}, [40], False),  # a fresh record
        (None, [40], False),  # no capture record here (another host): wait for positions
        ({"position": "0/300", "last_op": 40, **_RUNNING}, [], False),  # no applier of it
        # a capture that stopped (cron run over) writes nothing more: all it wrote applied
        ({"position": "0/1FF", "last_op": 40, "state": "finished"}, [40], True),
        ({"position": "0/1FF", "last_op": 40, "state": "stopped"}, [40, 39], False),
        # killed: the record still says running, its process is gone
        ({"position": "0/1FF", "last_op": 40, "state": "running", "pid": "dead"}, [40], True),
    ],
)
def test_capture_settled_decides_from_the_capture_record(
    tmp_path: Path, record: dict[str, object] | None, applied: list[int], settled: bool
) -> None:
    if record is not None:
        if record.get("pid") == "dead":
            record = {**record, "pid": _dead_pid()}
        path = record_path(tmp_path, "capture", "src")
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"stage": "capture", "name": "src", **record}))
    other = record_path(tmp_path, "capture", "other")  # another source's record is ignored
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_text(json.dumps({"stage": "capture", "name": "other", "position": "9/0"}))
    checkpoints = [Checkpoint("src", f"t{i}", op, "0/100", None) for i, op in enumerate(applied)]
    checkpoints.append(Checkpoint("other", "t", 0, None, None))
    check = capture_settled(PostgreSQL, tmp_path, "src")  # type: ignore[arg-type]
    assert check("0/200", checkpoints) is settled


def test_verify_recheck_does_not_wait_for_wal_no_table_holds(
    pg_db: Endpoint, mysql_db: Endpoint, tmp_path: Path
) -> None:
    dsn = f"host={pg_db.host} port={pg_db.port} user=postgres dbname={pg_db.database}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        c.execute("CREATE TABLE noise (id SERIAL PRIMARY KEY, v TEXT)")  # not replicated
        c.execute("INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 50) i")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        # own ids: a MariaDB target is the whole server, whose redoline state (checkpoints,
        # snapshot states) holds other tests' rows under the default ids
        f'[source]\nurl = "{pg_db.url()}"\nid = "rw_{tmp_path.name[-20:]}"\n'
        f'[target]\nurl = "{mysql_db.url()}"\nid = "rwt_{tmp_path.name[-20:]}"\n'
        f'[trail]\ndir = "{tmp_path}/trail"\n[state]\ndir = "{tmp_path}/state"\n'
        f'[tables]\ninclude = ["public.t"]\n[tables.rename]\n"public" = "{mysql_db.database}"\n'
    )
    (tmp_path / "none.toml").touch()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from toolkit_cli.app import main; main()", "sync", "-c", str(cfg)],
        cwd=tmp_path,
        env={**os.environ, "REDOLINE_CONFIG": str(tmp_path / "none.toml")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    target = pymysql.connect(
        host=mysql_db.host,
        port=mysql_db.port,
        user="root",
        database=mysql_db.database,
        autocommit=True,
    )
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("UPDATE t SET v = 'changed' WHERE id = 7")  # through the trail
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                with target.cursor() as cur:
                    cur.execute("SELECT v FROM t WHERE id = 7")
                    if cur.fetchone() == ("changed",):
                        break
            except pymysql.err.ProgrammingError:
                pass  # the snapshot has not created the table yet
            assert time.monotonic() < deadline, "sync did not apply the update"
            time.sleep(0.3)
        with target.cursor() as cur:  # a difference no replication will undo
            cur.execute("UPDATE t SET v = 'tampered' WHERE id = 3")
        with psycopg.connect(dsn, autocommit=True) as c:
            # WAL past apply's last position that no replicated table holds
            c.execute("INSERT INTO noise (v) SELECT 'x' FROM generate_series(1, 100)")
        started = time.monotonic()
        res = redoline("verify", "-c", str(cfg), cwd=tmp_path)
        took = time.monotonic() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        target.close()
    assert res.returncode == 1, res.stdout + res.stderr  # the tampered row is a difference
    assert "has not reached" not in res.stderr, res.stderr
    # the old wait was max(60, 12 * recheck_wait) = 60 s; nothing was pending here
    assert took < 30, (took, res.stderr)
    assert proc.returncode == 130, out + err
