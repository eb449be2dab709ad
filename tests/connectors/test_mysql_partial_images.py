"""Partial row images (a session with binlog_row_image=MINIMAL/NOBLOB on a FULL server) stop
capture with a terminal error naming the table and the position, through both decoders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from capture.trail import TrailReader
from connectors.endpoint import Endpoint
from connectors.model import Op
from connectors.mysql import MySQL

pytestmark = pytest.mark.mariadb


def _capture(
    url: str, trail: Path, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from toolkit_cli.app import main; main()",
            "-q",
            "capture",
            "--source",
            url,
            "--trail",
            str(trail),
            "--until-caught-up",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("decoder", ["fast", "library"])
@pytest.mark.parametrize(
    ("image", "statement"),
    [
        ("MINIMAL", "UPDATE p SET a = a + 1 WHERE id = 2"),
        ("MINIMAL", "DELETE FROM p WHERE id = 3"),
        ("NOBLOB", "UPDATE p SET a = 7 WHERE id = 1"),
    ],
)
def test_partial_row_image_stops_capture(
    mysql_db: Endpoint, tmp_path: Path, decoder: str, image: str, statement: str
) -> None:
    db = MySQL(mysql_db)
    conn = db.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE p (id INT PRIMARY KEY, a INT, b VARCHAR(20), t TEXT)")
    trail = tmp_path / "trail"
    url = f"mariadb://root@{mysql_db.host}:{mysql_db.port}/{mysql_db.database}"
    config = tmp_path / "redoline.toml"
    config.write_text(f'[tables]\ninclude = ["{mysql_db.database}.*"]\n')
    env = {**os.environ, "REDOLINE_CONFIG": str(config), "NO_COLOR": "1"}
    first = _capture(url, trail, env, "--decoder", decoder)
    assert first.returncode == 0, first.stderr
    with conn.cursor() as cur:
        cur.execute("INSERT INTO p VALUES (1, 1, 'x', 't1'), (2, 2, 'y', 't2'), (3, 3, 'z', 't3')")
        cur.execute(f"SET SESSION binlog_row_image = {image}")
        cur.execute(statement)
    conn.close()
    res = _capture(url, trail, env, "--decoder", decoder)
    assert res.returncode == 5, (res.returncode, res.stderr)
    first_line = res.stderr.strip().splitlines()[0]
    assert f"partial row image of {mysql_db.database}.p at mysql-bin.0000" in first_line
    text = " ".join(res.stderr.split())
    assert "binlog_row_image=MINIMAL or NOBLOB" in text
    assert "binlog_row_image=FULL for every session and server" in text
    assert "Traceback" not in res.stderr
    # a rerun stops at the same place rather than skip it; the trail holds the inserts only
    again = _capture(url, trail, env, "--decoder", decoder)
    assert again.returncode == 5
    ops = [c.op for t in TrailReader(trail).transactions() for c in t.changes]
    assert [o for o in ops if o is not Op.DDL] == [Op.INSERT] * 3
