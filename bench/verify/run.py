"""Benchmark: redoline verify beside reladiff and a naive full-scan compare.

MariaDB vs PostgreSQL (throwaway servers from ``connectors.devservers``), ``--rows`` rows
(default 1,000,000) loaded with LOAD DATA / COPY, exactly ``--changes`` rows (default 10)
updated on the PostgreSQL side. Each contender runs ``--runs`` times (default 3) in the same
session; the medians are printed. redoline must report exactly the changed rows.

    python bench/verify/run.py                    # 1M rows, 3 runs
    python bench/verify/run.py --rows 100000      # quick

reladiff is optional (``pip install 'reladiff[mysql,postgresql]'``); without it that row
says so and the rest still runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import hashlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psycopg
import pymysql
import pymysql.cursors

from connectors import devservers
from connectors.base import open_database
from connectors.endpoint import Endpoint
from connectors.model import TableId
from verify import TablePair, VerifyOptions, run_verify

#: compared columns; ``--float`` adds a DOUBLE column (reladiff reports false positives on it)
COLUMNS = ["id", "n", "s", "d", "ts"]


def generate(path: Path, rows: int, with_float: bool) -> None:
    rnd = random.Random(42)
    base = dt.datetime(2024, 1, 1)
    with path.open("w") as out:
        for i in range(1, rows + 1):
            ts = base + dt.timedelta(seconds=i * 37, microseconds=i % 1_000_000)
            out.write(
                f"{i}\t{rnd.randint(-(10**9), 10**9)}\tname-{rnd.getrandbits(40):x}\t"
                f"{rnd.randint(0, 10**9) / 100:.2f}\t{ts:%Y-%m-%d %H:%M:%S.%f}"
            )
            if with_float:
                out.write(f"\t{rnd.random() * 10 ** rnd.randint(-5, 8)!r}")
            out.write("\n")


def load(mysql: Endpoint, pg: Endpoint, data: Path, with_float: bool) -> None:
    m = pymysql.connect(
        host=mysql.host, port=mysql.port, user="root", local_infile=True, autocommit=True
    )
    with m.cursor() as cur:
        cur.execute("CREATE DATABASE bench")
        cur.execute(
            "CREATE TABLE bench.t (id BIGINT PRIMARY KEY, n INT, s VARCHAR(64), "
            "d DECIMAL(12,2), ts DATETIME(6)" + (", f DOUBLE)" if with_float else ")")
        )
        cur.execute(f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE bench.t")
    m.close()
    with psycopg.connect(host=pg.host, port=pg.port, user="postgres", autocommit=True) as p:
        p.execute("CREATE SCHEMA bench")
        p.execute(
            "CREATE TABLE bench.t (id BIGINT PRIMARY KEY, n INT, s VARCHAR(64), "
            "d NUMERIC(12,2), ts TIMESTAMP(6)" + (", f DOUBLE PRECISION)" if with_float else ")")
        )
        with p.cursor().copy("COPY bench.t FROM STDIN") as copy, data.open("rb") as f:
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        p.execute("VACUUM ANALYZE bench.t")
    m = pymysql.connect(host=mysql.host, port=mysql.port, user="root", autocommit=True)
    with m.cursor() as cur:
        cur.execute("ANALYZE TABLE bench.t")
    m.close()


def change(pg: Endpoint, rows: int, changes: int) -> set[int]:
    ids = set(random.Random(7).sample(range(1, rows + 1), changes))
    with psycopg.connect(host=pg.host, port=pg.port, user="postgres", autocommit=True) as p:
        for i in ids:
            p.execute("UPDATE bench.t SET s = s || '!' WHERE id = %s", (i,))
    return ids


# --------------------------------------------------------------------------- contenders


def ours(mysql: Endpoint, pg: Endpoint, workers: int, chunk_rows: int) -> set[int]:
    src, tgt = open_database(mysql), open_database(pg)
    result = run_verify(
        src,
        tgt,
        [TablePair(TableId("bench", "t"), TableId("bench", "t"))],
        VerifyOptions(workers=workers, chunk_rows=chunk_rows, recheck=False),
    )
    (table,) = result.tables
    if table.error:
        raise RuntimeError(table.error)
    return {int(d.key["id"]) for d in table.diffs if d.key}


def reladiff_run(mysql: Endpoint, pg: Endpoint, threads: int) -> set[int]:
    from reladiff import connect_to_table, diff_tables

    t1 = connect_to_table(f"mysql://root@{mysql.host}:{mysql.port}/bench", "t", "id", threads)
    t2 = connect_to_table(
        f"postgresql://postgres@{pg.host}:{pg.port}/postgres", ("bench", "t"), "id", threads
    )
    found = set()
    for _sign, row in diff_tables(
        t1,
        t2,
        extra_columns=tuple(COLUMNS[1:]),
        threaded=threads > 1,
        max_threadpool_size=threads,
    ):
        found.add(int(row[0]))
    return found


def _stream_mysql(mysql: Endpoint) -> Iterator[tuple[Any, ...]]:
    conn = pymysql.connect(
        host=mysql.host,
        port=mysql.port,
        user="root",
        cursorclass=pymysql.cursors.SSCursor,
    )
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(COLUMNS)} FROM bench.t ORDER BY id")
        yield from cur
    conn.close()


def _stream_pg(pg: Endpoint) -> Iterator[tuple[Any, ...]]:
    with (
        psycopg.connect(host=pg.host, port=pg.port, user="postgres") as conn,
        conn.cursor(name="naive") as cur,
    ):
        cur.itersize = 20_000
        cur.execute(f"SELECT {', '.join(COLUMNS)} FROM bench.t ORDER BY id")
        yield from cur


def _digest(row: tuple[Any, ...]) -> bytes:
    parts = []
    for v in row:
        if isinstance(v, float):
            parts.append(repr(v))
        elif isinstance(v, decimal.Decimal | dt.datetime):
            parts.append(str(v))
        else:
            parts.append("~" if v is None else str(v))
    return hashlib.md5("|".join(parts).encode()).digest()


def naive(mysql: Endpoint, pg: Endpoint) -> set[int]:
    """Stream both tables in key order and merge-compare row digests in Python."""
    found = set()
    a, b = _stream_mysql(mysql), _stream_pg(pg)
    ra, rb = next(a, None), next(b, None)
    while ra is not None or rb is not None:
        if rb is None or (ra is not None and ra[0] < rb[0]):
            found.add(int(ra[0]))  # type: ignore[index]
            ra = next(a, None)
        elif ra is None or rb[0] < ra[0]:
            found.add(int(rb[0]))
            rb = next(b, None)
        else:
            if _digest(ra) != _digest(rb):
                found.add(int(ra[0]))
            ra, rb = next(a, None), next(b, None)
    return found


def md5_mariadb(mysql: Endpoint) -> None:
    conn = pymysql.connect(host=mysql.host, port=mysql.port, user="root")
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS('|', {', '.join(COLUMNS)})), "
            "16), 16, 10) AS UNSIGNED)) FROM bench.t"
        )
        cur.fetchall()
    conn.close()


def md5_postgres(pg: Endpoint) -> None:
    with psycopg.connect(host=pg.host, port=pg.port, user="postgres") as conn:
        conn.execute(
            f"SELECT count(*), sum(('x' || left(md5(concat_ws('|', {', '.join(COLUMNS)})), 16))"
            "::bit(64)::bigint) FROM bench.t"
        ).fetchall()


# --------------------------------------------------------------------------- main


def timed(runs: int, fn: Callable[[], Any]) -> tuple[float, list[float], Any]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--float", action="store_true", help="add a DOUBLE column")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-reladiff", action="store_true")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="redoline-bench-", dir=args.dir) as tmp:
        base = Path(tmp)
        print(f"starting MariaDB and PostgreSQL in {base} ...", flush=True)
        maria = devservers.start_mariadb(base / "mariadb")
        postgres = devservers.start_postgres(base / "postgres")
        try:
            mysql = Endpoint.parse(f"mariadb://root@127.0.0.1:{maria.port}/bench")
            pg = Endpoint.parse(f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres")
            data = base / "rows.tsv"
            t0 = time.perf_counter()
            if args.float:
                COLUMNS.append("f")
            generate(data, args.rows, args.float)
            load(mysql, pg, data, args.float)
            expected = change(pg, args.rows, args.changes)
            print(
                f"loaded {args.rows:,} rows on each side in {time.perf_counter() - t0:.1f} s; "
                f"{len(expected)} rows changed on PostgreSQL",
                flush=True,
            )

            results: list[tuple[str, float | None, str]] = []

            def record(name: str, fn: Callable[[], Any], check: bool = True) -> None:
                median, times, found = timed(args.runs, fn)
                note = ", ".join(f"{t:.2f}" for t in times)
                if check:
                    ok = found == expected
                    note += f"; found {len(found)} rows" + ("" if ok else " (WRONG)")
                results.append((name, median, note))
                print(f"  {name:38} {median:7.2f} s   ({note})", flush=True)

            print(f"medians of {args.runs} runs:")
            record(
                f"redoline verify (workers={args.workers})",
                lambda: ours(mysql, pg, args.workers, args.chunk_rows),
            )
            if args.skip_reladiff:
                results.append(("reladiff", None, "skipped"))
            else:
                try:
                    import reladiff  # noqa: F401
                except ImportError:
                    print("  reladiff: not installed (pip install 'reladiff[mysql,postgresql]')")
                    results.append(("reladiff", None, "not installed"))
                else:
                    record("reladiff (1 thread)", lambda: reladiff_run(mysql, pg, 1))
                    record("reladiff (4 threads)", lambda: reladiff_run(mysql, pg, 4))
            if not args.skip_naive:
                record("naive stream-and-hash", lambda: naive(mysql, pg))
            record("MD5 table checksum, MariaDB", lambda: md5_mariadb(mysql), check=False)
            record("MD5 table checksum, PostgreSQL", lambda: md5_postgres(pg), check=False)

            ours_time = results[0][1]
            best_reladiff = min(
                (t for n, t, _ in results if n.startswith("reladiff") and t is not None),
                default=None,
            )
            if ours_time and best_reladiff:
                print(f"redoline vs reladiff's best: {best_reladiff / ours_time:.1f}x faster")
            return 0 if "WRONG" not in results[0][2] else 1
        finally:
            devservers.stop(maria)
            devservers.stop(postgres)


if __name__ == "__main__":
    raise SystemExit(main())
