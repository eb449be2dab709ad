"""A large source transaction that carries a table definition, beside the same rows without it.

A PostgreSQL source writes a table's definition into the first transaction that touches the
table after a column change (``ALTER TABLE ... ADD COLUMN`` then a backfilling ``UPDATE``),
and a table created during a sync arrives as one transaction holding its definition, a
TRUNCATE and every row. Apply runs a transaction with DDL on its own (a barrier); this
benchmark times such a transaction against the same changes split into ordinary transactions
(applied set-based in groups), into the same kind of target, in the same run.

    python bench/apply/ddl_txn.py --changes 20000 --runs 3 --targets duckdb,postgres
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.apply.run import ours
from capture.trail import TrailWriter
from connectors import devservers
from connectors.base import open_database
from connectors.endpoint import Endpoint
from connectors.model import Transaction
from tests.apply.workload import Workload


def write_trails(base: Path, changes: int) -> tuple[Path, Path]:
    """Two trails of the same changes: ``split`` (definitions, then 100-change transactions)
    and ``one`` (the definitions and every change in one transaction)."""
    wl = Workload(seed=7)
    announce = wl.announce()
    txns: list[Transaction] = []
    while wl.op < changes:
        txns.append(wl.transaction(100, mix=(0.5, 0.9)))
    split, one = base / "split", base / "one"
    with TrailWriter(split, source_id="bench") as writer:
        writer.append(announce)
        for t in txns:
            writer.append(t)
        writer.flush()
    whole = Transaction(
        xid="1",
        position=announce.position,
        commit_time=announce.commit_time,
        origin=None,
        changes=[*announce.changes, *(c for t in txns for c in t.changes)],
        first_op=1,
    )
    with TrailWriter(one, source_id="bench") as writer:
        writer.append(whole)
        writer.flush()
    return split, one


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--targets", default="duckdb,postgres")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="redoline-bench-ddltxn-"))
    split, one = write_trails(base, args.changes)
    results: dict[str, dict[str, list[float]]] = {}
    for name in args.targets.split(","):
        server = None
        if name == "postgres":
            server = devservers.start_postgres(base / "pg", fast=False)
        try:
            for run in range(args.runs):
                for kind, trail in (("split", split), ("one", one)):
                    if server is None:
                        url = f"duckdb://{base / f'{kind}{run}.duckdb'}"
                    else:
                        import psycopg

                        dsn = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"
                        with psycopg.connect(dsn, autocommit=True) as c:
                            c.execute(f"CREATE DATABASE {kind}{run}")
                        url = f"postgresql://postgres@127.0.0.1:{server.port}/{kind}{run}"
                    n, secs = ours(open_database(Endpoint.parse(url)), trail, f"{kind}{run}")
                    results.setdefault(name, {}).setdefault(kind, []).append(n / secs)
                    print(f"{name} run {run + 1} {kind}: {n} changes in {secs:.2f}s", flush=True)
        finally:
            if server is not None:
                devservers.stop(server)
    print(f"\nmedians of {args.runs} runs, changes/s")
    print("| target | ordinary transactions | one transaction with DDL | ratio |")
    print("| --- | --- | --- | --- |")
    for name, r in results.items():
        s, o = statistics.median(r["split"]), statistics.median(r["one"])
        print(f"| {name} | {s:,.0f} | {o:,.0f} | {o / s:.2f}x |")


if __name__ == "__main__":
    main()
