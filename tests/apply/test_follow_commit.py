"""A following apply commits what it batched as soon as the trail has nothing more.

``batch_ms`` bounds a group while transactions keep coming (a backlog); it must not hold
applied work back when apply has read everything the trail holds: that wait was most of the
heartbeat lag in bench/soak. The oracle is the target read over its own driver.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from apply.options import ApplyOptions
from apply.trail_apply import TailSignal, apply_trail, prefetch
from capture.trail import TrailWriter
from connectors.base import open_database
from connectors.endpoint import Endpoint
from connectors.model import Transaction
from tests.apply.workload import Workload
from tests.capture.helpers import make_txn


def _count(pg_db: Endpoint) -> int:
    with psycopg.connect(
        host=pg_db.host, port=pg_db.port, user="postgres", dbname=pg_db.database
    ) as conn:
        try:
            row = conn.execute("SELECT count(*) FROM shop.orders").fetchone()
        except psycopg.errors.UndefinedTable:
            return -1
    assert row is not None
    return int(row[0])


def _wait_for(pg_db: Endpoint, rows: int, within: float) -> float:
    started = time.monotonic()
    while _count(pg_db) != rows:
        assert time.monotonic() - started < within, (_count(pg_db), rows)
        time.sleep(0.02)
    return time.monotonic() - started


def test_follow_commits_when_the_trail_tail_is_idle(pg_db: Endpoint, tmp_path: Path) -> None:
    trail = tmp_path / "trail"
    wl = Workload(seed=3)
    inserts_only = (1.0, 1.0)
    with TrailWriter(trail, source_id="src") as w:
        w.append(wl.announce())
        for _ in range(20):
            w.append(wl.transaction(5, mix=inserts_only))
        w.flush()
    db = open_database(pg_db)
    writer = db.open_writer()
    done = threading.Event()
    # a batch window far longer than the test: only the idle tail can close a group
    opts = ApplyOptions(target_id="follow", batch_ms=120_000)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            apply_trail(writer, trail, opts, follow=True, stop=done.is_set)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        _wait_for(pg_db, len(wl.keyed), within=20)
        with TrailWriter(trail, source_id="src") as w:  # a new batch arrives while following
            for _ in range(5):
                w.append(wl.transaction(5, mix=inserts_only))
            w.flush()
            appended = time.monotonic()
        _wait_for(pg_db, len(wl.keyed), within=10)
        took = time.monotonic() - appended
    finally:
        done.set()
        thread.join(30)
        writer.close()
    assert not failure, failure
    # the reader looks every 50 ms; the commit follows at once, not after batch_ms
    assert took < 5, took


def test_an_idle_mark_with_more_queued_behind_it_is_dropped() -> None:
    """The reader reached the trail's end twice before apply looked: apply sees one idle,
    after everything, so a busy target gets one bigger group, not one per capture flush."""
    tail = TailSignal()
    release = threading.Event()

    def source() -> Iterator[Transaction]:
        for i in range(1, 4):
            yield make_txn(i)
        tail()  # the end of the trail: a flush's worth read
        for i in range(4, 7):
            yield make_txn(i)
        tail()
        release.wait(10)  # the reader waits for the trail to grow

    items = prefetch(source(), tick=60, tail=tail)
    first = next(items)
    time.sleep(0.3)  # the target is busy: the reader has read both flushes meanwhile
    rest: list[Transaction | None] = []
    for item in items:
        rest.append(item)
        if item is None:
            release.set()
    assert first.xid == "x1"
    assert [t.xid if t is not None else None for t in rest] == [
        "x2",
        "x3",
        "x4",
        "x5",
        "x6",
        None,
    ]
