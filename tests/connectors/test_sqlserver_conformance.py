"""The source conformance suite (source_cases.py) on SQL Server, through the scripted server.

Capture runs as ``redoline capture`` does (capture.runner over the engine-neutral loop) and
the cases judge the trail. Three cases apply as written. The fourth adds a column with
``ALTER TABLE ... ADD COLUMN``, which T-SQL spells ``ADD``, and on SQL Server a new column
reaches CDC only through a second capture instance: its SQL Server form below does both, as
docs/capture-sqlserver.md#schema-changes tells a DBA to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.endpoint import Endpoint
from connectors.model import Op
from tests.connectors import source_cases
from tests.connectors.source_cases import Harness, capture
from tests.connectors.sqlserver_fake import FakeConnection, FakeServer, install


@dataclass
class SqlServerHarness(Harness):
    server: FakeServer | None = None

    def create(self, name: str, extra: str = "") -> None:
        """The keyed table, then CDC on it (CDC captures full images: no replica identity)."""
        q = self.db.quote
        self.run(
            f"CREATE TABLE {self.qt(name)} ({q('id')} INT PRIMARY KEY, {q('v')} VARCHAR(20){extra})"
        )
        self.run(
            f"EXEC sys.sp_cdc_enable_table @source_schema = N'{self.schema}', "
            f"@source_name = N'{name}', @role_name = NULL"
        )


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> SqlServerHarness:
    server = FakeServer()
    install(monkeypatch, server)
    server.enable_db()
    return SqlServerHarness(
        Endpoint.parse("sqlserver://reader@db.example/shop"),
        "dbo",
        lambda: FakeConnection(server, autocommit=False),
        mark="?",
        server=server,
    )


def check_ddl_is_announced_before_its_rows(h: SqlServerHarness, trail: Path) -> None:
    """source_cases' DDL check in T-SQL, with the second capture instance CDC needs."""
    h.create("d")
    capture(h, trail)
    h.run(h.insert("d", (1, "before")))
    h.run(f"ALTER TABLE {h.qt('d')} ADD {h.db.quote('n')} INT")
    h.run(
        "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'd', "
        "@role_name = NULL, @capture_instance = N'dbo_d_v2'"
    )
    h.run((f"INSERT INTO {h.qt('d')} VALUES (?, ?, ?)", (2, "after", 7)))
    txns = capture(h, trail)
    defined: set[str] = set()
    seen_new = False
    for txn in txns:
        for ch in txn.changes:
            if ch.table != h.table("d"):
                continue
            if ch.op is Op.DDL and ch.table_schema is not None:
                defined = set(ch.table_schema.column_names)
            elif ch.op is Op.INSERT and ch.after is not None and ch.after["id"] == 2:
                assert "n" in defined, defined
                assert ch.after["n"] == 7
                seen_new = True
    assert seen_new


CASES: list[Callable[..., None]] = [
    source_cases.check_commit_only_and_rollback,
    source_cases.check_interleaved_transactions_in_commit_order,
    source_cases.check_positions_and_exact_resume,
    check_ddl_is_announced_before_its_rows,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.removeprefix("check_") for c in CASES])
def test_sqlserver_source(
    case: Callable[[SqlServerHarness, Path], None], harness: SqlServerHarness, tmp_path: Path
) -> None:
    case(harness, tmp_path / "trail")


def test_a_lagging_capture_job_is_caught_up_on_the_next_run(
    harness: SqlServerHarness, tmp_path: Path
) -> None:
    """Until-caught-up stops where the capture job had come to; the next run continues."""
    h, trail = harness, tmp_path / "trail"
    assert h.server is not None
    h.create("l")
    capture(h, trail)
    h.server.auto_capture = False
    for i in range(4):
        h.run(h.insert("l", (i, f"r{i}")))
    h.server.capture_job(transactions=1)
    first = [t for t in capture(h, trail) if any(c.op is Op.INSERT for c in t.changes)]
    assert len(first) == 1
    h.server.capture_job()
    every = capture(h, trail)
    ids = [c.after["id"] for t in every for c in t.changes if c.op is Op.INSERT and c.after]
    assert ids == [0, 1, 2, 3]
