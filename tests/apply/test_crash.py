"""kill -9 during apply, repeatedly, then restart: the target equals an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from capture.trail import TrailWriter
from connectors.base import Database, open_database
from connectors.endpoint import Endpoint
from connectors.model import TableId
from tests.apply.test_applier import content
from tests.apply.workload import KEYED, KEYLESS, Workload

pytestmark = pytest.mark.slow

_CLI = "from toolkit_cli.app import main; main()"


def _trail(path: Path, txns: int) -> Workload:
    wl = Workload(seed=99)
    with TrailWriter(path, source_id="src", segment_bytes=200_000) as writer:
        writer.append(wl.announce())
        for _ in range(txns):
            writer.append(wl.transaction())
        writer.flush()
    return wl


def _apply(url: str, trail: Path, *, batch_rows: int, extra: str = "") -> subprocess.Popen[bytes]:
    cfg = trail.parent / f"apply-{batch_rows}.toml"
    cfg.write_text(f"{extra}[apply]\nbatch_rows = {batch_rows}\nbatch_ms = 50\n")
    with open(trail.parent / "apply.err", "wb") as err:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CLI,
                "-q",
                "apply",
                "--config",
                str(cfg),
                "--target",
                url,
                "--trail",
                str(trail),
                "--until-caught-up",
            ],
            cwd=Path(__file__).resolve().parents[2],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def _check(db: Database, wl: Workload, schema: str, target_id: str = "default") -> None:
    writer = db.open_writer()
    try:
        assert content(writer, TableId(schema, KEYED.table.name)) == sorted(
            wl.expected_keyed(), key=repr
        )
        assert content(writer, TableId(schema, KEYLESS.table.name)) == wl.expected_keyless()
        ((op,),) = writer.query(
            f"SELECT applied_op FROM redoline.redoline_checkpoint WHERE target_id = '{target_id}'"
        )
        assert op == wl.op
    finally:
        writer.close()


@pytest.mark.parametrize("engine", ["duckdb", "postgres", "mariadb"])
def test_kill_9_at_random_moments(engine: str, tmp_path: Path, request: pytest.FixtureRequest):
    wl = _trail(tmp_path / "trail", 30_000)
    schema, target_id, extra = "shop", "default", ""
    if engine == "duckdb":
        url = f"duckdb://{tmp_path / 'crash.duckdb'}"
    elif engine == "postgres":
        url = request.getfixturevalue("pg_db").url()
    else:
        # a MariaDB database is server-wide and so is redoline.redoline_checkpoint: put the
        # tables in the test's own database and give the target an id of its own
        ep = request.getfixturevalue("mysql_db")
        url, schema, target_id = ep.url(), ep.database, ep.database
        extra = f'[target]\nurl = "{url}"\nid = "{target_id}"\n[tables.rename]\nshop = "{schema}"\n'

    rng = random.Random(5)
    kills = 0
    finished = False
    for _attempt in range(4):
        proc = _apply(url, tmp_path / "trail", batch_rows=rng.choice([50, 300, 2000]), extra=extra)
        time.sleep(rng.uniform(0.4, 1.2))
        if proc.poll() is not None:
            assert proc.returncode == 0, (tmp_path / "apply.err").read_text()
            finished = True
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills >= 3, "the trail was applied too fast to be interrupted"
    if not finished:
        proc = _apply(url, tmp_path / "trail", batch_rows=300, extra=extra)
        assert proc.wait(timeout=300) == 0, (tmp_path / "apply.err").read_text()
    _check(open_database(Endpoint.parse(url)), wl, schema, target_id)
