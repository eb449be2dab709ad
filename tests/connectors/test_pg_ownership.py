"""Slot and publication names per pipeline (connectors/postgres/ownership.py): pure logic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.errors import ConfigError, ReplicationError
from connectors.postgres.ownership import (
    check_owner,
    default_slot,
    name_problem,
    resolve_names,
)


def test_default_name_is_stable_per_trail_and_differs_between_trails(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "trail", tmp_path / "b" / "trail"
    assert default_slot(a) == default_slot(a) == default_slot(tmp_path / "a" / ".." / "a/trail")
    assert default_slot(a) != default_slot(b)
    assert default_slot(a, "default") == default_slot(a)
    named = default_slot(a, "Shop EU/1")
    assert named.startswith("redoline_shop_eu_1_") and named.endswith(default_slot(a)[-8:])
    assert name_problem(default_slot(a, "x" * 200)) is None  # long ids are cut to fit 63


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("shop", True),
        ("s_1", True),
        ("x" * 63, True),
        ("x" * 64, False),
        ("Shop", False),
        ("a-b", False),
        ("", False),
        ("a b", False),
        (None, False),
    ],
)
def test_name_rule(name: object, ok: bool) -> None:
    assert (name_problem(name) is None) == ok


def test_names_flag_then_marker_then_derived(tmp_path: Path) -> None:
    trail = tmp_path / "trail"
    derived = resolve_names(trail_dir=trail, source_id="shop")
    assert derived.slot == default_slot(trail, "shop") and derived.publication == derived.slot
    trail.mkdir()
    (trail / "pgslot.json").write_text(json.dumps({"slot": "kept", "publication": "kept_pub"}))
    recorded = resolve_names(trail_dir=trail, source_id="shop")
    assert (recorded.slot, recorded.publication) == ("kept", "kept_pub")
    explicit = resolve_names(slot="mine", trail_dir=trail)
    assert (explicit.slot, explicit.publication) == ("mine", "kept_pub")
    with pytest.raises(ConfigError, match="no replication slot name"):
        resolve_names()
    with pytest.raises(ConfigError, match=r"\[source.publication\] publication name 'P!'"):
        resolve_names(slot="s", publication="P!")


def test_owner_refuses_foreign_replaced_and_dropped_slots(tmp_path: Path) -> None:
    trail = tmp_path / "trail"
    fresh = resolve_names(trail_dir=trail)
    check_owner(fresh, False, database="d", system="1", where="pg")  # nothing yet: fine
    with pytest.raises(ConfigError, match="did not create it"):
        check_owner(fresh, True, database="d", system="1", where="pg")
    trail.mkdir()
    record = {"slot": fresh.slot, "database": "d", "system": "1", "position": "0/100"}
    (trail / "pgslot.json").write_text(json.dumps(record))
    owned = resolve_names(trail_dir=trail)
    check_owner(owned, True, database="d", system="1", where="pg", confirmed_flush=0x100)
    with pytest.raises(ReplicationError, match="ahead of the trail's position 0/100"):
        check_owner(owned, True, database="d", system="1", where="pg", confirmed_flush=0x101)
    # the trail's own last transaction allows the slot to be confirmed up to it
    check_owner(
        owned,
        True,
        database="d",
        system="1",
        where="pg",
        confirmed_flush=0x200,
        trail_position=0x200,
    )
    with pytest.raises(ReplicationError, match="captured through system '1'"):
        check_owner(owned, True, database="d", system="2", where="pg")
    with pytest.raises(ReplicationError, match="does not exist, but this trail is bound"):
        check_owner(owned, False, database="d", system="1", where="pg")
    (trail / "pgslot.json").write_text(json.dumps({**record, "dropped": "2026-01-01"}))
    with pytest.raises(ReplicationError, match="was dropped by `redoline drop`"):
        check_owner(resolve_names(trail_dir=trail), True, database="d", system="1", where="pg")
