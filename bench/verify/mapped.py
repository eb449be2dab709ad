"""Benchmark: verify on an equal replica whose columns apply maps between engines.

MariaDB source ``m(id INT, doc JSON, tm TIME(6), ch CHAR(10))``, ``--rows`` rows (default
22,000); two PostgreSQL replicas holding the same values, as apply created them before and
after the CHAR/JSON mapping change (docs/apply.md: Type mapping), and a jsonb table a user
might create:

``old``     doc jsonb, tm interval, ch char(10)    (what apply created before)
``new``     doc json,  tm interval, ch varchar(10) (what apply creates now)
``jsonb``   doc jsonb, tm interval, ch varchar(10) (jsonb made by hand)

On ``old`` the char(10) values read padded on PostgreSQL, unpadded on MariaDB: a real
difference for applications, which verify now reports (``ch``).

Each replica is verified ``--runs`` times (default 3); the median time, the chunks that
differed and the differences reported are printed. Throwaway servers from
``connectors.devservers``.

    python bench/verify/mapped.py                 # 22k rows
    python bench/verify/mapped.py --rows 5000     # quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psycopg
import pymysql

from connectors import devservers
from connectors.base import open_database
from connectors.endpoint import Endpoint
from connectors.model import TableId
from verify import TablePair, VerifyOptions, run_verify

DOCS = ['{"b": 1, "a": [1, 2.5, "x"], "n": null}', '{"z":1,"a":{"y":true}}', "[]", '"s"']
CHARS = ["", "a", "ab", "héllo", "x y"]
TABLES = [
    ("old", "jsonb", "char(10)"),
    ("new", "json", "varchar(10)"),
    ("jsonb", "jsonb", "varchar(10)"),
]


def rows(n: int) -> list[tuple[object, ...]]:
    return [
        (
            i,
            DOCS[i % len(DOCS)],
            dt.timedelta(hours=(i % 800) - 400, microseconds=i),
            CHARS[i % len(CHARS)],
        )
        for i in range(1, n + 1)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=22_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = rows(args.rows)
    with tempfile.TemporaryDirectory(prefix="redoline-bench-") as tmp:
        base = Path(tmp)
        maria = devservers.start_mariadb(base / "mariadb")
        postgres = devservers.start_postgres(base / "postgres")
        try:
            conn = pymysql.connect(host="127.0.0.1", port=maria.port, user="root")
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE bench")
                cur.execute(
                    "CREATE TABLE bench.m (id INT PRIMARY KEY, doc JSON, tm TIME(6), ch CHAR(10))"
                )
                cur.executemany("INSERT INTO bench.m VALUES (%s, %s, %s, %s)", data)
            conn.commit()
            conn.close()
            dsn = f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres"
            with psycopg.connect(dsn, autocommit=True) as pg:
                pg.execute("CREATE SCHEMA bench")
                for name, doc, ch in TABLES:
                    pg.execute(
                        f"CREATE TABLE bench.{name} (id int PRIMARY KEY, doc {doc}, "
                        f"tm interval, ch {ch})"
                    )
                    with pg.cursor() as cur:
                        cur.executemany(f"INSERT INTO bench.{name} VALUES (%s, %s, %s, %s)", data)
                    pg.execute(f"ANALYZE bench.{name}")
            src = open_database(Endpoint.parse(f"mariadb://root@127.0.0.1:{maria.port}/bench"))
            tgt = open_database(
                Endpoint.parse(f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres")
            )
            print(f"{args.rows} rows, MariaDB JSON/TIME/CHAR -> PostgreSQL, {args.runs} runs")
            for name, _doc, _ch in TABLES:
                times = []
                for _ in range(args.runs):
                    t0 = time.monotonic()
                    result = run_verify(
                        src,
                        tgt,
                        [TablePair(TableId("bench", "m"), TableId("bench", name))],
                        VerifyOptions(recheck=False),
                    )
                    times.append(time.monotonic() - t0)
                (table,) = result.tables
                print(
                    f"  {name:5}  median {statistics.median(times):6.2f} s  "
                    f"chunks differing {table.mismatched_chunks}/{table.chunks}  "
                    f"differences reported {len(table.diffs)}"
                    f" in {sorted({c for d in table.diffs for c in d.columns or ()})}"
                    + (f"  error {table.error}" if table.error else "")
                )
        finally:
            devservers.stop(maria)
            devservers.stop(postgres)
    return 0


if __name__ == "__main__":
    sys.exit(main())
