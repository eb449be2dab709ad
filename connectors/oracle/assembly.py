"""One committed transaction's LogMiner records as changes, streamed.

Records come in log order (partial rollbacks already cancelled by the
:class:`~connectors.oracle.txbuffer.TxBuffer`). Each row change becomes a
:class:`~connectors.model.Change` typed by the table's definition, announced to the trail
before the table's first row when the trail does not hold that definition. A LOB spread over
rows (SEL_LOB_LOCATOR, then LOB_WRITE / LOB_TRIM) is folded into the change of its row when
that change is the one just before (an insert with ``EMPTY_CLOB()`` and its writes), else it
becomes an update of that column alone. Only that last change is held back, so a transaction
of any size streams through.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from connectors.errors import MissingObjectError, ReplicationError
from connectors.model import UNCHANGED, Change, Op, TableId, TableSchema
from connectors.oracle import checks, redo
from connectors.oracle.txbuffer import Record

if TYPE_CHECKING:
    from connectors.oracle.logminer import LogMinerReader

__all__ = ["Assembly"]

_ROW_OPS = frozenset({1, 2, 3})
_LOB_OPS = frozenset({9, 10, 11})


class Assembly:
    """Changes of one committed transaction (module doc)."""

    def __init__(self, reader: LogMinerReader, commit_scn: int) -> None:
        self.reader = reader
        self.commit_scn = commit_scn
        self.schemas: dict[TableId, TableSchema] = {}
        #: the last change, held back for the LOB pieces that may follow it
        self.held: Change | None = None
        self.held_row: tuple[TableId, str] | None = None
        #: the column LOB pieces write to (a locator row named it), in ``held``
        self.lob: str | None = None

    def _push(self, change: Change, row: tuple[TableId, str] | None = None) -> Iterator[Change]:
        if self.held is not None:
            yield self.held
        self.held, self.held_row, self.lob = change, row, None

    def _schema(self, tid: TableId) -> tuple[TableSchema, list[Change]]:
        """The definition to decode with, and the announcement to emit first (if any)."""
        schema = self.schemas.get(tid)
        if schema is not None:
            return schema, []
        schema, announcement = self.reader.announce(tid)
        self.schemas[tid] = schema
        return schema, [announcement] if announcement is not None else []

    def _stop(self, rec: Record, why: str) -> ReplicationError:
        from connectors.oracle.logminer import OPERATIONS

        name = OPERATIONS.get(rec.op, str(rec.op))
        return ReplicationError(
            f"cannot capture a {name} on {rec.owner}.{rec.table} at SCN {rec.scn} "
            f"(committed at SCN {self.commit_scn}): {why}",
            hint="exclude the table ([tables] exclude) and re-snapshot it after the change, "
            "or change how the application writes it; capture stopped rather than skip it",
        )

    def build(self, records: Iterator[Record]) -> Iterator[Change]:
        for rec in records:
            tid = TableId(rec.owner, rec.table)
            if rec.op == 5:
                yield from self._ddl(rec, tid)
            elif rec.status != 0 and rec.op in _ROW_OPS | _LOB_OPS:
                raise self._stop(rec, f"LogMiner could not render it ({rec.info or rec.status})")
            elif rec.op in _ROW_OPS:
                yield from self._row(rec, tid)
            elif rec.op in _LOB_OPS:
                yield from self._lob(rec, tid)
            else:
                raise self._stop(rec, rec.info or "LogMiner does not support this operation")
        if self.held is not None:
            yield self.held
            self.held = None

    def _ddl(self, rec: Record, tid: TableId) -> Iterator[Change]:
        """TRUNCATE empties the table; other DDL has its definition read again and announced
        when it changed, or the table is gone (DROP, RENAME away)."""
        words = rec.sql.split(None, 2)
        if words and words[0].upper() == "TRUNCATE":
            schema, first = self._schema(tid)
            for c in first:
                yield from self._push(c)
            yield from self._push(Change(Op.TRUNCATE, tid, schema.version))
            return
        self.reader.forget(tid)
        self.schemas.pop(tid, None)
        try:
            _, first = self._schema(tid)
        except MissingObjectError:
            known = self.reader.drop(tid)
            if known is not None:
                yield from self._push(Change(Op.DDL, tid, known.version + 1))
            return
        for c in first:
            yield from self._push(c)

    def _row(self, rec: Record, tid: TableId) -> Iterator[Change]:
        schema, first = self._schema(tid)
        for c in first:
            yield from self._push(c)
        try:
            parsed = redo.parse_row(rec.sql, schema)
        except redo.UnsupportedRedo as exc:
            raise self._stop(rec, str(exc)) from None
        before, after = redo.images(parsed, schema)
        ident = schema.identity
        source = before if parsed.op is not Op.INSERT else after
        key = None
        if ident and source is not None and all(c in source for c in ident):
            key = {c: source[c] for c in ident}
        row_id = rec.row_id or parsed.row_id or None
        if parsed.op is not Op.INSERT and key is None and (ident or not row_id):
            raise self._stop(
                rec,
                "its redo does not carry the columns that identify the row; enable "
                f"supplemental logging: {checks.table_logging_fix(tid, bool(ident))}",
            )
        change = Change(
            parsed.op,
            tid,
            schema.version,
            key=key,
            before=before,
            after=after,
            row_id=None if ident else row_id,
        )
        yield from self._push(change, (tid, row_id) if row_id else None)

    def _lob(self, rec: Record, tid: TableId) -> Iterator[Change]:
        try:
            op = redo.parse_lob(rec.op, rec.sql, self.reader.schema_of)
        except redo.UnsupportedRedo as exc:
            raise self._stop(rec, str(exc)) from None
        if op.kind == "locator":
            schema, first = self._schema(tid)
            for c in first:
                yield from self._push(c)
            row_id = op.row_id or rec.row_id
            held = self.held
            if (
                held is None
                or self.held_row != (tid, row_id)
                or held.op not in (Op.INSERT, Op.UPDATE)
            ):
                # the LOB of a row not changed just before: an update of that column alone
                ident = schema.identity
                key = (
                    {c: op.key[c] for c in ident}
                    if ident and all(c in op.key for c in ident)
                    else None
                )
                update = Change(
                    Op.UPDATE,
                    tid,
                    schema.version,
                    key=key,
                    before=dict(op.key),
                    after={c: op.key.get(c, UNCHANGED) for c in schema.column_names},
                    row_id=None if ident else row_id,
                )
                yield from self._push(update, (tid, row_id) if row_id else None)
            self.lob = op.column
            return
        if self.lob is None or self.held is None or self.held.after is None:
            raise self._stop(rec, "a LOB piece without the locator row that names its column")
        image = self.held.after
        image[self.lob] = redo.apply_lob(image.get(self.lob), op)
