"""Verify with a SQL Server source: rows hashed on this host (:mod:`connectors.clientside`).

T-SQL could build verify's digests (``HASHBYTES``, ``STRING_AGG``), but that SQL could only be
tested against a live server, and none runs where redoline is tested; so each verified table is
read once (one ``SELECT`` of its columns under the connection's default READ COMMITTED) into a
scratch DuckDB copy, and verify's checksum queries run there. Values go through the same
conversions as capture and the snapshot (:mod:`connectors.sqlserver.values`: ``datetimeoffset``
as an aware instant, decimals at the column's scale). Verify writes its SQL with SQL Server's
``[bracket]`` quoting; :func:`double_quoted` turns it into DuckDB's. Repair into SQL Server is
refused (it is a source only).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from connectors.clientside import ClientSideChecksum
from connectors.model import TableSchema
from connectors.sqlserver import sql
from connectors.sqlserver.values import converter

if TYPE_CHECKING:
    from connectors.sqlserver import SqlServer

__all__ = ["Checksum", "double_quoted"]

_FETCH_ROWS: Final = 5000
#: a string literal (N'...' too) or a [bracketed] identifier
_TOKEN: Final = re.compile(r"(N?'(?:[^']|'')*')|\[((?:[^\]]|\]\])*)\]")


def double_quoted(text: str) -> str:
    """``text`` with every ``[identifier]`` outside string literals as ``"identifier"``."""

    def swap(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return m.group(1)
        name = m.group(2).replace("]]", "]")
        return '"' + name.replace('"', '""') + '"'

    return _TOKEN.sub(swap, text)


class Checksum(ClientSideChecksum):
    """DuckDB's canonical encoding over a scratch copy of the SQL Server tables verified."""

    engine_name = "SQL Server (hashed on this host)"

    def __init__(self, db: SqlServer, *, writable: bool = False) -> None:
        super().__init__(db, writable=writable)
        self.sqlserver = db

    def scratch_sql(self, text: str) -> str:
        return double_quoted(text)

    def fetch(self, schema: TableSchema) -> Iterator[Sequence[Sequence[Any]]]:
        from connectors.sqlserver.snapshot import _driver_error

        db = self.sqlserver
        convs = [converter(c) for c in schema.columns]
        cols = ", ".join(sql.quote(c.name) for c in schema.columns)
        statement = f"SELECT {cols} FROM {db.qualified(schema.table)}"
        conn = db.connect()
        try:
            try:
                cur = conn.cursor()
                cur.execute(statement)
            except Exception as exc:
                raise _driver_error(db, exc, schema.table) from None
            while True:
                try:
                    rows = cur.fetchmany(_FETCH_ROWS)
                except Exception as exc:
                    raise _driver_error(db, exc, schema.table) from None
                if not rows:
                    break
                yield [
                    [None if v is None else f(v) for f, v in zip(convs, row, strict=True)]
                    for row in rows
                ]
        finally:
            conn.close()
