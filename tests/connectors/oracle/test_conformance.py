"""The source conformance suite (tests/connectors/source_cases.py) on Oracle, through the fake.

No Oracle server can run here: the fake (fake.py) runs the cases' SQL as user sessions that
write redo as LogMiner documents it, and capture reads it back through the LogMiner reader as
``redoline capture`` does. Three cases apply as written. The keyed table is created in Oracle's
own types with ALL COLUMNS supplemental logging (what `redoline init` gives a table whose rows
should be captured whole); the fourth case adds a column the way Oracle spells it,
``ADD ("n" NUMBER(10))`` (``ADD COLUMN`` is not Oracle SQL, and the fake refuses it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.endpoint import Endpoint
from connectors.model import Op
from connectors.oracle.session import use_sessions
from tests.connectors import source_cases
from tests.connectors.oracle.fake import FakeOracle
from tests.connectors.oracle.fake_user import FakeConnection
from tests.connectors.source_cases import Harness, capture


@dataclass
class OracleHarness(Harness):
    def create(self, name: str, extra: str = "") -> None:
        q = self.db.quote
        self.run(
            f"CREATE TABLE {self.qt(name)} ({q('id')} NUMBER(10) PRIMARY KEY, "
            f"{q('v')} VARCHAR2(20){extra})",
            f"ALTER TABLE {self.qt(name)} ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS",
        )


@pytest.fixture
def harness() -> Iterator[OracleHarness]:
    fake = FakeOracle()
    with use_sessions(fake.session):
        yield OracleHarness(
            Endpoint.parse("oracle://capture@db.example/ORCL"),
            "SHOP",
            lambda: FakeConnection(fake),
        )


def check_ddl_is_announced_before_its_rows(h: OracleHarness, trail: Path) -> None:
    """source_cases' DDL check with Oracle's ADD (...) spelling."""
    h.create("d")
    capture(h, trail)
    h.run(h.insert("d", (1, "before")))
    q = h.db.quote
    h.run(f"ALTER TABLE {h.qt('d')} ADD ({q('n')} NUMBER(10))")
    h.run((f"INSERT INTO {h.qt('d')} VALUES ({h.mark}, {h.mark}, {h.mark})", (2, "after", 7)))
    defined: set[str] = set()
    seen_new = False
    for txn in capture(h, trail):
        for ch in txn.changes:
            if ch.table != h.table("d"):
                continue
            if ch.op is Op.DDL and ch.table_schema is not None:
                defined = set(ch.table_schema.column_names)
            elif ch.op is Op.INSERT and ch.after is not None and ch.after["id"] == 2:
                assert "n" in defined, defined
                assert ch.after["n"] == 7 and type(ch.after["n"]) is int
                seen_new = True
    assert seen_new


CASES: list[Callable[[OracleHarness, Path], None]] = [
    source_cases.check_commit_only_and_rollback,
    source_cases.check_interleaved_transactions_in_commit_order,
    source_cases.check_positions_and_exact_resume,
    check_ddl_is_announced_before_its_rows,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.removeprefix("check_") for c in CASES])
def test_source(
    case: Callable[[OracleHarness, Path], None], harness: OracleHarness, tmp_path: Path
) -> None:
    case(harness, tmp_path / "trail")


def test_the_fake_refuses_sql_oracle_does_not_speak(harness: OracleHarness) -> None:
    from connectors.oracle.session import SessionError

    harness.create("x")
    with pytest.raises(SessionError, match="ORA-00904"):
        harness.run(f'ALTER TABLE {harness.qt("x")} ADD COLUMN "n" INT')
