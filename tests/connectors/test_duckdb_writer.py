"""The DuckDB target writer: every column kind in and out, TableBatch merges, the checkpoint."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Writer, open_database
from connectors.endpoint import Endpoint
from connectors.model import Column
from tests.connectors.writer_cases import (
    ALL_COLUMNS,
    EDGE_ROW,
    SAMPLE,
    TZ_UTC,
    assert_values,
    check_checkpoint_round_trip,
    check_keyed_merge,
    check_keyed_rejects_and_collisions,
    check_keyless_every_kind,
    check_keyless_merge,
    check_unchanged_row_by_row,
    make_table,
    round_trip,
)

SCHEMA = "shop"


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    w = open_database(Endpoint.parse(f"duckdb://{tmp_path / 'target.duckdb'}")).open_writer()
    yield w
    w.close()


#: DuckDB's DECIMAL stops at 38 digits: wider ones are kept as their exact text
DEC38 = Column("dec38", "decimal", precision=38, scale=10)

#: read-back expressions where the driver's own type would hide what is stored
READ = {
    "tz": 'CAST("tz" AS TIMESTAMP)',  # naive UTC (fetching TIMESTAMPTZ needs pytz)
    "iv": 'CAST("iv" AS VARCHAR)',
    "bt": 'CAST("bt" AS VARCHAR)',
    "j": 'CAST("j" AS VARCHAR)',
}

EXPECTED: dict[str, Any] = {
    **SAMPLE,
    "dec": str(SAMPLE["dec"]),
    "dec38": decimal.Decimal("-1234567890123456789012345678.0123456789"),
    "tz": TZ_UTC,
    "iv": "1 year 2 months 3 days 00:00:04.000005",
    "j": SAMPLE["j"].text,  # type: ignore[union-attr]
    "st": "a,c",
    "bt": "1000000001",
}


@pytest.mark.parametrize("path", ["merge", "row"])
def test_every_kind_round_trips(writer: Writer, path: str) -> None:
    schema = make_table(SCHEMA, f"kinds_{path}", [*ALL_COLUMNS, DEC38])
    second = {
        **EDGE_ROW,
        "f": math.inf,
        "d": -math.inf,
        "du": -dt.timedelta(hours=30, microseconds=1),
    }
    rows = [
        {"id": 1, **SAMPLE, "dec38": EXPECTED["dec38"]},
        second,
        {"id": 3, "d": math.nan, "f": math.nan},
        {"id": 4},
    ]
    got = round_trip(writer, schema, rows, path, READ)
    assert_values(got[0], {"id": 1, **EXPECTED})
    assert_values(
        got[1],
        {
            **second,
            "bt": "1000000001",
            "tz": dt.datetime(2024, 1, 1, 21, 34, 5),
            "dec": None,
            "j": "{}",
            "st": "",
        },
    )
    assert_values(got[2], {"id": 3, "d": math.nan, "f": math.nan, "s": None})
    assert_values(got[3], dict.fromkeys(EXPECTED) | {"id": 4})


def test_keyed_merge(writer: Writer) -> None:
    check_keyed_merge(writer, SCHEMA)


def test_keyed_rejects_and_collisions(writer: Writer) -> None:
    check_keyed_rejects_and_collisions(writer, SCHEMA)


def test_keyless_merge(writer: Writer) -> None:
    check_keyless_merge(writer, SCHEMA)


def test_unchanged_row_by_row(writer: Writer) -> None:
    check_unchanged_row_by_row(writer, SCHEMA)


def test_checkpoint_round_trip(writer: Writer) -> None:
    check_checkpoint_round_trip(writer, SCHEMA)


def test_keyless_every_kind(writer: Writer) -> None:
    check_keyless_every_kind(writer, SCHEMA, list(ALL_COLUMNS))
