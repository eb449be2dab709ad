"""`redoline apply`: apply the trail to the target, exactly once, in order."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from apply.options import ApplyOptions, ApplyStats
from apply.parallel import apply_parallel
from apply.point import (
    PointError,
    PointOutcome,
    StopPoint,
    describe_txn,
    mark_point,
    parse_time,
)
from apply.reconnect import apply_reconnecting
from capture.trail import load_key
from connectors.base import open_database
from connectors.errors import ConfigError
from toolkit_cli.config import Config, parse_duration
from toolkit_cli.metrics import MetricsFileOpt, MetricsOpt, observe
from toolkit_cli.options import ConfigOpt, JsonOpt, TargetOpt, TrailOpt, load_config
from toolkit_cli.output import console, err_console, print_json, to_jsonable

__all__ = ["register"]

log = logging.getLogger("redoline.apply")


def register(app: typer.Typer) -> None:
    app.command("apply")(apply_command)


_UntilCaughtUpOpt = Annotated[
    bool,
    typer.Option(
        "--until-caught-up",
        help="Stop at the end of the trail instead of tailing it (for cron).",
    ),
]

_CollisionOpt = Annotated[
    bool,
    typer.Option(
        "--collision",
        help="Collision mode: an insert of an existing row updates it, an update of a "
        "missing row inserts it, a delete of a missing row is ignored; each is counted.",
    ),
]

_OnErrorOpt = Annotated[
    str | None,
    typer.Option(
        "--on-error",
        help="stop (default): a row the target rejects stops apply. skip: write the "
        "rejected transaction to the reject trail (--reject-file) and go on.",
        show_default=False,
    ),
]

_RejectFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--reject-file",
        help="Trail directory for rejected transactions (read it with `redoline trail "
        "dump --trail DIR`). Default: <trail>.rejects",
        show_default=False,
    ),
]

_ParallelOpt = Annotated[
    int | None,
    typer.Option(
        "--parallel",
        min=1,
        help="Apply with N connections by table groups (FK-linked tables together). "
        "Gives up cross-group transaction atomicity: see docs/apply.md.",
        show_default=False,
    ),
]

_SkipDdlOpt = Annotated[
    bool,
    typer.Option("--skip-ddl", help="Skip (and log) DDL that cannot be translated."),
]

_IgnoreOriginOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ignore-origin",
        help="Do not apply transactions from this origin id (repeatable): the loop guard "
        "of a bidirectional or cascading setup. Default: [apply] ignore_origins, else none "
        "(every transaction is applied).",
        show_default=False,
    ),
]

_AdoptTrailOpt = Annotated[
    bool,
    typer.Option(
        "--adopt-trail",
        help="The target's checkpoint belongs to another trail: apply this trail from its "
        "first operation anyway (after a snapshot, or when the new trail starts where the "
        "old one ended).",
    ),
]

_TargetNameOpt = Annotated[
    str | None,
    typer.Option("--target-name", help="Which [targets.NAME] to use.", show_default=False),
]


def apply_command(
    config: ConfigOpt = None,
    target: TargetOpt = None,
    trail: TrailOpt = None,
    until_caught_up: _UntilCaughtUpOpt = False,
    collision: _CollisionOpt = False,
    on_error: _OnErrorOpt = None,
    reject_file: _RejectFileOpt = None,
    parallel: _ParallelOpt = None,
    skip_ddl: _SkipDdlOpt = False,
    ignore_origin: _IgnoreOriginOpt = None,
    adopt_trail: _AdoptTrailOpt = False,
    until_time: UntilTimeOpt = None,
    until_op: UntilOpOpt = None,
    until_xid: UntilXidOpt = None,
    until_mark: UntilMarkOpt = None,
    delay: DelayOpt = None,
    target_name: _TargetNameOpt = None,
    metrics: MetricsOpt = None,
    metrics_file: MetricsFileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Apply the trail to the target: grouped, set-based, exactly once, in source order.

    Runs continuously (tails the trail) unless --until-caught-up. Ctrl-C or SIGTERM finishes
    the current target transaction and exits 130. With --until-time/-op/-xid/-mark it applies up
    to and including that point, says where it stopped and exits 0; a point it cannot reach
    exits 11 (docs/recovery.md). --delay (or [apply] delay) keeps the target behind the
    source by that much: a delayed replica.
    """
    cfg = load_config(config, target=target, trail=trail)
    key = load_key(file=cfg.trail.key_file, env=cfg.trail.key_env)
    point = stop_point(
        until_time, until_op, until_xid, until_mark, trail_dir=cfg.trail.dir, key=key
    )
    tgt = cfg.target(target_name)
    options = _apply_options(
        cfg, tgt.id, collision, on_error, reject_file, skip_ddl, ignore_origin, adopt_trail
    )
    options.delay = apply_delay(delay, cfg.apply.delay)
    n = parallel if parallel is not None else cfg.apply.parallel
    if n > 1 and point is not None:
        raise ConfigError(
            "--until-time/-op/-xid/-mark applies in one ordered stream: drop --parallel "
            "([apply] parallel) for this run"
        )
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.warning("signal %d: finishing the current target transaction", signum)
        stopping.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    database = open_database(tgt.endpoint)
    outcome = PointOutcome()
    # progress records every second, and the metrics endpoint/file when asked
    observing = contextlib.ExitStack()
    observing.enter_context(observe(cfg.state_dir, metrics, metrics_file))
    try:
        if n > 1:
            results = apply_parallel(
                database,
                cfg.trail.dir,
                options,
                n,
                key=key,
                follow=not until_caught_up,
                stop=stopping.is_set,
            )
        else:
            results = [
                apply_reconnecting(
                    database,
                    cfg.trail.dir,
                    options,
                    key=key,
                    follow=not until_caught_up,
                    stop=stopping.is_set,
                    retry_for=tgt.retry_budget(until_caught_up),
                    until=point,
                    outcome=outcome,
                )
            ]
    finally:
        observing.close()
        for s, handler in old.items():
            signal.signal(s, handler)
    _report(results, json_out)
    skipped = sum(r.skipped_origin for r in results)
    if results and all(r.skipped_everything for r in results):
        warn_skipped_everything(skipped, options.ignore_origins or frozenset())
        raise typer.Exit(EXIT_SKIPPED_EVERYTHING)
    if stopping.is_set():
        raise typer.Exit(130)
    if point is not None:
        report_point(point, outcome, results[0].applied_op, json_out)


def _apply_options(
    cfg: Config,
    target_id: str,
    collision: bool,
    on_error: str | None,
    reject_file: Path | None,
    skip_ddl: bool,
    ignore_origin: list[str] | None,
    adopt_trail: bool,
) -> ApplyOptions:
    """The flags over [apply]. The trail describes its source (engine, dialect, row ids,
    identity): apply needs no source."""
    acfg = cfg.apply
    mode = on_error or acfg.on_error
    reject_dir = reject_file or acfg.reject_file
    if mode == "skip" and reject_dir is None:
        reject_dir = Path(str(cfg.trail.dir) + ".rejects")
    if mode not in ("stop", "skip"):
        raise ConfigError(f"--on-error must be stop or skip, not {mode!r}")
    if mode == "skip":
        log.warning(
            "on-error=skip: transactions the target rejects are NOT applied; they go to the "
            "reject trail %s",
            reject_dir,
        )
    origins = tuple(ignore_origin or ()) or acfg.ignore_origins
    return ApplyOptions(
        target_id=target_id,
        batch_rows=acfg.batch_rows,
        batch_ms=acfg.batch_ms,
        collision=collision or acfg.collision,
        on_error=mode,
        reject_dir=reject_dir,
        skip_ddl=skip_ddl or acfg.skip_ddl,
        source_column=acfg.source_column,
        ignore_origins=frozenset(origins),
        rename=cfg.tables.target_name,
        adopt_trail=adopt_trail,
    )


UntilTimeOpt = Annotated[
    str | None,
    typer.Option(
        "--until-time",
        help="Apply every transaction committed at or before this time, then stop. ISO-8601 "
        "with a zone (2026-12-02T14:01:00+01:00, ...Z); a time without a zone is UTC; or "
        "relative: -15m, -2h, -1d. Waits for the first later transaction unless "
        "--until-caught-up.",
        show_default=False,
    ),
]
UntilOpOpt = Annotated[
    int | None,
    typer.Option(
        "--until-op",
        min=0,
        help="Apply through this operation number (a transaction's last), then stop.",
        show_default=False,
    ),
]
UntilXidOpt = Annotated[
    str | None,
    typer.Option(
        "--until-xid",
        help="Apply through this source transaction id (included), then stop.",
        show_default=False,
    ),
]


UntilMarkOpt = Annotated[
    str | None,
    typer.Option(
        "--until-mark",
        "--to-mark",
        help="Apply through the restore point `redoline mark NAME` recorded (every "
        "transaction committed before the mark was taken), then stop.",
        show_default=False,
    ),
]
DelayOpt = Annotated[
    str | None,
    typer.Option(
        "--delay",
        help="Delayed replica: apply a transaction only once its source commit time is this "
        'old ("1h", "30m", "90s", seconds; 0: none). Overrides [apply] delay.',
        show_default=False,
    ),
]


def apply_delay(flag: str | None, configured: float) -> float:
    """Seconds of apply delay: --delay, else [apply] delay."""
    if flag is None:
        return configured
    try:
        return parse_duration(flag)
    except ValueError as exc:
        raise ConfigError(f"--delay {flag!r}: {exc}") from None


def stop_point(
    time: str | None,
    op: int | None,
    xid: str | None,
    mark: str | None = None,
    *,
    trail_dir: Path | None = None,
    key: bytes | None = None,
) -> StopPoint | None:
    """The --until-* point, or None; two at once is a usage error."""
    given = [x for x in (time, op, xid, mark) if x is not None]
    if not given:
        return None
    if len(given) > 1:
        raise ConfigError("give one of --until-time, --until-op, --until-xid, --until-mark")
    if mark is not None:
        assert trail_dir is not None
        return mark_point(trail_dir, mark, key)
    return StopPoint(op=op, time=parse_time(time) if time is not None else None, xid=xid)


def report_point(
    point: StopPoint, outcome: PointOutcome, applied_op: int, json_out: bool = False
) -> None:
    """Say where a bounded run stopped; raise (exit 11) when it did less than asked."""
    if outcome.straddled is not None:
        txn = outcome.straddled
        raise PointError(
            f"{point.describe()} is inside {describe_txn(txn)}, which applies whole: applied "
            f"through operation {applied_op} and stopped before it",
            hint=f"ask for --until-op {txn.first_op - 1} or --until-op {txn.last_op}",
        )
    if not outcome.reached:
        raise PointError(
            f"the trail ends before {point.describe()}: applied through operation "
            f"{applied_op}, the point is not reached yet",
            hint="run again when capture has written past the point (or without "
            "--until-caught-up, which waits for it)",
        )
    where = f"operation {applied_op}"
    if outcome.last is not None:
        where += f", the end of {describe_txn(outcome.last)}"
    (err_console if json_out else console).print(
        f"stopped at {point.describe()}: the target is at {where}"
    )


#: every transaction read was skipped by the loop guard (docs/exit-codes.md)
EXIT_SKIPPED_EVERYTHING = 10


def warn_skipped_everything(count: int, origins: frozenset[str]) -> None:
    """Say loudly that a run applied nothing because the loop guard skipped all it read."""
    err_console.print(
        f"WARNING: applied nothing: all {count} transaction(s) read were skipped by the loop "
        f"guard (ignored origins: {', '.join(sorted(origins))}). In a one-way setup remove "
        "--ignore-origin / [apply] ignore_origins; in a bidirectional one check the ids."
    )


def _report(results: list[ApplyStats], json_out: bool) -> None:
    total_rejected = sum(r.rejected_transactions for r in results)
    if json_out:
        print_json(
            {
                "groups": [
                    {
                        **to_jsonable({k: getattr(r, k) for k in r.__dataclass_fields__}),
                        "changes_per_second": round(r.changes_per_second, 1),
                    }
                    for r in results
                ]
            }
        )
    else:
        for r in results:
            console.print(
                f"applied through operation {r.applied_op} ({r.position}): "
                f"{r.transactions} transactions, {r.changes} changes in {r.seconds:.1f}s "
                f"({r.changes_per_second:,.0f}/s), {r.collisions} collisions, "
                f"{r.ddl_applied} DDL applied, {r.ddl_skipped} DDL skipped, "
                f"{r.skipped_origin} skipped by origin"
            )
    for r in results:
        if r.delay_held_op:
            (err_console if json_out else console).print(
                f"delay: operation {r.delay_held_op} on (committed {r.delay_held_commit_time}) "
                "is held back until the delay has passed"
            )
    if total_rejected:
        where = ", ".join(sorted({r.reject_dir or "" for r in results}))
        console.print(
            f"[bold red]{total_rejected} transaction(s) REJECTED[/] and written to {where}; "
            "inspect with `redoline trail dump --trail " + where + "`"
        )
