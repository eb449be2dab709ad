"""What the ``types`` role modules share: the refusal of an unmappable column, fractional
seconds, and how a time of day with an offset is told apart."""

from __future__ import annotations

from connectors.errors import SchemaError
from connectors.model import Column

__all__ = ["frac", "time_tz", "unmappable"]


def unmappable(col: Column, dialect: str, why: str = "") -> SchemaError:
    """The error for a column whose kind has no faithful type on ``dialect``."""
    source = f" ({col.source_type})" if col.source_type else ""
    return SchemaError(
        f"column {col.name!r} of kind {col.kind!r}{source} has no type on {dialect}"
        + (f": {why}" if why else ""),
        hint="exclude the column with [tables.columns], or create the target table yourself "
        "with a type of your choice before applying",
    )


def time_tz(col: Column) -> bool:
    """A time of day with an offset (``timetz``). PostgreSQL spells the plain one ``time
    without time zone``, so looking for "zone" alone is wrong."""
    declared = col.source_type.lower()
    return declared.startswith("timetz") or "with time zone" in declared


def frac(col: Column) -> int:
    """Fractional-second digits (0-6) a time type keeps."""
    return 6 if col.precision is None else max(0, min(col.precision, 6))
