"""Oracle (the fake) -> trail -> DuckDB, judged against the fake's own table contents.

A random workload on two tables (one keyed, one keyless with duplicate rows, whose rows are
found through the ROWID map) with savepoints, rollbacks, interleaved sessions and log
switches, captured in several runs; the DuckDB target must then hold exactly what the fake
database holds. The oracle here is the fake's committed history, which shares no code with
capture, the reader or apply.
"""

from __future__ import annotations

import decimal
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from apply.options import ApplyOptions
from apply.rowid import ROW_KEY
from apply.trail_apply import apply_trail
from connectors.base import open_database
from connectors.endpoint import Endpoint
from connectors.model import TableId
from connectors.oracle import Oracle
from tests.connectors.oracle.fake import FakeOracle, Txn
from tests.connectors.oracle.test_logminer import capture

ITEMS, NOTES = TableId("SHOP", "ITEMS"), TableId("SHOP", "NOTES")


def _step(rng: random.Random, fake: FakeOracle, txn: Txn, next_id: list[int]) -> None:
    items = list(txn._live(fake.tables[ITEMS]).values())
    roll = rng.random()
    if roll < 0.35 or not items:
        next_id[0] += 1
        price = decimal.Decimal(rng.randint(0, 99999)) / 100
        txn.insert(
            "SHOP", "ITEMS", {"ID": next_id[0], "NAME": f"n{rng.randint(0, 9)}", "PRICE": price}
        )
    elif roll < 0.55:
        row = rng.choice(items)
        txn.update("SHOP", "ITEMS", {"ID": row["ID"]}, NAME=rng.choice(["x", "y", None, "it's"]))
    elif roll < 0.65:
        txn.delete("SHOP", "ITEMS", {"ID": rng.choice(items)["ID"]})
    elif roll < 0.85:
        txn.insert("SHOP", "NOTES", {"BODY": rng.choice(["dup", "dup", "other"])})
    else:
        notes = list(txn._live(fake.tables[NOTES]).items())
        if notes:
            rid, _ = rng.choice(notes)
            t = fake.tables[NOTES]
            # one of several identical rows: only the ROWID tells which
            ch_old = dict(txn._live(t)[rid])
            from tests.connectors.oracle.fake import _Change

            ch = _Change(t, 3, rid, ch_old, {"BODY": "changed"})
            txn.changes.append(ch)
            txn._redo(ch)


def test_random_workload_reaches_duckdb_exactly(
    oracle: Oracle, fake: FakeOracle, tmp_path: Path
) -> None:
    rng = random.Random(18)
    trail = tmp_path / "trail"
    capture(oracle, trail)
    next_id = [0]
    for _run in range(4):
        open_txns: list[Txn] = []
        for _ in range(25):
            if not open_txns or rng.random() < 0.3:
                open_txns.append(fake.txn())
            txn = rng.choice(open_txns)
            _step(rng, fake, txn, next_id)
            if rng.random() < 0.1:
                txn.savepoint("s")
                _step(rng, fake, txn, next_id)
                txn.rollback_to("s")
            if rng.random() < 0.25:
                open_txns.remove(txn)
                txn.rollback() if rng.random() < 0.2 else txn.commit()
            if rng.random() < 0.05:
                fake.switch(1)
        for txn in open_txns:
            txn.commit()
        capture(oracle, trail, mine_window=7)

    target = open_database(Endpoint.parse(f"duckdb://{tmp_path}/t.duckdb"))
    writer = target.open_writer()
    apply_trail(writer, trail, ApplyOptions(target_id="t"))
    items = writer.query('SELECT "ID", "NAME", "PRICE" FROM "SHOP"."ITEMS"')
    notes = writer.query(f'SELECT "BODY", "{ROW_KEY}" FROM "SHOP"."NOTES"')
    writer.commit()
    writer.close()
    want_items = {
        (int(r["ID"]), r["NAME"], r["PRICE"])
        for r in fake.tables[ITEMS].rows_as_of(fake.scn).values()
    }
    got_items: set[tuple[Any, ...]] = {(int(i), n, p) for i, n, p in items}
    assert got_items == want_items and len(items) == len(want_items)
    want_notes = Counter(r["BODY"] for r in fake.tables[NOTES].rows_as_of(fake.scn).values())
    assert Counter(b for b, _ in notes) == want_notes
    assert len(want_items) > 10 and sum(want_notes.values()) > 5


def test_sync_snapshot_then_catch_up_into_duckdb(
    oracle: Oracle, fake: FakeOracle, tmp_path: Path
) -> None:
    """`redoline sync`'s own path: trail start fixed, AS OF SCN snapshot while a transaction
    is open, then capture and apply until caught up; twice, with writes between."""
    from apply.snapshot import SnapshotOptions
    from connectors.base import TableFilter
    from toolkit_cli.sync import SyncOptions, run_sync

    t = fake.txn()
    for i in range(1, 40):
        t.insert("SHOP", "ITEMS", {"ID": i, "NAME": f"r{i}", "PRICE": decimal.Decimal(i)})
    t.insert("SHOP", "NOTES", {"BODY": "dup"})
    t.insert("SHOP", "NOTES", {"BODY": "dup"})
    t.commit()
    in_flight = fake.txn()
    in_flight.update("SHOP", "ITEMS", {"ID": 1}, NAME="in flight")
    target = open_database(Endpoint.parse(f"duckdb://{tmp_path}/t.duckdb"))
    options = SyncOptions(
        trail_dir=tmp_path / "trail",
        state_dir=tmp_path / "state",
        until_caught_up=True,
        snapshot=SnapshotOptions(tables=TableFilter(("SHOP.*",)), chunk_rows=10, workers=2),
        capture_filter=None,
    )
    report = run_sync(oracle, target, options)
    assert report.snapshot is not None and not report.snapshot.failed
    in_flight.commit()
    t = fake.txn()
    t.delete("SHOP", "ITEMS", {"ID": 2})
    t.insert("SHOP", "NOTES", {"BODY": "third"})
    t.commit()
    run_sync(oracle, target, options)
    conn = target.connect()
    items = conn.execute('SELECT "ID", "NAME", "PRICE" FROM "SHOP"."ITEMS"').fetchall()
    notes = conn.execute('SELECT "BODY" FROM "SHOP"."NOTES"').fetchall()
    conn.close()
    want = {
        (int(r["ID"]), r["NAME"], r["PRICE"])
        for r in fake.tables[ITEMS].rows_as_of(fake.scn).values()
    }
    assert {(int(i), n, p) for i, n, p in items} == want and len(items) == len(want) == 38
    assert (1, "in flight", decimal.Decimal(1)) in want
    assert Counter(b for (b,) in notes) == Counter({"dup": 2, "third": 1})


@pytest.mark.parametrize("kind", ["duckdb", "postgres", "mariadb"])
def test_snapshot_loaded_keyless_rows_are_found_by_rowid(
    oracle: Oracle, fake: FakeOracle, tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """Rows of a keyless table that came by snapshot, then updated and deleted on the source
    (one of two identical rows each time): apply finds each through its ROWID, as it finds
    rows it inserted itself. Judged against the fake's own rows, ROWID by ROWID."""
    from apply.snapshot import SnapshotOptions
    from connectors.base import TableFilter
    from toolkit_cli.sync import SyncOptions, run_sync

    t = fake.txn()
    rows = [("a1", "dup"), ("a2", "dup"), ("b1", "twin"), ("b2", "twin"), ("solo", "solo")]
    rid = {
        name: t.insert("SHOP", "NOTES", {"BODY": body}) for name, body in [*rows, ("gone", "gone")]
    }
    t.commit()
    if kind == "duckdb":
        target = open_database(Endpoint.parse(f"duckdb://{tmp_path}/t.duckdb"))
    else:
        fixture = {"postgres": "pg_db", "mariadb": "mysql_db"}[kind]
        target = open_database(request.getfixturevalue(fixture))
    options = SyncOptions(
        trail_dir=tmp_path / "trail",
        state_dir=tmp_path / "state",
        # a MariaDB target is the whole server: its redoline state (snapshot states, rowid
        # map, checkpoints) holds other tests' rows under the default ids
        source_id=f"ora_{kind}_{tmp_path.name}"[:60],
        target_id=f"dw_{kind}_{tmp_path.name}"[:60],
        until_caught_up=True,
        snapshot=SnapshotOptions(tables=TableFilter(("SHOP.NOTES",)), workers=2),
        capture_filter=None,
    )
    report = run_sync(oracle, target, options)
    assert report.snapshot is not None and report.snapshot.rows == 6
    t = fake.txn()
    t.update_row("SHOP", "NOTES", rid["a1"], BODY="changed")  # one of two identical rows
    t.delete_row("SHOP", "NOTES", rid["b2"])  # one of two identical rows
    t.delete_row("SHOP", "NOTES", rid["gone"])
    rid["new"] = t.insert("SHOP", "NOTES", {"BODY": "dup"})
    t.commit()
    t = fake.txn()
    t.update_row("SHOP", "NOTES", rid["solo"], BODY=None)
    t.update_row("SHOP", "NOTES", rid["new"], BODY="newer")
    t.commit()
    report = run_sync(oracle, target, options)
    assert report.apply is not None
    writer = target.open_writer()
    q = target.quote
    got = writer.query(
        f"SELECT m.row_id, n.{q('BODY')} FROM {q('redoline')}.{q('rowid_map')} m "
        f"JOIN {q('SHOP')}.{q('NOTES')} n ON n.{q(ROW_KEY)} = m.target_key "
        f"WHERE m.target_id = '{options.target_id}' AND m.source_table = 'SHOP.NOTES'"
    )
    rows = writer.query(f"SELECT COUNT(*) FROM {q('SHOP')}.{q('NOTES')}")
    writer.commit()
    writer.close()
    want = {r: v["BODY"] for r, v in fake.tables[NOTES].rows_as_of(fake.scn).items()}
    assert dict(got) == want and len(got) == rows[0][0] == len(want) == 5
    assert want[rid["a1"]] == "changed" and want[rid["a2"]] == "dup"
    assert Counter(want.values()) == Counter(["changed", "dup", "twin", None, "newer"])
