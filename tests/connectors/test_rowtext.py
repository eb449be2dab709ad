"""Driver rows as bulk text, in the loader's batches (connectors/rowtext.py)."""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from typing import Any

import pytest

from connectors.errors import SchemaError
from connectors.model import Column, TableId
from connectors.rowtext import fetched, row_writer, text_batches

TABLE = TableId("s", "t")
COLUMNS = [Column("id", "int", "int"), Column("note", "str", "text")]


def test_batches_hold_whole_lines_and_count_rows() -> None:
    rows = [(i, "x" * 10) for i in range(100)]
    batches = list(text_batches(rows, row_writer(COLUMNS, "tsv"), TABLE, batch_bytes=50))
    assert all(data.endswith(b"\n") for data, _ in batches)
    assert all(len(data) >= 50 for data, _ in batches[:-1])
    assert sum(n for _, n in batches) == 100
    assert b"".join(d for d, _ in batches) == b"".join(
        f"{i}\t{'x' * 10}\n".encode() for i in range(100)
    )
    assert list(text_batches([], row_writer(COLUMNS, "tsv"), TABLE)) == []


@pytest.mark.parametrize("error", [ValueError, TypeError, decimal.InvalidOperation, OverflowError])
def test_a_value_the_writer_cannot_take_fails_the_table(error: type[Exception]) -> None:
    def write(row: Sequence[Any]) -> str:
        raise error("no")

    with pytest.raises(SchemaError, match=r"s\.t: cannot write a value: no"):
        list(text_batches([(1, "a")], write, TABLE))


class _Cursor:
    def __init__(self, rows: list[tuple[int]], fail_at: int | None = None) -> None:
        self.rows, self.fail_at, self.calls = rows, fail_at, 0

    def fetchmany(self, size: int) -> list[tuple[int]]:
        if self.calls == self.fail_at:
            raise OSError("link down")
        self.calls += 1
        out, self.rows = self.rows[:size], self.rows[size:]
        return out


def test_fetched_reads_the_cursor_to_its_end() -> None:
    cur = _Cursor([(i,) for i in range(7)])
    assert list(fetched(cur, 3, lambda exc: exc)) == [(i,) for i in range(7)]
    assert cur.calls == 4  # three fetches with rows, one empty


def test_fetched_raises_driver_errors_as_mapped() -> None:
    cur = _Cursor([(i,) for i in range(7)], fail_at=1)
    got: list[Any] = []
    with pytest.raises(SchemaError, match="mapped: link down"):
        for row in fetched(cur, 3, lambda exc: SchemaError(f"mapped: {exc}")):
            got.append(row)
    assert got == [(0,), (1,), (2,)]
