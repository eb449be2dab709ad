"""The Oracle log reader: LogMiner sessions by SCN range, our own transaction assembly.

Each round mines one SCN window ``lo..hi``: the logs covering it for every redo thread are
added (:mod:`connectors.oracle.logfiles`: archived and online, a missing sequence stops
capture naming it), ``DBMS_LOGMNR.START_LOGMNR`` runs with ``DICT_FROM_ONLINE_CATALOG`` and
without ``COMMITTED_DATA_ONLY`` (which would make the database buffer whole transactions),
and ``V$LOGMNR_CONTENTS`` is read in the order LogMiner returns it, SCN order across threads.
Rows are turned into events here:

* continuation rows (``CSF = 1``) are joined to the statement they continue;
* row changes wait in a :class:`~connectors.oracle.txbuffer.TxBuffer` until their
  transaction's COMMIT row; compensating rows (``ROLLBACK = 1``) cancel what they undo, and a
  ROLLBACK row drops the transaction; big transactions spill to disk;
* at a COMMIT the transaction's SQL_REDO is parsed (:mod:`connectors.oracle.redo`) and it
  leaves whole, as ``Begin``/``RowEvent``.../``Commit``; commits sharing an SCN (RAC threads)
  leave in the order of their redo record, so positions strictly increase.

Positions (:mod:`connectors.oracle.positions`) carry the restart SCN, the first SCN of any
transaction still open: a resumed reader mines from there and drops every transaction whose
commit is at or before its start position.

Unsupported operations (``UNSUPPORTED``, XMLType, LOB erase, invalid SQL) on a captured table
stop capture when their transaction commits, naming the table, the operation and the SCN.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from connectors.base import TableFilter
from connectors.errors import ReplicationError, TrailError
from connectors.log import Begin, Commit, Heartbeat, LogEvent, RowEvent
from connectors.model import Change, Op, TableId, TableSchema
from connectors.oracle import current_position, redo
from connectors.oracle.assembly import Assembly
from connectors.oracle.descriptor import OracleOptions
from connectors.oracle.logfiles import logs_for_range
from connectors.oracle.positions import OraclePosition, parse_rs_id
from connectors.oracle.session import Session, SessionError, map_error
from connectors.oracle.txbuffer import Record, TxBuffer

if TYPE_CHECKING:
    from connectors.oracle import Oracle

__all__ = ["CONTENTS_SQL", "OPERATIONS", "LogMinerReader"]

log = logging.getLogger("redoline.capture.oracle")

#: V$LOGMNR_CONTENTS.OPERATION_CODE values (Oracle Database Reference)
OPERATIONS: Final = {
    0: "INTERNAL",
    1: "INSERT",
    2: "DELETE",
    3: "UPDATE",
    5: "DDL",
    6: "START",
    7: "COMMIT",
    9: "SEL_LOB_LOCATOR",
    10: "LOB_WRITE",
    11: "LOB_TRIM",
    25: "SELECT_FOR_UPDATE",
    28: "LOB_ERASE",
    34: "MISSING_SCN",
    36: "ROLLBACK",
    68: "XML DOC BEGIN",
    70: "XML DOC WRITE",
    71: "XML DOC END",
    255: "UNSUPPORTED",
}
_ROW_OPS: Final = frozenset({1, 2, 3})
_LOB_OPS: Final = frozenset({9, 10, 11})
_IGNORED: Final = frozenset({0, 6, 25})

CONTENTS_SQL: Final = (
    "SELECT SCN, TIMESTAMP, THREAD#, XIDUSN, XIDSLT, XIDSQN, OPERATION_CODE, ROLLBACK, CSF, "
    "RS_ID, SSN, ROW_ID, SEG_OWNER, TABLE_NAME, SQL_REDO, STATUS, INFO FROM V$LOGMNR_CONTENTS"
)


def _xid(usn: Any, slt: Any, sqn: Any) -> str:
    return f"{int(usn)}.{int(slt)}.{int(sqn)}"


@dataclass(slots=True)
class _Pending:
    """A committed transaction waiting for the end of its commit SCN."""

    key: tuple[int, ...]
    xid: str
    #: the SCN of its first change
    first: int
    records: Iterator[Record]
    when: dt.datetime | None


class LogMinerReader:
    """A :class:`connectors.log.LogReader` over LogMiner (module doc)."""

    def __init__(
        self,
        db: Oracle,
        start: str | None,
        *,
        tables: TableFilter,
        until_caught_up: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        options = dict(options or {})
        fields = {f.name for f in dataclasses.fields(OracleOptions)}
        self.options = OracleOptions(**{k: v for k, v in options.items() if k in fields})
        self.db = db
        self.tables = tables
        self.until_caught_up = until_caught_up
        self._stop = threading.Event()
        self._catalog: dict[TableId, TableSchema] = dict(options.get("catalog") or {})
        self._current: dict[TableId, TableSchema] = {}
        self.buffer = TxBuffer(self.options.spill_bytes)
        self._unknown_seen: set[str] = set()
        self.session: Session = db.session()
        try:
            self._prepare_session()
            begin = OraclePosition.parse(start) if start else current_position(self.session)
            self.target = current_position(self.session).scn if until_caught_up else None
            self._tz = self._server_tz()
        except SessionError as exc:
            self.session.close()
            raise map_error(exc, db.endpoint, "opening the log") from None
        except ValueError as exc:  # a position this engine did not write
            self.session.close()
            raise TrailError(
                f"cannot resume Oracle capture: {exc}",
                hint="the trail was written from another source; capture into a new trail",
            ) from None
        self.start = begin
        self._skip = begin.key
        self._next_scn = begin.restart

    def _prepare_session(self) -> None:
        for name, value in redo.NLS.items():
            self.session.execute(f"ALTER SESSION SET {name} = '{value}'")

    def _server_tz(self) -> dt.timezone:
        """V$LOGMNR_CONTENTS.TIMESTAMP is a DATE in the server's clock: its UTC offset."""
        ((hours, minutes),) = self.session.query(
            "SELECT EXTRACT(TIMEZONE_HOUR FROM SYSTIMESTAMP), "
            "EXTRACT(TIMEZONE_MINUTE FROM SYSTIMESTAMP) FROM DUAL"
        )
        return dt.timezone(dt.timedelta(hours=int(hours), minutes=int(minutes)))

    # ------------------------------------------------------------------ LogReader

    def events(self) -> Iterator[LogEvent]:
        try:
            yield from self._rounds()
        except SessionError as exc:
            raise map_error(exc, self.db.endpoint, "mining the redo") from None

    def confirm(self, position: str) -> None:
        return None  # the trail is the checkpoint; archived logs are the DBA's to keep

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.buffer.close()
        self.session.close()

    # ------------------------------------------------------------------ rounds

    def _rounds(self) -> Iterator[LogEvent]:
        while not self._stop.is_set():
            ((now,),) = self.session.query("SELECT CURRENT_SCN FROM V$DATABASE")
            end = int(now) if self.target is None else min(int(now), self.target)
            if self._next_scn > end:
                yield self._heartbeat(end)
                if self.target is not None and end >= self.target:
                    yield self._heartbeat(end, caught_up=True)
                    return
                self._stop.wait(self.options.poll_interval)
                continue
            hi = min(end, self._next_scn + self.options.mine_window - 1)
            yield from self._mine(self._next_scn, hi)
            if self._stop.is_set():
                return  # mid-window: the trail's last commit is where the next run resumes
            self._next_scn = hi + 1
            yield self._heartbeat(hi)
            if self.target is not None and hi >= self.target:
                yield self._heartbeat(hi, caught_up=True)
                return

    def _heartbeat(self, scn: int, caught_up: bool = False) -> Heartbeat:
        oldest = self.buffer.oldest_scn()
        restart = scn + 1 if oldest is None else min(oldest, scn + 1)
        return Heartbeat(str(OraclePosition(scn, restart)), caught_up=caught_up)

    def _mine(self, lo: int, hi: int) -> Iterator[LogEvent]:
        s = self.session
        logs = logs_for_range(s, lo, hi)
        for i, f in enumerate(logs):
            option = "NEW" if i == 0 else "ADDFILE"
            s.execute(
                "BEGIN DBMS_LOGMNR.ADD_LOGFILE(LOGFILENAME => :name, "
                f"OPTIONS => DBMS_LOGMNR.{option}); END;",
                {"name": f.name},
            )
        s.execute(
            "BEGIN DBMS_LOGMNR.START_LOGMNR(STARTSCN => :lo, ENDSCN => :hi, "
            "OPTIONS => DBMS_LOGMNR.DICT_FROM_ONLINE_CATALOG); END;",
            {"lo": lo, "hi": hi},
        )
        sql, params = self._contents_query()
        rows = s.stream(sql, params)
        try:
            yield from self._rows(rows)
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()  # the query's cursor first (a stop may leave rows unread)
            s.execute("BEGIN DBMS_LOGMNR.END_LOGMNR; END;")

    def _contents_query(self) -> tuple[str, dict[str, Any]]:
        owners = self.tables.schemas()
        if owners is None:
            return CONTENTS_SQL, {}
        names = {f"o{i}": o for i, o in enumerate(sorted(owners))}
        marks = ", ".join(f":{k}" for k in names)
        # UNKNOWN: a change of a table dropped since, which the online catalog cannot name
        where = f" WHERE (OPERATION_CODE IN (6, 7, 34, 36) OR SEG_OWNER IN ({marks}, 'UNKNOWN'))"
        return CONTENTS_SQL + where, names

    # ------------------------------------------------------------------ rows

    def _rows(self, rows: Iterator[tuple[Any, ...]]) -> Iterator[LogEvent]:
        pending: list[_Pending] = []  # commits at one SCN
        last_commit = 0
        piece: list[str] = []
        for row in rows:
            (scn, ts, thread, usn, slt, sqn, op, rollback, csf, rs_id, ssn, row_id, owner,
             table, sql, status, info) = row  # fmt: skip
            if csf:
                piece.append(sql or "")
                continue
            if piece:
                sql = "".join(piece) + (sql or "")
                piece = []
            scn, op = int(scn), int(op)
            if pending and scn > pending[0].key[0]:
                yield from self._flush(pending)
                pending = []
                if self._stop.is_set():
                    return  # after whole transactions only
            xid = _xid(usn, slt, sqn)
            if op == 7:
                if scn < last_commit:
                    raise ReplicationError(
                        f"V$LOGMNR_CONTENTS returned a COMMIT at SCN {scn} (thread {thread}) "
                        f"after one at SCN {last_commit}: its rows are not in SCN order, so "
                        "commit order cannot be trusted; capture stopped before writing "
                        "anything out of order",
                        hint="report this with the Oracle version and whether the database is "
                        "RAC (docs/capture-oracle.md, what a first live run must confirm)",
                    )
                last_commit = scn
                seq, blk, off = parse_rs_id(str(rs_id))
                key = (scn, 0, int(thread), seq, blk, off, int(ssn or 0))
                if key <= self._skip or xid not in self.buffer:
                    self.buffer.drop(xid)
                    continue
                when = ts.replace(tzinfo=self._tz) if isinstance(ts, dt.datetime) else None
                first = self.buffer.first_scn(xid)
                assert first is not None
                pending.append(_Pending(key, xid, first, self.buffer.pop(xid), when))
                continue
            if op == 36:
                self.buffer.drop(xid)
                continue
            if op == 34:
                raise ReplicationError(
                    f"LogMiner reports missing redo (MISSING_SCN) at SCN {scn}, thread {thread}",
                    hint="a redo log of the range is missing or incomplete: restore it and run "
                    "again, or take a new snapshot",
                )
            if op in _IGNORED or not owner or not table:
                continue
            if owner == "UNKNOWN" and op in _ROW_OPS | _LOB_OPS:
                self._unknown(scn, str(table), xid)
                continue
            if not self.tables(TableId(str(owner), str(table))):
                continue
            self.buffer.add(
                xid,
                Record(
                    scn,
                    op,
                    bool(rollback),
                    str(owner),
                    str(table),
                    str(row_id or ""),
                    sql or "",
                    str(rs_id),
                    int(ssn or 0),
                    int(status or 0),
                    str(info or ""),
                ),
            )
        if piece:
            raise ReplicationError(
                "a SQL_REDO continued (CSF = 1) past the end of the mined range",
                hint="report this: LogMiner should return a statement's pieces together",
            )
        yield from self._flush(pending)

    def _flush(self, pending: list[_Pending]) -> Iterator[LogEvent]:
        """Committed transactions sharing one SCN, in the order of their commit records.

        Each one's restart SCN also covers the ones emitted after it: a run stopped between
        two of them must mine the later one's changes again.
        """
        pending.sort(key=lambda p: p.key)
        oldest = self.buffer.oldest_scn()
        for i, p in enumerate(pending):
            starts = [p.key[0], *(q.first for q in pending[i + 1 :])]
            if oldest is not None:
                starts.append(oldest)
            t, seq, blk, off, ssn = p.key[2:]
            position = OraclePosition(p.key[0], min(starts), (t, seq, blk, off, ssn))
            yield from self._events(p.xid, p.records, position, p.when)
            if self._stop.is_set():
                return  # the rest are read again from this restart SCN by the next run

    def _unknown(self, scn: int, obj: str, xid: str) -> None:
        """A change LogMiner cannot name: its table was dropped before this redo was mined
        (the online catalog no longer knows it). It cannot be decoded; say so, once per
        object, rather than drop it without a word."""
        if obj in self._unknown_seen:
            return
        self._unknown_seen.add(obj)
        log.warning(
            "capture: a change at SCN %d (transaction %s) is to %s, a table dropped since; "
            "LogMiner's online catalog cannot name or decode it. If that was a captured "
            "table, its last changes before the drop are not in the trail (the drop is)",
            scn,
            xid,
            obj,
        )

    # ------------------------------------------------------------------ commit

    def _events(
        self,
        xid: str,
        records: Iterator[Record],
        position: OraclePosition,
        when: dt.datetime | None,
    ) -> Iterator[LogEvent]:
        yield Begin(xid)
        for change in Assembly(self, position.scn).build(records):
            yield RowEvent(xid, change)
        yield Commit(xid, str(position), when or dt.datetime.now(dt.UTC))

    def schema_of(self, owner: str, table: str) -> TableSchema:
        tid = TableId(owner, table)
        schema = self._current.get(tid)
        if schema is None:
            schema = self._current[tid] = self.db.table_schema(tid)
        return schema

    def announce(self, tid: TableId) -> tuple[TableSchema, Change | None]:
        """The definition to decode ``tid``'s rows with, and the announcement the trail needs
        when it does not hold that definition yet."""
        current = self.schema_of(tid.schema, tid.name)
        known = self._catalog.get(tid)
        if known is not None and dataclasses.replace(known, version=1) == dataclasses.replace(
            current, version=1
        ):
            return known, None
        version = known.version + 1 if known is not None else 1
        schema = dataclasses.replace(current, version=version)
        self._catalog[tid] = schema
        return schema, Change(Op.DDL, tid, version, table_schema=schema)

    def drop(self, tid: TableId) -> TableSchema | None:
        """``tid`` no longer exists: forget it; the definition the trail held, if any."""
        self._current.pop(tid, None)
        return self._catalog.pop(tid, None)

    def forget(self, tid: TableId) -> None:
        """A DDL row: the table's definition is read again before its next row."""
        self._current.pop(tid, None)
