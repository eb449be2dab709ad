"""A Python model of verify's canonical row encoding, to check each engine's SQL against.

docs/verify.md describes the encoding; every engine's ``checksum`` module must produce
exactly these strings and hashes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
import struct
from collections.abc import Sequence
from typing import Any

from connectors.base import open_database
from connectors.checksum import checksum_sql
from connectors.endpoint import Endpoint
from connectors.model import TableId
from verify.dialect import canonical_kind


def canon_double(x: float) -> str:
    if x == 0:
        return "0"
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    m, e = math.frexp(abs(x))  # abs(x) = m * 2**e with 0.5 <= m < 1
    return ("-" if x < 0 else "") + f"{int(m * 2**53)}p{e - 1}"


def canon_text(s: str) -> str:
    return f"{len(s)}:{s}"


def row_text(pieces: Sequence[str | None]) -> str:
    return "|".join("~" if p is None else p for p in pieces)


def hash64(text: str) -> int:
    return int(hashlib.md5(text.encode()).hexdigest()[:16], 16)


def doubles(seed: int = 7, n: int = 300) -> list[float]:
    """Edge cases plus random bit patterns over the whole finite range."""
    out = [
        0.1,
        -0.1,
        1 / 3,
        1e20,
        1e-7,
        2.0**53,
        2.0**53 + 2,
        2.0**52,
        2.0**-1022,
        5e-324,
        2.2250738585072014e-308,
        2.225073858507201e-308,  # largest subnormal
        1.7976931348623157e308,
        -1.7976931348623157e308,
        math.nextafter(1.0, 0.0),
        math.nextafter(1.0, 2.0),
        math.nextafter(8.0, 0.0),
        math.nextafter(1024.0, 0.0),
        0.30000000000000004,
        123456789.125,
        1e-300,
        -2.5,
    ]
    rnd = random.Random(seed)
    while len(out) < n:
        bits = rnd.getrandbits(64)
        value = struct.unpack("<d", struct.pack("<Q", bits))[0]
        if math.isfinite(value):
            out.append(value)
    return out


def check_engine(ep: Endpoint, create: str, insert: str, schema: str) -> None:
    """Load doubles, strings, bytes and timestamps into ``t`` and compare every canonical piece
    and the chunk hash sum with this module's model."""
    db = open_database(ep)
    conn = db.connect()
    values = doubles()
    strings = ["", " ", "a  ", "héllo 世界 🎉", "x|y", "~", "1:2", "quote ' \\ back"]
    rows: list[tuple[Any, ...]] = []
    for i, x in enumerate(values):
        s = strings[i % len(strings)] if i % 9 else None
        b = bytes([i % 256, 0, 255]) if i % 5 else (b"" if i % 10 else None)
        ts = dt.datetime(2000, 1, 1) + dt.timedelta(seconds=i * 86399.123457)
        rows.append((i, x, s, b, ts))
    try:
        if ep.engine == "duckdb":
            conn.execute(create)
            conn.executemany(insert.replace("%s", "?"), rows)
        elif ep.engine == "mysql":
            with conn.cursor() as cur:
                cur.execute(create)
                cur.executemany(insert, rows)
            conn.commit()
        else:
            conn.execute(create)
            with conn.cursor() as cur:
                cur.executemany(insert, rows)
    finally:
        conn.close()
    table = db.table_schema(TableId(schema, "t"))
    cs = checksum_sql(db)
    pieces = [cs.canonical(db.quote(c.name), c, *canonical_kind(c, c)) for c in table.columns]
    session = cs.session()
    try:
        got = session.query(
            f"SELECT {', '.join(pieces)}, {cs.hash_hex(cs.row_text(pieces))} "
            f"FROM {db.qualified(TableId(schema, 't'))} ORDER BY 1"
        )
        (total,) = session.query(
            f"SELECT SUM({cs.hash64(cs.row_text(pieces))}) "
            f"FROM {db.qualified(TableId(schema, 't'))}"
        )
    finally:
        session.close()
    expected_sum = 0
    by_id = {int(r[0]): r for r in got}
    for i, x, s, b, ts in rows:
        want: list[str | None] = [
            str(i),
            canon_double(x),
            None if s is None else canon_text(s),
            None if b is None else b.hex().upper(),
            ts.strftime("%Y-%m-%d %H:%M:%S.%f"),
        ]
        have = by_id[i]
        assert list(have[:5]) == want, (x, have[:5], want)
        text = row_text(want)
        assert have[5] == hashlib.md5(text.encode()).hexdigest()[:16]
        expected_sum += hash64(text)
    assert int(total[0]) % 2**64 == expected_sum % 2**64
