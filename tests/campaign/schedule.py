"""Schedules: a seed, a pair and a profile give the same list of steps every time.

Pure and deterministic (no clock, no I/O): ``generate(seed, pair, profile)`` is what
``--replay`` calls, and ``Schedule.describe()`` prints what a run did so a failure can be read
without the code. The runner derives every random value a step needs (row values, delays, kill
moments) from ``step_rng(seed, index)``, so a replay repeats the same workload too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = [
    "DOCUMENTED_LIMITS",
    "FEATURES",
    "KINDS",
    "PAIRS",
    "Schedule",
    "Step",
    "generate",
    "step_rng",
]

#: source -> target; "mariadb" and "postgresql" are servers, "duckdb" a file
PAIRS: dict[str, tuple[str, str]] = {
    "mariadb-postgresql": ("mariadb", "postgresql"),
    "mariadb-duckdb": ("mariadb", "duckdb"),
    "mariadb-mariadb": ("mariadb", "mariadb"),
    "postgresql-mariadb": ("postgresql", "mariadb"),
    "postgresql-duckdb": ("postgresql", "duckdb"),
    "postgresql-postgresql": ("postgresql", "postgresql"),
}

#: step kind -> what it does (weights below; the runner implements each)
KINDS: dict[str, str] = {
    "burst": "transactions of inserts, updates, deletes, key changes, keyless duplicates, "
    "and rolled-back transactions",
    "edge_values": "rows holding every column kind's empty and boundary values",
    "large_txn": "one large transaction (inserts, then updates of what it inserted)",
    "truncate": "TRUNCATE of a table (sometimes one named by a reserved word)",
    "idle": "an idle gap with nothing running",
    "sync_once": "redoline sync --until-caught-up (a cron run)",
    "sync_kill9": "continuous redoline sync while a burst runs, ended by kill -9",
    "sync_term": "continuous redoline sync while a burst runs, ended by SIGTERM (exit 130)",
    "capture_apply": "redoline capture --until-caught-up, then redoline apply --until-caught-up",
    "capture_only": "redoline capture --until-caught-up alone (apply comes later)",
    "daemon_start": "start one continuous redoline sync that runs through every later step "
    "(schedules without a second run: see the 'rerun' feature)",
    "ddl_add_column": "ALTER TABLE ... ADD COLUMN",
    "ddl_drop_column": "ALTER TABLE ... DROP COLUMN",
    "ddl_rename_column": "ALTER TABLE ... RENAME COLUMN",
    "ddl_change_column": "MariaDB ALTER TABLE ... CHANGE COLUMN old new type",
    "ddl_create_table": "CREATE TABLE, then rows in it",
    "ddl_drop_table": "DROP TABLE of a table the schedule created",
    "ddl_rename_table": "RENAME TABLE of a table the schedule created",
    "restart_source": "stop and start the source server",
    "restart_target": "stop and start the target server",
    # the last step, always: one or the other
    "final_sync": "last step: redoline sync --until-caught-up",
    "final_follow": "last step (when final_sync is excluded): continuous redoline sync until "
    "the target's checkpoint reaches the trail's end, then SIGTERM",
}

#: value features the workload can leave out (named in an exclusion like step kinds)
FEATURES: dict[str, str] = {
    "latin1_nonascii": "non-ASCII text in latin1 columns (stock MariaDB)",
    "empty_bytes": "empty binary values (b'')",
    "char_trailing_space": "CHAR values with trailing spaces",
    "reserved_word_truncate": "TRUNCATE of a table named by a reserved word",
    "rerun": "a second redoline run on the same trail and state; without it a schedule runs "
    "one continuous sync (daemon_start) through all its steps, then the final step",
    "ddl_during_snapshot": "steps while a continuous sync's snapshot is still running (without "
    "it, daemon_start waits for the snapshot to finish)",
    "verify_type_diffs": "verify differences in MySQL TIME, time, interval, JSON, array and "
    "CHAR columns (when excluded, verify reporting only those while the oracle says equal is "
    "tolerated)",
    "stock_target_charset": "MariaDB target databases in the server's default character set "
    "(when excluded, the harness creates them CHARACTER SET utf8mb4)",
    "interval_text": "PostgreSQL intervals on MySQL targets only in docs/apply.md's text form "
    "(when excluded, the oracle also accepts PostgreSQL's own interval text)",
    "latin1_tables": "tables in the stock MariaDB's latin1 default (without it, stock-profile "
    "tables declare utf8mb4)",
}

_WEIGHTS: dict[str, int] = {
    "burst": 10,
    "edge_values": 3,
    "large_txn": 2,
    "truncate": 1,
    "idle": 2,
    "sync_once": 6,
    "sync_kill9": 3,
    "sync_term": 3,
    "capture_apply": 4,
    "capture_only": 2,
    "ddl_add_column": 2,
    "ddl_drop_column": 2,
    "ddl_rename_column": 2,
    "ddl_change_column": 1,
    "ddl_create_table": 2,
    "ddl_drop_table": 1,
    "ddl_rename_table": 1,
    "restart_source": 1,
    "restart_target": 1,
    "daemon_start": 0,  # placed by generate() when "rerun" is excluded
}

#: what redoline documents it does not do, so a schedule never asks for it (not a bug list:
#: see KNOWN_OPEN in test_campaign.py for those). (source engine, kind) -> the document.
DOCUMENTED_LIMITS: dict[tuple[str, str], str] = {
    ("postgresql", "ddl_drop_table"): "docs/capture-postgres.md: pgoutput carries no DDL text",
    ("postgresql", "ddl_rename_table"): "docs/capture-postgres.md: pgoutput carries no DDL text",
    ("postgresql", "ddl_change_column"): "CHANGE COLUMN is MariaDB syntax",
}


@dataclass(frozen=True)
class Step:
    kind: str
    #: small, printable parameters decided at generation (the rest comes from step_rng)
    arg: int = 0

    def __str__(self) -> str:
        return f"{self.kind}({self.arg})" if self.arg else self.kind


@dataclass
class Schedule:
    seed: int
    pair: str
    profile: str
    steps: list[Step] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return PAIRS[self.pair][0]

    @property
    def target(self) -> str:
        return PAIRS[self.pair][1]

    def describe(self) -> str:
        lines = [f"seed {self.seed} pair {self.pair} profile {self.profile}:"]
        lines += [f"  {i:2d}. {step}" for i, step in enumerate(self.steps)]
        lines.append(f"  replay: python -m tests.campaign {self.replay_args()}")
        return "\n".join(lines)

    def replay_args(self) -> str:
        args = f"--replay {self.seed} --pair {self.pair} --profile {self.profile}"
        args += f" --steps {len(self.steps) - 1}"
        for kind in sorted(self.excluded):
            args += f" --exclude {kind}"
        return args


def step_rng(seed: int, index: int) -> random.Random:
    """The random source of step ``index`` of schedule ``seed`` (independent of other steps)."""
    return random.Random(seed * 1_000_003 + index * 7919 + 17)


def _default_length(seed: int, *, small: bool) -> int:
    rng = random.Random(seed ^ 0x5EED)
    return rng.randint(3, 5) if small else rng.randint(6, 12)


def allowed_kinds(pair: str, exclude: dict[str, str]) -> dict[str, int]:
    source, target = PAIRS[pair]
    kinds = {}
    unknown = {x.split(":")[-1] for x in exclude} - set(KINDS) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown step kinds or features to exclude: {sorted(unknown)}")
    runners = {"sync_once", "sync_kill9", "sync_term", "capture_apply", "capture_only"}
    for kind, weight in _WEIGHTS.items():
        if "rerun" in exclude and kind in runners:
            continue
        if f"{source}:{kind}" in exclude:  # an exclusion for one source engine
            continue
        if weight == 0 or kind in exclude or (source, kind) in DOCUMENTED_LIMITS:
            continue
        if kind == "restart_target" and target == "duckdb":
            continue  # a file: nothing to restart
        kinds[kind] = weight
    return kinds


def generate(
    seed: int,
    pair: str,
    profile: str,
    *,
    steps: int | None = None,
    small: bool = False,
    exclude: dict[str, str] | None = None,
) -> Schedule:
    """The schedule of ``seed``: random steps, then a final ``sync --until-caught-up``.

    ``exclude`` (kind -> why) removes step kinds; the reason travels with the schedule so it
    is printed. The first step that runs a redoline command is placed among the first three
    so most of a schedule happens with replication already started.
    """
    if pair not in PAIRS:
        raise ValueError(f"unknown pair {pair!r}; known: {', '.join(PAIRS)}")
    exclude = dict(exclude or {})
    kinds = allowed_kinds(pair, exclude)
    rng = random.Random(seed)
    n = steps if steps is not None else _default_length(seed, small=small)
    names = sorted(kinds)
    weights = [kinds[k] for k in names]
    out: list[Step] = []
    for _ in range(n):
        kind = rng.choices(names, weights)[0]
        out.append(Step(kind, rng.randint(1, 9) if kind == "idle" else 0))
    runners = {"sync_once", "sync_kill9", "sync_term", "capture_apply", "capture_only"}
    if "rerun" in exclude:
        if out:
            out.pop()
        out.insert(rng.randint(0, min(2, len(out))), Step("daemon_start"))
    elif out and runners & set(kinds) and not any(s.kind in runners for s in out[:3]):
        first = rng.choice(sorted(runners & set(kinds)))
        out.pop()
        out.insert(rng.randint(0, min(2, len(out))), Step(first))
    final = "final_follow" if {"final_sync", "rerun"} & set(exclude) else "final_sync"
    out.append(Step(final))
    return Schedule(seed=seed, pair=pair, profile=profile, steps=out, excluded=exclude)
