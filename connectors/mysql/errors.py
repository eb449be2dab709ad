"""MySQL/MariaDB driver errors -> the redoline hierarchy: the one table of what each server or
client error code means here (:func:`map_error`, used at every boundary of this package)."""

from __future__ import annotations

from typing import Final

from connectors.endpoint import Endpoint
from connectors.errors import (
    AuthError,
    ConnectError,
    DefinitionChangedError,
    MissingObjectError,
    ToolkitError,
    connect_setup_error,
)

__all__ = [
    "AUTH_CODES",
    "CONNECTION_CODES",
    "NO_LOCAL_INFILE",
    "connection_lost",
    "map_error",
]

#: the server refused the login (access denied for user, to database; plugin auth failed)
AUTH_CODES: Final = frozenset({1044, 1045, 1698})
#: unknown database
NO_DATABASE: Final = 1049
#: the table does not exist
NO_TABLE: Final = 1146
#: ER_TABLE_DEF_CHANGED: DDL on a table after the consistent-read transaction began
DEFINITION_CHANGED: Final = 1412
#: the connection could not be made or is gone: can't connect (local socket, TCP), unknown
#: host, server has gone away, lost during a query, commands out of sync, lost at handshake
CONNECTION_CODES: Final = frozenset({2002, 2003, 2005, 2006, 2013, 2014, 2055})
#: "LOAD DATA LOCAL is disabled" (server local_infile=OFF, or the client refused)
NO_LOCAL_INFILE: Final = frozenset({1148, 2068, 3948, 3950})


def connection_lost(exc: BaseException) -> bool:
    """The driver error says the connection is gone (retry on a new one), not the statement."""
    return bool(exc.args) and exc.args[0] in CONNECTION_CODES


def map_error(exc: BaseException, endpoint: Endpoint) -> ToolkitError:
    """Translate a pymysql error into the redoline hierarchy (message names the endpoint)."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    text = exc.args[1] if len(exc.args) > 1 else str(exc)
    where = endpoint.display
    if code in AUTH_CODES:
        return AuthError(
            f"{where}: the server refused the login ({text})",
            hint='check the user and password (url, password = "${ENV}" or '
            "REDOLINE_SOURCE_PASSWORD / REDOLINE_TARGET_PASSWORD)",
        )
    if code == NO_DATABASE:
        return MissingObjectError(
            f"{where}: database {endpoint.database!r} does not exist",
            hint=f"create it (CREATE DATABASE `{endpoint.database}`) or fix the URL",
        )
    setup = connect_setup_error(where, str(text))
    if setup is not None:
        return setup
    if code in CONNECTION_CODES:
        return ConnectError(
            f"{where}: cannot reach the server ({text})",
            hint="is the server running and the host/port right? is a firewall in the way?",
        )
    if code == NO_TABLE:
        return MissingObjectError(f"{where}: {text}")
    if code == DEFINITION_CHANGED:
        # ER_TABLE_DEF_CHANGED: DDL (TRUNCATE, ALTER, RENAME ...) on a table after the
        # consistent-read transaction began; the transaction cannot read that table any more
        return DefinitionChangedError(
            f"{where}: the table's definition changed while the snapshot read it ({text})",
            hint="DDL ran on the table during the snapshot; run sync (or snapshot) again: "
            "the table is loaded again from a new snapshot",
        )
    return (
        ConnectError(f"{where}: {text}")
        if code and code >= 2000
        else ToolkitError(f"{where}: {text}")
    )
