"""The narrow database interface the Oracle connector is built on: SQL sent, rows received.

Every module of this package talks to Oracle through a :class:`Session` and nothing else, so
the whole connector runs against :class:`OracleSession` (``oracledb`` thin mode) on a live
server and against a scripted fake of the documented views in the tests
(``tests/connectors/oracle/fake.py``). Binds are named (``:scn``), as Oracle's are.

Errors cross this boundary as :class:`SessionError` carrying the server's code
(``ORA-01291``, ``DPY-6005``); :func:`map_error` turns them into the redoline hierarchy once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from connectors.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    MissingObjectError,
    PrerequisiteError,
    ReplicationError,
    ToolkitError,
    connect_setup_error,
)

if TYPE_CHECKING:
    from connectors.endpoint import Endpoint

__all__ = ["OracleSession", "Session", "SessionError", "map_error", "open_session", "use_sessions"]

Params = Mapping[str, Any] | None


class SessionError(Exception):
    """A statement failed on the server; ``code`` is Oracle's (``ORA-00942``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Session(Protocol):
    """One connection to an Oracle database."""

    def query(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        """Run a query; all of its rows."""
        ...

    def stream(self, sql: str, params: Params = None) -> Iterator[tuple[Any, ...]]:
        """Run a query; its rows as they are fetched."""
        ...

    def execute(self, sql: str, params: Params = None) -> None:
        """Run a statement or a PL/SQL block (autocommit off: DDL commits on its own)."""
        ...

    def commit(self) -> None: ...

    def close(self) -> None: ...


#: rows fetched per round trip
ARRAYSIZE: Final = 2000


class OracleSession:
    """A :class:`Session` over an ``oracledb`` thin-mode connection."""

    def __init__(self, endpoint: Endpoint) -> None:
        import oracledb

        self._oracledb = oracledb
        # NUMBER as Decimal (scale kept), LOBs as str/bytes: values, not locators
        oracledb.defaults.fetch_decimals = True
        oracledb.defaults.fetch_lobs = False
        self.endpoint = endpoint
        params = endpoint.param
        dsn = f"{endpoint.host}:{endpoint.port}/{endpoint.database}"
        try:
            self.conn = oracledb.connect(
                user=endpoint.user or None,
                password=endpoint.password.reveal() if endpoint.password else None,
                dsn=dsn,
                tcp_connect_timeout=float(params.get("connect_timeout", 10)),
            )
        except oracledb.Error as exc:
            raise map_error(_session_error(exc), endpoint) from None

    def _cursor(self) -> Any:
        cur = self.conn.cursor()
        cur.arraysize = ARRAYSIZE
        cur.prefetchrows = ARRAYSIZE
        return cur

    def query(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        return list(self.stream(sql, params))

    def stream(self, sql: str, params: Params = None) -> Iterator[tuple[Any, ...]]:
        try:
            cur = self._cursor()
        except self._oracledb.Error as exc:
            raise _session_error(exc) from None
        try:
            cur.execute(sql, dict(params or {}))
            while rows := cur.fetchmany():
                yield from rows
        except self._oracledb.Error as exc:
            raise _session_error(exc) from None
        finally:
            with contextlib.suppress(Exception):
                cur.close()  # also when the caller stops reading early

    def execute(self, sql: str, params: Params = None) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, dict(params or {}))
        except self._oracledb.Error as exc:
            raise _session_error(exc) from None

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def _session_error(exc: Any) -> SessionError:
    err = exc.args[0] if exc.args else exc
    code = str(getattr(err, "full_code", "") or "")
    message = str(getattr(err, "message", "") or err).strip()
    if message.startswith(code + ":"):
        message = message[len(code) + 1 :].strip()
    return SessionError(code or "DPY-0000", message.splitlines()[0] if message else "")


Factory = Callable[["Endpoint"], Session]
_factory: list[Factory] = []


def open_session(endpoint: Endpoint) -> Session:
    """A session on ``endpoint`` (``oracledb`` thin mode, or :func:`use_sessions`'s factory)."""
    if _factory:
        return _factory[-1](endpoint)
    try:
        import oracledb  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError(
            "the Oracle connector needs the oracledb driver",
            hint="pip install 'redoline[oracle]' (oracledb, thin mode: no Oracle client needed)",
        ) from None
    return OracleSession(endpoint)


@contextlib.contextmanager
def use_sessions(factory: Factory) -> Iterator[None]:
    """Sessions come from ``factory`` inside the block (the tests' fake server)."""
    _factory.append(factory)
    try:
        yield
    finally:
        _factory.remove(factory)


#: codes that mean the connection is gone or the server unreachable (retry)
_CONNECT: Final = frozenset(
    {
        "ORA-03113",
        "ORA-03114",
        "ORA-03135",
        "ORA-12170",
        "ORA-12514",
        "ORA-12528",
        "ORA-12537",
        "ORA-12541",
        "ORA-12543",
        "ORA-01033",
        "ORA-01034",
        "ORA-01089",
        "DPY-4011",
        "DPY-6005",
        "DPY-1001",
    }
)
#: the redo we need cannot be read any more
_LOG_LOST: Final = {
    "ORA-01291": "a redo log file LogMiner needs is missing",
    "ORA-01284": "a redo log file cannot be opened",
    "ORA-00308": "an archived redo log cannot be opened",
    "ORA-01555": "the undo needed for the snapshot's AS OF SCN read is gone (snapshot too old)",
    "ORA-08181": "the snapshot's SCN is older than the undo the database keeps",
}


def map_error(exc: SessionError, endpoint: Endpoint, doing: str = "") -> ToolkitError:
    """``exc`` as a redoline error (what is wrong and what to do)."""
    where = endpoint.display + (f" ({doing})" if doing else "")
    text = f"{exc.code}: {exc.message}"
    if exc.code in ("ORA-01017", "ORA-28000", "ORA-01045", "ORA-28001"):
        return AuthError(
            f"{where}: the server refused the login ({text})",
            hint="check the user and password in the URL, and that the account is open",
        )
    if exc.code in _CONNECT:
        return ConnectError(
            f"{where}: cannot reach the database ({text})",
            hint="is the listener up and the service name in the URL right?",
        )
    if exc.code in ("ORA-00942", "ORA-04043"):
        return MissingObjectError(
            f"{where}: {text}",
            hint="the table does not exist, or the user lacks SELECT on it (redoline check)",
        )
    if exc.code in ("ORA-01031", "ORA-01435", "ORA-06550"):
        return PrerequisiteError(
            f"{where}: {text}", hint="grant what `redoline check` lists for this user"
        )
    if exc.code in _LOG_LOST:
        return ReplicationError(
            f"{where}: {_LOG_LOST[exc.code]} ({text})",
            hint="restore the archived log (RMAN) or take a new snapshot",
        )
    setup = connect_setup_error(where, text)
    if setup is not None:
        return setup
    return ToolkitError(f"{where}: {text}")
