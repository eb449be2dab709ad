"""Helpers for verify tests: a DuckDB endpoint fixture, DDL/data loading on any engine."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Database, open_database
from connectors.endpoint import Endpoint
from connectors.model import TableId
from verify import TablePair, VerifyOptions, VerifyResult, run_verify


@pytest.fixture
def duck_db(tmp_path: Path) -> Iterator[Endpoint]:
    """A fresh DuckDB file."""
    yield Endpoint.parse(f"duckdb://{tmp_path / 'verify.duckdb'}")


def schema_of(ep: Endpoint) -> str:
    """The schema tables go into: the MySQL database, else ``public`` / ``main``."""
    if ep.engine == "mysql":
        return ep.database
    return "public" if ep.engine == "postgresql" else "main"


def execute(
    ep: Endpoint,
    statements: Sequence[str],
    rows: Sequence[Sequence[Any]] = (),
    insert: str | None = None,
) -> None:
    """Run DDL ``statements`` then ``insert`` (with %s placeholders) for each row."""
    db = open_database(ep)
    conn = db.connect()
    try:
        if ep.engine == "mysql":
            with conn.cursor() as cur:
                cur.execute("SET time_zone = '+00:00'")
                for stmt in statements:
                    cur.execute(stmt)
                if insert:
                    cur.executemany(insert, list(rows))
            conn.commit()
        elif ep.engine == "postgresql":
            conn.execute("SET TimeZone = 'UTC'")
            for stmt in statements:
                conn.execute(stmt)
            if insert:
                with conn.cursor() as cur:
                    cur.executemany(insert, list(rows))
        else:
            conn.execute("SET TimeZone = 'UTC'")
            for stmt in statements:
                conn.execute(stmt)
            if insert:
                conn.executemany(insert.replace("%s", "?"), list(rows))
    finally:
        conn.close()


def table(ep: Endpoint, name: str) -> TableId:
    return TableId(schema_of(ep), name)


def qualified(ep: Endpoint, name: str) -> str:
    db = open_database(ep)
    return db.qualified(table(ep, name))


def verify(
    src: Endpoint,
    tgt: Endpoint,
    names: Sequence[str],
    *,
    pairs: Sequence[TablePair] | None = None,
    **options: Any,
) -> VerifyResult:
    options.setdefault("recheck", False)
    opts = VerifyOptions(**options)
    if pairs is None:
        pairs = [TablePair(table(src, n), table(tgt, n)) for n in names]
    return run_verify(open_database(src), open_database(tgt), pairs, opts)


def database(ep: Endpoint) -> Database:
    return open_database(ep)
