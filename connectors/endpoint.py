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
from typing import TYPE_CHECKING

from connectors.errors import ConfigError

if TYPE_CHECKING:
    from connectors.engine import EngineDescriptor

__all__ = ["Endpoint", "Secret"]


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
        """The engine's name (the URL scheme selects it: :mod:`connectors.engine`)."""
        return _engine(self.scheme).name

    @property
    def is_file(self) -> bool:
        """The URL names a file (DuckDB), not a server."""
        return _engine(self.scheme).url_is_path

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
        from connectors.engine import engine_for_scheme, schemes

        scheme = url.split("://", 1)[0].lower()
        engine = engine_for_scheme(scheme)
        if engine is None:
            raise ConfigError(
                f"unknown URL scheme {scheme!r} in {_redact(url)!r}",
                key=key,
                hint="use one of: " + ", ".join(schemes()),
            )
        if engine.provides("url"):
            # an engine with URLs of its own shape (ODBC: a DSN or driver attributes)
            parsed: Endpoint = engine.role("url").parse(url, password=password, key=key)
            return parsed
        if engine.url_is_path:
            rest = url.split("://", 1)[1]
            path, _, query = rest.partition("?")
            if not path:
                raise ConfigError(f"a {scheme} URL needs a file path", key=key)
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
            port=port or engine.default_port,
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
        if self.is_file:
            return f"{self.scheme}://{self.path}"
        engine = _engine(self.scheme)
        if engine.provides("url"):
            shown: str = engine.role("url").display(self)
            return shown
        user = urllib.parse.quote(self.user) + "@" if self.user else ""
        query = "?" + urllib.parse.urlencode(self.params) if self.params else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}/{self.database}{query}"

    def url(self) -> str:
        """The full URL including the password. Never log it."""
        if self.is_file or _engine(self.scheme).provides("url") or not self.password:
            return self.display  # an engine with its own URLs puts the password elsewhere
        user = urllib.parse.quote(self.user)
        pw = urllib.parse.quote(self.password.reveal(), safe="")
        query = "?" + urllib.parse.urlencode(self.params) if self.params else ""
        return f"{self.scheme}://{user}:{pw}@{self.host}:{self.port}/{self.database}{query}"

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        return f"Endpoint({self.display!r})"


def _engine(scheme: str) -> EngineDescriptor:
    from connectors.engine import engine_for_scheme

    engine = engine_for_scheme(scheme)
    if engine is None:  # an Endpoint is only built by parse(), which checked the scheme
        raise ConfigError(f"unknown URL scheme {scheme!r}")
    return engine


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
