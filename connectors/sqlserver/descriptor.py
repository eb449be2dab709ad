"""SQL Server through change data capture: what the rest of redoline may know
(:mod:`connectors.engine`).

Not yet run against a live server: docs/capture-sqlserver.md lists what a first live run
must confirm.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from connectors.engine import EngineDescriptor

__all__ = ["ENGINE", "SqlServerOptions"]


@dataclass(frozen=True)
class SqlServerOptions:
    """The ``[source]`` keys of a SQL Server source."""

    #: seconds between two reads of the change tables when nothing new was there
    poll_interval: float = 1.0
    #: change rows read per query and capture instance (bounds memory, not transactions)
    page_rows: int = 5000
    #: gating role ``redoline init`` gives sys.sp_cdc_enable_table (None: no gating role;
    #: readers then need SELECT on the source table)
    cdc_role: str | None = None

    def problems(self) -> Iterator[tuple[str, str]]:
        if isinstance(self.poll_interval, bool) or not isinstance(self.poll_interval, int | float):
            yield "poll_interval", f"must be a number of seconds, not {self.poll_interval!r}"
        elif not 0 < self.poll_interval <= 3600:
            yield "poll_interval", "must be more than 0 and at most 3600 seconds"
        if isinstance(self.page_rows, bool) or not isinstance(self.page_rows, int):
            yield "page_rows", f"must be a whole number, not {self.page_rows!r}"
        elif self.page_rows < 1:
            yield "page_rows", "must be at least 1"
        if self.cdc_role is not None and (
            not isinstance(self.cdc_role, str) or not self.cdc_role.strip()
        ):
            yield "cdc_role", "must be a role name"


ENGINE = EngineDescriptor(
    name="sqlserver",
    title="SQL Server",
    schemes=("sqlserver", "mssql"),
    database="connectors.sqlserver:SqlServer",
    dialect="tsql",
    placeholder="?",
    default_port=1433,
    roles={
        "log_reader": "cdc",
        "positions": "positions",
        "snapshot": "snapshot",
        "prepare": "prepare",
        # verify hashes the rows on this host (checksum.py): no engine SQL digest
        "checksum": "checksum",
    },
    options=SqlServerOptions,
    has_log=True,
    position_scheme="sqlserver-lsn",
    # the default collations compare text case-insensitively
    text_compare_ci=True,
)
