"""redoline check / init for Oracle, against the fake's dictionary and V$ views."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.errors import PrerequisiteError
from connectors.model import TableId
from connectors.oracle import Oracle
from tests.connectors.oracle.fake import FakeOracle

ITEMS, NOTES = TableId("SHOP", "ITEMS"), TableId("SHOP", "NOTES")


def _items(oracle: Oracle) -> dict[str, tuple[bool, bool, str, str]]:
    return {
        i.name: (i.ok, i.blocking, i.value, i.hint) for i in oracle.check_source([ITEMS, NOTES])
    }


def test_check_names_each_missing_prerequisite_with_its_fix(
    oracle: Oracle, fake: FakeOracle
) -> None:
    fake.tables[ITEMS].log_groups.clear()
    fake.tables[NOTES].log_groups.clear()
    fake.log_mode = "NOARCHIVELOG"
    fake.sup["MIN"] = "NO"
    fake.privs.discard("LOGMINING")
    fake.denied_views.add("V$ARCHIVED_LOG")
    got = _items(oracle)
    assert got["live-server validation"][:2] == (False, False)
    assert "not yet been run against a live Oracle server" in got["live-server validation"][2]
    assert got["log mode"][0] is False and "ALTER DATABASE ARCHIVELOG" in got["log mode"][3]
    assert got["minimal supplemental logging"][3] == "ALTER DATABASE ADD SUPPLEMENTAL LOG DATA"
    assert got["LOGMINING"][:2] == (False, True)
    assert got["LOGMINING"][3] == 'GRANT LOGMINING TO "CAPTURE"'
    assert got["SELECT on V$ARCHIVED_LOG"][0] is False
    assert got["SELECT on V$ARCHIVED_LOG"][3] == 'GRANT SELECT ON V_$ARCHIVED_LOG TO "CAPTURE"'
    assert got["SELECT on V$LOG"][0] is True
    items = got["supplemental logging SHOP.ITEMS"]
    assert items[0] is False
    assert items[3].startswith(
        'ALTER TABLE "SHOP"."ITEMS" ADD SUPPLEMENTAL LOG DATA (PRIMARY KEY) COLUMNS'
    )
    notes = got["supplemental logging SHOP.NOTES"]
    assert notes[0] is False and "(no primary key)" in notes[2]
    assert 'ALTER TABLE "SHOP"."NOTES" ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS' in notes[3]
    # flashback: the tables belong to SHOP, not to the capture user
    assert got["FLASHBACK (snapshot AS OF SCN)"][0] is False


def test_init_enables_table_logging_then_check_passes(oracle: Oracle, fake: FakeOracle) -> None:
    fake.sup["MIN"] = "NO"
    fake.tables[ITEMS].log_groups.clear()
    fake.tables[NOTES].log_groups.clear()
    fake.privs.add("FLASHBACK ANY TABLE")
    setup = oracle.prepare_source([ITEMS, NOTES], None, trail_dir=Path("/x"), source_id="s")
    assert setup.fields["minimal_logging_enabled"] is True
    assert setup.fields["tables_enabled"] == [
        "SHOP.ITEMS: PRIMARY KEY COLUMNS",
        "SHOP.NOTES: ALL COLUMNS",
    ]
    assert fake.tables[ITEMS].log_groups == {"PRIMARY KEY LOGGING"}
    assert fake.tables[NOTES].log_groups == {"ALL COLUMN LOGGING"}
    got = _items(oracle)
    assert [n for n, v in got.items() if v[1] and not v[0]] == []
    # a second init has nothing left to do
    again = oracle.prepare_source([ITEMS, NOTES], None, trail_dir=Path("/x"), source_id="s")
    assert again.fields == {"minimal_logging_enabled": False, "tables_enabled": []}


def test_init_without_alter_database_names_the_statement(oracle: Oracle, fake: FakeOracle) -> None:
    fake.sup["MIN"] = "NO"
    fake.may_alter = False
    with pytest.raises(PrerequisiteError, match="ALTER DATABASE ADD SUPPLEMENTAL LOG DATA"):
        oracle.prepare_source([ITEMS], None, trail_dir=Path("/x"), source_id="s")


def test_definitions_and_full_before_image(oracle: Oracle, fake: FakeOracle) -> None:
    items = oracle.table_schema(ITEMS)
    assert items.primary_key == ("ID",)
    assert [(c.name, c.kind) for c in items.columns] == [
        ("ID", "int"),
        ("NAME", "str"),
        ("PRICE", "decimal"),
    ]
    assert items.column("PRICE").scale == 2 and not items.full_before_image
    fake.tables[NOTES].log_groups.clear()
    assert not oracle.table_schema(NOTES).full_before_image
    fake.tables[NOTES].log_groups.add("ALL COLUMN LOGGING")
    assert oracle.table_schema(NOTES).full_before_image
    assert oracle.list_tables() == [ITEMS, NOTES]
    assert "secret" not in repr(oracle)


def test_source_keys_are_typed(tmp_path: Path) -> None:
    from connectors.errors import ConfigError
    from toolkit_cli.config import load

    path = tmp_path / "redoline.toml"
    path.write_text('[source]\nurl = "oracle://capture@db/ORCL"\nmine_window = 5000\n')
    src = load(path).source()
    assert src.options.mine_window == 5000 and src.endpoint.port == 1521
    path.write_text('[source]\nurl = "oracle://capture@db/ORCL"\nspill_bytes = 0\n')
    with pytest.raises(ConfigError, match="must be a positive whole number") as info:
        load(path)
    assert info.value.key == "source.spill_bytes"
