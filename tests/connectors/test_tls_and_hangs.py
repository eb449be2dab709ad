"""TLS to sources, and the faults that made `capture --until-caught-up` retry forever.

Each case runs the CLI in a subprocess the way cron would and asserts the exit code and the
first error line: terminal conditions (bad certificate, no TLS on the server, pg_hba refusal,
wal_level too low, a host name that does not resolve) stop at once; a transient one (nothing
listening) is retried for ``[source] retry_for`` and then ends with exit 75.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors import devservers

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- certificates


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name = (
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]) if issuer else name
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def make_pki(folder: Path) -> dict[str, Path]:
    """A private CA with a server certificate for 127.0.0.1, and an unrelated CA."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, other_key, srv_key, cli_key = _key(), _key(), _key(), _key()
    ca = _cert("redoline test CA", ca_key, None, ca=True)
    other = _cert("some other CA", other_key, None, ca=True)
    srv = _cert("127.0.0.1", srv_key, ("redoline test CA", ca_key), ca=False)
    # a client certificate whose CN is the database user it logs in as
    cli = _cert("certuser", cli_key, ("redoline test CA", ca_key), ca=False)
    paths = {
        "ca": folder / "ca.pem",
        "other_ca": folder / "other-ca.pem",
        "cert": folder / "server.pem",
        "key": folder / "server.key",
        "client_cert": folder / "client.pem",
        "client_key": folder / "client.key",
    }
    paths["client_cert"].write_bytes(cli.public_bytes(serialization.Encoding.PEM))
    _write_key(cli_key, paths["client_key"])
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["other_ca"].write_bytes(other.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    _write_key(srv_key, paths["key"])
    return paths


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="module")
def tls_mariadb(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]
) -> Iterator[devservers.DevServer]:
    server = devservers.start_mariadb(
        Path(tmp_path_factory.mktemp("tlsmaria")),
        extra_args=(
            f"--ssl-ca={pki['ca']}",
            f"--ssl-cert={pki['cert']}",
            f"--ssl-key={pki['key']}",
        ),
    )
    conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root", autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE shop")
        cur.execute("CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute("CREATE USER 'tls'@'127.0.0.1' IDENTIFIED BY 'pw' REQUIRE SSL")
        cur.execute("CREATE USER 'certuser'@'127.0.0.1' IDENTIFIED BY 'pw' REQUIRE X509")
        for user in ("tls", "certuser"):
            cur.execute(
                "GRANT SELECT, RELOAD, REPLICATION CLIENT, REPLICATION SLAVE, BINLOG MONITOR "
                f"ON *.* TO '{user}'@'127.0.0.1'"
            )
    conn.close()
    yield server
    devservers.stop(server)


@pytest.fixture(scope="module")
def tls_postgres(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]
) -> Iterator[devservers.DevServer]:
    base = Path(tmp_path_factory.mktemp("tlspg"))
    certs = base / "certs"
    certs.mkdir()
    for name in ("cert", "key", "ca"):
        shutil.copy(pki[name], certs / pki[name].name)
    server = devservers.start_postgres(
        base,
        settings={
            "ssl": "on",
            "ssl_cert_file": str(certs / "server.pem"),
            "ssl_key_file": str(certs / "server.key"),
            "ssl_ca_file": str(certs / "ca.pem"),
        },
        # the database "tlsonly" takes TLS connections only: plaintext is rejected; the user
        # "certuser" logs in by client certificate alone (no password)
        hba=(
            "hostnossl tlsonly all 127.0.0.1/32 reject",
            "hostssl all certuser 127.0.0.1/32 cert",
            "hostssl replication certuser 127.0.0.1/32 cert",
        ),
    )
    with psycopg.connect(
        f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres", autocommit=True
    ) as conn:
        conn.execute("CREATE DATABASE tlsonly")
        conn.execute("CREATE DATABASE shop")
        conn.execute("CREATE ROLE certuser LOGIN SUPERUSER REPLICATION")
    with psycopg.connect(
        f"host=127.0.0.1 port={server.port} user=postgres dbname=shop", autocommit=True
    ) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    yield server
    devservers.stop(server)


@pytest.fixture(scope="module")
def replica_wal_postgres(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[devservers.DevServer]:
    server = devservers.start_postgres(
        Path(tmp_path_factory.mktemp("walreplica")), settings={"wal_level": "replica"}
    )
    yield server
    devservers.stop(server)


# --------------------------------------------------------------------------- the CLI


def capture(url: str, tmp: Path, *extra_config: str, timeout: float = 60) -> tuple[int, str, float]:
    """`redoline capture --until-caught-up` as cron runs it: exit code, first error, seconds."""
    cfg = tmp / "redoline.toml"
    lines = [f'url = "{url}"', *extra_config]
    cfg.write_text("[source]\n" + "".join(f"{line}\n" for line in lines))
    env = {**os.environ, "REDOLINE_SOURCE_PASSWORD": "pw"}
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from toolkit_cli.app import main; main()",
            "capture",
            "-c",
            str(cfg),
            "--trail",
            str(tmp / "trail"),
            "--until-caught-up",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    seconds = time.monotonic() - started
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    return proc.returncode, (errors[0] if errors else ""), seconds


def test_mariadb_tls_with_verification_captures(tls_mariadb, pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"mariadb://tls@127.0.0.1:{tls_mariadb.port}/shop?ssl_ca={pki['ca']}&ssl_verify=1"
    code, err, _ = capture(url, tmp_path)
    assert code == 0, err
    conn = pymysql.connect(host="127.0.0.1", port=tls_mariadb.port, user="root", autocommit=True)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO shop.t VALUES (1, 'über TLS')")
    conn.close()
    code, err, _ = capture(url, tmp_path)
    assert code == 0, err
    dump = subprocess.run(
        [
            sys.executable,
            "-c",
            "from toolkit_cli.app import main; main()",
            "trail",
            "dump",
            "--trail",
            str(tmp_path / "trail"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    # the user REQUIRE SSL: the binlog stream itself went over TLS too
    rows = [json.loads(line) for line in dump.stdout.splitlines() if line.strip()]
    assert [r["after"]["v"] for r in rows if r.get("after")] == ["über TLS"]


def test_mariadb_certificate_from_another_ca_is_terminal(tls_mariadb, pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"mariadb://tls@127.0.0.1:{tls_mariadb.port}/shop?ssl_ca={pki['other_ca']}&ssl_verify=1"
    code, err, seconds = capture(url, tmp_path)
    assert code == 3 and "certificate" in err.lower(), err
    assert seconds < 30


def test_mariadb_tls_asked_of_a_server_without_it_is_terminal(mariadb_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"mariadb://root@127.0.0.1:{mariadb_server.port}/?ssl=true"
    code, err, seconds = capture(url, tmp_path, 'retry_for = "2m"')
    assert code == 3 and "TLS" in err, err
    assert seconds < 30


def test_postgres_tls_verify_full_captures(tls_postgres, pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = (
        f"postgresql://postgres@127.0.0.1:{tls_postgres.port}/shop"
        f"?sslmode=verify-full&sslrootcert={pki['ca']}"
    )
    code, err, _ = capture(url, tmp_path)
    assert code == 0, err


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("sslmode=verify-full&sslrootcert={other_ca}", "certificate"),
        ("sslmode=verify-full&sslrootcert=/nonexistent/root.crt", "root.crt"),
    ],
)
def test_postgres_bad_certificates_are_terminal(tls_postgres, pki, tmp_path, query, needle) -> None:  # type: ignore[no-untyped-def]
    url = f"postgresql://postgres@127.0.0.1:{tls_postgres.port}/shop?" + query.format(
        other_ca=pki["other_ca"]
    )
    code, err, seconds = capture(url, tmp_path)
    assert code == 3 and needle in err, err
    assert seconds < 30


def test_postgres_tls_asked_of_a_server_without_it_is_terminal(postgres_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres?sslmode=require"
    code, err, seconds = capture(url, tmp_path)
    assert code == 3 and "SSL" in err, err
    assert seconds < 30


def test_postgres_pg_hba_rejecting_plaintext_is_terminal(tls_postgres, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"postgresql://postgres@127.0.0.1:{tls_postgres.port}/tlsonly?sslmode=disable"
    code, err, seconds = capture(url, tmp_path)
    assert code == 3 and "pg_hba" in err, err
    assert seconds < 30


def test_postgres_wal_level_replica_is_a_prerequisite_error(replica_wal_postgres, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"postgresql://postgres@127.0.0.1:{replica_wal_postgres.port}/postgres"
    code, err, seconds = capture(url, tmp_path)
    assert code == 4 and "wal_level" in err, err
    assert seconds < 30


@pytest.mark.parametrize("scheme", ["mariadb", "postgresql"])
def test_unresolvable_host_is_terminal(scheme, tmp_path) -> None:  # type: ignore[no-untyped-def]
    code, err, seconds = capture(f"{scheme}://root@no-such-host.invalid/db", tmp_path)
    assert code == 3 and "no-such-host.invalid" in err and "resolve" in err, err
    assert seconds < 30


@pytest.mark.parametrize("scheme", ["mariadb", "postgresql"])
def test_nothing_listening_is_retried_for_retry_for_then_exit_75(scheme, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = devservers.find_free_port()
    code, err, seconds = capture(
        f"{scheme}://root@127.0.0.1:{port}/db", tmp_path, 'retry_for = "4s"'
    )
    assert code == 75, err
    assert "gave up after" in err and "attempts" in err
    assert 3.5 < seconds < 30


def test_mariadb_client_certificate_login(tls_mariadb, pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = f"mariadb://certuser@127.0.0.1:{tls_mariadb.port}/shop?ssl_ca={pki['ca']}&ssl_verify=1"
    code, err, _ = capture(
        base + f"&ssl_cert={pki['client_cert']}&ssl_key={pki['client_key']}", tmp_path
    )
    assert code == 0, err
    # the same account without its certificate is refused, at once, not retried
    (tmp_path / "no-cert").mkdir()
    code, err, seconds = capture(base, tmp_path / "no-cert")
    assert code == 3, err
    assert seconds < 30


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_postgres_client_certificate_login(tls_postgres, pki, tmp_path, mode) -> None:  # type: ignore[no-untyped-def]
    url = (
        f"postgresql://certuser@127.0.0.1:{tls_postgres.port}/shop?sslmode={mode}"
        f"&sslrootcert={pki['ca']}&sslcert={pki['client_cert']}&sslkey={pki['client_key']}"
    )
    code, err, _ = capture(url, tmp_path)
    assert code == 0, err
