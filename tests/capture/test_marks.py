"""Restore points: durable sidecar files that a running trail writer neither needs nor notices,
resolved against the trail by source position or operation number."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from apply.options import ApplyOptions
from apply.point import PointOutcome, mark_op, mark_point
from apply.trail_apply import apply_trail
from capture.trail import (
    Mark,
    TrailStart,
    TrailWriter,
    check_trail,
    list_marks,
    read_mark,
    remove_mark,
    trail_info,
    write_mark,
)
from connectors.base import open_database
from connectors.endpoint import Endpoint
from connectors.errors import ConfigError, TrailError
from connectors.model import TableId, Transaction
from tests.apply.test_applier import content
from tests.apply.workload import KEYED, KEYLESS, Workload

NOW = dt.datetime(2026, 12, 2, 14, 0, tzinfo=dt.UTC)


def _start() -> TrailStart:
    return TrailStart(trail_id="a" * 32, source_id="src", source_engine="postgresql")


def _trail(path: Path, n: int = 20) -> tuple[list[Transaction], list[Any]]:
    """``n`` transactions with PostgreSQL-style positions; the expected state after each."""
    wl = Workload(seed=11)
    txns = [wl.announce()]
    states = [None]
    for _ in range(n):
        txns.append(wl.transaction(size=4))
        states.append(
            (
                sorted((tuple(r.values()) for r in wl.keyed.values()), key=repr),
                sorted((i for i, c in Counter(wl.keyless).items() for _ in range(c)), key=repr),
            )
        )
    with TrailWriter(path, source_id="src", start=_start()) as tw:
        for t in txns:
            tw.append(t)
    return txns, states


def test_mark_while_the_writer_holds_the_trail(tmp_path: Path) -> None:
    """A writer appending (and holding writer.lock) meanwhile; eight racing `mark m`: one
    wins, the rest are refused, the trail stays intact."""
    trail = tmp_path / "trail"
    wl = Workload(seed=3)
    results: list[str] = []
    with TrailWriter(trail, source_id="src", start=_start()) as tw:
        tw.append(wl.announce())
        tw.flush()

        def append() -> None:
            for _ in range(200):
                tw.append(wl.transaction(size=3))
            tw.flush()

        def mark() -> None:
            try:
                write_mark(trail, Mark("m", NOW, position="0/5", trail_id="a" * 32))
                results.append("ok")
            except ConfigError as exc:
                assert "exists already" in exc.message
                results.append("refused")

        threads = [threading.Thread(target=append)] + [
            threading.Thread(target=mark) for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(results) == ["ok"] + ["refused"] * 7
    report = check_trail(trail)
    assert report.transactions == 201 and not report.warnings
    assert read_mark(trail, "m").position == "0/5"
    assert [p.name for p in (trail / "marks").iterdir()] == ["m.json"]  # no temp file left
    remove_mark(trail, "m")
    assert list_marks(trail) == []
    for bad in ("", "../x", ".hidden", "a/b", "x" * 101):
        with pytest.raises(ConfigError, match="not allowed"):
            write_mark(trail, Mark(bad, NOW, op=1))


def test_marks_resolve_by_position_and_replay_to_them(tmp_path: Path) -> None:
    trail = tmp_path / "trail"
    txns, states = _trail(trail)
    # the source's end position was txn 9's commit: 9 is before the mark, 10 after
    write_mark(trail, Mark("at9", NOW, position=txns[9].position, trail_last_op=txns[3].last_op))
    write_mark(trail, Mark("future", NOW, position="0/FFFFFFFF"))
    write_mark(trail, Mark("op", NOW, op=txns[4].last_op))
    assert mark_op(trail, "at9", None)[1] == txns[9].last_op
    assert mark_op(trail, "op", None)[1] == txns[4].last_op
    assert mark_op(trail, "future", None)[1] is None  # the trail has not passed it yet
    with pytest.raises(ConfigError, match=r"no mark named 'nope'.*marks: at9, future, op"):
        mark_op(trail, "nope", None)
    db = open_database(Endpoint.parse(f"duckdb://{tmp_path / 'target.duckdb'}"))
    writer = db.open_writer()
    try:
        opts = ApplyOptions(rename=lambda t: TableId("r", t.name))
        for name, i in (("op", 4), ("at9", 9)):
            outcome = PointOutcome()
            stats = apply_trail(
                writer, trail, opts, until=mark_point(trail, name, None), outcome=outcome
            )
            assert outcome.reached and stats.applied_op == txns[i].last_op
            keyed = content(writer, TableId("r", KEYED.table.name))
            keyless = content(writer, TableId("r", KEYLESS.table.name))
            assert (keyed, keyless) == states[i], name
        # the target is past "op" now: refused, naming where it is
        from apply.point import PointError

        with pytest.raises(PointError, match="earliest point it can be brought to"):
            apply_trail(writer, trail, opts, until=mark_point(trail, "op", None))
        outcome = PointOutcome()
        apply_trail(writer, trail, opts, until=mark_point(trail, "future", None), outcome=outcome)
        assert not outcome.reached
    finally:
        writer.close()
    # a mark from another trail is refused
    write_mark(trail, Mark("alien", NOW, position="0/1", trail_id="b" * 32))
    with pytest.raises(TrailError, match="another trail"):
        mark_point(trail, "alien", None)
    assert trail_info(trail).trail_id == "a" * 32
