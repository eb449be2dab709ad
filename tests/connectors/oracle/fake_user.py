"""User sessions on the fake Oracle: a DB-API connection whose SQL becomes redo.

The conformance suite and a few reader tests write through this, as an application would:
CREATE TABLE, ALTER TABLE (ADD (...), ADD SUPPLEMENTAL LOG DATA), TRUNCATE / DROP TABLE,
INSERT ... VALUES, UPDATE and DELETE with ``col = value`` conditions, commit and rollback.
"""

from __future__ import annotations

import decimal
import re
from typing import Any

from connectors.model import TableId
from connectors.oracle.session import SessionError
from tests.connectors.oracle.fake import ColumnDef, FakeOracle, FakeSession, Txn

__all__ = ["FakeConnection", "FakeCursor"]


# --------------------------------------------------------------------------- user sessions


class FakeCursor:
    """Runs a user's SQL (the conformance suite's) as :class:`Txn` operations: CREATE TABLE,
    ALTER TABLE (ADD column, ADD SUPPLEMENTAL LOG DATA), INSERT ... VALUES, UPDATE and
    DELETE with ``col = value`` conditions; ``%s`` placeholders filled in order."""

    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: tuple[Any, ...] | None = None) -> None:
        import sqlglot
        from sqlglot import exp

        values = list(params or ())
        text = re.sub(r"%s", lambda _: _bind(values.pop(0)), sql)
        db = self.conn.db
        m = re.match(
            r'ALTER TABLE "(.+)"\."(.+)" ADD SUPPLEMENTAL LOG DATA \((.+)\) COLUMNS$', text
        )
        if m:
            FakeSession(db).execute(text)
            return
        m = re.match(r'(TRUNCATE|DROP) TABLE "(.+)"\."(.+)"$', text)
        if m:
            self.conn.commit()
            tid = TableId(m.group(2), m.group(3))
            if m.group(1) == "DROP":
                del db.tables[tid]
            txn = Txn(db, self.conn.thread)
            txn._rec(5, SQL_REDO=text.lower(), SEG_OWNER=tid.schema, TABLE_NAME=tid.name)
            scn = txn.commit()
            if m.group(1) == "TRUNCATE":
                t = db.tables[tid]
                for rid in t.rows_as_of(scn):
                    t.history.append((scn, rid, None))
            return
        if re.match(r"ALTER TABLE .* ADD COLUMN ", text, re.I):
            raise SessionError("ORA-00904", ": invalid identifier")  # Oracle spells it ADD (...)
        tree = sqlglot.parse_one(text, read="oracle")
        if isinstance(tree, exp.Create):
            self._ddl(tree, text)
            return
        if isinstance(tree, exp.Alter):
            self._ddl(tree, text)
            return
        table = tree.find(exp.Table)
        assert table is not None
        owner, name = table.db, table.name
        txn = self.conn.txn()
        if isinstance(tree, exp.Insert):
            cols = [c[0] for c in db.tables[TableId(owner, name)].columns]
            for row in tree.expression.expressions:
                txn.insert(
                    owner, name, dict(zip(cols, (_py(v) for v in row.expressions), strict=False))
                )
        elif isinstance(tree, exp.Update):
            sets = {eq.this.name: _py(eq.expression) for eq in tree.expressions}
            txn.update(owner, name, _where(tree), **sets)
        elif isinstance(tree, exp.Delete):
            txn.delete(owner, name, _where(tree))
        else:
            raise AssertionError(f"the fake user session cannot run {sql!r}")

    def _ddl(self, tree: Any, text: str) -> None:
        """DDL commits on its own, as in Oracle: a transaction with one DDL row."""
        from sqlglot import exp

        db = self.conn.db
        self.conn.commit()
        table = tree.find(exp.Table)
        owner, name = table.db, table.name
        if isinstance(tree, exp.Create):
            cols: list[ColumnDef] = []
            pk: list[str] = []
            for cd in tree.this.expressions:
                cols.append(_column_def(cd))
                if any(isinstance(c.kind, exp.PrimaryKeyColumnConstraint) for c in cd.constraints):
                    pk.append(cd.name)
            db.create(owner, name, cols, pk)
        else:
            t = db.tables[TableId(owner, name)]
            for action in tree.args["actions"]:
                for cd in action.find_all(exp.ColumnDef):
                    t.columns.append(_column_def(cd))
        txn = Txn(db, self.conn.thread)
        txn._rec(5, SQL_REDO=text, SEG_OWNER=owner, TABLE_NAME=name)
        txn.commit()


def _column_def(cd: Any) -> ColumnDef:
    """ALL_TAB_COLS' view of a column definition: INT is NUMBER(*,0) (no precision)."""
    kind = cd.args["kind"].sql("oracle").upper()
    size = re.findall(r"\d+", kind)
    if kind.startswith(("INT", "NUMBER", "SMALLINT")):
        precision = int(size[0]) if size and kind.startswith("NUMBER") else None
        return (cd.name, "NUMBER", 22, None, precision, int(size[1]) if len(size) > 1 else 0, "Y")
    length = int(size[0]) if size else 4000
    return (cd.name, "VARCHAR2", length, length, None, None, "Y")


def _bind(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int | float | decimal.Decimal):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _py(node: Any) -> Any:
    from sqlglot import exp

    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Neg):
        return -_py(node.this)
    if node.is_string:
        return node.this
    return decimal.Decimal(node.this)


def _where(tree: Any) -> dict[str, Any]:
    from sqlglot import exp

    where = tree.args["where"].this
    terms = list(where.flatten()) if isinstance(where, exp.And) else [where]
    return {t.this.name: _py(t.expression) for t in terms}


class FakeConnection:
    """A user's DB-API connection (not autocommit) to the fake database."""

    def __init__(self, db: FakeOracle, thread: int = 1) -> None:
        self.db, self.thread = db, thread
        self._txn: Txn | None = None

    def txn(self) -> Txn:
        if self._txn is None:
            self._txn = Txn(self.db, self.thread)
        return self._txn

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        if self._txn is not None:
            self._txn.commit()
        self._txn = None

    def rollback(self) -> None:
        if self._txn is not None:
            self._txn.rollback()
        self._txn = None

    def close(self) -> None:
        self.rollback()
