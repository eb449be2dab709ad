"""`redoline sync --until-caught-up` for cron, `snapshot --no-follow`, and `status`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql

from apply.sync import hold_lock
from connectors.endpoint import Endpoint


def _seed(ep: Endpoint) -> None:
    conn = pymysql.connect(host=ep.host, port=ep.port, user="root", database=ep.database)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.executemany("INSERT INTO t VALUES (%s, %s)", [(i, f"v{i}") for i in range(500)])
    conn.commit()
    conn.close()


def test_sync_cron_status_and_lock(
    cli: Callable[..., Any], mysql_db: Endpoint, tmp_path: Path, monkeypatch: Any
) -> None:
    _seed(mysql_db)
    monkeypatch.chdir(tmp_path)
    args = [
        "--source",
        mysql_db.url(),
        "--target",
        f"duckdb://{tmp_path}/r.duckdb",
        "--trail",
        str(tmp_path / "trail"),
    ]
    res = cli("sync", *args, "--until-caught-up", "--tables", f"{mysql_db.database}.*")
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "500 rows" in res.stdout
    res = cli("status", *args, "--json")
    assert res.exit_code == 0, res.stdout + res.stderr
    status = json.loads(res.stdout)
    (target,) = status["targets"]
    assert target["tables"][0]["state"] == "loaded"
    assert target["lag_operations"] == 0
    with hold_lock(tmp_path / ".redoline", "sync-default-default"):
        res = cli("sync", *args, "--until-caught-up")
    assert res.exit_code == 8
    res = cli("snapshot", *args, "--no-follow", "--tables", f"{mysql_db.database}.t", "--json")
    assert res.exit_code == 0, res.stdout + res.stderr
