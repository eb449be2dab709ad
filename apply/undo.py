"""Undo: reverse selected changes of the trail on the source or a target (``redoline undo``).

The trail holds every change's before and after image, so the reverse of a change is known
exactly: an insert is deleted, a delete re-inserted, an update set back to its before image
(a key change moves the row back to its old key). Reversing the selected changes newest first
leaves each touched row in the state the *first* selected change found it in; so undo folds
the selection per row (per key; per whole image for a keyless table, as a multiset) to two
images: the state to restore (the first change's before image, or "absent") and the state the
trail says the row is in now (the last change's after image, or "absent"). That fold is what
makes it set-based: one staged merge per table through the engine's writer, not one statement
per reversed change.

Conflict check, before anything is written and in the same database transaction: every row to
reverse must still hold the image the trail recorded last (or still be absent). A row changed
since then, or changed between two selected changes by a transaction that is not undone, is a
conflict: nothing is changed and the conflicts are listed, unless ``force`` (then they are
overwritten and counted).

Refused, never guessed: DDL and TRUNCATE inside the selection (the statement is named), an
update or delete whose before image is not complete (PostgreSQL without ``REPLICA IDENTITY
FULL``), and a before image holding a TOAST value the source did not log.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from apply.point import PointError, commit_utc
from connectors.base import HEARTBEAT_TABLE, Database, RowRejected, TableBatch, Writer
from connectors.checksum import checksum_sql
from connectors.errors import ApplyError, ConfigError, SchemaError, Terminal, ToolkitError
from connectors.model import UNCHANGED, Change, Column, Op, Row, TableId, TableSchema, Value

__all__ = [
    "UndoConflict",
    "UndoPlan",
    "UndoResult",
    "UndoSelection",
    "execute_undo",
    "plan_undo",
    "render_undo",
]

log = logging.getLogger("redoline.undo")

#: conflicts found, nothing changed (docs/exit-codes.md: 1, "differences / blocked")
EXIT_CONFLICT = 1


class UndoConflict(ToolkitError, Terminal):
    """Rows to reverse no longer hold what the trail recorded; nothing was changed."""

    exit_code = EXIT_CONFLICT


@dataclass(frozen=True)
class UndoSelection:
    """Which changes to reverse: exactly one of ``to_op``, ``to_time``, ``xids``, ``ops``;
    ``tables`` (``schema.table`` patterns, ``*`` allowed) narrows any of them."""

    to_op: int | None = None
    to_time: dt.datetime | None = None
    xids: tuple[str, ...] = ()
    ops: tuple[int, int] | None = None
    tables: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        given = [self.to_op is not None, self.to_time is not None, bool(self.xids), bool(self.ops)]
        if sum(given) != 1:
            raise ConfigError("give exactly one of --to-time, --to-op, --to-mark, --xid, --ops")
        if self.ops is not None and self.ops[0] > self.ops[1]:
            raise ConfigError(f"--ops {self.ops[0]}..{self.ops[1]}: the range is empty")

    def describe(self) -> str:
        if self.to_op is not None:
            what = f"every change after operation {self.to_op}"
        elif self.to_time is not None:
            what = f"every transaction committed after {self.to_time.isoformat()}"
        elif self.xids:
            what = f"transaction(s) {', '.join(self.xids)}"
        else:
            assert self.ops is not None
            what = f"operations {self.ops[0]}..{self.ops[1]}"
        if self.tables:
            what += f" on {', '.join(self.tables)}"
        return what

    def table_wanted(self, table: TableId) -> bool:
        return not self.tables or any(fnmatch.fnmatchcase(str(table), p) for p in self.tables)


@dataclass
class _TablePlan:
    schema: TableSchema
    key: tuple[str, ...]
    #: keyed: key -> [state to restore, state now] (None: absent)
    rows: dict[tuple[Any, ...], list[Row | None]] = field(default_factory=dict)
    #: keyed: keys another transaction changed between two selected changes
    broken: list[tuple[Any, ...]] = field(default_factory=list)
    #: keyless: image -> copies the selection added (negative: removed)
    delta: Counter[tuple[Any, ...]] = field(default_factory=Counter)
    #: keyless: image tuple -> its row (for statements)
    images: dict[tuple[Any, ...], Row] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.schema.columns if not c.generated)


@dataclass
class UndoPlan:
    """The selected changes folded per table; built by :func:`plan_undo`."""

    selection: UndoSelection
    tables: dict[TableId, _TablePlan] = field(default_factory=dict)
    changes: int = 0
    transactions: int = 0
    #: changes in the selected range left alone because --tables did not select their table
    filtered_out: int = 0
    first_op: int = 0
    last_op: int = 0


@dataclass
class UndoResult:
    """What an executed undo did."""

    tables: int = 0
    deleted: int = 0
    updated: int = 0
    inserted: int = 0
    #: conflicting rows overwritten because of ``force``
    overridden: int = 0
    conflicts: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- planning


def plan_undo(
    trail_dir: Path,
    selection: UndoSelection,
    *,
    key: bytes | None = None,
) -> UndoPlan:
    """Read the trail, select the changes to reverse and fold them (see the module doc).

    Raises :class:`apply.point.PointError` when the retained trail starts after the point
    (naming the earliest restorable one), :class:`SchemaError` for what cannot be reversed.
    """
    from capture.trail import TrailReader, trail_info

    info = trail_info(trail_dir, key=key)
    if not info.segments:
        raise PointError(f"the trail {trail_dir} holds no transaction: nothing to undo")
    reader = TrailReader(trail_dir, key=key)
    plan = UndoPlan(selection)
    sel = selection
    if sel.to_op is not None and sel.to_op < info.first_op - 1:
        raise PointError(
            f"operation {sel.to_op} is before the retained trail, which starts at operation "
            f"{info.first_op}: the earliest point undo can restore is operation "
            f"{info.first_op - 1}",
            hint="retention removed the older segments ([trail] retention keeps them longer)",
        )
    if sel.ops is not None and sel.ops[0] < info.first_op:
        raise PointError(
            f"operations {sel.ops[0]}..{sel.ops[1]} start before the retained trail "
            f"(operation {info.first_op} on): the earliest operation undo can reverse is "
            f"{info.first_op}"
        )
    start = 1
    if sel.to_op is not None:
        start = sel.to_op + 1
    elif sel.ops is not None:
        start = sel.ops[0]
    wanted_xids = set(sel.xids)
    first_seen = True
    for txn in reader.transactions(max(start, 1)):
        if first_seen and sel.to_time is not None and commit_utc(txn) > sel.to_time:
            raise PointError(
                f"the retained trail starts with a transaction committed "
                f"{commit_utc(txn).isoformat()}, after {sel.to_time.isoformat()}: changes "
                "between the two are not in the trail, so the earliest point undo can "
                f"restore is {commit_utc(txn).isoformat()} (before operation {txn.first_op})",
                hint="retention removed older segments, or capture started after that time",
            )
        first_seen = False
        if sel.ops is not None and txn.first_op > sel.ops[1]:
            break
        if sel.to_time is not None and commit_utc(txn) <= sel.to_time:
            continue
        if sel.xids and txn.xid not in sel.xids:
            continue
        wanted_xids.discard(txn.xid)
        taken = False
        for i, change in enumerate(txn.changes):
            op_no = txn.first_op + i
            if sel.to_op is not None and op_no <= sel.to_op:
                continue
            if sel.ops is not None and not sel.ops[0] <= op_no <= sel.ops[1]:
                continue
            if change.op is Op.DDL and change.ddl is None:
                continue  # a definition announced for readers, not a change of the source
            if change.table == HEARTBEAT_TABLE:
                continue  # redoline's own heartbeat row: never on a target, nothing to undo
            if not sel.table_wanted(change.table):
                plan.filtered_out += 1
                continue
            _take(plan, reader.schema, change, op_no)
            taken = True
        if taken:
            plan.transactions += 1
    if wanted_xids:
        raise PointError(
            f"transaction(s) {', '.join(sorted(wanted_xids))} not found in the retained trail "
            f"(operations {info.first_op}..{info.last_op})",
            hint="`redoline trail dump` lists the transactions the trail holds",
        )
    return plan


def _take(
    plan: UndoPlan, schemas: Callable[[TableId, int], TableSchema], change: Change, op_no: int
) -> None:
    if change.op is Op.DDL:
        raise SchemaError(
            f"operation {op_no} in the range to undo is DDL on {change.table}: {change.ddl}; "
            "undo does not reverse DDL",
            hint="undo the changes after it (--to-op/--ops starting past it), reverse the DDL "
            "by hand, then undo the rest",
        )
    if change.op is Op.TRUNCATE:
        raise SchemaError(
            f"operation {op_no} in the range to undo is TRUNCATE of {change.table}: the trail "
            "holds no image of the rows it removed, so it cannot be reversed",
            hint="restore that table from a copy (snapshot + `redoline apply --until-...`)",
        )
    schema = schemas(change.table, change.schema_version)
    plan.changes += 1
    plan.first_op = plan.first_op or op_no
    plan.last_op = op_no
    tp = plan.tables.get(change.table)
    if tp is None:
        tp = plan.tables[change.table] = _TablePlan(schema, schema.identity)
    elif tp.schema.version != schema.version:
        raise SchemaError(
            f"{change.table} changed definition inside the range to undo (versions "
            f"{tp.schema.version} and {schema.version}, operation {op_no})",
            hint="undo the range after the definition change only",
        )
    names = tp.names
    before = after = None
    if change.op in (Op.UPDATE, Op.DELETE):
        before = _full_before(change, schema, names, op_no)
    if change.op in (Op.INSERT, Op.UPDATE):
        assert change.after is not None
        after = {
            n: (before[n] if before is not None and change.after.get(n) is UNCHANGED else v)
            for n in names
            for v in (change.after.get(n),)
        }
        if any(v is UNCHANGED for v in after.values()):
            raise SchemaError(
                f"operation {op_no} ({change.op.value} on {change.table}) holds a large value "
                "the source did not send (TOAST unchanged): undo does not guess it"
            )
    if tp.key:
        events: list[tuple[tuple[Any, ...], Row | None, Row | None]] = []
        kb = _key(before, tp.key) if before is not None else None
        ka = _key(after, tp.key) if after is not None else None
        if kb is not None and ka is not None and kb != ka:
            events = [(kb, before, None), (ka, None, after)]
        else:
            k = kb if kb is not None else ka
            assert k is not None
            events = [(k, before, after)]
        for k, old, new in events:
            entry = tp.rows.get(k)
            if entry is None:
                tp.rows[k] = [old, new]
                continue
            if entry[1] != old and k not in tp.broken:
                tp.broken.append(k)
            entry[1] = new
    else:
        for image, sign in ((before, -1), (after, 1)):
            if image is not None:
                t = _key(image, names)
                tp.delta[t] += sign
                tp.images.setdefault(t, image)


def _full_before(change: Change, schema: TableSchema, names: Sequence[str], op_no: int) -> Row:
    before = change.before
    missing = [n for n in names if before is None or n not in before]
    if missing or not schema.full_before_image:
        raise SchemaError(
            f"operation {op_no} ({change.op.value} on {change.table}) has no full before image "
            f"(missing: {', '.join(missing) or 'the source logged the key only'}): undo needs "
            "every column's old value",
            hint="on PostgreSQL: ALTER TABLE ... REPLICA IDENTITY FULL (see `redoline check`); "
            "changes captured before that cannot be undone",
        )
    assert before is not None
    if any(before[n] is UNCHANGED for n in names):
        raise SchemaError(
            f"operation {op_no} ({change.op.value} on {change.table}) has a before image "
            "holding a large value the source did not send (TOAST unchanged): undo does not "
            "guess it",
            hint="ALTER TABLE ... REPLICA IDENTITY FULL makes PostgreSQL log it",
        )
    return {n: before[n] for n in names}


def _key(row: Row, columns: Sequence[str]) -> tuple[Any, ...]:
    return tuple(_hashable(row.get(c)) for c in columns)


def _hashable(value: Value) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


# --------------------------------------------------------------------------- batches


def _batches(
    plan: UndoPlan, rename: Callable[[TableId], TableId]
) -> list[tuple[_TablePlan, TableSchema, TableBatch, TableBatch]]:
    """Per table: (plan, target schema, expected-state batch, undo batch).

    The expected-state batch is only staged for the conflict check: ``updates`` hold the
    images rows must still have, ``deletes`` the keys that must still be absent (keyless:
    images with the copies that must still be there).
    """
    out = []
    for table, tp in plan.tables.items():
        schema = replace(tp.schema, table=rename(table))
        names = tp.names
        expect = TableBatch(schema, tp.key)
        undo = TableBatch(schema, tp.key)
        if tp.key:
            for k, (first, last) in tp.rows.items():
                if last is None:
                    if first is not None:
                        expect.deletes.append(k)
                else:
                    expect.updates.append(tuple(last[n] for n in names))
                if first is None and last is not None:
                    undo.deletes.append(k)
                elif first is not None and last is None:
                    undo.inserts.append(tuple(first[n] for n in names))
                elif first is not None and last is not None and first != last:
                    undo.updates.append(tuple(first[n] for n in names))
        else:
            for image, n in tp.delta.items():
                row = tuple(tp.images[image][c] for c in names)
                if n > 0:
                    expect.deletes.append(row)
                    expect.delete_counts.append(n)
                    undo.deletes.append(row)
                    undo.delete_counts.append(n)
                elif n < 0:
                    undo.inserts.extend([row] * -n)
        out.append((tp, schema, expect, undo))
    return out


# --------------------------------------------------------------------------- executing


def execute_undo(
    plan: UndoPlan,
    writer: Writer,
    *,
    rename: Callable[[TableId], TableId] | None = None,
    force: bool = False,
    show: int = 10,
) -> UndoResult:
    """Check and apply ``plan`` through ``writer`` in one database transaction.

    Conflicts (see the module doc) raise :class:`UndoConflict` after a rollback, unless
    ``force``: then they are overwritten and counted in ``UndoResult.overridden``.
    """
    result = UndoResult()
    batches = _batches(plan, rename or (lambda t: t))
    writer.begin()
    try:
        conflicts: list[str] = []
        for tp, schema, expect, _undo in batches:
            if not writer.table_exists(schema.table):
                raise SchemaError(
                    f"table {schema.table} does not exist where undo runs: nothing was changed"
                )
            conflicts += [
                f"{schema.table} {_label(tp, k)}: {why}"
                for k, why in _check(writer, tp, schema, expect)
            ]
        if conflicts and not force:
            writer.rollback()
            shown = "\n  ".join(conflicts[:show])
            more = f"\n  ... and {len(conflicts) - show} more" if len(conflicts) > show else ""
            raise UndoConflict(
                f"{len(conflicts)} row(s) no longer hold what the trail recorded; nothing was "
                f"changed:\n  {shown}{more}",
                hint="undo the later changes too (an earlier --to-time/--to-op, or add their "
                "--xid), or --force to overwrite these rows (each is reported)",
            )
        result.overridden = len(conflicts)
        result.conflicts = conflicts
        undos = {schema.table: undo for _tp, schema, _expect, undo in batches if len(undo)}
        order = _parents_first(writer, list(undos))
        # rows go away children first and come back parents first, so foreign keys hold at
        # every statement (reinserting an order before its customer would be refused)
        for table in reversed(order):
            undo = undos[table]
            if undo.deletes:
                writer.merge(replace(undo, updates=[], inserts=[], collision=bool(conflicts)))
        for table in order:
            undo = undos[table]
            if undo.updates or undo.inserts:
                writer.merge(replace(undo, deletes=[], delete_counts=[], collision=bool(conflicts)))
            result.tables += 1
            result.deleted += sum(undo.delete_counts) if not undo.key else len(undo.deletes)
            result.updated += len(undo.updates)
            result.inserted += len(undo.inserts)
        writer.commit()
    except RowRejected as exc:
        try:
            writer.rollback()
        except Exception:  # the connection may be what failed
            log.debug("rollback after a refused undo failed", exc_info=True)
        raise ApplyError(
            f"the database refused the undo, which was rolled back (nothing was changed): "
            f"{exc.message}",
            hint="a constraint the trail does not know about (a foreign key to rows outside "
            "the selection, a unique key a later row took): print the SQL (without --execute) "
            "and adapt it, or widen the selection",
        ) from None
    except BaseException:
        try:
            writer.rollback()
        except Exception:  # the connection may be what failed
            log.debug("rollback after a failed undo failed", exc_info=True)
        raise
    return result


def _parents_first(writer: Writer, tables: list[TableId]) -> list[TableId]:
    """``tables`` ordered so a foreign key's parent comes before its child (cycles: as met)."""
    if len(tables) < 2:
        return tables
    pairs: list[tuple[TableId, TableId]] = getattr(writer, "foreign_key_pairs", list)()
    wanted = set(tables)
    parents = {
        t: sorted({p for c, p in pairs if c == t and p in wanted and p != t}) for t in tables
    }
    out: list[TableId] = []
    done: set[TableId] = set()

    def visit(t: TableId, path: set[TableId]) -> None:
        if t in done or t in path:
            return
        path.add(t)
        for p in parents[t]:
            visit(p, path)
        done.add(t)
        out.append(t)

    for t in tables:
        visit(t, set())
    return out


def _label(tp: _TablePlan, k: tuple[Any, ...]) -> str:
    cols = tp.key or tp.names
    return "(" + ", ".join(f"{c}={v!r}" for c, v in zip(cols, k, strict=True)) + ")"


def _check(
    writer: Writer, tp: _TablePlan, schema: TableSchema, expect: TableBatch
) -> list[tuple[tuple[Any, ...], str]]:
    """Rows whose current state is not what the trail recorded last, with the reason."""
    out: list[tuple[tuple[Any, ...], str]] = [
        (k, "changed between the undone changes by a transaction not undone") for k in tp.broken
    ]
    if not len(expect):
        return out
    sw: Any = writer  # the staging pieces of connectors.sqlwriter.SqlWriter
    cols = [c for c in schema.columns if not c.generated]
    names = [c.name for c in cols]
    staged = sw.staged(expect, cols)
    stage = sw.stage(schema, cols, staged)
    t = sw.qt(schema.table)
    labels: list[tuple[Any, ...]] = [tuple(r) for r in expect.deletes]
    labels += [_key(dict(zip(names, r, strict=True)), tp.key or names) for r in expect.updates]
    image = sw.image_eq(schema, names)
    if tp.key:
        key_eq = " AND ".join(f"t.{sw.q(k)} = s.{sw.q(k)}" for k in tp.key)
        changed = writer.query(
            f"SELECT s._id FROM {stage} s WHERE s._op = 'u' AND NOT EXISTS "
            f"(SELECT 1 FROM {t} t WHERE {image})"
        )
        back = writer.query(
            f"SELECT s._id FROM {stage} s WHERE s._op = 'd' AND EXISTS "
            f"(SELECT 1 FROM {t} t WHERE {key_eq})"
        )
        out += [(labels[i], "changed or deleted since") for (i,) in changed]
        out += [(labels[i], "exists again (inserted since)") for (i,) in back]
    else:
        short = writer.query(
            f"SELECT s._id FROM {stage} s WHERE s._op = 'd' AND s._n > "
            f"(SELECT COUNT(*) FROM {t} t WHERE {image})"
        )
        out += [(labels[i], "fewer copies than the trail recorded") for (i,) in short]
    return out


# --------------------------------------------------------------------------- printing


def render_undo(
    plan: UndoPlan,
    database: Database,
    *,
    rename: Callable[[TableId], TableId] | None = None,
    writer: Writer | None = None,
) -> str:
    """The undo as a SQL script in ``database``'s dialect: one transaction, set-based where
    many rows go the same way (multi-row INSERT, DELETE ... IN). With ``writer``, tables are
    ordered by the database's foreign keys as :func:`execute_undo` orders them."""
    cs = _literals(database)
    rename = rename or (lambda t: t)
    lines = [
        f"-- redoline undo of {plan.selection.describe()}: {plan.changes} change(s) in "
        f"{plan.transactions} transaction(s), operations {plan.first_op}..{plan.last_op}",
        "-- not checked for conflicts: `redoline undo --execute` checks every row first",
    ]
    lines += [f"{stmt};" for stmt in cs.script_prelude]
    lines.append("BEGIN;")
    undos = {schema.table: undo for _tp, schema, _expect, undo in _batches(plan, rename)}
    undos = {t: u for t, u in undos.items() if len(u)}
    order = _parents_first(writer, list(undos)) if writer is not None else list(undos)
    for table in reversed(order):
        if undos[table].deletes:
            lines.append(f"-- {table}: rows to remove")
            only = replace(undos[table], updates=[], inserts=[])
            lines += [f"{s};" for s in _statements(only, database, cs)]
    for table in order:
        if undos[table].updates or undos[table].inserts:
            lines.append(f"-- {table}: rows to put back")
            rest = replace(undos[table], deletes=[], delete_counts=[])
            lines += [f"{s};" for s in _statements(rest, database, cs)]
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def _literals(database: Database) -> Any:
    """The engine's literal writer (its checksum role, as verify's repair uses)."""
    return checksum_sql(database)


def _statements(batch: TableBatch, db: Database, cs: Any) -> list[str]:
    schema = batch.schema
    cols: list[Column] = [c for c in schema.columns if not c.generated]
    names = [c.name for c in cols]
    by_name = {c.name: c for c in cols}
    t = db.qualified(schema.table)
    out: list[str] = []

    def match(row: Sequence[Value], columns: Sequence[str]) -> str:
        return " AND ".join(
            cs.key_match(db.quote(c), v, by_name[c]) for c, v in zip(columns, row, strict=True)
        )

    if batch.key:
        for start in range(0, len(batch.deletes), 500):
            chunk = batch.deletes[start : start + 500]
            if len(batch.key) == 1:
                col = by_name[batch.key[0]]
                values = ", ".join(cs.literal(k[0], col) for k in chunk)
                out.append(f"DELETE FROM {t} WHERE {db.quote(col.name)} IN ({values})")
            else:
                where = " OR ".join(f"({match(k, batch.key)})" for k in chunk)
                out.append(f"DELETE FROM {t} WHERE {where}")
        for row in batch.updates:
            image = dict(zip(names, row, strict=True))
            sets = ", ".join(
                f"{db.quote(n)} = {cs.literal(image[n], by_name[n])}"
                for n in names
                if n not in batch.key
            )
            key_row = [image[k] for k in batch.key]
            if sets:
                out.append(f"UPDATE {t} SET {sets} WHERE {match(key_row, batch.key)}")
    else:
        for row, n in zip(batch.deletes, batch.delete_counts, strict=True):
            out.append(cs.delete_copies(t, match(row, names), n))
    col_list = ", ".join(db.quote(n) for n in names)
    for start in range(0, len(batch.inserts), 500):
        chunk = batch.inserts[start : start + 500]
        rows = ", ".join(
            "(" + ", ".join(cs.literal(v, by_name[n]) for n, v in zip(names, r, strict=True)) + ")"
            for r in chunk
        )
        out.append(f"INSERT INTO {t} ({col_list}) VALUES {rows}")
    return out
