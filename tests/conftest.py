"""Session-wide throwaway servers (DESIGN.md: Tests).

``mariadb_server`` and ``postgres_server`` start once per test session from the installed
binaries; a missing binary fails the run with the install command — never a skip.
``mysql_db`` and ``pg_db`` give each test a fresh, empty database on those servers.
``mariadb_stock_server`` and ``postgres_stock_server`` are the same engines with the "stock"
profile (distribution defaults: MariaDB in latin1; see ``connectors/devservers.py``), started
only when a test asks for them.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pymysql
import pytest

from connectors import devservers
from connectors.endpoint import Endpoint

_counter = itertools.count(1)
_SERVER_FIXTURES = {
    "mariadb_server": "MariaDB",
    "postgres_server": "PostgreSQL",
    "mariadb_stock_server": "MariaDB",
    "postgres_stock_server": "PostgreSQL",
}
_ran: dict[str, int] = {"MariaDB": 0, "PostgreSQL": 0}
_skipped: list[str] = []
#: the session's servers, checked after every test (see _check_servers)
_servers: list[devservers.DevServer] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)
    if report.when == "call":
        used = set(getattr(report, "fixturenames", ()))  # set in makereport below
        used |= {value for name, value in report.user_properties if name == "server"}
        for fixture, engine in _SERVER_FIXTURES.items():
            if fixture in used:
                _ran[engine] += 1


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    report.fixturenames = tuple(getattr(item, "fixturenames", ()))  # type: ignore[attr-defined]
    if report.when == "call":
        _check_servers(report)
    return report


def _check_servers(report: pytest.TestReport) -> None:
    """A session server that died during a test fails that test with the end of its log and
    is started again on the same port and data directory, so the following tests run
    instead of each failing with "Connection refused" that never says the server died."""
    for server in _servers:
        if server.alive():
            continue
        tail = devservers.log_tail(server)
        own = f"\n\nthe test's own failure:\n{report.longreprtext}" if report.failed else ""
        report.outcome = "failed"
        report.longrepr = (
            f"the session's {server.engine} server (port {server.port}, pid {server.pid}) "
            f"died during this test; restarted it. Its log ends with:\n{tail}{own}"
        )
        devservers.restart(server)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(
        f"integration tests against real servers: {_ran['MariaDB']} MariaDB, "
        f"{_ran['PostgreSQL']} PostgreSQL; skipped tests: {len(_skipped)}"
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A skipped server test is a defect, not progress (DESIGN.md: Tests): fail the run.
    if _skipped and session.exitstatus == 0:
        session.exitstatus = 1


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devservers.DevServer]:
    server = devservers.start_mariadb(Path(tmp_path_factory.mktemp("mariadb")))
    _servers.append(server)
    yield server
    _servers.remove(server)
    devservers.stop(server)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devservers.DevServer]:
    base = Path(tmp_path_factory.mktemp("postgres"))
    server = devservers.start_postgres(base)
    _servers.append(server)
    yield server
    _servers.remove(server)
    devservers.stop(server)


@pytest.fixture(scope="session")
def mariadb_stock_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[devservers.DevServer]:
    base = Path(tmp_path_factory.mktemp("mariadb-stock"))
    server = devservers.start_mariadb(base, profile="stock")
    yield server
    devservers.stop(server)


@pytest.fixture(scope="session")
def postgres_stock_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[devservers.DevServer]:
    base = Path(tmp_path_factory.mktemp("postgres-stock"))
    server = devservers.start_postgres(base, profile="stock")
    yield server
    devservers.stop(server)


def _db_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_counter)}"


@pytest.fixture
def mysql_db(
    mariadb_server: devservers.DevServer, request: pytest.FixtureRequest
) -> Iterator[Endpoint]:
    """A fresh MariaDB database (dropped afterwards); the endpoint logs in as root."""
    # counted in the summary even when a test asks for it at run time (getfixturevalue)
    request.node.user_properties.append(("server", "mariadb_server"))
    name = _db_name("t")
    conn = pymysql.connect(host="127.0.0.1", port=mariadb_server.port, user="root")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    yield Endpoint.parse(f"mariadb://root@127.0.0.1:{mariadb_server.port}/{name}")
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


@pytest.fixture
def pg_db(
    postgres_server: devservers.DevServer, request: pytest.FixtureRequest
) -> Iterator[Endpoint]:
    """A fresh PostgreSQL database (dropped afterwards); the endpoint logs in as postgres."""
    request.node.user_properties.append(("server", "postgres_server"))
    name = _db_name("t")
    dsn = f"host=127.0.0.1 port={postgres_server.port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield Endpoint.parse(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/{name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """Run ``redoline ARGS...`` in-process through the real entry point (error mapping and
    exit codes included); returns exit code, stdout and stderr."""
    from toolkit_cli import output
    from toolkit_cli.app import main

    monkeypatch.setenv("NO_COLOR", "1")
    for console in (output.console, output.err_console):
        monkeypatch.setattr(console, "width", 200)

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["redoline", *args])
        umask = os.umask(0o022)  # main() makes its process private; this process goes on
        os.umask(umask)
        sigterm = signal.getsignal(signal.SIGTERM)  # main() takes SIGTERM over too
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.umask(umask)
            signal.signal(signal.SIGTERM, sigterm)
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return run
