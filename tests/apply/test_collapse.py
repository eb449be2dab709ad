"""TableCollapse against a one-by-one replay, in memory, with TOAST ``UNCHANGED`` values.

The fold must give what replaying each change gives: the batch is applied to a simulated
target in the writers' order (deletes, updates, patches, inserts); a change the fold refuses
is written on its own after the pending batch, as the applier does.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from apply.collapse import TableCollapse
from connectors.base import TableBatch
from connectors.model import UNCHANGED, Change, Column, Op, TableId, TableSchema

KEYED = TableSchema(
    TableId("s", "k"),
    (
        Column("id", "int", "int", nullable=False, bits=32),
        Column("a", "int", "int", bits=32),
        Column("note", "str", "text"),
    ),
    primary_key=("id",),
)
KEYLESS = TableSchema(
    TableId("s", "l"),
    (Column("a", "int", "int", bits=32), Column("note", "str", "text")),
)


def _img(values: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(("a", "note"), values, strict=True))


def _write_keyed(target: dict[Any, dict[str, Any]], batch: TableBatch) -> None:
    cols = batch.columns
    for (k,) in batch.deletes:
        del target[k]
    for row in batch.updates:
        assert row[0] in target
        target[row[0]] = dict(zip(cols, row, strict=True))
    for names, rows in batch.patches.items():
        for values in rows:
            patch = dict(zip(names, values, strict=True))
            target[patch["id"]].update(patch)
    for row in batch.inserts:
        assert row[0] not in target
        target[row[0]] = dict(zip(cols, row, strict=True))


def _replay_keyed(target: dict[Any, dict[str, Any]], change: Change) -> None:
    if change.op is Op.INSERT:
        assert change.after is not None and change.after["id"] not in target
        target[change.after["id"]] = dict(change.after)
        return
    assert change.key is not None
    old = target.pop(change.key["id"])
    if change.op is Op.UPDATE:
        assert change.after is not None
        new = {c: (old[c] if v is UNCHANGED else v) for c, v in change.after.items()}
        assert new["id"] not in target
        target[new["id"]] = new


@pytest.mark.parametrize("seed", range(40))
def test_keyed_fold_equals_replay(seed: int) -> None:
    rng = random.Random(seed)
    start = {i: {"id": i, "a": i, "note": f"n{i}"} for i in range(1, 9)}
    expected = {k: dict(v) for k, v in start.items()}
    changes = []
    next_id = 100
    for _ in range(rng.randint(1, 60)):
        roll = rng.random()
        if roll < 0.3 or not expected:
            row: dict[str, Any] = {
                "id": next_id,
                "a": rng.randint(0, 3),
                "note": rng.choice(["x", None]),
            }
            next_id += 1
            change = Change(Op.INSERT, KEYED.table, after=row)
        else:
            k = rng.choice(list(expected))
            if roll < 0.8:
                new_id = k
                if rng.random() < 0.3:
                    new_id, next_id = next_id, next_id + 1
                note = UNCHANGED if rng.random() < 0.5 else rng.choice(["y", None])
                after: dict[str, Any] = {"id": new_id, "a": rng.randint(0, 3), "note": note}
                change = Change(Op.UPDATE, KEYED.table, key={"id": k}, after=after)
            else:
                change = Change(Op.DELETE, KEYED.table, key={"id": k})
        _replay_keyed(expected, change)
        changes.append(change)
    target = {k: dict(v) for k, v in start.items()}
    coll = TableCollapse(KEYED, ("id",), collision=False)
    for change in changes:
        if not coll.add(change):
            _write_keyed(target, coll.batch())
            _replay_keyed(target, change)  # the applier's apply_row
            coll = TableCollapse(KEYED, ("id",), collision=False)
    _write_keyed(target, coll.batch())
    assert target == expected


@pytest.mark.parametrize("seed", range(40))
def test_keyless_fold_equals_replay(seed: int) -> None:
    rng = random.Random(seed)
    images = [(a, n) for a in range(3) for n in ("x", None)]
    start = Counter(rng.choice(images) for _ in range(12))
    expected = Counter(start)
    coll = TableCollapse(KEYLESS, (), collision=False)
    for _ in range(rng.randint(1, 60)):
        roll = rng.random()
        present = [i for i, n in expected.items() if n > 0]
        if roll < 0.4 or not present:
            image = rng.choice(images)
            expected[image] += 1
            change = Change(Op.INSERT, KEYLESS.table, after=_img(image))
        else:
            before = rng.choice(present)
            expected[before] -= 1
            if roll < 0.8:
                a, note = rng.choice(images)
                kept = rng.random() < 0.5
                expected[(a, before[1] if kept else note)] += 1
                after: dict[str, Any] = {"a": a, "note": UNCHANGED if kept else note}
                change = Change(Op.UPDATE, KEYLESS.table, before=_img(before), after=after)
            else:
                change = Change(Op.DELETE, KEYLESS.table, before=_img(before))
        assert coll.add(change)
    batch = coll.batch()
    target: Counter[Any] = Counter(start)
    for gone, n in zip(batch.deletes, batch.delete_counts, strict=True):
        assert target[gone] >= n
        target[gone] -= n
    for added in batch.inserts:
        target[added] += 1
    assert +target == +expected
