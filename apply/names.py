"""Names that collide on the target once its case folding applies.

MariaDB keeps ``acc.Dup`` and ``acc.dup`` apart, DuckDB does not; PostgreSQL keeps columns
``A`` and ``a`` apart (quoted), MariaDB and DuckDB do not. Loading such a pair would fail
half way, or worse, write two source tables into one target table. Both are refused before
anything is written, naming both sides and the way out.
"""

from __future__ import annotations

from collections.abc import Iterable

from connectors.base import Database
from connectors.errors import SchemaError
from connectors.model import TableId, TableSchema

__all__ = ["check_target_names"]


def check_target_names(
    target: type[Database] | Database, tables: Iterable[tuple[TableId, TableSchema]]
) -> None:
    """Raise :class:`SchemaError` when two target tables, or two columns of one, would be
    one name on ``target``. ``tables`` pairs each target table name with its definition."""
    seen: dict[tuple[str, str], TableId] = {}
    for name, schema in tables:
        if isinstance(target, Database):
            target.check_schema_name(name.schema)
        if target.folds_table_names:
            folded = (name.schema.lower(), name.name.lower())
            other = seen.setdefault(folded, name)
            if other != name:
                raise SchemaError(
                    f"tables {other} and {name} would be one table on the {target.engine} "
                    "target, which does not tell names apart by case",
                    hint=f'rename one of them: [tables.rename] "{name}" = "{name.schema}.'
                    f'{name.name}_2" (or exclude one with [tables] exclude)',
                )
        if target.folds_column_names:
            columns: dict[str, str] = {}
            for col in schema.columns:
                other_col = columns.setdefault(col.name.lower(), col.name)
                if other_col != col.name:
                    raise SchemaError(
                        f"columns {other_col!r} and {col.name!r} of {name} would be one column "
                        f"on the {target.engine} target, which does not tell names apart by "
                        "case",
                        hint=f"leave one out with [tables.columns] for {name}, or rename it on "
                        "the source",
                    )
