"""Verify reports: JSON for machines, Markdown and a standalone HTML page for people.

Each shows a per-table summary (rows, chunks, missing / extra / different, transient,
timings) and sample rows side by side, source beside target, differing columns marked.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any

from verify.model import RowDiff, TableResult, VerifyResult, encode_value

__all__ = ["render_html", "render_json", "render_markdown"]

#: sample rows per table in the human reports (the JSON report has every difference)
SAMPLES = 20


def render_json(result: VerifyResult) -> str:
    """The full result as JSON; ``redoline repair --from-report`` reads it back."""
    return json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n"


def _status(table: TableResult) -> str:
    if table.error is not None:
        return "error"
    if table.equal:
        return "equal"
    return "differs" + (" (truncated)" if table.truncated else "")


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    encoded = encode_value(value)
    if isinstance(encoded, dict):
        ((kind, inner),) = encoded.items()
        return f"{kind}:{inner}"
    text = str(encoded)
    if isinstance(value, str):
        text = repr(value)  # shows empty strings and trailing spaces
    return text if len(text) <= 80 else text[:77] + "..."


def _key(diff: RowDiff) -> str:
    if diff.key is None:
        return f"row {diff.row_hash} ×{diff.count}"
    return ", ".join(f"{k}={_cell(v)}" for k, v in diff.key.items())


def _summary_rows(result: VerifyResult) -> Iterable[list[str]]:
    for t in result.tables:
        c = t.counts
        yield [
            str(t.source_table),
            str(t.target_table),
            _status(t),
            t.mode,
            str(t.source_rows),
            str(t.target_rows),
            f"{t.mismatched_chunks}/{t.chunks}",
            str(c["missing"]),
            str(c["extra"]),
            str(c["different"]),
            str(t.transient),
            f"{t.seconds.get('total', 0.0):.2f}",
        ]


_HEAD = [
    "source table",
    "target table",
    "status",
    "mode",
    "source rows",
    "target rows",
    "chunks differing",
    "missing",
    "extra",
    "different",
    "transient",
    "seconds",
]


def _sample(table: TableResult) -> list[tuple[RowDiff, list[tuple[str, str, str, bool]]]]:
    out = []
    for diff in table.diffs[:SAMPLES]:
        cols = []
        for name in table.columns:
            s = _cell(diff.source.get(name)) if diff.source is not None else ""
            t = _cell(diff.target.get(name)) if diff.target is not None else ""
            cols.append((name, s, t, name in diff.columns))
        out.append((diff, cols))
    return out


def render_markdown(result: VerifyResult) -> str:
    """A Markdown report: summary table, then sample rows per differing table."""
    totals = result.totals
    lines = [
        "# redoline verify",
        "",
        f"- source: `{result.source}`",
        f"- target: `{result.target}`",
        f"- started: {result.started.isoformat(timespec='seconds')}, took {result.seconds:.2f} s",
        f"- result: **{'equal' if result.equal else 'differences found'}** — "
        f"{totals['missing']} missing, {totals['extra']} extra, {totals['different']} "
        f"different, {totals['transient']} transient",
        "",
        "| " + " | ".join(_HEAD) + " |",
        "|" + "---|" * len(_HEAD),
    ]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in _summary_rows(result)]
    for table in result.tables:
        if table.error is not None:
            lines += ["", f"## {table.source_table}: error", "", f"    {table.error}"]
            continue
        if not table.diffs and not table.schema_diffs:
            continue
        lines += ["", f"## {table.source_table} → {table.target_table}", ""]
        lines += [f"- {_md(text)}" for text in table.schema_diffs]
        if len(table.diffs) > SAMPLES:
            lines.append(f"First {SAMPLES} of {len(table.diffs)} differences.\n")
        for diff, cols in _sample(table):
            lines += [
                f"**{diff.kind}** {_md(_key(diff))}",
                "",
                "| column | source | target |",
                "|---|---|---|",
            ]
            for name, s, t, differs in cols:
                mark = " ⚠" if differs else ""
                lines.append(f"| {_md(name)}{mark} | {_md(s)} | {_md(t)} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "\\n")


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}
th{background:#f3f3f3}
td.num{text-align:right}
.equal{color:#176617;font-weight:bold}.differs,.error{color:#a31515;font-weight:bold}
tr.diff td{background:#fff0f0}
code{background:#f5f5f5;padding:0 .2em}
h2{margin-top:2em;font-size:1.15em}
"""


def render_html(result: VerifyResult) -> str:
    """A standalone HTML page (inline CSS, no scripts)."""
    e = html.escape
    totals = result.totals
    verdict = "equal" if result.equal else "differs"
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>redoline verify</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>redoline verify</h1>",
        f"<p>source <code>{e(result.source)}</code> → target <code>{e(result.target)}</code>"
        f"<br>started {e(result.started.isoformat(timespec='seconds'))}, took "
        f"{result.seconds:.2f} s</p>",
        f"<p class='{verdict}'>{'equal' if result.equal else 'differences found'}: "
        f"{totals['missing']} missing, {totals['extra']} extra, {totals['different']} "
        f"different, {totals['transient']} transient</p>",
        "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in _HEAD) + "</tr>",
    ]
    for row in _summary_rows(result):
        cls = row[2].split()[0]
        cells = [f"<td>{e(c)}</td>" for c in row[:2]]
        cells.append(f"<td class='{cls}'>{e(row[2])}</td><td>{e(row[3])}</td>")
        cells += [f"<td class='num'>{e(c)}</td>" for c in row[4:]]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    for table in result.tables:
        if table.error is not None:
            out.append(f"<h2>{e(str(table.source_table))}: error</h2><pre>{e(table.error)}</pre>")
            continue
        if not table.diffs and not table.schema_diffs:
            continue
        out.append(f"<h2>{e(str(table.source_table))} → {e(str(table.target_table))}</h2>")
        out += [f"<p class='differs'>{e(text)}</p>" for text in table.schema_diffs]
        if len(table.diffs) > SAMPLES:
            out.append(f"<p>First {SAMPLES} of {len(table.diffs)} differences.</p>")
        for diff, cols in _sample(table):
            out.append(f"<p><b>{e(diff.kind)}</b> {e(_key(diff))}</p>")
            out.append("<table><tr><th>column</th><th>source</th><th>target</th></tr>")
            for name, s, t, differs in cols:
                cls = " class='diff'" if differs else ""
                out.append(f"<tr{cls}><td>{e(name)}</td><td>{e(s)}</td><td>{e(t)}</td></tr>")
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
