"""Verify with an Oracle source: rows hashed on this host (:mod:`connectors.clientside`).

Oracle's own SQL could build verify's digests (``STANDARD_HASH``, ``LISTAGG``), but that SQL
could only be tested against a live server, and none runs where redoline is tested; so each
verified table is read once (one ``SELECT`` of its columns, statement-consistent) into a
scratch DuckDB copy, and verify's checksum queries run there. A ``TIMESTAMP WITH TIME ZONE``
is read as its instant in UTC (``SYS_EXTRACT_UTC``: python-oracledb drops the zone), as the
snapshot reads it. Repair into Oracle is refused (it is a source only).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from connectors.clientside import ClientSideChecksum
from connectors.model import TableSchema

if TYPE_CHECKING:
    from connectors.oracle import Oracle

__all__ = ["Checksum", "select_sql"]

_BATCH_ROWS: Final = 5000


def select_sql(db: Oracle, schema: TableSchema) -> str:
    """Every row of the table, instants in UTC."""
    cols = ", ".join(
        f"SYS_EXTRACT_UTC({db.quote(c.name)})" if c.kind == "timestamptz" else db.quote(c.name)
        for c in schema.columns
    )
    return f"SELECT {cols} FROM {db.qualified(schema.table)}"


class Checksum(ClientSideChecksum):
    """DuckDB's canonical encoding over a scratch copy of the Oracle tables verified."""

    engine_name = "Oracle (hashed on this host)"

    def __init__(self, db: Oracle, *, writable: bool = False) -> None:
        super().__init__(db, writable=writable)
        self.oracle = db

    def fetch(self, schema: TableSchema) -> Iterator[Sequence[Sequence[Any]]]:
        sql = select_sql(self.oracle, schema)
        with self.oracle.using(f"reading {schema.table} for verify") as s:
            batch: list[tuple[Any, ...]] = []
            for row in s.stream(sql):
                batch.append(row)
                if len(batch) >= _BATCH_ROWS:
                    yield batch
                    batch = []
            if batch:
                yield batch
