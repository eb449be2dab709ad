"""The chunk planning and chunk SELECT every snapshot session shares (connectors/snapshot.py)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from connectors.snapshot import KeyRange, chunk_select, chunks_between, even_chunks


def test_chunks_between_cover_the_key_space() -> None:
    assert chunks_between([]) == [KeyRange(0, None, None)]
    assert chunks_between([(5,), (9,)]) == [
        KeyRange(0, None, (5,)),
        KeyRange(1, (5,), (9,)),
        KeyRange(2, (9,), None),
    ]


def test_even_chunks_one_chunk_when_small() -> None:
    assert even_chunks(1, 100, 100, 100) == [KeyRange(0, None, None)]
    assert even_chunks(1, 1000, 10, 5) == [
        KeyRange(0, None, (501,)),
        KeyRange(1, (501,), None),
    ]


@given(
    st.integers(-(2**40), 2**40),
    st.integers(0, 10**6),
    st.integers(1, 10**5),
    st.integers(1, 10**4),
)
def test_even_chunks_are_contiguous_and_ordered(
    lo: int, span: int, count: int, chunk_rows: int
) -> None:
    chunks = even_chunks(lo, lo + span, count, chunk_rows)
    assert chunks[0].lower is None and chunks[-1].upper is None
    assert [c.number for c in chunks] == list(range(len(chunks)))
    for a, b in itertools.pairwise(chunks):
        assert a.upper == b.lower and a.upper is not None
        assert lo < a.upper[0] <= lo + span
    uppers = [c.upper[0] for c in chunks[:-1] if c.upper is not None]
    assert uppers == sorted(set(uppers))
    # no more chunks than rows call for (one more at most for the rounding)
    assert len(chunks) <= -(-count // chunk_rows) + 1


def test_chunk_select_bounds_in_the_drivers_marker() -> None:
    chunk = KeyRange(1, (5,), (9,))
    assert chunk_select('"a", "b"', '"s"."t"', '"id"', chunk, None, marker="?") == (
        'SELECT "a", "b" FROM "s"."t" WHERE "id" >= ? AND "id" < ?',
        {"lo": 5, "hi": 9},
    )
    statement, params = chunk_select("a", "t AS OF SCN :scn", "id", chunk, "a > 1", marker=":{}")
    assert statement == "SELECT a FROM t AS OF SCN :scn WHERE id >= :lo AND id < :hi AND (a > 1)"
    assert list(params.items()) == [("lo", 5), ("hi", 9)]


def test_chunk_select_open_ends_and_whole_tables() -> None:
    assert chunk_select("a", "t", "id", KeyRange(0, None, ("7",)), None, marker="?") == (
        "SELECT a FROM t WHERE id < ?",
        {"hi": 7},
    )
    assert chunk_select("a", "t", "id", KeyRange(2, (7,), None), "", marker="?") == (
        "SELECT a FROM t WHERE id >= ?",
        {"lo": 7},
    )
    # no integer key: the table is one chunk, only the filter narrows it
    assert chunk_select("a", "t", None, KeyRange(0, None, None), "b = 'x'", marker="?") == (
        "SELECT a FROM t WHERE (b = 'x')",
        {},
    )
    assert chunk_select("a", "t", None, KeyRange(0, None, None), None, marker="?") == (
        "SELECT a FROM t",
        {},
    )
