"""A target table an earlier, interrupted run created before the source's definition changed.

The campaign (seeds 31021, 32032) and the `ddl` helper saw a resumed snapshot fail every chunk:
the target table kept the columns it was created with ("Table evo does not have a column with
name b_r1", "Unknown column 'from2'"). The snapshot now creates such a table again and loads
it from scratch. Judged by plain driver reads.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pymysql
import pytest

from connectors.endpoint import Endpoint
from tests.clirun import redoline

pytestmark = [pytest.mark.mariadb]


def test_a_table_lacking_a_new_column_is_loaded_again(mysql_db: Endpoint, tmp_path: Path) -> None:
    conn = pymysql.connect(
        host=mysql_db.host, port=mysql_db.port, user="root", database=mysql_db.database
    )
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(20), b_r1 INT)")
        cur.executemany(
            "INSERT INTO t VALUES (%s, %s, %s)", [(i, f"a{i}", i * 10) for i in range(1, 301)]
        )
    conn.commit()
    # what an interrupted earlier run left: the table as it was before b was renamed b_r1
    path = tmp_path / "r.duckdb"
    db = duckdb.connect(str(path))
    db.execute(f'CREATE SCHEMA "{mysql_db.database}"')
    db.execute(f'CREATE TABLE "{mysql_db.database}".t (id INTEGER PRIMARY KEY, a VARCHAR, b INT)')
    db.execute(f"INSERT INTO \"{mysql_db.database}\".t VALUES (1, 'old', 1)")
    db.close()
    res = redoline(
        "snapshot",
        "--source",
        mysql_db.url(),
        "--target",
        f"duckdb://{path}",
        "--trail",
        str(tmp_path / "trail"),
        "--no-follow",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "created again and loaded from scratch" in res.stderr
    db = duckdb.connect(str(path), read_only=True)
    got = db.execute(f'SELECT * FROM "{mysql_db.database}".t ORDER BY id').fetchall()
    db.close()
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM t ORDER BY id")
        want = [tuple(r) for r in cur.fetchall()]
    conn.close()
    assert [tuple(r) for r in got] == want
