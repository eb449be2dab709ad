"""`redoline verify` / `redoline repair` through the real entry point: exit codes, reports,
printed and executed repair, --from-report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connectors.endpoint import Endpoint
from tests.verify.conftest import execute, qualified


def _setup(mysql_db: Endpoint, pg_db: Endpoint) -> None:
    # the MySQL database maps to a PostgreSQL schema of the same name
    execute(
        mysql_db,
        [f"CREATE TABLE {qualified(mysql_db, 'items')} (id INT PRIMARY KEY, name VARCHAR(20))"],
        [(i, f"n{i}") for i in range(1, 51)],
        f"INSERT INTO {qualified(mysql_db, 'items')} VALUES (%s, %s)",
    )
    execute(
        pg_db,
        [
            f'CREATE SCHEMA "{mysql_db.database}"',
            f'CREATE TABLE "{mysql_db.database}".items (id INT PRIMARY KEY, name VARCHAR(20))',
        ],
        [(i, f"n{i}") for i in range(1, 51)],
        f'INSERT INTO "{mysql_db.database}".items VALUES (%s, %s)',
    )


def _args(mysql_db: Endpoint, pg_db: Endpoint) -> list[str]:
    return ["--source", mysql_db.url(), "--target", pg_db.url(), "--recheck-wait", "0"]


def test_verify_exit_codes_and_reports(
    cli: Any, mysql_db: Endpoint, pg_db: Endpoint, tmp_path: Path
) -> None:
    _setup(mysql_db, pg_db)
    ok = cli("verify", *_args(mysql_db, pg_db), "--json")
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["equal"] is True

    execute(pg_db, [f"UPDATE \"{mysql_db.database}\".items SET name = 'x|y' WHERE id = 7"])
    execute(pg_db, [f'DELETE FROM "{mysql_db.database}".items WHERE id = 8'])
    paths = {ext: tmp_path / f"report.{ext}" for ext in ("json", "md", "html")}
    bad = cli(
        "verify",
        *_args(mysql_db, pg_db),
        "--chunk-rows",
        "10",
        "--workers",
        "3",
        "--report-json",
        str(paths["json"]),
        "--report-md",
        str(paths["md"]),
        "--report-html",
        str(paths["html"]),
    )
    assert bad.exit_code == 1, bad.stderr
    assert "differences found" in bad.stdout
    report = json.loads(paths["json"].read_text())
    assert report["totals"] == {"missing": 1, "extra": 0, "different": 1, "transient": 0}
    md = paths["md"].read_text()
    assert "x\\|y" in md and "| name ⚠ |" in md
    page = paths["html"].read_text()
    assert page.startswith("<!doctype html>") and "x|y" in page and "<script" not in page

    printed = cli("repair", *_args(mysql_db, pg_db))
    assert printed.exit_code == 1
    assert "UPDATE" in printed.stdout and "INSERT INTO" in printed.stdout
    assert "BEGIN;" in printed.stdout

    fixed = cli("repair", *_args(mysql_db, pg_db), "--from-report", str(paths["json"]), "--execute")
    assert fixed.exit_code == 0, fixed.stdout + fixed.stderr
    assert cli("verify", *_args(mysql_db, pg_db)).exit_code == 0


def test_verify_errors_exit_at_least_2(cli: Any, mysql_db: Endpoint, pg_db: Endpoint) -> None:
    execute(
        mysql_db,
        [f"CREATE TABLE {qualified(mysql_db, 'lonely')} (id INT PRIMARY KEY)"],
    )
    missing = cli("verify", *_args(mysql_db, pg_db))
    assert missing.exit_code >= 2
    assert "lonely" in missing.stderr
    nothing = cli("verify", *_args(mysql_db, pg_db), "--tables", "nope.*")
    assert nothing.exit_code == 2
    assert "matches" in nothing.stderr
