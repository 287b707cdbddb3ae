"""A local certificate authority for development: ``sparkgate certs``.

Makes, in one directory: ``ca.pem`` / ``ca-key.pem`` (a CA valid for 10 years),
``server.pem`` / ``server-key.pem`` (for the gateway: ``localhost``, ``127.0.0.1``, ``::1``, this
host's name and any ``--host``) and, per ``--client NAME``, ``NAME.pem`` / ``NAME-key.pem`` (client
certificates for mTLS service identities, subject CN=NAME). Keys are ECDSA P-256, written 0600.
An existing CA in the directory is reused, so certificates can be added later.

Clients trust the CA with ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=<dir>/ca.pem`` (pyspark and grpc) or
the JVM's ``-Djavax.net.ssl.trustStore``; this is for laptops and tests, not production PKI.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class DevCerts:
    ca: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path]]


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sparkgate dev"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if cert_path.is_file() and key_path.is_file():
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("sparkgate dev CA"))
        .issuer_name(_name("sparkgate dev CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 3650 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    cn: str,
    *,
    sans: Sequence[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    days: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + days * _DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_dev_certs(
    directory: str | Path, hosts: Sequence[str] = (), clients: Sequence[str] = (), days: int = 825
) -> DevCerts:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ca(d)
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), *hosts]
    sans: list[x509.GeneralName] = []
    for n in dict.fromkeys(names):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert, key = _leaf(ca, ca_key, "localhost", sans=sans, usage=ExtendedKeyUsageOID.SERVER_AUTH, days=days)
    (d / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(d / "server-key.pem", key)
    made: dict[str, tuple[Path, Path]] = {}
    for name in clients:
        cert, key = _leaf(ca, ca_key, name, sans=[], usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=days)
        (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(d / f"{name}-key.pem", key)
        made[name] = (d / f"{name}.pem", d / f"{name}-key.pem")
    return DevCerts(d / "ca.pem", d / "server.pem", d / "server-key.pem", made)
