"""Capture from MariaDB on the "source host", ship, apply from the received trail on the
"target host": the target equals the source (plain driver SELECTs, no verify/ code)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pymysql
import pytest

from connectors.endpoint import Endpoint
from tests.ship.conftest import Certs, ReceiverProc, digests, redoline, start_receiver

pytestmark = [pytest.mark.mariadb]


def _source_rows(db: Endpoint) -> list[tuple[int, str, int]]:
    conn = pymysql.connect(host=db.host, port=db.port, user="root", database=db.database)
    with conn.cursor() as cur:
        cur.execute("SELECT id, name, qty FROM items ORDER BY id")
        rows = [(int(a), str(b), int(c)) for a, b, c in cur.fetchall()]
    conn.close()
    return rows


def test_capture_ship_apply_equals_source(
    mysql_db: Endpoint, tmp_path: Path, certs: Certs, receivers: list[ReceiverProc]
) -> None:
    url = f"mariadb://root@{mysql_db.host}:{mysql_db.port}/{mysql_db.database}"
    src_host, dst_host = tmp_path / "source-host", tmp_path / "target-host"
    src_host.mkdir()
    dst_host.mkdir()
    trail = src_host / "trail"
    first = redoline(
        "capture", "--source", url, "--trail", str(trail), "--until-caught-up", cwd=src_host
    )
    assert first.returncode == 0, first.stderr
    conn = pymysql.connect(
        host=mysql_db.host,
        port=mysql_db.port,
        user="root",
        database=mysql_db.database,
        autocommit=True,
    )
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50), qty INT)")
        for i in range(1, 401):
            cur.execute("INSERT INTO items VALUES (%s, %s, %s)", (i, f"item-{i}", i % 7))
        cur.execute("UPDATE items SET qty = qty + 100 WHERE id % 5 = 0")
        cur.execute("DELETE FROM items WHERE id % 11 = 0")
    conn.close()
    captured = redoline(
        "capture", "--source", url, "--trail", str(trail), "--until-caught-up", cwd=src_host
    )
    assert captured.returncode == 0, captured.stderr
    source_id = json.loads((trail / "trail-start.json").read_text())["source_id"]
    root = dst_host / "received"
    r = start_receiver(dst_host, root, "--source-id", source_id, *certs.receive_args())
    receivers.append(r)
    shipped = redoline(
        "ship",
        "--to",
        r.to,
        "--trail",
        str(trail),
        *certs.ship_args(),
        "--until-caught-up",
        cwd=src_host,
    )
    assert shipped.returncode == 0, shipped.stderr
    received = root / source_id

    def shipping() -> list[dict[str, object]]:
        shown = redoline("status", "--source", url, "--trail", str(trail), "--json", cwd=src_host)
        assert shown.returncode == 0, shown.stderr
        return list(json.loads(shown.stdout)["shipping"])

    assert [(x["lag_segments"], x["lag_bytes"]) for x in shipping()] == [(0, 0)]
    conn = pymysql.connect(
        host=mysql_db.host,
        port=mysql_db.port,
        user="root",
        database=mysql_db.database,
        autocommit=True,
    )
    with conn.cursor() as cur:
        cur.execute("UPDATE items SET name = CONCAT(name, '-late') WHERE id < 50")
    conn.close()
    captured = redoline(
        "capture", "--source", url, "--trail", str(trail), "--until-caught-up", cwd=src_host
    )
    assert captured.returncode == 0, captured.stderr
    (lag,) = shipping()
    assert lag["lag_segments"] == 1 and int(str(lag["lag_bytes"])) > 0
    shipped = redoline(
        "ship",
        "--to",
        r.to,
        "--trail",
        str(trail),
        *certs.ship_args(),
        "--until-caught-up",
        cwd=src_host,
    )
    assert shipped.returncode == 0, shipped.stderr
    assert digests(received, sealed_only=False) == digests(trail, sealed_only=False)
    target = dst_host / "replica.duckdb"
    applied = redoline(
        "apply",
        "--trail",
        str(received),
        "--target",
        f"duckdb://{target}",
        "--until-caught-up",
        cwd=dst_host,
    )
    assert applied.returncode == 0, applied.stderr
    with duckdb.connect(str(target), read_only=True) as db:
        got = [
            (int(a), str(b), int(c))
            for a, b, c in db.execute(
                f'SELECT id, name, qty FROM "{mysql_db.database}".items ORDER BY id'
            ).fetchall()
        ]
    expected = _source_rows(mysql_db)
    assert len(expected) == 400 - 36 and got == expected
