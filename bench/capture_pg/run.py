"""Benchmark: PostgreSQL WAL -> durable trail, beside the raw logical-decoding fetch rates.

    python bench/capture_pg/run.py [--rows 300000] [--runs 3] [--profile]

Starts a throwaway PostgreSQL (wal_level=logical), creates one slot per measurement *before*
the workload (so every measurement decodes exactly the same WAL), generates an OLTP mix in
10-row transactions (4 inserts, 4 updates, 2 deletes) with a server-side procedure, then
measures over that WAL:

* raw peek   — ``pg_logical_slot_peek_binary_changes(slot, NULL, NULL, pgoutput options)``,
  every row fetched to the client (a peek does not consume, so one slot serves every run);
* raw stream — ``START_REPLICATION`` over psycopg's libpq layer, every CopyData frame read,
  nothing decoded;
* ours       — ``run_capture(..., until_caught_up=True)`` into a fresh trail through the
  shared runner (pgoutput decoded, values typed, transactions assembled, trail written and
  fsynced, slot confirmed).

Rows/s counts row changes (the ~300k the workload made; ours also counts the two table
definitions it announces). Each path also reports the client's CPU seconds: a raw path whose
client CPU is well under its wall time is paced by the server. Prints each run and the
medians, and with ``--profile`` the top of a profiled extra run; the last line is JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import select
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psycopg

from capture.runner import CaptureOptions, run_capture
from connectors import devservers
from connectors.endpoint import Endpoint
from connectors.model import TableId
from connectors.postgres import PostgreSQL, pg_conninfo
from connectors.postgres.slots import init_slot

SETUP = """
CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric(14,2),
                       updated timestamptz, flags int[]);
CREATE TABLE history (id bigint PRIMARY KEY, account int, amount numeric(14,2),
                      at timestamptz, note varchar(40), payload jsonb);
INSERT INTO accounts SELECT g, 'owner ' || g, 100, now(), '{1,2}' FROM generate_series(1, 50000) g;
CREATE PROCEDURE workload(txns int) LANGUAGE plpgsql AS $$
DECLARE base bigint := 0;
BEGIN
  FOR t IN 1..txns LOOP
    FOR k IN 1..4 LOOP
      INSERT INTO history VALUES (base + k, (base + k) % 50000 + 1, 12.34, now(),
                                  'transfer ' || k, '{"k": 1, "v": [1, 2]}');
    END LOOP;
    FOR k IN 1..4 LOOP
      UPDATE accounts SET balance = balance + 1, updated = now()
       WHERE id = (t * 4 + k) % 50000 + 1;
    END LOOP;
    DELETE FROM history WHERE id IN (base + 1, base + 2);
    base := base + 4;
    COMMIT;
  END LOOP;
END $$;
"""
TABLES = [TableId("public", "accounts"), TableId("public", "history")]


def raw_peek(url: str, slot: str) -> tuple[float, int, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        started, cpu = time.perf_counter(), time.process_time()
        cur = conn.cursor()
        cur.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, "
            "'proto_version', '1', 'publication_names', 'redoline')",
            (slot,),
        )
        rows = 0
        while batch := cur.fetchmany(10_000):
            rows += sum(1 for (data,) in batch if data[:1] in (b"I", b"U", b"D"))
        return time.perf_counter() - started, rows, time.process_time() - cpu


def raw_stream(db: PostgreSQL, slot: str, end: int) -> tuple[float, int, float]:
    conn = psycopg.connect(**pg_conninfo(db.endpoint, replication="database"), autocommit=True)
    pg = conn.pgconn
    started, cpu = time.perf_counter(), time.process_time()
    pg.send_query(
        f"START_REPLICATION SLOT {slot} LOGICAL 0/0 "
        "(proto_version '1', publication_names 'redoline')".encode()
    )
    pg.get_result()
    rows = 0
    while True:
        n, data = pg.get_copy_data(1)
        if n == 0:
            select.select([pg.socket], [], [], 1.0)
            pg.consume_input()
            continue
        frame = bytes(data)
        if frame[:1] == b"w":
            if frame[25:26] in (b"I", b"U", b"D"):
                rows += 1
            elif frame[25:26] == b"C" and int.from_bytes(frame[35:43], "big") >= end:
                break
        elif int.from_bytes(frame[1:9], "big") >= end:
            break
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    conn.close()
    return elapsed, rows, cpu


def ours(db: PostgreSQL, slot: str, trail: Path) -> tuple[float, int, float]:
    started, cpu = time.perf_counter(), time.process_time()
    result = run_capture(
        db,
        trail,
        CaptureOptions(
            source_id="bench",
            until_caught_up=True,
            reader_options={"slot": slot},
        ),
    )
    # result.changes also counts the two table definitions announced before the first rows
    return time.perf_counter() - started, result.changes, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=15, help="profile lines to print")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="redoline-bench-pg-"))
    server = devservers.start_postgres(base / "pg")
    try:
        url = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"
        db = PostgreSQL(Endpoint.parse(f"postgresql://postgres@127.0.0.1:{server.port}/postgres"))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SETUP)
        # each measured slot is created for (and recorded in) the trail that run writes
        trails = {f"run{i}": base / f"trail{i}" for i in range(args.runs)}
        if args.profile:
            trails[f"run{args.runs}"] = base / "trail-profile"
        init_slot(db, TABLES, slot="raw", publication="redoline")
        for slot, trail_dir in trails.items():
            init_slot(db, TABLES, slot=slot, publication="redoline", trail_dir=trail_dir)
        txns = args.rows // 10
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CALL workload(%s)", (txns,))
            row = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
            assert row is not None
            end = int(row[0])
            wal = conn.execute(
                "SELECT pg_size_pretty(pg_current_wal_lsn() - restart_lsn) "
                "FROM pg_replication_slots WHERE slot_name = 'raw'"
            ).fetchone()
        print(f"workload: {txns} transactions in {time.perf_counter() - started:.1f}s, WAL {wal}")
        time.sleep(1)  # let the WAL writer flush (the dev server commits asynchronously)
        peek, stream, mine = [], [], []
        cpu: dict[str, list[float]] = {"peek": [], "stream": [], "ours": []}
        for i in range(args.runs):
            sec, rows, pcpu = raw_peek(url, "raw")
            peek.append(rows / sec)
            with psycopg.connect(url, autocommit=True) as conn:  # a stream consumes: a copy
                conn.execute("SELECT pg_copy_logical_replication_slot('raw', %s)", (f"s{i}",))
            ssec, srows, scpu = raw_stream(db, f"s{i}", end)
            stream.append(srows / ssec)
            trail = base / f"trail{i}"
            osec, orows, ocpu = ours(db, f"run{i}", trail)
            mine.append(orows / osec)
            shutil.rmtree(trail)
            for name, value in (("peek", pcpu), ("stream", scpu), ("ours", ocpu)):
                cpu[name].append(value)
            print(
                f"run {i + 1}: raw peek {rows} rows in {sec:.2f}s = {rows / sec:,.0f}/s "
                f"(client CPU {pcpu:.2f}s) | raw stream {srows} in {ssec:.2f}s = "
                f"{srows / ssec:,.0f}/s (client CPU {scpu:.2f}s) | ours {orows} in {osec:.2f}s "
                f"= {orows / osec:,.0f}/s (client CPU {ocpu:.2f}s)"
            )
        summary = {
            "rows": args.rows,
            "raw_peek_rows_per_s": round(statistics.median(peek)),
            "raw_stream_rows_per_s": round(statistics.median(stream)),
            "ours_rows_per_s": round(statistics.median(mine)),
            "ours_vs_peek": round(statistics.median(mine) / statistics.median(peek), 3),
            "ours_vs_stream": round(statistics.median(mine) / statistics.median(stream), 3),
            # client CPU seconds: well under the wall time means the server (walsender or the
            # peek's decoding) sets the pace, not the client
            **{f"{k}_client_cpu_s": round(statistics.median(v), 2) for k, v in cpu.items()},
        }
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            ours(db, f"run{args.runs}", base / "trail-profile")
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
            print(out.getvalue())
        print(json.dumps(summary))
    finally:
        devservers.stop(server)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
