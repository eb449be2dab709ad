"""Transaction assembly: commit order, rollbacks dropped, spill to disk, op numbering."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.assembly import SpilledTransaction, TransactionAssembler
from connectors.model import Change, Op, Transaction
from tests.capture.helpers import ORDERS, same_txns

T0 = dt.datetime(2025, 6, 1, 10, 0, tzinfo=dt.UTC)


def ins(n: int, text: str = "") -> Change:
    return Change(Op.INSERT, ORDERS, 1, {"id": n}, None, {"id": n, "note": text})


def materialise(txn: Transaction | SpilledTransaction) -> Transaction:
    if isinstance(txn, SpilledTransaction):
        with txn:
            return txn.load()
    return txn


def test_interleaved_commit_order_and_rollback() -> None:
    asm = TransactionAssembler(next_op=1)
    asm.begin("a")
    asm.change("a", ins(1))
    asm.begin("b")
    asm.change("b", ins(2))
    asm.change("c", ins(3))  # implicit begin
    asm.change("a", ins(4))
    asm.change("b", ins(5))
    b = materialise(asm.commit("b", position="p1", commit_time=T0, origin="src"))
    asm.rollback("c")
    a = materialise(asm.commit("a", position="p2", commit_time=T0, origin="src"))
    assert [c.key for c in b.changes] == [{"id": 2}, {"id": 5}]
    assert [c.key for c in a.changes] == [{"id": 1}, {"id": 4}]
    assert (b.first_op, b.last_op, a.first_op, a.last_op) == (1, 2, 3, 4)
    assert asm.open_xids == [] and asm.held_bytes == 0
    assert asm.next_op == 5


def test_without_next_op_the_writer_numbers() -> None:
    asm = TransactionAssembler()
    asm.change("a", ins(1))
    assert asm.commit("a", position="p", commit_time=T0, origin="o").first_op == 0


def test_unknown_commit_is_empty_and_rollback_of_unknown_is_ignored() -> None:
    asm = TransactionAssembler(next_op=7)
    txn = asm.commit("zz", position="p", commit_time=T0, origin="o")
    assert isinstance(txn, Transaction) and txn.changes == [] and txn.first_op == 7
    asm.rollback("nothing")
    assert asm.next_op == 7


def test_large_transaction_spills_and_streams(tmp_path: Path) -> None:
    asm = TransactionAssembler(memory_bytes=50_000, spill_dir=tmp_path, next_op=1)
    small = [ins(i, "s") for i in range(10)]
    big = [ins(1000 + i, "x" * 100) for i in range(3000)]
    for i, change in enumerate(big):
        asm.change("big", change)
        if i < len(small):
            asm.change("small", small[i])
    assert len(list(tmp_path.iterdir())) == 1  # only the big one spilled
    assert asm.held_bytes < 50_000
    s = asm.commit("small", position="p1", commit_time=T0, origin="o")
    assert isinstance(s, Transaction) and s.first_op == 1
    spilled = asm.commit("big", position="p2", commit_time=T0, origin="o")
    assert isinstance(spilled, SpilledTransaction)
    assert (spilled.first_op, spilled.change_count, spilled.last_op) == (11, 3000, 3010)
    assert list(spilled.iter_changes()) == big  # may be read more than once
    loaded = materialise(spilled)
    assert loaded.changes == big
    assert list(tmp_path.iterdir()) == []


def test_size_from_the_log_bounds_memory_like_the_estimate(tmp_path: Path) -> None:
    """A reader's wire size (RowEvent.size) replaces visiting the values: a large payload
    still spills, and the estimate stays close to the value-walking one."""
    asm = TransactionAssembler(memory_bytes=50_000, spill_dir=tmp_path)
    asm.change("small", ins(1, "s"), size=40)
    walked = TransactionAssembler()
    walked.change("small", ins(1, "s"))
    assert walked.held_bytes / 2 <= asm.held_bytes <= walked.held_bytes * 2
    for i in range(100):
        asm.change("big", ins(i, "x" * 1000), size=1030)
    assert len(list(tmp_path.iterdir())) == 1 and asm.held_bytes < 50_000
    asm.close()


def test_rolled_back_spill_is_removed(tmp_path: Path) -> None:
    asm = TransactionAssembler(memory_bytes=1_000, spill_dir=tmp_path)
    for i in range(100):
        asm.change("t", ins(i, "y" * 50))
    assert list(tmp_path.iterdir())
    asm.change("t", ins(999))  # goes straight to the spill file
    asm.rollback("t")
    assert list(tmp_path.iterdir()) == []
    asm.change("u", ins(1, "z" * 2000))
    asm.close()
    assert list(tmp_path.iterdir()) == [] and asm.open_xids == []


events = st.lists(
    st.tuples(st.sampled_from(["change", "commit", "rollback"]), st.integers(0, 4)),
    max_size=60,
)


@given(events, st.sampled_from([200, 10**9]))
@settings(max_examples=60, deadline=None)
def test_model_equivalence(script: list[tuple[str, int]], cap: int) -> None:
    """Against a trivial model: committed changes come out whole, in commit order."""
    asm = TransactionAssembler(memory_bytes=cap, next_op=1)
    model: dict[str, list[Change]] = {}
    expected: list[Transaction] = []
    got: list[Transaction] = []
    op = 1
    counter = 0
    for action, n in script:
        xid = f"t{n}"
        if action == "change":
            counter += 1
            change = ins(counter)
            model.setdefault(xid, []).append(change)
            asm.change(xid, change)
        elif action == "commit":
            changes = model.pop(xid, [])
            expected.append(Transaction(xid, f"p{len(expected)}", T0, "o", changes, op))
            op += len(changes)
            got.append(
                materialise(asm.commit(xid, position=f"p{len(got)}", commit_time=T0, origin="o"))
            )
        else:
            model.pop(xid, None)
            asm.rollback(xid)
    asm.close()
    assert same_txns(got, expected)


def test_spilled_transaction_needs_no_trail_to_be_closed(tmp_path: Path) -> None:
    asm = TransactionAssembler(memory_bytes=100, spill_dir=tmp_path)
    asm.change("t", ins(1, "a" * 500))
    txn = asm.commit("t", position="p", commit_time=T0, origin="o")
    assert isinstance(txn, SpilledTransaction)
    path = txn.path
    del txn
    import gc

    gc.collect()
    assert not path.exists()


@pytest.mark.parametrize("cap", [0, 1])
def test_tiny_cap_spills_everything(tmp_path: Path, cap: int) -> None:
    asm = TransactionAssembler(memory_bytes=cap, spill_dir=tmp_path)
    asm.change("a", ins(1))
    asm.change("b", ins(2))
    a = asm.commit("a", position="p", commit_time=T0, origin="o")
    b = asm.commit("b", position="p", commit_time=T0, origin="o")
    assert isinstance(a, SpilledTransaction) and isinstance(b, SpilledTransaction)
    assert materialise(a).changes == [ins(1)] and materialise(b).changes == [ins(2)]
