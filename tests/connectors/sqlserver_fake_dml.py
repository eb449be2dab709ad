"""The T-SQL subset the tests' applications write, for the scripted SQL Server of
sqlserver_fake.py: CREATE TABLE, INSERT ... VALUES, UPDATE/DELETE ... WHERE col = value,
ALTER TABLE ... ADD / DROP COLUMN, EXEC sys.sp_cdc_enable_table with literals, and the
snapshot's key-range reads (as the transaction's snapshot sees the tables)."""

from __future__ import annotations

import decimal
import re
from typing import TYPE_CHECKING, Any

import pyodbc

from tests.connectors.sqlserver_fake import FakeTable, parse_type

if TYPE_CHECKING:
    from tests.connectors.sqlserver_fake import FakeCursor

__all__ = ["PATTERNS"]


def _literal(text: str, params: list[Any]) -> Any:
    text = text.strip()
    if text == "?":
        return params.pop(0)
    if text.upper() == "NULL":
        return None
    if text.startswith("N'") or text.startswith("'"):
        return text.split("'", 1)[1][:-1].replace("''", "'")
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return decimal.Decimal(text)


def _split(text: str) -> list[str]:
    """Comma-separated items, not splitting inside parentheses or quotes."""
    out, depth, cur, quoted = [], 0, "", False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        if not quoted and ch == "(":
            depth += 1
        if not quoted and ch == ")":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [o.strip() for o in out if o.strip()]


_NAME = r"\[((?:[^\]]|\]\])+)\]"
_TABLE = _NAME + r"\." + _NAME


def _create(cur: FakeCursor, m: re.Match[str], p: list[Any]) -> None:
    cols, pk = [], []
    for item in _split(m.group(3)):
        cm = re.fullmatch(_NAME + r"\s+(.+?)(\s+NOT NULL)?(\s+PRIMARY KEY)?", item, re.I)
        assert cm, item
        col = parse_type(cm.group(1), cm.group(2))
        col.nullable = not (cm.group(3) or cm.group(4))
        if cm.group(4):
            pk.append(col.name)
        cols.append(col)
    cur.server.create_table(m.group(1), m.group(2), cols, pk)


def _insert(cur: FakeCursor, m: re.Match[str], p: list[Any]) -> None:
    table = cur._table(m)
    rows = cur.conn.working(table)
    for group in re.findall(r"\(([^()]*)\)", m.group(3)):
        values = [_literal(v, p) for v in _split(group)]
        row = {c.name: v for c, v in zip(table.columns, values, strict=False)}
        for c in table.columns[len(values) :]:
            row[c.name] = None
        if table.pk and any(all(r[k] == row[k] for k in table.pk) for r in rows):
            raise pyodbc.IntegrityError(
                "23000", "[23000] Violation of PRIMARY KEY constraint. (2627)"
            )
        rows.append(row)
        cur._log(table, "insert", None, row)
    cur._done()


def _where(text: str, p: list[Any]) -> tuple[str, Any]:
    wm = re.fullmatch(_NAME + r"\s*=\s*(.+)", text.strip())
    assert wm, text
    return wm.group(1), _literal(wm.group(2), p)


def _update(cur: FakeCursor, m: re.Match[str], p: list[Any]) -> None:
    table = cur._table(m)
    sets = []
    for item in _split(m.group(3)):
        sm = re.fullmatch(_NAME + r"\s*=\s*(.+)", item)
        assert sm, item
        sets.append((sm.group(1), _literal(sm.group(2), p)))
    col, value = _where(m.group(4), p)
    rows = cur.conn.working(table)
    for i, row in enumerate(rows):
        if row[col] == value:
            new = dict(row)
            for name, v in sets:
                new[name] = v
            rows[i] = new
            cur._log(table, "update", row, new)
    cur._done()


def _delete(cur: FakeCursor, m: re.Match[str], p: list[Any]) -> None:
    table = cur._table(m)
    col, value = _where(m.group(3), p)
    rows = cur.conn.working(table)
    for row in [r for r in rows if r[col] == value]:
        rows.remove(row)
        cur._log(table, "delete", row, None)
    cur._done()


def _alter_add(cur: FakeCursor, m: re.Match[str], p: list[Any]) -> None:
    table = cur._table(m)
    table.columns.append(parse_type(m.group(3), m.group(4)))
    for row in table.rows:
        row[m.group(3)] = None
    cur.server.next_lsn()


def _alter_drop(cur: FakeCursor, m: re.Match[str], p: list[Any]) -> None:
    table = cur._table(m)
    table.columns = [c for c in table.columns if c.name != m.group(3)]
    for row in table.rows:
        row.pop(m.group(3), None)
    cur.server.next_lsn()


def _enable_literal(cur: FakeCursor, m: re.Match[str], p: list[Any]) -> None:
    cur.server.enable_table(m.group(1), m.group(2), m.group(3))


# ---------------------------------------------------------------------- snapshot reads


def _visible(cur: FakeCursor, table: FakeTable) -> list[dict[str, Any]]:
    if cur.conn.snapshot is not None:
        return cur.conn.snapshot.get((table.schema, table.name), [])
    return table.rows


def _plan(cur: FakeCursor, m: re.Match[str], p: list[Any]) -> list[tuple[Any, ...]]:
    table = cur._table(m, 2)
    keys = [r[m.group(1)] for r in _visible(cur, table)]
    return [(min(keys) if keys else None, max(keys) if keys else None, len(keys))]


def _select(cur: FakeCursor, m: re.Match[str], p: list[Any]) -> list[tuple[Any, ...]]:
    table = cur._table(m, 2)
    names = [n.replace("]]", "]") for n in re.findall(_NAME, m.group(1))]
    conds = []
    for cond in (m.group(4) or "").split(" AND ") if m.group(4) else []:
        cm = re.fullmatch(_NAME + r" (>=|<) \?", cond.strip())
        assert cm, f"the fake reads only key ranges, not {cond!r}"
        conds.append((cm.group(1), cm.group(2), p.pop(0)))
    out = []
    for row in _visible(cur, table):
        if all((row[c] >= v) if op == ">=" else (row[c] < v) for c, op, v in conds):
            out.append(tuple(cur._out(table.col(n), row[n]) for n in names))
    return out


PATTERNS = [
    (re.compile(r"CREATE TABLE " + _TABLE + r"\s*\((.*)\)", re.S | re.I), _create),
    (re.compile(r"INSERT INTO " + _TABLE + r" VALUES (.+)", re.S | re.I), _insert),
    (re.compile(r"UPDATE " + _TABLE + r" SET (.+?) WHERE (.+)", re.S | re.I), _update),
    (re.compile(r"DELETE FROM " + _TABLE + r" WHERE (.+)", re.S | re.I), _delete),
    (re.compile(r"ALTER TABLE " + _TABLE + r" ADD " + _NAME + r" (.+)", re.I), _alter_add),
    (re.compile(r"ALTER TABLE " + _TABLE + r" DROP COLUMN " + _NAME, re.I), _alter_drop),
    (
        re.compile(
            r"EXEC sys\.sp_cdc_enable_table @source_schema = N'(\w+)', @source_name = N'(\w+)', "
            r"@role_name = NULL(?:, @capture_instance = N'(\w+)')?",
            re.I,
        ),
        _enable_literal,
    ),
    (
        re.compile(
            r"SELECT MIN\(" + _NAME + r"\), MAX\(\[[^\]]+\]\), COUNT_BIG\(\*\) FROM " + _TABLE
        ),
        _plan,
    ),
    (re.compile(r"SELECT (.+?) FROM " + _TABLE + r"(?: WHERE (.+))?", re.S), _select),
]
