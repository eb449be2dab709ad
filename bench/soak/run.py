"""Soak benchmark: a steady OLTP load through `redoline sync`, lag sampled every second.

    python bench/soak/run.py [--minutes 10] [--tps 1000] [--direction maria-pg|pg-maria|both]

Starts throwaway MariaDB and PostgreSQL servers, seeds three tables on the source, then for
each direction (MariaDB -> PostgreSQL, PostgreSQL -> MariaDB):

1. runs ``redoline sync -c soak.toml --metrics 127.0.0.1:PORT`` as a subprocess, the way a
   DBA runs it, with ``[source] heartbeat = "1s"``, and waits for the snapshot to finish;
2. drives ``--tps`` source transactions per second (paced, several client threads) of a
   mixed OLTP load for ``--minutes``: new order (insert + account update), payment (two
   updates), event log (two inserts), cancel (delete), in 40/30/20/10 proportions;
3. every second reads ``redoline_lag_seconds{stage="apply"}`` from the metrics endpoint
   over HTTP (the heartbeat's measure: a sample that says ``redoline_lag_estimated 1``,
   taken before the first beat arrived, is counted apart, not as a lag) and
   ``{stage="capture"}`` beside it (how much of the lag is before the trail), the sync
   process's RSS, and the CPU time of the sync process, the source server and the target
   server (``/proc``: the server's whole process tree);
4. stops the load, waits until apply has a heartbeat written after the load stopped, stops
   sync (SIGTERM), and compares every row of every table on both sides with the engines'
   own drivers (values as normalised text, sorted by key): no redoline code is involved in
   the verdict.

Prints, per direction: achieved source transactions/s, lag p50 / p99 / max (seconds), RSS at
the first sample after warm-up (``--warmup``, default 60 s or a fifth of the run) and at the
end, CPU used by the source, the target and the sync process (cores, averaged over the load),
whether the replica is equal, and the machine's load average at the end (the benchmark
shares its cores with whatever else runs). The last line is JSON.

The servers are throwaway ones with fsync off; PostgreSQL commits synchronously as in
production (``--pg-async-commit`` for the test servers' ``synchronous_commit=off``, which
delays each commit's arrival in logical decoding until the WAL writer flushes it).

Aims (issue 17): p99 lag < 0.5 s, RSS growth < 10 % after warm-up, replica equal.
Not run by the test suite (it takes minutes); the machine's load from other work shows up in
every figure, so say what else ran when quoting them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psycopg
import pymysql

from connectors import devservers

ACCOUNTS = 10_000
ORDERS = 10_000
TABLES = ("accounts", "orders", "events")
TICK = os.sysconf("SC_CLK_TCK")
Say = Callable[[str], None]


# --------------------------------------------------------------------------- source SQL


class Source:
    """The workload's view of one source engine (the benchmark's own SQL, not redoline's)."""

    def __init__(self, engine: str, port: int, schema: str) -> None:
        self.engine, self.port, self.schema = engine, port, schema

    def connect(self) -> Any:
        if self.engine == "mariadb":
            return pymysql.connect(
                host="127.0.0.1",
                port=self.port,
                user="root",
                database=self.schema,
                autocommit=False,
            )
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="soak", autocommit=False
        )

    def setup(self) -> None:
        ts = "DATETIME(6)" if self.engine == "mariadb" else "TIMESTAMP(6)"
        ddl = [
            f"CREATE TABLE accounts (id INT PRIMARY KEY, balance DECIMAL(14,2) NOT NULL, "
            f"updated_at {ts} NOT NULL)",
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, account_id INT NOT NULL, amount "
            f"DECIMAL(10,2) NOT NULL, status VARCHAR(10) NOT NULL, created_at {ts} NOT NULL)",
            "CREATE TABLE events (id BIGINT PRIMARY KEY, account_id INT NOT NULL, kind "
            "VARCHAR(16) NOT NULL, payload VARCHAR(200))",
        ]
        if self.engine == "mariadb":
            admin = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
            with admin.cursor() as cur:
                cur.execute(f"CREATE DATABASE {self.schema}")
            admin.close()
        else:
            with psycopg.connect(
                host="127.0.0.1", port=self.port, user="postgres", autocommit=True
            ) as admin:
                admin.execute("CREATE DATABASE soak")
        conn = self.connect()
        with conn.cursor() as cur:
            for stmt in ddl:
                cur.execute(stmt)
            now = dt.datetime(2026, 1, 1)
            cur.executemany(
                "INSERT INTO accounts VALUES (%s, %s, %s)",
                [(i, decimal.Decimal("1000.00"), now) for i in range(1, ACCOUNTS + 1)],
            )
            cur.executemany(
                "INSERT INTO orders VALUES (%s, %s, %s, 'new', %s)",
                [
                    (i, 1 + i % ACCOUNTS, decimal.Decimal("10.00"), now)
                    for i in range(1, ORDERS + 1)
                ],
            )
        conn.commit()
        conn.close()


def _worker(
    source: Source,
    worker: int,
    rate: float,
    stop: threading.Event,
    counts: list[int],
    errors: list[str],
) -> None:
    """Paced transactions: ``rate`` per second from this thread until ``stop``."""
    rnd = random.Random(worker)
    conn = source.connect()
    cur = conn.cursor()
    next_id = 1_000_000_000 * (worker + 1)  # a disjoint id range per thread
    interval = 1.0 / rate
    due = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        elif now - due > 1.0:
            due = now  # fell far behind (the machine is busy): do not burst
        due += interval
        kind = rnd.random()
        account = rnd.randint(1, ACCOUNTS)
        ts = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        amount = decimal.Decimal(rnd.randint(100, 99_999)) / 100
        try:
            if kind < 0.4:  # new order
                next_id += 1
                cur.execute(
                    "INSERT INTO orders VALUES (%s, %s, %s, 'new', %s)",
                    (next_id, account, amount, ts),
                )
                cur.execute(
                    "UPDATE accounts SET balance = balance - %s, updated_at = %s WHERE id = %s",
                    (amount, ts, account),
                )
            elif kind < 0.7:  # payment
                cur.execute(
                    "UPDATE orders SET status = 'paid' WHERE id = %s",
                    (rnd.randint(1, ORDERS),),
                )
                cur.execute(
                    "UPDATE accounts SET balance = balance + %s, updated_at = %s WHERE id = %s",
                    (amount, ts, account),
                )
            elif kind < 0.9:  # event log
                for _ in range(2):
                    next_id += 1
                    cur.execute(
                        "INSERT INTO events VALUES (%s, %s, %s, %s)",
                        (next_id, account, rnd.choice(("login", "view", "cart")), "x" * 60),
                    )
            else:  # cancel
                cur.execute("DELETE FROM orders WHERE id = %s", (rnd.randint(1, ORDERS),))
            conn.commit()
            counts[worker] += 1
        except Exception as exc:  # counted and shown: a failing load is not a result
            errors.append(repr(exc))
            conn.rollback()
    conn.close()


# --------------------------------------------------------------------------- measuring


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _metric(metrics: dict[str, float], name: str, **labels: str) -> float | None:
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            return value
    return None


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / TICK


def _tree(root: int) -> list[int]:
    """``root`` and every process below it (a PostgreSQL postmaster's backends)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --------------------------------------------------------------------------- the oracle


def _canon(value: Any) -> str:
    if isinstance(value, decimal.Decimal):
        return f"{value:.2f}"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ", timespec="microseconds")
    return "NULL" if value is None else str(value)


def _rows(engine: str, port: int, db: str, schema: str, table: str) -> list[tuple[str, ...]]:
    sql = f"SELECT * FROM {schema}.{table} ORDER BY id"
    if engine == "mariadb":
        conn = pymysql.connect(host="127.0.0.1", port=port, user="root", database=db)
        with conn.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall()
        conn.close()
    else:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname=db) as conn:
            rows = conn.execute(sql).fetchall()
    return [tuple(_canon(v) for v in r) for r in rows]


# --------------------------------------------------------------------------- one direction


@dataclass
class Plan:
    """One direction's endpoints, config and oracle (engine, port, database, schema)."""

    name: str
    source: Source
    work: Path
    config: Path
    oracle_src: tuple[str, int, str, str]
    oracle_tgt: tuple[str, int, str, str]


@dataclass
class Samples:
    """What the one-second sampler saw while the load ran."""

    lags: list[float] = field(default_factory=list)
    capture_lags: list[float] = field(default_factory=list)
    estimated: int = 0
    #: (seconds since the load started, sync RSS in MB)
    rss: list[tuple[float, float]] = field(default_factory=list)


def _plan(
    name: str, servers: dict[str, devservers.DevServer], base: Path, batch_ms: int | None
) -> Plan:
    """Create the source tables (seeded) and the empty target database; write soak.toml."""
    maria_first = name == "maria-pg"
    src = servers["mariadb" if maria_first else "postgresql"]
    tgt = servers["postgresql" if maria_first else "mariadb"]
    work = base / name
    work.mkdir()
    if maria_first:
        source = Source("mariadb", src.port, "shop")
        src_url = f"mariadb://root@127.0.0.1:{src.port}/shop"
        # the target: PostgreSQL database soak_replica, tables in schema shop
        with psycopg.connect(
            host="127.0.0.1", port=tgt.port, user="postgres", autocommit=True
        ) as c:
            c.execute("CREATE DATABASE soak_replica")
        tgt_url = f"postgresql://postgres@127.0.0.1:{tgt.port}/soak_replica"
        include, rename = "shop.*", ""
        oracle_src = ("mariadb", src.port, "shop", "shop")
        oracle_tgt = ("postgresql", tgt.port, "soak_replica", "shop")
    else:
        source = Source("postgresql", src.port, "public")
        src_url = f"postgresql://postgres@127.0.0.1:{src.port}/soak"
        admin = pymysql.connect(host="127.0.0.1", port=tgt.port, user="root", autocommit=True)
        with admin.cursor() as cur:
            cur.execute("CREATE DATABASE soak_replica")
        admin.close()
        tgt_url = f"mariadb://root@127.0.0.1:{tgt.port}/soak_replica"
        include, rename = "public.*", '[tables.rename]\n"public" = "soak_replica"\n'
        oracle_src = ("postgresql", src.port, "soak", "public")
        oracle_tgt = ("mariadb", tgt.port, "soak_replica", "soak_replica")
    source.setup()
    cfg = work / "soak.toml"
    cfg.write_text(
        f'[source]\nurl = "{src_url}"\nid = "soak"\nheartbeat = "1s"\n'
        f'[target]\nurl = "{tgt_url}"\n[trail]\ndir = "{work}/trail"\n'
        f'[state]\ndir = "{work}/state"\n[tables]\ninclude = ["{include}"]\n{rename}'
        + (f"[apply]\nbatch_ms = {batch_ms}\n" if batch_ms is not None else "")
    )
    return Plan(name, source, work, cfg, oracle_src, oracle_tgt)


def _start_sync(plan: Plan, port: int) -> subprocess.Popen[str]:
    """``redoline sync`` the way a DBA runs it; waits until apply follows the trail."""
    log = plan.work / "sync.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from toolkit_cli.app import main; main()",
            *("sync", "-c", str(plan.config), "--metrics", f"127.0.0.1:{port}", "-q"),
        ],
        cwd=plan.work,
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),  # noqa: SIM115
        text=True,
    )
    deadline = time.monotonic() + 300
    while True:  # the snapshot, then apply follows the trail
        if proc.poll() is not None:
            raise SystemExit(f"sync exited {proc.returncode}: {log.read_text()}")
        try:
            m = _scrape(port)
            if _metric(m, "redoline_stage_state", stage="apply", state="running") == 1.0:
                return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.send_signal(signal.SIGTERM)
            raise SystemExit("sync did not start applying within 300 s")
        time.sleep(0.5)


def _sample(
    port: int, pid: int, started: float, seconds: float, counts: list[int], say: Say
) -> Samples:
    """Every second until ``seconds`` after ``started``: lag (apply, capture) and RSS."""
    out = Samples()
    next_sample = started + 1
    while time.monotonic() - started < seconds:
        time.sleep(max(0.0, next_sample - time.monotonic()))
        next_sample += 1
        m = _scrape(port)
        lag = _metric(m, "redoline_lag_seconds", stage="apply")
        if _metric(m, "redoline_lag_estimated", stage="apply") != 0:
            out.estimated += 1  # before the first beat arrived: counted, not a lag figure
        elif lag is not None:
            out.lags.append(lag)
        captured = _metric(m, "redoline_lag_seconds", stage="capture")
        if captured is not None:
            out.capture_lags.append(captured)
        out.rss.append((time.monotonic() - started, _rss_mb(pid)))
        if len(out.rss) % 30 == 0:
            say(
                f"  {time.monotonic() - started:5.0f} s: {sum(counts):,} transactions, "
                f"lag {lag} s, rss {out.rss[-1][1]:.0f} MB"
            )
    return out


def _wait_caught_up(port: int, stopped: float) -> float:
    """Seconds from ``stopped`` until apply has a heartbeat written after it."""
    deadline = time.monotonic() + 300
    while True:
        m = _scrape(port)
        beat = _metric(m, "redoline_heartbeat_timestamp_seconds", stage="apply")
        if beat is not None and beat > stopped + 1:
            return time.time() - stopped
        if time.monotonic() > deadline:
            raise SystemExit("apply did not catch up within 300 s after the load")
        time.sleep(0.5)


def _compare(plan: Plan, say: Say) -> tuple[bool, int]:
    """Every row of every table on both sides, by the engines' own drivers."""
    equal, compared = True, 0
    for table in TABLES:
        a = _rows(*plan.oracle_src, table)
        b = _rows(*plan.oracle_tgt, table)
        compared += len(a)
        if a != b:
            equal = False
            missing = len(set(a) - set(b))
            extra = len(set(b) - set(a))
            say(
                f"  {table}: {len(a)} source rows, {len(b)} target rows, {missing} missing, "
                f"{extra} extra or different"
            )
    return equal, compared


def _lag_figures(prefix: str, lags: list[float]) -> dict[str, float | None]:
    return {
        f"{prefix}_p50": round(statistics.median(lags), 3) if lags else None,
        f"{prefix}_p99": round(_pct(lags, 0.99), 3) if lags else None,
        f"{prefix}_max": round(max(lags), 3) if lags else None,
    }


def run_direction(
    name: str,
    servers: dict[str, devservers.DevServer],
    base: Path,
    *,
    seconds: float,
    tps: float,
    threads: int,
    warmup: float,
    say: Say,
    batch_ms: int | None = None,
) -> dict[str, Any]:
    """One direction: sync started, ``tps`` for ``seconds``, sampled, compared (module doc)."""
    plan = _plan(name, servers, base, batch_ms)
    src = servers[plan.oracle_src[0]]
    tgt = servers[plan.oracle_tgt[0]]
    port = _free_port()
    proc = _start_sync(plan, port)
    try:
        say(f"{name}: sync applying; load {tps:.0f} tps for {seconds:.0f} s")
        stop = threading.Event()
        counts = [0] * threads
        errors: list[str] = []
        workers = [
            threading.Thread(
                target=_worker,
                args=(plan.source, i, tps / threads, stop, counts, errors),
                daemon=True,
            )
            for i in range(threads)
        ]
        cpu0 = (_cpu_seconds(_tree(src.pid)), _cpu_seconds(_tree(tgt.pid)))
        cpu0_sync = _cpu_seconds([proc.pid])
        started = time.monotonic()
        for w in workers:
            w.start()
        samples = _sample(port, proc.pid, started, seconds, counts, say)
        stop.set()
        for w in workers:
            w.join()
        load_seconds = time.monotonic() - started
        # the trees again (backends come and go)
        cpu = (
            (_cpu_seconds(_tree(src.pid)) - cpu0[0]) / load_seconds,
            (_cpu_seconds(_tree(tgt.pid)) - cpu0[1]) / load_seconds,
            (_cpu_seconds([proc.pid]) - cpu0_sync) / load_seconds,
        )
        caught_up_after = _wait_caught_up(port, time.time())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    equal, rows_compared = _compare(plan, say)
    warm = [r for t, r in samples.rss if t >= warmup] or [r for _, r in samples.rss]
    committed = sum(counts)
    result = {
        "direction": name,
        "batch_ms": batch_ms,
        "seconds": round(load_seconds, 1),
        "transactions": committed,
        "tps": round(committed / load_seconds, 1),
        "load_errors": len(errors),
        "lag_samples": len(samples.lags),
        "lag_estimated_samples": samples.estimated,
        **_lag_figures("lag", samples.lags),
        **_lag_figures("capture_lag", samples.capture_lags),
        "caught_up_after_s": round(caught_up_after, 1),
        "rss_start_mb": round(warm[0], 1),
        "rss_end_mb": round(warm[-1], 1),
        "rss_growth_pct": round(100 * (warm[-1] - warm[0]) / warm[0], 1) if warm[0] else None,
        "cpu_source_cores": round(cpu[0], 2),
        "cpu_target_cores": round(cpu[1], 2),
        "cpu_sync_cores": round(cpu[2], 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rows_compared": rows_compared,
        "equal": equal,
    }
    if errors:
        say(f"  load errors: {len(errors)}, first: {errors[0]}")
    _say_result(result, warmup, say)
    return result


def _say_result(r: dict[str, Any], warmup: float, say: Say) -> None:
    say(
        f"{r['direction']}: {r['tps']:,} tps for {r['seconds']} s; lag p50 {r['lag_p50']} s, "
        f"p99 {r['lag_p99']} s, max {r['lag_max']} s ({r['lag_samples']} samples, "
        f"{r['lag_estimated_samples']} estimated; capture's p50 {r['capture_lag_p50']} s, "
        f"p99 {r['capture_lag_p99']} s); RSS {r['rss_start_mb']} -> {r['rss_end_mb']} MB "
        f"after {warmup:.0f} s warm-up ({r['rss_growth_pct']} %); CPU source "
        f"{r['cpu_source_cores']}, target {r['cpu_target_cores']}, sync "
        f"{r['cpu_sync_cores']} cores; load average {r['load_average']}; replica "
        f"{'EQUAL' if r['equal'] else 'DIFFERENT'} ({r['rows_compared']:,} rows compared)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--tps", type=float, default=1000.0)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--warmup", type=float, default=None, help="seconds (default: 60 or 1/5)")
    ap.add_argument("--direction", choices=("maria-pg", "pg-maria", "both"), default="both")
    ap.add_argument(
        "--batch-ms", type=int, default=None, help="[apply] batch_ms (default: redoline's)"
    )
    ap.add_argument(
        "--pg-async-commit",
        action="store_true",
        help="PostgreSQL with synchronous_commit=off (the test servers' setting)",
    )
    args = ap.parse_args()
    seconds = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else min(60.0, seconds / 5)
    base = Path(tempfile.mkdtemp(prefix="redoline-soak-"))
    servers: dict[str, devservers.DevServer] = {}

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        servers["mariadb"] = devservers.start_mariadb(base / "mariadb")
        # fsync stays off on this shared disk, but commits are synchronous as on a production
        # server: with synchronous_commit=off PostgreSQL hands a commit to logical decoding
        # only once the WAL writer flushes it (up to 3 x wal_writer_delay = 600 ms later), a
        # delay of the server's setting that every PostgreSQL-source lag figure carried
        pg_settings = {} if args.pg_async_commit else {"synchronous_commit": "on"}
        servers["postgresql"] = devservers.start_postgres(base / "postgres", settings=pg_settings)
        say(f"servers up in {base} ({os.cpu_count()} CPUs)")
        directions = ("maria-pg", "pg-maria") if args.direction == "both" else (args.direction,)
        results = [
            run_direction(
                d,
                servers,
                base,
                seconds=seconds,
                tps=args.tps,
                threads=args.threads,
                warmup=warmup,
                say=say,
                batch_ms=args.batch_ms,
            )
            for d in directions
        ]
        print(json.dumps(results))
        if not all(r["equal"] for r in results):
            raise SystemExit(1)
    finally:
        for server in servers.values():
            devservers.stop(server)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
