"""``odbc://`` URLs: a DSN from odbc.ini, or a DSN-less driver connection string.

Forms::

    odbc://DSN                         the data source DSN of odbc.ini (user and password
    odbc://user@DSN?Port=5433          from there, or the URL's user; attributes added)
    odbc:///?driver=PostgreSQL Unicode&server=db1&port=5432&database=shop
                                       no DSN: every query parameter is a connection
                                       string attribute (DRIVER=...;SERVER=...;...)

``consistency`` is redoline's own parameter (connectors/odbc/snapshot.py), never sent to the
driver. A password is never part of the URL: ``PWD``/``PASSWORD`` parameters and
``user:password@`` are refused, the password comes from ``REDOLINE_SOURCE_PASSWORD`` or the
configuration's ``password`` and is added to the connection string only when connecting.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import TYPE_CHECKING, Final

from connectors.errors import ConfigError

if TYPE_CHECKING:
    from connectors.endpoint import Endpoint

__all__ = ["CONSISTENCY_MODES", "connection_string", "display", "parse", "scrub"]

#: redoline's own URL parameters (not connection string attributes)
OWN_PARAMS: Final = ("consistency",)
#: how a snapshot reads (connectors/odbc/snapshot.py)
CONSISTENCY_MODES: Final = ("serializable", "repeatable-read", "none")
_PASSWORD_KEYS: Final = frozenset({"pwd", "password"})


def parse(url: str, *, password: str | None, key: str) -> Endpoint:
    """The :class:`Endpoint` of an ``odbc://`` URL (host = DSN, params = attributes)."""
    from connectors.endpoint import Endpoint, Secret

    rest = url.split("://", 1)[1]
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    if "?" in netloc:  # odbc://DSN?attr=value
        netloc, _, query = netloc.partition("?")
    user, at, dsn = netloc.rpartition("@")
    if not at:
        user, dsn = "", netloc
    if ":" in user:
        raise ConfigError(
            "an odbc URL must not hold a password",
            key=key,
            hint='give it in REDOLINE_SOURCE_PASSWORD or the configuration\'s password = "${VAR}"',
        )
    if path:
        raise ConfigError(
            f"an odbc URL has no path (got /{path})",
            key=key,
            hint="odbc://DSN or odbc:///?driver=...&server=...&database=...",
        )
    params = tuple(urllib.parse.parse_qsl(query, keep_blank_values=True))
    for name, _value in params:
        if name.lower() in _PASSWORD_KEYS:
            raise ConfigError(
                f"an odbc URL must not hold a password (parameter {name!r})",
                key=key,
                hint="give it in REDOLINE_SOURCE_PASSWORD or the configuration's "
                'password = "${VAR}"',
            )
    dsn = urllib.parse.unquote(dsn)
    names = {n.lower() for n, _ in params}
    if not dsn and "driver" not in names and "dsn" not in names:
        raise ConfigError(
            "an odbc URL needs a DSN (odbc://DSN) or a driver (odbc:///?driver=...)",
            key=key,
            hint="the driver names are the sections of /etc/odbcinst.ini (odbcinst -q -d)",
        )
    for name, value in params:
        if name.lower() == "consistency" and value not in CONSISTENCY_MODES:
            raise ConfigError(
                f"consistency={value!r} is not one of {', '.join(CONSISTENCY_MODES)}",
                key=key,
            )
    return Endpoint(
        scheme="odbc",
        host=dsn,
        user=urllib.parse.unquote(user),
        password=Secret(password or ""),
        params=params,
    )


def display(endpoint: Endpoint) -> str:
    """The URL again (it never holds a password)."""
    user = urllib.parse.quote(endpoint.user) + "@" if endpoint.user else ""
    dsn = urllib.parse.quote(endpoint.host, safe="")
    query = "?" + urllib.parse.urlencode(endpoint.params) if endpoint.params else ""
    return f"odbc://{user}{dsn}" + ("" if dsn else "/") + query


def _attr(value: str) -> str:
    """A connection string value, braced when it holds a separator or a brace."""
    if re.search(r"[;{}=\s]", value) or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def connection_string(endpoint: Endpoint) -> str:
    """``DSN=...;UID=...;PWD=...`` for pyodbc. Holds the password: never log it."""
    parts = []
    if endpoint.host:
        parts.append(f"DSN={_attr(endpoint.host)}")
    for name, value in endpoint.params:
        if name.lower() in OWN_PARAMS:
            continue
        parts.append(f"{name.upper() if name.lower() == 'driver' else name}={_attr(value)}")
    if endpoint.user:
        parts.append(f"UID={_attr(endpoint.user)}")
    if endpoint.password:
        parts.append(f"PWD={_attr(endpoint.password.reveal())}")
    return ";".join(parts)


def scrub(text: str, endpoint: Endpoint) -> str:
    """``text`` (a driver's message) without the password or any ``PWD=`` value in it."""
    secret = endpoint.password.reveal()
    if secret:
        text = text.replace(secret, "***")
    return re.sub(r"(?i)\b(pwd|password)=(\{(?:[^}]|\}\})*\}|[^;]*)", r"\1=***", text)


def own_param(endpoint: Endpoint, name: str, default: str) -> str:
    """One of redoline's own URL parameters (``consistency``)."""
    for key, value in endpoint.params:
        if key.lower() == name:
            return value
    return default
