"""The SQL Server connector through a real ODBC driver (FreeTDS's tdsodbc, installed by
.ci/setup.sh): the connection string it builds is one the driver accepts, and what the driver
says when no SQL Server answers is mapped to redoline's errors with the password scrubbed.
No SQL Server can run here (docs/capture-sqlserver.md#first-live-run)."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from connectors.base import open_database
from connectors.endpoint import Endpoint
from connectors.errors import ConfigError, ConnectError, Transient

PASSWORD = "pw;s3cret"


def freetds_installed() -> None:
    out = subprocess.run(["odbcinst", "-q", "-d"], capture_output=True, text=True, check=False)
    assert "[FreeTDS]" in out.stdout, "FreeTDS (tdsodbc) is not installed: run .ci/setup.sh"


@pytest.fixture
def closing_port() -> Iterator[int]:
    """A TCP port whose listener accepts and hangs up at once (no TDS spoken)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()


def test_a_server_that_hangs_up_is_a_transient_connect_error(closing_port: int) -> None:
    freetds_installed()
    db = open_database(
        Endpoint.parse(
            f"sqlserver://app@127.0.0.1:{closing_port}/shop?driver=FreeTDS&TDS_Version=7.4",
            password=PASSWORD,
        )
    )
    with pytest.raises(ConnectError) as info:
        db.connect()
    assert isinstance(info.value, Transient)
    assert "FreeTDS" in str(info.value) and "s3cret" not in str(info.value)


def test_nothing_listening_is_a_connect_error() -> None:
    freetds_installed()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # a port nobody listens on
    db = open_database(Endpoint.parse(f"mssql://app@127.0.0.1:{port}/shop?driver=FreeTDS"))
    with pytest.raises(ConnectError, match="Adaptive Server is unavailable"):
        db.connect()


def test_an_unknown_driver_names_the_packages() -> None:
    db = open_database(Endpoint.parse("sqlserver://app@127.0.0.1/shop?driver=No Such Driver"))
    with pytest.raises(ConfigError, match=r"msodbcsql18 or FreeTDS's tdsodbc"):
        db.connect()
