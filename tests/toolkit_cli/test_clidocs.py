"""docs/cli.md is generated from the typer app; this fails when someone forgot to regenerate."""

from __future__ import annotations

from pathlib import Path

from toolkit_cli.clidocs import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/cli.md is stale: run `python -m toolkit_cli.clidocs > docs/cli.md`"
    )


def test_every_command_has_help() -> None:
    text = render()
    for line in text.splitlines():
        if line.startswith("#") and "`redoline" in line:
            assert line  # headings exist
    assert "## `redoline`" in text
    assert "`redoline check`" in text
