"""One side of a compared table pair, and how two sets of its rows are told apart.

A :class:`Side` holds what reading a table canonically takes (columns, their canonical
texts, the row hash); :func:`read_rows` turns a fetched result into :class:`Row` objects and
:func:`compare_rows` classifies the differences (missing, extra, different columns; a keyless
table compares as a multiset). Used by :mod:`verify.engine`.
"""

from __future__ import annotations

import collections
import decimal
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.checksum import ChecksumSQL
from connectors.model import Column, TableId
from verify.model import DIFFERENT, EXTRA, MISSING, RowDiff

__all__ = ["Row", "Side", "compare_rows", "read_rows"]


@dataclass
class Side:
    """One side of a table pair: how to read its rows canonically."""

    name: str  # "source" | "target"
    cs: ChecksumSQL
    table_sql: str
    columns: list[Column]
    pieces: list[str]
    key: list[str]  # quoted key columns
    key_columns: list[Column]
    where: str | None
    table: TableId
    row_text: str = ""
    key_text: str = ""
    #: positions of the columns whose texts are JSON documents on either side
    json_columns: frozenset[int] = frozenset()

    def sql_where(self, *preds: str) -> str:
        parts = [f"({self.where})"] if self.where else []
        parts += [p for p in preds if p]
        return " WHERE " + " AND ".join(parts) if parts else ""

    def select_rows(self, *preds: str) -> str:
        cols = [self.cs.raw(self.quoted(c.name), c) for c in self.columns]
        return (
            f"SELECT {', '.join(cols + self.pieces)}, {self.cs.hash_hex(self.row_text)} "
            f"FROM {self.table_sql}{self.sql_where(*preds)}"
        )

    def quoted(self, name: str) -> str:
        return self._quote(name)

    _quote: Callable[[str], str] = field(default=str)


@dataclass
class Row:
    key: tuple[str, ...]
    canon: tuple[str, ...]
    raw: dict[str, Any]
    hash: str


def read_rows(side: Side, rows: list[tuple[Any, ...]]) -> list[Row]:
    n = len(side.columns)
    nkey = len(side.key)
    out = []
    for row in rows:
        raw = {c.name: v for c, v in zip(side.columns, row[:n], strict=True)}
        canon = tuple("~" if v is None else str(v) for v in row[n : 2 * n])
        key = canon[:nkey] if nkey else ()
        out.append(Row(key, canon, raw, str(row[2 * n])))
    return out


def compare_rows(side: Side, srows: list[Row], trows: list[Row]) -> list[RowDiff]:
    """Classify the differences between two sets of rows that should be equal."""
    names = [c.name for c in side.columns]
    keys = [c.name for c in side.key_columns]
    diffs: list[RowDiff] = []
    if not keys:
        scount = collections.Counter(r.hash for r in srows)
        tcount = collections.Counter(r.hash for r in trows)
        sample = {r.hash: r for r in srows}
        tsample = {r.hash: r for r in trows}
        for h in sorted(set(scount) | set(tcount)):
            delta = scount[h] - tcount[h]
            if delta > 0:
                diffs.append(RowDiff(MISSING, None, sample[h].raw, None, count=delta, row_hash=h))
            elif delta < 0:
                diffs.append(RowDiff(EXTRA, None, None, tsample[h].raw, count=-delta, row_hash=h))
        return diffs
    tmap: dict[tuple[str, ...], list[Row]] = collections.defaultdict(list)
    for r in trows:
        tmap[r.key].append(r)
    for s in srows:
        matches = tmap.get(s.key)
        if not matches:
            diffs.append(
                RowDiff(MISSING, {k: s.raw[k] for k in keys}, s.raw, None, row_hash=s.hash)
            )
            continue
        t = matches.pop(0)
        if not matches:
            del tmap[s.key]
        if t.hash != s.hash:
            cols = [
                n
                for i, (n, a, b) in enumerate(zip(names, s.canon, t.canon, strict=True))
                if a != b and not (i in side.json_columns and _same_document(a, b))
            ]
            if not cols:
                continue  # only the spelling of JSON documents differs (jsonb vs json)
            diffs.append(
                RowDiff(DIFFERENT, {k: s.raw[k] for k in keys}, s.raw, t.raw, cols, row_hash=s.hash)
            )
    for rest in tmap.values():
        for t in rest:
            diffs.append(RowDiff(EXTRA, {k: t.raw[k] for k in keys}, None, t.raw, row_hash=t.hash))
    return diffs


def _same_document(a: str, b: str) -> bool:
    """Whether two canonical texts (``<length>:<text>``) hold the same JSON document: key
    order, spacing, escapes and number spelling aside (a ``jsonb`` column normalises them)."""
    try:
        return _document(a.partition(":")[2]) == _document(b.partition(":")[2])
    except ValueError:
        return False


def _document(text: str) -> Any:
    def norm(v: Any) -> Any:
        # tagged, so true never equals 1 and "1" never equals 1
        if isinstance(v, bool) or v is None:
            return ("c", v)
        if isinstance(v, decimal.Decimal):
            return ("n", v.normalize())
        if isinstance(v, str):
            return ("s", v)
        if isinstance(v, list):
            return ("a", tuple(norm(x) for x in v))
        return ("o", tuple(sorted((k, norm(x)) for k, x in v.items())))

    return norm(json.loads(text, parse_float=decimal.Decimal, parse_int=decimal.Decimal))
