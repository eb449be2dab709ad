"""A random OLTP workload over a keyed and a keyless table, with its expected final state.

The expected state is computed by replaying every change one by one in Python, which is the
definition of a correct apply (tests compare the target with it row by row).
"""

from __future__ import annotations

import datetime as dt
import decimal
import random
from collections import Counter
from typing import Any

from connectors.model import Change, Column, Op, TableId, TableSchema, Transaction

__all__ = ["KEYED", "KEYLESS", "Workload"]

KEYED = TableSchema(
    TableId("shop", "orders"),
    (
        Column("id", "int", "bigint", nullable=False, bits=64),
        Column("customer", "str", "varchar(40)", length=40),
        Column("amount", "decimal", "numeric(12,2)", precision=12, scale=2),
        Column("created", "datetime", "timestamp", precision=6),
        Column("note", "str", "text"),
    ),
    primary_key=("id",),
)
KEYLESS = TableSchema(
    TableId("shop", "events"),
    (
        Column("kind", "str", "varchar(20)", nullable=False, length=20),
        Column("qty", "int", "integer", nullable=False, bits=32),
        Column("tag", "str", "varchar(20)", length=20),
    ),
)


class Workload:
    """Generates transactions and tracks the expected target content."""

    def __init__(self, seed: int = 1, *, origin: str = "src") -> None:
        self.rng = random.Random(seed)
        self.origin = origin
        self.keyed: dict[int, dict[str, Any]] = {}
        self.keyless: Counter[tuple[Any, ...]] = Counter()
        self.next_id = 1
        self.txn_no = 0
        self.op = 0
        self.announced = False

    def announce(self) -> Transaction:
        self.announced = True
        return self._txn(
            [Change(Op.DDL, s.table, s.version, table_schema=s) for s in (KEYED, KEYLESS)]
        )

    def _txn(self, changes: list[Change]) -> Transaction:
        self.txn_no += 1
        txn = Transaction(
            xid=str(self.txn_no),
            position=f"0/{self.txn_no:08X}",
            commit_time=dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=self.txn_no),
            origin=self.origin,
            changes=changes,
            first_op=self.op + 1,
        )
        self.op += len(changes)
        return txn

    def _order(self, i: int) -> dict[str, Any]:
        r = self.rng
        return {
            "id": i,
            "customer": r.choice(["ann", "bob", "cy", None, "dée"]),
            "amount": decimal.Decimal(r.randint(0, 10**6)) / 100,
            "created": dt.datetime(2024, 1, 1) + dt.timedelta(microseconds=r.randint(0, 10**12)),
            "note": r.choice([None, "x" * r.randint(0, 50), "tab\there", "line\nbreak"]),
        }

    def _event(self) -> dict[str, Any]:
        r = self.rng
        # few distinct values, so identical rows are common
        return {"kind": r.choice("abc"), "qty": r.randint(1, 4), "tag": r.choice([None, "t"])}

    def transaction(self, size: int = 10, *, mix: tuple[float, float] = (0.6, 0.9)) -> Transaction:
        r = self.rng
        changes: list[Change] = []
        for _ in range(size):
            roll = r.random()
            keyed = r.random() < 0.5
            if keyed:
                if roll < mix[0] or not self.keyed:
                    row = self._order(self.next_id)
                    self.next_id += 1
                    self.keyed[row["id"]] = row
                    changes.append(Change(Op.INSERT, KEYED.table, after=row))
                elif roll < mix[1]:
                    old_id = r.choice(list(self.keyed))
                    before = self.keyed.pop(old_id)
                    new_id = old_id
                    if r.random() < 0.05:  # key change
                        new_id = self.next_id
                        self.next_id += 1
                    after = {**self._order(new_id), "customer": before["customer"]}
                    self.keyed[new_id] = after
                    changes.append(
                        Change(
                            Op.UPDATE, KEYED.table, key={"id": old_id}, before=before, after=after
                        )
                    )
                else:
                    old_id = r.choice(list(self.keyed))
                    before = self.keyed.pop(old_id)
                    changes.append(
                        Change(Op.DELETE, KEYED.table, key={"id": old_id}, before=before)
                    )
            else:
                images = [k for k, n in self.keyless.items() if n > 0]
                if roll < mix[0] or not images:
                    row = self._event()
                    self.keyless[tuple(row.values())] += 1
                    changes.append(Change(Op.INSERT, KEYLESS.table, after=row))
                elif roll < mix[1]:
                    image = r.choice(images)
                    before = dict(zip(("kind", "qty", "tag"), image, strict=True))
                    after = self._event()
                    self.keyless[image] -= 1
                    self.keyless[tuple(after.values())] += 1
                    changes.append(Change(Op.UPDATE, KEYLESS.table, before=before, after=after))
                else:
                    image = r.choice(images)
                    before = dict(zip(("kind", "qty", "tag"), image, strict=True))
                    self.keyless[image] -= 1
                    changes.append(Change(Op.DELETE, KEYLESS.table, before=before))
        return self._txn(changes)

    def expected_keyed(self) -> list[tuple[Any, ...]]:
        return sorted(tuple(r.values()) for r in self.keyed.values())

    def expected_keyless(self) -> list[tuple[Any, ...]]:
        out = []
        for image, n in self.keyless.items():
            out.extend([image] * n)
        return sorted(out, key=repr)
