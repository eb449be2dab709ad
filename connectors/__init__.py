"""Everything engine-specific: one package per engine, reached through :class:`Database`."""

from connectors.base import CheckItem, Database, TableFilter, open_database, require_ok
from connectors.endpoint import Endpoint, Secret

__all__ = [
    "CheckItem",
    "Database",
    "Endpoint",
    "Secret",
    "TableFilter",
    "open_database",
    "require_ok",
]
