"""The source conformance suite (``source_cases.py``) against every source engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pymysql
import pytest

from connectors.endpoint import Endpoint
from tests.connectors.source_cases import CASES, Harness


def mariadb(request: pytest.FixtureRequest) -> Harness:
    ep: Endpoint = request.getfixturevalue("mysql_db")
    return Harness(
        ep,
        ep.database,
        lambda: pymysql.connect(
            host=ep.host, port=ep.port, user=ep.user, database=ep.database, autocommit=False
        ),
    )


def postgres(request: pytest.FixtureRequest) -> Harness:
    ep: Endpoint = request.getfixturevalue("pg_db")
    return Harness(
        ep,
        "public",
        lambda: psycopg.connect(
            host=ep.host, port=ep.port, user=ep.user, dbname=ep.database, autocommit=False
        ),
    )


SOURCES: dict[str, Callable[[pytest.FixtureRequest], Harness]] = {
    "mariadb": mariadb,
    "postgresql": postgres,
}


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.removeprefix("check_") for c in CASES])
@pytest.mark.parametrize("source", list(SOURCES))
def test_source(
    source: str,
    case: Callable[[Harness, Path], None],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    case(SOURCES[source](request), tmp_path / "trail")
