"""Repair: SQL that makes the target equal the source, from a verify result.

Per difference: a row missing in the target is inserted, an extra one deleted, a different
one updated (only the columns that differ). Keyless tables are multisets: ``count`` copies
are inserted, or ``count`` copies deleted through the engine's limited DELETE, matching
rows by the MD5 of their canonical text so any column type matches exactly. Literals and
quoting come from the target engine's checksum module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connectors.base import Database
from connectors.checksum import ChecksumSQL, checksum_sql
from connectors.model import Column
from verify.dialect import canonical_kind
from verify.model import DIFFERENT, EXTRA, MISSING, RowDiff, TableResult, VerifyResult

__all__ = ["TableRepair", "execute_repair", "render_script", "repair_plan"]


@dataclass
class TableRepair:
    """The statements that repair one table."""

    table: TableResult
    statements: list[str]


def repair_plan(result: VerifyResult, target: Database) -> list[TableRepair]:
    """Statements per table with differences (tables that errored are skipped)."""
    cs = checksum_sql(target, writable=True)
    out = []
    for table in result.tables:
        if table.error is None and table.diffs:
            out.append(TableRepair(table, _statements(table, target, cs)))
    return out


def _statements(table: TableResult, target: Database, cs: ChecksumSQL) -> list[str]:
    tcols = {c.name: c for c in table.target_columns}
    writable = [n for n in table.columns if not tcols[n].generated]
    name = target.qualified(table.target_table)
    key = list(table.key)
    out: list[str] = []
    inserts: list[str] = []

    def values(row: dict[str, object]) -> str:
        return "(" + ", ".join(cs.literal(row.get(n), tcols[n]) for n in writable) + ")"

    for diff in table.diffs:
        if diff.kind == MISSING:
            assert diff.source is not None
            inserts.extend([values(diff.source)] * diff.count)
        elif diff.kind == EXTRA:
            assert diff.target is not None
            if key:
                out.append(f"DELETE FROM {name} WHERE {_key_where(diff, key, tcols, target, cs)}")
            else:
                where = f"{_row_hash_sql(table, target, cs)} = '{diff.row_hash}'"
                out.append(cs.delete_copies(name, where, diff.count))
        elif diff.kind == DIFFERENT:
            assert diff.source is not None
            sets = [
                f"{target.quote(c)} = {cs.literal(diff.source.get(c), tcols[c])}"
                for c in diff.columns
                if not tcols[c].generated
            ]
            if sets:
                out.append(
                    f"UPDATE {name} SET {', '.join(sets)} "
                    f"WHERE {_key_where(diff, key, tcols, target, cs)}"
                )
    cols = ", ".join(target.quote(n) for n in writable)
    for start in range(0, len(inserts), 500):
        chunk = inserts[start : start + 500]
        out.append(f"INSERT INTO {name} ({cols}) VALUES " + ", ".join(chunk))
    return out


def _key_where(
    diff: RowDiff, key: list[str], tcols: dict[str, Column], target: Database, cs: ChecksumSQL
) -> str:
    # the target's own key values where we have them: they are in the target's types
    row = diff.target if diff.target is not None else diff.source
    assert row is not None
    return " AND ".join(cs.key_match(target.quote(k), row.get(k), tcols[k]) for k in key)


def _row_hash_sql(table: TableResult, target: Database, cs: ChecksumSQL) -> str:
    scols = {c.name: c for c in table.source_columns}
    pieces = []
    for col in table.target_columns:
        canon, scale = canonical_kind(scols[col.name], col)
        pieces.append(cs.canonical(target.quote(col.name), col, canon, scale))
    return cs.hash_hex(cs.row_text(pieces))


def render_script(repairs: Sequence[TableRepair], target: Database) -> str:
    """A printable script: one transaction, a comment per table."""
    cs = checksum_sql(target)
    lines = [f"-- redoline repair for {target.endpoint.display}"]
    lines += [f"{stmt};" for stmt in cs.script_prelude]
    lines.append("BEGIN;")
    for rep in repairs:
        counts = rep.table.counts
        lines.append(
            f"-- {rep.table.target_table}: {counts[MISSING]} missing, {counts[EXTRA]} extra, "
            f"{counts[DIFFERENT]} different"
        )
        lines += [f"{stmt};" for stmt in rep.statements]
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def execute_repair(repairs: Sequence[TableRepair], target: Database) -> int:
    """Run every table's statements in one target transaction; returns the statement count."""
    statements = [s for rep in repairs for s in rep.statements]
    if not statements:
        return 0
    cs = checksum_sql(target, writable=True)
    session = cs.session()
    try:
        session.run_script(statements)
    finally:
        session.close()
    return len(statements)
