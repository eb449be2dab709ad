"""Stage progress: lag from the heartbeat vs the estimate, records written whole, and the
heartbeat stripped from a transaction with its operation numbers kept exact."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path

import pytest

from capture.heartbeat import split_heartbeat
from capture.progress import Reporter, StageProgress, read_records, record_path, stage
from connectors.base import HEARTBEAT_TABLE
from connectors.model import Change, Op, TableId, Transaction

T = TableId("shop", "orders")


@pytest.mark.parametrize(
    ("beat_age", "delay", "interval", "want"),
    [
        (0.3, 0.2, 1.0, 0.2),  # idle, beats arriving: the last beat's delay
        (5.0, 0.2, 1.0, 4.0),  # the next beat is 4 s overdue: lag grows
        (0.5, 0.5, 1.0, 0.5),
    ],
)
def test_heartbeat_lag(beat_age: float, delay: float, interval: float, want: float) -> None:
    now = 1_000_000.0
    st = StageProgress("apply", "dw", heartbeat_interval=interval, heartbeat_configured=True)
    st.beat(now - beat_age, seen=now - beat_age + delay)
    lag, method = st.lag_seconds(now)
    assert method == "heartbeat" and lag == pytest.approx(want, abs=0.002)


def test_estimate_without_heartbeat() -> None:
    st = StageProgress("apply", "dw")
    assert st.lag_seconds() == (None, "estimate")
    st.commit_time = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=30)
    lag, method = st.lag_seconds()
    assert method == "estimate" and 29 < (lag or 0) < 32
    st.lag_operations = 0  # nothing left to apply: an idle source is not lagging
    assert st.lag_seconds() == (0.0, "estimate")


def test_counts_per_table_and_op() -> None:
    st = StageProgress("apply", "dw")
    txn = Transaction(
        "1",
        "p",
        dt.datetime.now(dt.UTC),
        "o",
        [Change(Op.INSERT, T), Change(Op.INSERT, T), Change(Op.DELETE, TableId("shop", "x"))],
        first_op=5,
    )
    st.counted(txn)
    st.counted(txn)
    data = st.to_json()
    assert data["rows"] == {"shop.orders": {"insert": 4}, "shop.x": {"delete": 2}}
    assert data["transactions_by_table"] == {"shop.orders": {"insert": 2}, "shop.x": {"delete": 2}}
    assert data["last_op"] == 7 and data["transactions"] == 2


def test_records_are_replaced_whole(tmp_path: Path) -> None:
    """A reader polling while the reporter rewrites never sees a partial record."""
    bad: list[str] = []
    good = [0]
    done = threading.Event()
    path = record_path(tmp_path, "capture", "shop")

    def poll() -> None:
        while not done.is_set():
            try:
                json.loads(path.read_text())
                good[0] += 1
            except FileNotFoundError:
                continue
            except ValueError as exc:
                bad.append(str(exc))

    reader = threading.Thread(target=poll)
    with Reporter(tmp_path, interval=0.01):
        st = stage("capture", "shop")  # a stage of this run (the reporter starts afresh)
        st.extra["padding"] = "x" * 200_000
        reader.start()
        time.sleep(0.5)
        done.set()
        reader.join()
    assert not bad and good[0] > 0
    assert not [p for p in (tmp_path / "progress").iterdir() if p.suffix != ".json"]


def test_unreadable_record_is_reported(tmp_path: Path) -> None:
    (tmp_path / "progress").mkdir()
    (tmp_path / "progress" / "apply-dw.json").write_text("{trunc")
    (record,) = read_records(tmp_path)
    assert record["stage"] == "apply" and record["name"] == "dw" and "unreadable" in record


def test_split_heartbeat_keeps_operation_numbers() -> None:
    beat = Change(Op.UPDATE, HEARTBEAT_TABLE, after={"source_id": "s", "beat_us": 1_500_000})
    txn = Transaction("9", "p", dt.datetime.now(dt.UTC), "o", [beat], first_op=41)
    stripped, at = split_heartbeat(txn)
    assert at == 1.5 and stripped.changes == [] and stripped.last_op == 41
    user = Transaction("10", "p", dt.datetime.now(dt.UTC), "o", [Change(Op.INSERT, T)], 42)
    assert split_heartbeat(user) == (user, None)
