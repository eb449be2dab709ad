"""URLs parse into endpoints, and a password never shows in repr, str or display."""

from __future__ import annotations

import pytest

from connectors.endpoint import Endpoint, Secret
from connectors.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "engine", "host", "port", "user", "database"),
    [
        ("mariadb://repl@127.0.0.1:3306/shop", "mysql", "127.0.0.1", 3306, "repl", "shop"),
        ("mysql://u@db1/shop", "mysql", "db1", 3306, "u", "shop"),
        ("postgresql://app@db2/sales", "postgresql", "db2", 5432, "app", "sales"),
        ("postgres://app@db2:6543/sales", "postgresql", "db2", 6543, "app", "sales"),
    ],
)
def test_server_urls(url: str, engine: str, host: str, port: int, user: str, database: str) -> None:
    ep = Endpoint.parse(url)
    assert (ep.engine, ep.host, ep.port, ep.user, ep.database) == (
        engine,
        host,
        port,
        user,
        database,
    )


def test_duckdb_paths() -> None:
    assert Endpoint.parse("duckdb:///var/lib/r.duckdb").path == "/var/lib/r.duckdb"
    assert Endpoint.parse("duckdb://rel/r.duckdb").path == "rel/r.duckdb"
    assert Endpoint.parse("duckdb://:memory:").path == ":memory:"


def test_password_never_leaks() -> None:
    ep = Endpoint.parse("mariadb://repl:s3cr%40t@db/shop")
    assert ep.password.reveal() == "s3cr@t"
    for text in (repr(ep), str(ep), ep.display, repr(ep.password), str(ep.password)):
        assert "s3cr" not in text
    assert "s3cr%40t" in ep.url()  # only the explicit accessor has it


def test_password_argument_overrides_url() -> None:
    ep = Endpoint.parse("postgresql://u:inurl@h/db", password="fromenv")
    assert ep.password == Secret("fromenv")


def test_tls_params_survive() -> None:
    ep = Endpoint.parse("postgresql://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem")
    assert ep.param == {"sslmode": "verify-full", "sslrootcert": "/ca.pem"}
    assert "sslmode=verify-full" in ep.display


@pytest.mark.parametrize("url", ["oracle2://x@y/z", "http://h/db"])
def test_unknown_scheme(url: str) -> None:
    with pytest.raises(ConfigError, match="unknown URL scheme"):
        Endpoint.parse(url)


def test_not_a_url_hides_password() -> None:
    with pytest.raises(ConfigError) as info:
        Endpoint.parse("repl:hunter2@db")
    assert "not a database URL" in str(info.value)


def test_bad_port() -> None:
    with pytest.raises(ConfigError, match="bad port"):
        Endpoint.parse("mysql://u:pw@h:99999/db")
