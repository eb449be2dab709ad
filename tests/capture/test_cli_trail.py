"""`redoline trail ...`: stats, dump filters, check exit codes, DuckDB queries, prune."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from capture.trail import TrailWriter, list_segment_files, register_consumer
from tests.capture.helpers import make_txn, sample_workload

KEY = bytes(range(32))
Cli = Callable[..., Any]


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    directory = tmp_path / "trail"
    with TrailWriter(directory, source_id="src", segment_bytes=1500) as writer:
        for txn in sample_workload(30):
            writer.append(txn)
    return directory


def test_stats_json(cli: Cli, trail: Path) -> None:
    res = cli("trail", "stats", "--trail", str(trail), "--json")
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["source_id"] == "src" and data["segments"] >= 3
    assert data["transactions"] == 32 and data["changes"] == 1 + 29 * 3 + 1 + 4
    assert data["tables"]["shop.orders"] == {"ddl": 2, "delete": 29, "insert": 29, "update": 30}
    assert data["bytes_uncompressed"] > data["bytes_on_disk"] > 0
    human = cli("trail", "stats", "--trail", str(trail))
    assert human.exit_code == 0 and "shop.orders" in human.stdout


def test_dump_filters(cli: Cli, trail: Path) -> None:
    res = cli(
        "trail",
        "dump",
        "--trail",
        str(trail),
        "--json",
        "--table",
        "shop.*",
        "--op",
        "update",
        "--from-op",
        "5",
        "--to-op",
        "20",
    )
    assert res.exit_code == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert rows and all(r["op"] == "update" and r["schema"] == "shop" for r in rows)
    assert all(5 <= r["op_number"] <= 20 for r in rows)
    assert rows[0]["before"]["status"] == "new" and rows[0]["after"]["status"] == "paid"
    assert rows[0]["after"]["amount"] == "1.50"  # decimals keep their scale
    # time window: make_txn(i) commits at 10:00:00 + i s
    res = cli(
        "trail",
        "dump",
        "--trail",
        str(trail),
        "--json",
        "--since",
        "2025-06-01T10:00:05+00:00",
        "--until",
        "2025-06-01T10:00:07",
    )
    xs = {json.loads(line)["xid"] for line in res.stdout.splitlines()}
    assert xs == {"x5", "x6"}
    human = cli("trail", "dump", "--trail", str(trail), "--to-op", "2")
    assert "#1" in human.stdout and "DDL shop.orders" in human.stdout
    assert "#2" in human.stdout and "INSERT" in human.stdout and "#3" not in human.stdout
    bad = cli("trail", "dump", "--trail", str(trail), "--op", "upsert")
    assert bad.exit_code == 2


def test_check_clean_and_corrupt(cli: Cli, trail: Path) -> None:
    ok = cli("trail", "check", "--trail", str(trail))
    assert ok.exit_code == 0 and "ok" in ok.stdout
    path = list_segment_files(trail)[1][0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    bad = cli("trail", "check", "--trail", str(trail), "--json")
    assert bad.exit_code == 7
    report = json.loads(bad.stdout)
    assert report["ok"] is False and path.name in report["error"]
    # other commands stop with the same exit code, through the app's error boundary
    dump = cli("trail", "dump", "--trail", str(trail))
    assert dump.exit_code == 7 and path.name in dump.stderr


def test_query(cli: Cli, trail: Path) -> None:
    res = cli(
        "trail",
        "query",
        "--trail",
        str(trail),
        "--json",
        "SELECT qualified_table, op, count(*) AS n, min(op_number) AS first "
        "FROM changes GROUP BY ALL ORDER BY 1, 2",
    )
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert {"qualified_table": "shop.orders", "op": "insert", "n": 29, "first": 2} in rows
    per_minute = cli(
        "trail",
        "query",
        "--trail",
        str(trail),
        "--json",
        "SELECT date_trunc('minute', commit_time) AS m, count(*) AS n FROM changes "
        "WHERE \"table\" = 'orders' AND commit_time >= '2025-06-01 10:00' "
        "AND commit_time < '2025-06-01 10:05' GROUP BY 1",
    )
    assert json.loads(per_minute.stdout) == [{"m": "2025-06-01T10:00:00", "n": 87}]
    js = cli(
        "trail",
        "query",
        "--trail",
        str(trail),
        "--json",
        "SELECT after->>'status' AS s FROM changes WHERE op_number = 2",
    )
    assert json.loads(js.stdout) == [{"s": "new"}]
    bad = cli("trail", "query", "--trail", str(trail), "SELEC nonsense")
    assert bad.exit_code == 2


def test_encrypted_trail_needs_key(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "enc"
    with TrailWriter(directory, source_id="src", key=KEY) as writer:
        writer.append(make_txn(1))
    key_file = tmp_path / "k"
    key_file.write_text(KEY.hex())
    missing = cli("trail", "check", "--trail", str(directory))
    assert missing.exit_code == 7 and "no key" in missing.stdout
    ok = cli("trail", "check", "--trail", str(directory), "--key-file", str(key_file))
    assert ok.exit_code == 0
    monkeypatch.setenv("MY_TRAIL_KEY", KEY.hex())
    dump = cli("trail", "dump", "--trail", str(directory), "--key-env", "MY_TRAIL_KEY", "--json")
    assert dump.exit_code == 0 and len(dump.stdout.splitlines()) == 3


def test_missing_directory(cli: Cli, tmp_path: Path) -> None:
    res = cli("trail", "stats", "--trail", str(tmp_path / "nope"))
    assert res.exit_code == 2 and "does not exist" in res.stderr


def test_prune(cli: Cli, trail: Path) -> None:
    n = len(list_segment_files(trail))
    res = cli("trail", "prune", "--trail", str(trail), "--json")
    assert json.loads(res.stdout)["deleted"] == []
    register_consumer(trail, "apply", 10**9)
    res = cli("trail", "prune", "--trail", str(trail), "--keep-segments", "2", "--json")
    assert res.exit_code == 0
    assert len(json.loads(res.stdout)["deleted"]) == n - 2
    assert len(list_segment_files(trail)) == 2


def test_with_typer_cli_runner(trail: Path) -> None:
    from toolkit_cli.commands.trail import app

    result = CliRunner().invoke(app, ["check", "--trail", str(trail), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["transactions"] == 32
