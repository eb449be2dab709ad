"""PostgreSQL log positions: LSNs (``0/16B3748``), ordered as 64-bit numbers."""

from __future__ import annotations

from connectors.postgres.pgoutput import parse_lsn

__all__ = ["compare"]


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as LSN ``a`` is before, equal to, or after ``b``."""
    x, y = parse_lsn(a), parse_lsn(b)
    return (x > y) - (x < y)
