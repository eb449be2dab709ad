"""ODBC, a snapshot and verify source for anything with an ODBC driver (DB2, Sybase, DM8, ...):
what the rest of redoline may know (:mod:`connectors.engine`)."""

from __future__ import annotations

from connectors.engine import EngineDescriptor

__all__ = ["ENGINE"]

ENGINE = EngineDescriptor(
    name="odbc",
    title="ODBC",
    schemes=("odbc",),
    database="connectors.odbc:ODBC",
    # sqlglot's generic dialect: standard SQL, identifiers in double quotes (predicates of
    # [tables.where] are rendered in it and re-rendered for the driver's quoting)
    dialect="",
    placeholder="?",
    default_port=None,
    # no log reader, writer or bulk role: capture, sync, apply and repair into it are refused
    # naming the role; URLs are a DSN or driver attributes (url.py)
    roles={"snapshot": "snapshot", "checksum": "checksum", "url": "url"},
)
