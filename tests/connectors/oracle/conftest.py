"""The fake Oracle, plugged in at the session interface."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.base import open_database
from connectors.endpoint import Endpoint
from connectors.model import TableId
from connectors.oracle import Oracle
from connectors.oracle.session import use_sessions
from tests.connectors.oracle.fake import FakeOracle


@pytest.fixture
def fake() -> Iterator[FakeOracle]:
    db = FakeOracle()
    db.create(
        "SHOP",
        "ITEMS",
        [
            ("ID", "NUMBER", 22, None, 10, 0, "N"),
            ("NAME", "VARCHAR2", 40, 40, None, None, "Y"),
            ("PRICE", "NUMBER", 22, None, 12, 2, "Y"),
        ],
        ["ID"],
    )
    db.tables_keyless = db.create(  # type: ignore[attr-defined]
        "SHOP", "NOTES", [("BODY", "VARCHAR2", 100, 100, None, None, "Y")], []
    )
    # as `redoline init` leaves them
    db.tables[TableId("SHOP", "ITEMS")].log_groups.add("PRIMARY KEY LOGGING")
    db.tables[TableId("SHOP", "NOTES")].log_groups.add("ALL COLUMN LOGGING")
    with use_sessions(db.session):
        yield db


@pytest.fixture
def oracle(fake: FakeOracle) -> Oracle:
    db = open_database(Endpoint.parse("oracle://capture:secret@db.example:1521/ORCL"))
    assert isinstance(db, Oracle)
    return db
