"""PostgreSQL checksum SQL produces exactly the canonical encoding (docs/verify.md)."""

from __future__ import annotations

from connectors.endpoint import Endpoint
from tests.verify.canon_reference import check_engine


def test_canonical_pieces_and_hashes_match_the_model(pg_db: Endpoint) -> None:
    check_engine(
        pg_db,
        "CREATE TABLE public.t (id INT PRIMARY KEY, x DOUBLE PRECISION, s VARCHAR(40), "
        "b BYTEA, ts TIMESTAMP(6))",
        "INSERT INTO public.t VALUES (%s, %s, %s, %s, %s)",
        "public",
    )
