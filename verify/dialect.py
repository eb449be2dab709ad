"""The canonical kinds verify compares a column pair as.

The SQL each engine writes for them is its ``checksum`` role, whose contract
(:class:`connectors.checksum.ChecksumSQL`) lives in ``connectors/``.
"""

from __future__ import annotations

from connectors.checksum import ChecksumSQL, Session, checksum_sql
from connectors.model import Column

__all__ = ["CANONICAL_KINDS", "ChecksumSQL", "Session", "canonical_kind", "checksum_sql"]

#: The canonical kinds both sides of a column pair are encoded as (docs/verify.md).
CANONICAL_KINDS = (
    "int",
    "decimal",
    "double",
    "bytes",
    "date",
    "time",
    "duration",
    "interval",
    "array",
    "datetime",
    "bit",
    "text",
)

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


def canonical_kind(source: Column, target: Column) -> tuple[str, int | None]:
    """The canonical kind (and decimal scale) both sides of a column pair are encoded as.

    Same groups compare in their own kind; int vs decimal compares as decimal at the declared
    scale; a double on either side makes the pair double; anything else compares as text.
    """
    kinds = {source.kind, target.kind}
    if kinds == {"duration", "interval"}:
        # MySQL TIME replicated to an interval (PostgreSQL, DuckDB): a signed length of time
        return "duration", None
    if "interval" in kinds and kinds <= {"interval", "str"}:
        # an interval, or the text MySQL keeps one in ('1 months 2 days 3 microseconds'):
        # months, days and microseconds, which each engine spells differently
        return "interval", None
    if "array" in kinds and kinds <= {"array", "json"}:
        # an array, or the JSON document MySQL keeps one in: compact JSON text everywhere
        return "array", None
    ks, kt = _GROUP.get(source.kind, "text"), _GROUP.get(target.kind, "text")
    scale = source.scale if source.scale is not None else target.scale
    if ks == kt:
        if ks == "decimal":
            return "decimal", scale
        return ks, None
    pair = {ks, kt}
    if pair == {"int", "decimal"}:
        return "decimal", scale if scale is not None else 0
    if pair <= {"int", "decimal", "double"}:
        return "double", None
    return "text", None
