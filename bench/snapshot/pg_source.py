"""Snapshot throughput from a PostgreSQL source into DuckDB, MariaDB and PostgreSQL.

    python -m bench.snapshot.pg_source [--rows 500000] [--workers 2]

Starts its own PostgreSQL and MariaDB (connectors.devservers), generates ``public.orders``
(6 columns: bigint key, int, numeric, varchar, timestamp, text) with ``generate_series`` and
times :func:`apply.snapshot.run_snapshot` into each target (a one-off copy: no slot).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import psycopg
import pymysql

from apply.snapshot import SnapshotOptions, run_snapshot
from connectors import devservers
from connectors.base import TableFilter, open_database
from connectors.endpoint import Endpoint
from connectors.model import TableId


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="redoline-bench-pgsnap-"))
    pg = devservers.start_postgres(base / "pg")
    maria = devservers.start_mariadb(base / "mariadb")
    try:
        admin = f"host=127.0.0.1 port={pg.port} user=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE s")
            conn.execute("CREATE DATABASE r")
        with psycopg.connect(admin + " dbname=s", autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer INT NOT NULL, "
                "amount NUMERIC(10,2), status VARCHAR(10), created TIMESTAMP NOT NULL "
                "DEFAULT now(), note TEXT)"
            )
            conn.execute(
                "INSERT INTO orders SELECT i, i % 500, (i % 10000) / 100.0, 'new', now(), "
                f"'note ' || i FROM generate_series(1, {args.rows}) i"
            )
            conn.execute("ANALYZE orders")
        mconn = pymysql.connect(host="127.0.0.1", port=maria.port, user="root", autocommit=True)
        with mconn.cursor() as cur:
            cur.execute("CREATE DATABASE r")
        mconn.close()
        source = open_database(Endpoint.parse(f"postgresql://postgres@127.0.0.1:{pg.port}/s"))
        targets = {
            "duckdb": (f"duckdb://{base}/r.duckdb", None),
            "mariadb": (f"mariadb://root@127.0.0.1:{maria.port}/r", "r"),
            "postgresql": (f"postgresql://postgres@127.0.0.1:{pg.port}/r", None),
        }
        for name, (url, schema) in targets.items():

            def rename(t: TableId, schema: str | None = schema) -> TableId:
                return TableId(schema, t.name) if schema else t

            report = run_snapshot(
                source,
                open_database(Endpoint.parse(url)),
                SnapshotOptions(
                    source_id=name,
                    workers=args.workers,
                    tables=TableFilter(("public.*",)),
                    rename=rename,
                    capture=False,
                ),
            )
            print(
                f"{name}: {report.rows:,} rows in {report.seconds:.2f} s = "
                f"{report.rows_per_second:,.0f} rows/s",
                flush=True,
            )
    finally:
        devservers.stop(maria)
        devservers.stop(pg)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
