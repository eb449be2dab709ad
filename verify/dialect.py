"""The small protocol verify asks of each engine's ``checksum`` role module.

Each engine package has a ``checksum`` module (``connectors/mysql/checksum.py`` ...) whose
``Checksum`` class satisfies :class:`ChecksumSQL`. Verify never branches on the engine: it
asks for SQL fragments and runs them through a :class:`Session`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol

from connectors.base import Database
from connectors.errors import ConfigError
from connectors.model import Column, TableId

__all__ = ["CANONICAL_KINDS", "ChecksumSQL", "Session", "canonical_kind", "checksum_sql"]

#: The canonical kinds both sides of a column pair are encoded as (docs/verify.md).
CANONICAL_KINDS = (
    "int", "decimal", "double", "bytes", "date", "time", "datetime", "bit", "text", "char"
)  # fmt: skip

_GROUP = {
    "int": "int",
    "bool": "int",
    "year": "int",
    "decimal": "decimal",
    "float": "double",
    "double": "double",
    "bytes": "bytes",
    "date": "date",
    "time": "time",
    "duration": "time",
    "datetime": "datetime",
    "timestamptz": "datetime",
    "bit": "bit",
}


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
    """The engine's checksum role module, found beside its connector module.

    ``writable=True`` asks for sessions that may write (repair); verify only reads.
    """
    package = type(db).__module__
    try:
        module = importlib.import_module(f"{package}.checksum")
    except ModuleNotFoundError:
        raise ConfigError(f"verify does not support the {db.engine} engine yet") from None
    cs: ChecksumSQL = module.Checksum(db, **kwargs)
    return cs


def canonical_kind(source: Column, target: Column) -> tuple[str, int | None]:
    """The canonical kind (and decimal scale) both sides of a column pair are encoded as.

    Same groups compare in their own kind; int vs decimal compares as decimal at the declared
    scale; a double on either side makes the pair double; anything else compares as text.
    """
    ks, kt = _GROUP.get(source.kind, "text"), _GROUP.get(target.kind, "text")
    scale = source.scale if source.scale is not None else target.scale
    if ks == kt:
        if ks == "decimal":
            return "decimal", scale
        if ks == "text" and (_fixed(source) or _fixed(target)):
            # CHAR(n) ignores trailing spaces (PostgreSQL's bpchar::text and MySQL drop them);
            # a VARCHAR on the other side (DuckDB has no CHAR) may still hold the padding
            return "char", None
        return ks, None
    pair = {ks, kt}
    if pair == {"int", "decimal"}:
        return "decimal", scale if scale is not None else 0
    if pair <= {"int", "decimal", "double"}:
        return "double", None
    return "text", None


def _fixed(col: Column) -> bool:
    return col.kind == "str" and col.fixed
