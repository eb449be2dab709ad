"""`redoline verify` from a source hashed on this host (:mod:`connectors.clientside`), the
steps its engine tests share: load a DuckDB target with the source's snapshot, verify it, and
plant differences on the target. The engine's test (a scripted fake of its server) gives the
URL, the tables and the differences, and judges the reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
from typer.testing import CliRunner

__all__ = ["cli", "load_duckdb", "plant", "verify"]


def cli(*args: str) -> Any:
    """``redoline ARGS`` in process (typer's runner)."""
    from toolkit_cli.app import wire

    return CliRunner().invoke(wire(), list(args))


def load_duckdb(source: str, tables: str, tmp_path: Path) -> str:
    """A DuckDB target in ``tmp_path`` loaded by ``redoline snapshot`` from ``source``; its URL."""
    target = f"duckdb://{tmp_path / 't.duckdb'}"
    loaded = cli(
        "snapshot", "--no-follow", "--source", source, "--target", target, "--tables", tables
    )
    assert loaded.exit_code == 0, loaded.output
    return target


def verify(source: str, target: str, tables: str) -> tuple[int, dict[str, Any]]:
    """``redoline verify --json`` (no re-check wait, chunks of 7 rows): exit code and report."""
    result = cli(
        "verify",
        "--source",
        source,
        "--target",
        target,
        "--tables",
        tables,
        "--json",
        "--recheck-wait",
        "0",
        "--chunk-rows",
        "7",
    )
    assert "Traceback" not in result.output, result.output
    return result.exit_code, json.loads(result.stdout)


def plant(tmp_path: Path, statements: Sequence[str]) -> None:
    """Run ``statements`` on the target :func:`load_duckdb` made (session time zone UTC)."""
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    try:
        con.execute("SET TimeZone = 'UTC'")
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()
