"""verify compares definitions as well as rows: a column only the target has is a difference.

Found by the campaign (seed 30007): a column dropped on a PostgreSQL source stayed on the
target, and `redoline verify` said "equal" because it compared the source's columns only.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import psycopg

from connectors.endpoint import Endpoint
from tests.clirun import redoline


def _dsn(ep: Endpoint) -> str:
    return f"host={ep.host} port={ep.port} user=postgres dbname={ep.database}"


def test_a_column_only_the_target_has_is_a_difference(pg_db: Endpoint, tmp_path: Path) -> None:
    with psycopg.connect(_dsn(pg_db), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id INT PRIMARY KEY, a TEXT)")
        conn.execute("INSERT INTO t SELECT i, 'a' || i FROM generate_series(1, 30) i")
    target = f"duckdb://{tmp_path}/r.duckdb"
    ends = ["--source", pg_db.url(), "--target", target]
    sync = redoline(
        "sync", *ends, "--trail", str(tmp_path / "trail"), "--until-caught-up", cwd=tmp_path
    )
    assert sync.returncode == 0, sync.stdout + sync.stderr
    equal = redoline("verify", *ends, cwd=tmp_path)
    assert equal.returncode == 0, equal.stdout + equal.stderr

    db = duckdb.connect(str(tmp_path / "r.duckdb"))
    db.execute("ALTER TABLE public.t ADD COLUMN stale INTEGER")
    db.close()
    report = tmp_path / "v.json"
    differs = redoline("verify", *ends, "--report-json", str(report), cwd=tmp_path)
    assert differs.returncode == 1, differs.stdout + differs.stderr
    assert "the target has column(s) stale that public.t does not" in differs.stdout
    (table,) = json.loads(report.read_text())["tables"]
    assert table["equal"] is False
    assert table["schema_diffs"] == ["the target has column(s) stale that public.t does not"]

    # a column subset compares only its columns: the rest of the target is not its business
    config = tmp_path / "subset.toml"
    config.write_text('[tables.columns]\n"public.t" = ["id", "a"]\n')
    subset = redoline("verify", "-c", str(config), *ends, cwd=tmp_path)
    assert subset.returncode == 0, subset.stdout + subset.stderr
