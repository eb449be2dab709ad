"""The capture loop: stop on SIGTERM, reconnect after a dropped binlog connection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from capture.filters import CaptureFilter
from capture.runner import CaptureOptions, run_capture
from capture.trail import TrailReader
from connectors.base import TableFilter
from connectors.endpoint import Endpoint
from connectors.model import Op
from connectors.mysql import MySQL

pytestmark = pytest.mark.mariadb


def _ids(trail: Path) -> list[int]:
    return [
        (c.after or {})["id"]
        for t in TrailReader(trail).transactions()
        for c in t.changes
        if c.op is Op.INSERT
    ]


def test_sigterm_stops_after_the_current_transaction(mysql_db: Endpoint, tmp_path: Path) -> None:
    db = MySQL(mysql_db)
    db.query(f"CREATE TABLE `{mysql_db.database}`.s (id INT PRIMARY KEY)")
    trail = tmp_path / "trail"
    cmd = [
        sys.executable,
        "-c",
        "from toolkit_cli.app import main; main()",
        "-q",
        "capture",
        "--source",
        f"mariadb://root@{mysql_db.host}:{mysql_db.port}/",
        "--trail",
        str(trail),
        "--json",
    ]
    env = {**os.environ, "REDOLINE_CONFIG": str(tmp_path / "c.toml")}
    (tmp_path / "c.toml").write_text(f'[tables]\ninclude = ["{mysql_db.database}.*"]\n')
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (trail / "trail-start.json").exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    db.query(f"INSERT INTO `{mysql_db.database}`.s VALUES (1), (2)")
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    summary = json.loads(out)
    assert summary["stopped"] is True and summary["transactions"] == 1
    assert _ids(trail) == [1, 2]


def test_dropped_connection_is_retried_without_duplicates(
    mysql_db: Endpoint, tmp_path: Path
) -> None:
    db = MySQL(mysql_db)
    name = mysql_db.database
    db.query(f"CREATE TABLE `{name}`.k (id INT PRIMARY KEY)")
    trail = tmp_path / "trail"
    stop = threading.Event()
    opts = CaptureOptions(
        source_id="src",
        filters=CaptureFilter(TableFilter((f"{name}.*",))),
        stop_event=stop,
        start_position=db.end_position(),
        backoff=(0.1, 0.5),
        reader_options={"server_id": 777_001, "heartbeat": 0.5},
    )
    results = []
    thread = threading.Thread(target=lambda: results.append(run_capture(db, trail, opts)))
    thread.start()
    try:
        for i in range(3):
            db.query(f"INSERT INTO `{name}`.k VALUES ({i})")
            time.sleep(1.0)
            for row in db.query("SHOW PROCESSLIST"):
                if str(row[4]).startswith("Binlog Dump") and row[1] == "root":
                    db.query(f"KILL {int(row[0])}")
        db.query(f"INSERT INTO `{name}`.k VALUES (99)")
        deadline = time.monotonic() + 20
        while _ids(trail)[-1:] != [99]:
            assert time.monotonic() < deadline, _ids(trail)
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(30)
    assert _ids(trail) == [0, 1, 2, 99]
    assert results and results[0].reconnects >= 1
