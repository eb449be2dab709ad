"""`redoline status`: where the source, the trail and each target stand, and how far behind.

Running stages write a progress record every second into the state directory
(:mod:`capture.progress`); status reads those first, so it never opens a target that a running
applier holds (a DuckDB file is locked by its writer). A target with no live run is opened and
its checkpoint read.

Lag in seconds is measured, when the source writes a heartbeat (``[source] heartbeat``), from
the heartbeat each running stage last saw (:mod:`capture.heartbeat`); otherwise it is an
estimate from positions and says so: when the trail already holds the source's end position
and nothing is left to apply the lag is 0 (an idle source is not lagging); else it is the
source's "now" minus the last commit time handled (a stuck stage does not look current).

Exit status: 0, or 1 when any stage is failing (a failed or retrying run, a failed snapshot
table, an error recorded by the last run) or its state cannot be read (an unreadable record,
an unreachable source or target).

The output is built as a list of sections (:func:`_lines`), one function per kind of line,
so a new fact about a target (e.g. a replay delay) is one more entry in ``entry`` and one more
line in :func:`_target_lines`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import typer

from apply.snapshot import load_table_states
from capture.progress import process_alive, read_records
from capture.trail import trail_info
from connectors.base import open_database
from connectors.checkpoint import read_checkpoints
from connectors.errors import ToolkitError
from ship import shipping_lag
from toolkit_cli.options import ConfigOpt, JsonOpt, SourceOpt, TargetOpt, TrailOpt, load_config
from toolkit_cli.output import console, print_json, print_table

__all__ = ["register"]

#: what a missing value reads as
NOT_STARTED = "not started"

#: a record not rewritten for this long belongs to a run that no longer reports
STALE_SECONDS = 10.0


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


def _live(record: dict[str, Any], now: dt.datetime) -> bool:
    """The record's run is going on: its process exists and it wrote the record recently."""
    if record.get("state") not in ("starting", "running", "retrying"):
        return False
    updated = _utc(record.get("updated"))
    fresh = updated is not None and (now - updated).total_seconds() < STALE_SECONDS
    return fresh and process_alive(record.get("pid"))


def _failing(record: dict[str, Any], live: bool) -> bool:
    """A stage is failing: unreadable, failed, or retrying right now."""
    if "unreadable" in record:
        return True
    state = record.get("state")
    return state == "failed" or (state == "retrying" and live)


def status(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    target: TargetOpt = None,
    trail: TrailOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Source end position, capture, shipping and each target: applied position, lag (in
    operations, trail bytes and seconds: measured by the heartbeat, else an estimate), the
    stages' state from their progress records, the last error, every table's snapshot state.
    Never opens a target a running apply holds. Exits 1 when a stage is failing or its state
    cannot be read."""
    cfg = load_config(config, source=source, target=target, trail=trail)
    wall = dt.datetime.now(dt.UTC)
    records = read_records(cfg.state_dir)
    by_stage = {(r.get("stage"), r.get("name")): r for r in records}
    src_cfg = cfg.source()
    src = open_database(src_cfg.endpoint)
    out: dict[str, Any] = {"source": None, "capture": None, "shipping": [], "targets": []}
    out["source"], end, now = _source(src, src_cfg.endpoint.display)
    failing = "error" in out["source"]
    info = trail_info(cfg.trail.dir, key=cfg.trail.key())
    caught_up = None
    if end is not None and info.last_position:
        try:
            caught_up = src.compare_positions(info.last_position, end) >= 0
        except ValueError:
            caught_up = None
    cap_record = by_stage.get(("capture", src_cfg.id))
    out["capture"] = _capture(cfg, info, caught_up, now, cap_record, wall)
    # what each receiver (`redoline ship` destination) has not confirmed yet
    out["shipping"] = shipping_lag(cfg.trail.dir)
    for name, tgt_cfg in cfg.targets.items():
        entry = _target(name, tgt_cfg, src_cfg.id, info, caught_up, now, by_stage, wall)
        failing |= bool(entry.get("error")) or any(
            t.get("state") == "failed" for t in entry.get("tables", [])
        )
        if cfg.apply.delay > 0 and "error" not in entry:
            entry["delay_seconds"] = cfg.apply.delay
            entry["pending"] = _pending(
                cfg.trail.dir, cfg.trail.key(), int(entry["applied_op"] or 0), cfg.apply.delay
            )
        out["targets"].append(entry)
    out["stages"] = [_stage(record, wall) for record in records]
    failing |= any(stage["failing"] for stage in out["stages"])
    out["last_runs"] = _last_runs(cfg.state_dir / "last-run.json")
    failing |= any(r.get("error") or _retrying(r) for r in out["last_runs"].values())
    out["failing"] = failing
    if json_out:
        print_json(out)
    else:
        for line in _lines(out):
            console.print(line, highlight=False)
        _print_tables(out)
    raise typer.Exit(1 if failing else 0)


def _source(src: Any, display: str) -> tuple[dict[str, Any], str | None, dt.datetime | None]:
    """The source's entry (``error`` when it cannot be asked), its end position and clock."""
    end = None
    try:
        end = src.end_position()
        ((clock,),) = src.query("SELECT CURRENT_TIMESTAMP")
    except ToolkitError as exc:
        return {"url": display, "error": exc.message}, end, None
    now = _utc(clock)
    return {"url": display, "end_position": end, "now": now}, end, now


def _capture(
    cfg: Any,
    info: Any,
    caught_up: bool | None,
    now: dt.datetime | None,
    record: dict[str, Any] | None,
    wall: dt.datetime,
) -> dict[str, Any]:
    """The trail's entry: how far capture got, its lag (heartbeat, else an estimate)."""
    last_commit = _utc(info.last_commit_time)
    capture_lag: float | None = None
    lag_method = "estimate"
    live = record is not None and _live(record, wall)
    if live and record is not None and record.get("lag_method") == "heartbeat":
        capture_lag, lag_method = record.get("lag_seconds"), "heartbeat"
    elif caught_up:
        capture_lag = 0.0
    elif now is not None and last_commit is not None:
        capture_lag = max(0.0, (now - last_commit).total_seconds())
    return {
        "trail": str(cfg.trail.dir),
        "last_op": info.last_op,
        "last_position": info.last_position,
        "last_commit_time": last_commit,
        "caught_up": caught_up,
        "lag_seconds": capture_lag,
        "lag_method": lag_method,
        "bytes": info.bytes_on_disk,
        "state": _state(record, live),
    }


def _stage(record: dict[str, Any], wall: dt.datetime) -> dict[str, Any]:
    """One progress record as ``status`` lists it."""
    live = "unreadable" not in record and _live(record, wall)
    return {
        "stage": record.get("stage"),
        "name": record.get("name"),
        "state": _state(record, live),
        "failing": _failing(record, live),
        "last_error": record.get("last_error") or record.get("unreadable"),
        "last_error_at": record.get("last_error_at"),
        "updated": record.get("updated"),
    }


def _last_runs(state_file: Path) -> dict[str, Any]:
    """What the last run of each command recorded (``last-run.json``), if any."""
    if not state_file.exists():
        return {}
    try:
        runs = json.loads(state_file.read_text())
    except (OSError, ValueError) as exc:
        return {"(unreadable)": {"error": f"{state_file}: {exc}"}}
    return runs if isinstance(runs, dict) else {}


def _state(record: dict[str, Any] | None, live: bool) -> str:
    """What a stage is doing, in words: ``not started``, ``running``, ``retrying``, ``failed``,
    ``finished``, ``stopped``, or ``not running`` (its process went away)."""
    if record is None:
        return NOT_STARTED
    if "unreadable" in record:
        return "unreadable"
    state = str(record.get("state") or NOT_STARTED)
    if state in ("starting", "running", "retrying") and not live:
        return "not running"
    return state


def _target(
    name: str,
    tgt_cfg: Any,
    source_id: str,
    info: Any,
    caught_up: bool | None,
    now: dt.datetime | None,
    by_stage: dict[tuple[Any, Any], dict[str, Any]],
    wall: dt.datetime,
) -> dict[str, Any]:
    """One target's entry: from its live apply's record, else from its checkpoint table."""
    entry: dict[str, Any] = {"name": name, "url": tgt_cfg.endpoint.display}
    record = by_stage.get(("apply", tgt_cfg.id))
    live = record is not None and "unreadable" not in record and _live(record, wall)
    entry["state"] = _state(record, live)
    if live and record is not None:
        # a running apply holds the target (DuckDB: locked): its record has what we need
        applied = int(record.get("last_op") or 0)
        entry.update(
            source="progress record",
            applied_op=applied,
            position=record.get("position"),
            lag_operations=record.get("lag_operations"),
            lag_bytes=record.get("lag_bytes"),
            lag_seconds=record.get("lag_seconds"),
            lag_method=record.get("lag_method") or "estimate",
            snapshot=record.get("snapshot"),
            tables=[],
        )
        if entry["lag_operations"] is None:
            entry["lag_operations"] = max(0, info.last_op - applied)
        return entry
    try:
        db = open_database(tgt_cfg.endpoint)
        writer = db.open_writer()
        try:
            found = read_checkpoints(db, writer.query, source_id) or []
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
        tables = load_table_states(db, source_id)
        entry.update(
            source="checkpoint",
            applied_op=int(applied_op or 0),
            position=position,
            lag_operations=lag_ops,
            lag_bytes=lag_bytes,
            lag_seconds=lag_s,
            lag_method="estimate",
            tables=[vars(t) for t in tables],
        )
    except ToolkitError as exc:
        entry["error"] = exc.message
    return entry


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


def _v(value: Any) -> Any:
    return NOT_STARTED if value is None else value


def _seconds(value: Any, method: str | None) -> str:
    if value is None:
        return "lag unknown"
    text = f"lag {float(value):.3f} s"
    return text + (" (estimate)" if method != "heartbeat" else " (heartbeat)")


def _lines(out: dict[str, Any]) -> list[str]:
    """The report, one fact per line (rich markup)."""
    lines: list[str] = []
    s, c = out["source"] or {}, out["capture"] or {}
    lines.append(f"source {s.get('url')}: end {s.get('end_position') or s.get('error')}")
    if not c.get("last_op"):
        lines.append(
            f"capture ({c.get('state')}): trail {c['trail']} holds no transaction yet "
            f"({NOT_STARTED})"
        )
    else:
        caught = {True: "yes", False: "no", None: "unknown"}[c["caught_up"]]
        lines.append(
            f"capture ({c.get('state')}): trail {c['trail']} at operation {c['last_op']}, "
            f"position {_v(c['last_position'])}, caught up: {caught}, "
            f"{_seconds(c['lag_seconds'], c.get('lag_method'))}"
        )
    for x in out["shipping"]:
        lines.append(
            f"ship to {x['receiver']} ({x['name']}): acknowledged segment "
            f"{_v(x['acked_segment'])}; lag {x['lag_segments']} segments, {x['lag_bytes']} "
            f"bytes, {x['lag_seconds']} s"
        )
    for t in out["targets"]:
        lines.extend(_target_lines(t))
    for st in out["stages"]:
        if st["failing"] or st["state"] in ("failed", "unreadable"):
            lines.append(
                f"[red]{st['stage']} {st['name']}: {st['state']}[/]"
                + (f" ({st['last_error_at']}): {st['last_error']}" if st["last_error"] else "")
            )
    for name, run in out["last_runs"].items():
        if _retrying(run):
            r = run["retrying"]
            lines.append(
                f"[red]retrying[/] {name}: {r['stage']} attempt {r['attempt']}, failing for "
                f"{r['failing_seconds']} s (at {r['at']}): {r['error']}"
            )
        if run.get("error"):
            lines.append(f"[red]last error[/] in {name} at {run.get('error_at')}: {run['error']}")
    return lines


def _target_lines(t: dict[str, Any]) -> list[str]:
    """A target's lines: where it is, how far behind, how its snapshot went."""
    head = f"target {t['name']} {t['url']} ({t.get('state')})"
    if "error" in t:
        return [f"{head}: [red]{t['error']}[/]"]
    if not t["applied_op"] and not t.get("position"):
        applied = f"applied nothing yet ({NOT_STARTED})"
    else:
        applied = f"applied operation {t['applied_op']} ({_v(t['position'])})"
    lines = [
        f"{head}: {applied}; lag {_v(t['lag_operations'])} operations, "
        f"{_v(t['lag_bytes'])} bytes, {_seconds(t['lag_seconds'], t.get('lag_method'))}"
    ]
    snap = t.get("snapshot")
    if snap and snap.get("tables_total"):
        lines.append(
            f"  snapshot: {snap['tables_done']}/{snap['tables_total']} tables, "
            f"{snap['rows']:,} of ~{snap['rows_estimate']:,} rows"
        )
    if "delay_seconds" in t:
        p = t["pending"]
        lines.append(
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
    return lines


def _print_tables(out: dict[str, Any]) -> None:
    for t in out["targets"]:
        if t.get("tables"):
            print_table(
                f"snapshot ({t['name']})",
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
