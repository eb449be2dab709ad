"""A DuckDB file named like a target schema (`duckdb:///srv/shop.duckdb` for a source database
`shop`): DuckDB names the file's catalog `shop` too and refuses every `"shop"."t"` as ambiguous.
It was an internal error (exit 70, a traceback) in the middle of the load; now refused before
anything is written, with the two ways out. The rename way is then taken and works."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pymysql
import pytest

from connectors.endpoint import Endpoint
from tests.clirun import first_error, redoline

pytestmark = [pytest.mark.mariadb]


def test_a_file_named_like_the_schema_is_refused_with_the_way_out(
    mysql_db: Endpoint, tmp_path: Path
) -> None:
    conn = pymysql.connect(
        host=mysql_db.host, port=mysql_db.port, user="root", database=mysql_db.database
    )
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))")
        cur.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    conn.commit()
    conn.close()
    path = tmp_path / f"{mysql_db.database}.duckdb"
    args = ["--source", mysql_db.url(), "--target", f"duckdb://{path}"]
    args += ["--trail", str(tmp_path / "trail"), "--until-caught-up"]
    res = redoline("sync", *args, cwd=tmp_path)
    assert res.returncode == 6, res.stdout + res.stderr
    assert "DuckDB cannot tell the two apart" in first_error(res)
    assert "[tables.rename]" in res.stderr

    config = tmp_path / "r.toml"
    config.write_text(f'[tables.rename]\n"{mysql_db.database}" = "{mysql_db.database}_data"\n')
    res = redoline("sync", "-c", str(config), *args, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    db = duckdb.connect(str(path), read_only=True)
    rows = db.execute(f'SELECT * FROM "{mysql_db.database}_data".t ORDER BY id').fetchall()
    db.close()
    assert rows == [(1, "a"), (2, "b")]
