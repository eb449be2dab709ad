"""ODBC snapshot rate beside the native PostgreSQL path, same table, same run.

    python -m bench.snapshot.odbc_source [--rows 200000] [--runs 3] [--workers 2]

Starts its own PostgreSQL (connectors.devservers), generates ``public.orders`` (bigint key,
int, numeric, varchar, timestamp, text) and copies it into a fresh PostgreSQL database with
:func:`apply.snapshot.run_snapshot` from three sources that are all the same table:

``odbc``        ``odbc://`` through psqlODBC, one serializable transaction (one reader)
``odbc-none``   ``odbc://...&consistency=none``, ``--workers`` parallel readers
``native``      ``postgresql://`` (server-side COPY text, exported snapshot): the baseline

Prints each run and the medians in rows/s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import psycopg

from apply.snapshot import SnapshotOptions, run_snapshot
from connectors import devservers
from connectors.base import TableFilter, open_database
from connectors.endpoint import Endpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="redoline-bench-odbc-"))
    pg = devservers.start_postgres(base / "pg")
    try:
        admin = f"host=127.0.0.1 port={pg.port} user=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE s")
        with psycopg.connect(admin + " dbname=s", autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer INT NOT NULL, "
                "amount NUMERIC(10,2), status VARCHAR(10), created TIMESTAMP NOT NULL, "
                "note TEXT)"
            )
            conn.execute(
                "INSERT INTO orders SELECT i, i % 500, (i % 10000) / 100.0, 'new', "
                "timestamp '2024-01-01' + i * interval '1 second', 'note ' || i "
                f"FROM generate_series(1, {args.rows}) i"
            )
            conn.execute("ANALYZE orders")
        odbc = (
            f"odbc://postgres@/?driver=PostgreSQL Unicode&server=127.0.0.1&port={pg.port}"
            "&database=s&BoolsAsChar=0"
        )
        sources = {
            "odbc": odbc,
            "odbc-none": odbc + "&consistency=none",
            "native": f"postgresql://postgres@127.0.0.1:{pg.port}/s",
        }
        rates: dict[str, list[float]] = {name: [] for name in sources}
        for run in range(args.runs):
            for name, url in sources.items():
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute("DROP DATABASE IF EXISTS r")
                    conn.execute("CREATE DATABASE r")
                report = run_snapshot(
                    open_database(Endpoint.parse(url)),
                    open_database(Endpoint.parse(f"postgresql://postgres@127.0.0.1:{pg.port}/r")),
                    SnapshotOptions(
                        source_id=name,
                        workers=args.workers,
                        tables=TableFilter(("public.orders",)),
                        capture=False,
                    ),
                )
                assert report.rows == args.rows, report.rows
                rates[name].append(report.rows_per_second)
                print(
                    f"run {run + 1} {name}: {report.rows:,} rows in {report.seconds:.2f} s = "
                    f"{report.rows_per_second:,.0f} rows/s",
                    flush=True,
                )
        for name, values in rates.items():
            print(f"median {name}: {statistics.median(values):,.0f} rows/s", flush=True)
    finally:
        devservers.stop(pg)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
