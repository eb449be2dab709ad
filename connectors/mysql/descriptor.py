"""MySQL 8 and MariaDB 10.5+: what the rest of redoline may know (:mod:`connectors.engine`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from connectors.engine import EngineDescriptor

__all__ = ["ENGINE", "MySQLOptions"]

#: row decoders of the binlog reader
DECODERS = ("fast", "library")


@dataclass(frozen=True)
class MySQLOptions:
    """The ``[source]`` keys of a MySQL/MariaDB source."""

    #: server id our binlog client announces (must be unique among the server's replicas)
    server_id: int = 4_199_001
    #: row decoder: "fast" (connectors/mysql/fastrows.py) or "library" (mysql-replication)
    decoder: str = "fast"

    def problems(self) -> Iterator[tuple[str, str]]:
        if isinstance(self.server_id, bool) or not isinstance(self.server_id, int):
            yield "server_id", f"must be a whole number, not {self.server_id!r}"
        elif self.server_id < 0:
            yield "server_id", "must not be negative"
        if self.decoder not in DECODERS:
            yield "decoder", f'must be "fast" or "library", not {self.decoder!r}'


ENGINE = EngineDescriptor(
    name="mysql",
    title="MySQL/MariaDB",
    schemes=("mysql", "mariadb"),
    database="connectors.mysql:MySQL",
    dialect="mysql",
    placeholder="%s",
    default_port=3306,
    roles={
        "log_reader": "binlog",
        "positions": "positions",
        "snapshot": "snapshot",
        "writer": "writer",
        "bulk": "bulk",
        "types": "types",
        "checksum": "checksum",
    },
    options=MySQLOptions,
    # column names are case-insensitive in MySQL/MariaDB; table names follow the file system
    # (lower_case_table_names=0 on Linux: distinct)
    folds_column_names=True,
    schema_is_database=True,
    has_log=True,
    position_scheme="mysql-binlog",
    text_compare_ci=True,
    ddl_redefines_columns=True,
    ddl_rename_tables=True,
)
