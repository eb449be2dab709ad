"""DuckDB, the embedded target: what the rest of redoline may know (:mod:`connectors.engine`)."""

from __future__ import annotations

from connectors.engine import EngineDescriptor

__all__ = ["ENGINE"]

ENGINE = EngineDescriptor(
    name="duckdb",
    title="DuckDB",
    schemes=("duckdb",),
    database="connectors.duckdb:DuckDB",
    dialect="duckdb",
    placeholder="?",
    default_port=None,
    roles={"writer": "writer", "bulk": "bulk", "types": "types", "checksum": "checksum"},
    folds_table_names=True,
    folds_column_names=True,
    ddl_one_change_per_statement=True,
)
