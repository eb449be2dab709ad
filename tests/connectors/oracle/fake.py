"""A scripted Oracle at the connector's session interface, following the documented views.

:class:`FakeOracle` is a database that sessions write to (:class:`Txn`: insert, update,
delete, savepoint, commit, rollback), generating redo the way Oracle documents it: per redo
thread a series of log files (sequence numbers, FIRST_CHANGE#/NEXT_CHANGE#, archived on a
switch), and in them the records LogMiner shows in V$LOGMNR_CONTENTS without
COMMITTED_DATA_ONLY: a START row, row changes with SQL_REDO in LogMiner's format, a COMMIT row;
a rollback shows the undone changes again as compensating rows (ROLLBACK = 1, newest first)
and then a ROLLBACK row; SQL_REDO longer than 4000 bytes continues in rows with CSF = 1;
COMMIT_SCN and START_SCN stay NULL (only COMMITTED_DATA_ONLY fills them); RS_ID is
``0xSEQUENCE.BLOCK.OFFSET``. Rows of several threads come back merged by SCN.

:class:`FakeSession` answers the SQL the connector sends (recognised by its text) from that
state, and records every statement in ``FakeOracle.statements``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.model import TableId
from connectors.oracle.session import SessionError

#: (name, DATA_TYPE, DATA_LENGTH, CHAR_LENGTH, DATA_PRECISION, DATA_SCALE, NULLABLE)
ColumnDef = tuple[str, str, int | None, int | None, int | None, int | None, str]


@dataclass
class Table:
    owner: str
    name: str
    columns: list[ColumnDef]
    pk: list[str]
    log_groups: set[str] = field(default_factory=set)
    obj: int = 0
    #: committed history: (commit scn, rowid, values or None)
    history: list[tuple[int, str, dict[str, Any] | None]] = field(default_factory=list)

    def types(self) -> dict[str, str]:
        return {c[0]: c[1] for c in self.columns}

    def rows_as_of(self, scn: int) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for at, rid, values in self.history:
            if at > scn:
                break
            if values is None:
                rows.pop(rid, None)
            else:
                rows[rid] = values
        return rows


@dataclass
class LogFile:
    thread: int
    sequence: int
    first_scn: int
    next_scn: int | None = None  # None: CURRENT
    records: list[dict[str, Any]] = field(default_factory=list)
    archived: bool = False
    #: deleted through RMAN: V$ARCHIVED_LOG says so (DELETED = 'YES')
    deleted: bool = False
    #: removed from disk behind the database's back: listed as available, cannot be opened
    lost: bool = False
    group: int = 0

    @property
    def archived_name(self) -> str:
        return f"/arch/thread_{self.thread}_seq_{self.sequence}.arc"

    @property
    def online_name(self) -> str:
        return f"/redo/redo{self.group:02d}.log"


def literal(value: Any, data_type: str, in_where: bool = False) -> str:
    """A value in LogMiner's SQL_REDO spelling (session NLS formats as the reader sets)."""
    if value is None:
        return "NULL"
    t = data_type.upper()
    if t == "DATE":
        return f"TO_DATE('{value:%Y-%m-%d %H:%M:%S}', 'YYYY-MM-DD HH24:MI:SS')"
    if t.startswith("TIMESTAMP") and "TIME ZONE" in t:
        off = value.strftime("%z")
        return (
            f"TO_TIMESTAMP_TZ('{value:%Y-%m-%d %H:%M:%S.%f} {off[:3]}:{off[3:]}', "
            "'YYYY-MM-DD HH24:MI:SS.FF TZH:TZM')"
        )
    if t.startswith("TIMESTAMP"):
        return f"TO_TIMESTAMP('{value:%Y-%m-%d %H:%M:%S.%f}', 'YYYY-MM-DD HH24:MI:SS.FF')"
    if t in ("RAW", "BLOB"):
        return f"HEXTORAW('{bytes(value).hex()}')"
    if t in ("BINARY_FLOAT", "BINARY_DOUBLE"):
        if value != value:
            return "'Nan'"
        if value in (float("inf"), float("-inf")):
            return "'Inf'" if value > 0 else "'-Inf'"
        return f"{value:.15E}".replace("E+0", "E+0")
    if t == "NUMBER":
        text = format(decimal.Decimal(str(value)), "f")
        return f"'{text}'" if in_where else text
    text = str(value)
    if t in ("NVARCHAR2", "NCHAR", "NCLOB") and not text.isascii():
        units = text.encode("utf-16-be")
        esc = "".join(
            "\\" + units[i : i + 2].hex().upper()
            if units[i] or units[i + 1] > 0x7E
            else chr(units[i + 1]).replace("\\", "\\\\").replace("'", "''")
            for i in range(0, len(units), 2)
        )
        return f"UNISTR('{esc}')"
    return "'" + text.replace("'", "''") + "'"


class FakeOracle:
    """The database (module doc)."""

    def __init__(self, *, threads: int = 1, scn: int = 10_000) -> None:
        self.scn = scn
        self.tables: dict[TableId, Table] = {}
        self.logs: list[LogFile] = []
        self._groups = itertools.count(1)
        for t in range(1, threads + 1):
            self.logs.append(LogFile(t, 1, scn, group=next(self._groups)))
        self.log_mode = "ARCHIVELOG"
        self.sup = {"MIN": "YES", "PK": "NO", "ALL": "NO"}
        self.privs = {"LOGMINING", "SELECT ANY TRANSACTION", "CREATE SESSION"}
        self.denied_views: set[str] = set()
        self.dbms_logmnr = True
        self.open: dict[str, int] = {}  # xid -> first change scn
        self.statements: list[str] = []
        self.usn = itertools.count(1)
        self.rowids = itertools.count(1)
        self.tz = dt.timezone(dt.timedelta(hours=2))
        self.may_alter = True
        #: V$LOGMNR_CONTENTS merges the threads by SCN (False: what a first live run rules out)
        self.merge_threads = True
        #: the connection drops after this many V$LOGMNR_CONTENTS rows (once)
        self.drop_connection_after: int | None = None
        self.sessions = 0

    # ------------------------------------------------------------------ DDL / setup

    def create(self, owner: str, name: str, columns: list[ColumnDef], pk: list[str]) -> Table:
        table = Table(owner, name, columns, pk, obj=len(self.tables) + 70000)
        self.tables[TableId(owner, name)] = table
        return table

    def next_scn(self) -> int:
        self.scn += 1
        return self.scn

    def current(self, thread: int) -> LogFile:
        return next(f for f in self.logs if f.thread == thread and f.next_scn is None)

    def switch(self, thread: int = 1) -> LogFile:
        """ALTER SYSTEM SWITCH LOGFILE on ``thread``: the current log is archived."""
        cur = self.current(thread)
        cur.next_scn = self.next_scn()
        cur.archived = True
        new = LogFile(thread, cur.sequence + 1, cur.next_scn, group=next(self._groups))
        self.logs.append(new)
        return new

    def write(self, thread: int, rec: dict[str, Any]) -> None:
        log = self.current(thread)
        sql = rec.get("SQL_REDO") or ""
        pieces = [sql[i : i + 4000] for i in range(0, len(sql), 4000)] or [sql]
        block = len(log.records) + 2
        for ssn_piece, piece in enumerate(pieces):
            row = dict(rec)
            row.update(
                THREAD=thread,
                RS_ID=f" 0x{log.sequence:06x}.{block:08x}.0010 ",
                SSN=0,
                SQL_REDO=piece,
                CSF=1 if ssn_piece < len(pieces) - 1 else 0,
                COMMIT_SCN=None,
                START_SCN=None,
            )
            log.records.append(row)

    # ------------------------------------------------------------------ sessions

    def session(self, endpoint: Any = None) -> FakeSession:
        self.sessions += 1
        return FakeSession(self)

    def txn(self, thread: int = 1) -> Txn:
        return Txn(self, thread)


@dataclass
class _Change:
    table: Table
    op: int
    rowid: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


class Txn:
    """One transaction of a user session on ``thread``."""

    def __init__(self, db: FakeOracle, thread: int) -> None:
        self.db = db
        self.thread = thread
        self.usn, self.slt, self.sqn = next(db.usn), 3, 77
        self.xid = f"{self.usn}.{self.slt}.{self.sqn}"
        self.changes: list[_Change] = []
        self.started = False
        self.savepoints: dict[str, int] = {}

    def _rec(self, op: int, **kw: Any) -> None:
        scn = self.db.next_scn()
        if not self.started and op not in (7, 36):
            self.started = True
            self.db.open[self.xid] = scn
            self._emit(6, scn, SQL_REDO="set transaction read write;")
            scn = self.db.next_scn()
        self._emit(op, scn, **kw)

    def _emit(self, op: int, scn: int, **kw: Any) -> None:
        rec = {
            "SCN": scn,
            "TIMESTAMP": dt.datetime(2026, 1, 2, 3, 4, 5) + dt.timedelta(seconds=scn % 1000),
            "XIDUSN": self.usn,
            "XIDSLT": self.slt,
            "XIDSQN": self.sqn,
            "OPERATION_CODE": op,
            "ROLLBACK": 0,
            "ROW_ID": "AAAAAAAAAAAAAAAAAA",
            "SEG_OWNER": None,
            "TABLE_NAME": None,
            "STATUS": 0,
            "INFO": None,
        }
        rec.update(kw)
        self.db.write(self.thread, rec)

    def _redo(self, ch: _Change, rollback: bool = False) -> None:
        t = ch.table
        types = t.types()
        q = lambda c: '"' + c + '"'  # noqa: E731
        name = f'"{t.owner}"."{t.name}"'
        op = ch.op
        old, new = ch.old, ch.new
        if rollback:  # the compensating change
            op, old, new = {1: 2, 2: 1, 3: 3}[op], new, old
        if op == 1:
            assert new is not None
            cols = ",".join(q(c) for c in new)
            vals = ",".join(literal(v, types[c]) for c, v in new.items())
            sql = f"insert into {name}({cols}) values ({vals});"
        else:
            assert old is not None
            logged = self._logged(t, old, new)
            conds = " and ".join(
                f"{q(c)} IS NULL"
                if old[c] is None
                else f"{q(c)} = {literal(old[c], types[c], True)}"
                for c in logged
            )
            where = (conds + " and " if conds else "") + f"ROWID = '{ch.rowid}'"
            if op == 2:
                sql = f"delete from {name} where {where};"
            else:
                assert new is not None
                sets = ", ".join(
                    f"{q(c)} = {literal(v, types[c])}" for c, v in new.items() if old.get(c) != v
                )
                sql = f"update {name} set {sets} where {where};"
        self._rec(
            op,
            SQL_REDO=sql,
            ROLLBACK=int(rollback),
            ROW_ID=ch.rowid,
            OBJ=t.obj,
            SEG_OWNER=t.owner,
            TABLE_NAME=t.name,
        )

    def _logged(self, t: Table, old: dict[str, Any], new: dict[str, Any] | None) -> list[str]:
        """The old values an update/delete's redo carries: a delete's undo holds the whole
        row; an update's the changed columns, plus the supplemental log group's columns."""
        if new is None:
            return list(old)
        changed = [c for c in old if new.get(c, old[c]) != old[c]]
        extra: list[str] = []
        if "ALL COLUMN LOGGING" in t.log_groups or self.db.sup["ALL"] == "YES":
            extra = list(old)
        elif "PRIMARY KEY LOGGING" in t.log_groups or self.db.sup["PK"] == "YES":
            extra = list(t.pk)
        return [c for c in old if c in changed or c in extra]

    # ------------------------------------------------------------------ DML

    def _table(self, owner: str, name: str) -> Table:
        return self.db.tables[TableId(owner, name)]

    def _live(self, t: Table) -> dict[str, dict[str, Any]]:
        rows = t.rows_as_of(self.db.scn)
        for ch in self.changes:
            if ch.table is t:
                if ch.new is None:
                    rows.pop(ch.rowid, None)
                else:
                    rows[ch.rowid] = ch.new
        return rows

    def insert(self, owner: str, name: str, values: Mapping[str, Any]) -> str:
        t = self._table(owner, name)
        row = {c[0]: values.get(c[0]) for c in t.columns}
        rid = f"AAAR{t.obj:05d}AAEAAA{next(self.db.rowids):04d}"
        ch = _Change(t, 1, rid, None, row)
        self.changes.append(ch)
        self._redo(ch)
        return rid

    def _find(self, t: Table, where: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        return [
            (rid, row)
            for rid, row in self._live(t).items()
            if all(row.get(c) == v for c, v in where.items())
        ]

    def update(self, owner: str, name: str, where: Mapping[str, Any], **sets: Any) -> None:
        t = self._table(owner, name)
        for rid, row in self._find(t, where):
            ch = _Change(t, 3, rid, dict(row), {**row, **sets})
            self.changes.append(ch)
            self._redo(ch)

    def delete(self, owner: str, name: str, where: Mapping[str, Any]) -> None:
        t = self._table(owner, name)
        for rid, row in self._find(t, where):
            ch = _Change(t, 2, rid, dict(row), None)
            self.changes.append(ch)
            self._redo(ch)

    def update_row(self, owner: str, name: str, rowid: str, **sets: Any) -> None:
        """UPDATE ... WHERE ROWID = ``rowid`` (one of several identical rows)."""
        t = self._table(owner, name)
        row = self._live(t)[rowid]
        ch = _Change(t, 3, rowid, dict(row), {**row, **sets})
        self.changes.append(ch)
        self._redo(ch)

    def delete_row(self, owner: str, name: str, rowid: str) -> None:
        """DELETE ... WHERE ROWID = ``rowid``."""
        t = self._table(owner, name)
        ch = _Change(t, 2, rowid, dict(self._live(t)[rowid]), None)
        self.changes.append(ch)
        self._redo(ch)

    def savepoint(self, name: str) -> None:
        self.savepoints[name] = len(self.changes)

    def rollback_to(self, name: str) -> None:
        keep = self.savepoints[name]
        for ch in reversed(self.changes[keep:]):
            self._redo(ch, rollback=True)
        del self.changes[keep:]

    def commit(self, scn: int | None = None) -> int:
        """Commit; ``scn`` forces the commit SCN (two RAC instances may commit at one SCN)."""
        scn = self.db.next_scn() if scn is None else scn
        if self.started:
            self._emit(7, scn, SQL_REDO="commit;")
        for ch in self.changes:
            ch.table.history.append((scn, ch.rowid, ch.new))
        self.db.open.pop(self.xid, None)
        return scn

    def rollback(self) -> None:
        for ch in reversed(self.changes):
            self._redo(ch, rollback=True)
        self.changes = []
        if self.started:
            self._emit(36, self.db.next_scn(), SQL_REDO="rollback;")
        self.db.open.pop(self.xid, None)


# --------------------------------------------------------------------------- the session

_CONTENTS_COLUMNS = [
    "SCN",
    "TIMESTAMP",
    "THREAD",
    "XIDUSN",
    "XIDSLT",
    "XIDSQN",
    "OPERATION_CODE",
    "ROLLBACK",
    "CSF",
    "RS_ID",
    "SSN",
    "ROW_ID",
    "SEG_OWNER",
    "TABLE_NAME",
    "SQL_REDO",
    "STATUS",
    "INFO",
]


class FakeSession:
    """Answers the connector's SQL from the :class:`FakeOracle` state."""

    def __init__(self, db: FakeOracle) -> None:
        self.db = db
        self.added: list[str] = []
        self.mining: tuple[int, int] | None = None
        self.nls: dict[str, str] = {}
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def commit(self) -> None:
        return None

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.db.statements.append(sql)
        p = dict(params or {})
        m = re.match(r"ALTER SESSION SET (\w+) = '(.*)'$", sql)
        if m:
            self.nls[m.group(1)] = m.group(2)
            return
        if "DBMS_LOGMNR.ADD_LOGFILE" in sql:
            self._add_logfile(p["name"], new="DBMS_LOGMNR.NEW" in sql)
            return
        if "DBMS_LOGMNR.START_LOGMNR" in sql:
            if not self.added:
                raise SessionError(
                    "ORA-01292", "no log file has been specified for the current LogMiner session"
                )
            assert "COMMITTED_DATA_ONLY" not in sql
            self.mining = (int(p["lo"]), int(p["hi"]))
            self._check_coverage(*self.mining)
            return
        if "DBMS_LOGMNR.END_LOGMNR" in sql:
            self.mining, self.added = None, []
            return
        m = re.match(r'ALTER TABLE "(.+)"\."(.+)" ADD SUPPLEMENTAL LOG DATA \((.+)\) COLUMNS$', sql)
        if m:
            t = self.db.tables[TableId(m.group(1), m.group(2))]
            t.log_groups.add(
                "PRIMARY KEY LOGGING" if m.group(3) == "PRIMARY KEY" else "ALL COLUMN LOGGING"
            )
            return
        if sql == "ALTER DATABASE ADD SUPPLEMENTAL LOG DATA":
            if not self.db.may_alter:
                raise SessionError("ORA-01031", "insufficient privileges")
            self.db.sup["MIN"] = "YES"
            return
        raise AssertionError(f"the fake does not know the statement {sql!r}")

    def _check_coverage(self, lo: int, hi: int) -> None:
        """LogMiner refuses a log set with a hole in a thread's sequence over the range
        (ORA-01291: missing logfile)."""
        added = [f for f in self.db.logs if {f.archived_name, f.online_name} & set(self.added)]
        for thread in sorted({f.thread for f in self.db.logs}):
            mine = sorted((f for f in added if f.thread == thread), key=lambda f: f.sequence)
            first_ever = min(f.first_scn for f in self.db.logs if f.thread == thread)
            needed = first_ever <= hi
            if not mine:
                if needed:
                    raise SessionError("ORA-01291", f"missing logfile for thread {thread}")
                continue
            ok = mine[0].first_scn <= max(lo, first_ever)
            ok = ok and all(b.sequence == a.sequence + 1 for a, b in itertools.pairwise(mine))
            ok = ok and (mine[-1].next_scn is None or mine[-1].next_scn > hi)
            if not ok:
                raise SessionError("ORA-01291", f"missing logfile for thread {thread}")

    def _add_logfile(self, name: str, new: bool) -> None:
        for f in self.db.logs:
            if name == f.archived_name and f.archived and not f.deleted and not f.lost:
                break
            if name == f.online_name and not f.archived:
                break
        else:
            raise SessionError("ORA-01284", f"file {name} cannot be opened")
        if new:
            self.added = []
        self.added.append(name)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return list(self.stream(sql, params))

    def stream(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[tuple[Any, ...]]:
        self.db.statements.append(sql)
        p = dict(params or {})
        for view in self.db.denied_views:
            if f"FROM {view} " in sql + " ":
                raise SessionError("ORA-00942", "table or view does not exist")
        rows = self._answer(sql, p)
        cut = self.db.drop_connection_after
        if cut is not None and "FROM V$LOGMNR_CONTENTS" in sql and len(rows) > cut:
            self.db.drop_connection_after = None
            return self._cut(rows, cut)
        return iter(rows)

    @staticmethod
    def _cut(rows: list[tuple[Any, ...]], n: int) -> Iterator[tuple[Any, ...]]:
        yield from rows[:n]
        raise SessionError("ORA-03113", "end-of-file on communication channel")

    def _answer(self, sql: str, p: dict[str, Any]) -> list[tuple[Any, ...]]:
        db = self.db
        if "FROM V$LOGMNR_CONTENTS" in sql:
            return self._contents(sql, p)
        if sql.startswith("SELECT COUNT(*) FROM V$") and "ROWNUM = 1" in sql:
            return [(1,)]
        if sql == "SELECT CURRENT_SCN FROM V$DATABASE":
            return [(db.scn,)]
        if sql == "SELECT MIN(START_SCN) FROM V$TRANSACTION":
            return [(min(db.open.values(), default=None),)]
        if "SUPPLEMENTAL_LOG_DATA_ALL FROM V$DATABASE" in sql and "LOG_MODE" in sql:
            return [(db.log_mode, db.sup["MIN"], db.sup["PK"], db.sup["ALL"])]
        if sql.startswith("SELECT SUPPLEMENTAL_LOG_DATA_MIN"):
            return [(db.sup["MIN"], db.sup["PK"], db.sup["ALL"])]
        if sql == "SELECT SUPPLEMENTAL_LOG_DATA_ALL FROM V$DATABASE":
            return [(db.sup["ALL"],)]
        if "TIMEZONE_HOUR FROM SYSTIMESTAMP" in sql:
            off = db.tz.utcoffset(None)
            return [(int(off.total_seconds()) // 3600, int(off.total_seconds()) % 3600 // 60)]
        if sql == "SELECT PRIVILEGE FROM SESSION_PRIVS":
            return [(x,) for x in sorted(db.privs)]
        if sql == "SELECT ROLE FROM SESSION_ROLES":
            return []
        if "OBJECT_NAME = 'DBMS_LOGMNR'" in sql:
            return [(1,)] if db.dbms_logmnr else []
        if "FROM ALL_LOG_GROUPS" in sql:
            return [
                (t.name, g)
                for t in db.tables.values()
                if t.owner == p["owner"]
                for g in sorted(t.log_groups)
            ]
        if "FROM ALL_TAB_COLS" in sql:
            t = db.tables.get(TableId(p["owner"], p["name"]))
            if t is None:
                return []
            return [(n, ty, dl, cl, pr, sc, nl, "NO") for n, ty, dl, cl, pr, sc, nl in t.columns]
        if "FROM ALL_CONSTRAINTS" in sql:
            t = db.tables.get(TableId(p["owner"], p["name"]))
            return [] if t is None else [(f"PK_{t.name}", "P", c) for c in t.pk]
        if "FROM ALL_TABLES t JOIN ALL_USERS" in sql:
            return sorted((t.owner, t.name) for t in db.tables.values())
        if "SELECT NUM_ROWS FROM ALL_TABLES" in sql:
            t = db.tables[TableId(p["owner"], p["name"])]
            return [(len(t.rows_as_of(db.scn)),)]
        if "FROM V$ARCHIVED_LOG" in sql:
            return [
                (f.archived_name, f.thread, f.sequence, f.first_scn, f.next_scn)
                for f in sorted(db.logs, key=lambda f: (f.thread, f.sequence))
                if f.archived
                and not f.deleted
                and f.next_scn is not None
                and f.next_scn > p["lo"]
                and f.first_scn <= p["hi"]
            ]
        if "FROM V$LOG l JOIN V$LOGFILE" in sql:
            online = [f for f in db.logs if not f.archived]  # groups not yet reused
            return [
                (
                    f.online_name,
                    f.thread,
                    f.sequence,
                    f.first_scn,
                    f.next_scn if f.next_scn is not None else 281474976710655,
                    "CURRENT" if f.next_scn is None else "ACTIVE",
                )
                for f in sorted(online, key=lambda f: (f.thread, f.sequence))
                if (f.next_scn is None or f.next_scn > p["lo"]) and f.first_scn <= p["hi"]
            ]
        if "FROM V$THREAD" in sql:
            return sorted({(f.thread, 0) for f in db.logs})
        if " AS OF SCN :scn" in sql or re.fullmatch(r'SELECT .+ FROM "[^"]+"\."[^"]+"', sql):
            return self._flashback(sql, p)
        raise AssertionError(f"the fake does not know the query {sql!r}")

    def _contents(self, sql: str, p: dict[str, Any]) -> list[tuple[Any, ...]]:
        if self.mining is None:
            raise SessionError(
                "ORA-01306",
                "dbms_logmnr.start_logmnr() must be invoked before "
                "selecting from v$logmnr_contents",
            )
        lo, hi = self.mining
        files = [
            f for f in self.db.logs if f.archived_name in self.added or f.online_name in self.added
        ]
        owners = {v for k, v in p.items() if k.startswith("o")}
        if "'UNKNOWN'" in sql:
            owners.add("UNKNOWN")
        rows = []
        for f in files:
            for raw in f.records:
                if not lo <= raw["SCN"] <= hi:
                    continue
                rec = self._rendered(raw)  # the filter sees what the view shows
                if (
                    owners
                    and rec["OPERATION_CODE"] not in (6, 7, 34, 36)
                    and (rec["SEG_OWNER"] not in owners)
                ):
                    continue
                rows.append(rec)
        # merged by SCN; within one SCN the higher thread first (LogMiner promises no order)
        if self.db.merge_threads:
            rows.sort(key=lambda r: (r["SCN"], -r["THREAD"]))
        else:  # a LogMiner that would not merge RAC threads: one thread after the other
            rows.sort(key=lambda r: (r["THREAD"], r["SCN"]))
        return [tuple(r[c] for c in _CONTENTS_COLUMNS) for r in rows]

    def _rendered(self, rec: dict[str, Any]) -> dict[str, Any]:
        """DICT_FROM_ONLINE_CATALOG renders redo with today's dictionary: a row change of a
        table dropped since shows as ``"UNKNOWN"."OBJ# n"`` with hex column values (Oracle
        Database Utilities: LogMiner without a dictionary for the object)."""
        owner, name = rec["SEG_OWNER"], rec["TABLE_NAME"]
        if owner is None or rec["OPERATION_CODE"] == 5 or TableId(owner, name) in self.db.tables:
            return rec
        obj = f"OBJ# {rec.get('OBJ', 0)}"
        return {
            **rec,
            "SEG_OWNER": "UNKNOWN",
            "TABLE_NAME": obj,
            "SQL_REDO": f'insert into "UNKNOWN"."{obj}"("COL 1") values (HEXTORAW(\'6e\'));',
            "STATUS": 2,
            "INFO": "Dictionary Version Mismatch",
        }

    def _flashback(self, sql: str, p: dict[str, Any]) -> list[tuple[Any, ...]]:
        m = re.match(
            r'SELECT (.+) FROM "([^"]+)"\."([^"]+)"(?: AS OF SCN :scn)?(?: WHERE (.+))?$', sql
        )
        assert m, sql
        t = self.db.tables.get(TableId(m.group(2), m.group(3)))
        if t is None:
            raise SessionError("ORA-00942", "table or view does not exist")
        # without AS OF: the committed state now (a statement-consistent read)
        now = t.rows_as_of(int(p.get("scn", self.db.scn)))
        rows = [{**r, "ROWIDTOCHAR(ROWID)": rid} for rid, r in now.items()]
        cond = m.group(4) or ""
        for op, bind in ((">=", "lo"), ("<", "hi")):
            cm = re.search(rf'"(\w+)" {op} :{bind}', cond)
            if cm:
                col = cm.group(1)
                rows = [r for r in rows if (r[col] >= p[bind] if op == ">=" else r[col] < p[bind])]
        agg = re.match(r'MIN\("(\w+)"\), MAX\("\w+"\), COUNT\(\*\)', m.group(1))
        if agg:
            keys = [r[agg.group(1)] for r in rows]
            return [(min(keys, default=None), max(keys, default=None), len(keys))]
        out = []
        for r in rows:
            values = []
            for item in m.group(1).split(", "):
                fn = re.match(r'SYS_EXTRACT_UTC\("(.+)"\)$', item)
                if fn:
                    v = r[fn.group(1)]
                    values.append(None if v is None else v.astimezone(dt.UTC).replace(tzinfo=None))
                else:
                    v = r[item if item == "ROWIDTOCHAR(ROWID)" else item.strip('"')]
                    # python-oracledb returns a TIMESTAMP WITH TIME ZONE without its zone
                    values.append(v.replace(tzinfo=None) if isinstance(v, dt.datetime) else v)
            out.append(tuple(values))
        return out


__all__ = ["FakeOracle", "FakeSession", "Table", "Txn", "literal"]
