"""MySQL/MariaDB consistent snapshot: N readers on one point of the binlog, rows as text.

Getting every worker onto the same point (DESIGN.md: Snapshot and catch-up):

* **MariaDB, no lock.** ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` on each worker
  connection, then ``SHOW STATUS LIKE 'binlog_snapshot_%'`` inside each transaction: MariaDB
  reports the exact binlog file/offset matching that InnoDB snapshot, with no global lock. If
  every worker reports the same offset (no commit slipped in between the ``START``\\s, the
  usual case), that is the point. We retry a few times before falling back.
* **Fallback (and MySQL).** ``FLUSH TABLES WITH READ LOCK`` on one connection, the N
  consistent-snapshot transactions, the binlog position, ``UNLOCK TABLES``. Writers are
  blocked only for that instant; :attr:`SnapshotPoint.lock_seconds` says how long.

The GTID state of the point comes from ``BINLOG_GTID_POS(file, pos)`` (MariaDB) or the
executed GTID set read under the lock (MySQL); the position string has the same form as
capture's (``connectors/mysql/positions.py``), so catch-up compares them directly.

Reading is cheap on purpose: the server formats each row as one line of text in the target's
bulk format (``connectors/snapshot.py``: FORMATS) and, for integer keys, concatenates a few
thousand lines per result row with ``GROUP_CONCAT``. The client then decodes one value per
few thousand rows instead of ten Python objects per row — the read side is the wall.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

import pymysql
import pymysql.converters
import pymysql.cursors

from connectors.errors import PrerequisiteError, ToolkitError
from connectors.model import Column, TableId, TableSchema
from connectors.mysql.positions import BinlogPosition, compare
from connectors.snapshot import (
    FORMATS,
    KeyRange,
    SnapshotConnections,
    SnapshotPoint,
    chunks_between,
    even_chunks,
)

if TYPE_CHECKING:
    from connectors.mysql import MySQL

__all__ = ["MySQLSnapshot", "column_expression", "open_snapshot"]

log = logging.getLogger("redoline.snapshot")

_BS: Final = "CHAR(92 USING utf8mb4)"
_NULL_TEXT: Final = f"CONCAT({_BS}, 'N')"
#: target bytes per GROUP_CONCAT result row (well under the 16 MB default max_allowed_packet)
_GROUP_BYTES: Final = 1_000_000
_LOCK_FREE_TRIES: Final = 5
#: pymysql's parameter encoders without its result decoders
_ENCODERS: Final = dict(pymysql.converters.encoders)
_STRINGISH: Final = frozenset({"str", "enum", "set", "json", "uuid", "other", "interval"})
#: column charsets whose text needs no conversion (None: not a character column)
_UTF8MB4: Final = frozenset({None, "utf8mb4", "binary"})


def _escape_copy(expr: str) -> str:
    """COPY/LOAD DATA text escaping: backslash, tab, newline, carriage return."""
    for code, letter in ((92, None), (9, "t"), (10, "n"), (13, "r")):
        repl = f"CONCAT({_BS}, {_BS})" if letter is None else f"CONCAT({_BS}, '{letter}')"
        expr = f"REPLACE({expr}, CHAR({code} USING utf8mb4), {repl})"
    return expr


def column_expression(col: Column, fmt: str, quote: Any) -> str:
    """The MySQL SQL expression giving ``col``'s text in ``fmt`` (never NULL)."""
    ref = quote(col.name)
    kind = col.kind
    if kind == "bytes":
        text = f"CONCAT({_BS}, {_BS}, 'x', HEX({ref}))" if fmt == "pgcopy" else f"HEX({ref})"
        if fmt == "csv":
            text = f"CONCAT('\"', {text}, '\"')"  # quoted: an empty value is not NULL
    elif kind == "bit":
        text = f"LPAD(BIN({ref} + 0), {col.bits or 1}, '0')"
    elif kind == "timestamptz":
        # reader sessions run with time_zone '+00:00': the text is UTC
        text = ref if fmt == "tsv" else f"CONCAT({ref}, '+00')"
    elif kind == "float":
        # FLOAT prints with 6 significant digits (2.33333 for 2.3333332538...); as a double
        # it prints enough digits to round back to the same single-precision value
        text = f"CONCAT(CAST({ref} AS DOUBLE))"
    elif kind in _STRINGISH:
        if col.charset not in _UTF8MB4:
            # a latin1/utf8mb3/... column mixed with the utf8mb4 separators and escapes is
            # "Illegal mix of collations": convert it first (the bulk text is utf8mb4 anyway)
            ref = f"CONVERT({ref} USING utf8mb4)"
        if fmt == "csv":
            text = f"CONCAT('\"', REPLACE({ref}, '\"', '\"\"'), '\"')"
        else:
            text = _escape_copy(ref)
    else:
        # numbers, dates, times: their text never holds a separator, quote or backslash
        text = f"CONCAT({ref})"
    return f"IFNULL({text}, '')" if fmt == "csv" else f"IFNULL({text}, {_NULL_TEXT})"


def _line_expression(schema: TableSchema, fmt: str, columns: tuple[str, ...], quote: Any) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown snapshot format {fmt!r}")
    sep = "','" if fmt == "csv" else "CHAR(9 USING utf8mb4)"
    parts = [column_expression(schema.column(c), fmt, quote) for c in columns]
    return f"CONCAT_WS({sep}, {', '.join(parts)})"


class MySQLSnapshot(SnapshotConnections):
    """``workers`` connections in consistent-snapshot transactions on one binlog point."""

    def __init__(self, db: MySQL, workers: int) -> None:
        self.db = db
        self._init_workers(max(1, workers))
        self._avg_cache: dict[Any, int] = {}
        self.point = self._open()

    # ------------------------------------------------------------------ opening

    def _connect(self) -> Any:
        # no decoders: every value arrives as the server's text; no Python values are built
        conn = self.db.connect(
            conv=_ENCODERS, cursorclass=pymysql.cursors.SSCursor, autocommit=True
        )
        with conn.cursor() as cur:
            cur.execute(
                "SET SESSION time_zone = '+00:00', group_concat_max_len = 1073741824, "
                "net_write_timeout = 3600"
            )
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return conn

    def _open(self) -> SnapshotPoint:
        try:
            self.conns = [self._connect() for _ in range(self.workers)]
            mariadb = self.db.is_mariadb()
            if mariadb:
                for _ in range(_LOCK_FREE_TRIES):
                    points = [self._start(conn) for conn in self.conns]
                    if len(set(points)) == 1:
                        position = self._with_gtid(points[0])
                        log.info(
                            "snapshot at %s without a lock (%d workers)", position, len(points)
                        )
                        return SnapshotPoint(position, position, 0.0, "consistent snapshot")
                    for conn in self.conns:
                        _exec(conn, "ROLLBACK")
            return self._open_locked(mariadb)
        except pymysql.err.MySQLError as exc:
            self.close()
            from connectors.mysql import map_error

            raise map_error(exc, self.db.endpoint) from None
        except BaseException:
            self.close()
            raise

    def _start(self, conn: Any) -> tuple[str, int]:
        _exec(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT")
        rows = dict(_query(conn, "SHOW STATUS LIKE 'binlog_snapshot_%'"))
        file = _text(rows.get("Binlog_snapshot_file", b""))
        if not file:
            raise PrerequisiteError(
                f"{self.db.endpoint.display}: binary logging is off",
                hint="start the server with log_bin=mysql-bin (see `redoline check`)",
            )
        return file, int(_text(rows["Binlog_snapshot_position"]))

    def _with_gtid(self, point: tuple[str, int]) -> str:
        file, pos = point
        ((gtid,),) = _query(self.conns[0], "SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        return str(BinlogPosition(_text(gtid or b"").replace("\n", ""), file, pos))

    def _open_locked(self, mariadb: bool) -> SnapshotPoint:
        lock_conn = self._connect()
        try:
            _exec(lock_conn, "SET SESSION lock_wait_timeout = 30")
            started = time.monotonic()
            _exec(lock_conn, "FLUSH TABLES WITH READ LOCK")
            try:
                if mariadb:
                    points = [self._start(conn) for conn in self.conns]
                    position = self._with_gtid(points[0])
                else:
                    for conn in self.conns:
                        _exec(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    status = _query(lock_conn, "SHOW MASTER STATUS")
                    if not status:
                        raise PrerequisiteError(
                            f"{self.db.endpoint.display}: binary logging is off",
                            hint="start the server with log_bin=mysql-bin",
                        )
                    row = status[0]
                    gtid = _text(row[4]) if len(row) > 4 and row[4] else ""
                    position = str(
                        BinlogPosition(gtid.replace("\n", ""), _text(row[0]), int(_text(row[1])))
                    )
            finally:
                _exec(lock_conn, "UNLOCK TABLES")
                held = time.monotonic() - started
        finally:
            lock_conn.close()
        log.info("snapshot at %s; FLUSH TABLES WITH READ LOCK held %.3f s", position, held)
        return SnapshotPoint(position, position, held, "FLUSH TABLES WITH READ LOCK")

    def compare_positions(self, a: str, b: str) -> int:
        return compare(a, b)

    # ------------------------------------------------------------------ planning

    def estimate_rows(self, schema: TableSchema) -> int:
        rows = self.db.query(
            "SELECT table_rows FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name = %s",
            (schema.table.schema, schema.table.name),
        )
        return int(rows[0][0] or 0) if rows else 0

    def plan_chunks(self, schema: TableSchema, chunk_rows: int) -> list[KeyRange]:
        try:
            return self._plan_chunks(schema, chunk_rows)
        except pymysql.err.MySQLError as exc:
            from connectors.mysql import map_error

            raise map_error(exc, self.db.endpoint) from None

    def _plan_chunks(self, schema: TableSchema, chunk_rows: int) -> list[KeyRange]:
        key = schema.identity
        if not key:
            return [KeyRange(0, None, None)]
        table = self.db.qualified(schema.table)
        int_key = self._int_key(schema)
        conn = self.conns[0]
        with self._locks[0]:
            if int_key is not None:
                q = self.db.quote(int_key)
                ((lo, hi, count),) = _query(
                    conn, f"SELECT MIN({q}), MAX({q}), COUNT(*) FROM {table}"
                )
                if lo is None:
                    return [KeyRange(0, None, None)]
                return even_chunks(int(_text(lo)), int(_text(hi)), int(_text(count)), chunk_rows)
            else:
                cols = ", ".join(self.db.quote(c) for c in key)
                # every chunk_rows-th key in key order: one index scan inside the snapshot
                rows = _query(
                    conn,
                    f"SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER (ORDER BY {cols}) "
                    f"AS redoline_rn FROM {table}) x WHERE redoline_rn %% %s = 1 "
                    f"AND redoline_rn > 1 ORDER BY redoline_rn",
                    (chunk_rows,),
                )
                bounds = [tuple(_text(v) for v in row) for row in rows]
        return chunks_between(bounds)

    # ------------------------------------------------------------------ reading

    def _where(self, key: tuple[str, ...], chunk: KeyRange) -> tuple[str, list[Any]]:
        cols = ", ".join(self.db.quote(c) for c in key)
        lhs = f"({cols})" if len(key) > 1 else cols
        marks = ", ".join(["%s"] * len(key))
        rhs = f"({marks})" if len(key) > 1 else marks
        conds: list[str] = []
        args: list[Any] = []
        if chunk.lower is not None:
            conds.append(f"{lhs} >= {rhs}")
            args.extend(chunk.lower)
        if chunk.upper is not None:
            conds.append(f"{lhs} < {rhs}")
            args.extend(chunk.upper)
        return (" WHERE " + " AND ".join(conds)) if conds else "", args

    def read_chunk(
        self,
        worker: int,
        schema: TableSchema,
        chunk: KeyRange,
        fmt: str,
        columns: tuple[str, ...],
        where: str | None = None,
    ) -> Iterator[tuple[bytes, int]]:
        line = _line_expression(schema, fmt, columns, self.db.quote)
        table = self.db.qualified(schema.table)
        conn = self.conns[worker]
        int_key = self._int_key(schema)
        # the statements are formatted with bind arguments: a literal % must be doubled
        extra = f" AND ({where.replace('%', '%%')})" if where else ""
        try:
            with self._locks[worker]:
                if int_key is not None and chunk.lower is not None and chunk.upper is not None:
                    yield from self._read_grouped(conn, schema, table, line, int_key, chunk, extra)
                else:
                    bounds, args = self._where(schema.identity, chunk)
                    if extra:
                        bounds = (bounds + extra) if bounds else " WHERE " + extra[5:]
                    yield from self._read_lines(conn, f"SELECT {line} FROM {table}{bounds}", args)
        except pymysql.err.MySQLError as exc:
            from connectors.mysql import map_error

            raise map_error(exc, self.db.endpoint) from None

    def _read_lines(self, conn: Any, sql: str, args: list[Any]) -> Iterator[tuple[bytes, int]]:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            while True:
                rows = cur.fetchmany(5000)
                if not rows:
                    return
                data = "\n".join(_text(r[0]) for r in rows) + "\n"
                yield data.encode(), len(rows)

    def _read_grouped(
        self,
        conn: Any,
        schema: TableSchema,
        table: str,
        line: str,
        key: str,
        chunk: KeyRange,
        extra: str = "",
    ) -> Iterator[tuple[bytes, int]]:
        """One GROUP_CONCAT per key sub-range: the server builds ~1 MB of lines at a time."""
        assert chunk.lower is not None and chunk.upper is not None
        low, high = int(chunk.lower[0]), int(chunk.upper[0])
        avg = max(1, self._avg_row_length(schema))
        width = max(1, _GROUP_BYTES // avg)
        q = self.db.quote(key)
        sql = (
            f"SELECT GROUP_CONCAT({line} SEPARATOR '\\n'), COUNT(*) FROM {table} "
            f"WHERE {q} >= %s AND {q} < %s{extra}"
        )
        with conn.cursor() as cur:
            for start in range(low, high, width):
                cur.execute(sql, (start, min(start + width, high)))
                ((data, count),) = cur.fetchall()
                n = int(_text(count))
                if n:
                    raw = data if isinstance(data, bytes) else str(data).encode()
                    yield raw + b"\n", n

    def _avg_row_length(self, schema: TableSchema) -> int:
        cached = self._avg_cache.get(schema.table)
        if cached is None:
            rows = self.db.query(
                "SELECT avg_row_length FROM information_schema.tables "
                "WHERE table_schema = %s AND table_name = %s",
                (schema.table.schema, schema.table.name),
            )
            cached = int(rows[0][0] or 200) if rows else 200
            self._avg_cache[schema.table] = cached
        return cached


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def _exec(conn: Any, sql: str) -> None:
    with conn.cursor() as cur:
        cur.execute(sql)
        cur.fetchall()


def _query(conn: Any, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def open_snapshot(
    db: MySQL,
    workers: int,
    *,
    tables: Sequence[TableId] = (),
    capture: bool = True,
    options: dict[str, Any] | None = None,
) -> MySQLSnapshot:
    """Open ``workers`` consistent-snapshot readers on one binlog point (the binlog needs no
    preparation, so ``tables``, ``capture`` and ``options`` change nothing here)."""
    try:
        return MySQLSnapshot(db, workers)
    except ToolkitError:
        raise
