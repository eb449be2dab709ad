"""`redoline verify` and `redoline repair`: compare source and target, and make them equal."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from connectors.base import Database, TableFilter, open_database
from connectors.errors import ConfigError
from toolkit_cli.config import Config
from toolkit_cli.options import (
    ConfigOpt,
    JsonOpt,
    SourceOpt,
    TargetOpt,
    check_table_patterns,
    load_config,
)
from toolkit_cli.output import console, err_console, print_json, print_table
from verify import (
    TablePair,
    VerifyOptions,
    VerifyResult,
    plan_tables,
    raise_for_errors,
    run_verify,
)
from verify.report import render_html, render_json, render_markdown

__all__ = ["register"]

TablesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tables",
        help="Only these source tables: schema.table globs (repeat the flag, or separate "
        "with commas). Replaces [tables] include; renames, columns and where still apply.",
        show_default=False,
    ),
]
ChunkOpt = Annotated[
    int | None,
    typer.Option(
        "--chunk-rows", min=1, help="Rows per checksum chunk. Default: [verify] chunk_rows."
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="Tables compared at once; each side runs up to 2x this many checksum queries "
        "concurrently. Default: [verify] workers.",
    ),
]
MaxDiffsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-diffs",
        min=1,
        help="Stop bisecting a table after this many differing rows (bounds the work on a "
        "badly diverged table). Default: [verify] max_diffs.",
    ),
]
RecheckOpt = Annotated[
    float | None,
    typer.Option(
        "--recheck-wait",
        min=0,
        help="Seconds to wait before differences are re-checked when the target has no apply "
        "checkpoint to wait on (with one, verify waits until apply passes the source's end "
        "position at the start). Default: [verify] recheck_wait.",
    ),
]
NoRecheckOpt = Annotated[
    bool,
    typer.Option("--no-recheck", help="Report the first pass as is (no online re-check)."),
]


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
    app.command("repair")(repair)


def verify(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    target: TargetOpt = None,
    tables: TablesOpt = None,
    chunk_rows: ChunkOpt = None,
    workers: WorkersOpt = None,
    max_diffs: MaxDiffsOpt = None,
    recheck_wait: RecheckOpt = None,
    no_recheck: NoRecheckOpt = False,
    report_json: Annotated[
        Path | None, typer.Option("--report-json", help="Write the full result as JSON here.")
    ] = None,
    report_md: Annotated[
        Path | None, typer.Option("--report-md", help="Write a Markdown report here.")
    ] = None,
    report_html: Annotated[
        Path | None, typer.Option("--report-html", help="Write a standalone HTML report here.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Compare the source's tables with the target's, row by row, without moving the rows.

    Both databases checksum chunks of rows over a canonical encoding that is identical across
    engines; differing chunks are bisected down to rows, classified as missing / extra /
    different, and re-checked after replication lag so only persistent differences are
    reported. An odbc://, oracle:// or sqlserver:// source is hashed on this host
    (docs/verify.md, Limits). Exit code 0: equal; 1: differences found; 2 or more: an error.
    """
    cfg = load_config(config, source=source, target=target)
    src, tgt = _databases(cfg)
    pairs = _pairs(cfg, src, tables)
    options = _options(cfg, chunk_rows, workers, max_diffs, recheck_wait, no_recheck)
    with _progress(not json_out) as progress:
        result = run_verify(src, tgt, pairs, options, progress=progress)
    _write_reports(result, report_json, report_md, report_html)
    if json_out:
        print_json(result.to_json())
    else:
        _print_summary(result)
    raise_for_errors(result)
    raise typer.Exit(0 if result.equal else 1)


def repair(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    target: TargetOpt = None,
    tables: TablesOpt = None,
    chunk_rows: ChunkOpt = None,
    workers: WorkersOpt = None,
    max_diffs: MaxDiffsOpt = None,
    recheck_wait: RecheckOpt = None,
    no_recheck: NoRecheckOpt = False,
    execute: Annotated[
        bool,
        typer.Option(
            "--execute", help="Run the SQL on the target in one transaction, then verify again."
        ),
    ] = False,
    from_report: Annotated[
        Path | None,
        typer.Option(
            "--from-report",
            help="Use a saved `verify --report-json` result instead of comparing now.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Print (or --execute) the SQL that makes the target equal the source.

    Rows missing in the target are inserted, extra rows deleted, different rows updated;
    keyless tables get or lose the exact number of duplicate copies. Without --execute the
    script is printed and nothing changes. Exit code 0: the target is (now) equal; 1:
    differences remain (or were only printed); 2 or more: an error.
    """
    from verify.repair import execute_repair, render_script, repair_plan

    cfg = load_config(config, source=source, target=target)
    src, tgt = _databases(cfg)
    options = _options(cfg, chunk_rows, workers, max_diffs, recheck_wait, no_recheck)
    if from_report is not None:
        result = _load_report(from_report, tgt, tables)
        pairs = [
            TablePair(t.source_table, t.target_table, t.columns or None, t.where)
            for t in result.tables
        ]
    else:
        pairs = _pairs(cfg, src, tables)
        with _progress(not json_out) as progress:
            result = run_verify(src, tgt, pairs, options, progress=progress)
        raise_for_errors(result)
    plan = repair_plan(result, tgt)
    if not execute:
        if json_out:
            print_json(
                {
                    "equal": result.equal,
                    "tables": {str(r.table.target_table): r.statements for r in plan},
                }
            )
        elif plan:
            typer.echo(render_script(plan, tgt), nl=False)
        else:
            err_console.print("[green]Nothing to repair:[/] the target equals the source.")
        raise typer.Exit(0 if result.equal else 1)
    count = execute_repair(plan, tgt)
    repaired = {r.table.source_table for r in plan}
    again_pairs = [p for p in pairs if p.source in repaired]
    after = run_verify(
        src, tgt, again_pairs, VerifyOptions(**{**options.__dict__, "recheck": False})
    )
    if json_out:
        print_json({"statements": count, "after": after.to_json()})
    else:
        err_console.print(f"executed {count} statement(s) on {escape(tgt.endpoint.display)}")
        _print_summary(after)
    raise_for_errors(after)
    raise typer.Exit(0 if after.equal else 1)


# --------------------------------------------------------------------------- helpers


def _databases(cfg: Config) -> tuple[Database, Database]:
    src = open_database(cfg.source().endpoint)
    check_table_patterns(src, cfg.tables)
    return src, open_database(cfg.target().endpoint)


def _patterns(tables: Sequence[str] | None) -> list[str]:
    out = []
    for item in tables or ():
        out += [p.strip() for p in item.split(",") if p.strip()]
    for pattern in out:
        if "." not in pattern:
            raise ConfigError(
                f"--tables {pattern!r} is not of the form schema.table (globs allowed)"
            )
    return out


def _pairs(cfg: Config, src: Database, tables: Sequence[str] | None) -> list[TablePair]:
    pairs = plan_tables(src, cfg.tables, _patterns(tables))
    if not pairs:
        raise ConfigError(
            f"no table of {src.endpoint.display} matches the selection",
            hint="check --tables / [tables] include (patterns are schema.table globs)",
        )
    return pairs


def _options(
    cfg: Config,
    chunk_rows: int | None,
    workers: int | None,
    max_diffs: int | None,
    recheck_wait: float | None,
    no_recheck: bool,
) -> VerifyOptions:
    v = cfg.verify
    return VerifyOptions(
        chunk_rows=chunk_rows or v.chunk_rows,
        workers=workers or v.workers,
        max_diffs=max_diffs or v.max_diffs,
        recheck=not no_recheck,
        recheck_wait=v.recheck_wait if recheck_wait is None else recheck_wait,
    )


def _load_report(path: Path, tgt: Database, tables: Sequence[str] | None) -> VerifyResult:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        result = VerifyResult.from_json(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"cannot read the verify report {path}: {exc}",
            hint="give a file written by `redoline verify --report-json`",
        ) from None
    if result.target != tgt.endpoint.display:
        raise ConfigError(
            f"the report {path} compares target {result.target}, not {tgt.endpoint.display}",
            hint="repair the target the report was made for (--target)",
        )
    patterns = _patterns(tables)
    if patterns:
        keep = TableFilter(tuple(patterns))
        result.tables = [t for t in result.tables if keep(t.source_table)]
    return result


@contextmanager
def _progress(show: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    if not show or not err_console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        tasks: dict[str, Any] = {}

        def update(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = progress.add_task(escape(table), total=total)
            progress.update(tasks[table], completed=done, total=total)

        yield update


def _write_reports(
    result: VerifyResult, as_json: Path | None, as_md: Path | None, as_html: Path | None
) -> None:
    for path, render in ((as_json, render_json), (as_md, render_markdown), (as_html, render_html)):
        if path is None:
            continue
        try:
            path.write_text(render(result), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write the report {path}: {exc.strerror}") from None


def _print_summary(result: VerifyResult) -> None:
    rows = []
    for t in result.tables:
        c = t.counts
        status = "[red]error[/]" if t.error else "[green]equal[/]" if t.equal else "[red]differs[/]"
        rows.append(
            [
                escape(str(t.source_table)),
                escape(str(t.target_table)),
                status,
                str(t.source_rows),
                str(t.target_rows),
                str(c["missing"]),
                str(c["extra"]),
                str(c["different"]),
                str(t.transient),
                f"{t.seconds.get('total', 0.0):.2f}",
            ]
        )
    print_table(
        f"verify {escape(result.source)} → {escape(result.target)}",
        [
            "source",
            "target",
            "",
            "src rows",
            "tgt rows",
            "missing",
            "extra",
            "different",
            "transient",
            "s",
        ],
        rows,
    )
    for t in result.tables:
        if t.error:
            continue
        for text in t.schema_diffs:
            console.print(f"  {escape(str(t.source_table))}: {escape(text)}")
        for d in t.diffs[:10]:
            where = d.key if d.key else {"row": d.row_hash, "copies": d.count}
            cols = f" columns {', '.join(d.columns)}" if d.columns else ""
            console.print(f"  {escape(str(t.source_table))}: {d.kind} {escape(str(where))}{cols}")
        if len(t.diffs) > 10:
            console.print(f"  ... {len(t.diffs) - 10} more (see --report-json/--report-md)")
    totals = result.totals
    verdict = "[green]equal[/]" if result.equal else "[red]differences found[/]"
    console.print(
        f"{verdict}: {totals['missing']} missing, {totals['extra']} extra, "
        f"{totals['different']} different, {totals['transient']} transient "
        f"({result.seconds:.2f} s)"
    )
