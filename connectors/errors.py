"""The error hierarchy shared by every part of redoline.

Every error a user can meet is a :class:`ToolkitError`. Each class builds its whole message
in ``__init__`` — what is wrong and what to do — so the CLI prints ``str(err)`` and nothing
else. Driver exceptions are mapped to these classes once, at the connector boundary.

Category is a mixin, so retry code decides by ``isinstance`` and never by message::

    ToolkitError                      exit_code
    ├── ConfigError                       2   bad TOML, unknown key, bad URL, missing value
    ├── ConnectionFailure                 3   (no category: one of these three)
    │   ├── ConnectError (Transient)      3   host unreachable, connection dropped
    │   ├── AuthError (Terminal)          3   wrong password / user not allowed
    │   └── ConnectSetupError (Terminal)  3   TLS refused or unverifiable, host name unknown
    ├── MissingObjectError (Terminal)     3   database, schema or table does not exist
    ├── PrerequisiteError (Terminal)      4   server not configured for replication
    ├── ReplicationError (Terminal)       5   log purged, slot missing, position lost
    │   └── DefinitionChangedError        5   DDL on a table under the snapshot's read
    ├── SchemaError (Terminal)            6   unknown / unmappable type, no key where one is needed
    ├── ApplyError (Terminal)             6   the target rejected a row
    ├── TrailError (Terminal)             7   corrupt, discontinuous or unreadable trail
    │   └── UnknownDefinitionError        7   no definition of a table version in the trail
    ├── LockedError (Terminal)            8   another run holds the lock
    ├── StorageError (Terminal)           9   a local file or directory cannot be written
    └── RetriesExhaustedError (Terminal) 75   a transient error outlasted the retry budget

Exit code 1 is reserved for "differences found" (verify) and "prerequisites not met" (check
prints its table and exits 4 only through PrerequisiteError).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ApplyError",
    "AuthError",
    "ConfigError",
    "ConnectError",
    "ConnectSetupError",
    "ConnectionFailure",
    "DefinitionChangedError",
    "LockedError",
    "MissingObjectError",
    "PrerequisiteError",
    "ReplicationError",
    "RetriesExhaustedError",
    "SchemaError",
    "StorageError",
    "Terminal",
    "ToolkitError",
    "TrailError",
    "Transient",
    "UnknownDefinitionError",
]


class ToolkitError(Exception):
    """Root of every error redoline raises on purpose."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message}\n  hint: {hint}")


class Transient:
    """Mixin: the operation may succeed if retried (with backoff)."""


class Terminal:
    """Mixin: retrying cannot help; a person has to act."""


class ConfigError(ToolkitError, Terminal):
    """Configuration is malformed, incomplete, or names something unknown."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file, self.line, self.key = file, line, key
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        if key:
            where += f"[{key}] "
        super().__init__(where + message, hint=hint)


class ConnectionFailure(ToolkitError):
    """A connection failed; the subclass says whether retrying can help."""

    exit_code = 3


class ConnectError(ConnectionFailure, Transient):
    """The database could not be reached, or the connection dropped."""

    exit_code = 3


class AuthError(ConnectionFailure, Terminal):
    """The server refused the credentials."""

    exit_code = 3


class ConnectSetupError(ConnectionFailure, Terminal):
    """The connection cannot work as configured (TLS, host name): retrying will not help."""

    exit_code = 3


#: (text a driver, OpenSSL or the resolver puts in the message, what to do)
_SETUP_FAILURES = (
    (
        ("certificate verify failed", "CERTIFICATE_VERIFY_FAILED", "certificate verify"),
        "TLS: the server's certificate could not be verified",
        "point the URL's CA option at the CA that signed the server's certificate "
        "(MySQL/MariaDB: ssl_ca=PATH; PostgreSQL: sslrootcert=PATH), or check the host name "
        "matches the certificate; see docs/install.md#tls",
    ),
    (
        ("SSL is required but the server doesn't support it", "does not support SSL"),
        "TLS was asked for but the server does not offer it",
        "enable TLS on the server, or remove the TLS options from the URL "
        "(MySQL/MariaDB: ssl, ssl_ca; PostgreSQL: sslmode); see docs/install.md#tls",
    ),
    (
        ("root certificate file", "could not read root certificate", "certificate file"),
        "TLS: a certificate file the URL names cannot be read",
        "check the path in the URL (PostgreSQL: sslrootcert, sslcert, sslkey)",
    ),
    (
        (
            "Name or service not known",
            "nodename nor servname",
            "could not translate host name",
            "No address associated with hostname",
        ),
        "the host name does not resolve",
        "check the host in the URL (a typo?) and the machine's DNS",
    ),
)


def connect_setup_error(where: str, text: str) -> ConnectSetupError | None:
    """A connection failure that no retry can fix (bad TLS setup, unknown host), else None.

    The texts come from OpenSSL and the system resolver, so every driver shares them.
    """
    for needles, what, hint in _SETUP_FAILURES:
        if any(n in text for n in needles):
            return ConnectSetupError(f"{where}: {what} ({text})", hint=hint)
    return None


class MissingObjectError(ToolkitError, Terminal):
    """A database, schema or table that the configuration names does not exist."""

    exit_code = 3


class PrerequisiteError(ToolkitError, Terminal):
    """The server is not configured for replication (see ``redoline check``)."""

    exit_code = 4


class ReplicationError(ToolkitError, Terminal):
    """The log can no longer be read continuously from our position."""

    exit_code = 5


class DefinitionChangedError(ReplicationError):
    """DDL changed a table after a snapshot's consistent read began: that read cannot see it
    any more (MariaDB/MySQL 1412); a new snapshot can."""


class SchemaError(ToolkitError, Terminal):
    """A table or column cannot be replicated as it is (type, key, shape)."""

    exit_code = 6


class ApplyError(ToolkitError, Terminal):
    """The target rejected a change."""

    exit_code = 6


class TrailError(ToolkitError, Terminal):
    """The trail is corrupt, discontinuous, or cannot be decrypted."""

    exit_code = 7

    def __init__(
        self,
        message: str,
        *,
        segment: str | None = None,
        offset: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.segment, self.offset = segment, offset
        where = ""
        if segment is not None:
            where = f"segment {segment}" + (f" offset {offset}" if offset is not None else "")
            where += ": "
        super().__init__(where + message, hint=hint)


class UnknownDefinitionError(TrailError):
    """The trail holds no definition of a table version a change names (apply can still empty
    a table it knows only by name: a TRUNCATE that is the table's first change)."""


class LockedError(ToolkitError, Terminal):
    """Another redoline run holds the lock for this job."""

    exit_code = 8


class StorageError(ToolkitError, Terminal):
    """A local file or directory (trail, state, DuckDB target) cannot be created or written."""

    exit_code = 9

    #: errno -> what to do about it
    _FIXES: ClassVar[dict[str, str]] = {
        "ENOSPC": "free space on that filesystem (or move the trail with [trail] dir), then "
        "run again: nothing was lost, the run resumes from its last durable point",
        "EDQUOT": "raise the disk quota or free space, then run again: nothing was lost",
        "EACCES": "give the user running redoline write access to it, or choose another directory",
        "EPERM": "give the user running redoline write access to it, or choose another directory",
        "EROFS": "the filesystem is read-only: choose a directory on a writable filesystem",
        "ENOTDIR": "a file stands where a directory is expected: move it away or choose "
        "another path",
        "EEXIST": "a file stands where a directory is expected: move it away or choose "
        "another path",
        "EISDIR": "a directory stands where a file is expected: move it away or choose "
        "another path",
    }

    @classmethod
    def handles(cls, exc: OSError) -> bool:
        """True for the local-storage conditions a person can fix (not bugs, not networks)."""
        import errno

        return errno.errorcode.get(exc.errno or 0, "") in cls._FIXES

    @classmethod
    def from_oserror(cls, exc: OSError, what: str = "") -> StorageError:
        import errno

        name = errno.errorcode.get(exc.errno or 0, "")
        import os

        path = os.path.abspath(exc.filename) if exc.filename is not None else "?"
        subject = f"{what} {path}" if what else str(path)
        return cls(
            f"cannot write {subject}: {exc.strerror or exc}",
            hint=cls._FIXES.get(name, "check the path and its permissions"),
        )


class RetriesExhaustedError(ToolkitError, Terminal):
    """A transient error (unreachable server) lasted longer than the run may wait for it."""

    exit_code = 75
