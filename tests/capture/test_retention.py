"""Retention: consumers first, then the policy; only a prefix; never the newest or open."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from capture.retention import RetentionPolicy, apply_retention, plan_retention
from capture.trail import (
    TrailReader,
    TrailWriter,
    check_trail,
    list_segment_files,
    register_consumer,
    trail_info,
)
from connectors.errors import ConfigError, TrailError
from tests.capture.helpers import make_txn

# make_txn(i) commits at 2025-06-01 10:00 + i seconds
NOW = dt.datetime(2025, 6, 1, 10, 0, tzinfo=dt.UTC) + dt.timedelta(days=30)


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    with TrailWriter(tmp_path, source_id="src", segment_bytes=1000) as writer:
        for i in range(1, 41):
            writer.append(make_txn(i, 3))
    assert len(list_segment_files(tmp_path)) >= 6
    return tmp_path


def seqs(directory: Path) -> list[int]:
    return list(list_segment_files(directory))


def test_nothing_without_consumers(trail: Path) -> None:
    before = seqs(trail)
    plan = apply_retention(trail, RetentionPolicy(), now=NOW)
    assert plan.delete == [] and "no consumer" in plan.reason
    assert seqs(trail) == before


def test_slowest_consumer_bounds_deletion(trail: Path) -> None:
    segments = trail_info(trail).segments
    register_consumer(trail, "apply", 120)
    register_consumer(trail, "ship", segments[2].last_op)  # past segments 0..2 exactly
    plan = apply_retention(trail, RetentionPolicy(), now=NOW)
    assert [s.sequence for s in plan.delete] == [0, 1, 2]
    assert "consumer ship" in plan.reason
    assert seqs(trail)[0] == 3
    # what remains reads and checks clean from its first operation
    assert check_trail(trail).first_op == segments[3].first_op
    with pytest.raises(TrailError, match="no longer in the trail"):
        list(TrailReader(trail).transactions(1))


def test_never_the_newest_or_open_segment(trail: Path) -> None:
    register_consumer(trail, "apply", 10**9)
    apply_retention(trail, RetentionPolicy(), now=NOW)
    remaining = list(list_segment_files(trail).values())
    assert len(remaining) == 1 and remaining[0][1]  # the newest (sealed) segment stays
    with TrailWriter(trail, source_id="src") as writer:
        assert writer.last_op == 120  # it carries the numbering on
        writer.append(make_txn(41))
    apply_retention(trail, RetentionPolicy(), now=NOW)
    remaining = list(list_segment_files(trail).values())
    assert [sealed for _, sealed in remaining] == [True, False]  # newest sealed + open
    remaining[1][0].write_bytes(remaining[1][0].read_bytes()[:100])  # crash: open torn away
    with TrailWriter(trail, source_id="src") as writer:
        assert writer.last_op == 120


def test_policy_limits(trail: Path) -> None:
    register_consumer(trail, "apply", 10**9)
    n = len(seqs(trail))
    plan = plan_retention(trail, RetentionPolicy(keep_segments=4), now=NOW)
    assert len(plan.keep) == 4 and "keep_segments" in plan.reason
    sizes = [s.size for s in trail_info(trail).segments]
    plan = plan_retention(trail, RetentionPolicy(keep_bytes=sum(sizes[-3:])), now=NOW)
    assert len(plan.keep) == 3
    plan = plan_retention(trail, RetentionPolicy(keep_days=31), now=NOW)
    assert plan.delete == [] and "keep_days" in plan.reason
    plan = plan_retention(trail, RetentionPolicy(keep_days=29), now=NOW)
    assert len(plan.delete) == n - 1
    # dry run deletes nothing
    apply_retention(trail, RetentionPolicy(keep_segments=2), now=NOW, dry_run=True)
    assert len(seqs(trail)) == n


def test_without_consumers_when_allowed(trail: Path) -> None:
    plan = apply_retention(
        trail, RetentionPolicy(keep_segments=3, allow_without_consumers=True), now=NOW
    )
    assert len(plan.delete) == len(plan.delete) and len(seqs(trail)) == 3


def test_negative_policy_is_refused() -> None:
    with pytest.raises(ConfigError):
        RetentionPolicy(keep_days=-1)
