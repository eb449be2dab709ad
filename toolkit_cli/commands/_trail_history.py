"""`redoline trail history`: one row's every change, or change counts per table in a time range."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
from collections import Counter
from pathlib import Path
from typing import Any

from rich.markup import escape

from apply.point import commit_utc
from capture.codec import to_jsonable
from capture.trail import TrailReader, trail_info
from connectors.errors import ConfigError
from connectors.model import Change, Op, TableId, Transaction, Value
from toolkit_cli.output import console, print_json, print_table

__all__ = ["key_values", "row_history", "table_counts"]


def key_values(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        col, sep, value = pair.partition("=")
        if not sep or not col:
            raise ConfigError(f"--key {pair!r}: give col=value")
        out[col] = value
    return out


def _in_range(txn: Transaction, start: dt.datetime | None, end: dt.datetime | None) -> bool:
    when = commit_utc(txn)
    return (start is None or when >= start) and (end is None or when <= end)


def _text(value: Value) -> set[str]:
    """How a DBA may type ``value`` on the command line."""
    jsonable = to_jsonable(value)
    forms = {str(value), str(jsonable)}
    if isinstance(value, bool):
        forms |= {str(value).lower(), str(int(value))}
    return forms


def _matches(image: dict[str, Value] | None, wanted: dict[str, str]) -> bool:
    return image is not None and all(c in image and v in _text(image[c]) for c, v in wanted.items())


def _changed(change: Change) -> list[str]:
    before, after = change.before or {}, change.after or {}
    if change.op is Op.UPDATE:
        return [c for c in after if c not in before or before[c] != after[c]]
    return list(after or before)


def _table_id(text: str) -> TableId:
    schema, dot, name = text.rpartition(".")
    if not dot:
        raise ConfigError(f"table {text!r}: give schema.table as the source names it")
    return TableId(schema, name)


def row_history(
    directory: Path,
    key: bytes | None,
    table_text: str,
    wanted: dict[str, str],
    start: dt.datetime | None,
    end: dt.datetime | None,
    json_out: bool,
) -> None:
    table = _table_id(table_text)
    asked = dict(wanted)
    info = trail_info(directory, key=key)
    reader = TrailReader(directory, key=key)
    seen_table = False
    found: list[dict[str, Any]] = []
    for txn in reader.transactions(info.first_op or 1):
        for number, change in enumerate(txn.changes, txn.first_op):
            if change.table != table:
                continue
            if not seen_table:
                seen_table = True
                columns = {c.name for c in reader.schema(table, change.schema_version).columns}
                unknown = sorted(set(wanted) - columns)
                if unknown:
                    raise ConfigError(
                        f"{table} has no column {', '.join(unknown)} (columns: "
                        f"{', '.join(sorted(columns))})"
                    )
            if change.op is Op.DDL:
                continue
            if change.op is Op.TRUNCATE:
                hit = True
            else:
                hit = _matches(change.before, wanted) or _matches(change.after, wanted)
            if not hit:
                continue
            if change.op is Op.UPDATE and change.after is not None:
                # a key change: the row lives on under its new values
                wanted = {c: str(to_jsonable(change.after.get(c))) for c in wanted}
            if _in_range(txn, start, end):
                found.append(
                    {
                        "op_number": number,
                        "op": str(change.op),
                        "xid": txn.xid,
                        "commit_time": txn.commit_time.isoformat(),
                        "position": txn.position,
                        "origin": txn.origin,
                        "before": to_jsonable(change.before),
                        "after": to_jsonable(change.after),
                        "changed": _changed(change),
                    }
                )
    if not seen_table:
        raise ConfigError(
            f"table {table} has no change in the retained trail (operations "
            f"{info.first_op}..{info.last_op})",
            hint="`redoline trail stats` lists the tables the trail holds",
        )
    if json_out:
        # key: as asked; now: where key changes took the row
        print_json({"table": str(table), "key": asked, "now": wanted, "changes": found})
        return
    if not found:
        console.print(f"no change of that row of {table} in the trail")
        return
    for item in found:
        head = (
            f"[bold]#{item['op_number']}[/] {escape(item['commit_time'])} "
            f"xid={escape(item['xid'])} [cyan]{item['op'].upper()}[/]"
        )
        before, after = item["before"] or {}, item["after"] or {}
        if item["op"] == "update":
            parts = [
                f"  {escape(c)}: {escape(_show(before.get(c)))} -> {escape(_show(after.get(c)))}"
                for c in item["changed"]
            ]
        elif item["op"] == "insert":
            parts = [f"  {escape(c)} = {escape(_show(v))}" for c, v in after.items()]
        elif item["op"] == "delete":
            parts = [f"  {escape(c)} was {escape(_show(v))}" for c, v in before.items()]
        else:
            parts = ["  every row of the table removed"]
        console.print("\n".join([head, *parts]), highlight=False, soft_wrap=True)


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


def table_counts(
    directory: Path,
    key: bytes | None,
    pattern: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    json_out: bool,
) -> None:
    info = trail_info(directory, key=key)
    per: dict[str, dict[str, Any]] = {}
    for txn in TrailReader(directory, key=key).transactions(info.first_op or 1):
        if not _in_range(txn, start, end):
            continue
        touched: set[str] = set()
        for change in txn.changes:
            name = str(change.table)
            if not fnmatch.fnmatchcase(name, pattern):
                continue
            entry = per.setdefault(
                name, {"ops": Counter(), "transactions": 0, "first": None, "last": None}
            )
            entry["ops"][str(change.op)] += 1
            if name not in touched:
                touched.add(name)
                entry["transactions"] += 1
                when = commit_utc(txn).isoformat()
                entry["first"] = entry["first"] or when
                entry["last"] = when
    rows = {
        name: {
            **{str(o): e["ops"].get(str(o), 0) for o in Op},
            "transactions": e["transactions"],
            "first_commit_time": e["first"],
            "last_commit_time": e["last"],
        }
        for name, e in sorted(per.items())
    }
    if json_out:
        print_json(
            {
                "since": start.isoformat() if start else None,
                "until": end.isoformat() if end else None,
                "tables": rows,
            }
        )
        return
    if not rows:
        console.print("no change in that range")
        return
    ops = [str(o) for o in Op]
    print_table(
        "changes per table"
        + (f" since {start.isoformat()}" if start else "")
        + (f" until {end.isoformat()}" if end else ""),
        ["table", *ops, "transactions", "first", "last"],
        [
            [
                t,
                *(f"{r[o]:,}" for o in ops),
                f"{r['transactions']:,}",
                r["first_commit_time"],
                r["last_commit_time"],
            ]
            for t, r in rows.items()
        ],
    )
