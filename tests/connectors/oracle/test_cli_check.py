"""`redoline check` on an Oracle source prints the live-server notice and each fix."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.connectors.oracle.fake import FakeOracle
from toolkit_cli.app import wire


def test_check_says_it_has_not_run_against_a_live_server(fake: FakeOracle, tmp_path: Path) -> None:
    fake.tables[next(iter(fake.tables))].log_groups.clear()
    out = CliRunner().invoke(
        wire("check"),
        ["check", "--source", "oracle://capture@db.example/ORCL", "--json"],
        catch_exceptions=False,
        env={"REDOLINE_TRAIL": str(tmp_path / "trail")},
    )
    report = json.loads(out.stdout)
    items = {i["name"]: i for e in report["endpoints"] for i in e["items"]}
    assert (
        "not yet been run against a live Oracle server" in items["live-server validation"]["value"]
    )
    bad = items["supplemental logging SHOP.ITEMS"]
    assert not bad["ok"] and "ADD SUPPLEMENTAL LOG DATA (PRIMARY KEY) COLUMNS" in bad["hint"]
    assert report["ok"] is False and out.exit_code == 1
