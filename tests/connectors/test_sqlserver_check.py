"""`redoline check` and `redoline init` on a SQL Server source (the scripted server of
sqlserver_fake.py): every CDC prerequisite with the statement that fixes it, and init
enabling CDC on the database and the selected tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from connectors.base import open_database
from connectors.endpoint import Endpoint
from connectors.errors import PrerequisiteError
from connectors.model import TableId
from connectors.sqlserver.check import LIVE_NOTE
from connectors.sqlserver.descriptor import SqlServerOptions
from tests.connectors.sqlserver_fake import FakeServer, install

URL = "sqlserver://reader@db.example:1433/shop?driver=ODBC Driver 18 for SQL Server"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    s = FakeServer()
    install(monkeypatch, s)
    conn = s.connect()
    conn.cursor().execute("CREATE TABLE [dbo].[orders] ([id] INT PRIMARY KEY, [v] VARCHAR(20))")
    conn.cursor().execute("CREATE TABLE [dbo].[notes] ([body] NVARCHAR(MAX))")
    return s


def cli(*args: str) -> Any:
    from toolkit_cli.app import wire

    return CliRunner().invoke(wire(), list(args))


def items(result: Any) -> dict[str, dict[str, Any]]:
    report = json.loads(result.stdout)
    source = next(e for e in report["endpoints"] if e["role"] == "source")
    assert source["error"] is None, source
    return {i["name"]: i for i in source["items"]}


def test_check_names_each_missing_piece_and_its_fix(server: FakeServer, tmp_path: Path) -> None:
    server.snapshot_isolation = 0
    server.version = "13.0.4001.0"  # 2016 SP1
    out = cli("check", "--source", URL, "--trail", str(tmp_path / "t"), "--json")
    assert out.exit_code == 1, out.output
    got = items(out)
    assert got["CDC on the database"]["ok"] is False
    assert "sys.sp_cdc_enable_db" in got["CDC on the database"]["hint"]
    assert got["snapshot isolation"]["ok"] is False
    assert (
        "ALTER DATABASE [shop] SET ALLOW_SNAPSHOT_ISOLATION ON" in got["snapshot isolation"]["hint"]
    )
    assert got["SQL Server version"]["ok"] is False
    assert "13.0.5026" in got["SQL Server version"]["expected"]
    live = got["live server tested"]
    assert live["ok"] is False and live["blocking"] is False and live["hint"] == LIVE_NOTE
    # nothing about jobs or tables before CDC exists on the database
    assert not any(name.startswith("CDC on dbo.") for name in got)


def test_check_tables_jobs_and_retention(server: FakeServer, tmp_path: Path) -> None:
    server.enable_db()
    server.enable_table("dbo", "orders", None)
    server.capture_running = False
    server.retention = 60
    out = cli("check", "--source", URL, "--trail", str(tmp_path / "t"), "--json")
    assert out.exit_code == 1, out.output
    got = items(out)
    assert "CDC on dbo.orders" not in got  # tracked: its columns are checked instead
    notes = got["CDC on dbo.notes"]
    assert notes["ok"] is False and notes["blocking"] is True
    assert "@source_name = N'notes'" in notes["hint"]
    job = got["CDC capture job"]
    assert (job["value"], job["ok"]) == ("not running", False)
    assert "sys.sp_cdc_start_job @job_type = N'capture'" in job["hint"]
    retention = got["CDC retention"]
    assert (retention["value"], retention["ok"], retention["blocking"]) == (
        "60 minutes",
        False,
        False,
    )
    assert "@retention = 4320" in retention["hint"]
    assert got["CDC columns of dbo.orders"]["ok"] is True


def test_check_passes_when_ready_and_sees_uncaptured_columns(
    server: FakeServer, tmp_path: Path
) -> None:
    server.enable_db()
    server.enable_table("dbo", "orders", None)
    server.enable_table("dbo", "notes", None)
    out = cli("check", "--source", URL, "--trail", str(tmp_path / "t"), "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["ok"] is True
    server.connect().cursor().execute("ALTER TABLE [dbo].[orders] ADD [qty] INT")
    got = items(cli("check", "--source", URL, "--trail", str(tmp_path / "t"), "--json"))
    drift = got["CDC columns of dbo.orders"]
    assert drift["value"] == "missing qty" and drift["blocking"] is False
    assert "@capture_instance = N'dbo_orders_v2'" in drift["hint"]
    assert got["row identity of dbo.notes"]["ok"] is False
    server.connect().cursor().execute(
        "CREATE TABLE [dbo].[odd] ([id] INT PRIMARY KEY, [anything] SQL_VARIANT)"
    )
    server.enable_table("dbo", "odd", None)
    got = items(cli("check", "--source", URL, "--trail", str(tmp_path / "t"), "--json"))
    odd = got["types of dbo.odd"]
    assert odd["ok"] is False and "anything (sql_variant)" in odd["value"]
    assert "[tables.columns]" in odd["hint"] and "CDC columns of dbo.orders" in got
    human = cli("check", "--source", URL, "--trail", str(tmp_path / "t"))
    assert "never yet against a live SQL Server" in " ".join(human.stdout.split())


def test_init_enables_cdc_on_the_database_and_selected_tables(
    server: FakeServer, tmp_path: Path
) -> None:
    out = cli("init", "--source", URL, "--trail", str(tmp_path / "t"), "--json")
    assert out.exit_code == 0, out.output
    fields = json.loads(out.stdout)
    assert fields["cdc_enabled_now"] is True
    assert fields["tables_added"] == ["dbo.notes", "dbo.orders"]
    assert server.cdc_enabled and set(server.instances) == {"dbo_notes", "dbo_orders"}
    again = json.loads(
        cli("init", "--source", URL, "--trail", str(tmp_path / "t"), "--json").stdout
    )
    assert again["cdc_enabled_now"] is False and again["tables_added"] == []
    assert set(server.instances) == {"dbo_notes", "dbo_orders"}


def test_init_without_sysadmin_says_who_must_enable_cdc(server: FakeServer, tmp_path: Path) -> None:
    server.sysadmin = 0
    db = open_database(Endpoint.parse(URL))
    with pytest.raises(PrerequisiteError, match="only a sysadmin") as info:
        db.prepare_source(
            [TableId("dbo", "orders")], SqlServerOptions(), trail_dir=tmp_path, source_id="s"
        )
    assert "EXEC sys.sp_cdc_enable_db" in str(info.value)
    assert not server.instances


def test_drop_leaves_cdc_on_and_says_how_to_disable(server: FakeServer, tmp_path: Path) -> None:
    server.enable_db()
    server.enable_table("dbo", "orders", None)
    out = cli("drop", "--source", URL, "--trail", str(tmp_path / "t"), "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["cdc_left_enabled"] is True
    assert "dbo_orders" in server.instances


def test_url_and_password_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyodbc

    from connectors.sqlserver import connection_string
    from connectors.sqlserver.errors import map_error

    ep = Endpoint.parse(
        "mssql://app@db.example/shop?driver=FreeTDS&TDS_Version=7.4", password="s3cr;et"
    )
    assert ep.port == 1433 and ep.engine == "sqlserver"
    cs = connection_string(ep)
    assert (
        cs == "DRIVER={FreeTDS};SERVER=db.example,1433;DATABASE=shop;TDS_Version=7.4;UID=app;"
        "PWD={s3cr;et}"
    )
    assert "s3cr" not in ep.display and "s3cr" not in repr(ep)
    err = map_error(
        pyodbc.Error("28000", "[28000] Login failed for user 'app'. PWD=s3cr;et (18456)"), ep
    )
    assert type(err).__name__ == "AuthError" and "s3cr" not in str(err)
    lost = map_error(pyodbc.Error("08S01", "[08S01] Communication link failure (10054)"), ep)
    assert type(lost).__name__ == "ConnectError"


def test_source_keys_are_typed(tmp_path: Path) -> None:
    from connectors.errors import ConfigError
    from toolkit_cli.config import load

    path = tmp_path / "redoline.toml"
    path.write_text(
        '[source]\nurl = "sqlserver://app@db/shop"\npoll_interval = 0.5\npage_rows = 100\n'
        'cdc_role = "cdc_reader"\n'
    )
    assert load(path).source().engine_options() == {
        "poll_interval": 0.5,
        "page_rows": 100,
        "cdc_role": "cdc_reader",
    }
    path.write_text('[source]\nurl = "sqlserver://app@db/shop"\npage_rows = 0\n')
    with pytest.raises(ConfigError, match="at least 1") as info:
        load(path)
    assert info.value.key == "source.page_rows"
