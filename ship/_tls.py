"""TLS 1.3 contexts for shipping, and ``--init-certs``: a private CA with a server and a
client certificate for a quick start.

Both sides require TLS 1.3 (no fallback, no plain TCP). The sender always verifies the
receiver's certificate (host name included); the receiver verifies a client certificate
against its CA when one is configured.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from connectors.errors import ConfigError

__all__ = ["Token", "client_context", "init_certs", "server_context"]


@dataclass(frozen=True)
class Token:
    """A shared secret read from a file or an environment variable (never an argument)."""

    value: bytes = b""
    where: str = ""

    def __repr__(self) -> str:  # never show the secret
        return f"Token(from {self.where})" if self.value else "Token(none)"

    def __bool__(self) -> bool:
        return bool(self.value)

    def matches(self, offered: str) -> bool:
        return bool(self.value) and hmac.compare_digest(self.value, offered.encode())

    @classmethod
    def load(cls, file: Path | None, env: str | None, section: str) -> Token:
        if file is not None and env:
            raise ConfigError("give token_file or token_env, not both", key=f"{section}.token_file")
        if file is not None:
            try:
                value = file.read_bytes().strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read the token file {file}: {exc.strerror}",
                    key=f"{section}.token_file",
                ) from None
            if not value:
                raise ConfigError(f"the token file {file} is empty", key=f"{section}.token_file")
            return cls(value, f"file {file}")
        if env:
            text = os.environ.get(env, "").strip()
            if not text:
                raise ConfigError(
                    f"the environment variable {env} ({section}.token_env) is not set",
                    key=f"{section}.token_env",
                )
            return cls(text.encode(), f"${env}")
        return cls()


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path | None, section: str) -> None:
    try:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the certificate {cert} / key {key}: {exc}",
            key=f"{section}.cert",
            hint="`redoline receive --init-certs DIR` makes a CA, a server and a client pair",
        ) from None


def _load_ca(ctx: ssl.SSLContext, ca: Path, section: str) -> None:
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the CA file {ca}: {exc}", key=f"{section}.ca") from None


def server_context(
    cert: Path | None, key: Path | None, ca: Path | None, token: Token
) -> ssl.SSLContext:
    """The receiver's context: its certificate; client certificates checked against ``ca``."""
    if cert is None:
        raise ConfigError(
            "the receiver needs a certificate and key (TLS is always on)",
            key="receive.cert",
            hint="`redoline receive --init-certs DIR`, then --cert DIR/server.pem "
            "--key DIR/server.key --ca DIR/ca.pem",
        )
    if ca is None and not token:
        raise ConfigError(
            "the receiver must authenticate senders: give a CA for client certificates "
            "([receive] ca / --ca) or a token ([receive] token_file / token_env)",
            key="receive.ca",
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    _load_chain(ctx, cert, key, "receive")
    if ca is not None:
        _load_ca(ctx, ca, "receive")
        # with a token as the alternative, a sender may come without a certificate; one it
        # presents must still verify
        ctx.verify_mode = ssl.CERT_OPTIONAL if token else ssl.CERT_REQUIRED
    return ctx


def client_context(cert: Path | None, key: Path | None, ca: Path | None) -> ssl.SSLContext:
    """The sender's context: verifies the receiver (``ca``, else the system's CAs)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if ca is not None:
        _load_ca(ctx, ca, "ship")
    else:
        ctx.load_default_certs()
    if cert is not None:
        _load_chain(ctx, cert, key, "ship")
    return ctx


def init_certs(directory: Path, names: list[str], days: int = 825) -> list[Path]:
    """Write ca.pem, server.pem/.key (for ``names``, plus localhost) and client.pem/.key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    targets = [
        directory / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")
    ]
    existing = [p for p in targets if p.exists()]
    if existing:
        raise ConfigError(
            f"{existing[0]} already exists: --init-certs never overwrites certificates",
            hint="choose an empty directory",
        )
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(path: Path, k: ec.EllipticCurvePrivateKey) -> None:
        data = k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("redoline shipping CA"))
        .issuer_name(name("redoline shipping CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        cn: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        k = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), k

    sans: list[x509.GeneralName] = []
    for host in ["localhost", "127.0.0.1", "::1", *names]:
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            entry = x509.DNSName(host)
        if entry not in sans:
            sans.append(entry)
    server_cert, server_key = leaf(
        names[0] if names else "localhost", ExtendedKeyUsageOID.SERVER_AUTH, sans
    )
    client_cert, client_key = leaf("redoline sender", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    pem = serialization.Encoding.PEM
    targets[0].write_bytes(ca_cert.public_bytes(pem))
    targets[1].write_bytes(server_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    write_key(targets[2], server_key)
    targets[3].write_bytes(client_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    write_key(targets[4], client_key)
    # the CA key is not kept: a quick-start CA signs these two certificates and nothing else
    return targets
