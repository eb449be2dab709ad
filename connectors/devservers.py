"""Throwaway MariaDB and PostgreSQL servers for tests, the demo, and benchmarks.

Each server runs from the installed binaries in its own directory on a free loopback port,
configured for replication (DESIGN.md: Tests). ``--no-defaults`` keeps the machine's own
server configuration out. The same code backs the pytest fixtures and
``redoline dev-servers up|down|status``.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from connectors.errors import PrerequisiteError

__all__ = [
    "PROFILES",
    "STARTERS",
    "DevServer",
    "find_free_port",
    "log_tail",
    "restart",
    "start_mariadb",
    "start_postgres",
    "stop",
]

#: "tuned": utf8mb4 server defaults, generous buffers (what the suite always used);
#: "stock": what the distribution's packages give (MariaDB in latin1/latin1_swedish_ci, initdb
#: defaults) plus only the settings redoline requires to capture at all.
PROFILES = ("tuned", "stock")

INSTALL_HINT = "apt-get update && apt-get install -y mariadb-server postgresql"

# Servers we started in this process, kept so they are reaped (not garbage-collected) on stop.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class DevServer:
    """A running throwaway server: how to reach it and how to stop it."""

    engine: str  # "mariadb" | "postgresql"
    port: int
    datadir: str
    socket_dir: str
    pid: int
    url: str  # root/superuser URL without password
    profile: str = "tuned"

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def alive(self) -> bool:
        child = _CHILDREN.get(self.pid)
        if child is not None:
            return child.poll() is None
        try:
            # reap it first if it is our own exited child, or kill(0) sees the zombie
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                return False
        except ChildProcessError:
            pass
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        try:
            # a killed server that is not our child may stay a zombie nobody reaps
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
        except OSError:
            return True  # no /proc: kill(0) is all we can tell


def find_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _which(*names: str, extra_dirs: tuple[str, ...] = ()) -> str:
    for name in names:
        for d in extra_dirs:
            candidate = os.path.join(d, name)
            if os.access(candidate, os.X_OK):
                return candidate
        found = shutil.which(name)
        if found:
            return found
    raise PrerequisiteError(
        f"cannot find {' or '.join(names)} on this machine",
        hint=INSTALL_HINT,
    )


def _wait_port(port: int, timeout: float, what: str, log: Path, pid: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None:
            try:
                os.kill(pid, 0)
            except OSError:
                break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise PrerequisiteError(f"{what} did not start on port {port}; its log ends with:\n{tail}")


# --------------------------------------------------------------------------- MariaDB


def start_mariadb(
    base: Path,
    *,
    port: int | None = None,
    server_id: int = 1,
    fast: bool = True,
    binlog: bool = True,
    extra_args: tuple[str, ...] = (),
    profile: str = "tuned",
) -> DevServer:
    """Initialise and start a MariaDB server with binlog in ROW/FULL/FULL mode.

    ``fast`` relaxes fsync (tests); benchmarks that measure durability pass ``fast=False``.
    ``binlog=False`` starts one as MariaDB ships by default (no binlog, MIXED, NO_LOG
    metadata): what ``redoline check`` must catch. ``profile="stock"`` leaves the character
    set, collation, buffers, packet size, local_infile and GTID settings at MariaDB's
    defaults (latin1 / latin1_swedish_ci): only the binlog settings capture requires are set.
    """
    _check_profile(profile)
    tuned = profile == "tuned"
    mariadbd = _which("mariadbd", "mysqld", extra_dirs=("/usr/sbin",))
    install_db = _which("mariadb-install-db", "mysql_install_db")
    port = port or find_free_port()
    base = base.resolve()
    datadir, rundir = base / "data", base / "run"
    rundir.mkdir(parents=True, exist_ok=True)
    log = base / "mariadb.log"
    if not (datadir / "mysql").exists():
        datadir.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={datadir}",
                # a private tmpdir: bootstraps running at once in the shared /tmp were seen
                # failing ("Could not remove temporary table '/tmp/#sql-temptable-...'")
                f"--tmpdir={rundir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root" if os.geteuid() == 0 else f"--user={os.environ.get('USER', '')}",
            ],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise PrerequisiteError(f"mariadb-install-db failed:\n{res.stdout}\n{res.stderr}")
    args = [
        mariadbd,
        "--no-defaults",
        f"--datadir={datadir}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={rundir / 'mysqld.sock'}",
        f"--tmpdir={rundir}",
        f"--pid-file={rundir / 'mysqld.pid'}",
        f"--log-error={log}",
        f"--server-id={server_id}",
        "--skip-name-resolve",
    ]
    if tuned:
        args += [
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--max-connections=200",
            "--innodb-buffer-pool-size=256M",
            "--max-allowed-packet=256M",
            "--local-infile=1",
        ]
    if binlog:
        args += [
            "--log-bin=mysql-bin",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
        ]
        if tuned:
            args += ["--log-slave-updates=ON", "--gtid-strict-mode=ON"]
    if fast:
        args += ["--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0"]
    else:
        # durable commits, as a production source would run (MariaDB's default is sync_binlog=0)
        args += ["--innodb-flush-log-at-trx-commit=1", "--sync-binlog=1"]
    args += extra_args
    if os.geteuid() == 0:
        args.append("--user=root")
    with open(log, "ab") as logf:
        proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    _wait_port(port, 60, "MariaDB", log, proc.pid)
    server = DevServer(
        engine="mariadb",
        port=port,
        datadir=str(datadir),
        socket_dir=str(rundir),
        pid=proc.pid,
        url=f"mariadb://root@127.0.0.1:{port}/",
        profile=profile,
    )
    _mariadb_bootstrap(server)
    return server


def _mariadb_bootstrap(server: DevServer) -> None:
    """Let root log in over TCP from 127.0.0.1 without a password."""
    import pymysql

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = pymysql.connect(
                unix_socket=os.path.join(server.socket_dir, "mysqld.sock"), user="root"
            )
            break
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'")
        cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
        cur.execute("FLUSH PRIVILEGES")


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> str:
    found = shutil.which("pg_config")
    if found:
        res = subprocess.run([found, "--bindir"], capture_output=True, text=True)
        if res.returncode == 0 and os.path.exists(os.path.join(res.stdout.strip(), "initdb")):
            return res.stdout.strip()
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for d in candidates:
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    raise PrerequisiteError("cannot find PostgreSQL's initdb", hint=INSTALL_HINT)


def _as_pg_user(cmd: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root: run them as the postgres OS user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _chown_pg(path: Path) -> None:
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        for p in [path, *path.rglob("*")]:
            os.chown(p, pw.pw_uid, pw.pw_gid)
        # every parent must be traversable by postgres
        parent = path.parent
        while parent != parent.parent:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o011)
            parent = parent.parent


def start_postgres(
    base: Path,
    *,
    port: int | None = None,
    fast: bool = True,
    profile: str = "tuned",
    settings: dict[str, str] | None = None,
    hba: tuple[str, ...] = (),
) -> DevServer:
    """Initialise and start a PostgreSQL server with ``wal_level=logical``.

    ``profile="stock"``: initdb's defaults (encoding and locale from the environment, as
    Debian's ``pg_createcluster`` does; the system time zone) and server defaults, except
    ``wal_level=logical``, which capture requires. ``settings`` override server parameters
    (``-c name=value``); ``hba`` lines go first in ``pg_hba.conf`` (they win over the trust
    lines initdb writes).
    """
    _check_profile(profile)
    tuned = profile == "tuned"
    bindir = _pg_bindir()
    port = port or find_free_port()
    base = base.resolve()
    datadir, rundir = base / "data", base / "run"
    base.mkdir(parents=True, exist_ok=True)
    rundir.mkdir(parents=True, exist_ok=True)
    log = base / "postgres.log"
    log.touch()
    _chown_pg(base)
    if not (datadir / "PG_VERSION").exists():
        initdb = [os.path.join(bindir, "initdb"), "-D", str(datadir), "-U", "postgres"]
        initdb.append("--auth=trust")
        if tuned:
            initdb += ["--encoding=UTF8", "--locale=C.UTF-8"]
        res = subprocess.run(
            _as_pg_user(initdb),
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise PrerequisiteError(f"initdb failed:\n{res.stdout}\n{res.stderr}")
        hba_path = datadir / "pg_hba.conf"
        lines = [*hba, hba_path.read_text(), "host replication all 127.0.0.1/32 trust\n"]
        hba_path.write_text("\n".join(lines))
    options = [
        f"-p {port}",
        f"-k {rundir}",
        "-c listen_addresses=127.0.0.1",
        "-c wal_level=logical",
    ]
    if tuned:
        options += [
            "-c max_replication_slots=40",
            "-c max_wal_senders=40",
            "-c max_connections=200",
            "-c shared_buffers=256MB",
            "-c timezone=UTC",
        ]
    if fast:
        options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
    options += [f"-c {name}={value}" for name, value in (settings or {}).items()]
    res = subprocess.run(
        _as_pg_user(
            [
                os.path.join(bindir, "pg_ctl"),
                "-D",
                str(datadir),
                "-l",
                str(log),
                "-o",
                " ".join(options),
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise PrerequisiteError(f"PostgreSQL did not start:\n{res.stdout}{res.stderr}\n{tail}")
    pid = int((datadir / "postmaster.pid").read_text().split()[0])
    _wait_port(port, 30, "PostgreSQL", log, pid)
    return DevServer(
        engine="postgresql",
        port=port,
        datadir=str(datadir),
        socket_dir=str(rundir),
        pid=pid,
        url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        profile=profile,
    )


#: server kind -> how to start one in a directory (``redoline dev-servers up --engine``)
STARTERS: dict[str, Callable[[Path], DevServer]] = {
    "mariadb": lambda directory: start_mariadb(directory),
    "postgresql": lambda directory: start_postgres(directory),
}


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown server profile {profile!r}; known: {', '.join(PROFILES)}")


# --------------------------------------------------------------------------- both


def stop(server: DevServer, *, timeout: float = 30) -> None:
    """Stop ``server`` (fast shutdown); kill it if it does not stop in ``timeout`` seconds."""
    if server.engine == "postgresql":
        subprocess.run(
            _as_pg_user(
                [
                    os.path.join(_pg_bindir(), "pg_ctl"),
                    "-D",
                    server.datadir,
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "stop",
                ]
            ),
            capture_output=True,
        )
    elif server.alive():
        os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while server.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if server.alive():
        os.kill(server.pid, signal.SIGKILL)
    child = _CHILDREN.pop(server.pid, None)
    if child is not None:
        child.wait(timeout)


def _log_path(server: DevServer) -> Path:
    base = Path(server.datadir).parent
    return base / ("mariadb.log" if server.engine == "mariadb" else "postgres.log")


def log_tail(server: DevServer, chars: int = 3000) -> str:
    """The end of ``server``'s error log (why it died, when it did)."""
    log = _log_path(server)
    return log.read_text(errors="replace")[-chars:] if log.exists() else f"({log} is missing)"


def restart(server: DevServer, *, fast: bool = True) -> DevServer:
    """Start ``server`` again on its port, data directory and profile (stopping it first if it
    still runs); ``server`` is updated in place (new pid) and returned, so whoever holds it
    keeps a valid handle."""
    if server.alive():
        stop(server)
    _CHILDREN.pop(server.pid, None)
    base = Path(server.datadir).parent
    if server.engine == "mariadb":
        again = start_mariadb(base, port=server.port, fast=fast, profile=server.profile)
    else:
        # a killed postmaster leaves its pid file, which a zombie pid makes look live; its
        # backends notice the death and exit within moments, freeing the shared memory
        Path(server.datadir, "postmaster.pid").unlink(missing_ok=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                again = start_postgres(base, port=server.port, fast=fast, profile=server.profile)
                break
            except PrerequisiteError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
    server.pid = again.pid
    return server


def save_state(path: Path, servers: list[DevServer]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([s.to_json() for s in servers], indent=2))


def load_state(path: Path) -> list[DevServer]:
    if not path.exists():
        return []
    return [DevServer(**item) for item in json.loads(path.read_text())]
