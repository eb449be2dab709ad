"""The contract of each engine's ``checksum`` role module (verify's SQL, undo's literals).

Each engine package has a ``checksum`` module (``connectors/mysql/checksum.py`` ...) whose
``Checksum`` class satisfies :class:`ChecksumSQL` (most of it from
:class:`connectors._checksum.ChecksumBase`). Verify never branches on the engine: it asks for
SQL fragments and runs them through a :class:`Session`. The canonical kinds the fragments take
are verify's (``verify/dialect.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from connectors.base import Database
from connectors.model import Column, TableId

__all__ = ["ChecksumSQL", "Session", "checksum_sql"]


class Session(Protocol):
    """One connection of one side, owned by one thread."""

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a read-only statement; rows as tuples."""
        ...

    def run_script(self, statements: Sequence[str]) -> None:
        """Run ``statements`` in one transaction (all or nothing)."""
        ...

    def close(self) -> None: ...


class ChecksumSQL(Protocol):
    """SQL fragments for the canonical row encoding, hashes and repair literals."""

    #: statements a printed repair script starts with (e.g. the session time zone)
    script_prelude: tuple[str, ...]

    def session(self) -> Session:
        """A new connection set up for verify (UTC time zone, ISO dates)."""
        ...

    def canonical(self, sql: str, column: Column, canon: str, scale: int | None) -> str:
        """SQL text of ``sql`` (a column of this side) in canonical kind ``canon``; NULL→NULL."""
        ...

    def estimate_sql(self, table: TableId) -> str:
        """SQL returning one row: the catalog's row count and byte size estimates (no table
        scan; the size may be NULL when the engine does not keep one)."""
        ...

    def raw(self, sql: str, column: Column) -> str:
        """The column as fetched for display and repair (instants as naive UTC or aware)."""
        ...

    def row_text(self, pieces: Sequence[str]) -> str:
        """Canonical pieces joined with ``|``, NULL spelled ``~``."""
        ...

    def hash64(self, text: str) -> str:
        """First 64 bits of MD5(text) as an integer (signed or unsigned: summed mod 2**64)."""
        ...

    def digest_sql(self, text: str, source: str, order: Sequence[str]) -> str:
        """SQL returning one row: ``COUNT(*)`` and the MD5 (32 hex digits) of the texts joined
        by newlines in ``order``, over ``source`` (``FROM ... WHERE ...``).

        The digest may be NULL when the engine could not build the whole text (the caller
        then treats the chunk as differing); ``order`` is integer columns only.
        """
        ...

    def hash_hex(self, text: str) -> str:
        """First 64 bits of MD5(text) as 16 lowercase hex digits."""
        ...

    def bucket(self, text: str, bits: int) -> str:
        """A bucket number in [0, 2**bits) from MD5 bits 97..128 of ``text``."""
        ...

    def int_div(self, sql: str, lo: int, width: int) -> str:
        """floor((sql - lo) / width) for an integer column (sql >= lo)."""
        ...

    def literal(self, value: Any, column: Column) -> str:
        """``value`` as a literal for ``column`` of this engine."""
        ...

    def key_match(self, column_sql: str, value: Any, column: Column) -> str:
        """A predicate ``column = value`` (``IS NULL`` for None)."""
        ...

    def delete_copies(self, table_sql: str, where: str, copies: int) -> str:
        """DELETE at most ``copies`` rows matching ``where`` (duplicates in keyless tables)."""
        ...


def checksum_sql(db: Database, **kwargs: Any) -> ChecksumSQL:
    """The engine's ``checksum`` role (a ConfigError naming the engine when it has none).

    ``writable=True`` asks for sessions that may write (repair); verify only reads.
    """
    cs: ChecksumSQL = db.descriptor.role("checksum").Checksum(db, **kwargs)
    return cs
