"""`redoline sync` from a SQL Server source (the scripted server) into DuckDB, in process:
snapshot under SNAPSHOT isolation, catch-up from CDC, and later runs continuing from the
trail — the target ends equal to the source's tables."""

from __future__ import annotations

import decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from tests.connectors.sqlserver_fake import FakeServer, install

URL = "sqlserver://reader@db.example/shop"


def sync(tmp_path: Path) -> Any:
    from toolkit_cli.app import wire

    return CliRunner().invoke(
        wire(),
        [
            "sync",
            "--source",
            URL,
            "--target",
            f"duckdb://{tmp_path / 'replica.duckdb'}",
            "--trail",
            str(tmp_path / "trail"),
            "--until-caught-up",
        ],
    )


def target_rows(tmp_path: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(tmp_path / "replica.duckdb"), read_only=True)
    try:
        return con.execute('SELECT id, name, price FROM "dbo"."items" ORDER BY id').fetchall()
    finally:
        con.close()


def source_rows(server: FakeServer) -> list[tuple[Any, ...]]:
    rows = server.tables[("dbo", "items")].rows
    return sorted((r["id"], r["name"], r["price"]) for r in rows)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    s = FakeServer()
    install(monkeypatch, s)
    s.enable_db()
    cur = s.connect().cursor()
    cur.execute(
        "CREATE TABLE [dbo].[items] ([id] INT PRIMARY KEY, [name] NVARCHAR(30), "
        "[price] DECIMAL(9,2))"
    )
    s.enable_table("dbo", "items", None)
    for i in range(1, 6):
        cur.execute(
            "INSERT INTO [dbo].[items] VALUES (?, ?, ?)", i, f"item {i}", decimal.Decimal(i)
        )
    return s


def test_sync_snapshot_then_catch_up_then_continue(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the state directory (.redoline) lives beside the run
    first = sync(tmp_path)
    assert first.exit_code == 0, first.output
    assert target_rows(tmp_path) == source_rows(server)
    cur = server.connect().cursor()
    cur.execute("UPDATE [dbo].[items] SET [name] = ? WHERE [id] = ?", "renamed", 2)
    cur.execute("DELETE FROM [dbo].[items] WHERE [id] = ?", 4)
    cur.execute("INSERT INTO [dbo].[items] VALUES (?, ?, ?)", 9, "new", decimal.Decimal("9.99"))
    second = sync(tmp_path)
    assert second.exit_code == 0, second.output
    got = target_rows(tmp_path)
    assert got == source_rows(server)
    assert (2, "renamed", decimal.Decimal("2.00")) in got and all(r[0] != 4 for r in got)
