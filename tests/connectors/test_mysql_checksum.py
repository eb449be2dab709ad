"""MySQL/MariaDB checksum SQL produces exactly the canonical encoding (docs/verify.md)."""

from __future__ import annotations

from connectors.endpoint import Endpoint
from tests.verify.canon_reference import check_engine


def test_canonical_pieces_and_hashes_match_the_model(mysql_db: Endpoint) -> None:
    name = f"`{mysql_db.database}`.`t`"
    check_engine(
        mysql_db,
        f"CREATE TABLE {name} (id INT PRIMARY KEY, x DOUBLE, s VARCHAR(40), b VARBINARY(8), "
        "ts DATETIME(6))",
        f"INSERT INTO {name} VALUES (%s, %s, %s, %s, %s)",
        mysql_db.database,
    )
