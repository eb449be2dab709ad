"""Source DDL to target DDL with sqlglot (CREATE/ALTER/DROP/RENAME/TRUNCATE, indexes).

Every statement is parsed in the source's dialect, its table names are renamed for the target
(``[tables.rename]``, MySQL database = schema), column types are re-derived from the trail's
definition after the statement through :mod:`apply.typemap` (so DDL and created tables agree),
and it is generated in the target's dialect with ``unsupported_level=RAISE``: anything sqlglot
cannot express on the target, or does not understand at all, is a :class:`SchemaError` that
names the statement (``--skip-ddl`` skips such statements, loudly).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

import sqlglot
import sqlglot.errors
from sqlglot import exp

from apply.typemap import column_type, create_table_sql
from connectors.engine import EngineDescriptor, engine_for_dialect
from connectors.errors import SchemaError
from connectors.model import TableId, TableSchema

__all__ = ["translate_ddl"]

_RENAME = re.compile(r"^\s*RENAME\s+TABLES?\s+(.+?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
#: a name (backquoted parts kept whole), then TO, then a name; pairs separated by commas
_RENAME_PAIR = re.compile(
    r"\s*((?:`(?:[^`]|``)*`|[^\s`,])+)\s+TO\s+((?:`(?:[^`]|``)*`|[^\s`,])+)\s*(?:,|$)",
    re.IGNORECASE,
)


def _untranslatable(sql: str, why: str) -> SchemaError:
    return SchemaError(
        f"cannot translate the source DDL statement {sql!r}: {why}",
        hint="apply it to the target by hand and restart with --skip-ddl, or exclude the table",
    )


def translate_ddl(
    sql: str,
    *,
    source_dialect: str | None,
    target_dialect: str,
    default_schema: str | None = None,
    rename: Callable[[TableId], TableId] | None = None,
    schema_after: TableSchema | None = None,
    target_exists: Callable[[TableId], bool] | None = None,
    only: Collection[TableId] | None = None,
) -> list[str]:
    """Target statements for the source DDL ``sql`` (empty: nothing to do on the target).

    ``schema_after`` (the trail's definition after the statement, already renamed for the
    target) supplies column types; ``target_exists`` makes CREATE TABLE idempotent. ``only``
    (source tables) keeps a DROP TABLE or RENAME TABLE to the tables the trail holds changes
    of: a statement naming tables outside ``[tables]`` leaves those alone on the target.
    """
    if not source_dialect:
        # the trail header names it (format 2); guessing from the text would misread DDL
        raise SchemaError(
            f"cannot translate the source DDL statement {sql!r}: the trail does not name its "
            "source's SQL dialect (it was written by an older redoline, format 1)",
            hint="run `redoline capture` once with this version (new segments name the "
            "source), or apply the statement by hand and restart with --skip-ddl",
        )
    if default_schema is None and schema_after is not None:
        default_schema = schema_after.table.schema
    tr = _Translation(
        sql,
        source_dialect,
        target_dialect,
        engine_for_dialect(target_dialect),
        default_schema,
        rename,
        schema_after,
        target_exists,
        only,
    )
    match = _RENAME.match(sql)
    if match:
        return tr.rename_tables(match.group(1))
    try:
        statements = [s for s in sqlglot.parse(sql, read=source_dialect) if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        raise _untranslatable(sql, str(exc).splitlines()[0]) from None
    return [out for stmt in statements for out in tr.statement(stmt)]


@dataclass
class _Translation:
    """One source DDL statement being translated (the arguments of :func:`translate_ddl`)."""

    sql: str
    read: str
    target_dialect: str
    engine: EngineDescriptor
    default_schema: str | None
    rename: Callable[[TableId], TableId] | None
    schema_after: TableSchema | None
    target_exists: Callable[[TableId], bool] | None
    only: Collection[TableId] | None

    def source_id(self, table: exp.Table) -> TableId:
        return TableId(table.db or self.default_schema or "public", table.name)

    def target(self, table: exp.Table) -> TableId:
        source = self.source_id(table)
        return self.rename(source) if self.rename else source

    def retarget(self, node: exp.Expression) -> None:
        for table in node.find_all(exp.Table):
            if not table.name:
                continue
            name = self.target(table)
            table.set("this", exp.to_identifier(name.name, quoted=True))
            table.set("db", exp.to_identifier(name.schema, quoted=True))
            table.set("catalog", None)

    def rename_tables(self, text: str) -> list[str]:
        """RENAME TABLE a TO b, c TO d (``text``: the pairs): one rename per pair, in order."""
        sql, only = self.sql, self.only
        pos, pairs = 0, []
        while pos < len(text):
            pair = _RENAME_PAIR.match(text, pos)
            if pair is None:
                raise _untranslatable(sql, "cannot read its table names")
            try:
                names = (
                    _table_node(pair.group(1), self.read),
                    _table_node(pair.group(2), self.read),
                )
            except sqlglot.errors.SqlglotError as exc:
                raise _untranslatable(sql, str(exc).splitlines()[0]) from None
            if only is None or {self.source_id(n) for n in names} & set(only):
                pairs.append((self.target(names[0]), self.target(names[1])))
            pos = pair.end()
        return _rename_tables(pairs, self.target_dialect)

    def statement(self, stmt: exp.Expr) -> list[str]:
        """The target statements for one parsed source statement."""
        sql, schema_after, target_dialect = self.sql, self.schema_after, self.target_dialect
        if isinstance(stmt, exp.Command):
            raise _untranslatable(sql, "sqlglot does not understand this statement")
        kind = str(stmt.args.get("kind") or "").upper()
        if isinstance(stmt, exp.Create) and kind == "TABLE":
            table_node = stmt.find(exp.Table)
            name = self.target(table_node) if table_node is not None else None
            fresh = schema_after is not None and not stmt.args.get("expression")
            if stmt.args.get("replace") and name is not None and schema_after is not None and fresh:
                # MariaDB's CREATE OR REPLACE TABLE drops the table it replaces
                return [
                    f"DROP TABLE IF EXISTS {_quoted(name, target_dialect)}",
                    create_table_sql(schema_after, target_dialect, schema_after.table),
                ]
            if name is not None and self.target_exists is not None and self.target_exists(name):
                return []  # replay after a crash, or created from the definition already
            if schema_after is not None and not stmt.args.get("expression"):
                return [create_table_sql(schema_after, target_dialect, schema_after.table)]
        elif isinstance(stmt, exp.Drop) and kind == "TABLE":
            stmt.set("exists", True)
            if self.only is not None:
                only = set(self.only)
                kept = [t for t in stmt.args.get("tables") or [] if self.source_id(t) in only]
                if not kept:
                    return []
                stmt.set("tables", kept)
        elif isinstance(stmt, exp.Alter | exp.TruncateTable | exp.Drop | exp.Create):
            if isinstance(stmt, exp.Create) and kind not in ("INDEX", "TABLE"):
                raise _untranslatable(sql, f"CREATE {kind} is not replicated")
            if isinstance(stmt, exp.Drop) and kind not in ("INDEX", "TABLE"):
                raise _untranslatable(sql, f"DROP {kind} is not replicated")
        else:
            raise _untranslatable(sql, f"{type(stmt).__name__} statements are not replicated")
        self.retarget(stmt)
        return [self.text(part) for part in self.parts(stmt)]

    def parts(self, stmt: exp.Expr) -> list[exp.Expr]:
        """``stmt`` as the target runs it: split where the target takes one change at a time,
        an ALTER retyped and without MODIFY where the target cannot redefine a column."""
        engine = self.engine
        parts: list[exp.Expr] = [stmt]
        tables = stmt.args.get("tables") if isinstance(stmt, exp.Drop) else None
        if engine.ddl_one_change_per_statement and tables and len(tables) > 1:
            # (DuckDB: "Can only drop one object at a time")
            parts = []
            for table in tables:
                one = stmt.copy()
                one.set("tables", [table.copy()])
                parts.append(one)
        if isinstance(stmt, exp.Alter):
            _retype(stmt, self.schema_after, self.target_dialect, self.sql)
            alters = [stmt]
            if not engine.ddl_redefines_columns:
                alters = _without_modify(stmt, self.schema_after, engine.ddl_retype_using)
            if engine.ddl_one_change_per_statement:
                # (DuckDB: "Only one ALTER command per statement is supported")
                alters = [one for part in alters for one in _one_action_each(part)]
            parts = list(alters)
        return parts

    def text(self, part: exp.Expr) -> str:
        try:
            return part.sql(
                dialect=self.target_dialect,
                unsupported_level=sqlglot.errors.ErrorLevel.RAISE,
            )
        except sqlglot.errors.SqlglotError as exc:
            raise _untranslatable(self.sql, str(exc).splitlines()[0]) from None


def _quoted(table: TableId, dialect: str) -> str:
    quote = engine_for_dialect(dialect).database_class().quote
    return f"{quote(table.schema)}.{quote(table.name)}"


def _one_action_each(stmt: exp.Alter) -> list[exp.Alter]:
    actions = stmt.args.get("actions") or []
    if len(actions) <= 1:
        return [stmt]
    parts = []
    for action in actions:
        one = stmt.copy()
        one.set("actions", [action.copy()])
        parts.append(one)
    return parts


def _without_modify(
    stmt: exp.Alter, schema_after: TableSchema | None, retype_using: bool
) -> list[exp.Alter]:
    """MySQL's ``CHANGE [COLUMN] old new TYPE`` and ``MODIFY [COLUMN] name TYPE`` (a column
    redefined whole) as standard SQL: a RENAME COLUMN statement first when the name changes
    (PostgreSQL takes no other action beside a rename), then ALTER COLUMN ... TYPE and SET or
    DROP NOT NULL with the other actions."""
    actions = stmt.args.get("actions") or []
    if not any(isinstance(a, exp.ModifyColumn) for a in actions):
        return [stmt]
    renames: list[exp.Alter] = []
    rest: list[exp.Expression] = []
    keyed = set(schema_after.identity) if schema_after is not None else set()
    for action in actions:
        coldef = action.this if isinstance(action, exp.ModifyColumn) else None
        if not isinstance(coldef, exp.ColumnDef):
            rest.append(action)
            continue
        name = coldef.name
        source = action.args.get("rename_from")
        if source is not None and source.name != name:
            rename = stmt.copy()
            rename.set(
                "actions",
                [
                    exp.RenameColumn(
                        this=exp.column(source.name, quoted=True), to=exp.column(name, quoted=True)
                    )
                ],
            )
            renames.append(rename)
        dtype = coldef.args.get("kind")
        if isinstance(dtype, exp.DataType):
            # PostgreSQL converts only where an implicit cast exists without USING
            column = exp.column(name, quoted=True)
            using = exp.cast(column.copy(), dtype.copy()) if retype_using else None
            rest.append(exp.AlterColumn(this=column, dtype=dtype.copy(), using=using))
        if name not in keyed:
            not_null = any(
                isinstance(c.args.get("kind"), exp.NotNullColumnConstraint)
                and not c.args["kind"].args.get("allow_null")
                for c in coldef.args.get("constraints") or []
            )
            if not_null:
                # (sqlglot renders SET NOT NULL from allow_null set and drop unset)
                rest.append(exp.AlterColumn(this=exp.column(name, quoted=True), allow_null=True))
            else:
                rest.append(
                    exp.AlterColumn(this=exp.column(name, quoted=True), drop=True, allow_null=True)
                )
    if not rest:
        return renames
    last = stmt.copy()
    last.set("actions", rest)
    return [*renames, last]


def _retype(stmt: exp.Alter, schema_after: TableSchema | None, dialect: str, sql: str) -> None:
    """Replace column types in ALTER actions by the typemap's type for the new definition."""
    if schema_after is None:
        return
    for coldef in stmt.find_all(exp.ColumnDef):
        name = coldef.name
        try:
            col = schema_after.column(name)
        except KeyError:
            continue
        keyed = name in schema_after.identity
        ctype = column_type(col, dialect, in_key=keyed)
        try:
            coldef.set("kind", exp.DataType.build(ctype, dialect=dialect))
        except sqlglot.errors.SqlglotError as exc:
            raise _untranslatable(sql, f"type {ctype}: {exc}") from None
    for alter in stmt.find_all(exp.AlterColumn):
        if alter.args.get("dtype") is None:
            continue
        try:
            col = schema_after.column(alter.name)
        except KeyError:
            continue
        alter.set("dtype", exp.DataType.build(column_type(col, dialect), dialect=dialect))


def _table_node(text: str, read: str) -> exp.Table:
    node = sqlglot.parse_one(f"SELECT 1 FROM {text}", read=read).find(exp.Table)
    assert node is not None
    return node


def _rename_tables(pairs: list[tuple[TableId, TableId]], dialect: str) -> list[str]:
    """RENAME TABLE a TO b, ... on the target: MySQL renames them all in one atomic statement
    (a swap through a temporary name never shows half done); the others rename in order."""
    if not pairs:
        return []
    if engine_for_dialect(dialect).ddl_rename_tables:
        return [
            "RENAME TABLE "
            + ", ".join(f"{_quoted(s, dialect)} TO {_quoted(d, dialect)}" for s, d in pairs)
        ]
    quote = engine_for_dialect(dialect).database_class().quote
    stmts = []
    for src, dst in pairs:
        stmts.append(f"ALTER TABLE {_quoted(src, dialect)} RENAME TO {quote(dst.name)}")
        if dst.schema != src.schema:
            stmts.append(
                f"ALTER TABLE {quote(src.schema)}.{quote(dst.name)} SET SCHEMA {quote(dst.schema)}"
            )
    return stmts


def ddl_kind(sql: str, dialect: str | None) -> str:
    """What a source DDL statement does to tables: ``rename`` (RENAME TABLE, ALTER TABLE ...
    RENAME TO), ``alter``, ``create``, ``drop``, ``truncate`` or ``other``."""
    if _RENAME.match(sql):
        return "rename"
    try:
        parsed = sqlglot.parse(sql, read=dialect) if dialect else []
    except sqlglot.errors.SqlglotError:
        return "other"
    stmt = parsed[0] if parsed else None
    if isinstance(stmt, exp.Alter):
        actions = stmt.args.get("actions") or []
        return "rename" if any(isinstance(a, exp.AlterRename) for a in actions) else "alter"
    kind = str(stmt.args.get("kind") or "").upper() if stmt is not None else ""
    if isinstance(stmt, exp.Create) and kind == "TABLE":
        return "create"
    if isinstance(stmt, exp.Drop) and kind == "TABLE":
        return "drop"
    if isinstance(stmt, exp.TruncateTable):
        return "truncate"
    return "other"


def already_applied(
    sql: str,
    dialect: str,
    exists: Callable[[TableId], bool],
    columns: Callable[[TableId], set[str]],
    expected: Callable[[TableId], set[str] | None] = lambda _t: None,
) -> bool | None:
    """Whether the target statement ``sql`` (as :func:`translate_ddl` made it) has already
    taken effect on the target: for a statement that may have run just before a crash, on a
    target whose DDL commits on its own.

    Decided from the names the statement changes: tables (RENAME), columns (ADD, DROP,
    RENAME, CHANGE with a new name). A statement that changes no name (a type change, DROP
    ... IF EXISTS, TRUNCATE, CREATE TABLE, which :func:`translate_ddl` skips when the table
    exists) gives the same result when run again: False. None: the target is in neither the
    state before nor the state after the statement (or a swap whose two states look alike),
    so it cannot be told. ``expected(table)`` is the trail's column set for a target table
    after the statement (None: unknown), which tells a swap's two states apart.
    """
    match = _RENAME.match(sql)
    if match:
        text, pos, pairs = match.group(1), 0, []
        while pos < len(text):
            pair = _RENAME_PAIR.match(text, pos)
            if pair is None:
                return None
            a, b = (_table_node(pair.group(g), dialect) for g in (1, 2))
            pairs.append((TableId(a.db, a.name), TableId(b.db, b.name)))
            pos = pair.end()
        return _renamed(pairs, exists, columns, expected)
    try:
        stmt = sqlglot.parse_one(sql, read=dialect)
    except sqlglot.errors.SqlglotError:
        return False
    if not isinstance(stmt, exp.Alter) or not isinstance(stmt.this, exp.Table):
        return False
    table = TableId(stmt.this.db, stmt.this.name)
    actions = stmt.args.get("actions") or []
    for action in actions:
        if isinstance(action, exp.AlterRename):
            dst = TableId(action.this.db or table.schema, action.this.name)
            return _renamed([(table, dst)], exists, columns, expected)
    if not exists(table):
        return None
    have = columns(table)
    votes: list[bool] = []
    for action in actions:
        if isinstance(action, exp.ColumnDef):
            votes.append(action.name in have)
        elif isinstance(action, exp.Drop) and str(action.args.get("kind") or "").upper() == (
            "COLUMN"
        ):
            # (sqlglot keeps the dropped column in `tables`, older versions in `this`)
            dropped = action.this or next(iter(action.args.get("tables") or []), None)
            votes.append(dropped is not None and dropped.name not in have)
        elif isinstance(action, exp.RenameColumn):
            old, new = action.this.name, action.args["to"].name
            votes.append(old not in have and new in have)
        elif isinstance(action, exp.ModifyColumn) and isinstance(action.this, exp.ColumnDef):
            source = action.args.get("rename_from")
            if source is not None and source.name != action.this.name:
                votes.append(source.name not in have and action.this.name in have)
    if not votes:
        return False
    if all(votes):
        return True
    return False if not any(votes) else None


def _renamed(
    pairs: list[tuple[TableId, TableId]],
    exists: Callable[[TableId], bool],
    columns: Callable[[TableId], set[str]],
    expected: Callable[[TableId], set[str] | None],
) -> bool | None:
    names = {t for pair in pairs for t in pair}
    now = {t for t in names if exists(t)}

    def runs(order: list[tuple[TableId, TableId]]) -> dict[TableId, TableId] | None:
        """Name after -> name before, when the renames in ``order`` can run from ``now``."""
        have = {t: t for t in now}
        for src, dst in order:
            if src not in have or dst in have:
                return None
            have[dst] = have.pop(src)
        return have

    forward = runs(pairs)
    backward = runs([(b, a) for a, b in reversed(pairs)])
    if forward is not None and backward is None:
        return False
    if backward is not None and forward is None:
        return True
    if forward is None or backward is None:
        return None
    # a swap: both states hold the same names; the trail's definitions after it tell them apart
    after = {t: expected(t) for t in names if t in now}
    known = {t: cols for t, cols in after.items() if cols is not None}
    if not known:
        return None
    done = all(columns(t) == cols for t, cols in known.items())
    # not run yet: each name's columns are now on the table the statement moves to it
    pending = all(
        columns(forward_src) == known[t] for t, forward_src in forward.items() if t in known
    )
    if done != pending:
        return done
    return None
