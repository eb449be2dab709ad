"""`redoline status`: where the source, the trail and each target stand, and how far behind.

Lag is measured against the source's own clock and position: when the trail already holds
the source's end position, capture is current however old the last commit is (an idle source
is not lagging); when it does not, capture lag is the source's "now" minus the trail's last
commit time (a stuck capture does not look current).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import typer

from apply.snapshot import load_table_states
from capture.trail import trail_info
from connectors.base import open_database
from connectors.checkpoint import read_checkpoints
from connectors.errors import ToolkitError
from ship import shipping_lag
from toolkit_cli.options import ConfigOpt, JsonOpt, SourceOpt, TargetOpt, TrailOpt, load_config
from toolkit_cli.output import console, print_json, print_table

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def _utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def status(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    target: TargetOpt = None,
    trail: TrailOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Source end position, capture checkpoint, each target's applied position and lag (in
    operations, trail bytes and seconds), the last error, and every table's snapshot state.
    Exits 1 when a snapshot failed or a run recorded an error."""
    cfg = load_config(config, source=source, target=target, trail=trail)
    out: dict[str, Any] = {
        "source": None,
        "capture": None,
        "shipping": [],
        "targets": [],
        "last_runs": {},
    }
    src_cfg = cfg.source()
    src = open_database(src_cfg.endpoint)
    now: dt.datetime | None = None
    end = None
    try:
        end = src.end_position()
        ((clock,),) = src.query("SELECT CURRENT_TIMESTAMP")  # type: ignore[attr-defined]
        now = _utc(clock)
        out["source"] = {"url": src_cfg.endpoint.display, "end_position": end, "now": now}
    except ToolkitError as exc:
        out["source"] = {"url": src_cfg.endpoint.display, "error": exc.message}
    info = trail_info(cfg.trail.dir, key=cfg.trail.key())
    caught_up = None
    if end is not None and info.last_position:
        try:
            caught_up = src.compare_positions(info.last_position, end) >= 0
        except ValueError:
            caught_up = None
    last_commit = _utc(info.last_commit_time)
    capture_lag = None
    if caught_up:
        capture_lag = 0.0
    elif now is not None and last_commit is not None:
        capture_lag = max(0.0, (now - last_commit).total_seconds())
    out["capture"] = {
        "trail": str(cfg.trail.dir),
        "last_op": info.last_op,
        "last_position": info.last_position,
        "last_commit_time": last_commit,
        "caught_up": caught_up,
        "lag_seconds": capture_lag,
        "bytes": info.bytes_on_disk,
    }
    # what each receiver (`redoline ship` destination) has not confirmed yet
    out["shipping"] = shipping_lag(cfg.trail.dir)
    failed = False
    for name, tgt_cfg in cfg.targets.items():
        entry: dict[str, Any] = {"name": name, "url": tgt_cfg.endpoint.display}
        try:
            db = open_database(tgt_cfg.endpoint)
            writer = db.open_writer()
            try:
                found = read_checkpoints(db, writer.query, src_cfg.id) or []
            finally:
                writer.close()
            applied_op, position, commit_time = (
                (found[0].applied_op, found[0].position, found[0].commit_time)
                if found
                else (0, None, None)
            )
            lag_ops = max(0, info.last_op - int(applied_op or 0))
            lag_bytes = sum(s.size for s in info.segments if s.last_op > int(applied_op or 0))
            commit = _utc(commit_time)
            if lag_ops == 0 and caught_up:
                lag_s: float | None = 0.0
            elif now is not None and commit is not None:
                lag_s = max(0.0, (now - commit).total_seconds())
            else:
                lag_s = None
            tables = load_table_states(db, src_cfg.id)
            failed |= any(t.state == "failed" for t in tables)
            if cfg.apply.delay > 0:
                entry["delay_seconds"] = cfg.apply.delay
                entry["pending"] = _pending(
                    cfg.trail.dir, cfg.trail.key(), int(applied_op or 0), cfg.apply.delay
                )
            entry.update(
                applied_op=int(applied_op or 0),
                position=position,
                lag_operations=lag_ops,
                lag_bytes=lag_bytes,
                lag_seconds=lag_s,
                tables=[vars(t) for t in tables],
            )
        except ToolkitError as exc:
            entry["error"] = exc.message
        out["targets"].append(entry)
    state_file = cfg.state_dir / "last-run.json"
    if state_file.exists():
        out["last_runs"] = json.loads(state_file.read_text())
        failed |= any(r.get("error") for r in out["last_runs"].values())
        failed |= any(_retrying(r) for r in out["last_runs"].values())
    if json_out:
        print_json(out)
    else:
        _print(out)
    raise typer.Exit(1 if failed else 0)


def _pending(trail_dir: Any, key: bytes | None, applied_op: int, delay: float) -> dict[str, Any]:
    """What a delayed replica has not applied yet: the range after its checkpoint, and the part
    of it the delay still holds back (by this host's clock, as apply judges it)."""
    from apply.point import commit_utc
    from capture.trail import TrailReader

    out: dict[str, Any] = {
        "operations": 0,
        "first_op": None,
        "last_op": None,
        "first_commit_time": None,
        "last_commit_time": None,
        "held_operations": 0,
        "held_from_op": None,
        "next_due": None,
    }
    limit = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=delay)
    start = max(applied_op + 1, trail_info(trail_dir, key=key).first_op, 1)
    for txn in TrailReader(trail_dir, key=key).transactions(start):
        if not txn.changes:
            continue
        when = commit_utc(txn)
        out["operations"] += len(txn.changes)
        out["first_op"] = out["first_op"] or txn.first_op
        out["first_commit_time"] = out["first_commit_time"] or when
        out["last_op"], out["last_commit_time"] = txn.last_op, when
        if when > limit:
            out["held_operations"] += len(txn.changes)
            if out["held_from_op"] is None:
                out["held_from_op"] = txn.first_op
                out["next_due"] = when + dt.timedelta(seconds=delay)
    return out


#: a retry recorded this recently by a run that has not finished means it is failing now
RETRY_FRESH_SECONDS = 120


def _retrying(run: dict[str, Any]) -> bool:
    retry = run.get("retrying")
    if not retry or run.get("finished"):
        return False
    at = _utc(retry.get("at"))
    return at is not None and (dt.datetime.now(dt.UTC) - at).total_seconds() < RETRY_FRESH_SECONDS


def _print(out: dict[str, Any]) -> None:
    s, c = out["source"] or {}, out["capture"] or {}
    console.print(f"source {s.get('url')}: end {s.get('end_position') or s.get('error')}")
    console.print(
        f"capture: trail {c['trail']} at operation {c['last_op']}, position "
        f"{c['last_position']}, caught up: {c['caught_up']}, lag {c['lag_seconds']} s"
    )
    for x in out["shipping"]:
        console.print(
            f"ship to {x['receiver']} ({x['name']}): acknowledged segment {x['acked_segment']}; "
            f"lag {x['lag_segments']} segments, {x['lag_bytes']} bytes, {x['lag_seconds']} s"
        )
    for t in out["targets"]:
        if "error" in t:
            console.print(f"target {t['name']} {t['url']}: [red]{t['error']}[/]")
            continue
        console.print(
            f"target {t['name']} {t['url']}: applied operation {t['applied_op']} "
            f"({t['position']}); lag {t['lag_operations']} operations, {t['lag_bytes']} bytes, "
            f"{t['lag_seconds']} s"
        )
        if "delay_seconds" in t:
            p = t["pending"]
            console.print(
                f"  delay {t['delay_seconds']:g} s: "
                + (
                    f"{p['operations']} operations pending (operations {p['first_op']}.."
                    f"{p['last_op']}, committed {p['first_commit_time']} .. "
                    f"{p['last_commit_time']}); {p['held_operations']} held back by the delay"
                    + (
                        f" from operation {p['held_from_op']}, next due at {p['next_due']}"
                        if p["held_from_op"]
                        else ""
                    )
                    if p["operations"]
                    else "nothing pending"
                )
            )
        if t["tables"]:
            print_table(
                "snapshot",
                ["table", "state", "rows", "chunks", "start", "error"],
                [
                    [
                        x["target_table"],
                        x["state"],
                        x["rows"],
                        f"{x['chunks_done']}/{x['chunks_total']}",
                        x["start_position"] or "",
                        x["error"] or "",
                    ]
                    for x in t["tables"]
                ],
            )
    for name, run in out["last_runs"].items():
        if _retrying(run):
            r = run["retrying"]
            console.print(
                f"[red]retrying[/] {name}: {r['stage']} attempt {r['attempt']}, failing for "
                f"{r['failing_seconds']} s (at {r['at']}): {r['error']}"
            )
        if run.get("error"):
            console.print(f"[red]last error[/] in {name} at {run.get('error_at')}: {run['error']}")
