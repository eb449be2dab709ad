"""`redoline verify` with a SQL Server source (the scripted server): rows hashed on this host
from one SELECT per table, against a DuckDB target loaded by the SQL Server snapshot; equal
tables exit 0, and k differences planted on the target are reported as exactly k (exit 1)."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from pathlib import Path

import pytest

from connectors.base import open_database
from connectors.endpoint import Endpoint
from connectors.errors import ConfigError
from connectors.sqlserver.checksum import Checksum, double_quoted
from tests.connectors.clientside_cases import load_duckdb, plant, verify
from tests.connectors.sqlserver_fake import FakeServer, install

URL = "sqlserver://reader@db.example/shop"
TABLES = "dbo.*"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    s = FakeServer()
    install(monkeypatch, s)
    s.enable_db()
    cur = s.connect().cursor()
    cur.execute(
        "CREATE TABLE [dbo].[kinds] ([id] INT PRIMARY KEY, [name] NVARCHAR(40), "
        "[price] DECIMAL(12,3), [at] DATETIMEOFFSET(7), [local] DATETIME2(6), "
        "[b] VARBINARY(8), [f] FLOAT, [ok] BIT, [u] UNIQUEIDENTIFIER)"
    )
    cur.execute("CREATE TABLE [dbo].[tk] ([k] NVARCHAR(20) PRIMARY KEY, [v] NVARCHAR(20))")
    zones = [dt.timezone(dt.timedelta(hours=h, minutes=m)) for h, m in ((2, 0), (-5, -30))]
    for i in range(1, 31):
        cur.execute(
            "INSERT INTO [dbo].[kinds] VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            i,
            f"grüße 東京 {i} it's",
            decimal.Decimal(i * 1371) / 1000 - 5,
            dt.datetime(2024, 3, 31, 1, 59, 59, i, tzinfo=zones[i % 2]),
            dt.datetime(2024, 1, 2, 3, 4, 5, 123456) + dt.timedelta(days=i),
            bytes([0, i, 255]),
            i / 3,
            i % 2 == 0,
            uuid.UUID(int=i * 7919),
        )
    cur.execute(
        "INSERT INTO [dbo].[kinds] VALUES (99, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    )
    for i in range(1, 20):
        cur.execute("INSERT INTO [dbo].[tk] VALUES (?, ?)", f"k{i}", f"ü{i}")
    return s


def test_verify_a_sqlserver_source_then_find_exactly_the_planted_differences(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    target = load_duckdb(URL, TABLES, tmp_path)
    code, report = verify(URL, target, TABLES)
    assert code == 0 and report["equal"], report
    modes = {t["source_table"]: t["mode"] for t in report["tables"]}
    assert modes == {"dbo.kinds": "range", "dbo.tk": "hash"}

    plant(
        tmp_path,
        [
            # one microsecond later: an instant that differs only in UTC is found
            'UPDATE "dbo"."kinds" SET "at" = "at" + INTERVAL 1 MICROSECOND WHERE "id" = 4',
            'UPDATE "dbo"."kinds" SET "name" = \'grüße 東京 5 its\' WHERE "id" = 5',
            'UPDATE "dbo"."kinds" SET "price" = "price" + 0.001 WHERE "id" = 6',
            'UPDATE "dbo"."kinds" SET "u" = NULL WHERE "id" = 7',  # value -> NULL
            'DELETE FROM "dbo"."kinds" WHERE "id" = 20',  # missing
            'INSERT INTO "dbo"."tk" VALUES (\'zz\', NULL)',  # extra
            'UPDATE "dbo"."tk" SET "v" = \'u3\' WHERE "k" = \'k3\'',  # different
        ],
    )
    code, report = verify(URL, target, TABLES)
    assert code == 1 and not report["equal"]
    assert report["totals"] == {"missing": 1, "extra": 1, "different": 5, "transient": 0}


def test_bracket_quoting_becomes_double_quotes_outside_literals(server: FakeServer) -> None:
    assert double_quoted("SELECT [a]]b], 'x[y]' FROM [dbo].[t\"q] WHERE [n] = N'[z]'") == (
        'SELECT "a]b", \'x[y]\' FROM "dbo"."t""q" WHERE "n" = N\'[z]\''
    )
    db = open_database(Endpoint.parse(URL))
    with pytest.raises(ConfigError, match="SQL Server is a source"):
        Checksum(db, writable=True)  # type: ignore[arg-type]
