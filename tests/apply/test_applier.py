"""The applier against real targets, compared row by row with a one-by-one replay."""

from __future__ import annotations

from typing import Any

import pytest

from apply.applier import Applier, ApplyOptions
from connectors.base import Writer
from connectors.model import TableId
from tests.apply.workload import KEYED, KEYLESS, Workload


def _norm(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    out = []
    for row in rows:
        out.append(
            tuple(
                v.replace(tzinfo=None)
                if hasattr(v, "tzinfo")
                and v is not None
                and not isinstance(v, str)
                and getattr(v, "tzinfo", None)
                else v
                for v in row
            )
        )
    return out


def content(writer: Writer, table: TableId) -> list[tuple[Any, ...]]:
    t = f"{writer.database.qualified(table)}"
    rows = writer.query(f"SELECT * FROM {t}")
    writer.commit()
    return sorted(_norm(rows), key=repr)


@pytest.mark.parametrize("batch_rows", [1, 37, 100_000])
def test_random_workload_matches_replay(
    writer: Writer, batch_rows: int, options: dict[str, Any], schema_name: str
) -> None:
    wl = Workload(seed=batch_rows)
    txns = [wl.announce()] + [wl.transaction() for _ in range(150)]
    applier = Applier(writer, None, ApplyOptions(batch_rows=batch_rows, batch_ms=10**6, **options))
    assert applier.start() == 0
    stats = applier.run(txns)
    assert stats.applied_op == wl.op
    assert stats.replayed_groups == 0
    assert content(writer, TableId(schema_name, KEYED.table.name)) == sorted(
        wl.expected_keyed(), key=repr
    )
    assert content(writer, TableId(schema_name, KEYLESS.table.name)) == wl.expected_keyless()


def test_restart_resumes_after_checkpoint(
    writer: Writer, options: dict[str, Any], schema_name: str
) -> None:
    wl = Workload(seed=7)
    txns = [wl.announce()] + [wl.transaction() for _ in range(60)]
    first = Applier(writer, None, ApplyOptions(batch_rows=50, **options))
    first.start()
    first.run(txns[:30])
    second = Applier(writer, None, ApplyOptions(batch_rows=50, **options))
    assert second.start() == txns[29].last_op
    second.run(txns)  # everything again: the applied part is skipped
    assert content(writer, TableId(schema_name, KEYED.table.name)) == sorted(
        wl.expected_keyed(), key=repr
    )
    assert content(writer, TableId(schema_name, KEYLESS.table.name)) == wl.expected_keyless()
