"""The applier against real targets, compared row by row with a one-by-one replay."""

from __future__ import annotations

from typing import Any

import pytest

from apply.applier import Applier
from apply.options import ApplyOptions
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


def _orders_txn(first_op: int, changes: list[Any], origin: str = "src") -> Any:
    import datetime as dt

    from connectors.model import Transaction

    return Transaction(
        str(first_op), f"p{first_op}", dt.datetime(2024, 1, 1), origin, changes, first_op
    )


def test_collision_mode_reconciles_and_counts(
    writer: Writer, options: dict[str, Any], schema_name: str
) -> None:
    from connectors.model import Change, Op

    wl = Workload(seed=1)
    ann = wl.announce()
    row = {"id": 1, "customer": "a", "amount": None, "created": None, "note": None}
    t = KEYED.table
    txns = [
        ann,
        _orders_txn(3, [Change(Op.INSERT, t, after=row)]),
        # collision window: insert of the existing row, update and delete of missing rows
        _orders_txn(4, [Change(Op.INSERT, t, after={**row, "customer": "b"})]),
        _orders_txn(
            5, [Change(Op.UPDATE, t, key={"id": 2}, before={"id": 2}, after={**row, "id": 2})]
        ),
        _orders_txn(6, [Change(Op.DELETE, t, key={"id": 9}, before={"id": 9})]),
    ]
    # batch_rows=1: row 1 is committed before the colliding insert arrives
    applier = Applier(writer, None, ApplyOptions(batch_rows=1, collision_until_op=6, **options))
    applier.start()
    stats = applier.run(txns)
    assert stats.collisions == 3
    got = content(writer, TableId(schema_name, "orders"))
    assert [(r[0], r[1]) for r in got] == [(1, "b"), (2, "a")]


def test_rejected_row_stops_or_goes_to_reject_trail(
    writer: Writer, options: dict[str, Any], schema_name: str, tmp_path: Any
) -> None:
    from capture.trail import TrailReader
    from connectors.errors import ApplyError
    from connectors.model import Change, Op

    wl = Workload(seed=1)
    t = KEYED.table
    row = {"id": 1, "customer": "a", "amount": None, "created": None, "note": None}
    txns = [
        wl.announce(),
        _orders_txn(3, [Change(Op.INSERT, t, after=row)]),
        _orders_txn(4, [Change(Op.INSERT, t, after={**row, "id": None})]),
        _orders_txn(5, [Change(Op.INSERT, t, after={**row, "id": 5})]),
        _orders_txn(6, [Change(Op.INSERT, t, after={**row, "id": 6})], origin=options["target_id"]),
    ]
    with pytest.raises(ApplyError, match=r"operations 4\.\.4"):
        stopper = Applier(writer, None, ApplyOptions(**options))
        stopper.start()
        stopper.run(txns)
    # the loop guard is configured (bidirectional setup): the target's own origin is skipped
    guard = frozenset({options["target_id"]})
    skipper = Applier(
        writer,
        None,
        ApplyOptions(on_error="skip", reject_dir=tmp_path / "rej", ignore_origins=guard, **options),
    )
    assert skipper.start() == 3
    stats = skipper.run(txns)
    assert stats.rejected_transactions == 1
    assert stats.skipped_origin == 1
    assert stats.applied_op == 6
    assert [r[0] for r in content(writer, TableId(schema_name, "orders"))] == [1, 5]
    rejected = list(TrailReader(tmp_path / "rej").transactions(1))
    assert [c.op for c in rejected[0].changes] == [Op.DDL, Op.INSERT]


def _one_transaction(txns: list[Any]) -> Any:
    """Every change of ``txns`` as one source transaction (a PostgreSQL source puts a table's
    definition into the transaction carrying its rows)."""
    return _orders_txn(txns[0].first_op, [c for t in txns for c in t.changes])


def test_transaction_with_a_definition_is_written_set_based(
    writer: Writer, options: dict[str, Any], schema_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wl = Workload(seed=11)
    whole = _one_transaction([wl.announce()] + [wl.transaction() for _ in range(100)])
    row_writes = 0
    apply_row = writer.apply_row

    def counted(*args: Any, **kwargs: Any) -> int:
        nonlocal row_writes
        row_writes += 1
        return apply_row(*args, **kwargs)

    monkeypatch.setattr(writer, "apply_row", counted)
    applier = Applier(writer, None, ApplyOptions(**options))
    applier.start()
    stats = applier.run([whole])
    assert stats.applied_op == wl.op and stats.replayed_groups == 0
    # folded per table and merged, not one statement per change (there were 1,000 changes)
    assert row_writes == 0
    assert content(writer, TableId(schema_name, KEYED.table.name)) == sorted(
        wl.expected_keyed(), key=repr
    )
    assert content(writer, TableId(schema_name, KEYLESS.table.name)) == wl.expected_keyless()


def test_refused_row_in_a_transaction_with_a_definition_is_named(
    writer: Writer, options: dict[str, Any], schema_name: str, tmp_path: Any
) -> None:
    """The set-based write of a transaction with DDL is refused: it is applied again row by
    row, which names the operation (stop) or sets the transaction aside (skip)."""
    from connectors.errors import ApplyError
    from connectors.model import Change, Op

    wl = Workload(seed=1)
    t = KEYED.table
    row = {"id": 1, "customer": "a", "amount": None, "created": None, "note": None}
    ann = wl.announce()
    bad = _orders_txn(
        1,
        [
            *ann.changes,
            Change(Op.INSERT, t, after=row),
            Change(Op.INSERT, t, after={**row, "id": None}),
            Change(Op.INSERT, t, after={**row, "id": 2}),
        ],
    )
    good = _orders_txn(6, [Change(Op.INSERT, t, after={**row, "id": 6})])
    with pytest.raises(ApplyError, match=r"operations 1\.\.5, .*: operation 4, insert"):
        stopper = Applier(writer, None, ApplyOptions(**options))
        stopper.start()
        stopper.run([bad, good])
    skipper = Applier(writer, None, ApplyOptions(on_error="skip", reject_dir=tmp_path, **options))
    assert skipper.start() == 0
    stats = skipper.run([bad, good])
    assert stats.rejected_transactions == 1 and stats.applied_op == 6
    assert [r[0] for r in content(writer, TableId(schema_name, "orders"))] == [6]
