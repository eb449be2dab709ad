"""The source's tables as the target has them: the layer under :class:`apply.applier.Applier`.

A table's definition by trail version (``source_schema``) and as it is on the target
(``target_schema``: renamed, tagged with the N:1 source column, keyed through the rowid map
when the source has row ids), which target tables are missing and their creation, and what a
TRUNCATE empties.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from apply.names import check_target_names
from apply.options import ApplyOptions, ApplyStats, SchemaLookup
from apply.rowid import RowidMap, uses_rowid, with_row_key
from apply.typemap import ensure_table
from connectors.base import Writer
from connectors.errors import SchemaError, UnknownDefinitionError
from connectors.model import Change, Column, Op, TableId, TableSchema

__all__ = ["TargetTables"]

log = logging.getLogger("redoline.apply")


class TargetTables:
    """The source's tables as the target has them (the base of :class:`apply.applier.Applier`)."""

    def __init__(self, writer: Writer, schemas: SchemaLookup | None, options: ApplyOptions):
        self.writer = writer
        self.options = options
        self._lookup = schemas
        self._history: dict[tuple[TableId, int], TableSchema] = {}
        self._targets: dict[tuple[TableId, int], TableSchema] = {}
        self._existing: set[TableId] = set()
        #: tables this run created, checked together for names the target folds into one
        self._created_schemas: dict[TableId, TableSchema] = {}
        #: target tables a snapshot of this source loaded (their definition is redoline's)
        self.loaded_tables: set[TableId] = set()
        self.stats = ApplyStats()
        self._rowids = (
            RowidMap(writer, options.target_id, options.source_id) if options.row_ids else None
        )
        #: id(source TableId) -> (that TableId, version, _targets, schema) (see target_schema)
        self._fast_targets: dict[int, tuple[TableId, int, Any, TableSchema]] = {}

    # ------------------------------------------------------------------ schemas

    def source_schema(self, table: TableId, version: int) -> TableSchema:
        found = self._history.get((table, version))
        if found is None and self._lookup is not None:
            found = self._lookup(table, version)
            self._history[(table, version)] = found
        if found is None:
            raise SchemaError(f"no definition of {table} version {version} in the trail")
        return found

    def target_schema(self, table: TableId, version: int) -> TableSchema:
        """``table``'s definition as it is on the target: renamed, tagged with the source."""
        # Hot path (twice per change): the trail decoder shares one TableId per table, so
        # look it up by identity instead of hashing the dataclass. An entry holds the
        # TableId (its id cannot be reused meanwhile) and the `_targets` dict it came from
        # (DDL replaces that dict, which retires every entry).
        hit = self._fast_targets.get(id(table))
        if hit is not None and hit[0] is table and hit[1] == version and hit[2] is self._targets:
            return hit[3]
        found = self._targets.get((table, version))
        if found is None:
            src = self.source_schema(table, version)
            found = self._to_target(src)
            self._targets[(table, version)] = found
        self._fast_targets[id(table)] = (table, version, self._targets, found)
        return found

    def _truncated(self, change: Change) -> tuple[TableId, TableSchema | None]:
        """The target table a TRUNCATE empties, with its definition when the trail has one.

        A TRUNCATE can be a table's first change in the trail (its rows came by snapshot, so
        no row event announced it): the trail then holds no definition, yet the target table
        is known by its (renamed) name, which is all emptying it needs.
        """
        try:
            schema = self.target_schema(change.table, change.schema_version)
        except UnknownDefinitionError:
            name = self.options.rename(change.table) if self.options.rename else change.table
            return name, None
        return schema.table, schema

    def _truncate(self, change: Change) -> None:
        target, schema = self._truncated(change)
        # a table known only by name that is not on the target has no rows to remove
        if schema is not None or target in self._existing or self.writer.table_exists(target):
            self.writer.truncate(target)
        self._forget_rows(change.table, schema)

    def _to_target(self, src: TableSchema) -> TableSchema:
        name = self.options.rename(src.table) if self.options.rename else src.table
        if self.options.row_ids and not src.identity:
            src = with_row_key(src)  # identity through the rowid map
        sc = self.options.source_column
        if not sc:
            return replace(src, table=name)
        tag = Column(sc, "str", source_type="", nullable=False, length=128)
        return replace(
            src,
            table=name,
            columns=(tag, *src.columns),
            primary_key=(sc, *src.primary_key) if src.primary_key else (),
            unique_keys=tuple((sc, *u) for u in src.unique_keys),
        )

    def _identified(self, change: Change, schema: TableSchema, collision: bool) -> Change:
        """``change`` carrying its surrogate key when ``schema`` goes through the rowid map."""
        if self._rowids is None or not uses_rowid(schema):
            return change
        return self._rowids.tag(change, collision=collision)

    def _forget_rows(self, source: TableId, schema: TableSchema | None) -> None:
        """A TRUNCATE or DROP of ``source``: its rowid mappings go too."""
        if self._rowids is not None and (schema is None or uses_rowid(schema)):
            self._rowids.forget_table(source)

    def _tagged(self, change: Change) -> Change:
        sc = self.options.source_column
        if not sc:
            return change
        value = {sc: self.options.source_id}
        return replace(
            change,
            key={**value, **change.key} if change.key is not None else None,
            before={**value, **change.before} if change.before is not None else None,
            after={**value, **change.after} if change.after is not None else None,
        )

    def _missing_tables(self, changes: list[Change]) -> list[tuple[TableId, TableSchema]]:
        out: dict[TableId, TableSchema] = {}
        checked: set[int] = set()  # schemas are cached objects: each is looked at once
        for change in changes:
            if change.op is Op.DDL:
                continue
            if change.op is Op.TRUNCATE:
                known = self._truncated(change)[1]
                if known is None:
                    continue  # nothing to create it from; _truncate leaves it alone
                schema = known
            else:
                schema = self.target_schema(change.table, change.schema_version)
            if id(schema) in checked:
                continue
            checked.add(id(schema))
            if schema.table in self._existing or schema.table in out:
                continue
            if self.writer.table_exists(schema.table):
                self._existing.add(schema.table)
            else:
                out[schema.table] = schema
        return list(out.items())

    def _create(self, table: TableId, schema: TableSchema) -> None:
        if not self.options.create_tables:
            raise SchemaError(
                f"target table {table} does not exist",
                hint="create it, or let apply create tables from the trail",
            )
        # two source tables (or columns) must not become one on a case-folding target
        self._created_schemas[table] = schema
        check_target_names(self.writer.database, self._created_schemas.items())
        ensure_table(self.writer, schema, table, source_dialect=self.options.source_dialect)
        self.writer.commit()
        self._existing.add(table)
        self.stats.tables_created.append(str(table))
