"""DDL barriers of the applier: a source transaction with DDL, applied on its own.

The statement is translated for the target (:func:`apply.ddl.translate_ddl`); a definition
without DDL text creates a missing table or adds missing columns; an ALTER of a table the
target never had creates it from the trail. Where the target commits DDL implicitly (MySQL),
each statement is marked in the target before it runs, so a restart after a crash between the
statement and the checkpoint neither runs it twice nor leaves it out (``_run_ddl``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apply.ddl import already_applied, ddl_kind, translate_ddl
from apply.names import check_target_names
from apply.options import ApplyOptions, SchemaLookup
from apply.targets import TargetTables
from apply.typemap import column_type
from connectors.base import RowRejected, Writer
from connectors.errors import ApplyError, SchemaError
from connectors.model import ROW_KEY, Change, TableId, TableSchema, Transaction

__all__ = ["DdlApplier"]

log = logging.getLogger("redoline.apply")


class DdlApplier(TargetTables):
    """Applies the DDL changes of a transaction (the layer under :class:`apply.applier.Applier`)."""

    def __init__(self, writer: Writer, schemas: SchemaLookup | None, options: ApplyOptions):
        super().__init__(writer, schemas, options)
        # DDL on a target without transactional DDL (see _run_ddl): the interrupted run's
        # mark (operation, step, statement), whether this transaction marked one, and where
        # in the transaction being applied alone its statements are
        self._ddl_resume: tuple[int, int, str] | None = None
        self._ddl_marked = False
        self._ddl_txn: Transaction | None = None
        self._ddl_step = 0

    def _resuming(self, txn: Transaction) -> bool:
        """Whether ``txn`` is the one whose DDL an interrupted run marked as running."""
        return self._ddl_resume is not None and self._ddl_resume[0] == txn.last_op

    def _ddl(self, change: Change, group: list[Change], *, again: bool = False) -> None:
        schema = change.table_schema
        source = change.table
        target = self.target_schema(source, schema.version).table if schema else None
        if target is None:
            target = self.options.rename(source) if self.options.rename else source
        self.writer.invalidate(target)  # type: ignore[attr-defined]
        self._existing.discard(target)
        self._targets = {k: v for k, v in self._targets.items() if k[0] != source}
        if schema is None and (change.ddl is None or change.ddl.lstrip()[:4].upper() == "DROP"):
            self._forget_rows(source, None)  # the table's rowid mappings go with it
            self._created_schemas.pop(target, None)
        if again:
            return
        if change.ddl is None:
            if schema is None:
                # gone under this name (catch-up: renamed to a table the snapshot loaded)
                if self.writer.table_exists(target):
                    log.info(
                        "%s: dropped (renamed on the source to a table the snapshot loaded)", target
                    )
                    qt = self.writer.qt  # type: ignore[attr-defined]
                    self._run_ddl(f"DROP TABLE IF EXISTS {qt(target)}", change)
                    self.stats.ddl_applied += 1
            # a definition announced before its first rows: create the table if missing
            elif schema is not None and not self.writer.table_exists(target):
                self._create(target, self._to_target(schema))
            elif schema is not None:
                self._add_missing_columns(target, self._to_target(schema))
            return
        if self._lacks_tables(change, group):
            return
        try:
            statements = translate_ddl(
                change.ddl,
                source_dialect=self.options.source_dialect,
                target_dialect=self.writer.dialect,
                default_schema=source.schema,
                rename=self.options.rename,
                schema_after=self._to_target(schema) if schema is not None else None,
                target_exists=self.writer.table_exists,
                only={c.table for c in group},
            )
        except SchemaError as exc:
            if self.options.skip_ddl:
                log.warning(
                    "SKIPPED DDL (skip_ddl is on) on %s: %s -- %s", source, change.ddl, exc.message
                )
                self.stats.ddl_skipped += 1
                return
            raise
        if any(sql.startswith("CREATE TABLE") for sql in statements):
            if schema is not None:
                self._created_schemas[target] = self._to_target(schema)
                check_target_names(self.writer.database, self._created_schemas.items())
            self.writer.create_schema(target.schema)
        for sql in statements:
            try:
                self._run_ddl(sql, change, group)
            except RowRejected as exc:
                if self.options.skip_ddl:
                    # sqlglot passes some MySQL-only clauses through (ENGINE=, FULLTEXT): the
                    # target is the judge. A MySQL source's DDL is a transaction of its own, so
                    # rolling back drops only this statement (and its earlier parts)
                    self.writer.rollback()
                    log.warning(
                        "SKIPPED DDL (skip_ddl is on) on %s: %s -- the target refused %s: %s",
                        source,
                        change.ddl,
                        sql,
                        exc.message,
                    )
                    self.stats.ddl_skipped += 1
                    return
                raise ApplyError(
                    f"the target refused DDL translated from {change.ddl!r}: {exc.message}\n"
                    f"  statement: {sql}",
                    hint="fix the target by hand and restart, or re-run with --skip-ddl to "
                    "skip statements apply cannot translate",
                ) from None
        self.stats.ddl_applied += 1

    def _run_ddl(self, sql: str, change: Change, group: list[Change] | None = None) -> None:
        """Run one target DDL statement of the transaction being applied alone.

        Where DDL commits on its own (``Writer.transactional_ddl`` false: MySQL), the
        statement is first marked as running, committed; a run that restarts on the marked
        transaction skips the statements before the mark (they ran) and runs the marked one
        only if the target does not show its effect already (:func:`apply.ddl.already_applied`).
        """
        step = self._ddl_step
        self._ddl_step += 1
        alter = ddl_kind(sql, self.writer.dialect) == "alter"
        done = self._shows_effect(sql, group or [change]) if alter else None
        if done is True:
            # the target already has the columns the statement makes: a snapshot loaded the
            # table after the change (a PostgreSQL column change announced after the snapshot
            # that already holds it): running it again could only fail
            log.info("the target already shows the effect of %s: not run again", sql)
            return
        if self.writer.transactional_ddl:
            self.writer.execute(sql)
            return
        txn = self._ddl_txn
        assert txn is not None
        resume = self._ddl_resume
        if resume is not None and resume[0] == txn.last_op and step <= resume[1]:
            if step < resume[1]:
                log.info(
                    "DDL already applied before the restart (operation %d): %s", txn.last_op, sql
                )
                return
            if sql != resume[2]:
                raise ApplyError(
                    f"apply was interrupted while the target ran DDL statement {resume[2]!r} "
                    f"of operation {txn.last_op}, but this run translates that step as "
                    f"{sql!r}: whether the target has it cannot be checked",
                    hint="compare the target table with the source; apply the statement by "
                    "hand if it is missing, then delete the row of redoline."
                    "redoline_ddl_progress for this source and target and restart",
                )
            if not alter:  # an ALTER's was looked at above, and nothing ran since
                done = self._shows_effect(sql, group or [change])
            if done is None:
                raise ApplyError(
                    f"apply was interrupted while the target ran {sql!r} (operation "
                    f"{txn.last_op}), and the target's tables are in neither the state before "
                    "nor the state after it",
                    hint="bring the target to the state after the statement by hand, then "
                    "delete the row of redoline.redoline_ddl_progress for this source and "
                    "target and restart",
                )
            if done:
                log.warning(
                    "DDL ran before the interruption (the target shows its effect), not run "
                    "again: operation %d, %s",
                    txn.last_op,
                    sql,
                )
                return
        self.writer.mark_ddl(self.options.source_id, self.options.target_id, txn.last_op, step, sql)
        self._ddl_marked = True
        self.writer.execute(sql)

    def _shows_effect(self, sql: str, group: list[Change]) -> bool | None:
        """Whether the target already shows the effect of ``sql``: True, False, or None when it
        cannot tell (:func:`apply.ddl.already_applied`)."""
        return already_applied(
            sql,
            self.writer.dialect,
            self.writer.table_exists,
            self.writer.column_names,  # type: ignore[attr-defined]
            self._expected_columns(group),
        )

    def _expected_columns(self, group: list[Change]) -> Callable[[TableId], set[str] | None]:
        """Target table -> its columns in the trail's definitions after the statement."""
        after: dict[TableId, set[str]] = {}
        for c in group:
            if c.table_schema is not None:
                t = self._to_target(c.table_schema)
                after[t.table] = {col.name for col in t.columns}
        return after.get

    def _lacks_tables(self, change: Change, group: list[Change]) -> bool:
        """An ALTER or RENAME of tables the target does not have (capture and apply with no
        snapshot: a table apply never met): instead of failing on the missing table, the
        target gets the tables from the trail's definitions after the statement, and a
        warning says their rows from before capture started are not there. True: handled."""
        assert change.ddl is not None
        kind = ddl_kind(change.ddl, self.options.source_dialect)
        if kind not in ("alter", "rename"):
            return False
        names = {
            c.table: (self._to_target(c.table_schema).table if c.table_schema else None)
            for c in group
        }
        where = {
            t: new or (self.options.rename(t) if self.options.rename else t)
            for t, new in names.items()
        }
        if kind == "alter" and len(group) == 1:
            if self.writer.table_exists(where[change.table]):
                return False
        elif any(self.writer.table_exists(t) for t in where.values()):
            return False
        made = []
        for c in group:
            if c.table_schema is None:
                continue
            schema = self._to_target(c.table_schema)
            self._create(schema.table, schema)
            made.append(str(schema.table))
        what = (
            f"created {', '.join(made)} from the trail's definition after it"
            if made
            else "skipped it (the trail has no definition of the table yet: its next rows "
            "bring one, and apply creates the table then)"
        )
        log.warning(
            "%s is not on the target: %r applies to a table apply never created, so apply %s. "
            "Rows from before capture started are NOT on the target: load them with "
            "`redoline snapshot` (or `redoline sync`, which snapshots tables not loaded yet)",
            ", ".join(str(t) for t in where.values()),
            change.ddl,
            what,
        )
        self.stats.ddl_applied += 1
        return True

    def _add_missing_columns(self, target: TableId, schema: TableSchema) -> None:
        """A definition without DDL text for a table the target has: its first in the trail
        (the rows came by snapshot, so the trail holds no earlier definition to diff against).
        Columns it has and the target lacks are added. Columns only the target has were
        dropped (or renamed) on the source between the snapshot and the trail's first
        definition: on a table a snapshot of this source created they are dropped too (the
        target's definition is redoline's; verify would report them); on a table redoline did
        not load they are kept (a column of the DBA's own is not ours to drop) and named in a
        warning."""
        have = self.writer.column_names(target)  # type: ignore[attr-defined]
        missing = [c for c in schema.columns if c.name not in have]
        for col in missing:
            ctype = column_type(
                col, self.writer.dialect, source_dialect=self.options.source_dialect
            )
            sql = (
                f"ALTER TABLE {self.writer.qt(target)} "  # type: ignore[attr-defined]
                f"ADD COLUMN {self.writer.q(col.name)} {ctype}"  # type: ignore[attr-defined]
            )
            log.info("%s: adding column %s (the source's definition has it)", target, col.name)
            self.writer.execute(sql)
            self.stats.ddl_applied += 1
        own = {ROW_KEY, self.options.source_column}  # columns apply itself adds
        extra = sorted(have - {c.name for c in schema.columns} - own)
        if extra and target in self.loaded_tables:
            for name in extra:
                log.warning(
                    "%s: dropping column %s: the source dropped or renamed it before the trail "
                    "recorded the table%s",
                    target,
                    name,
                    " (if it was renamed, the values of its new column in rows the snapshot "
                    "loaded are NULL: re-snapshot the table to reload them)"
                    if missing
                    else "",
                )
                self.writer.execute(
                    f"ALTER TABLE {self.writer.qt(target)} "  # type: ignore[attr-defined]
                    f"DROP COLUMN {self.writer.q(name)}"  # type: ignore[attr-defined]
                )
                self.stats.ddl_applied += 1
        elif extra:
            log.warning(
                "%s: target columns %s are not in the source's definition (dropped or renamed "
                "on the source before the trail recorded the table); kept, not written",
                target,
                ", ".join(extra),
            )
