"""DuckDB checksum SQL produces exactly the canonical encoding (docs/verify.md)."""

from __future__ import annotations

from pathlib import Path

from connectors.endpoint import Endpoint
from tests.verify.canon_reference import check_engine


def test_canonical_pieces_and_hashes_match_the_model(tmp_path: Path) -> None:
    ep = Endpoint.parse(f"duckdb://{tmp_path / 'c.duckdb'}")
    check_engine(
        ep,
        "CREATE TABLE main.t (id INT PRIMARY KEY, x DOUBLE, s VARCHAR, b BLOB, ts TIMESTAMP)",
        "INSERT INTO main.t VALUES (%s, %s, %s, %s, %s)",
        "main",
    )
