"""The change model: what a captured change is, independent of any engine.

Connectors produce these objects, the trail stores them, apply and verify consume them
(DESIGN.md: Change model). Values are typed Python objects, never strings:

=================  ==========================================================
kind of value      Python type
=================  ==========================================================
integer            ``int`` (unsigned BIGINT up to 2**64-1 included)
decimal            ``decimal.Decimal`` (scale kept; NaN allowed for PostgreSQL)
float / double     ``float`` (NaN, +inf, -inf kept)
text               ``str``
binary             ``bytes``
boolean            ``bool``
date               ``datetime.date``
time of day        ``datetime.time`` (``tzinfo`` kept for PostgreSQL ``timetz``)
MySQL TIME         ``datetime.timedelta`` (may be negative or exceed 24h)
timestamp          ``datetime.datetime``; naive vs tz-aware kept, microseconds kept
interval           :class:`Interval` (months, days, microseconds as PostgreSQL keeps them)
JSON               :class:`Json` (the document's text, exactly as the source gave it)
uuid               ``uuid.UUID``
array              ``list`` of values (may contain ``None``)
set (MySQL SET)    ``frozenset`` of ``str``
NULL               ``None``
TOAST unchanged    :data:`UNCHANGED`
=================  ==========================================================
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "ROW_KEY",
    "UNCHANGED",
    "Change",
    "Column",
    "Interval",
    "Json",
    "Op",
    "Row",
    "TableId",
    "TableSchema",
    "Transaction",
    "Unchanged",
    "Value",
]

#: the surrogate key column apply adds to keyless target tables of row-id sources (apply/rowid.py)
ROW_KEY: Final = "redoline_row_key"


class Unchanged:
    """The marker for a large value the source did not send because it did not change."""

    _instance: Unchanged | None = None

    def __new__(cls) -> Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"

    def __reduce__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()


@dataclass(frozen=True, slots=True)
class Interval:
    """An interval as PostgreSQL stores it: months, days and microseconds kept apart."""

    months: int = 0
    days: int = 0
    microseconds: int = 0


@dataclass(frozen=True, slots=True)
class Json:
    """A JSON document kept as text, so key order and number spelling survive the trip."""

    text: str


Value = (
    None
    | bool
    | int
    | float
    | decimal.Decimal
    | str
    | bytes
    | dt.date
    | dt.time
    | dt.datetime
    | dt.timedelta
    | Interval
    | Json
    | uuid.UUID
    | list[Any]
    | frozenset[str]
    | Unchanged
)
Row = dict[str, Value]


class Op(enum.StrEnum):
    """What a change does."""

    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    TRUNCATE = "truncate"
    DDL = "ddl"


@dataclass(frozen=True, slots=True, order=True)
class TableId:
    """A table's name on its source: MySQL database or PostgreSQL schema, then table."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"

    @classmethod
    def parse(cls, text: str) -> TableId:
        schema, sep, name = text.partition(".")
        if not sep or not schema or not name:
            raise ValueError(f"table name {text!r} is not of the form schema.table")
        return cls(schema, name)


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table definition, in engine-neutral terms.

    ``kind`` is one of :data:`KINDS`; the other fields refine it where they apply.
    ``source_type`` is the type exactly as the source declares it, so a same-engine target
    can recreate the column verbatim.
    """

    name: str
    kind: str
    source_type: str = ""
    nullable: bool = True
    #: integer width in bits (8, 16, 24, 32, 64) for ``int``; bit count for ``bit``
    bits: int | None = None
    unsigned: bool = False
    #: precision and scale for ``decimal``; fractional-second digits for time kinds
    precision: int | None = None
    scale: int | None = None
    #: character or byte length for ``str``/``bytes`` (None: unbounded)
    length: int | None = None
    #: CHAR/BINARY (padded) rather than VARCHAR/VARBINARY
    fixed: bool = False
    #: labels of ``enum`` and ``set``
    labels: tuple[str, ...] = ()
    #: element kind of ``array``
    element: str | None = None
    #: computed by the source (MySQL generated column); not written on the target
    generated: bool = False
    charset: str | None = None


#: Engine-neutral column kinds (``Column.kind``).
KINDS: Final = frozenset(
    {
        "bool",
        "int",
        "decimal",
        "float",  # 4-byte
        "double",  # 8-byte
        "str",
        "bytes",
        "date",
        "time",  # time of day (PostgreSQL time / timetz with tz_aware)
        "duration",  # MySQL TIME: signed, may exceed 24h
        "datetime",  # naive timestamp
        "timestamptz",  # absolute instant
        "interval",
        "json",
        "uuid",
        "enum",
        "set",
        "bit",
        "year",
        "array",
        "other",
    }
)


@dataclass(frozen=True, slots=True)
class TableSchema:
    """A table's definition at one point of the source's history.

    ``version`` increases each time capture records a new definition of the same table;
    every :class:`Change` names the version its images were decoded with.
    """

    table: TableId
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    #: other unique keys whose columns are all NOT NULL (usable as row identity)
    unique_keys: tuple[tuple[str, ...], ...] = ()
    version: int = 1
    #: PostgreSQL replica identity FULL, or a source that always logs full before images
    full_before_image: bool = True

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.table} has no column {name!r}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def identity(self) -> tuple[str, ...]:
        """Columns that identify a row: the primary key, else the first unique NOT NULL key.

        Empty when the table has neither; rows are then identified by their full image.
        """
        if self.primary_key:
            return self.primary_key
        if self.unique_keys:
            return self.unique_keys[0]
        return ()


@dataclass(slots=True)
class Change:
    """One row change, truncate, or DDL in a source transaction.

    For ``insert`` only ``after`` is set; for ``delete`` only ``before``; ``update`` has both
    (``before`` may hold only the key when the source logs no full before image).
    ``key`` holds the identity columns' values (before the change for update/delete).
    A ``ddl`` change carries the statement text (None when capture only announces a table's
    definition) and ``table_schema``, the definition after it (None after DROP TABLE). With
    neither, the table is gone under this name (catch-up's stand-in for a rename whose new
    name the snapshot loaded): apply drops it if the target has it.
    """

    op: Op
    table: TableId
    schema_version: int = 1
    key: Row | None = None
    before: Row | None = None
    after: Row | None = None
    row_id: str | None = None
    ddl: str | None = None
    table_schema: TableSchema | None = None


@dataclass(slots=True)
class Transaction:
    """A committed source transaction, its changes in log order.

    ``position`` is the commit position as the connector serialises it (a stable string,
    ordered within one source by the connector). ``first_op`` is the operation number of the
    first change; capture assigns it when the transaction leaves the assembler, and each
    following change has the next number.
    """

    xid: str
    position: str
    commit_time: dt.datetime
    origin: str
    changes: list[Change] = field(default_factory=list)
    first_op: int = 0

    @property
    def last_op(self) -> int:
        return self.first_op + len(self.changes) - 1


def row_key(row: Mapping[str, Value], columns: Sequence[str]) -> tuple[Value, ...]:
    """The tuple of ``row``'s values for ``columns`` (a hashable identity for grouping)."""
    return tuple(_hashable(row[c]) for c in columns)


def _hashable(value: Value) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


@dataclass(frozen=True, slots=True)
class ColumnDiff:
    """How a table's columns changed between two definitions (:func:`column_diff`).

    ``renamed`` pairs (old name, new name) are only the candidates a caller confirmed: a
    column list alone cannot tell a rename from a drop plus an add.
    """

    dropped: tuple[str, ...] = ()
    added: tuple[Column, ...] = ()
    retyped: tuple[Column, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.dropped or self.added or self.retyped or self.renamed)


def column_diff(
    old: TableSchema,
    new: TableSchema,
    is_rename: Callable[[str, str], bool] | None = None,
    *,
    anywhere: bool = False,
) -> ColumnDiff:
    """The column changes from ``old`` to ``new`` (engine-neutral).

    A column gone at position *i* and a new one at the same position with the same source type
    is a rename candidate; ``is_rename(old_name, new_name)`` (the engine's word, e.g. from its
    catalog) confirms it, otherwise it is a drop plus an add (the old values are not carried).
    ``anywhere``: ``is_rename`` is exact (a column's identity, not a guess from positions), so
    a new column of the same type at any position is a candidate (a column dropped before the
    renamed one shifts it).
    """
    old_names = {c.name: c for c in old.columns}
    new_names = {c.name: c for c in new.columns}
    gone = [c for c in old.columns if c.name not in new_names]
    came = [c for c in new.columns if c.name not in old_names]
    renamed: list[tuple[str, str]] = []
    old_pos = {c.name: i for i, c in enumerate(old.columns)}
    new_pos = {c.name: i for i, c in enumerate(new.columns)}
    for col in list(gone):
        twin = next(
            (
                c
                for c in came
                if (anywhere or new_pos[c.name] == old_pos[col.name])
                and c.source_type == col.source_type
                and c.kind == col.kind
            ),
            None,
        )
        if twin is not None and is_rename is not None and is_rename(col.name, twin.name):
            renamed.append((col.name, twin.name))
            gone.remove(col)
            came.remove(twin)
    retyped = tuple(
        c
        for c in new.columns
        if c.name in old_names and old_names[c.name].source_type != c.source_type
    )
    return ColumnDiff(tuple(c.name for c in gone), tuple(came), retyped, tuple(renamed))
