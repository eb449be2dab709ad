"""The rowid map: row identity for keyless tables of sources with physical row ids.

DESIGN.md (Row identity): primary key; else a unique NOT NULL key; else the source's row id
(Oracle ROWID, SQL Server physical locator) through a map kept on the target; else the whole
row image. This module is the third rung.

A keyless source table whose changes carry :attr:`connectors.model.Change.row_id` gets, on the
target, one more column :data:`ROW_KEY` (``BIGINT NOT NULL``, the target table's primary key).
The table ``redoline.rowid_map`` maps ``(target id, source id, source table, source row id)``
to that surrogate key. From there the table is an ordinary keyed table: the applier tags every
change with the surrogate key (:meth:`RowidMap.tag`) and collapses and merges it set-based like
any other keyed table, instead of joining on every column and guessing which of several
identical rows a delete meant.

* insert: a new surrogate key (per table, one more than the largest known), mapped;
* update: the key of the mapped row id;
* delete: the key of the mapped row id; the mapping goes;
* truncate / DROP TABLE: every mapping of the table goes.

Map changes are written set-based (``Writer.merge``) just before the checkpoint, in the same
target transaction as the rows, so they are exactly once with the data. After a rollback
:meth:`RowidMap.reset` forgets everything in memory; the next use reloads from the target.
Each table's mappings are loaded into memory on first use (one query), which keeps the hot
path free of per-row lookups; the cost is memory in proportion to the table's rows.

A snapshot of such a table builds the map the same way (:class:`SnapshotKeys`): the source
reads each row's row id in place of :data:`ROW_KEY`, the row gets a surrogate key, and the
chunk's mappings are bulk-loaded in the chunk's own target transaction, so a later update or
delete of a snapshot-loaded row finds it exactly like one apply inserted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from apply.typemap import create_table_sql, ensure_table
from connectors.base import RowRejected, TableBatch
from connectors.model import ROW_KEY, Change, Column, Op, TableId, TableSchema
from connectors.rowtext import row_writer

if TYPE_CHECKING:
    from connectors._bulk import BulkTarget
    from connectors.base import Writer

__all__ = ["MAP_TABLE", "ROW_KEY", "RowidMap", "SnapshotKeys", "uses_rowid"]

log = logging.getLogger("redoline.apply")

#: where the map lives on the target (beside the checkpoint)
MAP_TABLE: Final = TableId("redoline", "rowid_map")

_MAP_SCHEMA: Final = TableSchema(
    MAP_TABLE,
    (
        Column("target_id", "str", nullable=False, length=128),
        Column("source_id", "str", nullable=False, length=128),
        Column("source_table", "str", nullable=False, length=200),
        Column("row_id", "str", nullable=False, length=200),
        Column("target_key", "int", nullable=False, bits=64),
    ),
    primary_key=("target_id", "source_id", "source_table", "row_id"),
)
_KEY_COLUMN: Final = Column(ROW_KEY, "int", "", nullable=False, bits=64)


def with_row_key(schema: TableSchema) -> TableSchema:
    """``schema`` (a keyless table) with the surrogate key column in front as primary key."""
    return replace(schema, columns=(_KEY_COLUMN, *schema.columns), primary_key=(ROW_KEY,))


def uses_rowid(schema: TableSchema) -> bool:
    """Whether a *target* definition is identified through the rowid map."""
    return ROW_KEY in schema.primary_key


@dataclass
class _Table:
    #: row id -> surrogate key, as the target will hold it once the group commits
    keys: dict[str, int]
    next_key: int
    #: row ids changed since the last flush -> their key as the target holds it (None: none)
    original: dict[str, int | None] = field(default_factory=dict)

    def touch(self, row_id: str) -> None:
        if row_id not in self.original:
            self.original[row_id] = self.keys.get(row_id)


class RowidMap:
    """One applier's view of ``redoline.rowid_map`` (see the module doc).

    ``target_id`` keys the map; parallel appliers (``dw#0/2``) share the base id, so the map
    survives a change of ``--parallel`` (each table belongs to one group at a time).
    """

    def __init__(self, writer: Writer, target_id: str, source_id: str) -> None:
        self.writer = writer
        self.target_id = target_id.partition("#")[0]
        self.source_id = source_id
        self._tables: dict[TableId, _Table] = {}
        p = getattr(writer, "placeholder", "%s")
        t = writer.database.qualified(MAP_TABLE)
        self._select = (
            f"SELECT row_id, target_key FROM {t} WHERE target_id = {p} AND source_id = {p} "
            f"AND source_table = {p}"
        )

    def setup(self) -> None:
        """Create the map table if it is missing (DDL: call outside a data transaction)."""
        if ensure_table(self.writer, _MAP_SCHEMA):
            self.writer.commit()

    def reset(self) -> None:
        """Forget what is in memory (the target transaction was rolled back)."""
        self._tables.clear()

    # ------------------------------------------------------------------ per change

    def _table(self, source: TableId) -> _Table:
        found = self._tables.get(source)
        if found is None:
            rows = self.writer.query(self._select, (self.target_id, self.source_id, str(source)))
            keys = {str(r): int(k) for r, k in rows}
            found = _Table(keys, max(keys.values(), default=0) + 1)
            self._tables[source] = found
        return found

    def key_for_insert(self, source: TableId, row_id: str) -> int:
        """A surrogate key for a new row (also for snapshot loads of row-id sources).

        A row id already mapped keeps its key: the insert then meets the existing row and
        the writer refuses it (or, in collision mode, turns it into an update).
        """
        tab = self._table(source)
        key = tab.keys.get(row_id)
        if key is None:
            key = tab.next_key
            tab.next_key += 1
            tab.touch(row_id)
            tab.keys[row_id] = key
        return key

    def tag(self, change: Change, *, collision: bool) -> Change:
        """``change`` with the surrogate key in its key and images (map updated in memory).

        An update or delete of a row id the map does not know raises :class:`RowRejected`
        (``missing``), so the applier names the transaction; in collision mode an update
        inserts its after image under a new key and a delete is a counted no-op.
        """
        row_id = change.row_id
        if change.op is Op.INSERT:
            if row_id is None:
                raise RowRejected(
                    f"an insert into {change.table} carries no source row id, which this "
                    "table's identity needs (rowid map)"
                )
            return _keyed(change, self.key_for_insert(change.table, row_id))
        if row_id is None:
            raise RowRejected(
                f"a {change.op.value} on {change.table} carries no source row id, which this "
                "table's identity needs (rowid map)",
                row=change.before,
                missing=True,
            )
        tab = self._table(change.table)
        found = tab.keys.get(row_id)
        if found is not None:
            key = found
            if change.op is Op.DELETE:
                tab.touch(row_id)
                del tab.keys[row_id]
        else:
            if not collision:
                raise RowRejected(
                    f"source row id {row_id!r} of {change.table} is not in the rowid map "
                    f"{MAP_TABLE} (the row was never inserted on this target)",
                    row=change.before,
                    missing=True,
                )
            if change.op is Op.UPDATE:
                key = self.key_for_insert(change.table, row_id)
            else:
                key = 0  # no row has key 0: the writer counts a collision
        return _keyed(change, key)

    def forget_table(self, source: TableId) -> None:
        """Every mapping of ``source`` goes (TRUNCATE, DROP TABLE)."""
        tab = self._table(source)
        for row_id in tab.keys:
            tab.touch(row_id)
        tab.keys.clear()
        tab.next_key = 1

    # ------------------------------------------------------------------ commit

    def flush(self) -> None:
        """Write the map's changes into the current target transaction (before the
        checkpoint), set-based: each touched row id's stored key versus its key now."""
        batch = TableBatch(_MAP_SCHEMA, _MAP_SCHEMA.primary_key)
        base = (self.target_id, self.source_id)
        for source, tab in self._tables.items():
            name = str(source)
            for row_id, old in tab.original.items():
                new = tab.keys.get(row_id)
                if old == new:
                    continue
                if new is None:
                    batch.deletes.append((*base, name, row_id))
                elif old is None:
                    batch.inserts.append((*base, name, row_id, new))
                else:
                    batch.updates.append((*base, name, row_id, new))
            tab.original.clear()
        if len(batch):
            self.writer.merge(batch)


def _keyed(change: Change, key: int) -> Change:
    tag: dict[str, Any] = {ROW_KEY: key}
    return replace(
        change,
        key=tag,
        before={**tag, **change.before} if change.before is not None else None,
        after={**tag, **change.after} if change.after is not None else None,
    )


# ---------------------------------------------------------------------- snapshot loads


class SnapshotKeys:
    """The surrogate keys of one snapshot chunk of a keyless table read with source row ids.

    The source's reader calls it once per row with the row's source row id and writes the
    key it returns as the row's :data:`ROW_KEY`; :meth:`load` then records the pairs in the
    map. Chunks of one table never share a key (the chunk number is the high half), and
    apply's later inserts continue after the largest (:meth:`RowidMap.key_for_insert`).
    """

    def __init__(self, target_id: str, source_id: str, source: TableId, chunk: int) -> None:
        self.base = (target_id.partition("#")[0], source_id, str(source))
        self._next = (chunk << 32) + 1
        self.pairs: list[tuple[str, int]] = []

    def __call__(self, row_id: str) -> int:
        key = self._next
        self._next += 1
        self.pairs.append((row_id, key))
        return key

    @staticmethod
    def create_map(tgt: BulkTarget, conn: Any) -> None:
        """Create the map table if it is missing (DDL: outside a data transaction)."""
        if not tgt.table_exists(conn, MAP_TABLE):
            tgt.execute(conn, tgt.create_schema_sql(MAP_TABLE.schema))
            tgt.execute(conn, create_table_sql(_MAP_SCHEMA, tgt.dialect))

    def forget_table(self, tgt: BulkTarget, conn: Any) -> None:
        """Drop the table's mappings (it is loaded from scratch); call in the transaction
        that empties the target table."""
        tgt.execute(
            conn,
            tgt.sql(
                f"DELETE FROM {tgt.qt(MAP_TABLE)} WHERE target_id = %s AND source_id = %s "
                "AND source_table = %s"
            ),
            list(self.base),
        )

    def load(self, tgt: BulkTarget, conn: Any) -> None:
        """Bulk-load this chunk's mappings (in the chunk's transaction, after its rows)."""
        if not self.pairs:
            return
        write = row_writer(_MAP_SCHEMA.columns, tgt.fmt)
        data = "".join(write((*self.base, row_id, key)) for row_id, key in self.pairs)
        names = tuple(c.name for c in _MAP_SCHEMA.columns)
        tgt.load(conn, MAP_TABLE, _MAP_SCHEMA, names, [(data.encode(), len(self.pairs))])
