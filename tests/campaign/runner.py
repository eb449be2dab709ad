"""Run one schedule against real servers, with the redoline CLI in subprocesses, and judge it.

``Servers`` starts one MariaDB and one PostgreSQL per profile, once per campaign process
(lazily: only the engines a schedule needs). Each schedule gets fresh databases, a fresh
working directory with its own TOML config, trail and state, and unique source/target ids
(the MariaDB checkpoint database ``redoline`` is shared by every schedule on a server).

A schedule fails at the first of: a redoline command that exits other than as documented
(``--until-caught-up`` runs: 0; SIGTERM: 130), a command that hangs, the oracle finding the
sides different after the final ``sync --until-caught-up``, or ``redoline verify``
disagreeing with the oracle (exit 0 iff the oracle says equal, 1 iff it says different).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql

from connectors import devservers
from tests.campaign.oracle import Side, Verdict, compare
from tests.campaign.schedule import Schedule, Step, step_rng
from tests.campaign.workload import Col, Model, Source, Table, initial_model

__all__ = ["Outcome", "Servers", "run_schedule"]

#: seconds an --until-caught-up command may take before the schedule counts it as hung
CLI_TIMEOUT = 180.0
#: final_follow: the trail must stay unchanged this long (capture may lag the last commit)
QUIET_SECONDS = 3.0


class Servers:
    """One server per (engine, profile), started on first use, stopped by ``close``.

    ``provide(engine, profile)`` may hand out servers someone else owns (pytest's session
    fixtures): those are used, restarted in place, and left running by ``close``.
    """

    def __init__(
        self,
        base: Path,
        provide: Callable[[str, str], devservers.DevServer] | None = None,
    ) -> None:
        self.base = base
        self.provide = provide
        self.running: dict[tuple[str, str], devservers.DevServer] = {}
        self.owned: set[tuple[str, str]] = set()

    def get(self, engine: str, profile: str) -> devservers.DevServer:
        key = (engine, profile)
        server = self.running.get(key)
        if server is None and self.provide is not None:
            server = self.running[key] = self.provide(engine, profile)
        if server is None or not server.alive():
            where = self.base / f"{engine}-{profile}"
            port = server.port if server is not None else None  # a dead one comes back there
            if engine == "mariadb":
                fresh = devservers.start_mariadb(where, profile=profile, port=port)
            else:
                fresh = devservers.start_postgres(where, profile=profile, port=port)
            if server is None:
                self.owned.add(key)
                server = self.running[key] = fresh
            else:
                vars(server).update(vars(fresh))
        return server

    def restart(self, engine: str, profile: str) -> None:
        server = self.get(engine, profile)
        # in place: whoever else holds this DevServer (a fixture's teardown) sees the new pid
        vars(server).update(vars(devservers.restart(server)))

    def close(self) -> None:
        for key, server in self.running.items():
            if key in self.owned:
                devservers.stop(server)
        self.running.clear()
        self.owned.clear()


@dataclass
class Outcome:
    schedule: Schedule
    ok: bool = True
    failed_step: int | None = None
    failure: str = ""
    #: "command" | "hang" | "oracle" | "verify-disagrees" | "harness"
    category: str = ""
    log: list[str] = field(default_factory=list)
    seconds: float = 0.0
    verdict: Verdict | None = None

    def report(self) -> str:
        head = "PASS" if self.ok else f"FAIL ({self.category})"
        lines = [f"{head} {self.schedule.describe()}"]
        if not self.ok:
            where = f"at step {self.failed_step}" if self.failed_step is not None else ""
            lines.append(f"failure {where}: {self.failure}")
            lines.append("step log:")
            lines += [f"    {x}" for x in self.log]
        return "\n".join(lines)


class _Fail(Exception):
    def __init__(self, category: str, message: str) -> None:
        super().__init__(message)
        self.category = category


@dataclass
class _Run:
    schedule: Schedule
    servers: Servers
    workdir: Path
    model: Model
    source: Source
    src_side: Side
    tgt_side: Side
    config: Path
    log: list[str]
    tag: str
    #: the continuous sync started by daemon_start, running until the final step
    daemon: subprocess.Popen[bytes] | None = None
    #: a `sync --until-caught-up` has succeeded: every selected table is loaded on the target
    loaded: bool = False

    # ------------------------------------------------------------- CLI

    def cli_cmd(self, *args: str, quiet: bool = True) -> list[str]:
        return [
            sys.executable,
            "-c",
            "from toolkit_cli.app import main; main()",
            *(["-q"] if quiet else []),
            *args,
            "-c",
            str(self.config),
        ]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDOLINE_")}
        env["NO_COLOR"] = "1"
        env["PYTHONUNBUFFERED"] = "1"  # the logs of background runs are read while they run
        env["COLUMNS"] = "200"
        return env

    def cli(self, *args: str, expect: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        t0 = time.monotonic()
        try:
            res = subprocess.run(
                self.cli_cmd(*args),
                capture_output=True,
                text=True,
                timeout=CLI_TIMEOUT,
                cwd=self.workdir,
                env=self.env(),
            )
        except subprocess.TimeoutExpired as exc:
            raise _Fail(
                "hang", f"redoline {' '.join(args)} still running after {CLI_TIMEOUT:g} s"
            ) from exc
        self.log.append(
            f"redoline {' '.join(args)} -> {res.returncode} ({time.monotonic() - t0:.1f} s)"
        )
        if res.returncode not in expect:
            raise _Fail(
                "command",
                f"redoline {' '.join(args)} exited {res.returncode} (expected {expect}):\n"
                + _tail(res.stdout + res.stderr),
            )
        return res

    # ------------------------------------------------------------- steps

    def step(self, index: int, step: Step) -> None:
        rng = step_rng(self.schedule.seed, index)
        handler = getattr(self, "do_" + step.kind)
        handler(rng, step)

    def do_final_sync(self, rng: random.Random, step: Step) -> None:
        self.cli("sync", "--until-caught-up")

    def do_final_follow(self, rng: random.Random, step: Step) -> None:
        """Continuous sync until the target has applied the trail's last operation and the trail
        stopped growing for QUIET_SECONDS, then SIGTERM (up to three rounds: a round that stops
        before it applied everything is followed by another, which is then a rerun)."""
        log_path = self.workdir / "sync-follow.log"
        trail_op = 0
        for _ in range(3):
            out = open(log_path, "a")  # noqa: SIM115 - closed below
            if self.daemon is not None:
                proc, self.daemon = self.daemon, None
            else:
                proc = subprocess.Popen(
                    self.cli_cmd("sync", quiet=False),
                    cwd=self.workdir,
                    env=self.env(),
                    stdout=out,
                    stderr=out,
                )
            try:
                deadline = time.monotonic() + CLI_TIMEOUT
                last, since = -1, time.monotonic()
                while time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(1.0)
                    trail_op = self.trail_last_op()
                    if trail_op != last:
                        last, since = trail_op, time.monotonic()
                        continue
                    # the trail (not status: it does not see into the open segment) is quiet,
                    # and the target applied all of it (DuckDB is locked: apply's own log)
                    if (
                        time.monotonic() - since >= QUIET_SECONDS
                        and self.applied_now(log_path) >= trail_op
                    ):
                        break
                if proc.poll() is not None:
                    raise _Fail(
                        "command",
                        f"continuous redoline sync exited {proc.returncode} on its own:\n"
                        + _tail(log_path.read_text(errors="replace")),
                    )
                proc.send_signal(signal.SIGTERM)
                rc = proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                out.close()
            trail_op = self.trail_last_op()
            applied = self.applied_op()
            self.log.append(
                f"redoline sync (follow) -> {rc}; trail op {trail_op}, applied op {applied}"
            )
            if rc != 130:
                raise _Fail("command", f"continuous redoline sync exited {rc} on SIGTERM")
            if applied >= trail_op:
                return
        raise _Fail("hang", f"continuous sync never applied the trail's end (op {trail_op})")

    def trail_last_op(self) -> int:
        res = subprocess.run(
            self.cli_cmd("trail", "stats", "--json", "--trail", str(self.workdir / "trail")),
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env=self.env(),
        )
        try:
            return int(json.loads(res.stdout).get("last_op") or 0)
        except (ValueError, AttributeError):
            return 0

    def applied_now(self, log_path: Path) -> int:
        if self.tgt_side.engine != "duckdb":
            return self.applied_op()
        found = re.findall(r"applied through operation (\d+)", log_path.read_text(errors="replace"))
        return max((int(x) for x in found), default=0)

    def applied_op(self) -> int:
        """The target's checkpoint (docs/apply.md: redoline.redoline_checkpoint)."""
        side, sid, tid = self.tgt_side, f"{self.tag}_s", f"{self.tag}_t"
        sql = (
            "SELECT coalesce(max(applied_op), 0) FROM redoline.redoline_checkpoint "
            "WHERE source_id = {p} AND target_id = {p}"
        )
        try:
            if side.engine == "mariadb":
                conn = pymysql.connect(host=side.host, port=side.port, user="root")
                try:
                    with conn.cursor() as cur:
                        cur.execute(sql.format(p="%s"), (sid, tid))
                        return int(cur.fetchone()[0])  # type: ignore[index]
                finally:
                    conn.close()
            if side.engine == "postgresql":
                with psycopg.connect(
                    host=side.host, port=side.port, user="postgres", dbname=side.database
                ) as pconn:
                    row = pconn.execute(sql.format(p="%s"), (sid, tid)).fetchone()
                    return int(row[0]) if row else 0
            with duckdb.connect(side.database, read_only=True) as dconn:
                drow = dconn.execute(sql.format(p="?"), [sid, tid]).fetchone()
                return int(drow[0]) if drow else 0
        except (pymysql.Error, psycopg.Error, duckdb.Error):
            return 0

    def do_daemon_start(self, rng: random.Random, step: Step) -> None:
        out = open(self.workdir / "sync-follow.log", "a")  # noqa: SIM115 - child keeps it
        self.daemon = subprocess.Popen(
            self.cli_cmd("sync", quiet=False),
            cwd=self.workdir,
            env=self.env(),
            stdout=out,
            stderr=out,
        )
        out.close()
        if "ddl_during_snapshot" in self.model.off:
            # apply's first log line comes after the snapshot: wait for it before any step
            deadline = time.monotonic() + CLI_TIMEOUT
            log = self.workdir / "sync-follow.log"
            while "redoline.apply:" not in log.read_text(errors="replace"):
                self.check_daemon()
                if time.monotonic() > deadline:
                    raise _Fail("hang", "the continuous sync's snapshot did not finish")
                time.sleep(0.2)
        else:
            time.sleep(rng.uniform(0.0, 3.0))
        self.log.append("started a continuous redoline sync (runs until the final step)")

    def check_daemon(self) -> None:
        if self.daemon is not None and self.daemon.poll() is not None:
            raise _Fail(
                "command",
                f"continuous redoline sync exited {self.daemon.returncode} on its own:\n"
                + _tail((self.workdir / "sync-follow.log").read_text(errors="replace")),
            )

    def do_sync_once(self, rng: random.Random, step: Step) -> None:
        self.cli("sync", "--until-caught-up")
        self.loaded = True

    def do_capture_apply(self, rng: random.Random, step: Step) -> None:
        self.cli("capture", "--until-caught-up")
        if self.loaded:
            self.cli("apply", "--until-caught-up")
            return
        # before any snapshot finished, the target holds only rows changed since capture
        # started (docs/snapshot-and-sync.md, "Stage by stage"): apply stops loudly at a change
        # of an older row, or at a snapshot that did not finish; a later sync loads the tables
        res = self.cli("apply", "--until-caught-up", expect=(0, 6))
        loud = ("is not in", "did not finish")
        if res.returncode == 6 and not any(text in res.stderr for text in loud):
            raise _Fail(
                "command",
                "redoline apply --until-caught-up exited 6 before any snapshot, but not for a "
                "row or snapshot it lacks:\n" + _tail(res.stdout + res.stderr),
            )

    def do_capture_only(self, rng: random.Random, step: Step) -> None:
        self.cli("capture", "--until-caught-up")

    def do_sync_kill9(self, rng: random.Random, step: Step) -> None:
        self._background_sync(rng, signal.SIGKILL)

    def do_sync_term(self, rng: random.Random, step: Step) -> None:
        self._background_sync(rng, signal.SIGTERM)

    def _background_sync(self, rng: random.Random, sig: signal.Signals) -> None:
        out = open(self.workdir / "sync-bg.log", "a")  # noqa: SIM115 - closed below
        t0 = time.monotonic()
        proc = subprocess.Popen(
            self.cli_cmd("sync"), cwd=self.workdir, env=self.env(), stdout=out, stderr=out
        )
        try:
            # startup and snapshot take seconds: the kill lands anywhere from startup to tailing
            time.sleep(rng.uniform(0.0, 2.0))
            self._burst(rng)
            time.sleep(rng.uniform(0.0, 4.0))
            alive_at_signal = proc.poll() is None
            sent = time.monotonic() - t0
            proc.send_signal(sig)
            try:
                rc = proc.wait(timeout=60)
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                proc.wait()
                raise _Fail("hang", f"sync did not stop within 60 s of {sig.name}") from exc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
        self.log.append(f"redoline sync (continuous) + {sig.name} at {sent:.1f} s -> {rc}")
        if not alive_at_signal:
            raise _Fail(
                "command",
                f"continuous redoline sync exited {rc} on its own before {sig.name}:\n"
                + _tail((self.workdir / "sync-bg.log").read_text(errors="replace")),
            )
        # Python's default SIGTERM action applies until the CLI installs its handler (startup)
        if sig == signal.SIGTERM and rc != 130 and not (rc == -signal.SIGTERM and sent < 1.0):
            raise _Fail(
                "command",
                f"continuous redoline sync exited {rc} on SIGTERM (documented: 130):\n"
                + _tail((self.workdir / "sync-bg.log").read_text(errors="replace")),
            )

    def do_idle(self, rng: random.Random, step: Step) -> None:
        time.sleep(step.arg * 0.15)

    def do_burst(self, rng: random.Random, step: Step) -> None:
        self._burst(rng)

    def _burst(self, rng: random.Random) -> None:
        m, src = self.model, self.source
        keyed = [t for t in m.tables.values() if t.key is not None]
        keyless = [t for t in m.tables.values() if t.key is None]
        with src.connect() as cur:
            for _ in range(rng.randint(2, 6)):
                cur.execute("BEGIN")
                for _ in range(rng.randint(1, 6)):
                    roll = rng.random()
                    if keyless and roll < 0.2:
                        t = rng.choice(keyless)
                        sub = rng.random()
                        if sub < 0.5:
                            src.insert_copies(cur, m, t, rng, rng.randint(1, 3))
                        elif sub < 0.75:
                            src.update(cur, m, t, rng)
                        else:
                            src.delete(cur, t, rng)
                        continue
                    t = rng.choice(keyed)
                    if roll < 0.55:
                        src.insert(cur, m, t, rng)
                    elif roll < 0.75:
                        src.update(cur, m, t, rng)
                    elif roll < 0.85:
                        src.change_key(cur, t, rng)
                    else:
                        src.delete(cur, t, rng)
                cur.execute("ROLLBACK" if rng.random() < 0.2 else "COMMIT")

    def do_edge_values(self, rng: random.Random, step: Step) -> None:
        m, src = self.model, self.source
        with src.connect() as cur:
            for t in m.tables.values():
                if t.key is None:
                    continue
                for _ in range(rng.randint(1, 3)):
                    src.insert(cur, m, t, rng, edge=True)

    def do_large_txn(self, rng: random.Random, step: Step) -> None:
        m, src = self.model, self.source
        t = m.tables["kinds"]
        n = rng.randint(150, 400)
        first = t.next_id
        with src.connect() as cur:
            cur.execute("BEGIN")
            for _ in range(n):
                src.insert(cur, m, t, rng)
            col = src.q(
                next(
                    c.name
                    for c in t.cols
                    if c.kind in ("int", "smallint", "tinyint") and c.name != t.key
                )
            )
            key = src.q("id")
            cur.execute(
                f"UPDATE {src.q('kinds')} SET {col} = NULL WHERE {key} BETWEEN %s AND %s",
                [first, first + n // 2],
            )
            cur.execute("COMMIT")
        self.log.append(f"large transaction: {n} inserts into kinds, then updates of half")

    def do_truncate(self, rng: random.Random, step: Step) -> None:
        names = [n for n in self.model.tables if n != "kinds"]
        if "reserved_word_truncate" in self.model.off:
            names.remove("select")
        name = rng.choice(names)
        with self.source.connect() as cur:
            self.source.truncate(cur, self.model.tables[name])
        self.log.append(f"truncated {name}")

    # ------------------------------------------------------------- DDL

    def _col_table(self, rng: random.Random) -> Table:
        return self.model.tables[rng.choice(["evo", "select"])]

    def do_ddl_add_column(self, rng: random.Random, step: Step) -> None:
        t = self._col_table(rng)
        n = self.model.fresh()
        name = rng.choice([f"c{n}", f"größe{n}", f"from{n}"])
        kind = rng.choice(["int", "str", "dec2", "datetime"])
        maria = self.model.engine == "mariadb"
        sql = {
            "int": "INT" if maria else "integer",
            "str": "VARCHAR(20)" if maria else "varchar(20)",
            "dec2": "DECIMAL(8,2)" if maria else "numeric(8,2)",
            "datetime": "DATETIME(6)" if maria else "timestamp(6)",
        }[kind]
        latin1 = maria and not self.model.utf8_tables and kind == "str"
        q = self.source.q
        with self.source.connect() as cur:
            cur.execute(f"ALTER TABLE {q(t.name)} ADD COLUMN {q(name)} {sql}")
            t.cols.append(Col(name, kind, sql, latin1=latin1))
            # give the new column values on existing rows
            for _ in range(3):
                self.source.update(cur, self.model, t, rng)
        self.log.append(f"added column {t.name}.{name} {sql}")

    def do_ddl_drop_column(self, rng: random.Random, step: Step) -> None:
        t = self._col_table(rng)
        if len(t.non_key) < 2:
            self.log.append(f"drop column: {t.name} has too few columns, nothing dropped")
            return
        c = rng.choice(t.non_key)
        with self.source.connect() as cur:
            cur.execute(f"ALTER TABLE {self.source.q(t.name)} DROP COLUMN {self.source.q(c.name)}")
        t.cols.remove(c)
        self.log.append(f"dropped column {t.name}.{c.name}")

    def do_ddl_rename_column(self, rng: random.Random, step: Step) -> None:
        self._rename_column(rng, change=False)

    def do_ddl_change_column(self, rng: random.Random, step: Step) -> None:
        self._rename_column(rng, change=True)

    def _rename_column(self, rng: random.Random, *, change: bool) -> None:
        t = self._col_table(rng)
        if not t.non_key:
            return
        c = rng.choice(t.non_key)
        new = f"{c.name.rstrip('0123456789_r')}_r{self.model.fresh()}"
        q = self.source.q
        if change:
            sql = f"ALTER TABLE {q(t.name)} CHANGE COLUMN {q(c.name)} {q(new)} {c.sql}"
        else:
            sql = f"ALTER TABLE {q(t.name)} RENAME COLUMN {q(c.name)} TO {q(new)}"
        with self.source.connect() as cur:
            cur.execute(sql)
            self.log.append(f"{sql}")
            c.name = new
            for _ in range(2):
                self.source.update(cur, self.model, t, rng)

    def do_ddl_create_table(self, rng: random.Random, step: Step) -> None:
        self._create_table(rng)

    def _create_table(self, rng: random.Random) -> Table:
        maria = self.model.engine == "mariadb"
        name = rng.choice(["new", "tbl", "ünï", "table"]) + str(self.model.fresh())
        latin1 = maria and not self.model.utf8_tables
        t = Table(
            name,
            [
                Col("id", "int", "INT NOT NULL PRIMARY KEY" if maria else "integer PRIMARY KEY"),
                Col("v", "str", "VARCHAR(20)" if maria else "varchar(20)", latin1=latin1),
                Col("w", "dec2", "DECIMAL(8,2)" if maria else "numeric(8,2)"),
            ],
            "id",
        )
        with self.source.connect() as cur:
            self.source.create_table(cur, t, self.model)
            self.model.tables[name] = t
            self.model.created.append(name)
            for _ in range(rng.randint(1, 5)):
                self.source.insert(cur, self.model, t, rng)
        self.log.append(f"created table {name}")
        return t

    def _created(self, rng: random.Random) -> Table:
        alive = [n for n in self.model.created if n in self.model.tables]
        if alive:
            return self.model.tables[rng.choice(alive)]
        return self._create_table(rng)

    def do_ddl_drop_table(self, rng: random.Random, step: Step) -> None:
        t = self._created(rng)
        with self.source.connect() as cur:
            cur.execute(f"DROP TABLE {self.source.q(t.name)}")
        del self.model.tables[t.name]
        self.log.append(f"dropped table {t.name}")

    def do_ddl_rename_table(self, rng: random.Random, step: Step) -> None:
        t = self._created(rng)
        new = f"{t.name}_r{self.model.fresh()}"
        q = self.source.q
        with self.source.connect() as cur:
            if self.model.engine == "mariadb":
                cur.execute(f"RENAME TABLE {q(t.name)} TO {q(new)}")
            else:
                cur.execute(f"ALTER TABLE {q(t.name)} RENAME TO {q(new)}")
            del self.model.tables[t.name]
            t.name = new
            self.model.tables[new] = t
            self.model.created.append(new)
            self.source.insert(cur, self.model, t, rng)
        self.log.append(f"renamed table to {new}")

    # ------------------------------------------------------------- restarts

    def do_restart_source(self, rng: random.Random, step: Step) -> None:
        self.servers.restart(self.schedule.source, self.schedule.profile)
        self.log.append(f"restarted the source server ({self.schedule.source})")

    def do_restart_target(self, rng: random.Random, step: Step) -> None:
        self.servers.restart(self.schedule.target, self.schedule.profile)
        self.log.append(f"restarted the target server ({self.schedule.target})")


#: source column kinds whose verify differences are a known open bug (KNOWN_OPEN name)
_VERIFY_FALSE_KINDS = {
    "verify_type_diffs": {"duration", "time", "interval", "json", "intarr", "textarr", "char"}
}


def _known_false_diffs(report: Path, model: Model, log: list[str]) -> bool:
    """True when every difference verify reported is a "different" row whose columns all
    have a kind excluded as a known verify bug (and the oracle already said equal)."""
    kinds: set[str] = set()
    for name, ks in _VERIFY_FALSE_KINDS.items():
        if name in model.off:
            kinds |= ks
    if not kinds or not report.exists():
        return False
    col_kinds = {(t.name, c.name): c.kind for t in model.tables.values() for c in t.cols}
    n = 0
    for table in json.loads(report.read_text())["tables"]:
        if table.get("error") or table.get("truncated"):
            return False
        name = table["source_table"].split(".", 1)[1]
        for d in table["diffs"]:
            if d["kind"] != "different":
                return False
            if any(col_kinds.get((name, c)) not in kinds for c in d["columns"]):
                return False
            n += 1
    log.append(f"verify: {n} false differences in {sorted(kinds)} columns tolerated (KNOWN_OPEN)")
    return True


def _tail(text: str, n: int = 1500) -> str:
    text = text.strip()
    return ("…" + text[-n:]) if len(text) > n else text


# --------------------------------------------------------------------------- setup / cleanup

_serial = iter(range(1, 10**9))


def _admin_mariadb(server: devservers.DevServer, sql: str) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _admin_pg(server: devservers.DevServer, *sql: str, db: str = "postgres") -> None:
    with psycopg.connect(
        host="127.0.0.1", port=server.port, user="postgres", dbname=db, autocommit=True
    ) as conn:
        for s in sql:
            conn.execute(s)


def _drop_pg_database(server: devservers.DevServer, name: str) -> None:
    deadline = time.monotonic() + 30
    with psycopg.connect(
        host="127.0.0.1", port=server.port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        while True:
            slots = conn.execute(
                "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s",
                (name,),
            ).fetchall()
            try:
                for slot, pid in slots:
                    if pid:
                        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                        time.sleep(0.2)
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                break
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_schedule(
    schedule: Schedule,
    servers: Servers,
    workroot: Path,
    *,
    keep: bool = False,
    tamper: Callable[[Side], None] | None = None,
) -> Outcome:
    """Run ``schedule`` end to end and judge it (never raises for a replication failure).

    ``tamper(target side)`` runs just before the judgement: the self-test of the judges."""
    t0 = time.monotonic()
    outcome = Outcome(schedule=schedule)
    tag = f"c{os.getpid() % 10000}_{next(_serial)}"
    workdir = workroot / f"{tag}-{schedule.pair}-{schedule.profile}-{schedule.seed}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    source_engine, target_engine = schedule.source, schedule.target
    profile = schedule.profile
    src_server = servers.get(source_engine, profile)
    tgt_server = servers.get(target_engine, profile) if target_engine != "duckdb" else None
    src_db = f"{tag}_src"
    tgt_db = f"{tag}_dst"
    cleanups: list[Any] = []
    run: _Run | None = None
    try:
        # ---- fresh databases
        if source_engine == "mariadb":
            _admin_mariadb(src_server, f"CREATE DATABASE `{src_db}`")
            cleanups.append(
                lambda: _admin_mariadb(
                    servers.get("mariadb", profile), f"DROP DATABASE IF EXISTS `{src_db}`"
                )
            )
            src_side = Side("mariadb", port=src_server.port, database=src_db, schema=src_db)
            src_schema = src_db
        else:
            _admin_pg(src_server, f'CREATE DATABASE "{src_db}"')
            cleanups.append(lambda: _drop_pg_database(servers.get("postgresql", profile), src_db))
            src_side = Side("postgresql", port=src_server.port, database=src_db, schema="public")
            src_schema = "public"
        rename = ""
        if target_engine == "mariadb":
            assert tgt_server is not None
            # the known-open workaround a DBA would use: a utf8mb4 target database
            charset = (
                " CHARACTER SET utf8mb4" if "stock_target_charset" in schedule.excluded else ""
            )
            _admin_mariadb(tgt_server, f"CREATE DATABASE `{tgt_db}`{charset}")
            cleanups.append(
                lambda: _admin_mariadb(
                    servers.get("mariadb", profile), f"DROP DATABASE IF EXISTS `{tgt_db}`"
                )
            )
            tgt_url = f"mariadb://root@127.0.0.1:{tgt_server.port}/{tgt_db}"
            tgt_side = Side("mariadb", port=tgt_server.port, database=tgt_db, schema=tgt_db)
            rename = f'"{src_schema}" = "{tgt_db}"'
        elif target_engine == "postgresql":
            assert tgt_server is not None
            _admin_pg(tgt_server, f'CREATE DATABASE "{tgt_db}"')
            cleanups.append(lambda: _drop_pg_database(servers.get("postgresql", profile), tgt_db))
            tgt_url = f"postgresql://postgres@127.0.0.1:{tgt_server.port}/{tgt_db}"
            tgt_side = Side("postgresql", port=tgt_server.port, database=tgt_db, schema=src_schema)
        else:
            path = workdir / "target.duckdb"
            tgt_url = f"duckdb://{path}"
            tgt_side = Side("duckdb", database=str(path), schema=src_schema)
        if source_engine == "mariadb":
            src_url = f"mariadb://root@127.0.0.1:{src_server.port}/{src_db}"
        else:
            src_url = f"postgresql://postgres@127.0.0.1:{src_server.port}/{src_db}"
        config = workdir / "redoline.toml"
        config.write_text(
            "\n".join(
                [
                    "[source]",
                    f'url = "{src_url}"',
                    f'id = "{tag}_s"',
                    "[target]",
                    f'url = "{tgt_url}"',
                    f'id = "{tag}_t"',
                    "[trail]",
                    f'dir = "{workdir / "trail"}"',
                    "[state]",
                    f'dir = "{workdir / "state"}"',
                    "[tables]",
                    f'include = ["{src_schema}.*"]',
                    *([f"rename = {{ {rename} }}"] if rename else []),
                    "[verify]",
                    "recheck_wait = 0",
                    "",
                ]
            )
        )
        model = initial_model(
            source_engine, target_engine, profile, off=frozenset(schedule.excluded)
        )
        source = Source(source_engine, "127.0.0.1", src_server.port, src_db)
        run = _Run(
            schedule, servers, workdir, model, source, src_side, tgt_side, config, outcome.log, tag
        )
        # ---- initial schema and rows (before any redoline command: the snapshot's job)
        source.create_initial(model)
        run._burst(step_rng(schedule.seed, -1))
        for index, step in enumerate(schedule.steps):
            outcome.failed_step = index
            try:
                run.step(index, step)
                run.check_daemon()
            except _Fail:
                raise
            except Exception as exc:  # a workload statement the source refused, etc.
                raise _Fail(
                    "harness",
                    f"{step}: {type(exc).__name__}: {exc}\n" + _tail(traceback.format_exc()),
                ) from exc
        outcome.failed_step = None
        # ---- judge
        if tamper is not None:
            tamper(tgt_side)
        verdict = compare(model, src_side, tgt_side)
        outcome.verdict = verdict
        report = workdir / "verify.json"
        res = subprocess.run(
            run.cli_cmd("verify", "--no-recheck", "--report-json", str(report)),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            cwd=workdir,
            env=run.env(),
        )
        outcome.log.append(f"redoline verify -> {res.returncode}")
        if not verdict.equal:
            if res.returncode == 0:
                raise _Fail(
                    "oracle+verify-missed",
                    verdict.summary() + "\nredoline verify exited 0: it missed these differences",
                )
            raise _Fail(
                "oracle", verdict.summary() + f"\n(redoline verify exited {res.returncode})"
            )
        if verdict.target_extras:
            # verify reports a column only the target has too (schema_diffs)
            category = "oracle" if res.returncode != 0 else "oracle+verify-missed"
            raise _Fail(category, "target holds what the source does not:\n" + verdict.summary())
        if res.returncode == 1 and _known_false_diffs(report, model, outcome.log):
            pass
        elif res.returncode != 0:
            raise _Fail(
                "verify-disagrees",
                f"the oracle says equal ({verdict.rows_compared} rows) but redoline verify "
                f"exited {res.returncode}:\n" + _tail(res.stdout + res.stderr),
            )
    except _Fail as exc:
        outcome.ok = False
        outcome.category = exc.category
        outcome.failure = str(exc)
    except Exception as exc:
        outcome.ok = False
        outcome.category = "harness"
        outcome.failure = f"{type(exc).__name__}: {exc}\n" + _tail(traceback.format_exc())
    finally:
        if run is not None and run.daemon is not None and run.daemon.poll() is None:
            run.daemon.kill()
            run.daemon.wait()
        # a replay (keep) leaves a failed run's databases in place for a look
        for fn in reversed(cleanups if outcome.ok or not keep else []):
            try:
                fn()
            except Exception as exc:  # cleanup must not hide the verdict
                outcome.log.append(f"cleanup: {type(exc).__name__}: {exc}")
        if outcome.ok and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        outcome.seconds = time.monotonic() - t0
    if not outcome.ok:
        outcome.log.append(f"work directory kept: {workdir}")
    return outcome
