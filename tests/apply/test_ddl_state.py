"""apply.ddl.already_applied and ddl_kind: pure logic, table-driven (no server)."""

from __future__ import annotations

import pytest

from apply.ddl import already_applied, ddl_kind
from connectors.model import TableId


def _t(name: str) -> TableId:
    return TableId("s", name)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("RENAME TABLE a TO b, c TO d", "rename"),
        ("ALTER TABLE a RENAME TO b", "rename"),
        ("ALTER TABLE a ADD COLUMN c INT", "alter"),
        ("ALTER TABLE a RENAME COLUMN x TO y", "alter"),
        ("CREATE TABLE a (id INT)", "create"),
        ("DROP TABLE a, b", "drop"),
        ("TRUNCATE TABLE a", "truncate"),
        ("CREATE VIEW v AS SELECT 1", "other"),
    ],
)
def test_ddl_kind(sql: str, kind: str) -> None:
    assert ddl_kind(sql, "mysql") == kind


# target state: table -> its columns
_STATE = {"t": {"id", "v", "w"}, "a": {"id", "y"}, "b": {"id", "x"}}


@pytest.mark.parametrize(
    ("sql", "state", "expected", "done"),
    [
        # ALTER: decided by the column names it changes
        ("ALTER TABLE `s`.`t` ADD COLUMN `w` INT", _STATE, None, True),
        ("ALTER TABLE `s`.`t` ADD COLUMN `z` INT", _STATE, None, False),
        ("ALTER TABLE `s`.`t` DROP COLUMN `z`", _STATE, None, True),
        ("ALTER TABLE `s`.`t` DROP COLUMN `w`", _STATE, None, False),
        ("ALTER TABLE `s`.`t` RENAME COLUMN `old` TO `v`", _STATE, None, True),
        ("ALTER TABLE `s`.`t` RENAME COLUMN `v` TO `v2`", _STATE, None, False),
        ("ALTER TABLE `s`.`t` CHANGE `old` `w` BIGINT", _STATE, None, True),
        ("ALTER TABLE `s`.`t` CHANGE `w` `w2` BIGINT", _STATE, None, False),
        # a type change is the same when run again: run it
        ("ALTER TABLE `s`.`t` MODIFY `w` BIGINT", _STATE, None, False),
        # half of it there: the target is in neither state
        ("ALTER TABLE `s`.`t` ADD COLUMN `w` INT, ADD COLUMN `z` INT", _STATE, None, None),
        ("ALTER TABLE `s`.`gone` ADD COLUMN `w` INT", _STATE, None, None),
        # RENAME: decided by which names exist
        ("RENAME TABLE `s`.`old` TO `s`.`t`", _STATE, None, True),
        ("RENAME TABLE `s`.`t` TO `s`.`t2`", _STATE, None, False),
        ("ALTER TABLE `s`.`t` RENAME TO `t2`", _STATE, None, False),
        ("RENAME TABLE `s`.`t` TO `s`.`a`", _STATE, None, None),
        # a swap: the same names before and after; the trail's definitions tell
        (
            "RENAME TABLE `s`.`a` TO `s`.`tmp`, `s`.`b` TO `s`.`a`, `s`.`tmp` TO `s`.`b`",
            _STATE,
            {"a": {"id", "y"}, "b": {"id", "x"}},
            True,
        ),
        (
            "RENAME TABLE `s`.`a` TO `s`.`tmp`, `s`.`b` TO `s`.`a`, `s`.`tmp` TO `s`.`b`",
            _STATE,
            {"a": {"id", "x"}, "b": {"id", "y"}},
            False,
        ),
        (
            "RENAME TABLE `s`.`a` TO `s`.`tmp`, `s`.`b` TO `s`.`a`, `s`.`tmp` TO `s`.`b`",
            {"a": {"id"}, "b": {"id"}},
            {"a": {"id"}, "b": {"id"}},
            None,
        ),
        # statements that give the same result when run again
        ("DROP TABLE IF EXISTS `s`.`t`", _STATE, None, False),
        ("TRUNCATE TABLE `s`.`t`", _STATE, None, False),
    ],
)
def test_already_applied(
    sql: str,
    state: dict[str, set[str]],
    expected: dict[str, set[str]] | None,
    done: bool | None,
) -> None:
    assert (
        already_applied(
            sql,
            "mysql",
            lambda t: t.name in state,
            lambda t: state[t.name],
            lambda t: (expected or {}).get(t.name),
        )
        is done
    )
