"""The part of a target writer every SQL engine shares: staging, set-based merge, per-row SQL.

An engine's ``writer.py`` subclasses :class:`SqlWriter` and supplies its dialect's pieces
(how to load a staging table, delete/update-by-join syntax, how to delete N of several
identical rows, the null-safe equality operator, value adaptation). The merge itself is the
same everywhere (DESIGN.md: Apply):

1. load the batch into one staging table, tagged ``_op`` (``d`` delete, ``u`` update,
   ``i`` insert), ``_id`` (row ordinal) and ``_n`` (copies, for keyless deletes);
2. delete by join, update by join, insert from staging — one statement each;
3. compare affected row counts with what the source did: a difference means the target is
   not in the state the source was (missing row, duplicate key) and raises
   :class:`RowRejected` so the applier can replay the group row by row and name the row —
   or, in collision mode, reconcile and count.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from connectors.base import Database, RowRejected, TableBatch
from connectors.model import UNCHANGED, Column, Interval, Json, Op, Row, TableId, TableSchema, Value

__all__ = ["CHECKPOINT_SCHEMA", "CHECKPOINT_TABLE", "SqlWriter", "Staged", "bitstring"]

CHECKPOINT_SCHEMA = "redoline"
CHECKPOINT_TABLE = "redoline_checkpoint"
#: which trail each checkpoint row was applied from (apply refuses another trail)
TRAIL_BINDING_TABLE = "redoline_checkpoint_trail"
#: the DDL statement a target without transactional DDL is running (see ``mark_ddl``)
DDL_PROGRESS_TABLE = "redoline_ddl_progress"

Adapter = Callable[[Value], Any]


@dataclass(slots=True)
class Staged:
    """A batch as the staging table receives it, column-major (what bulk loaders want).

    Row ``i`` is ``(_op, _id, _n, *values)`` = ``(ops[i], i, counts[i], columns[0][i], ...)``;
    the values are adapted for the driver already.
    """

    ops: list[str]
    counts: list[int]
    columns: list[list[Any]]

    def __len__(self) -> int:
        return len(self.ops)

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Row by row, for loaders that take rows."""
        return zip(self.ops, range(len(self.ops)), self.counts, *self.columns, strict=True)


def bitstring(value: Value, bits: int | None) -> Value:
    """A BIT value as the text ``'0101'`` PostgreSQL and DuckDB parse."""
    if isinstance(value, bytes):
        value = int.from_bytes(value, "big")
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return format(value, f"0{bits or 1}b")
    return value


def _interval_text(value: Interval) -> str:
    return f"{value.months} months {value.days} days {value.microseconds} microseconds"


def _set_text(value: Value, col: Column) -> Value:
    if isinstance(value, frozenset):
        order = {label: i for i, label in enumerate(col.labels)}
        return ",".join(sorted(value, key=lambda x: (order.get(x, len(order)), x)))
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Json):
        return json.loads(value.text)
    if isinstance(value, dt.date | dt.time | dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def common_adapter(col: Column) -> Adapter | None:
    """Conversions every engine needs (None: pass values through untouched)."""
    kind = col.kind
    if kind == "json":
        return lambda v: v.text if isinstance(v, Json) else v
    if kind == "set":
        return lambda v: _set_text(v, col)
    if kind == "interval":
        return lambda v: _interval_text(v) if isinstance(v, Interval) else v
    return None


class SqlWriter:
    """Shared implementation of :class:`connectors.base.Writer` over a DB-API connection."""

    dialect: ClassVar[str]
    #: placeholder of the driver's paramstyle
    placeholder: ClassVar[str] = "%s"
    #: null-safe equality operator (``IS NOT DISTINCT FROM`` / ``<=>``)
    null_safe_eq: ClassVar[str] = "IS NOT DISTINCT FROM"
    #: the 4-byte float type in a CAST
    float4_type: ClassVar[str] = "REAL"
    #: the engine's physical row address (``ctid``, ``rowid``), which deletes exactly N of
    #: several identical keyless rows; None where there is none (MySQL uses LIMIT instead)
    row_address: ClassVar[str | None] = None
    #: DDL runs inside the target transaction and commits with the checkpoint (PostgreSQL,
    #: DuckDB); False where each DDL statement commits on its own (MySQL/MariaDB), so apply
    #: marks the statement it runs and checks the target's state after an interruption
    transactional_ddl: ClassVar[bool] = True

    def __init__(self, database: Database, conn: Any) -> None:
        self.database = database
        self.conn = conn
        self._adapters: dict[tuple[TableId, tuple[str, ...]], list[Adapter | None]] = {}
        self._stage_names: dict[TableId, str] = {}
        self._stage_used: set[str] = set()
        self._ddl_progress_ready = False

    # ------------------------------------------------------------------ basics

    def q(self, name: str) -> str:
        return self.database.quote(name)

    def qt(self, table: TableId) -> str:
        return self.database.qualified(table)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass

    def invalidate(self, table: TableId) -> None:
        """Forget what we know of ``table`` (after DDL changed it)."""
        self._adapters = {k: v for k, v in self._adapters.items() if k[0] != table}
        name = self._stage_names.pop(table, None)
        if name:
            self._drop_stage(name)

    def adapt(self, table: TableId, columns: Sequence[Column]) -> list[Adapter | None]:
        """Value adapters for ``columns`` (cached per table and column list)."""
        key = (table, tuple(c.name for c in columns))
        found = self._adapters.get(key)
        if found is None:
            found = [self.adapter(c) for c in columns]
            self._adapters[key] = found
        return found

    def adapter(self, col: Column) -> Adapter | None:
        """How one column's values become driver parameters (engines extend this)."""
        return common_adapter(col)

    def adapt_rows(
        self, table: TableId, columns: Sequence[Column], rows: Sequence[Sequence[Value]]
    ) -> list[tuple[Any, ...]]:
        fns = self.adapt(table, columns)
        if not any(fns):
            return [tuple(r) for r in rows]
        out = []
        for row in rows:
            out.append(
                tuple(v if f is None or v is None else f(v) for f, v in zip(fns, row, strict=True))
            )
        return out

    # ------------------------------------------------------------------ transactions

    def begin(self) -> None:
        self._stage_used.clear()

    def commit(self) -> None:
        self.conn.commit()
        self._stage_used.clear()

    def rollback(self) -> None:
        try:
            self.conn.rollback()
        finally:
            self._stage_used.clear()

    def create_schema(self, schema: str) -> None:
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.q(schema)}")

    def truncate(self, table: TableId) -> None:
        self.execute(f"DELETE FROM {self.qt(table)}")

    def foreign_key_pairs(self) -> list[tuple[TableId, TableId]]:
        """(child, parent) table pairs linked by a foreign key on the target."""
        rows = self.query(
            "SELECT tc.table_schema, tc.table_name, ccu.table_schema, ccu.table_name "
            "FROM information_schema.table_constraints tc "
            "JOIN information_schema.constraint_column_usage ccu "
            "ON ccu.constraint_name = tc.constraint_name "
            "AND ccu.constraint_schema = tc.constraint_schema "
            "WHERE tc.constraint_type = 'FOREIGN KEY'"
        )
        return [(TableId(a, b), TableId(c, d)) for a, b, c, d in rows]

    # ------------------------------------------------------------------ checkpoint

    def _checkpoint_table(self) -> str:
        return self.qt(TableId(CHECKPOINT_SCHEMA, CHECKPOINT_TABLE))

    def checkpoint_ddl(self) -> str:
        """CREATE TABLE for the checkpoint (engines adjust types)."""
        return (
            f"CREATE TABLE IF NOT EXISTS {self._checkpoint_table()} ("
            "source_id VARCHAR(128) NOT NULL, target_id VARCHAR(128) NOT NULL, "
            "applied_op BIGINT NOT NULL, position VARCHAR(512), commit_time TIMESTAMP, "
            "updated_at TIMESTAMP, PRIMARY KEY (source_id, target_id))"
        )

    def load_checkpoint(self, source_id: str, target_id: str) -> tuple[int, str | None]:
        self.create_schema(CHECKPOINT_SCHEMA)
        self.execute(self.checkpoint_ddl())
        p = self.placeholder
        rows = self.query(
            f"SELECT applied_op, position FROM {self._checkpoint_table()} "
            f"WHERE source_id = {p} AND target_id = {p}",
            (source_id, target_id),
        )
        if not rows:
            self.execute(
                f"INSERT INTO {self._checkpoint_table()} (source_id, target_id, applied_op, "
                f"updated_at) VALUES ({p}, {p}, 0, {p})",
                (source_id, target_id, _utcnow()),
            )
            self.commit()
            return 0, None
        self.commit()
        return int(rows[0][0]), rows[0][1]

    def save_checkpoint(
        self, source_id: str, target_id: str, op: int, position: str, commit_time: Any
    ) -> None:
        p = self.placeholder
        if isinstance(commit_time, dt.datetime) and commit_time.tzinfo is not None:
            commit_time = commit_time.astimezone(dt.UTC).replace(tzinfo=None)
        n = self.execute(
            f"UPDATE {self._checkpoint_table()} SET applied_op = {p}, position = {p}, "
            f"commit_time = {p}, updated_at = {p} WHERE source_id = {p} AND target_id = {p}",
            (op, position, commit_time, _utcnow(), source_id, target_id),
        )
        if n != 1:
            raise RowRejected(
                f"the checkpoint row for source {source_id!r}, target {target_id!r} is gone"
            )

    def _binding_table(self) -> str:
        return self.qt(TableId(CHECKPOINT_SCHEMA, TRAIL_BINDING_TABLE))

    def load_trail_binding(self, source_id: str, target_id: str) -> str | None:
        """The trail id this checkpoint row was applied from (None: not recorded yet)."""
        self.create_schema(CHECKPOINT_SCHEMA)
        self.execute(
            f"CREATE TABLE IF NOT EXISTS {self._binding_table()} ("
            "source_id VARCHAR(128) NOT NULL, target_id VARCHAR(128) NOT NULL, "
            "trail_id VARCHAR(128) NOT NULL, PRIMARY KEY (source_id, target_id))"
        )
        p = self.placeholder
        rows = self.query(
            f"SELECT trail_id FROM {self._binding_table()} "
            f"WHERE source_id = {p} AND target_id = {p}",
            (source_id, target_id),
        )
        self.commit()
        return str(rows[0][0]) if rows else None

    def bind_trail(self, source_id: str, target_id: str, trail_id: str, *, reset: bool) -> None:
        """Record ``trail_id`` as the checkpoint's trail; ``reset`` also rewinds the
        checkpoint to operation 0 (a new trail adopted). One target transaction."""
        p = self.placeholder
        self.execute(
            f"DELETE FROM {self._binding_table()} WHERE source_id = {p} AND target_id = {p}",
            (source_id, target_id),
        )
        self.execute(
            f"INSERT INTO {self._binding_table()} (source_id, target_id, trail_id) "
            f"VALUES ({p}, {p}, {p})",
            (source_id, target_id, trail_id),
        )
        if reset:
            self.execute(
                f"UPDATE {self._checkpoint_table()} SET applied_op = 0, position = NULL, "
                f"commit_time = NULL, updated_at = {p} WHERE source_id = {p} AND target_id = {p}",
                (_utcnow(), source_id, target_id),
            )
        self.commit()

    # ------------------------------------------------------------------ DDL progress

    def _ddl_progress_table(self) -> str:
        return self.qt(TableId(CHECKPOINT_SCHEMA, DDL_PROGRESS_TABLE))

    def _ensure_ddl_progress(self) -> None:
        if self._ddl_progress_ready:
            return
        self.create_schema(CHECKPOINT_SCHEMA)
        self.execute(
            f"CREATE TABLE IF NOT EXISTS {self._ddl_progress_table()} ("
            "source_id VARCHAR(128) NOT NULL, target_id VARCHAR(128) NOT NULL, "
            "op BIGINT NOT NULL, step INTEGER NOT NULL, statement TEXT NOT NULL, "
            "PRIMARY KEY (source_id, target_id))"
        )
        self.commit()
        self._ddl_progress_ready = True

    def load_ddl_mark(self, source_id: str, target_id: str) -> tuple[int, int, str] | None:
        """The DDL statement marked as running (operation, step, statement), or None."""
        self._ensure_ddl_progress()
        p = self.placeholder
        rows = self.query(
            f"SELECT op, step, statement FROM {self._ddl_progress_table()} "
            f"WHERE source_id = {p} AND target_id = {p}",
            (source_id, target_id),
        )
        self.commit()
        return (int(rows[0][0]), int(rows[0][1]), str(rows[0][2])) if rows else None

    def mark_ddl(self, source_id: str, target_id: str, op: int, step: int, statement: str) -> None:
        """Record, committed, that DDL statement ``step`` of operation ``op`` is about to run.
        Without transactional DDL, a crash between the statement and the checkpoint leaves
        this mark behind."""
        self._ensure_ddl_progress()
        self.clear_ddl_mark(source_id, target_id)
        p = self.placeholder
        self.execute(
            f"INSERT INTO {self._ddl_progress_table()} (source_id, target_id, op, step, "
            f"statement) VALUES ({p}, {p}, {p}, {p}, {p})",
            (source_id, target_id, op, step, statement),
        )
        self.commit()

    def clear_ddl_mark(self, source_id: str, target_id: str) -> None:
        """Remove the mark inside the current transaction (with the checkpoint)."""
        p = self.placeholder
        self.execute(
            f"DELETE FROM {self._ddl_progress_table()} WHERE source_id = {p} AND target_id = {p}",
            (source_id, target_id),
        )

    # ------------------------------------------------------------------ set-based merge

    def merge(self, batch: TableBatch) -> int:
        cols = [c for c in batch.schema.columns if not c.generated]
        names = [c.name for c in cols]
        collisions = 0
        staged = self.staged(batch, cols)
        if staged.ops:
            stage = self.stage(batch.schema, cols, staged)
            collisions += self._merge_staged(batch, stage, names)
        for patch_cols, patch_rows in batch.patches.items():
            for values in patch_rows:
                row = dict(zip(patch_cols, values, strict=True))
                before = {k: row[k] for k in batch.key}
                collisions += self.apply_row(
                    batch.schema, batch.key, Op.UPDATE, before, row, collision=batch.collision
                )
        return collisions

    def staged(self, batch: TableBatch, cols: Sequence[Column]) -> Staged:
        """``batch`` laid out for the staging table, column by column and adapted.

        Built with ``zip(*rows)`` transpositions and one adapter pass per column, so the
        per-value Python work is only the adapters a column really needs.
        """
        names = [c.name for c in cols]
        width = len(names)
        nd, nu, ni = len(batch.deletes), len(batch.updates), len(batch.inserts)
        ops = ["d"] * nd + ["u"] * nu + ["i"] * ni
        counts = list(batch.delete_counts) if not batch.key else [1] * nd
        counts += [1] * (nu + ni)
        transposed = list(zip(*batch.deletes, strict=True))
        if batch.key:
            # keyed deletes carry only the key; the other columns stage as NULL
            by_name = dict(zip(batch.key, transposed, strict=True)) if nd else {}
            nulls = [None] * nd
            columns = [list(by_name.get(n, nulls)) for n in names]
        else:
            columns = [list(c) for c in transposed] if nd else [[] for _ in names]
        for part in (batch.updates, batch.inserts):
            if part:
                for col, values in zip(columns, zip(*part, strict=True), strict=True):
                    col.extend(values)
        if len(columns) != width:
            raise ValueError(f"staged rows of {batch.schema.table} have the wrong width")
        for j, fn in enumerate(self.adapt(batch.schema.table, cols)):
            if fn is not None:
                columns[j] = [v if v is None else fn(v) for v in columns[j]]
        return Staged(ops, counts, columns)

    def _merge_staged(self, batch: TableBatch, stage: str, names: list[str]) -> int:
        t = self.qt(batch.schema.table)
        collisions = 0
        if batch.deletes:
            if batch.key:
                n = self.execute(self.delete_join_sql(t, stage, self._key_eq(batch.key), "d"))
                missing = len(batch.deletes) - n
            else:
                wanted = sum(batch.delete_counts)
                n = self.delete_images(batch, t, stage, names)
                missing = wanted - n
            if missing:
                if not batch.collision:
                    raise RowRejected(f"{missing} row(s) to delete not found in {t}", missing=True)
                collisions += missing
        cols = ", ".join(self.q(c) for c in names)
        scols = ", ".join(f"s.{self.q(c)}" for c in names)
        set_cols = [c for c in names if c not in batch.key]
        if batch.updates:
            n = self.update_staged(batch, t, stage, set_cols, "u")
            missing = len(batch.updates) - n
            if missing:
                if not batch.collision:
                    raise RowRejected(f"{missing} row(s) to update not found in {t}", missing=True)
                collisions += self.execute(self._insert_missing_sql(t, stage, cols, scols, batch))
        if batch.inserts:
            if batch.collision and batch.key:
                if set_cols:
                    collisions += self.update_staged(batch, t, stage, set_cols, "i")
                else:
                    collisions += self.query(
                        f"SELECT COUNT(*) FROM {t} t JOIN {stage} s ON "
                        f"{self._key_eq(batch.key)} WHERE s._op = 'i'"
                    )[0][0]
                self.execute(self._insert_missing_sql(t, stage, cols, scols, batch, op="i"))
            else:
                self.execute(
                    f"INSERT INTO {t} ({cols}) SELECT {scols} FROM {stage} s WHERE s._op = 'i' "
                    "ORDER BY s._id"
                )
        return collisions

    def _insert_missing_sql(
        self, t: str, stage: str, cols: str, scols: str, batch: TableBatch, op: str = "u"
    ) -> str:
        return (
            f"INSERT INTO {t} ({cols}) SELECT {scols} FROM {stage} s WHERE s._op = '{op}' "
            f"AND NOT EXISTS (SELECT 1 FROM {t} t WHERE {self._key_eq(batch.key)})"
        )

    def _key_eq(self, key: Sequence[str]) -> str:
        return " AND ".join(f"t.{self.q(k)} = s.{self.q(k)}" for k in key)

    def image_eq(self, schema: TableSchema, names: Sequence[str]) -> str:
        """Whole-image equality between target ``t`` and staging ``s`` (keyless tables)."""
        parts = []
        for name in names:
            col = schema.column(name)
            lhs, rhs = (
                self.comparable(f"t.{self.q(name)}", col),
                self.comparable(f"s.{self.q(name)}", col),
            )
            op = "=" if not col.nullable else self.null_safe_eq
            parts.append(f"{lhs} {op} {rhs}")
        return " AND ".join(parts) or "TRUE"

    def comparable(self, expr: str, col: Column) -> str:
        """``expr`` in a form that has an equality operator (PostgreSQL json has none) and
        compares a parameter as the column's type."""
        if col.kind == "float":
            # a float parameter is a double: 0.1 as a double equals no 4-byte FLOAT value,
            # so a keyless row holding one was never found by its image
            return f"CAST({expr} AS {self.float4_type})"
        return expr

    # ------------------------------------------------------------------ dialect pieces

    def stage(self, schema: TableSchema, cols: Sequence[Column], data: Staged) -> str:
        """Load ``data`` (``_op, _id, _n`` + columns) into a staging table; return its name."""
        raise NotImplementedError

    def _drop_stage(self, name: str) -> None:
        self._stage_used.discard(name)
        self.execute(f"DROP TABLE IF EXISTS {name}")

    def delete_join_sql(self, t: str, stage: str, on: str, op: str) -> str:
        return f"DELETE FROM {t} AS t USING {stage} AS s WHERE s._op = '{op}' AND {on}"

    def update_join_sql(self, t: str, stage: str, set_cols: Sequence[str], on: str, op: str) -> str:
        sets = ", ".join(f"{self.q(c)} = s.{self.q(c)}" for c in set_cols)
        return f"UPDATE {t} AS t SET {sets} FROM {stage} AS s WHERE s._op = '{op}' AND {on}"

    def update_staged(
        self, batch: TableBatch, t: str, stage: str, set_cols: Sequence[str], op: str
    ) -> int:
        """Set ``set_cols`` of the target rows whose key matches a staged ``op`` row; return
        the rows matched (rows staged but missing on the target are left alone)."""
        return self.execute(self.update_join_sql(t, stage, set_cols, self._key_eq(batch.key), op))

    def delete_images(self, batch: TableBatch, t: str, stage: str, names: list[str]) -> int:
        """Delete ``_n`` copies of each staged ``d`` image; return rows deleted."""
        a = self.row_address
        if a is None:
            raise NotImplementedError
        eq = self.image_eq(batch.schema, names)
        return self.execute(
            f"DELETE FROM {t} WHERE {a} IN (SELECT x.addr FROM (SELECT t.{a} AS addr, s._n, "
            f"row_number() OVER (PARTITION BY s._id ORDER BY t.{a}) AS rn FROM {t} t "
            f"JOIN {stage} s ON s._op = 'd' AND {eq}) x WHERE x.rn <= x._n)"
        )

    # ------------------------------------------------------------------ statements

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def column_names(self, table: TableId) -> set[str]:
        """The names of ``table``'s columns on the target, as they are now."""
        raise NotImplementedError

    # ------------------------------------------------------------------ row by row

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
        table = schema.table
        t = self.qt(table)
        p = self.placeholder
        writable = [c for c in schema.columns if not c.generated]
        if op is Op.INSERT:
            assert after is not None
            cols = [c for c in writable if c.name in after]
            values: list[Value] = [
                None if after[c.name] is UNCHANGED else after[c.name] for c in cols
            ]
            if collision and key and self._row_exists(schema, key, after):
                self.apply_row(schema, key, Op.UPDATE, after, after)
                return 1
            sql = (
                f"INSERT INTO {t} ({', '.join(self.q(c.name) for c in cols)}) "
                f"VALUES ({', '.join([p] * len(cols))})"
            )
            self.execute(sql, self.adapt_rows(table, cols, [values])[0])
            return 0
        assert before is not None
        where, wparams = self._where(schema, key, before)
        if op is Op.DELETE:
            n = self.execute(f"DELETE FROM {t} WHERE {where}{self.limit_one(key)}", wparams)
            if n == 0:
                if not collision:
                    raise RowRejected(f"the row to delete is not in {t}", row=before, missing=True)
                return 1
            return 0
        assert after is not None
        cols = [c for c in writable if c.name in after and after[c.name] is not UNCHANGED]
        if not key:
            cols = [c for c in cols if before.get(c.name, UNCHANGED) != after[c.name]] or cols
        new = self.adapt_rows(table, cols, [[after[c.name] for c in cols]])[0]
        sets = ", ".join(f"{self.q(c.name)} = {p}" for c in cols)
        n = self.execute(
            f"UPDATE {t} SET {sets} WHERE {where}{self.limit_one(key)}", [*new, *wparams]
        )
        if n == 0:
            if not collision:
                raise RowRejected(f"the row to update is not in {t}", row=before, missing=True)
            self.apply_row(schema, key, Op.INSERT, None, after)
            return 1
        return 0

    def limit_one(self, key: Sequence[str]) -> str:
        """Suffix that makes a keyless UPDATE/DELETE touch one row ('' where unsupported)."""
        return ""

    def _where(self, schema: TableSchema, key: Sequence[str], before: Row) -> tuple[str, list[Any]]:
        p = self.placeholder
        names = list(key) if key else [c.name for c in schema.columns if not c.generated]
        cols = [schema.column(n) for n in names]
        values = self.adapt_rows(schema.table, cols, [[before.get(n) for n in names]])[0]
        parts: list[str] = []
        params: list[Any] = []
        for col, value in zip(cols, values, strict=True):
            expr = self.comparable(self.q(col.name), col)
            if value is None:
                parts.append(f"{expr} IS NULL")
            else:
                parts.append(f"{expr} = {self.comparable(p, col)}")
                params.append(value)
        where = " AND ".join(parts) or "TRUE"
        if not key:
            where = self.one_row_where(schema.table, where)
        return where, params

    def one_row_where(self, table: TableId, where: str) -> str:
        """Restrict a keyless WHERE to a single physical row (ctid/rowid subquery)."""
        a = self.row_address
        if a is None:
            return where
        return f"{a} = (SELECT {a} FROM {self.qt(table)} WHERE {where} LIMIT 1)"

    def _row_exists(self, schema: TableSchema, key: Sequence[str], row: Row) -> bool:
        where, params = self._where(schema, key, row)
        return bool(self.query(f"SELECT 1 FROM {self.qt(schema.table)} WHERE {where}", params))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def uuid_text(value: Value) -> Value:
    return str(value) if isinstance(value, uuid.UUID) else value


def json_text(value: Value) -> Value:
    """Arrays and documents as JSON text (MySQL targets keep arrays as JSON)."""
    if isinstance(value, Json):
        return value.text
    if isinstance(value, list):
        # as the snapshot spells it (PostgreSQL's array_to_json): compact, characters as
        # they are rather than \u escapes, so every row of the column reads alike
        return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))
    return value
