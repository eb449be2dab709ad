"""Repair literals of the three checksum dialects (connectors/_checksum.py and its hooks),
table-driven: each row is what the engine's own SQL parser must read back as the value."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from typing import Any

import pytest

from connectors.duckdb.checksum import Checksum as DuckDBChecksum
from connectors.model import Column, Interval, Json
from connectors.mysql.checksum import Checksum as MySQLChecksum
from connectors.postgres.checksum import Checksum as PostgresChecksum

_TZ = dt.timezone(dt.timedelta(hours=-3, minutes=-30))
_AWARE = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=_TZ)

#: (kind, value, MySQL, PostgreSQL, DuckDB); a type name in <> means TypeError
CASES: list[tuple[str, Any, str, str, str]] = [
    ("int", None, "NULL", "NULL", "NULL"),
    ("bool", True, "1", "true", "true"),
    ("bool", 0, "0", "false", "false"),
    (
        "int",
        18446744073709551615,
        "18446744073709551615",
        "18446744073709551615",
        "18446744073709551615",
    ),
    ("bit", 5, "b'101'", "B'0000000101'", "5"),
    ("bit", b"\x02\x01", "b'1000000001'", "B'1000000001'", "from_hex('0201')"),
    ("double", 0.1, "0.1", "0.1::float8", "0.1::DOUBLE"),
    ("double", math.nan, "NULL", "'NaN'::float8", "'nan'::DOUBLE"),
    ("double", -math.inf, "NULL", "'-Infinity'::float8", "'-inf'::DOUBLE"),
    ("decimal", decimal.Decimal("1.50"), "1.50", "1.50", "1.50"),
    ("decimal", decimal.Decimal("NaN"), "NULL", "'NaN'::numeric", "NULL"),
    ("bytes", b"\x00\xff", "X'00ff'", "'\\x00ff'::bytea", "from_hex('00ff')"),
    ("bytes", b"", "''", "'\\x'::bytea", "from_hex('')"),
    (
        "timestamptz",
        _AWARE,
        "'2024-01-02 06:34:05.000000'",
        "'2024-01-02 03:04:05.000000-03:30'",
        "'2024-01-02 03:04:05.000000-03:30'",
    ),
    (
        "timestamptz",
        dt.datetime(2024, 1, 2),
        "'2024-01-02 00:00:00.000000'",
        "'2024-01-02 00:00:00.000000+00:00'",
        "'2024-01-02 00:00:00.000000+00:00'",
    ),
    (
        "time",
        dt.time(1, 2, 3, tzinfo=_TZ),
        "'01:02:03.000000'",
        "'01:02:03.000000-03:30'",
        "'01:02:03.000000'",
    ),
    (
        "duration",
        -dt.timedelta(hours=30, microseconds=1),
        "'-30:00:00.000001'",
        "'-108000.000001 seconds'::interval",
        "INTERVAL '-108000.000001 seconds'",
    ),
    (
        "interval",
        Interval(1, 2, 3),
        "<TypeError>",
        "'1 months 2 days 3 microseconds'::interval",
        "INTERVAL '1 months 2 days 3 microseconds'",
    ),
    (
        "json",
        Json('{"a": "b\\\\c\'"}'),
        "'{\"a\": \"b\\\\\\\\c''\"}'",
        "'{\"a\": \"b\\\\c''\"}'",
        "'{\"a\": \"b\\\\c''\"}'",
    ),
    # drivers hand json back decoded: written as JSON text everywhere (was Python's repr)
    ("json", {"a": 1}, "'{\"a\": 1}'", "'{\"a\": 1}'", "'{\"a\": 1}'"),
    ("str", "it's \\\x00", "'it''s \\\\\\0'", "'it''s \\\x00'", "'it''s \\\x00'"),
    ("set", frozenset({"b", "a"}), "'a,b'", "'a,b'", "'a,b'"),
    (
        "uuid",
        uuid.UUID(int=5),
        "'00000000-0000-0000-0000-000000000005'",
        "'00000000-0000-0000-0000-000000000005'",
        "'00000000-0000-0000-0000-000000000005'",
    ),
    ("array", [1, None], "<TypeError>", "ARRAY[1, NULL]", "[1, NULL]"),
]

DIALECTS = {"mysql": MySQLChecksum, "postgres": PostgresChecksum, "duckdb": DuckDBChecksum}


@pytest.mark.parametrize("dialect", list(DIALECTS))
@pytest.mark.parametrize(("kind", "value", "my", "pg", "dk"), CASES)
def test_literal(dialect: str, kind: str, value: Any, my: str, pg: str, dk: str) -> None:
    expected = {"mysql": my, "postgres": pg, "duckdb": dk}[dialect]
    cs = DIALECTS[dialect](None, writable=False)  # type: ignore[arg-type]  # no database
    column = Column("c", kind, bits=10 if kind == "bit" else None)
    if expected == "<TypeError>":
        with pytest.raises(TypeError, match="column c"):
            cs.literal(value, column)
        return
    assert cs.literal(value, column) == expected
    predicate = cs.key_match("k", value, column)
    assert predicate == ("k IS NULL" if value is None else f"k = {expected}")


def test_delete_copies() -> None:
    assert MySQLChecksum(None).delete_copies("T", "W", 3) == (  # type: ignore[arg-type]
        "DELETE FROM T WHERE W LIMIT 3"
    )
    for cls, address in ((PostgresChecksum, "ctid"), (DuckDBChecksum, "rowid")):
        assert cls(None).delete_copies("T", "W", 3) == (  # type: ignore[arg-type]
            f"DELETE FROM T WHERE {address} IN (SELECT {address} FROM T WHERE W LIMIT 3)"
        )


@pytest.mark.parametrize("engine", ["mysql", "postgres", "duckdb"])
@pytest.mark.parametrize(
    ("value", "text"),
    [({"a": [1, None]}, '{"a": [1, null]}'), ([1, "x"], '[1, "x"]'), (3, "3"), (True, "true")],
)
def test_decoded_json_is_written_as_json_text(engine: str, value: object, text: str) -> None:
    # psycopg hands json/jsonb back decoded; repair must write JSON, not Python's repr
    column = Column("doc", "json")
    cs = DIALECTS[engine](None, writable=False)  # type: ignore[arg-type]  # no database
    assert cs.literal(value, column) == "'" + text.replace("'", "''") + "'"
