"""pyodbc errors from SQL Server as redoline errors: the one table of this connector.

A pyodbc error carries the SQLSTATE and the driver's message, which ends with SQL Server's
own error number in parentheses (``... cdc.fn_cdc_get_all_changes_ ... . (313)``). The number
decides where there is one; the SQLSTATE class otherwise.
"""

from __future__ import annotations

import re
from typing import Any, Final

from connectors.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    MissingObjectError,
    PrerequisiteError,
    ToolkitError,
    connect_setup_error,
)

__all__ = ["OUT_OF_RANGE", "map_error", "native_code"]

#: cdc.fn_cdc_get_all_changes_*: the LSN range is outside the instance's validity interval
OUT_OF_RANGE: Final = 313
#: login failed
_LOGIN: Final = frozenset({18456, 18452, 4060})
#: invalid object name
_MISSING: Final = frozenset({208})
#: permission denied on an object, a statement, or a server-level action
_DENIED: Final = frozenset({229, 230, 297, 300, 15247, 22902})
#: connection gone (the server closed it, killed it, or is shutting down)
_LOST: Final = frozenset({233, 596, 6005, 10053, 10054, 10060})

_CODE = re.compile(r"\((\d+)\)(?:\s*\(SQL\w+\))?\s*$")


def native_code(exc: BaseException) -> int | None:
    """SQL Server's error number in a pyodbc error's message, if it has one."""
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    text = str(args[1] if len(args) > 1 else exc)
    m = _CODE.search(text.strip())
    return int(m.group(1)) if m else None


def _scrub(text: str, endpoint: Any) -> str:
    secret = endpoint.password.reveal() if endpoint.password else ""
    if secret:
        text = text.replace(secret, "***")
    return re.sub(r"(?i)\b(pwd|password)=(\{(?:[^}]|\}\})*\}|[^;]*)", r"\1=***", text)


def map_error(exc: BaseException, endpoint: Any, what: str = "") -> ToolkitError:
    """A pyodbc error as a redoline error, its text scrubbed of the password."""
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    state = str(args[0]) if len(args) > 1 else ""
    text = _scrub(" ".join(str(args[1] if len(args) > 1 else exc).split()), endpoint)
    code = native_code(exc)
    where = endpoint.display + (f" ({what})" if what else "")
    if code in _LOGIN or state.startswith("28"):
        return AuthError(
            f"{where}: the server refused the login: {text}",
            hint="check the user, REDOLINE_SOURCE_PASSWORD and that the login may use the database",
        )
    setup = connect_setup_error(where, text)
    if setup is not None:
        return setup
    if state == "IM002" or "Can't open lib" in text:
        # unixODBC: no such driver section (IM002), or its library is missing (01000)
        return ConfigError(
            f"{where}: the ODBC driver is not installed: {text}",
            hint="install Microsoft's msodbcsql18 or FreeTDS's tdsodbc and name it with "
            "?driver=... (odbcinst -q -d lists the installed ones)",
        )
    if code in _LOST or state.startswith("08") or state in ("HYT00", "HYT01"):
        return ConnectError(f"{where}: cannot reach the server or the connection dropped: {text}")
    if code in _MISSING or state == "42S02":
        return MissingObjectError(f"{where}: {text}")
    if code in _DENIED:
        return PrerequisiteError(
            f"{where}: permission denied: {text}",
            hint="see docs/capture-sqlserver.md#permissions",
        )
    return ToolkitError(f"{where}: {text}" + (f" (SQL Server error {code})" if code else ""))
