"""Targets for apply tests: a fresh DuckDB file, PostgreSQL database or MariaDB database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Database, Writer, open_database
from connectors.endpoint import Endpoint
from connectors.model import TableId


@pytest.fixture(params=["duckdb", "postgres", "mariadb"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Each apply test runs once per target engine."""
    if request.param == "duckdb":
        yield open_database(Endpoint.parse(f"duckdb://{tmp_path / 'target.duckdb'}"))
    elif request.param == "postgres":
        yield open_database(request.getfixturevalue("pg_db"))
    else:
        yield open_database(request.getfixturevalue("mysql_db"))


@pytest.fixture
def schema_name(target: Database) -> str:
    """Where test tables go: on MySQL a database is server-wide, so use the fresh one."""
    return target.endpoint.database if target.engine == "mysql" else "shop"


@pytest.fixture
def options(schema_name: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """ApplyOptions keyword arguments isolating a test on a shared server."""
    return {
        "rename": lambda t: TableId(schema_name, t.name),
        "target_id": f"t{abs(hash(request.node.nodeid)) % 10**9}",
    }


@pytest.fixture
def writer(target: Database) -> Iterator[Writer]:
    w = target.open_writer()
    yield w
    w.close()
