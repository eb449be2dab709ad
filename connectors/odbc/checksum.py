"""Verify over ODBC: canonical row texts and hashes computed on this host, not by the source.

An engine reached through ODBC has no digest redoline can count on (MD5, string aggregation
and exact float text differ everywhere), so verify hashes client-side
(:mod:`connectors.clientside`): each verified table is read once through the driver
(``SELECT`` of its columns, the values pyodbc returns) into a scratch DuckDB copy where every
checksum query runs.

Costs (docs/source-odbc.md): one full read of each verified table per pass, and local disk
about the size of the table. Repair through ODBC is refused: the copy is not the source.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from connectors.clientside import ClientSideChecksum
from connectors.errors import ConfigError
from connectors.model import TableSchema

if TYPE_CHECKING:
    from connectors.odbc import ODBC

__all__ = ["Checksum"]

_FETCH_ROWS: Final = 5000


class Checksum(ClientSideChecksum):
    """DuckDB's canonical encoding over a scratch copy of the ODBC source's tables."""

    engine_name = "ODBC (hashed on this host)"

    def __init__(self, db: ODBC, *, writable: bool = False) -> None:
        if writable:
            raise ConfigError(
                "repair cannot write through an odbc:// database",
                hint="an ODBC database is a source for snapshot and verify",
            )
        super().__init__(db)
        self.odbc = db

    def fetch(self, schema: TableSchema) -> Iterator[Sequence[Sequence[Any]]]:
        import pyodbc

        db = self.odbc
        cols = ", ".join(db.source_quote(c.name) for c in schema.columns)
        sql = f"SELECT {cols} FROM {db.source_table(schema.table)}"
        conn = db.connect()
        try:
            cur = conn.cursor().execute(sql)
            while fetched := cur.fetchmany(_FETCH_ROWS):
                yield fetched
        except pyodbc.Error as exc:
            from connectors.odbc import map_error

            raise map_error(exc, db.endpoint, f"reading {schema.table} for verify") from None
        finally:
            conn.close()
