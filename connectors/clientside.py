"""Verify by hashing on this host: for sources whose own SQL cannot give verify's digests.

Some sources have no digest redoline can count on or test (ODBC drivers, and Oracle and
SQL Server, whose connectors have only met scripted fakes), so verify hashes their rows
client-side: the first query of a verify run that names a source table reads the whole table
once through the engine's driver (:meth:`ClientSideChecksum.fetch`, the engine's part) into a
scratch DuckDB database in a temporary directory, typed by the columns' kinds; every checksum
query then runs there, in DuckDB's SQL (:class:`connectors.duckdb.checksum.Checksum` gives
the canonical encoding every engine shares, docs/verify.md). When verify closes its sessions
(before the online re-check) the copy is dropped, so the re-check reads the source again.

Verify writes its SQL with the source's identifier quoting; an engine whose quoting is not
DuckDB's double quotes rewrites it in :meth:`ClientSideChecksum.scratch_sql`.

Costs: one full read of each verified table per pass, and local disk about the size of the
table. Repair into such a source is refused: the copy is not the source.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import duckdb
import pyarrow as pa

from connectors.base import Database
from connectors.duckdb.checksum import Checksum as DuckDBChecksum
from connectors.errors import ConfigError, MissingObjectError, SchemaError, ToolkitError
from connectors.model import Column, Json, TableId, TableSchema
from connectors.rowtext import as_bool

__all__ = ["ClientSideChecksum", "Session"]

log = logging.getLogger("redoline.verify")

#: memory the scratch database may use before it spills to its directory
_MEMORY_LIMIT: Final = "512MB"
#: a quoted "schema"."table" pair in verify's SQL (string literals removed first)
_QUALIFIED: Final = re.compile(r'"((?:[^"]|"")*)"\s*\.\s*"((?:[^"]|"")*)"')
_LITERAL: Final = re.compile(r"'(?:[^']|'')*'")


def _arrow_type(col: Column) -> pa.DataType:
    kind = col.kind
    if kind == "bool":
        return pa.bool_()
    if kind == "int":
        return pa.uint64() if col.unsigned and (col.bits or 64) >= 64 else pa.int64()
    if kind == "decimal":
        if col.precision and col.precision <= 38:
            return pa.decimal128(col.precision, col.scale or 0)
        return pa.string()
    if kind == "float":
        return pa.float32()
    if kind == "double":
        return pa.float64()
    if kind == "bytes":
        return pa.large_binary()
    if kind == "date":
        return pa.date32()
    if kind == "time":
        return pa.time64("us")
    if kind == "datetime":
        return pa.timestamp("us")
    if kind == "timestamptz":
        return pa.timestamp("us", tz="UTC")
    return pa.large_string()


def _instant(value: Any) -> dt.datetime:
    """An instant as aware UTC; a naive value is taken as UTC already (the engine's
    fetch extracted it so)."""
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{value!r} is not a timestamp with time zone")
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Json):
        return value.text
    return str(value)


def _normaliser(col: Column) -> Callable[[Any], Any] | None:
    """Driver value -> value Arrow takes for the column's type (None when none is needed)."""
    kind = col.kind
    if kind == "bool":
        return as_bool
    if kind == "int":
        return lambda v: v if isinstance(v, int) else int(v)
    if kind == "uuid":
        return lambda v: str(v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)))
    if kind == "decimal" and not (col.precision and col.precision <= 38):
        return lambda v: format(decimal.Decimal(v), "f")
    if kind == "bytes":
        return bytes
    if kind == "timestamptz":
        return _instant
    if kind in ("str", "json", "other"):
        return _text
    return None


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Scratch:
    """The scratch DuckDB database of one verify pass, and the tables copied into it."""

    def __init__(self, owner: ClientSideChecksum) -> None:
        self.owner = owner
        self.dir = tempfile.TemporaryDirectory(prefix="redoline-verify-copy-")
        self.conn = duckdb.connect(f"{self.dir.name}/copy.duckdb")
        self.conn.execute(f"SET memory_limit = '{_MEMORY_LIMIT}'")
        self.conn.execute(f"SET temp_directory = '{self.dir.name}/spill'")
        self.copied: dict[TableId, bool] = {}
        self.lock = threading.Lock()

    def ensure(self, table: TableId) -> None:
        """Copy ``table`` from the source unless this pass did (not a table: nothing)."""
        with self.lock:
            if table in self.copied:
                return
            try:
                schema = self.owner.db.table_schema(table)
            except MissingObjectError:
                self.copied[table] = False
                return
            self._copy(schema)
            self.copied[table] = True

    def _copy(self, schema: TableSchema) -> None:
        table = schema.table
        fields = [pa.field(f"c{i}", _arrow_type(c)) for i, c in enumerate(schema.columns)]
        arrow_schema = pa.schema(fields)
        norms = [_normaliser(c) for c in schema.columns]
        target = f"{_q(table.schema)}.{_q(table.name)}"
        names = ", ".join(
            (f"CAST(c{i} AS UUID)" if c.kind == "uuid" else f"c{i}") + f" AS {_q(c.name)}"
            for i, c in enumerate(schema.columns)
        )
        self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(table.schema)}")
        empty = pa.Table.from_batches([], schema=arrow_schema)  # noqa: F841 (DuckDB scans it)
        self.conn.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT {names} FROM empty")
        rows = 0
        batches = self.owner.fetch(schema)
        try:
            for fetched in batches:
                arrays = []
                for i, norm in enumerate(norms):
                    values = [r[i] for r in fetched]
                    if norm is not None:
                        values = [None if v is None else norm(v) for v in values]
                    arrays.append(pa.array(values, type=fields[i].type))
                batch = pa.Table.from_arrays(arrays, schema=arrow_schema)  # noqa: F841
                self.conn.execute(f"INSERT INTO {target} SELECT {names} FROM batch")
                rows += len(fetched)
        except (ValueError, TypeError, pa.ArrowException, decimal.InvalidOperation) as exc:
            raise SchemaError(f"{table}: a value cannot be compared: {exc}") from None
        finally:
            # a generator stopped early releases the engine's connection now, not at GC
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        log.info("verify read %d rows of %s (%s)", rows, table, self.owner.engine_name)

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            self.dir.cleanup()


class Session:
    """A cursor of the scratch database; copies each source table the first time it is named."""

    def __init__(self, owner: ClientSideChecksum) -> None:
        self.owner = owner
        self.scratch = owner.scratch()
        self.conn = self.scratch.conn.cursor()
        self.conn.execute("SET TimeZone = 'UTC'")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        sql = self.owner.scratch_sql(sql)
        bare = _LITERAL.sub("''", sql)
        for schema, name in _QUALIFIED.findall(bare):
            self.scratch.ensure(TableId(schema.replace('""', '"'), name.replace('""', '"')))
        try:
            return list(self.conn.execute(sql).fetchall())
        except duckdb.Error as exc:
            raise ToolkitError(f"{self.owner.db.endpoint.display} (verify copy): {exc}") from None

    def run_script(self, statements: Sequence[str]) -> None:
        raise ConfigError(
            f"repair cannot write into {self.owner.db.endpoint.display} (verify reads a copy of it)"
        )

    def close(self) -> None:
        self.conn.close()
        self.owner.release()


class ClientSideChecksum(DuckDBChecksum):
    """DuckDB's canonical encoding over a scratch copy of a source's tables.

    An engine subclasses it with :meth:`fetch` (and :meth:`scratch_sql` when its identifier
    quoting is not double quotes).
    """

    engine_name = "hashed on this host"

    def __init__(self, db: Database, *, writable: bool = False) -> None:
        if writable:
            raise ConfigError(
                f"repair cannot write into {db.endpoint.display} ({db.descriptor.title} is "
                "a source: verify reads a copy of it)",
                hint="repair the target, or swap --source and --target only between targets",
            )
        self.db = db  # type: ignore[assignment]
        self.writable = False
        self._lock = threading.Lock()
        self._scratch: _Scratch | None = None
        self._users = 0

    def fetch(self, schema: TableSchema) -> Iterator[Sequence[Sequence[Any]]]:
        """Batches of every row of ``schema.table`` from the source, values in
        ``schema.columns`` order as the driver returns them (instants with their offset, or
        naive UTC); driver errors already mapped to the redoline hierarchy."""
        raise NotImplementedError

    def scratch_sql(self, sql: str) -> str:
        """Verify's SQL (in the source's identifier quoting) as DuckDB's."""
        return sql

    def scratch(self) -> _Scratch:
        with self._lock:
            if self._scratch is None:
                self._scratch = _Scratch(self)
            self._users += 1
            return self._scratch

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users <= 0 and self._scratch is not None:
                self._scratch.close()
                self._scratch = None

    def session(self) -> Session:  # type: ignore[override]
        return Session(self)

    def estimate_sql(self, table: TableId) -> str:
        """Exact count of the copy (it is local): names the table, so it is copied first."""
        return f"SELECT count(*), NULL FROM {_q(table.schema)}.{_q(table.name)}"

    def literal(self, value: Any, column: Column) -> str:
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return super().literal(value, column)
