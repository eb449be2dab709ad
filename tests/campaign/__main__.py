"""``python -m tests.campaign``: run random schedules, or replay one exactly.

    python -m tests.campaign --seeds 200 --minutes 30          # 200 schedules or 30 minutes
    python -m tests.campaign --replay 1234 --pair mariadb-duckdb --profile stock --steps 8
    python -m tests.campaign --seeds 50 --pairs mariadb-postgresql --profiles stock --known-open

Schedule k of a campaign uses seed ``--start-seed + k`` and the k-th (pair, profile) in turn,
so every combination gets its share whatever the time budget. Each failure is printed with
its schedule, step log and the exact replay command; ``--results FILE`` appends one JSON line
per schedule. Exit 0 only when every schedule passed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from tests.campaign.runner import Outcome, Servers, run_schedule
from tests.campaign.schedule import FEATURES, KINDS, PAIRS, generate

PROFILES = ("tuned", "stock")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.campaign", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=24, help="schedules to run (default 24)")
    p.add_argument("--minutes", type=float, default=None, help="stop starting schedules after this")
    p.add_argument(
        "--start-seed", type=int, default=None, help="first seed (default: from the clock)"
    )
    p.add_argument("--pairs", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--profiles", nargs="*", default=list(PROFILES), choices=PROFILES)
    p.add_argument("--small", action="store_true", help="CI-sized schedules (3-5 steps)")
    p.add_argument(
        "--steps", type=int, default=None, help="steps per schedule (before the final sync)"
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="KIND",
        help="leave out a step kind or value feature, or ENGINE:KIND for one source engine "
        f"(repeatable); kinds: {', '.join(sorted(KINDS))}; features: {', '.join(sorted(FEATURES))}",
    )
    p.add_argument(
        "--known-open",
        action="store_true",
        help="exclude the step kinds of tests/campaign/test_campaign.py KNOWN_OPEN",
    )
    p.add_argument("--replay", type=int, default=None, metavar="SEED")
    p.add_argument("--pair", choices=list(PAIRS))
    p.add_argument("--profile", choices=PROFILES)
    p.add_argument("--workdir", type=Path, default=None, help="default /tmp/campaign-<pid>")
    p.add_argument("--keep", action="store_true", help="keep work directories of passing runs")
    p.add_argument("--results", type=Path, default=None, help="append one JSON line per schedule")
    args = p.parse_args(argv)

    # background jobs ignore SIGINT: SIGTERM/SIGINT both end the campaign through `finally`,
    # which stops the servers it started
    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    exclude = {k: "--exclude" for k in args.exclude}
    if args.known_open:
        from tests.campaign.test_campaign import KNOWN_OPEN

        exclude.update(KNOWN_OPEN)
    for kind, why in sorted(exclude.items()):
        print(f"excluded step kind {kind}: {why}")
    workdir = args.workdir or Path(f"/tmp/campaign-{os.getpid()}")
    servers = Servers(workdir / "servers")
    outcomes: list[Outcome] = []
    try:
        if args.replay is not None:
            if not (args.pair and args.profile):
                p.error("--replay needs --pair and --profile")
            sched = generate(
                args.replay,
                args.pair,
                args.profile,
                steps=args.steps,
                small=args.small,
                exclude=exclude,
            )
            print(sched.describe(), flush=True)
            out = run_schedule(sched, servers, workdir / "runs", keep=True)
            print(out.report(), flush=True)
            _record(args.results, out)
            return 0 if out.ok else 1
        start = args.start_seed if args.start_seed is not None else int(time.time()) % 10**6
        combos = list(itertools.product(args.pairs, args.profiles))
        deadline = time.monotonic() + args.minutes * 60 if args.minutes else None
        print(
            f"campaign: up to {args.seeds} schedules from seed {start} over {len(combos)} "
            f"pair/profile combinations",
            flush=True,
        )
        for k in range(args.seeds):
            if deadline is not None and time.monotonic() > deadline:
                print(f"time budget of {args.minutes:g} min reached after {k} schedules")
                break
            pair, profile = combos[k % len(combos)]
            sched = generate(
                start + k, pair, profile, steps=args.steps, small=args.small, exclude=exclude
            )
            out = run_schedule(sched, servers, workdir / "runs", keep=args.keep)
            outcomes.append(out)
            _record(args.results, out)
            if out.ok:
                print(
                    f"PASS seed {sched.seed} {pair} {profile} "
                    f"({len(sched.steps)} steps, {out.seconds:.1f} s)",
                    flush=True,
                )
            else:
                print(out.report(), flush=True)
    except KeyboardInterrupt:
        print("interrupted: the schedule in progress is not counted", flush=True)
    finally:
        servers.close()
    _summary(outcomes)
    return 0 if all(o.ok for o in outcomes) else 1


def _record(path: Path | None, out: Outcome) -> None:
    if path is None:
        return
    s = out.schedule
    with open(path, "a") as f:
        f.write(
            json.dumps(
                {
                    "seed": s.seed,
                    "pair": s.pair,
                    "profile": s.profile,
                    "steps": [str(x) for x in s.steps],
                    "ok": out.ok,
                    "category": out.category,
                    "failed_step": out.failed_step,
                    "failure": out.failure[:4000],
                    "seconds": round(out.seconds, 1),
                    "replay": s.replay_args(),
                }
            )
            + "\n"
        )


def _summary(outcomes: list[Outcome]) -> None:
    if not outcomes:
        return
    runs = Counter((o.schedule.pair, o.schedule.profile) for o in outcomes)
    fails = Counter((o.schedule.pair, o.schedule.profile) for o in outcomes if not o.ok)
    print(f"\n{len(outcomes)} schedules, {sum(fails.values())} failed")
    for key in sorted(runs):
        print(f"  {key[0]:24s} {key[1]:6s} {runs[key]:4d} run {fails[key]:4d} failed")
    for o in outcomes:
        if not o.ok:
            first = o.failure.strip().splitlines()[0] if o.failure.strip() else ""
            print(f"  FAIL {o.schedule.replay_args()}  [{o.category}] {first[:160]}")


if __name__ == "__main__":
    sys.exit(main())
