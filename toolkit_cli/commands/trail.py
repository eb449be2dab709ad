"""`redoline trail ...`: look into a change trail — stats, dump, check, SQL queries, prune."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from apply.point import parse_time
from capture.codec import to_jsonable
from capture.retention import RetentionPolicy, apply_retention, consumer_holds
from capture.trail import (
    Mark,
    TrailInfo,
    TrailReader,
    check_trail,
    consumers,
    list_marks,
    load_key,
    remove_consumer,
    trail_info,
)
from connectors.base import position_comparator
from connectors.errors import ConfigError, TrailError
from connectors.model import Change, Op, Transaction
from toolkit_cli.commands._trail_history import key_values, row_history, table_counts
from toolkit_cli.options import ConfigOpt, JsonOpt, load_config
from toolkit_cli.output import console, print_json, print_table

__all__ = ["app"]

app = typer.Typer(
    help="Inspect a change trail: statistics, readable or JSON dumps, a full integrity check, "
    "SQL over its changes (DuckDB), and retention.",
    no_args_is_help=True,
)

TrailDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--trail",
        help="Trail directory. Overrides [trail] dir and $REDOLINE_TRAIL_DIR. Default: ./trail",
        show_default=False,
    ),
]
KeyFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="File holding the trail's 32-byte AES-256 key (raw, hex or base64). Overrides "
        "[trail] key_file.",
        show_default=False,
    ),
]
KeyEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--key-env",
        help="Environment variable holding the trail key (hex or base64). Overrides "
        "[trail] key_env.",
        show_default=False,
    ),
]


def _trail(
    config: Path | None, trail: Path | None, key_file: Path | None, key_env: str | None
) -> tuple[Path, bytes | None]:
    cfg = load_config(config, trail=trail)
    key = load_key(file=key_file, env=key_env) if key_file or key_env else cfg.trail.key()
    directory = cfg.trail.dir
    if not directory.is_dir():
        raise ConfigError(
            f"trail directory {directory} does not exist",
            hint="pass --trail DIR (or set [trail] dir)",
        )
    return directory, key


def _parse_time(text: str | None, flag: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time (e.g. 2025-06-01T10:00:00+00:00)", param_hint=flag
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _aware(when: dt.datetime) -> dt.datetime:
    # naive commit times are taken as UTC, so they compare with --since/--until
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _start_op(directory: Path, key: bytes | None, from_op: int | None) -> int:
    if from_op is not None:
        return from_op
    return trail_info(directory, key=key).first_op or 1


def _json_text(row: Any) -> str | None:
    return None if row is None else json.dumps(to_jsonable(row), separators=(",", ":"))


def _change_dict(txn: Transaction, op_number: int, change: Change) -> dict[str, Any]:
    return {
        "op_number": op_number,
        "commit_time": txn.commit_time.isoformat(),
        "position": txn.position,
        "xid": txn.xid,
        "origin": txn.origin,
        "op": str(change.op),
        "schema": change.table.schema,
        "table": change.table.name,
        "schema_version": change.schema_version,
        "key": to_jsonable(change.key),
        "before": to_jsonable(change.before),
        "after": to_jsonable(change.after),
        "row_id": change.row_id,
        "ddl": change.ddl,
    }


def _changes(
    directory: Path,
    key: bytes | None,
    *,
    tables: list[str] | None = None,
    ops: list[str] | None = None,
    from_op: int | None = None,
    to_op: int | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Iterator[tuple[Transaction, int, Change]]:
    """Changes that pass the filters, with their transaction and operation number."""
    wanted_ops = {Op(o.lower()) for o in ops} if ops else None
    start = _start_op(directory, key, from_op)
    for txn in TrailReader(directory, key=key).transactions(start):
        if to_op is not None and txn.first_op > to_op:
            return
        if since is not None or until is not None:
            when = _aware(txn.commit_time)
            if since is not None and when < since:
                continue
            if until is not None and when >= until:
                continue
        for number, change in enumerate(txn.changes, txn.first_op):
            if number < start or (to_op is not None and number > to_op):
                continue
            if wanted_ops is not None and change.op not in wanted_ops:
                continue
            if tables and not any(fnmatch.fnmatchcase(str(change.table), t) for t in tables):
                continue
            yield txn, number, change


@app.command()
def stats(
    trail: TrailDirOpt = None,
    key_file: KeyFileOpt = None,
    key_env: KeyEnvOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Segments, transactions, changes per table and operation, first/last position and
    time, bytes on disk against uncompressed bytes, and the restore points (`redoline mark`)
    with the operation each follows (reads the whole trail)."""
    directory, key = _trail(config, trail, key_file, key_env)
    info = trail_info(directory, key=key)
    marks = list_marks(directory)
    scan = _scan(directory, key, info, marks)
    summary = _stats_summary(directory, info, scan, marks)
    if json_out:
        print_json(summary)
        return
    _print_stats(directory, info, scan, summary, marks)


@dataclass
class _Scanned:
    """What `trail stats` found reading the whole trail."""

    #: table -> operation -> changes
    tables: dict[str, dict[str, int]]
    changes: int
    transactions: int
    first: Transaction | None
    last: Transaction | None
    #: mark name -> the operation it follows (None: not in the trail yet)
    after_mark: dict[str, int | None]


def _scan(directory: Path, key: bytes | None, info: TrailInfo, marks: list[Mark]) -> _Scanned:
    per_table: Counter[tuple[str, str]] = Counter()
    txns = 0
    first: Transaction | None = None
    last: Transaction | None = None
    # a position mark resolves at the first transaction after it (see apply.point.mark_op)
    after_mark: dict[str, int | None] = {m.name: m.op for m in marks}
    waiting = [m for m in marks if m.position is not None]
    compare = position_comparator(info.source_engine) if waiting and info.source_engine else None
    for txn in TrailReader(directory, key=key).transactions(info.first_op or 1):
        txns += 1
        first = first or txn
        last = txn
        for change in txn.changes:
            per_table[(str(change.table), str(change.op))] += 1
        if compare is not None and waiting:
            for m in list(waiting):
                assert m.position is not None
                if txn.first_op > m.trail_last_op and compare(txn.position, m.position) > 0:
                    after_mark[m.name] = txn.first_op - 1
                    waiting.remove(m)
    tables: dict[str, dict[str, int]] = {}
    for (table, op), n in sorted(per_table.items()):
        tables.setdefault(table, {})[op] = n
    return _Scanned(tables, sum(per_table.values()), txns, first, last, after_mark)


def _stats_summary(
    directory: Path, info: TrailInfo, scan: _Scanned, marks: list[Mark]
) -> dict[str, Any]:
    first, last = scan.first, scan.last
    return {
        "trail": str(directory),
        "source_id": info.source_id,
        "trail_id": info.trail_id or None,
        "format_version": info.format_version or None,
        "source_engine": info.source_engine or None,
        "source_dialect": info.source_dialect or None,
        "position_scheme": info.position_scheme or None,
        "row_ids": info.row_ids,
        "encrypted": info.encrypted,
        "segments": info.segment_count,
        "sealed_segments": info.sealed_count,
        "transactions": scan.transactions,
        "changes": scan.changes,
        "first_op": info.first_op,
        "last_op": info.last_op,
        "first_position": first.position if first else None,
        "last_position": last.position if last else None,
        "first_commit_time": first.commit_time.isoformat() if first else None,
        "last_commit_time": last.commit_time.isoformat() if last else None,
        "bytes_on_disk": info.bytes_on_disk,
        "bytes_uncompressed": info.raw_bytes,
        "tables": scan.tables,
        "marks": [{**m.to_json(), "after_op": scan.after_mark[m.name]} for m in marks],
    }


def _print_stats(
    directory: Path, info: TrailInfo, scan: _Scanned, summary: dict[str, Any], marks: list[Mark]
) -> None:
    ratio = info.raw_bytes / info.bytes_on_disk if info.bytes_on_disk else 0.0
    grid = Table.grid(padding=(0, 2))
    for label, value in (
        ("trail", str(directory)),
        ("source", info.source_id or "-"),
        ("trail id", info.trail_id or "- (format 1)"),
        (
            "source engine",
            f"{info.source_engine or '-'} (dialect {info.source_dialect or '-'}, positions "
            f"{info.position_scheme or '-'}{', row ids' if info.row_ids else ''})",
        ),
        ("segments", f"{info.segment_count} ({info.sealed_count} sealed)"),
        ("transactions", f"{scan.transactions:,}"),
        ("changes", f"{summary['changes']:,}  (operations {info.first_op}..{info.last_op})"),
        ("first", f"{summary['first_position']}  {summary['first_commit_time']}"),
        ("last", f"{summary['last_position']}  {summary['last_commit_time']}"),
        (
            "bytes",
            f"{info.bytes_on_disk:,} on disk, {info.raw_bytes:,} uncompressed (x{ratio:.1f})",
        ),
        ("encrypted", "yes" if info.encrypted else "no"),
    ):
        grid.add_row(f"[bold]{label}[/]", escape(str(value)))
    console.print(grid)
    ops = [str(o) for o in Op]
    rows = [[t, *(f"{counts.get(o, 0):,}" for o in ops)] for t, counts in scan.tables.items()]
    if rows:
        print_table("changes per table", ["table", *ops], rows)
    if marks:
        after_mark = scan.after_mark
        print_table(
            "marks (restore points)",
            ["name", "marked at", "point", "after operation"],
            [
                [
                    m.name,
                    m.time.isoformat(),
                    f"source position {m.position}" if m.position else f"operation {m.op}",
                    "not in the trail yet" if after_mark[m.name] is None else after_mark[m.name],
                ]
                for m in marks
            ],
        )


@app.command()
def dump(
    trail: TrailDirOpt = None,
    table: Annotated[
        list[str] | None,
        typer.Option("--table", help="Only this table (schema.table; * and ? match). Repeatable."),
    ] = None,
    op: Annotated[
        list[str] | None,
        typer.Option(
            "--op", help="Only this operation (insert/update/delete/truncate/ddl). Repeatable."
        ),
    ] = None,
    from_op: Annotated[
        int | None, typer.Option("--from-op", min=1, help="First operation number.")
    ] = None,
    to_op: Annotated[
        int | None, typer.Option("--to-op", min=1, help="Last operation number.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Commit time from (ISO 8601; naive means UTC)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Commit time before (ISO 8601).")
    ] = None,
    key_file: KeyFileOpt = None,
    key_env: KeyEnvOpt = None,
    config: ConfigOpt = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object per change (JSON lines).")
    ] = False,
) -> None:
    """Print the trail's changes, readable or as JSON lines, with filters."""
    if op:
        bad = [o for o in op if o.lower() not in {str(x) for x in Op}]
        if bad:
            raise typer.BadParameter(f"unknown operation {bad[0]!r}", param_hint="--op")
    directory, key = _trail(config, trail, key_file, key_env)
    found = _changes(
        directory,
        key,
        tables=table,
        ops=op,
        from_op=from_op,
        to_op=to_op,
        since=_parse_time(since, "--since"),
        until=_parse_time(until, "--until"),
    )
    out = sys.stdout
    for txn, number, change in found:
        if json_out:
            out.write(json.dumps(_change_dict(txn, number, change), separators=(",", ":")))
            out.write("\n")
            continue
        head = (
            f"[bold]#{number}[/] {escape(txn.commit_time.isoformat())} "
            f"{escape(txn.position)} xid={escape(txn.xid)} "
            f"[cyan]{change.op.upper()}[/] {escape(str(change.table))}"
            f" v{change.schema_version}"
        )
        parts = [head]
        for label in ("key", "before", "after"):
            row = getattr(change, label)
            if row is not None:
                parts.append(f"  {label}={escape(_json_text(row) or '')}")
        if change.ddl:
            parts.append(f"  ddl={escape(change.ddl)}")
        if change.table_schema is not None and change.op is Op.DDL:
            cols = ", ".join(c.name for c in change.table_schema.columns)
            parts.append(f"  definition v{change.table_schema.version}: ({escape(cols)})")
        console.print("\n".join(parts), highlight=False, soft_wrap=True)
    out.flush()


@app.command()
def check(
    trail: TrailDirOpt = None,
    key_file: KeyFileOpt = None,
    key_env: KeyEnvOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify the whole trail: headers, every block's CRC32C, sealed segments' SHA-256,
    sequence and operation-number continuity, decryption. Exit 0 when clean, 7 when not."""
    directory, key = _trail(config, trail, key_file, key_env)
    try:
        report = check_trail(directory, key=key)
    except TrailError as exc:
        if json_out:
            print_json({"ok": False, "trail": str(directory), "error": str(exc)})
        else:
            console.print(f"[bold red]corrupt:[/] {escape(exc.message)}", highlight=False)
            if exc.hint:
                console.print(f"[yellow]hint:[/] {escape(exc.hint)}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    if json_out:
        print_json({"ok": True, "trail": str(directory), **to_jsonable(vars_of(report))})
        return
    console.print(
        f"[bold green]ok[/]: {report.segments} segments, {report.transactions:,} transactions, "
        f"{report.changes:,} changes (operations {report.first_op}..{report.last_op})",
        highlight=False,
    )
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def vars_of(obj: Any) -> dict[str, Any]:
    """Fields of a slotted dataclass as a dict."""
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def _load_duckdb(directory: Path, key: bytes | None, from_op: int | None, to_op: int | None) -> Any:
    import duckdb
    import pyarrow as pa

    cols: dict[str, list[Any]] = {
        name: []
        for name in (
            "op_number",
            "commit_time",
            "position",
            "xid",
            "origin",
            "op",
            "schema",
            "table",
            "schema_version",
            "key",
            "before",
            "after",
            "row_id",
            "ddl",
            "txn_first_op",
            "txn_changes",
        )
    }
    for txn, number, change in _changes(directory, key, from_op=from_op, to_op=to_op):
        cols["op_number"].append(number)
        # naive UTC: DuckDB hands TIMESTAMPTZ back to Python only with pytz installed
        cols["commit_time"].append(_aware(txn.commit_time).astimezone(dt.UTC).replace(tzinfo=None))
        cols["position"].append(txn.position)
        cols["xid"].append(txn.xid)
        cols["origin"].append(txn.origin)
        cols["op"].append(str(change.op))
        cols["schema"].append(change.table.schema)
        cols["table"].append(change.table.name)
        cols["schema_version"].append(change.schema_version)
        cols["key"].append(_json_text(change.key))
        cols["before"].append(_json_text(change.before))
        cols["after"].append(_json_text(change.after))
        cols["row_id"].append(change.row_id)
        cols["ddl"].append(change.ddl)
        cols["txn_first_op"].append(txn.first_op)
        cols["txn_changes"].append(len(txn.changes))
    schema = pa.schema(
        [
            ("op_number", pa.int64()),
            ("commit_time", pa.timestamp("us")),
            ("position", pa.string()),
            ("xid", pa.string()),
            ("origin", pa.string()),
            ("op", pa.string()),
            ("schema", pa.string()),
            ("table", pa.string()),
            ("schema_version", pa.int32()),
            ("key", pa.string()),
            ("before", pa.string()),
            ("after", pa.string()),
            ("row_id", pa.string()),
            ("ddl", pa.string()),
            ("txn_first_op", pa.int64()),
            ("txn_changes", pa.int32()),
        ]
    )
    arrow = pa.table(cols, schema=schema)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("changes_arrow", arrow)
    con.execute(
        """CREATE TEMP TABLE changes AS SELECT op_number, commit_time, position, xid, origin,
           op, "schema", "table", "schema" || '.' || "table" AS qualified_table, schema_version,
           CAST(key AS JSON) AS key, CAST(before AS JSON) AS before,
           CAST(after AS JSON) AS after, row_id, ddl, txn_first_op, txn_changes
           FROM changes_arrow"""
    )
    con.unregister("changes_arrow")
    return con


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL over the table `changes` (DuckDB dialect).")],
    trail: TrailDirOpt = None,
    from_op: Annotated[
        int | None, typer.Option("--from-op", min=1, help="Load changes from this operation on.")
    ] = None,
    to_op: Annotated[
        int | None, typer.Option("--to-op", min=1, help="Load changes up to this operation.")
    ] = None,
    key_file: KeyFileOpt = None,
    key_env: KeyEnvOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run SQL over the trail, exposed to DuckDB as the table `changes`.

    Columns: op_number, commit_time (UTC), position, xid, origin, op, schema, "table",
    qualified_table, schema_version, key/before/after (JSON), row_id, ddl, txn_first_op,
    txn_changes. Example: rows per minute changed in shop.orders between 10:00 and 10:05::

        redoline trail query "SELECT date_trunc('minute', commit_time) AS minute, count(*)
          FROM changes WHERE qualified_table = 'shop.orders'
          AND commit_time >= '2025-06-01 10:00' AND commit_time < '2025-06-01 10:05'
          GROUP BY 1 ORDER BY 1"
    """
    import duckdb

    directory, key = _trail(config, trail, key_file, key_env)
    con = _load_duckdb(directory, key, from_op, to_op)
    try:
        cursor = con.execute(sql)
    except duckdb.Error as exc:
        raise typer.BadParameter(str(exc).splitlines()[0], param_hint="SQL") from None
    if cursor.description is None:
        return
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    if json_out:
        print_json([dict(zip(names, row, strict=True)) for row in rows])
        return
    print_table("", names, [["NULL" if v is None else v for v in row] for row in rows])


@app.command()
def prune(
    trail: TrailDirOpt = None,
    keep_days: Annotated[
        float | None, typer.Option("--keep-days", min=0, help="Keep segments younger than this.")
    ] = None,
    keep_bytes: Annotated[
        int | None,
        typer.Option("--keep-bytes", min=0, help="Keep at least this many newest bytes."),
    ] = None,
    keep_segments: Annotated[
        int | None, typer.Option("--keep-segments", min=0, help="Keep at least this many segments.")
    ] = None,
    without_consumers: Annotated[
        bool,
        typer.Option(
            "--without-consumers",
            help="Delete even when no consumer is registered (otherwise nothing is deleted).",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Only say what would go, and which consumer holds what."),
    ] = False,
    forget: Annotated[
        list[str] | None,
        typer.Option(
            "--forget",
            help="Unregister this consumer first (repeatable): a name nothing updates any "
            "more (an old target, or a name earlier versions used) holds segments forever.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Delete sealed segments every registered consumer is past, within the retention
    policy (flags override [trail] keep_days / keep_bytes / keep_segments)."""
    cfg = load_config(config, trail=trail)
    for name in forget or ():
        if name not in consumers(cfg.trail.dir):
            raise typer.BadParameter(f"no consumer named {name!r}", param_hint="--forget")
        remove_consumer(cfg.trail.dir, name)
    policy = RetentionPolicy(
        keep_days=keep_days if keep_days is not None else cfg.trail.keep_days,
        keep_bytes=keep_bytes if keep_bytes is not None else cfg.trail.keep_bytes,
        keep_segments=keep_segments if keep_segments is not None else cfg.trail.keep_segments,
        allow_without_consumers=without_consumers,
    )
    plan = apply_retention(cfg.trail.dir, policy, dry_run=dry_run)
    holds = consumer_holds(cfg.trail.dir)
    if json_out:
        print_json(
            {
                "dry_run": dry_run,
                "deleted": [s.path.name for s in plan.delete],
                "freed_bytes": plan.freed_bytes,
                "kept": len(plan.keep),
                "reason": plan.reason,
                "consumers": [
                    {
                        "name": h.name,
                        "applied_op": h.applied_op,
                        "holds_segments": h.segments,
                        "holds_bytes": h.bytes,
                        "legacy_name": h.legacy,
                    }
                    for h in holds
                ],
            }
        )
        return
    for h in holds:
        note = (
            " -- a name earlier versions used: when nothing updates it any more, "
            f"`redoline trail prune --forget {h.name}`"
            if h.legacy
            else ""
        )
        console.print(
            f"consumer {escape(h.name)}: applied through operation {h.applied_op}, holds "
            f"{h.segments} sealed segments ({h.bytes:,} bytes){escape(note)}",
            highlight=False,
        )
    verb = "would delete" if dry_run else "deleted"
    console.print(
        f"{verb} {len(plan.delete)} segments ({plan.freed_bytes:,} bytes); "
        f"{len(plan.keep)} kept. {escape(plan.reason)}",
        highlight=False,
    )


@app.command()
def history(
    table: Annotated[
        str | None,
        typer.Argument(
            help="schema.table as the source names it. With --key: that table's row; without: "
            "a pattern (* and ?) for the counts, default every table.",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        list[str] | None,
        typer.Option(
            "--key",
            help="col=value identifying the row (repeatable, e.g. --key id=42 --key region=eu): "
            "every change of that row, following key changes. Without it: counts per table "
            "and operation.",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Commit time from (inclusive): ISO-8601 (no zone: UTC) or relative (-2h).",
            show_default=False,
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until", help="Commit time up to (inclusive), same forms.", show_default=False
        ),
    ] = None,
    trail: TrailDirOpt = None,
    key_file: KeyFileOpt = None,
    key_env: KeyEnvOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Who changed what: one row's every change (--key col=value: operation number, op, xid,
    commit time, before -> after, changed columns), or counts per table and operation in a
    commit-time range (--since/--until). Reads the retained trail; an unknown table or
    column exits 2."""
    directory, tkey = _trail(config, trail, key_file, key_env)
    start = parse_time(since) if since is not None else None
    end = parse_time(until) if until is not None else None
    if start is not None and end is not None and start > end:
        raise ConfigError(f"--since {since} is after --until {until}: the range is empty")
    if key:
        if table is None or any(ch in table for ch in "*?["):
            raise ConfigError("--key needs one table (schema.table), not a pattern")
        row_history(directory, tkey, table, key_values(key), start, end, json_out)
    else:
        table_counts(directory, tkey, table or "*", start, end, json_out)
