"""The small protocol every engine implements (engines are found by :mod:`connectors.engine`).

Capture, apply and verify talk to an engine only through a :class:`Database` and its capability
flags; "where does MySQL differ?" is answered in ``connectors/mysql/`` and nowhere else.
Role-specific parts (log reading, writing, checksum SQL) live in sibling modules of each
engine package and are reached through methods here.
"""

from __future__ import annotations

import abc
import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from connectors.endpoint import Endpoint
from connectors.engine import EngineDescriptor, get_engine
from connectors.errors import PrerequisiteError
from connectors.model import Op, Row, TableId, TableSchema, Value

if TYPE_CHECKING:
    from connectors.log import LogReader

__all__ = [
    "HEARTBEAT_TABLE",
    "CheckItem",
    "Database",
    "RowRejected",
    "SourceSetup",
    "TableBatch",
    "TableFilter",
    "Writer",
    "open_database",
    "position_comparator",
    "require_ok",
]


@dataclass(frozen=True)
class CheckItem:
    """One replication prerequisite: what it is, what it is now, and how to fix it."""

    name: str
    value: str
    expected: str
    ok: bool
    hint: str = ""
    #: False for advice that does not stop replication (shown as a warning)
    blocking: bool = True


@dataclass(frozen=True)
class TableFilter:
    """Include/exclude ``schema.table`` globs (DESIGN.md: filters)."""

    include: tuple[str, ...] = ("*.*",)
    exclude: tuple[str, ...] = ()
    #: tables selected whatever the patterns say (the source's heartbeat table)
    also: tuple[TableId, ...] = ()

    def __call__(self, table: TableId) -> bool:
        if self.also and table in self.also:
            return True
        name = str(table)
        if not any(fnmatch.fnmatchcase(name, pat) for pat in self.include):
            return False
        return not any(fnmatch.fnmatchcase(name, pat) for pat in self.exclude)

    def schemas(self) -> set[str] | None:
        """Schemas named literally by every include pattern, or None if any is a glob."""
        out: set[str] = set()
        for pat in self.include:
            schema = pat.partition(".")[0]
            if any(ch in schema for ch in "*?["):
                return None
            out.add(schema)
        return out | {t.schema for t in self.also}


#: the heartbeat row's table on a source (``[source] heartbeat``): one row per source id,
#: ``(source_id, beat_us)``, updated by capture every interval; it travels through the trail
#: like any change and apply reads it instead of writing it (capture.heartbeat)
HEARTBEAT_TABLE = TableId("redoline", "redoline_heartbeat")


class Database(abc.ABC):
    """A connection factory plus introspection and prerequisite checks for one engine.

    A subclass names its :class:`connectors.engine.EngineDescriptor` in ``descriptor``; the
    engine's name, dialect and capability flags are copied from it onto the class (the
    descriptor documents each one), so code asks ``db.has_log``, never the engine's name.
    """

    #: the engine's descriptor (connectors/<engine>/descriptor.py)
    descriptor: ClassVar[EngineDescriptor]
    #: engine name (``descriptor.name``)
    engine: ClassVar[str]
    #: sqlglot dialect used to translate DDL to and from this engine
    dialect: ClassVar[str]
    #: capability flags, documented on :class:`connectors.engine.EngineDescriptor`
    has_row_ids: ClassVar[bool] = False
    schema_is_database: ClassVar[bool] = False
    has_log: ClassVar[bool] = False
    keeps_position: ClassVar[bool] = False
    position_scheme: ClassVar[str] = ""
    text_compare_ci: ClassVar[bool] = False
    folds_table_names: ClassVar[bool] = False
    folds_column_names: ClassVar[bool] = False
    #: DB-API parameter placeholder (``%s`` or ``?``)
    placeholder: ClassVar[str] = "%s"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        engine = cls.__dict__.get("descriptor")
        if engine is None:
            return
        cls.engine = engine.name
        cls.dialect = engine.dialect
        cls.placeholder = engine.placeholder
        for flag in _FLAGS:
            setattr(cls, flag, getattr(engine, flag))

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint.display!r})"

    @abc.abstractmethod
    def connect(self, **kwargs: Any) -> Any:
        """A new DB-API connection; driver errors mapped to :mod:`connectors.errors`."""

    @staticmethod
    @abc.abstractmethod
    def quote(identifier: str) -> str:
        """``identifier`` quoted for this dialect (always quote; never trust names). Static:
        code that knows only a dialect quotes through the engine's class."""

    def qualified(self, table: TableId) -> str:
        return f"{self.quote(table.schema)}.{self.quote(table.name)}"

    def check_schema_name(self, schema: str) -> None:
        """Raise :class:`SchemaError` when this target cannot hold a schema called ``schema``
        (default: it can)."""
        return None

    @abc.abstractmethod
    def list_tables(self, table_filter: TableFilter | None = None) -> list[TableId]:
        """Base tables visible on this endpoint that pass ``table_filter``."""

    def list_schemas(self) -> list[str]:
        """Schema (MySQL: database) names that may hold replicated tables, empty ones too."""
        return sorted({t.schema for t in self.list_tables(TableFilter())})

    @abc.abstractmethod
    def table_schema(self, table: TableId) -> TableSchema:
        """The table's current definition; MissingObjectError when it does not exist."""

    def table_schemas(self, tables: Iterable[TableId]) -> dict[TableId, TableSchema]:
        return {t: self.table_schema(t) for t in tables}

    @abc.abstractmethod
    def check_source(self, tables: Sequence[TableId] = ()) -> list[CheckItem]:
        """Prerequisites for reading this database's log."""

    def full_before_image_fix(self, table: TableId) -> str:
        """How to make the source log a complete before image of ``table``'s updates."""
        return "make the source log full before images"

    @abc.abstractmethod
    def check_target(self) -> list[CheckItem]:
        """Prerequisites for writing to this database."""

    # ------------------------------------------------------------------ log (sources only)

    def open_log(
        self,
        start: str | None,
        *,
        tables: TableFilter,
        until_caught_up: bool = False,
        options: dict[str, Any] | None = None,
    ) -> LogReader:
        """A reader of this database's log from just after ``start`` (None: from now).

        ``tables`` lets the reader drop other tables' changes before decoding them.
        """
        self.descriptor.role("log_reader")
        raise NotImplementedError(f"{self.engine} does not build its log reader")

    # ------------------------------------------------------------------ writing (targets)

    def open_writer(self) -> Writer:
        """A :class:`Writer` on a new connection (the engine's ``writer`` role)."""
        writer: Writer = self.descriptor.role("writer").open_writer(self)
        return writer

    # ------------------------------------------------------------------ heartbeat (sources)

    def create_heartbeat(self) -> None:
        """Create :data:`HEARTBEAT_TABLE` if it is missing (``redoline init``, capture)."""
        raise NotImplementedError(f"{self.engine} sources have no heartbeat table")

    def write_heartbeat(self, conn: Any, source_id: str, beat_us: int) -> None:
        """Upsert this source's heartbeat row on ``conn`` (from :meth:`connect`) and commit:
        ``beat_us`` is the writer's clock in microseconds since the epoch."""
        raise NotImplementedError(f"{self.engine} sources have no heartbeat table")

    def end_position(self) -> str:
        """The source's current end-of-log position."""
        self.descriptor.role("log_reader")
        raise NotImplementedError(f"{self.engine} does not tell its end position")

    @classmethod
    def compare_positions(cls, a: str, b: str) -> int:
        """-1, 0 or 1 as position ``a`` is before, equal to, or after ``b`` (the engine's
        ``positions`` role; :func:`position_comparator` hands it out without a connection)."""
        compare: Callable[[str, str], int] = cls.descriptor.role("positions").compare
        return compare(a, b)

    # ------------------------------------------------------------------ source preparation

    def prepare_source(
        self,
        tables: Sequence[TableId],
        options: Any,
        *,
        trail_dir: Path,
        source_id: str,
        timeout: float | None = None,
    ) -> SourceSetup:
        """Make the source ready to capture ``tables`` (``redoline init``; the ``prepare``
        role: PostgreSQL's slot and publication)."""
        setup: SourceSetup = self.descriptor.role("prepare").prepare_source(
            self, tables, options, trail_dir=trail_dir, source_id=source_id, timeout=timeout
        )
        return setup

    def release_source(self, options: Any, *, trail_dir: Path, source_id: str) -> SourceSetup:
        """Undo :meth:`prepare_source` for this trail (``redoline drop``)."""
        setup: SourceSetup = self.descriptor.role("prepare").release_source(
            self, options, trail_dir=trail_dir, source_id=source_id
        )
        return setup


#: capability flags a Database copies from its descriptor
_FLAGS = (
    "has_row_ids",
    "schema_is_database",
    "has_log",
    "keeps_position",
    "position_scheme",
    "text_compare_ci",
    "folds_table_names",
    "folds_column_names",
)


@dataclass(frozen=True)
class SourceSetup:
    """What ``prepare_source`` / ``release_source`` did: ``--json`` fields, lines for people."""

    fields: dict[str, Any]
    lines: list[str]


def open_database(endpoint: Endpoint) -> Database:
    """The :class:`Database` for ``endpoint``'s engine."""
    return get_engine(endpoint.engine).database_class()(endpoint)


def position_comparator(engine: str) -> Callable[[str, str], int]:
    """How ``engine``'s positions order, without connecting: apply orders a trail's
    positions by the engine its header names."""
    compare: Callable[[str, str], int] = get_engine(engine).role("positions").compare
    return compare


def require_ok(items: Sequence[CheckItem], what: str) -> None:
    """Raise PrerequisiteError listing every blocking item that failed."""
    bad = [i for i in items if i.blocking and not i.ok]
    if bad:
        lines = "; ".join(f"{i.name} is {i.value}, needs {i.expected}" for i in bad)
        raise PrerequisiteError(
            f"{what} is not ready for replication: {lines}",
            hint="; ".join(i.hint for i in bad if i.hint) + " (run `redoline check` for all)",
        )


# --------------------------------------------------------------------------- writing


@dataclass
class TableBatch:
    """The net effect of a group of source transactions on one target table.

    ``schema`` names the *target* table and lists the columns as the trail recorded them
    (generated columns are never written). Tuples follow :attr:`columns` order, except
    ``deletes`` of a keyed table, which hold ``key`` values.

    For a keyed table (``key`` not empty) each key appears at most once across ``deletes``,
    ``updates``, ``patches`` and ``inserts``; statements run in that order. For a keyless
    table rows are identified by their whole image: ``deletes[i]`` is an image of which
    ``delete_counts[i]`` copies go, and ``inserts`` may repeat an image.

    Without ``collision`` the writer must raise :class:`RowRejected` when a delete or update
    does not find its row, or an insert finds one, so the applier can replay the group row
    by row and name the culprit. With ``collision`` it reconciles instead (insert that
    exists: update; update that misses: insert; delete that misses: ignored) and counts.
    """

    schema: TableSchema
    key: tuple[str, ...]
    deletes: list[tuple[Value, ...]] = field(default_factory=list)
    delete_counts: list[int] = field(default_factory=list)
    #: full after images of rows that exist on the target
    updates: list[tuple[Value, ...]] = field(default_factory=list)
    #: partial images (TOAST unchanged columns left out): column names -> rows in that order
    patches: dict[tuple[str, ...], list[tuple[Value, ...]]] = field(default_factory=dict)
    inserts: list[tuple[Value, ...]] = field(default_factory=list)
    collision: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.schema.columns if not c.generated)

    def __len__(self) -> int:
        return (
            len(self.deletes)
            + len(self.updates)
            + len(self.inserts)
            + sum(len(v) for v in self.patches.values())
        )


class RowRejected(Exception):
    """The target refused a statement; carries the target's own message (not user-facing)."""

    def __init__(self, message: str, *, row: Row | None = None, missing: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.row = row
        #: the row to update/delete was not there (rather than a constraint/type error)
        self.missing = missing


class Writer(Protocol):
    """What apply needs from a target: transactions, set-based merges, per-row statements.

    One writer holds one connection. ``begin``/``commit`` bracket a target transaction; the
    checkpoint is saved inside it so data and progress commit together (exactly once).
    """

    #: sqlglot dialect of the target (``postgres``, ``mysql``, ``duckdb``)
    dialect: str
    #: the target's :class:`Database`
    database: Database
    #: DDL is transactional: it commits with the checkpoint (False: MySQL/MariaDB, where each
    #: DDL statement commits on its own, so apply marks it with ``mark_ddl`` first)
    transactional_ddl: bool

    def begin(self) -> None:
        """Start a target transaction."""

    def commit(self) -> None:
        """Commit the current target transaction."""

    def rollback(self) -> None:
        """Roll the current target transaction back."""

    def close(self) -> None:
        """Close the connection (an open transaction is rolled back)."""

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        """Run one statement; return the affected row count. Errors: :class:`RowRejected`."""

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one query and return its rows."""

    def table_exists(self, table: TableId) -> bool:
        """Whether ``table`` exists on the target."""

    def create_schema(self, schema: str) -> None:
        """Create the schema (PostgreSQL/DuckDB) or database (MySQL) if it is missing."""

    def merge(self, batch: TableBatch) -> int:
        """Write ``batch`` set-based; return the number of collisions reconciled."""

    def apply_row(
        self,
        schema: TableSchema,
        key: tuple[str, ...],
        op: Op,
        before: Row | None,
        after: Row | None,
        *,
        collision: bool = False,
    ) -> int:
        """Write one change as its own statement(s); return collisions reconciled (0/1).

        ``before`` holds the identity (key columns, or the whole image for a keyless table);
        ``after`` may hold ``UNCHANGED`` values, which are left as they are on the target.
        """

    def truncate(self, table: TableId) -> None:
        """Remove every row of ``table`` inside the current transaction."""

    def load_checkpoint(self, source_id: str, target_id: str) -> tuple[int, str | None]:
        """The last applied operation number and position (0, None when none)."""

    def save_checkpoint(
        self, source_id: str, target_id: str, op: int, position: str, commit_time: Any
    ) -> None:
        """Record progress inside the current transaction."""

    def load_ddl_mark(self, source_id: str, target_id: str) -> tuple[int, int, str] | None:
        """The DDL statement marked as running: (operation, step, statement), or None."""

    def mark_ddl(self, source_id: str, target_id: str, op: int, step: int, statement: str) -> None:
        """Record, committed, that DDL statement ``step`` of operation ``op`` runs next."""

    def clear_ddl_mark(self, source_id: str, target_id: str) -> None:
        """Remove the DDL mark inside the current transaction."""

    def load_trail_binding(self, source_id: str, target_id: str) -> str | None:
        """The id of the trail the checkpoint row was applied from (None: not recorded)."""

    def bind_trail(self, source_id: str, target_id: str, trail_id: str, *, reset: bool) -> None:
        """Record the checkpoint's trail (committed); ``reset`` rewinds it to operation 0."""
