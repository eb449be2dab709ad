"""MariaDB target: `UPDATE t JOIN staging` beside the upsert the writer uses instead.

Times one 20k-row update of a 200k-row table each way (with and without a TEXT column), twice,
on a throwaway server, and counts the internal temporary tables each statement created
(``Created_tmp_tables`` / ``Created_tmp_disk_tables``): the join builds an Aria table on disk,
the code path of an intermittent server crash (signal 11 in create_tmp_table); the upsert
builds none.

    python bench/apply/mariadb_update_shape.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pymysql

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from connectors import devservers

ROWS, UPDATES = 200_000, 20_000
JOIN = "UPDATE t JOIN s ON t.id = s.id SET t.a = s.a, t.b = s.b, t.c = s.c WHERE s._op = 'u'"
MARK = "UPDATE s SET _op = 'm' WHERE _op = 'u' AND NOT EXISTS (SELECT 1 FROM t WHERE t.id = s.id)"
UPSERT = (
    "INSERT INTO t (id, a, b, c) SELECT s.id, s.a, s.b, s.c FROM s WHERE s._op = 'u' "
    "ON DUPLICATE KEY UPDATE a = VALUES(a), b = VALUES(b), c = VALUES(c)"
)


def _tmp_tables(cur: Any) -> dict[str, int]:
    cur.execute("SHOW SESSION STATUS LIKE 'Created_tmp%tables'")
    return {k: int(v) for k, v in cur.fetchall()}


def _table(cur: Any, text: bool) -> None:
    cur.execute("DROP TABLE IF EXISTS t")
    ctype = "TEXT" if text else "VARCHAR(200)"
    cur.execute(f"CREATE TABLE t (id INT PRIMARY KEY, a INT, b VARCHAR(100), c {ctype})")
    for i in range(0, ROWS, 10_000):
        cur.execute(
            "INSERT INTO t SELECT seq, seq, CONCAT('b', seq), REPEAT('x', 50) "
            f"FROM seq_{i + 1}_to_{i + 10_000}"
        )


def _stage(cur: Any) -> None:
    cur.execute("DROP TEMPORARY TABLE IF EXISTS s")
    cur.execute(
        "CREATE TEMPORARY TABLE s (_op CHAR(1), _id INT, _n INT, id INT NULL, a INT NULL, "
        "b VARCHAR(100) NULL, c TEXT NULL, KEY (_op, id)) ENGINE=InnoDB"
    )
    cur.execute(
        "INSERT INTO s SELECT 'u', seq, 1, seq * 9, seq + 7, CONCAT('n', seq), "
        f"REPEAT('y', 60) FROM seq_1_to_{UPDATES}"
    )


def main() -> None:
    server = devservers.start_mariadb(Path(tempfile.mkdtemp(prefix="redoline-bench-upd-")))
    try:
        conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root")
        cur = conn.cursor()
        cur.execute("CREATE DATABASE IF NOT EXISTS b")
        cur.execute("USE b")
        for text in (False, True):
            _table(cur, text)
            conn.commit()
            for label in ("join", "upsert", "join", "upsert"):
                _stage(cur)
                before = _tmp_tables(cur)
                start = time.perf_counter()
                if label == "join":
                    cur.execute(JOIN)
                else:
                    cur.execute(MARK)
                    cur.execute(UPSERT)
                took = time.perf_counter() - start
                conn.commit()
                after = _tmp_tables(cur)
                made = {k: after[k] - before[k] for k in after}
                what = f"TEXT column={text} {label}"
                print(f"{what}: {took * 1000:.0f} ms for {UPDATES} rows; temporary tables {made}")
        conn.close()
    finally:
        devservers.stop(server)


if __name__ == "__main__":
    main()
