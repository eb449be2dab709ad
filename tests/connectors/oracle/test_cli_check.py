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


def test_init_and_drop_through_the_cli(fake: FakeOracle, tmp_path: Path) -> None:
    for t in fake.tables.values():
        t.log_groups.clear()
    config = tmp_path / "redoline.toml"
    config.write_text(
        f'[source]\nurl = "oracle://capture@db.example/ORCL"\n\n[trail]\ndir = "{tmp_path}/trail"\n'
        '\n[tables]\ninclude = ["SHOP.*"]\n'
    )
    out = CliRunner().invoke(wire("init"), ["init", "-c", str(config), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert "SHOP.NOTES: ALL COLUMNS" in json.dumps(report)
    assert {g for t in fake.tables.values() for g in t.log_groups} == {
        "PRIMARY KEY LOGGING",
        "ALL COLUMN LOGGING",
    }
    out = CliRunner().invoke(wire("drop"), ["drop", "-c", str(config), "--json"])
    assert out.exit_code == 0, out.output
    assert fake.tables[next(iter(fake.tables))].log_groups  # left in place, as documented
