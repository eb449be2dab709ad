"""The oracle: both sides read through their own drivers, canonicalised, compared as multisets.

Shares no code with ``verify/`` (nor with redoline's connectors): plain ``SELECT *`` through
pymysql, psycopg and duckdb, then one canonical Python value per *source* column kind, as
docs/apply.md's type mapping says each kind lands on each target:

* numbers: bool/int/YEAR as int, unsigned 64-bit via numeric(20) as int, DECIMAL at its declared
  scale, FLOAT through float32, DOUBLE as is (NaN spelled "nan", -0 equal to 0);
* text as is, except CHAR(n), whose trailing spaces are padding on every engine;
* SET as its labels, ENUM as its label, BIT as its integer, UUID as lowercase text;
* bytes as bytes; JSON parsed and re-serialised with sorted keys;
* dates as ISO text, datetime as naive ISO, timestamptz as UTC naive ISO (MySQL sessions run
  in +00:00; DuckDB's TIMESTAMPTZ is read as TIMESTAMP in a UTC session);
* MySQL TIME, PostgreSQL time and interval as microseconds (interval text on MySQL targets,
  ``'N months D days U microseconds'``, folded the way the drivers fold months: 30 days);
* arrays as tuples (JSON on MySQL targets).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import duckdb
import psycopg
import pymysql

from tests.campaign.workload import Model

__all__ = ["Side", "Verdict", "canon", "compare"]

_SCALES = {"dec2": 2, "dec3": 3, "dec4": 4}
_US_PER_DAY = 86_400_000_000


def _micros(td: dt.timedelta) -> int:
    return (td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds


def _pg_interval_text(v: str) -> Any:
    """PostgreSQL's own interval output (``'3 days 01:02:03.5'``) in microseconds."""
    m = re.fullmatch(
        r"(?:(-?\d+) years? ?)?(?:(-?\d+) mons? ?)?(?:(-?\d+) days? ?)?"
        r"(?:(-?)(\d+):(\d+):(\d+)(?:\.(\d+))?)?",
        v.strip(),
    )
    if not m or not v.strip():
        return ("unparsed interval", v)
    days = int(m[1] or 0) * 360 + int(m[2] or 0) * 30 + int(m[3] or 0)
    us = (int(m[5] or 0) * 3600 + int(m[6] or 0) * 60 + int(m[7] or 0)) * 1_000_000
    us += int((m[8] or "0").ljust(6, "0")[:6])
    return days * _US_PER_DAY + (-us if m[4] else us)


def canon(kind: str, v: Any, engine: str = "", lenient: bool = False) -> Any:
    """One hashable, comparable form of ``v`` (read from ``engine``) for a source ``kind``."""
    if v is None:
        return None
    if isinstance(v, memoryview | bytearray):
        v = bytes(v)
    match kind:
        case "int" | "tinyint" | "smallint" | "uint" | "bigint" | "ubigint" | "bool" | "year":
            return int(v)
        case "dec2" | "dec3" | "dec4":
            return str(decimal.Decimal(v).quantize(decimal.Decimal(1).scaleb(-_SCALES[kind])))
        case "f4":
            return struct.unpack("f", struct.pack("f", float(v)))[0] + 0.0
        case "f8":
            f = float(v)
            return "nan" if math.isnan(f) else f + 0.0
        case "char":
            return str(v).rstrip(" ")
        case "str" | "text" | "enum" | "pgenum":
            return v.decode() if isinstance(v, bytes) else str(v)
        case "set":
            items = v.split(",") if isinstance(v, str) else list(v)
            return tuple(sorted(x.decode() if isinstance(x, bytes) else x for x in items if x))
        case "bytes16" | "blob":
            return bytes(v) if not isinstance(v, str) else v.encode()
        case "bit5":
            if isinstance(v, bytes):
                return int.from_bytes(v, "big")
            if isinstance(v, str):
                return int(v, 2) if v else 0
            return int(v)
        case "uuid":
            return str(v).lower()
        case "json":
            # psycopg parses json/jsonb itself (a JSON string arrives as a str); others: text
            if engine != "postgresql" and isinstance(v, str | bytes):
                v = json.loads(v)
            return json.dumps(v, sort_keys=True, ensure_ascii=False)
        case "date":
            return v.isoformat()
        case "datetime":
            return v.replace(tzinfo=None).isoformat()
        case "tstz":
            if v.tzinfo is not None:
                v = v.astimezone(dt.UTC).replace(tzinfo=None)
            return v.isoformat()
        case "duration" | "interval":
            if isinstance(v, str):
                m = re.fullmatch(r"(-?\d+) months? (-?\d+) days? (-?\d+) microseconds?", v)
                if m:
                    return (int(m[1]) * 30 + int(m[2])) * _US_PER_DAY + int(m[3])
                if lenient:
                    return _pg_interval_text(v)
                return ("interval text not in the documented form", v)
            return _micros(v)
        case "time":
            if isinstance(v, dt.timedelta):
                return _micros(v)
            return ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond
        case "intarr" | "textarr":
            if isinstance(v, str):
                v = json.loads(v)
            return tuple(v)
    raise AssertionError(f"oracle has no canonical form for kind {kind}")


@dataclass
class Side:
    """Where one side's tables are: engine, connection, and the schema/database holding them."""

    engine: str  # mariadb | postgresql | duckdb
    host: str = "127.0.0.1"
    port: int = 0
    database: str = ""  # MariaDB database / PostgreSQL database / DuckDB file
    schema: str = ""  # MariaDB: the database again; PostgreSQL/DuckDB: the schema


def _fetch(
    side: Side, names: list[str] | None
) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Every base table of ``side.schema`` (or only ``names``): its columns and rows."""
    out: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
    if side.engine == "mariadb":
        conn = pymysql.connect(
            host=side.host, port=side.port, user="root", database=side.database, charset="utf8mb4"
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SET time_zone = '+00:00'")
                cur.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "AND table_type = 'BASE TABLE'",
                    (side.schema,),
                )
                found = [r[0] for r in cur.fetchall()]
                for name in found:
                    if names is not None and name not in names:
                        continue
                    cur.execute(f"SELECT * FROM `{side.schema}`.`{name.replace('`', '``')}`")
                    cols = [d[0] for d in cur.description]
                    out[name] = (cols, list(cur.fetchall()))
        finally:
            conn.close()
    elif side.engine == "postgresql":
        with psycopg.connect(
            host=side.host, port=side.port, user="postgres", dbname=side.database
        ) as pconn:
            pconn.execute("SET TIME ZONE 'UTC'")
            found = [
                r[0]
                for r in pconn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "AND table_type = 'BASE TABLE'",
                    (side.schema,),
                ).fetchall()
            ]
            for name in found:
                if names is not None and name not in names:
                    continue
                qn = '"' + side.schema + '"."' + name.replace('"', '""') + '"'
                pcur = pconn.execute(f"SELECT * FROM {qn}")
                cols = [d.name for d in pcur.description or []]
                out[name] = (cols, list(pcur.fetchall()))
    else:
        with duckdb.connect(side.database, read_only=True) as dconn:
            dconn.execute("SET TimeZone = 'UTC'")
            types: dict[str, list[tuple[str, str]]] = {}
            for table, col, typ in dconn.execute(
                "SELECT table_name, column_name, data_type FROM duckdb_columns() "
                "WHERE schema_name = ? ORDER BY table_name, column_index",
                [side.schema],
            ).fetchall():
                types.setdefault(table, []).append((col, typ))
            for name, cols_types in types.items():
                if names is not None and name not in names:
                    continue
                # aware values need pytz in DuckDB's Python API: read instants as UTC wall time
                sel = ", ".join(
                    f'"{c}"::TIMESTAMP' if t == "TIMESTAMP WITH TIME ZONE" else f'"{c}"'
                    for c, t in cols_types
                )
                qn = '"' + side.schema + '"."' + name.replace('"', '""') + '"'
                rows = dconn.execute(f"SELECT {sel} FROM {qn}").fetchall()
                out[name] = ([c for c, _ in cols_types], rows)
    return out


@dataclass
class Verdict:
    equal: bool = True
    #: human-readable differences, first rows included
    differences: list[str] = field(default_factory=list)
    #: differences verify cannot be expected to see (extra target tables/columns)
    target_extras: list[str] = field(default_factory=list)
    rows_compared: int = 0

    def summary(self) -> str:
        if self.equal and not self.target_extras:
            return f"equal ({self.rows_compared} source rows)"
        return "\n".join(self.differences + self.target_extras)


def compare(model: Model, source: Side, target: Side, *, show: int = 3) -> Verdict:
    """Compare every table of the model: source rows vs target rows, canonical multisets."""
    v = Verdict()
    src = _fetch(source, None)
    tgt = _fetch(target, None)
    if set(src) != set(model.tables):
        v.equal = False
        v.differences.append(
            f"the source holds tables {sorted(src)}, the schedule expected {sorted(model.tables)}"
        )
    for name in sorted(set(tgt) - set(src)):
        v.target_extras.append(f"table {name}: on the target only ({len(tgt[name][1])} rows)")
    for name in sorted(src):
        table = model.tables.get(name)
        scols, srows = src[name]
        if name not in tgt:
            v.equal = False
            v.differences.append(f"table {name}: missing on the target ({len(srows)} source rows)")
            continue
        tcols, trows = tgt[name]
        kinds = {c.name: c.kind for c in table.cols} if table else {}
        missing = [c for c in scols if c not in tcols]
        if missing:
            v.equal = False
            v.differences.append(f"table {name}: columns {missing} missing on the target")
            continue
        extra = [c for c in tcols if c not in scols]
        if extra:
            v.target_extras.append(f"table {name}: columns {extra} on the target only")
        sidx = [scols.index(c) for c in scols]
        tidx = [tcols.index(c) for c in scols]
        kind_list = [kinds.get(c, "str") for c in scols]
        lenient = "interval_text" in model.off
        a = Counter(_row(r, sidx, kind_list, source.engine, lenient) for r in srows)
        b = Counter(_row(r, tidx, kind_list, target.engine, lenient) for r in trows)
        v.rows_compared += len(srows)
        if a != b:
            v.equal = False
            only_src = sorted((a - b).elements(), key=repr)
            only_tgt = sorted((b - a).elements(), key=repr)
            v.differences.append(
                f"table {name}: {len(srows)} source rows, {len(trows)} target rows; "
                f"{len(only_src)} only in the source, {len(only_tgt)} only in the target"
            )
            for r in only_src[:show]:
                v.differences.append(f"    source only: {_show(scols, r)}")
            for r in only_tgt[:show]:
                v.differences.append(f"    target only: {_show(scols, r)}")
    return v


def _row(
    r: tuple[Any, ...], idx: list[int], kinds: list[str], engine: str, lenient: bool
) -> tuple[Any, ...]:
    return tuple(canon(k, r[i], engine, lenient) for i, k in zip(idx, kinds, strict=True))


def _show(cols: list[str], row: tuple[Any, ...]) -> str:
    parts = []
    for c, x in zip(cols, row, strict=True):
        text = repr(x)
        parts.append(f"{c}={text[:60]}{'…' if len(text) > 60 else ''}")
    return "(" + ", ".join(parts) + ")"
