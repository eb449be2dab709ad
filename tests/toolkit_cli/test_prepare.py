"""PostgreSQL slots per pipeline, the way users run them: `redoline init/capture/snapshot/drop`
in subprocesses against a real server, several pipelines (trails) on one database.

The oracle is the set of ids each trail holds, read back with the trail reader, against the
ids the test committed; slot and publication names are read from the server's catalogs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from capture.trail import TrailReader
from connectors.endpoint import Endpoint
from connectors.model import Op

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


def redoline(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`redoline ARGS -c CONFIG` in a subprocess, as a user or cron runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDOLINE_")}
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from toolkit_cli.app import main; main()",
            *args,
            "-c",
            str(config),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def pipeline(base: Path, endpoint: Endpoint, name: str, source: str = "") -> Path:
    """A pipeline's config file; its trail is ``base/name/trail``."""
    home = base / name
    home.mkdir()
    config = home / "redoline.toml"
    config.write_text(
        f'[source]\nurl = "{endpoint.url()}"\n{source}\n'
        f'[trail]\ndir = "{home / "trail"}"\n'
        f'[state]\ndir = "{home / "state"}"\n'
        '[tables]\ninclude = ["public.*"]\n'
    )
    return config


def trail_ids(config: Path) -> list[int]:
    trail = config.parent / "trail"
    return [
        int(c.after["id"])
        for t in TrailReader(trail).transactions()
        for c in t.changes
        if c.op == Op.INSERT
    ]


def marker(config: Path) -> dict[str, Any]:
    return dict(json.loads((config.parent / "trail" / "pgslot.json").read_text()))


@pytest.fixture
def pg(pg_db: Endpoint) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(
        host=pg_db.host, port=pg_db.port, user="postgres", dbname=pg_db.database, autocommit=True
    ) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        yield conn


def insert(pg: psycopg.Connection[Any], ids: range) -> None:
    for i in ids:  # one transaction each
        pg.execute("INSERT INTO t VALUES (%s, 'x')", (i,))


def slots(pg: psycopg.Connection[Any], database: str) -> set[str]:
    rows = pg.execute(
        "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (database,)
    ).fetchall()
    return {str(r[0]) for r in rows}


def publications(pg: psycopg.Connection[Any]) -> set[str]:
    return {str(r[0]) for r in pg.execute("SELECT pubname FROM pg_publication").fetchall()}


def test_two_pipelines_side_by_side_each_capture_everything(
    pg: psycopg.Connection[Any], pg_db: Endpoint, tmp_path: Path
) -> None:
    a = pipeline(tmp_path, pg_db, "a", 'id = "Shop-EU"')
    b = pipeline(tmp_path, pg_db, "b")
    ok(redoline(a, "init"))  # one pipeline set up ahead, the other by its first capture
    ok(redoline(b, "capture", "--until-caught-up"))
    insert(pg, range(1, 6))
    ok(redoline(a, "capture", "--until-caught-up"))
    ok(redoline(b, "capture", "--until-caught-up"))
    insert(pg, range(6, 11))
    ok(redoline(b, "capture", "--until-caught-up"))  # the other order this time
    ok(redoline(a, "capture", "--until-caught-up"))
    assert trail_ids(a) == list(range(1, 11))
    assert trail_ids(b) == list(range(1, 11))
    # two slots and two publications, named after the pipeline, each recorded by its trail
    slot_a, slot_b = marker(a)["slot"], marker(b)["slot"]
    assert slots(pg, pg_db.database) == {slot_a, slot_b}
    assert slot_a.startswith("redoline_shop_eu_") and len(slot_a) == len("redoline_shop_eu_") + 8
    assert slot_b.startswith("redoline_") and slot_b != slot_a
    assert {marker(a)["publication"], marker(b)["publication"]} <= publications(pg)
    assert marker(a)["publication"] == slot_a


def test_explicit_slot_names_from_config_and_flags(
    pg: psycopg.Connection[Any], pg_db: Endpoint, tmp_path: Path
) -> None:
    a = pipeline(tmp_path, pg_db, "a", 'slot = "orders_a"\npublication = "orders_pub_a"')
    b = pipeline(tmp_path, pg_db, "b")
    init = ok(redoline(a, "init"))
    assert "orders_a" in init.stdout and "orders_pub_a" in init.stdout
    ok(redoline(b, "capture", "--until-caught-up", "--slot", "orders_b"))
    assert slots(pg, pg_db.database) == {"orders_a", "orders_b"}
    assert {"orders_pub_a", "orders_b"} <= publications(pg)
    insert(pg, range(1, 4))
    ok(redoline(a, "capture", "--until-caught-up"))
    ok(redoline(b, "capture", "--until-caught-up"))  # the trail remembers orders_b
    assert trail_ids(a) == trail_ids(b) == [1, 2, 3]
    # the trail is bound to its slot: another name for it is refused
    wrong = redoline(b, "capture", "--until-caught-up", "--slot", "orders_a")
    assert wrong.returncode == 5
    assert "captured through slot 'orders_b'" in wrong.stderr
    # names are PostgreSQL slot names, checked before anything runs
    bad = redoline(b, "capture", "--until-caught-up", "--slot", "Orders-B")
    assert bad.returncode == 2 and "'Orders-B' is not a usable name" in bad.stderr
    c = pipeline(tmp_path, pg_db, "c", 'slot = "x y"')
    bad = redoline(c, "init")
    assert bad.returncode == 2
    assert "[source.slot]" in bad.stderr and "'x y' is not a usable name" in bad.stderr
    assert slots(pg, pg_db.database) == {"orders_a", "orders_b"}


def test_second_pipeline_on_the_first_ones_slot_is_refused(
    pg: psycopg.Connection[Any], pg_db: Endpoint, tmp_path: Path
) -> None:
    a = pipeline(tmp_path, pg_db, "a", 'slot = "shared"')
    b = pipeline(tmp_path, pg_db, "b", 'slot = "shared"')
    ok(redoline(a, "capture", "--until-caught-up"))
    insert(pg, range(1, 4))
    ok(redoline(a, "capture", "--until-caught-up"))
    duckdb = f"duckdb://{tmp_path}/replica.duckdb"
    for args in (
        ("capture", "--until-caught-up"),
        ("init",),
        ("snapshot", "--target", duckdb),
        ("sync", "--until-caught-up", "--target", duckdb),
    ):
        refused = redoline(b, *args)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert "replication slot 'shared' already exists" in refused.stderr
        assert "did not create it" in refused.stderr and "not taken over" in refused.stderr
        assert "[source] slot" in refused.stderr  # says what to do
    assert not (b.parent / "trail" / "pgslot.json").exists()
    # the first pipeline lost nothing: the slot was not advanced by the second one
    insert(pg, range(4, 7))
    ok(redoline(a, "capture", "--until-caught-up"))
    assert trail_ids(a) == list(range(1, 7))
    assert slots(pg, pg_db.database) == {"shared"}


@pytest.mark.parametrize("first", ["snapshot", "init"])
def test_slot_recreated_before_the_first_captured_transaction(
    pg: psycopg.Connection[Any], pg_db: Endpoint, tmp_path: Path, first: str
) -> None:
    """The snapshot (or init) created the slot; it is dropped and created again before
    capture has written anything. The trail is empty, yet the gap is detected."""
    insert(pg, range(1, 4))
    a = pipeline(tmp_path, pg_db, "a")
    if first == "snapshot":
        ok(redoline(a, "snapshot", "--target", f"duckdb://{tmp_path}/replica.duckdb"))
    else:
        ok(redoline(a, "init"))
    assert trail_ids(a) == []
    (slot,) = slots(pg, pg_db.database)
    insert(pg, range(4, 5))  # committed while the slot is this trail's: must not be lost
    pg.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    pg.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    insert(pg, range(5, 6))
    if first == "init":
        # a snapshot taken now would be continued from the wrong slot: refused before loading
        refused = redoline(a, "snapshot", "--target", f"duckdb://{tmp_path}/replica.duckdb")
        assert refused.returncode == 5, refused.stdout + refused.stderr
        assert "ahead of the trail's position" in refused.stderr
        with duckdb.connect(str(tmp_path / "replica.duckdb")) as target:
            loaded = target.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 't'"
            ).fetchone()
        assert loaded == (0,)
    result = redoline(a, "capture", "--until-caught-up")
    assert result.returncode == 5, result.stdout + result.stderr
    assert f"replication slot '{slot}' is at" in result.stderr
    assert "ahead of the trail's position" in result.stderr and "lost" in result.stderr
    assert trail_ids(a) == []


def test_drop_removes_only_its_own_slot(
    pg: psycopg.Connection[Any], pg_db: Endpoint, tmp_path: Path
) -> None:
    a = pipeline(tmp_path, pg_db, "a")
    b = pipeline(tmp_path, pg_db, "b")
    ok(redoline(a, "init"))
    ok(redoline(b, "init"))
    slot_a, slot_b = marker(a)["slot"], marker(b)["slot"]
    assert slots(pg, pg_db.database) == {slot_a, slot_b}
    dropped = ok(redoline(a, "drop"))
    assert f"replication slot {slot_a}: dropped" in dropped.stdout
    assert slots(pg, pg_db.database) == {slot_b}
    assert slot_b in publications(pg) and slot_a not in publications(pg)
    # the other pipeline goes on as if nothing happened
    insert(pg, range(1, 4))
    ok(redoline(b, "capture", "--until-caught-up"))
    assert trail_ids(b) == [1, 2, 3]
    # the dropped pipeline's trail cannot continue (it would not know what it missed)
    again = redoline(a, "capture", "--until-caught-up")
    assert again.returncode == 5 and "was dropped by `redoline drop`" in again.stderr
    assert slots(pg, pg_db.database) == {slot_b}
    # a trail that owns no slot drops nothing, even when told another pipeline's name
    c = pipeline(tmp_path, pg_db, "c")
    for args in (("drop",), ("drop", "--slot", slot_b)):
        refused = redoline(c, *args)
        assert refused.returncode == 2 and "records no replication slot" in refused.stderr
    assert slots(pg, pg_db.database) == {slot_b}
    assert slot_b in publications(pg)
