"""Exactly once into the trail: kill -9 `redoline capture` repeatedly while a workload runs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from capture.trail import TrailReader
from connectors.endpoint import Endpoint
from connectors.model import Op
from connectors.mysql import MySQL

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]


def _capture_cmd(url: str, trail: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from toolkit_cli.app import main; main()",
        "-q",
        "capture",
        "--source",
        url,
        "--trail",
        str(trail),
        *extra,
    ]


def test_kill_9_while_a_workload_commits(mysql_db: Endpoint, tmp_path: Path) -> None:
    db = MySQL(mysql_db)
    conn = db.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE w (id INT PRIMARY KEY, v INT, pad VARCHAR(200))")
    trail = tmp_path / "trail"
    url = f"mariadb://root@{mysql_db.host}:{mysql_db.port}/{mysql_db.database}"
    env = {**os.environ, "REDOLINE_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text(f'[tables]\ninclude = ["{mysql_db.database}.*"]\n')
    # first run fixes the start position (empty trail starts at the source's end)
    subprocess.run(_capture_cmd(url, trail, "--until-caught-up"), env=env, check=True)

    committed: list[list[tuple[str, int]]] = []
    stop = threading.Event()

    def workload() -> None:
        rng = random.Random(7)
        c = db.connect()
        n = 0
        with c.cursor() as cur:
            while not stop.is_set():
                cur.execute("BEGIN")
                ops = []
                for _ in range(rng.randint(1, 5)):
                    n += 1
                    cur.execute("INSERT INTO w VALUES (%s, %s, REPEAT('x', 150))", (n, n))
                    ops.append(("insert", n))
                if n > 3 and rng.random() < 0.3:
                    victim = rng.randint(1, n)
                    cur.execute("UPDATE w SET v = v + 1 WHERE id = %s", (victim,))
                    if cur.rowcount:
                        ops.append(("update", victim))
                if rng.random() < 0.1:
                    cur.execute("ROLLBACK")
                else:
                    cur.execute("COMMIT")
                    committed.append(ops)
                time.sleep(0.002)
        c.close()

    worker = threading.Thread(target=workload)
    worker.start()
    rng = random.Random(42)
    try:
        for _ in range(6):
            proc = subprocess.Popen(_capture_cmd(url, trail), env=env)
            time.sleep(rng.uniform(0.4, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    finally:
        stop.set()
        worker.join()
    # final catch-up after the workload stopped
    subprocess.run(_capture_cmd(url, trail, "--until-caught-up"), env=env, check=True, timeout=120)

    got = []
    ops_seen = []
    last_op = 0
    for txn in TrailReader(trail).transactions():
        assert txn.first_op == last_op + 1  # continuous, never reused
        last_op = txn.last_op
        rows = [
            (c.op.value, (c.after or c.before or {})["id"])
            for c in txn.changes
            if c.op in (Op.INSERT, Op.UPDATE)
        ]
        if rows:
            got.append(rows)
        ops_seen.append(txn.position)
    assert len(committed) > 50
    assert got == committed  # no loss, no duplicates, commit order kept
    assert len(set(ops_seen)) == len(ops_seen)
