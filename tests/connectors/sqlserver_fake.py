"""A scripted SQL Server at the connector's interface: the statements of
``connectors/sqlserver/sql.py`` (and the snapshot's) in, DB-API rows out.

It models what the documentation says SQL Server does, not what the connector assumes:

* every log record gets the next LSN (gaps between them, as real LSNs have); a change's
  ``__$seqval`` is the LSN of its log record, its ``__$start_lsn`` the commit record's LSN;
* tracked tables' changes reach the change tables only when the **capture job** runs
  (:meth:`FakeServer.capture_job`, possibly a few transactions at a time), which also writes
  ``cdc.lsn_time_mapping`` (server local time) and so moves ``sys.fn_cdc_get_max_lsn()``;
* an update is two rows with one seqval, 3 (before) and 4 (after); in row 3 a
  ``varchar(max)``/``nvarchar(max)``/``varbinary(max)``/``xml`` column is NULL unless the
  update changed it; ``__$update_mask`` has the changed columns' bits (last byte: ordinals
  1-8); inserts and deletes set every bit;
* a capture instance keeps the columns it was created with (a column added later is not
  captured, a dropped one reads NULL); ``change_tables.start_lsn`` is NULL until the capture
  job has passed the instance's creation, and at most two instances exist per table;
* the **cleanup job** (:meth:`FakeServer.cleanup_job`) deletes change rows and mapping rows
  older than the retention and moves every instance's ``start_lsn`` (= ``fn_cdc_get_min_lsn``)
  up to the new low water mark;
* ``cdc.fn_cdc_get_all_changes_*`` fails with error 313 when its range leaves the
  instance's validity interval (from below the minimum, to above the maximum, or from > to);
* a SNAPSHOT isolation transaction sees the committed state as of its first data access;
* ``datetimeoffset`` values leave as the driver's SQL_SS_TIMESTAMPOFFSET struct, turned into
  Python only by the output converter the connection registered (as pyodbc does).

Application writes (CREATE TABLE, INSERT, UPDATE, DELETE, ALTER TABLE ... ADD, and
``EXEC sys.sp_cdc_enable_table`` with literals) are understood in the small T-SQL subset the
tests write.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyodbc

from connectors.sqlserver import snapshot as snap
from connectors.sqlserver import sql

SQL_SS_TIMESTAMPOFFSET = -155
LOBS = {"varchar(max)", "nvarchar(max)", "varbinary(max)", "xml"}
OLD_LOBS = {"text", "ntext", "image"}


def error(code: int, text: str, state: str = "42000") -> pyodbc.Error:
    return pyodbc.ProgrammingError(
        state,
        f"[{state}] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]{text} ({code}) "
        "(SQLExecDirectW)",
    )


def lsn_bytes(n: int) -> bytes:
    return n.to_bytes(10, "big")


@dataclass
class FakeColumn:
    name: str
    type: str  # base type name, lower case
    max_length: int = 0
    precision: int = 0
    scale: int = 0
    nullable: bool = True
    computed: bool = False

    @property
    def declared(self) -> str:
        if self.type in ("varchar", "nvarchar", "varbinary") and self.max_length == -1:
            return f"{self.type}(max)"
        return self.type


def parse_type(name: str, text: str) -> FakeColumn:
    m = re.fullmatch(r"(\w+)\s*(?:\(\s*(max|\d+)\s*(?:,\s*(\d+))?\s*\))?", text.strip(), re.I)
    assert m, text
    t = m.group(1).lower()
    arg, arg2 = m.group(2), m.group(3)
    col = FakeColumn(name, t)
    if t in ("varchar", "char", "varbinary", "binary"):
        col.max_length = -1 if arg and arg.lower() == "max" else int(arg or 1)
    elif t in ("nvarchar", "nchar"):
        col.max_length = -1 if arg and arg.lower() == "max" else 2 * int(arg or 1)
    elif t in ("decimal", "numeric"):
        col.precision, col.scale = int(arg or 18), int(arg2 or 0)
    elif t in ("datetime2", "time", "datetimeoffset"):
        col.scale = int(arg) if arg else 7
    elif t == "float":
        col.precision = int(arg) if arg else 53
    elif t == "int":
        col.precision = 10
    return col


@dataclass
class FakeTable:
    schema: str
    name: str
    columns: list[FakeColumn]
    pk: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def col(self, name: str) -> FakeColumn:
        return next(c for c in self.columns if c.name == name)


@dataclass
class Instance:
    name: str
    table: tuple[str, str]
    columns: list[FakeColumn]
    index: list[str]
    created_lsn: int
    create_date: dt.datetime
    start_lsn: int | None = None
    rows: list[tuple[int, int, int, bytes, dict[str, Any]]] = field(default_factory=list)


@dataclass
class LoggedChange:
    table: tuple[str, str]
    op: str  # insert / update / delete
    seqval: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass
class LoggedCommit:
    lsn: int
    tran_id: bytes
    begin_lsn: int
    end_time: dt.datetime  # server local time
    changes: list[LoggedChange]


class FakeServer:
    """The server's state; :meth:`connect` gives DB-API connections to it."""

    def __init__(self, database: str = "shop", *, utc_offset_minutes: int = 60) -> None:
        self.database = database
        self.lsn = 0x0000_0027_0000_0100_0001
        self.cdc_enabled = False
        self.snapshot_isolation = 1
        self.version = "16.0.4135.4"
        self.sysadmin = 1
        self.db_owner = 1
        self.capture_running = True
        self.retention = 4320
        self.utc_offset = utc_offset_minutes
        #: server local time (advanced by tests)
        self.clock = dt.datetime(2026, 1, 5, 12, 0, 0)
        self.tables: dict[tuple[str, str], FakeTable] = {}
        self.instances: dict[str, Instance] = {}
        self.mapping: list[tuple[int, bytes, dt.datetime]] = []
        self.unharvested: list[LoggedCommit] = []
        self.executed: list[str] = []
        self.tran_counter = 0x1000
        #: True: every commit is harvested at once (the capture job keeps up)
        self.auto_capture = True

    # ------------------------------------------------------------------ log

    def next_lsn(self) -> int:
        self.lsn += 0x10 + (self.lsn & 0x3)  # uneven gaps, as a real log has
        return self.lsn

    def tick(self, seconds: float = 1.0) -> None:
        self.clock += dt.timedelta(seconds=seconds)

    def commit(self, begin_lsn: int, changes: list[LoggedChange]) -> int:
        lsn = self.next_lsn()
        self.tran_counter += 1
        self.tick(0.01)
        tracked = [c for c in changes if any(i.table == c.table for i in self.instances.values())]
        if tracked or changes:
            self.unharvested.append(
                LoggedCommit(
                    lsn, self.tran_counter.to_bytes(10, "big"), begin_lsn, self.clock, changes
                )
            )
        if self.auto_capture:
            self.capture_job()
        return lsn

    def capture_job(self, transactions: int | None = None) -> None:
        """The capture job's scan: ``transactions`` more commits (all: None) into the change
        tables and cdc.lsn_time_mapping."""
        if not self.cdc_enabled or not self.capture_running:
            return
        todo = self.unharvested if transactions is None else self.unharvested[:transactions]
        self.unharvested = self.unharvested[len(todo) :]
        for commit in todo:
            wrote = False
            for inst in self.instances.values():
                if inst.start_lsn is None and inst.created_lsn < commit.lsn:
                    inst.start_lsn = inst.created_lsn
            for change in commit.changes:
                for inst in self.instances.values():
                    if inst.table != change.table or inst.created_lsn > change.seqval:
                        continue
                    self._write_change(inst, commit.lsn, change)
                    wrote = True
            if wrote:
                self.mapping.append((commit.lsn, commit.tran_id, commit.end_time))
        for inst in self.instances.values():
            if inst.start_lsn is None and inst.created_lsn < self.lsn and not self.unharvested:
                inst.start_lsn = inst.created_lsn

    def _write_change(self, inst: Instance, lsn: int, change: LoggedChange) -> None:
        n = len(inst.columns)
        width = (n + 7) // 8

        def mask(names: set[str]) -> bytes:
            bits = 0
            for i, c in enumerate(inst.columns):
                if c.name in names:
                    bits |= 1 << i
            return bits.to_bytes(width, "big")

        def image(row: dict[str, Any], old: bool, changed: set[str]) -> dict[str, Any]:
            out = {}
            for c in inst.columns:
                v = row.get(c.name)
                if c.computed:
                    v = None
                if old and c.declared in OLD_LOBS:
                    v = None
                if old and c.declared in LOBS and c.name not in changed:
                    v = None
                out[c.name] = v
            return out

        every = {c.name for c in inst.columns}
        if change.op == "insert":
            assert change.after is not None
            inst.rows.append(
                (lsn, change.seqval, 2, mask(every), image(change.after, False, every))
            )
        elif change.op == "delete":
            assert change.before is not None
            inst.rows.append(
                (lsn, change.seqval, 1, mask(every), image(change.before, True, every))
            )
        else:
            assert change.before is not None and change.after is not None
            changed = {k for k in every if change.before.get(k) != change.after.get(k)}
            m = mask(changed)
            inst.rows.append((lsn, change.seqval, 3, m, image(change.before, True, changed)))
            inst.rows.append((lsn, change.seqval, 4, m, image(change.after, False, changed)))

    def cleanup_job(self, *, low_water: int | None = None) -> int:
        """The cleanup job: remove what is older than the retention (or below ``low_water``);
        returns the new low water mark."""
        if low_water is None:
            cutoff = self.clock - dt.timedelta(minutes=self.retention)
            kept = [m for m in self.mapping if m[2] >= cutoff]
            # the low water mark is a commit of the mapping (the newest one when every
            # commit is older than the retention)
            if not self.mapping:
                return 0
            low_water = kept[0][0] if kept else self.mapping[-1][0]
        self.mapping = [m for m in self.mapping if m[0] >= low_water]
        for inst in self.instances.values():
            inst.rows = [r for r in inst.rows if r[0] >= low_water]
            if inst.start_lsn is not None:
                inst.start_lsn = max(inst.start_lsn, low_water)
        return low_water

    @property
    def max_lsn(self) -> int | None:
        return self.mapping[-1][0] if self.mapping else None

    # ------------------------------------------------------------------ DDL and CDC

    def create_table(
        self, schema: str, name: str, columns: list[FakeColumn], pk: list[str]
    ) -> None:
        for c in columns:
            if c.name in pk:
                c.nullable = False
        self.tables[(schema, name)] = FakeTable(schema, name, columns, pk)
        self.next_lsn()

    def enable_db(self) -> None:
        if not self.sysadmin:
            raise error(
                22902,
                "Could not update the metadata that indicates database is enabled "
                "for Change Data Capture. The failure occurred when executing the "
                "command 'sp_cdc_enable_db'.",
            )
        self.cdc_enabled = True
        self.next_lsn()

    def enable_table(self, schema: str, name: str, instance: str | None) -> None:
        if not self.cdc_enabled:
            raise error(
                22901,
                f"The database '{self.database}' is not enabled for Change Data "
                "Capture. Ensure that the correct database context is set and retry "
                "the operation.",
            )
        table = self.tables[(schema, name)]
        instance = instance or f"{schema}_{name}"
        existing = [i for i in self.instances.values() if i.table == (schema, name)]
        if len(existing) >= 2:
            raise error(
                22962,
                f"Two capture instances already exist for source table "
                f"'{schema}.{name}'. A table can have at most two capture instances.",
            )
        if instance in self.instances:
            raise error(
                22926,
                f"Could not create a capture instance because the capture "
                f"instance name '{instance}' already exists in the current database.",
            )
        self.instances[instance] = Instance(
            instance,
            (schema, name),
            [FakeColumn(**vars(c)) for c in table.columns],
            list(table.pk),
            self.next_lsn(),
            self.clock,
        )

    def disable_instance(self, instance: str) -> None:
        del self.instances[instance]

    def connect(self) -> FakeConnection:
        return FakeConnection(self)


class FakeConnection:
    """A DB-API connection to :class:`FakeServer` (pyodbc's surface that redoline uses)."""

    def __init__(self, server: FakeServer, autocommit: bool = True) -> None:
        self.server = server
        self.autocommit = autocommit
        self.converters: dict[int, Any] = {}
        self.pending: list[LoggedChange] = []
        self.writes: list[tuple[FakeTable, list[dict[str, Any]]]] = []
        self.begin_lsn: int | None = None
        self.isolation = "read committed"
        self.snapshot: dict[tuple[str, str], list[dict[str, Any]]] | None = None
        self.closed = False

    def add_output_converter(self, code: int, func: Any) -> None:
        self.converters[code] = func

    def cursor(self) -> FakeCursor:
        if self.closed:
            raise pyodbc.OperationalError(
                "08003", "[08003] Connection is closed (0) (SQLDriverConnect)"
            )
        return FakeCursor(self)

    def commit(self) -> None:
        if self.pending:
            assert self.begin_lsn is not None
            # the transaction's changes land on the committed state (others may have
            # committed since this one copied it)
            for change in self.pending:
                table = self.server.tables[change.table]
                if change.before is not None:
                    table.rows.remove(next(r for r in table.rows if r == change.before))
                if change.after is not None:
                    table.rows.append(dict(change.after))
            self.server.commit(self.begin_lsn, self.pending)
        self._end()

    def rollback(self) -> None:
        if self.pending:
            self.server.next_lsn()  # the abort record
        self._end()

    def _end(self) -> None:
        self.pending, self.writes, self.begin_lsn = [], [], None
        self.snapshot = None

    def close(self) -> None:
        self.rollback()
        self.closed = True

    # the table state this connection's transaction sees and writes
    def working(self, table: FakeTable) -> list[dict[str, Any]]:
        for t, rows in self.writes:
            if t is table:
                return rows
        rows = [dict(r) for r in table.rows]
        self.writes.append((table, rows))
        return rows


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.server = conn.server
        self.rows: list[tuple[Any, ...]] = []
        self.description: list[tuple[str]] | None = None

    def close(self) -> None:
        pass

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self.rows = self.rows, []
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows.pop(0) if self.rows else None

    def fetchmany(self, n: int) -> list[tuple[Any, ...]]:
        rows, self.rows = self.rows[:n], self.rows[n:]
        return rows

    def _result(self, rows: list[tuple[Any, ...]]) -> FakeCursor:
        self.rows = rows
        self.description = [("c",)]
        return self

    def execute(self, statement: str, *params: Any) -> FakeCursor:
        if len(params) == 1 and isinstance(params[0], tuple | list):
            params = tuple(params[0])
        if params == (None,) and "?" not in statement:
            params = ()
        self.server.executed.append(statement)
        self.description = None
        self.rows = []
        handler = _EXACT.get(statement)
        if handler is not None:
            rows = handler(self, list(params))
            if rows is not None:
                self._result(rows)
            return self
        m = _CHANGES.fullmatch(statement)
        if m:
            return self._result(self._changes(m.group(1).replace("]]", "]"), list(params)))
        from tests.connectors.sqlserver_fake_dml import PATTERNS

        for pattern, method in PATTERNS:
            m = pattern.fullmatch(statement.strip())
            if m:
                rows = method(self, m, list(params))
                if rows is not None:
                    self._result(rows)
                return self
        raise AssertionError(f"the fake SQL Server does not know this statement: {statement}")

    # ------------------------------------------------------------------ CDC reads

    def _instance(self, name: str) -> Instance:
        inst = self.server.instances.get(name)
        if inst is None:
            raise error(208, f"Invalid object name 'cdc.fn_cdc_get_all_changes_{name}'.")
        return inst

    def _changes(self, name: str, p: list[Any]) -> list[tuple[Any, ...]]:
        inst = self._instance(name.removeprefix("fn_cdc_get_all_changes_"))
        top, lo, hi = p[0], int.from_bytes(p[1], "big"), int.from_bytes(p[2], "big")
        c_lsn, c_seq, c_op = int.from_bytes(p[3], "big"), int.from_bytes(p[5], "big"), p[7]
        maximum = self.server.max_lsn
        if (
            inst.start_lsn is None
            or maximum is None
            or lo < inst.start_lsn
            or hi > maximum
            or lo > hi
        ):
            raise error(
                313,
                "An insufficient number of arguments were supplied for the procedure or "
                f"function cdc.fn_cdc_get_all_changes_{inst.name}.",
            )
        out = []
        for lsn, seq, op, mask, values in sorted(inst.rows, key=lambda r: r[:3]):
            if not lo <= lsn <= hi or (lsn, seq, op) <= (c_lsn, c_seq, c_op):
                continue
            row = [lsn_bytes(lsn), lsn_bytes(seq), op, mask]
            row += [self._out(c, values[c.name]) for c in inst.columns]
            out.append(tuple(row))
        return out[:top]

    def _out(self, col: FakeColumn, value: Any) -> Any:
        """A value as the driver hands it to Python."""
        if value is None or col.type != "datetimeoffset":
            return value
        off = value.utcoffset()
        minutes = int(off.total_seconds() // 60)
        raw = struct.pack(
            "<6hI2h",
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond * 1000,
            int(minutes / 60),
            minutes % 60 if minutes >= 0 else -((-minutes) % 60),
        )
        conv = self.conn.converters.get(SQL_SS_TIMESTAMPOFFSET)
        if conv is None:
            raise pyodbc.ProgrammingError(
                "ODBC SQL type -155 is not yet supported.  column-index=0  type=-155", "HY106"
            )
        return conv(raw)

    # ------------------------------------------------------------------ writes

    def _table(self, m: re.Match[str], g: int = 1) -> FakeTable:
        key = (m.group(g).replace("]]", "]"), m.group(g + 1).replace("]]", "]"))
        table = self.server.tables.get(key)
        if table is None:
            raise error(208, f"Invalid object name '{key[0]}.{key[1]}'.")
        return table

    def _log(self, table: FakeTable, op: str, before: Any, after: Any) -> None:
        if self.conn.begin_lsn is None:
            self.conn.begin_lsn = self.server.next_lsn()
        self.conn.pending.append(
            LoggedChange(
                (table.schema, table.name),
                op,
                self.server.next_lsn(),
                None if before is None else dict(before),
                None if after is None else dict(after),
            )
        )

    def _done(self) -> None:
        if self.conn.autocommit:
            self.conn.commit()


_CHANGES = re.compile(
    re.escape("SELECT TOP (?) __$start_lsn, __$seqval, __$operation, __$update_mask")
    + r"(?:, \[(?:[^\]]|\]\])+\])* FROM cdc\.\[((?:[^\]]|\]\])+)\]"
    + re.escape(
        "(?, ?, N'all update old') WHERE __$start_lsn > ? OR (__$start_lsn = ? AND "
        "(__$seqval > ? OR (__$seqval = ? AND __$operation > ?))) "
        "ORDER BY __$start_lsn, __$seqval, __$operation"
    )
)


# ---------------------------------------------------------------------- catalog answers


def _database(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    s = cur.server
    return [
        (
            s.database,
            int(s.cdc_enabled),
            s.snapshot_isolation,
            s.version,
            s.sysadmin,
            s.db_owner,
        )
    ]


def _tables(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    s = cur.server
    tracked = {i.table for i in s.instances.values()}
    return [(k[0], k[1], int(k in tracked)) for k in sorted(s.tables)]


def _columns(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    table = cur.server.tables.get((p[0], p[1]))
    if table is None:
        return []
    return [
        (c.name, c.type, c.max_length, c.precision, c.scale, int(c.nullable), int(c.computed))
        for c in table.columns
    ]


def _keys(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    table = cur.server.tables.get((p[0], p[1]))
    return [(1, 1, k) for k in table.pk] if table else []


def _instances(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            i.name,
            i.table[0],
            i.table[1],
            None if i.start_lsn is None else lsn_bytes(i.start_lsn),
            i.create_date,
        )
        for i in sorted(cur.server.instances.values(), key=lambda i: (i.table, i.create_date))
    ]


def _captured(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    inst = cur.server.instances.get(p[0])
    return [(c.name, n, c.type) for n, c in enumerate(inst.columns, 1)] if inst else []


def _index(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    inst = cur.server.instances.get(p[0])
    return [(k,) for k in inst.index] if inst else []


def _min_lsn(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    inst = cur.server.instances.get(p[0])
    lsn = inst.start_lsn if inst and inst.start_lsn is not None else 0
    return [(lsn_bytes(lsn),)]


def _max_lsn(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    m = cur.server.max_lsn
    return [(lsn_bytes(m) if m is not None else None,)]


def _lsn_time(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    lsn = int.from_bytes(p[0], "big")
    times = [t for a, _tran, t in cur.server.mapping if a <= lsn]
    return [(times[-1] if times else None,)]


def _log_end(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    n = cur.server.lsn
    return [(f"{n >> 48:08x}:{(n >> 16) & 0xFFFFFFFF:08x}:{n & 0xFFFF:04x}",)]


def _mapping(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    lo, hi = int.from_bytes(p[1], "big"), int.from_bytes(p[2], "big")
    return [(lsn_bytes(a), t, e) for a, t, e in cur.server.mapping if lo <= a <= hi][: p[0]]


def _offset(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    return [(cur.server.utc_offset,)]


def _jobs(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    s = cur.server
    if not s.cdc_enabled:
        return []
    return [("capture", None, int(s.capture_running)), ("cleanup", s.retention, 0)]


def _enable_db(cur: FakeCursor, p: list[Any]) -> None:
    cur.server.enable_db()


def _enable_table(cur: FakeCursor, p: list[Any]) -> None:
    cur.server.enable_table(p[0], p[1], p[3])


def _set_snapshot(cur: FakeCursor, p: list[Any]) -> None:
    cur.conn.isolation = "snapshot"


def _begin_snapshot(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    conn = cur.conn
    if conn.isolation == "snapshot" and not conn.autocommit:
        if not cur.server.snapshot_isolation:
            raise error(
                3952,
                "Snapshot isolation transaction failed accessing database "
                f"'{cur.server.database}' because snapshot isolation is not allowed in "
                "this database.",
                "HY000",
            )
        # the first data access of the transaction fixes what it sees
        conn.snapshot = {k: [dict(r) for r in t.rows] for k, t in cur.server.tables.items()}
    return [(len(cur.server.mapping),)]


def _estimate(cur: FakeCursor, p: list[Any]) -> list[tuple[Any, ...]]:
    table = cur.server.tables.get((p[0], p[1]))
    return [(len(table.rows) if table else None,)]


def _start_job(cur: FakeCursor, p: list[Any]) -> None:
    cur.server.capture_running = True


_EXACT: dict[str, Any] = {
    sql.DATABASE: _database,
    sql.TABLES: _tables,
    sql.COLUMNS: _columns,
    sql.KEYS: _keys,
    sql.INSTANCES: _instances,
    sql.CAPTURED_COLUMNS: _captured,
    sql.INDEX_COLUMNS: _index,
    sql.MIN_LSN: _min_lsn,
    sql.MAX_LSN: _max_lsn,
    sql.LOG_END: _log_end,
    sql.LSN_TIME: _lsn_time,
    sql.TIME_MAPPING: _mapping,
    sql.UTC_OFFSET: _offset,
    sql.CDC_JOBS: _jobs,
    sql.ENABLE_DB: _enable_db,
    sql.ENABLE_TABLE: _enable_table,
    sql.START_CAPTURE_JOB: _start_job,
    snap.SET_SNAPSHOT: _set_snapshot,
    snap.BEGIN_SNAPSHOT: _begin_snapshot,
    snap.ROW_ESTIMATE: _estimate,
}


def install(monkeypatch: Any, server: FakeServer) -> None:
    """Make every :class:`connectors.sqlserver.SqlServer` connect to ``server``."""
    from connectors.sqlserver import SqlServer

    def open_driver(self: SqlServer, *, autocommit: bool) -> FakeConnection:
        return FakeConnection(server, autocommit=autocommit)

    monkeypatch.setattr(SqlServer, "open_driver", open_driver)


def rows_of(values: Sequence[Any]) -> list[Any]:
    return list(values)
