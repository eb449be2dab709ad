"""PostgreSQL relations in a pgoutput stream: their shapes, the table definitions they become,
and their rows decoded into changes.

pgoutput sends a Relation message before a relation's first change in a session and again
after its shape changed; it carries no DDL. :class:`Relations` keeps what each relation id
stands for, turns a new or changed shape of a selected table into a schema history entry (a
DDL change with the new definition and, when one came before, the ALTER TABLE between the two),
and compiles a tuple reader for its current shape. :func:`fast_change` reads a row change
straight from its XLogData frame with that reader; :func:`row_change` is the general path
over :func:`connectors.postgres.pgoutput.decode`, which it falls back to.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import psycopg.pq

from connectors.base import TableFilter
from connectors.errors import MissingObjectError, SchemaError
from connectors.log import RowEvent
from connectors.model import (
    UNCHANGED,
    Change,
    Column,
    Op,
    Row,
    TableId,
    TableSchema,
    column_diff,
)
from connectors.postgres import enum_labels, pgoutput
from connectors.postgres.pgoutput import (
    INSERT,
    MESSAGE_AT,
    TUPLE_AT,
    TUPLE_KEY,
    TUPLE_KIND_AT,
    TUPLE_NEW,
    TUPLE_OLD,
    UPDATE,
)
from connectors.postgres.slots import qualified, quote
from connectors.postgres.values import INLINE, Converter, converter

__all__ = ["Relation", "Relations", "fast_change", "key_picker", "row_change", "row_values"]

log = logging.getLogger("redoline.capture.postgres")


def _no_reader(buf: bytes, pos: int) -> tuple[Row, int]:
    raise pgoutput.TupleShapeError  # a relation not selected (or not announced) is never read


@dataclass(slots=True)
class Relation:
    """What we know about a relation id in this stream."""

    table: TableId
    selected: bool
    schema: TableSchema | None = None
    names: tuple[str, ...] = ()
    converters: tuple[Converter, ...] = ()
    identity: tuple[str, ...] = ()
    #: a TupleData at an offset -> (row, next offset), compiled for this shape
    read: Callable[[bytes, int], tuple[Row, int]] = _no_reader
    #: a row -> its identity columns
    pick: Callable[[Row], Row] = dict


def key_picker(identity: tuple[str, ...]) -> Callable[[Row], Row]:
    """A function that takes a row's ``identity`` columns out of it."""
    if len(identity) == 1:
        (name,) = identity
        return lambda row: {name: row[name]}
    return lambda row: {k: row[k] for k in identity}


# --------------------------------------------------------------------------- row changes


def fast_change(rel: Relation, frame: bytes) -> Change:
    """The change an Insert/Update/Delete XLogData frame carries, read straight from the
    frame by the relation's compiled reader (the pgoutput message starts at ``MESSAGE_AT``).

    Same result as :func:`row_change` over :func:`pgoutput.decode`, which it falls back
    to for anything the compiled reader refuses, so that path reports the errors.
    """
    assert rel.schema is not None
    read, pick = rel.read, rel.pick
    ident = rel.identity
    tag = frame[MESSAGE_AT]
    try:
        if tag == INSERT:  # relid, 'N', new tuple
            if frame[TUPLE_KIND_AT] != TUPLE_NEW:
                raise pgoutput.TupleShapeError
            after, _ = read(frame, TUPLE_AT)
            key = pick(after) if ident else None
            return Change(Op.INSERT, rel.table, rel.schema.version, key, None, after)
        kind = frame[TUPLE_KIND_AT]
        if tag == UPDATE:  # relid, optional 'K'/'O' old tuple, 'N' new tuple
            if kind == TUPLE_NEW:
                after, _ = read(frame, TUPLE_AT)
                before = {k: after[k] for k in ident}  # the key did not change
            elif kind in (TUPLE_KEY, TUPLE_OLD):
                old, pos = read(frame, TUPLE_AT)
                if frame[pos] != TUPLE_NEW:
                    raise pgoutput.TupleShapeError
                after, _ = read(frame, pos + 1)
                if kind == TUPLE_KEY:
                    before = pick(old)
                else:
                    before = old
                    for name, value in after.items():  # see _row_change
                        if value is UNCHANGED and before.get(name) is not UNCHANGED:
                            after[name] = before[name]
            else:
                raise pgoutput.TupleShapeError
            key = pick(before) if ident else None
            return Change(Op.UPDATE, rel.table, rel.schema.version, key, before, after)
        # Delete: relid, 'K'/'O', old tuple
        old, _ = read(frame, TUPLE_AT)
        before = pick(old) if kind == TUPLE_KEY else old
        key = pick(before) if ident else None
        return Change(Op.DELETE, rel.table, rel.schema.version, key, before)
    except (ValueError, ArithmeticError, IndexError, struct.error):
        msg = pgoutput.decode(frame[MESSAGE_AT:])
        assert isinstance(msg, pgoutput.InsertMsg | pgoutput.UpdateMsg | pgoutput.DeleteMsg)
        return row_change(rel, msg)


def row_values(rel: Relation, values: list[pgoutput.TupleValue]) -> Row:
    row: Row = {}
    for name, conv, raw in zip(rel.names, rel.converters, values, strict=True):
        if type(raw) is bytes:
            try:
                row[name] = conv(raw)
            except (ValueError, ArithmeticError, IndexError) as exc:
                col = rel.schema.column(name) if rel.schema else None
                raise SchemaError(
                    f"{rel.table}.{name}: cannot read the value {raw[:80]!r} of type "
                    f"{col.source_type if col else '?'} ({exc})",
                    hint="exclude the column or table, or report this as a bug",
                ) from None
        else:
            row[name] = raw  # None or UNCHANGED
    return row


def _key_only(rel: Relation, values: list[pgoutput.TupleValue]) -> Row:
    row = row_values(rel, values)
    return {k: row[k] for k in rel.identity}


def row_change(
    rel: Relation, msg: pgoutput.InsertMsg | pgoutput.UpdateMsg | pgoutput.DeleteMsg
) -> Change:
    assert rel.schema is not None
    version = rel.schema.version
    ident = rel.identity
    if isinstance(msg, pgoutput.InsertMsg):
        after = row_values(rel, msg.new)
        key = {k: after[k] for k in ident} if ident else None
        return Change(Op.INSERT, rel.table, version, key=key, after=after)
    if isinstance(msg, pgoutput.UpdateMsg):
        after = row_values(rel, msg.new)
        if msg.old is None:  # the key did not change
            before = {k: after[k] for k in ident}
        elif msg.old_kind == "K":
            before = _key_only(rel, msg.old)
        else:
            before = row_values(rel, msg.old)
            # REPLICA IDENTITY FULL logs the old value of an unchanged TOASTed column, so
            # the after image can be completed instead of carrying the marker
            for name, value in after.items():
                if value is UNCHANGED and before.get(name) is not UNCHANGED:
                    after[name] = before[name]
        key = {k: before[k] for k in ident} if ident else None
        return Change(Op.UPDATE, rel.table, version, key=key, before=before, after=after)
    if msg.old_kind == "K":
        before = _key_only(rel, msg.old)
    else:
        before = row_values(rel, msg.old)
    key = {k: before[k] for k in ident} if ident else None
    return Change(Op.DELETE, rel.table, version, key=key, before=before)


# --------------------------------------------------------------------------- shapes


#: the file beside a trail's segments that holds the attnums of the definitions handed out
ATTNUMS_NAME = "pgattnums.json"


def catalog_attnums(
    conn: psycopg.Connection[Any], table: TableId
) -> tuple[dict[str, int], list[int]]:
    """The table's live columns by name -> attnum, and its dropped attnums, as ``conn`` sees
    the catalog."""
    attrs = conn.execute(
        "SELECT a.attnum, a.attname, a.attisdropped FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 ORDER BY a.attnum",
        (table.schema, table.name),
    ).fetchall()
    live = {str(name): int(num) for num, name, dropped in attrs if not dropped}
    return live, [int(num) for num, _name, dropped in attrs if dropped]


def record_snapshot_definition(trail_dir: Path, schema: TableSchema, live: dict[str, int]) -> None:
    """A snapshot loads ``schema`` (with catalog attnums ``live``) into a target: record it
    as version 0 of the table in ``<trail>/pgattnums.json``, so capture's first definition of
    the table is announced with the ALTER TABLE that takes this one to it. Without it a column
    renamed between the snapshot and that first definition (an interrupted sync, campaign
    seed 43004) reached apply as a drop plus an add: the loaded rows' values became NULL.

    A table the trail already defines keeps capture's record (version >= 1)."""
    path = trail_dir / ATTNUMS_NAME
    try:
        record: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        record = {}
    key = str(schema.table)
    if record.get(key, {}).get("version", 0) >= 1:
        return
    names = [c.name for c in schema.columns]
    if set(names) != set(live):
        record.pop(key, None)  # the catalog moved on since: nothing exact to record
    else:
        record[key] = {
            "version": 0,
            "columns": {n: live[n] for n in names},
            "snapshot": {
                "columns": [dataclasses.asdict(c) for c in schema.columns],
                "primary_key": list(schema.primary_key),
            },
        }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, sort_keys=True))
    os.replace(tmp, path)


class Relations:
    """The relation ids a stream has announced, and the definitions handed out for them.

    ``announced`` starts as the definitions the trail already holds, so versions continue
    from them; ``catalog`` is a connection to the source's catalog, set before the first
    Relation message arrives. ``attnums`` (a file beside the trail's segments) keeps, per
    table, the catalog's attnum of each column of the last definition handed out, so a later
    run tells a renamed column from a dropped one exactly (:meth:`_alter_sql`).
    """

    def __init__(
        self,
        tables: TableFilter,
        announced: dict[TableId, TableSchema],
        attnums: Path | None = None,
    ) -> None:
        self.tables = tables
        self.announced = dict(announced)
        self.by_id: dict[int, Relation] = {}
        self.type_cache: dict[int, Converter] = {}
        self.catalog: psycopg.Connection[Any] | None = None
        self._attnums_path = attnums
        self._attnums: dict[str, Any] = {}
        if attnums is not None and attnums.exists():
            try:
                self._attnums = json.loads(attnums.read_text())
            except (OSError, ValueError):
                log.warning("%s is unreadable: column renames are told by position", attnums)

    def quiet(self, msg: pgoutput.RelationMsg) -> None:
        """Take a relation's shape without announcing it (a new table's snapshot will)."""
        announced = dict(self.announced)
        for _ in self.announce(msg, ""):
            pass
        self.announced = announced

    def announce(self, msg: pgoutput.RelationMsg, xid: str) -> Iterator[RowEvent]:
        """Record a relation's shape; a new or changed shape of a selected table becomes a
        schema history entry (a DDL change with the new definition) in this transaction."""
        table = TableId(msg.namespace, msg.name)
        selected = self.tables(table)
        rel = Relation(table, selected)
        self.by_id[msg.relid] = rel
        if not selected:
            return
        schema = self._schema(msg, table)
        known = self.announced.get(table)
        if known is not None and dataclasses.replace(known, version=schema.version) == schema:
            schema = known
        else:
            schema = dataclasses.replace(schema, version=(known.version + 1) if known else 1)
            self.announced[table] = schema
            # pgoutput carries no DDL: a changed column list becomes the ALTER TABLE that
            # brings the previous definition (the trail's, else the snapshot's) to this one
            # (apply translates it per target)
            before = known if known is not None else self._snapshot_definition(table)
            # one catalog read serves the ALTER derivation and the attnum record
            attnums = (
                self._catalog_attnums(table)
                if before is not None or self._attnums_path is not None
                else None
            )
            ddl = None
            if before is not None:
                assert attnums is not None
                ddl = self._alter_sql(table, before, schema, *attnums)
            if attnums is not None:
                self._remember(table, schema, attnums[0], before)
            yield RowEvent(
                xid,
                Change(Op.DDL, table, schema.version, ddl=ddl, table_schema=schema),
            )
        assert self.catalog is not None
        rel.schema = schema
        rel.names = tuple(c.name for c in msg.columns)
        rel.converters = tuple(
            converter(self.catalog, c.type_oid, self.type_cache) for c in msg.columns
        )
        rel.identity = schema.identity
        rel.read = pgoutput.compile_tuple_reader(
            [
                (name, *INLINE.get(conv, (conv, False)))
                for name, conv in zip(rel.names, rel.converters, strict=True)
            ]
        )
        rel.pick = key_picker(rel.identity)

    def snapshot_rows(
        self, conn: psycopg.Connection[Any], table: TableId, xid: str
    ) -> Iterator[RowEvent]:
        """A new table's definition, a TRUNCATE and its rows, read in ``conn``'s transaction
        (the snapshot at its point) as text, the form pgoutput sends them in."""
        rows = conn.execute(
            "SELECT c.oid, c.relreplident, a.attname, a.atttypid, a.atttypmod, "
            "c.relreplident = 'f' OR coalesce(a.attnum = ANY (SELECT unnest(i.indkey::int2[]) "
            "FROM pg_index i WHERE i.indrelid = c.oid AND ((c.relreplident = 'd' AND "
            "i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))), false) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
            "AND NOT a.attisdropped AND a.attgenerated = '' "
            "WHERE n.nspname = %s AND c.relname = %s ORDER BY a.attnum",
            (table.schema, table.name),
        ).fetchall()
        if not rows:
            log.warning("new table %s was gone at its snapshot point: nothing to load", table)
            return
        # the shape pgoutput announces (live, stored columns in attnum order)
        msg = pgoutput.RelationMsg(
            int(rows[0][0]),
            table.schema,
            table.name,
            str(rows[0][1]),
            tuple(
                pgoutput.RelationColumn(str(name), int(oid), int(mod), bool(key))
                for _relid, _ident, name, oid, mod, key in rows
            ),
        )
        yield from self.announce(msg, xid)
        rel = self.by_id[msg.relid]
        assert rel.schema is not None
        version = rel.schema.version
        yield RowEvent(xid, Change(Op.TRUNCATE, table, schema_version=version))
        select_list = ", ".join(quote(c.name) for c in msg.columns)
        pg = conn.pgconn
        conn.execute(
            f"DECLARE redoline_new NO SCROLL CURSOR FOR SELECT {select_list} "
            f"FROM {qualified(table)}"
        )
        ident, pick = rel.identity, rel.pick
        width = len(msg.columns)
        while True:
            # text results straight from libpq: the same output functions pgoutput uses
            res = pg.exec_(b"FETCH 2000 FROM redoline_new")
            if res.status != psycopg.pq.ExecStatus.TUPLES_OK:
                message = res.error_message.decode(errors="replace").strip()
                raise psycopg.OperationalError(message)  # the reader maps it
            if res.ntuples == 0:
                break
            for i in range(res.ntuples):
                values: list[pgoutput.TupleValue] = []
                for j in range(width):
                    raw = res.get_value(i, j)
                    values.append(None if raw is None else bytes(raw))
                after = row_values(rel, values)
                key = pick(after) if ident else None
                yield RowEvent(xid, Change(Op.INSERT, table, version, key, None, after))
        conn.execute("CLOSE redoline_new")

    def _catalog_attnums(self, table: TableId) -> tuple[dict[str, int], list[int]]:
        """The table's live columns by name -> attnum, and its dropped attnums, now."""
        assert self.catalog is not None
        return catalog_attnums(self.catalog, table)

    def _snapshot_definition(self, table: TableId) -> TableSchema | None:
        """The definition a snapshot loaded (version 0), for a table the trail does not
        define yet (:func:`record_snapshot_definition`)."""
        entry = self._attnums.get(str(table))
        if not entry or entry.get("version") != 0 or "snapshot" not in entry:
            return None
        loaded = entry["snapshot"]
        columns = tuple(
            Column(**{**c, "labels": tuple(c.get("labels") or ())}) for c in loaded["columns"]
        )
        return TableSchema(table, columns, tuple(loaded["primary_key"]), version=0)

    def _remember(
        self,
        table: TableId,
        schema: TableSchema,
        live: dict[str, int],
        before: TableSchema | None,
    ) -> None:
        """Record the attnums of the definition just handed out, when the catalog still shows
        exactly its columns (it may already be newer than the message), or when it has the
        columns of the definition before it, whose attnums are recorded (a definition
        written before a rename and decoded after it: campaign seed 43004)."""
        if self._attnums_path is None or self.catalog is None:
            return
        names = [c.name for c in schema.columns]
        was = self._attnums.get(str(table))
        if set(names) == set(live):
            self._attnums[str(table)] = {
                "version": schema.version,
                "columns": {n: live[n] for n in names},
            }
        elif (
            before is not None
            and was is not None
            and was.get("version") == before.version
            and set(was.get("columns", {})) == set(before.column_names) == set(names)
        ):
            self._attnums[str(table)] = {"version": schema.version, "columns": was["columns"]}
        else:
            self._attnums.pop(str(table), None)
        tmp = self._attnums_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._attnums, sort_keys=True))
        os.replace(tmp, self._attnums_path)

    def _alter_sql(
        self,
        table: TableId,
        old: TableSchema,
        new: TableSchema,
        live: dict[str, int],
        dropped_nums: list[int],
    ) -> str | None:
        """The PostgreSQL ALTER TABLE statements taking ``old``'s columns to ``new``'s (None:
        the columns did not change, only keys or NOT NULL).

        A Relation message names no attnum, so a column renamed in place looks like a drop
        plus an add at the same position. The catalog tells them apart: a renamed column
        keeps its attnum, an added one gets a fresh one. With the attnums recorded when
        ``old`` was handed out (``attnums``) that is exact. Without them, an added column's
        attnum comes after the dropped column's slot (which stays in pg_attribute as
        attisdropped); where the catalog cannot confirm a rename that way (it changed again
        since, or an older dropped slot sits in between: campaign seed 50057) the change is a
        drop plus an add and the warning says the old values are not carried.
        """
        recorded = self._attnums.get(str(table))
        if (
            recorded is not None
            and recorded.get("version") == old.version
            and set(recorded.get("columns", {})) == set(old.column_names)
        ):
            was: dict[str, int] = recorded["columns"]

            def kept_attnum(old_name: str, new_name: str) -> bool:
                return new_name in live and live[new_name] == was.get(old_name)

            return self._alter_statements(table, old, new, kept_attnum, anywhere=True)

        def is_rename(old_name: str, new_name: str) -> bool:
            num = live.get(new_name)
            if num is None:
                return False  # renamed or dropped again since: the catalog cannot tell
            # the old definition's other columns the catalog still has, by attnum
            others = [live[c.name] for c in old.columns if c.name != old_name and c.name in live]
            if any(n > num for n in others):
                return True  # older than a column that was there before: not just added
            below = max((n for n in others if n < num), default=0)
            # an added column's attnum comes after the dropped one's slot
            return not any(below < d < num for d in dropped_nums)

        return self._alter_statements(table, old, new, is_rename)

    def _alter_statements(
        self,
        table: TableId,
        old: TableSchema,
        new: TableSchema,
        is_rename: Callable[[str, str], bool],
        *,
        anywhere: bool = False,
    ) -> str | None:
        diff = column_diff(old, new, is_rename, anywhere=anywhere)
        if not diff:
            return None
        name = qualified(table)
        parts = [
            f"ALTER TABLE {name} RENAME COLUMN {quote(a)} TO {quote(b)}" for a, b in diff.renamed
        ]
        actions = [f"DROP COLUMN {quote(c)}" for c in diff.dropped]
        actions += [f"ADD COLUMN {quote(c.name)} {c.source_type}" for c in diff.added]
        actions += [f"ALTER COLUMN {quote(c.name)} TYPE {c.source_type}" for c in diff.retyped]
        if actions:
            parts.append(f"ALTER TABLE {name} " + ", ".join(actions))
        for a, b in diff.renamed:
            log.info("%s: column %s renamed to %s (the catalog keeps its attnum)", table, a, b)
        if diff.dropped and diff.added:
            log.warning(
                "%s: columns %s gone and %s new in the same change: replicated as DROP + ADD "
                "COLUMN; if that was a rename the catalog could not confirm, the target loses "
                "the old values of that column (re-snapshot the table to reload them)",
                table,
                ", ".join(diff.dropped),
                ", ".join(c.name for c in diff.added),
            )
        return "; ".join(parts)

    def _schema(self, msg: pgoutput.RelationMsg, table: TableId) -> TableSchema:
        """The table definition a Relation message describes, refined from the catalog where
        the catalog still agrees (NOT NULL, keys): the message is authoritative for what the
        rows look like at this point of the log, the catalog may already be newer."""
        from connectors.postgres import _column, introspect

        assert self.catalog is not None
        conn = self.catalog
        key_cols = tuple(c.name for c in msg.columns if c.key)
        if msg.replident == "n" or (msg.replident in ("d", "i") and not key_cols):
            raise SchemaError(
                f"{table}: no primary key or replica identity index, so PostgreSQL logs its "
                "updates and deletes without any way to find the row",
                hint=f"add a primary key, or run: ALTER TABLE {qualified(table)} "
                "REPLICA IDENTITY FULL",
            )
        try:
            current: TableSchema | None = introspect(conn, table)
        except MissingObjectError:
            current = None
        now = {c.name: c for c in current.columns} if current else {}
        rows = conn.execute(
            "SELECT format_type(c.oid, c.typmod), coalesce(bt.typname, t.typname), "
            "coalesce(bt.typtype, t.typtype), coalesce(bt.typcategory, t.typcategory), "
            "CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE c.typmod END, et.typname, "
            "coalesce(bt.oid, t.oid) "
            "FROM unnest(%s::oid[], %s::int[]) WITH ORDINALITY c(oid, typmod, ord) "
            "JOIN pg_type t ON t.oid = c.oid "
            "LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype "
            "LEFT JOIN pg_type et ON et.oid = coalesce(bt.typelem, t.typelem) "
            "AND coalesce(bt.typcategory, t.typcategory) = 'A' ORDER BY c.ord",
            ([c.type_oid for c in msg.columns], [c.typmod for c in msg.columns]),
        ).fetchall()
        columns: list[Column] = []
        for col, (formatted, typname, typtype, category, typmod, elem, base_oid) in zip(
            msg.columns, rows, strict=True
        ):
            same = now.get(col.name)
            if same is not None and same.source_type == formatted:
                columns.append(same)
                continue
            labels = enum_labels(conn, base_oid) if typtype == "e" else ()
            columns.append(
                _column(
                    col.name,
                    str(formatted),
                    False,
                    str(typname),
                    str(typtype),
                    str(category),
                    int(typmod),
                    elem,
                    labels,
                    False,
                )
            )
        names = {c.name for c in columns}
        primary: tuple[str, ...] = ()
        uniques: list[tuple[str, ...]] = []
        if current is not None:
            if current.primary_key and set(current.primary_key) <= names:
                primary = current.primary_key
            uniques = [u for u in current.unique_keys if set(u) <= names]
        if msg.replident == "d":
            primary = key_cols  # the log's own word on what the key was
        elif msg.replident == "i" and key_cols not in uniques and key_cols != primary:
            uniques.insert(0, key_cols)
        return TableSchema(
            table,
            tuple(columns),
            primary,
            tuple(uniques),
            full_before_image=msg.replident == "f",
        )
