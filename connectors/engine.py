"""One descriptor per engine: what the rest of redoline may know about it.

Each engine package ``connectors/<engine>/`` has a ``descriptor`` module whose ``ENGINE`` is an
:class:`EngineDescriptor`: its URL schemes and default port, its SQL dialect, its capability
flags (documented one by one below, as sqlglot documents a ``Dialect``'s), its placeholder
style, the role modules it provides, and the typed options of its ``[source]`` section. The
engines are found by looking for that module in every subpackage of ``connectors``, so adding
an engine touches only its own package (docs/engines.md).

Nothing outside ``connectors/`` compares an engine's name: code asks a flag, a role, or the
:class:`connectors.base.Database` the descriptor builds.

Roles (``EngineDescriptor.roles``: role name -> module inside the engine package):

==================  ====================================================================
``log_reader``      reads the source's log (``Database.open_log`` builds its reader)
``positions``       ``compare(a, b)``: how two positions of this engine order
``snapshot``        ``open_snapshot(db, ...)``: a consistent snapshot read in key chunks
``writer``          ``open_writer(db)``: the target :class:`connectors.base.Writer`
``bulk``            ``BulkTarget``: the snapshot's bulk load and progress tables
``types``           ``column_type(col, in_key=...)``: a column's type on this target
``checksum``        ``Checksum``: verify's row text and chunk digests in this SQL
``prepare``         ``prepare_source`` / ``release_source`` for ``redoline init`` / ``drop``
``url``             ``parse(url, password=, key=)`` / ``display(endpoint)``: URLs of the
                    engine's own shape (ODBC's DSN or driver attributes)
==================  ====================================================================

A role an engine does not provide is a :class:`ConfigError` naming the engine and the role.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from connectors.errors import ConfigError

if TYPE_CHECKING:
    from connectors.base import Database

__all__ = [
    "ROLES",
    "EngineDescriptor",
    "NoOptions",
    "all_engines",
    "engine_for_dialect",
    "engine_for_scheme",
    "get_engine",
    "source_option_keys",
]

#: role name -> what it is, for error messages and docs/engines.md
ROLES: Final = {
    "log_reader": "log reader",
    "positions": "position ordering",
    "snapshot": "consistent snapshot",
    "writer": "writer",
    "bulk": "snapshot bulk load",
    "types": "target type mapping",
    "checksum": "checksum SQL",
    "prepare": "source preparation (redoline init / drop)",
    "url": "URL syntax of its own",
}


@dataclass(frozen=True)
class NoOptions:
    """The options of an engine whose ``[source]`` section takes no engine-specific keys."""


@dataclass(frozen=True)
class EngineDescriptor:
    """Everything engine-specific that code outside the engine's package may ask."""

    #: the engine's name (trail headers record it; positions are ordered by it)
    name: str
    #: what people call it in messages ("MySQL/MariaDB")
    title: str
    #: URL schemes that select this engine (``mariadb://`` and ``mysql://`` both: MySQL)
    schemes: tuple[str, ...]
    #: ``"module:Class"`` of the :class:`connectors.base.Database` subclass
    database: str
    #: sqlglot dialect used to translate DDL to and from this engine
    dialect: str
    #: DB-API parameter placeholder of its driver (``%s`` or ``?``)
    placeholder: str = "%s"
    #: TCP port when the URL names none (None: the URL is a file path, as DuckDB's)
    default_port: int | None = None
    #: role name (see :data:`ROLES`) -> module inside the engine package
    roles: Mapping[str, str] = field(default_factory=dict)
    #: frozen dataclass of the engine's own ``[source]`` keys, each with its default
    options: type[Any] = NoOptions
    #: the engine has physical row ids a rowid map can use (Oracle ROWID)
    has_row_ids: bool = False
    #: a "database" is a schema (MySQL); elsewhere schemas live inside a database
    schema_is_database: bool = False
    #: the engine has a transaction log redoline can capture from
    has_log: bool = False
    #: the source keeps the reader's start itself (a PostgreSQL slot): an empty trail starts
    #: there, not at the current end of the log
    keeps_position: bool = False
    #: how this engine's log positions are written and ordered (recorded in trail headers)
    position_scheme: str = ""
    #: text compares case-insensitively by default, so a ``[tables.where]`` predicate
    #: evaluated in Python must too
    text_compare_ci: bool = False
    #: table names that differ only in case name the same table here (as a target)
    folds_table_names: bool = False
    #: column names that differ only in case name the same column here (as a target)
    folds_column_names: bool = False
    #: schemas of two databases on one server are distinct (PostgreSQL): the same host and
    #: port with another database name is another place
    database_scopes_schemas: bool = False
    #: (as a target) one object per DROP and one action per ALTER TABLE statement (DuckDB:
    #: "Only one ALTER command per statement is supported")
    ddl_one_change_per_statement: bool = False
    #: (as a target) MySQL's CHANGE / MODIFY COLUMN (a column redefined whole) is native;
    #: elsewhere it becomes RENAME COLUMN plus ALTER COLUMN ... TYPE / NOT NULL
    ddl_redefines_columns: bool = False
    #: (as a target) ALTER COLUMN ... TYPE needs ``USING col::type`` where no implicit cast
    #: exists (PostgreSQL)
    ddl_retype_using: bool = False
    #: (as a target) ``RENAME TABLE a TO b, c TO d`` renames several tables atomically (MySQL);
    #: elsewhere each is an ALTER TABLE ... RENAME TO (plus SET SCHEMA to move it)
    ddl_rename_tables: bool = False

    # ------------------------------------------------------------------ roles

    def role(self, role: str) -> ModuleType:
        """The engine's module for ``role``; a :class:`ConfigError` when it has none."""
        module = self.roles.get(role)
        if module is None:
            raise ConfigError(
                f"the {self.name} engine has no {ROLES.get(role, role)} role ({role})",
                hint=f"{self.title} cannot be used where redoline needs a {ROLES.get(role, role)}",
            )
        return importlib.import_module(f"{self.package}.{module}")

    def provides(self, role: str) -> bool:
        return role in self.roles

    @property
    def package(self) -> str:
        return self.database.partition(":")[0]

    def database_class(self) -> type[Database]:
        module, _, name = self.database.partition(":")
        cls: type[Database] = getattr(importlib.import_module(module), name)
        return cls

    @property
    def url_is_path(self) -> bool:
        """The URL names a file, not a server (no host, port or user)."""
        return self.default_port is None and "url" not in self.roles

    # ------------------------------------------------------------------ options

    def parse_options(self, raw: Mapping[str, Any]) -> Any:
        """This engine's typed options from ``[source]`` keys (others' keys are ignored: a
        config may move between engines); ``ValueError(key, message)`` names a bad one."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(self.options):
            if f.name in raw and raw[f.name] is not None:
                kwargs[f.name] = raw[f.name]
        options = self.options(**kwargs)
        check = getattr(options, "problems", None)
        if check is not None:
            for key, message in check():
                raise ValueError(key, message)
        return options


@cache
def all_engines() -> tuple[EngineDescriptor, ...]:
    """Every engine package's descriptor (``connectors/<engine>/descriptor.py``)."""
    import connectors

    found = []
    for info in pkgutil.iter_modules(connectors.__path__):
        if not info.ispkg:
            continue
        try:
            module = importlib.import_module(f"connectors.{info.name}.descriptor")
        except ModuleNotFoundError as exc:
            if exc.name == f"connectors.{info.name}.descriptor":
                continue
            raise
        found.append(module.ENGINE)
    return tuple(sorted(found, key=lambda e: e.name))


def get_engine(name: str) -> EngineDescriptor:
    """The descriptor of the engine called ``name`` (as trail headers record it)."""
    for engine in all_engines():
        if engine.name == name:
            return engine
    raise ConfigError(
        f"no connector for engine {name!r}",
        hint="known engines: " + ", ".join(e.name for e in all_engines()),
    )


def engine_for_scheme(scheme: str) -> EngineDescriptor | None:
    """The engine a URL scheme selects (None: no engine has it)."""
    for engine in all_engines():
        if scheme in engine.schemes:
            return engine
    return None


def engine_for_dialect(dialect: str) -> EngineDescriptor:
    """The engine whose SQL dialect is ``dialect`` (the first, if several share one)."""
    for engine in all_engines():
        if engine.dialect == dialect:
            return engine
    raise ConfigError(f"no connector speaks the {dialect!r} SQL dialect")


def schemes() -> list[str]:
    return sorted(s for e in all_engines() for s in e.schemes)


def source_option_keys() -> dict[str, EngineDescriptor]:
    """Every engine-specific ``[source]`` key -> the engine that takes it."""
    out: dict[str, EngineDescriptor] = {}
    for engine in all_engines():
        for f in dataclasses.fields(engine.options):
            out.setdefault(f.name, engine)
    return out
