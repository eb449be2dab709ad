"""Column changes that no row change announces yet.

pgoutput carries no DDL: a table's new column list reaches the stream in a Relation message
sent just before the table's next row change. A column dropped or added on a table that then
takes no writes would never reach the target (and a cron run would end "caught up" with the
target still holding the dropped column).

The probe closes that gap without guessing a position. In one source transaction it takes
``ACCESS SHARE`` on the table (so no ALTER can commit until it ends), reads the column list
the way pgoutput describes a relation (live, non-generated columns in attnum order, the
replica identity flags), and, when that differs from what capture last announced, writes it
with ``pg_logical_emit_message(true, 'redoline.relation', …)``. The message is part of that
transaction, so it sits in the WAL exactly where the catalog said what it says: a row change
committed before it carried the same or an older shape (announced by its own Relation), one
committed after it cannot have a newer one (the lock held ALTER back). Capture decodes the
message as the Relation message it stands for. Nothing is written when nothing changed.

pg_logical_emit_message is executable by any user; pgoutput passes messages on with the
``messages`` option (PostgreSQL 14 and later). On older servers, or when the message cannot be
written, the probe is off and the gap stays as documented in docs/capture-postgres.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql

from connectors.model import TableId, TableSchema
from connectors.postgres import pgoutput

log = logging.getLogger(__name__)

PREFIX = "redoline.relation"

#: how a relation looks to pgoutput: live, non-generated columns in attnum order with the
#: replica identity flag (every column under FULL, the index's under DEFAULT/INDEX)
_COLUMNS = """
SELECT n.nspname, c.relname, c.oid, c.relreplident, a.attname, a.atttypid, a.atttypmod,
       format_type(a.atttypid, a.atttypmod),
       c.relreplident = 'f' OR EXISTS (
           SELECT 1 FROM pg_index i
           WHERE i.indrelid = c.oid AND a.attnum = ANY(i.indkey)
             AND ((c.relreplident = 'd' AND i.indisprimary)
                  OR (c.relreplident = 'i' AND i.indisreplident)))
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid
WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
  AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY n.nspname, c.relname, a.attnum
"""


@dataclass(frozen=True, slots=True)
class Shape:
    """A table's columns as the catalog describes them now."""

    relid: int
    replident: str
    columns: tuple[tuple[str, int, int, str, bool], ...]  # name, type oid, typmod, type, key

    def signature(self, subset: tuple[str, ...] | None = None) -> tuple[tuple[str, str], ...]:
        """(name, type) per column; with ``subset``, only those columns (a column-subset view
        of the table is announced with just them)."""
        return tuple(
            (name, formatted)
            for name, _oid, _mod, formatted, _key in self.columns
            if subset is None or name in subset
        )


def shapes(conn: psycopg.Connection[Any], tables: Iterable[TableId]) -> dict[TableId, Shape]:
    """The current shape of each of ``tables`` that exists (one catalog query)."""
    tables = list(tables)
    if not tables:
        return {}
    found: dict[TableId, list[tuple[Any, ...]]] = {}
    names = ([t.schema for t in tables], [t.name for t in tables])
    for row in conn.execute(_COLUMNS, names).fetchall():
        found.setdefault(TableId(str(row[0]), str(row[1])), []).append(row[2:])
    return {
        table: Shape(
            int(rows[0][0]),
            str(rows[0][1]),
            tuple((str(r[2]), int(r[3]), int(r[4]), str(r[5]), bool(r[6])) for r in rows),
        )
        for table, rows in found.items()
    }


def announced_signature(schema: TableSchema) -> tuple[tuple[str, str], ...]:
    return tuple((c.name, c.source_type) for c in schema.columns)


class SchemaProbe:
    """Emits a table's column list into the WAL when it differs from the announced one.

    ``column_subset(table)`` names the columns a ``[tables.columns]`` view keeps (None: all):
    only a change among them matters to the target.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        column_subset: Callable[[TableId], tuple[str, ...] | None] | None = None,
    ) -> None:
        self.conn = conn
        self.column_subset = column_subset or (lambda _t: None)
        self.enabled = conn.info.server_version >= 140000
        #: the signature last emitted per table, so one change is written once
        self._emitted: dict[TableId, tuple[tuple[str, str], ...]] = {}

    def run(self, tables: Iterable[TableId], announced: dict[TableId, TableSchema]) -> int:
        """Probe ``tables``; returns how many definitions were written.

        A table the trail holds no definition of (its rows came by snapshot and it has not
        changed since) gets its current one written once: later probes compare with it.
        """
        if not self.enabled:
            return 0
        tables = list(tables)
        wanted: dict[TableId, tuple[tuple[str, str], ...] | None] = {}
        for table, current in shapes(self.conn, tables).items():
            subset = self.column_subset(table)
            signature = current.signature(subset)
            known = announced.get(table)
            if known is not None and announced_signature(known) == signature:
                continue
            if self._emitted.get(table) == signature:
                continue  # written already, not decoded yet
            wanted[table] = announced_signature(known) if known is not None else None
        if not wanted:
            return 0
        try:
            return self._emit(wanted)
        except psycopg.errors.LockNotAvailable:
            log.debug("an ALTER holds one of %s; probed again later", ", ".join(map(str, wanted)))
        except psycopg.errors.InsufficientPrivilege as exc:
            log.warning(
                "cannot write the column-change marker (%s): a column added or dropped on a "
                "table that takes no writes afterwards reaches the target only with the "
                "table's next row change",
                str(exc).strip().splitlines()[0],
            )
            self.enabled = False
        return 0

    def _emit(self, wanted: dict[TableId, tuple[tuple[str, str], ...] | None]) -> int:
        """One source transaction: lock the tables against ALTER, read their shapes, write
        those still different as one message (its WAL position is where they are true)."""
        conn = self.conn
        written: dict[TableId, tuple[tuple[str, str], ...]] = {}
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '2s'")
            for table in sorted(wanted):
                conn.execute(
                    sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(
                        sql.Identifier(table.schema, table.name)
                    )
                )
            relations = []
            for table, locked in shapes(conn, wanted).items():
                signature = locked.signature(self.column_subset(table))
                if signature == wanted[table]:
                    continue
                written[table] = signature
                relations.append(
                    {
                        "relid": locked.relid,
                        "namespace": table.schema,
                        "name": table.name,
                        "replident": locked.replident,
                        "columns": [[n, oid, mod, key] for n, oid, mod, _f, key in locked.columns],
                    }
                )
            if relations:
                conn.execute(
                    "SELECT pg_logical_emit_message(true, %s, %s::text)",
                    (PREFIX, json.dumps(relations)),
                )
        self._emitted.update(written)
        if written:
            log.info(
                "column definitions of %s written to the WAL (changed, or not in the trail yet, "
                "with no row change to carry them)",
                ", ".join(map(str, written)),
            )
        return len(written)


def relations(content: bytes) -> list[pgoutput.RelationMsg]:
    """The Relation messages a probe's logical message stands for."""
    return [
        pgoutput.RelationMsg(
            int(data["relid"]),
            str(data["namespace"]),
            str(data["name"]),
            str(data["replident"]),
            tuple(
                pgoutput.RelationColumn(str(n), int(oid), int(mod), bool(key))
                for n, oid, mod, key in data["columns"]
            ),
        )
        for data in json.loads(content)
    ]
