"""Where a database is and how to log in: parsed from a URL, with a password that never leaks.

Supported URL forms::

    mysql://user@host:3306/db        mariadb://user:pw@host/db?ssl_ca=/path/ca.pem
    postgresql://user@host:5432/db   postgres://...?sslmode=require
    duckdb:///abs/path/file.duckdb   duckdb://relative/path.duckdb   duckdb://:memory:

``repr``, ``str`` and :attr:`Endpoint.display` show the URL without the password.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Final

from connectors.errors import ConfigError

__all__ = ["ENGINES", "Endpoint", "Secret"]

#: URL scheme -> engine name. MySQL and MariaDB share a connector.
ENGINES: Final = {
    "mysql": "mysql",
    "mariadb": "mysql",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "duckdb": "duckdb",
    "odbc": "odbc",  # snapshot/verify source only: connectors/odbc/url.py
}
DEFAULT_PORTS: Final = {"mysql": 3306, "postgresql": 5432}


class Secret:
    """A string that prints as ``'***'`` everywhere except through :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Endpoint:
    """A parsed database URL. Build it with :meth:`parse`."""

    scheme: str
    host: str = ""
    port: int | None = None
    user: str = ""
    password: Secret = field(default_factory=lambda: Secret(""), repr=False, compare=False)
    database: str = ""
    path: str = ""  # DuckDB file path
    params: tuple[tuple[str, str], ...] = ()

    @property
    def engine(self) -> str:
        return ENGINES[self.scheme]

    @property
    def param(self) -> dict[str, str]:
        return dict(self.params)

    @classmethod
    def parse(cls, url: str, *, password: str | None = None, key: str = "url") -> Endpoint:
        """Parse ``url``; ``password`` (from config or env) overrides one in the URL."""
        if not isinstance(url, str) or "://" not in url:
            raise ConfigError(
                f"{_redact(url)!r} is not a database URL",
                key=key,
                hint="write it as mariadb://user@host:3306/db, postgresql://user@host/db "
                "or duckdb:///path/file.duckdb",
            )
        scheme = url.split("://", 1)[0].lower()
        if scheme not in ENGINES:
            raise ConfigError(
                f"unknown URL scheme {scheme!r} in {_redact(url)!r}",
                key=key,
                hint="use one of: " + ", ".join(sorted(ENGINES)),
            )
        if ENGINES[scheme] == "odbc":
            from connectors.odbc.url import parse as parse_odbc

            return parse_odbc(url, password=password, key=key)
        if ENGINES[scheme] == "duckdb":
            rest = url.split("://", 1)[1]
            path, _, query = rest.partition("?")
            if not path:
                raise ConfigError("a duckdb URL needs a file path", key=key)
            return cls(scheme=scheme, path=path, params=_params(query))
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"bad port in {_redact(url)!r}: {exc}", key=key) from None
        secret = password if password is not None else urllib.parse.unquote(parts.password or "")
        return cls(
            scheme=scheme,
            host=parts.hostname or "localhost",
            port=port or DEFAULT_PORTS[ENGINES[scheme]],
            user=urllib.parse.unquote(parts.username or ""),
            password=Secret(secret),
            database=urllib.parse.unquote(parts.path.lstrip("/")),
            params=_params(parts.query),
        )

    def with_password(self, password: str) -> Endpoint:
        return replace(self, password=Secret(password))

    def with_database(self, database: str) -> Endpoint:
        return replace(self, database=database)

    @property
    def display(self) -> str:
        """The URL without its password: safe for logs, errors and status output."""
        if self.engine == "duckdb":
            return f"{self.scheme}://{self.path}"
        if self.engine == "odbc":
            from connectors.odbc.url import display

            return display(self)
        user = urllib.parse.quote(self.user) + "@" if self.user else ""
        query = "?" + urllib.parse.urlencode(self.params) if self.params else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}/{self.database}{query}"

    def url(self) -> str:
        """The full URL including the password. Never log it."""
        if self.engine in ("duckdb", "odbc") or not self.password:
            return self.display  # an odbc password goes into its connection string only
        user = urllib.parse.quote(self.user)
        pw = urllib.parse.quote(self.password.reveal(), safe="")
        query = "?" + urllib.parse.urlencode(self.params) if self.params else ""
        return f"{self.scheme}://{user}:{pw}@{self.host}:{self.port}/{self.database}{query}"

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        return f"Endpoint({self.display!r})"


def _params(query: str) -> tuple[tuple[str, str], ...]:
    return tuple(urllib.parse.parse_qsl(query, keep_blank_values=True))


def _redact(url: object) -> str:
    """``url`` with any password replaced, for error messages."""
    text = str(url)
    try:
        parts = urllib.parse.urlsplit(text)
        if parts.password:
            netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
            return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        pass
    return text
