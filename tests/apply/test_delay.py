"""A delayed replica: a transaction is applied only once its source commit time is older than the
delay; `status` shows the delay and the range it holds back."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb

from apply.point import delayed
from capture.trail import TrailWriter
from connectors.endpoint import Endpoint
from tests.apply.workload import KEYED, KEYLESS, Workload
from tests.clirun import redoline


def _rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path)) as conn:
        return sorted(
            (tuple(r) for r in conn.execute(f'SELECT * FROM "shop"."{table}"').fetchall()),
            key=repr,
        )


def _state(wl: Workload) -> tuple[list[Any], list[Any]]:
    keyed = sorted((tuple(r.values()) for r in wl.keyed.values()), key=repr)
    keyless = sorted((i for i, n in Counter(wl.keyless).items() for _ in range(n)), key=repr)
    return keyed, keyless


def test_delay_holds_back_young_transactions_and_status_shows_them(
    tmp_path: Path, mysql_db: Endpoint
) -> None:
    """20 transactions committed two hours ago, 6 committed ten minutes ago: `--delay 1h`
    applies exactly the old ones, `[apply] delay = "5m"` the rest; `status` (a reachable source,
    here one unrelated to the trail) reports the delay and the held range in between."""
    now = dt.datetime.now(dt.UTC)
    wl = Workload(seed=8)
    txns = [replace(wl.announce(), commit_time=now - dt.timedelta(hours=3))]
    for i in range(26):
        t = wl.transaction(size=5)
        age = dt.timedelta(hours=2) if i < 20 else dt.timedelta(minutes=10)
        txns.append(replace(t, commit_time=now - age + dt.timedelta(seconds=i)))
        if i == 19:
            old_state, boundary = _state(wl), t.last_op
    trail = tmp_path / "trail"
    with TrailWriter(trail, source_id="src") as tw:
        for t in txns:
            tw.append(t)
    target = tmp_path / "replica.duckdb"
    args = ("--trail", str(trail), "--target", f"duckdb://{target}", "--until-caught-up")
    res = redoline("apply", *args, "--delay", "1h", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"applied through operation {boundary} " in res.stdout
    assert f"delay: operation {boundary + 1} on" in res.stdout
    assert (_rows(target, KEYED.table.name), _rows(target, KEYLESS.table.name)) == old_state

    cfg = tmp_path / "r.toml"
    cfg.write_text(
        f'[source]\nurl = "{mysql_db.url()}"\nid = "src"\n[target]\nurl = "duckdb://{target}"\n'
        f'[trail]\ndir = "{trail}"\n[apply]\ndelay = "1h"\n'
    )
    res = redoline("status", "--json", cwd=tmp_path, env={"REDOLINE_CONFIG": str(cfg)})
    assert res.returncode == 0, res.stdout + res.stderr
    (entry,) = json.loads(res.stdout)["targets"]
    pending = entry["pending"]
    assert entry["delay_seconds"] == 3600 and entry["applied_op"] == boundary
    assert pending["first_op"] == boundary + 1 and pending["last_op"] == txns[-1].last_op
    assert pending["held_from_op"] == boundary + 1
    assert pending["held_operations"] == pending["operations"] == txns[-1].last_op - boundary
    res = redoline("status", cwd=tmp_path, env={"REDOLINE_CONFIG": str(cfg)})
    assert f"delay 3600 s: {txns[-1].last_op - boundary} operations pending" in res.stdout

    # the configured delay; a bad one is refused with the key named
    cfg.write_text(cfg.read_text().replace('delay = "1h"', 'delay = "5m"'))
    res = redoline("apply", "--until-caught-up", cwd=tmp_path, env={"REDOLINE_CONFIG": str(cfg)})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "delay:" not in res.stdout
    assert (_rows(target, KEYED.table.name), _rows(target, KEYLESS.table.name)) == _state(wl)
    cfg.write_text(cfg.read_text().replace('delay = "5m"', 'delay = "soon"'))
    res = redoline("apply", "--until-caught-up", cwd=tmp_path, env={"REDOLINE_CONFIG": str(cfg)})
    assert res.returncode == 2 and "delay" in res.stderr
    res = redoline("apply", *args, "--delay", "-1h", cwd=tmp_path)
    assert res.returncode == 2 and "--delay" in res.stderr


def test_a_following_apply_waits_for_the_delay() -> None:
    wl = Workload(seed=1)
    young = replace(wl.transaction(), commit_time=dt.datetime.now(dt.UTC))
    held: list[Any] = []
    started = time.monotonic()
    out = list(delayed(iter([young]), 1.5, follow=True, stop=lambda: False, held=held))
    assert out == [young] and not held and time.monotonic() - started >= 1.3
    # not following (--until-caught-up): ends before it, says which
    assert list(delayed(iter([young]), 60, follow=False, stop=lambda: False, held=held)) == []
    assert held == [young]
    # stopping while waiting ends the wait
    held.clear()
    started = time.monotonic()
    assert list(delayed(iter([young]), 60, follow=True, stop=lambda: True, held=held)) == []
    assert time.monotonic() - started < 1 and held == [young]
