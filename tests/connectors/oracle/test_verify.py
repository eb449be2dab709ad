"""`redoline verify` with an Oracle source (the fake): rows hashed on this host from one
plain SELECT per table, against a DuckDB target loaded by the Oracle snapshot; equal tables
exit 0, and k differences planted on the target are reported as exactly k (exit 1)."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import pytest

from connectors.errors import ConfigError
from connectors.model import TableId
from connectors.oracle import Oracle
from connectors.oracle.checksum import Checksum
from tests.connectors.clientside_cases import load_duckdb, plant, verify
from tests.connectors.oracle.fake import FakeOracle

URL = "oracle://capture:secret@db.example:1521/ORCL"
TABLES = "SHOP.*"


def fill(fake: FakeOracle) -> None:
    fake.create(
        "SHOP",
        "KINDS",
        [
            ("ID", "NUMBER", 22, None, 10, 0, "N"),
            ("AMOUNT", "NUMBER", 22, None, 12, 2, "Y"),
            ("BIG", "NUMBER", 22, None, 38, 4, "Y"),
            ("FREE", "NUMBER", 22, None, None, None, "Y"),  # unconstrained: any scale
            ("AT", "DATE", 7, None, None, None, "Y"),
            ("TZ", "TIMESTAMP(6) WITH TIME ZONE", 13, None, None, 6, "Y"),
            ("RAWV", "RAW", 8, None, None, None, "Y"),
            ("DBL", "BINARY_DOUBLE", 8, None, None, None, "Y"),
            ("TXT", "NVARCHAR2", 40, 20, None, None, "Y"),
        ],
        ["ID"],
    )
    zones = [dt.timezone(dt.timedelta(hours=h, minutes=m)) for h, m in ((2, 0), (-5, -30))]
    t = fake.txn()
    for i in range(1, 31):
        t.insert(
            "SHOP",
            "KINDS",
            {
                "ID": i,
                "AMOUNT": decimal.Decimal(i * 137) / 100 - 5,
                "BIG": decimal.Decimal(f"-{i}1234567890123456789012345678901.{i:04d}"),
                "FREE": decimal.Decimal(f"{i}.{'7' * i}"),
                "AT": dt.datetime(2024, 1, 2, 3, 4, 5) + dt.timedelta(days=i),
                "TZ": dt.datetime(2024, 3, 31, 1, 59, 59, i, tzinfo=zones[i % 2]),
                "RAWV": bytes([0, i, 255]),
                "DBL": i / 3,
                "TXT": f"grüße 東京 {i} it's",
            },
        )
    t.insert("SHOP", "KINDS", {"ID": 99})  # every other column NULL
    for i in range(1, 13):
        t.insert("SHOP", "ITEMS", {"ID": i, "NAME": f"é{i}", "PRICE": decimal.Decimal(i)})
    for body in ("dup", "dup", "ünï", None):
        t.insert("SHOP", "NOTES", {"BODY": body})
    t.commit()


def test_verify_an_oracle_source_then_find_exactly_the_planted_differences(
    oracle: Oracle, fake: FakeOracle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fill(fake)
    target = load_duckdb(URL, TABLES, tmp_path)
    code, report = verify(URL, target, TABLES)
    assert code == 0 and report["equal"], report
    assert {t["source_table"] for t in report["tables"]} == {
        "SHOP.KINDS",
        "SHOP.ITEMS",
        "SHOP.NOTES",
    }
    reads = [s for s in fake.statements if s.startswith("SELECT") and 'FROM "SHOP"' in s]
    assert any('SYS_EXTRACT_UTC("TZ")' in s and "AS OF" not in s for s in reads)

    plant(
        tmp_path,
        [
            # one microsecond later: an instant that differs only in UTC is found
            'UPDATE "SHOP"."KINDS" SET "TZ" = "TZ" + INTERVAL 1 MICROSECOND WHERE "ID" = 4',
            'UPDATE "SHOP"."KINDS" SET "TXT" = \'grüße 東京 5 its\' WHERE "ID" = 5',
            'UPDATE "SHOP"."KINDS" SET "AMOUNT" = NULL WHERE "ID" = 6',  # value -> NULL
            'DELETE FROM "SHOP"."KINDS" WHERE "ID" = 20',  # missing
            'INSERT INTO "SHOP"."ITEMS" ("ID", "NAME") VALUES (500, \'x\')',  # extra
            'UPDATE "SHOP"."NOTES" SET "BODY" = \'dup!\' WHERE "BODY" = \'ünï\'',  # keyless
        ],
    )
    code, report = verify(URL, target, TABLES)
    assert code == 1 and not report["equal"]
    assert report["totals"] == {"missing": 2, "extra": 2, "different": 3, "transient": 0}
    modes = {t["source_table"]: t["mode"] for t in report["tables"]}
    assert modes == {"SHOP.KINDS": "range", "SHOP.ITEMS": "range", "SHOP.NOTES": "keyless"}


def test_repair_into_oracle_is_refused(oracle: Oracle) -> None:
    with pytest.raises(ConfigError, match="Oracle is a source"):
        Checksum(oracle, writable=True)
    cs = Checksum(oracle)
    s = cs.session()
    try:
        with pytest.raises(ConfigError, match="repair cannot write"):
            s.run_script(["DELETE FROM x"])
        assert s.query('SELECT count(*) FROM "SHOP"."ITEMS"') == [(0,)]
        assert cs.scratch().copied[TableId("SHOP", "ITEMS")]
        cs.release()
    finally:
        s.close()
