"""Keys, keyless multisets, chunk boundaries, bounds, renames/filters, online re-check and
repair round trips (real servers)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from connectors.base import Database
from connectors.endpoint import Endpoint
from connectors.model import TableId
from tests.verify.conftest import database, execute, qualified, table, verify
from toolkit_cli.config import TablesConfig
from verify import TablePair, VerifyOptions, plan_tables, run_verify
from verify.repair import execute_repair, render_script, repair_plan


def _diffs(result: Any) -> list[tuple[str, Any, list[str], int]]:
    out = []
    for t in result.tables:
        assert t.error is None, t.error
        for d in t.diffs:
            key = tuple(sorted(d.key.items())) if d.key else None
            out.append((d.kind, key, d.columns, d.count))
    return sorted(out, key=repr)


def _ints(ep: Endpoint, name: str, ids: range | list[int], label: str = "v") -> None:
    execute(
        ep,
        [f"CREATE TABLE {qualified(ep, name)} (id BIGINT PRIMARY KEY, v VARCHAR(20))"],
        [(i, f"{label}{i}") for i in ids],
        f"INSERT INTO {qualified(ep, name)} (id, v) VALUES (%s, %s)",
    )


@pytest.mark.parametrize("tgt_fixture", ["pg_db", "duck_db"])
def test_single_row_differences_at_chunk_boundaries(
    request: pytest.FixtureRequest, mysql_db: Endpoint, tgt_fixture: str
) -> None:
    tgt = request.getfixturevalue(tgt_fixture)
    _ints(mysql_db, "b", range(1, 1001))
    _ints(tgt, "b", range(1, 1001))
    assert verify(mysql_db, tgt, ["b"], chunk_rows=100, leaf_rows=8).equal
    name = qualified(tgt, "b")
    execute(
        tgt,
        [
            f"UPDATE {name} SET v = 'changed' WHERE id IN (100, 101, 1000)",
            f"DELETE FROM {name} WHERE id IN (1, 500)",
            f"INSERT INTO {name} VALUES (0, 'before'), (1001, 'after')",
        ],
    )
    result = verify(mysql_db, tgt, ["b"], chunk_rows=100, leaf_rows=8)
    assert result.tables[0].mode == "range"
    assert _diffs(result) == sorted(
        [
            ("different", (("id", 100),), ["v"], 1),
            ("different", (("id", 101),), ["v"], 1),
            ("different", (("id", 1000),), ["v"], 1),
            ("missing", (("id", 1),), [], 1),
            ("missing", (("id", 500),), [], 1),
            ("extra", (("id", 0),), [], 1),
            ("extra", (("id", 1001),), [], 1),
        ],
        key=repr,
    )


def test_composite_string_keys_with_collation_differences(
    mysql_db: Endpoint, pg_db: Endpoint
) -> None:
    # utf8mb4_general_ci and "C" order these differently; key hashing must not care
    words = ["apple", "Banana", "cherry ", "Ärger", "zebra", "_under", "Zoo", "éclair", "10", "9"]
    rows = [(w, n, f"{w}-{n}") for w in words for n in (1, 2)]
    for ep in (mysql_db, pg_db):
        execute(
            ep,
            [
                f"CREATE TABLE {qualified(ep, 'ck')} (a VARCHAR(20), b INT, v TEXT, "
                "PRIMARY KEY (a, b))"
            ],
            rows,
            f"INSERT INTO {qualified(ep, 'ck')} VALUES (%s, %s, %s)",
        )
    result = verify(mysql_db, pg_db, ["ck"], leaf_rows=4)
    assert result.tables[0].mode == "hash"
    assert result.equal, _diffs(result)
    name = qualified(pg_db, "ck")
    execute(
        pg_db,
        [
            f"UPDATE {name} SET v = 'x' WHERE a = 'Ärger' AND b = 2",
            f"DELETE FROM {name} WHERE a = 'cherry ' AND b = 1",
            f"INSERT INTO {name} VALUES ('cherry', 1, 'no trailing space')",
        ],
    )
    assert _diffs(verify(mysql_db, pg_db, ["ck"], leaf_rows=4)) == sorted(
        [
            ("different", (("a", "Ärger"), ("b", 2)), ["v"], 1),
            ("missing", (("a", "cherry "), ("b", 1)), [], 1),
            ("extra", (("a", "cherry"), ("b", 1)), [], 1),
        ],
        key=repr,
    )


@pytest.mark.parametrize(
    ("src_fixture", "tgt_fixture"), [("mysql_db", "pg_db"), ("pg_db", "duck_db")]
)
def test_keyless_duplicates_and_repair(
    request: pytest.FixtureRequest, src_fixture: str, tgt_fixture: str
) -> None:
    src, tgt = request.getfixturevalue(src_fixture), request.getfixturevalue(tgt_fixture)
    source_rows = [(1, "a")] * 3 + [(2, "b")] + [(3, None)] * 2 + [(4, "")]
    target_rows = [(1, "a")] + [(2, "b")] * 2 + [(3, None)] * 2 + [(5, "new")]
    for ep, rows in ((src, source_rows), (tgt, target_rows)):
        execute(
            ep,
            [f"CREATE TABLE {qualified(ep, 'kl')} (x INT, y VARCHAR(10))"],
            rows,
            f"INSERT INTO {qualified(ep, 'kl')} VALUES (%s, %s)",
        )
    result = verify(src, tgt, ["kl"], leaf_rows=2)
    assert result.tables[0].mode == "keyless"
    got = sorted(
        (d.kind, d.count, tuple((d.source or d.target or {}).values()))
        for d in result.tables[0].diffs
    )
    assert got == [
        ("extra", 1, (2, "b")),
        ("extra", 1, (5, "new")),
        ("missing", 1, (4, "")),
        ("missing", 2, (1, "a")),
    ]
    _repair_and_reverify(src, tgt, ["kl"], result)


def _repair_and_reverify(src: Endpoint, tgt: Endpoint, names: list[str], result: Any) -> None:
    target = database(tgt)
    plan = repair_plan(result, target)
    script = render_script(plan, target)
    assert "BEGIN;" in script and "COMMIT;" in script
    assert execute_repair(plan, target) > 0
    again = verify(src, tgt, names, leaf_rows=2)
    assert again.equal, _diffs(again)


@pytest.mark.parametrize(
    ("src_fixture", "tgt_fixture"),
    [("mysql_db", "pg_db"), ("pg_db", "mysql_db"), ("mysql_db", "duck_db"), ("pg_db", "duck_db")],
)
def test_repair_round_trip_keyed(
    request: pytest.FixtureRequest, src_fixture: str, tgt_fixture: str
) -> None:
    src, tgt = request.getfixturevalue(src_fixture), request.getfixturevalue(tgt_fixture)
    ddl = {
        "mysql": "CREATE TABLE {t} (id INT PRIMARY KEY, s VARCHAR(20), b VARBINARY(8), "
        "ts TIMESTAMP(6) NULL, d DECIMAL(8,2), f DOUBLE)",
        "postgresql": "CREATE TABLE {t} (id INT PRIMARY KEY, s VARCHAR(20), b BYTEA, "
        "ts TIMESTAMPTZ, d NUMERIC(8,2), f DOUBLE PRECISION)",
        "duckdb": "CREATE TABLE {t} (id INT PRIMARY KEY, s VARCHAR, b BLOB, "
        "ts TIMESTAMPTZ, d DECIMAL(8,2), f DOUBLE)",
    }
    when = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    rows = [(i, f"it's {i}", bytes([i, 0, 255]), when, f"{i}.25", i / 3) for i in range(1, 41)]
    for ep in (src, tgt):
        execute(
            ep,
            [ddl[ep.engine].format(t=qualified(ep, "r"))],
            rows if ep is src else [*rows[5:], (99, "extra", b"", None, "0.00", 0.0)],
            f"INSERT INTO {qualified(ep, 'r')} VALUES (%s, %s, %s, %s, %s, %s)",
        )
    name = qualified(tgt, "r")
    execute(tgt, [f"UPDATE {name} SET s = NULL, f = 1e300 WHERE id = 10"])
    result = verify(src, tgt, ["r"], chunk_rows=8, leaf_rows=2)
    counts = result.tables[0].counts
    assert counts == {"missing": 5, "extra": 1, "different": 1}
    assert [d.columns for d in result.tables[0].diffs if d.kind == "different"] == [["s", "f"]]
    _repair_and_reverify(src, tgt, ["r"], result)


def test_empty_tables_and_one_side_empty(mysql_db: Endpoint, pg_db: Endpoint) -> None:
    _ints(mysql_db, "e", [])
    _ints(pg_db, "e", [])
    assert verify(mysql_db, pg_db, ["e"]).equal
    execute(pg_db, [f"INSERT INTO {qualified(pg_db, 'e')} VALUES (7, 'x')"])
    assert _diffs(verify(mysql_db, pg_db, ["e"])) == [("extra", (("id", 7),), [], 1)]


def test_max_diffs_bounds_the_work(mysql_db: Endpoint, duck_db: Endpoint) -> None:
    _ints(mysql_db, "m", range(1, 2001))
    _ints(duck_db, "m", range(1, 2001), label="w")  # every row differs
    result = verify(mysql_db, duck_db, ["m"], chunk_rows=200, leaf_rows=16, max_diffs=25)
    table_result = result.tables[0]
    assert len(table_result.diffs) == 25
    assert table_result.truncated and not result.equal


def test_renames_column_subsets_and_where(mysql_db: Endpoint, pg_db: Endpoint) -> None:
    execute(
        mysql_db,
        [
            f"CREATE TABLE {qualified(mysql_db, 'orders')} (id INT PRIMARY KEY, amount INT, "
            "secret VARCHAR(10), region VARCHAR(5))"
        ],
        [(i, i * 10, f"s{i}", "eu" if i % 2 else "us") for i in range(1, 21)],
        f"INSERT INTO {qualified(mysql_db, 'orders')} VALUES (%s, %s, %s, %s)",
    )
    execute(
        pg_db,
        [
            "CREATE SCHEMA shop",
            "CREATE TABLE shop.orders_eu (id INT PRIMARY KEY, amount INT, region VARCHAR(5), "
            "loaded_at TIMESTAMP DEFAULT now())",
        ],
        [(i, i * 10, "eu") for i in range(1, 21, 2)],
        "INSERT INTO shop.orders_eu (id, amount, region) VALUES (%s, %s, %s)",
    )
    src_name = f"{mysql_db.database}.orders"
    tables = TablesConfig(
        columns={src_name: ("id", "amount", "region")},
        where={src_name: "region = 'eu'"},
        rename={src_name: "shop.orders_eu"},
    )
    pairs = plan_tables(database(mysql_db), tables)
    assert pairs == [
        TablePair(
            TableId(mysql_db.database, "orders"),
            TableId("shop", "orders_eu"),
            ("id", "amount", "region"),
            "`region` = 'eu'",  # the predicate in the source's dialect, identifiers quoted
        )
    ]
    result = run_verify(database(mysql_db), database(pg_db), pairs, VerifyOptions(recheck=False))
    assert result.equal, _diffs(result)
    execute(pg_db, ["UPDATE shop.orders_eu SET amount = 0 WHERE id = 3"])
    result = run_verify(database(mysql_db), database(pg_db), pairs, VerifyOptions(recheck=False))
    assert _diffs(result) == [("different", (("id", 3),), ["amount"], 1)]


def test_online_recheck_reports_only_persistent(mysql_db: Endpoint, pg_db: Endpoint) -> None:
    _ints(mysql_db, "o", range(1, 101))
    _ints(pg_db, "o", range(1, 101))
    name = qualified(pg_db, "o")
    execute(pg_db, [f"UPDATE {name} SET v = 'lagging' WHERE id IN (5, 6)"])
    execute(pg_db, [f"UPDATE {name} SET v = 'broken' WHERE id = 50"])

    def apply_catches_up(target: Database, since: dt.datetime, wait: float) -> None:
        # replication applies the pending changes while verify waits
        execute(pg_db, [f"UPDATE {name} SET v = 'v' || id WHERE id IN (5, 6)"])

    result = run_verify(
        database(mysql_db),
        database(pg_db),
        [TablePair(table(mysql_db, "o"), table(pg_db, "o"))],
        VerifyOptions(recheck=True, recheck_wait=0, chunk_rows=10, leaf_rows=4),
        wait_for_target=apply_catches_up,
    )
    t = result.tables[0]
    assert t.rechecked and t.transient == 2
    assert _diffs(result) == [("different", (("id", 50),), ["v"], 1)]
    assert result.totals["transient"] == 2


def test_missing_target_table_is_an_error(mysql_db: Endpoint, pg_db: Endpoint) -> None:
    _ints(mysql_db, "gone", range(1, 3))
    result = verify(mysql_db, pg_db, ["gone"])
    assert result.tables[0].error and "does not exist" in result.tables[0].error
    from verify import VerifyError, raise_for_errors

    with pytest.raises(VerifyError) as info:
        raise_for_errors(result)
    assert info.value.exit_code >= 2


def test_online_recheck_keyless(mysql_db: Endpoint, duck_db: Endpoint) -> None:
    for ep in (mysql_db, duck_db):
        execute(
            ep,
            [f"CREATE TABLE {qualified(ep, 'kr')} (x INT, y VARCHAR(5))"],
            [(i % 7, "a") for i in range(60)],
            f"INSERT INTO {qualified(ep, 'kr')} VALUES (%s, %s)",
        )
    name = qualified(duck_db, "kr")
    execute(duck_db, [f"INSERT INTO {name} VALUES (100, 'late'), (200, 'stays')"])

    def apply_catches_up(target: Database, since: dt.datetime, wait: float) -> None:
        execute(duck_db, [f"DELETE FROM {name} WHERE x = 100"])

    result = run_verify(
        database(mysql_db),
        database(duck_db),
        [TablePair(table(mysql_db, "kr"), table(duck_db, "kr"))],
        VerifyOptions(recheck=True, recheck_wait=0, leaf_rows=4),
        wait_for_target=apply_catches_up,
    )
    t = result.tables[0]
    assert t.transient == 1
    assert [(d.kind, d.target) for d in t.diffs] == [("extra", {"x": 200, "y": "stays"})]


def test_recheck_waits_for_the_apply_checkpoint(mysql_db: Endpoint, pg_db: Endpoint) -> None:
    import threading
    import time

    from verify.catchup import source_end_position, wait_for_apply

    source, target = database(mysql_db), database(pg_db)
    assert wait_for_apply(source, target, "anything", 0.05) is False  # no checkpoint table
    end = source_end_position(source)
    assert end is not None
    execute(
        pg_db,
        [
            "CREATE SCHEMA redoline",
            "CREATE TABLE redoline.redoline_checkpoint (source_id TEXT, target_id TEXT, "
            "applied_op BIGINT, position TEXT, commit_time TIMESTAMP, updated_at TIMESTAMP)",
            "INSERT INTO redoline.redoline_checkpoint VALUES ('s', 't', 0, NULL, NULL, NULL)",
        ],
    )

    def apply_reaches_end() -> None:
        time.sleep(1.0)
        execute(pg_db, [f"UPDATE redoline.redoline_checkpoint SET position = '{end}'"])

    worker = threading.Thread(target=apply_reaches_end)
    t0 = time.monotonic()
    worker.start()
    assert wait_for_apply(source, target, end, 0.1) is True
    worker.join()
    assert time.monotonic() - t0 >= 0.9


@pytest.mark.parametrize("tgt_fixture", ["duck_db", "mysql_db"])
def test_repair_writes_postgres_json_as_json(
    request: pytest.FixtureRequest, pg_db: Endpoint, tgt_fixture: str
) -> None:
    # psycopg decodes json/jsonb into dicts and lists; repair must write JSON text, not repr
    tgt = request.getfixturevalue(tgt_fixture)
    execute(pg_db, [f"CREATE TABLE {qualified(pg_db, 'j')} (id INT PRIMARY KEY, doc JSON)"])
    execute(
        pg_db,
        [],
        [(1, '{"a": [1, null]}'), (2, "[1, 2]"), (3, "7")],
        f"INSERT INTO {qualified(pg_db, 'j')} VALUES (%s, %s)",
    )
    doc = "doc JSON" if tgt.engine == "duckdb" else "doc LONGTEXT"
    execute(tgt, [f"CREATE TABLE {qualified(tgt, 'j')} (id INT PRIMARY KEY, {doc})"])
    result = verify(pg_db, tgt, ["j"])
    assert result.tables[0].counts == {"missing": 3, "extra": 0, "different": 0}
    _repair_and_reverify(pg_db, tgt, ["j"], result)
