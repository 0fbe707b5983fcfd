"""Berth's own certificate authority, for the traffic between hosts: the server makes a CA once (in its
data dir), a server certificate for the names it is reached by, and hands the CA to workers, which use
it to check the server (the WebSocket link, file fetches, and the relay their containers call through)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_YEARS = 10


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Berth"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ensure_ca(tls_dir: Path) -> Path:
    """The CA certificate (made once; its key stays in tls_dir, mode 0600). Returns the CA's PEM path."""
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_pem, ca_key = tls_dir / "ca.pem", tls_dir / "ca.key"
    if ca_pem.exists() and ca_key.exists():
        return ca_pem
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Berth CA"))
        .issuer_name(_name("Berth CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365 * _YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_private(ca_key, _key_pem(key))
    ca_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ca_pem


def issue_cert_pem(tls_dir: Path, names: list[str]) -> tuple[bytes, bytes]:
    """A server certificate for `names` (host names and addresses), signed by the CA: (the certificate followed
    by the CA's, the key), in PEM."""
    ca_pem = ensure_ca(tls_dir)
    ca_cert = x509.load_pem_x509_certificate(ca_pem.read_bytes())
    ca_key = serialization.load_pem_private_key((tls_dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(_san(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM) + ca_pem.read_bytes(), _key_pem(key)


def issue_server_cert(tls_dir: Path, names: list[str], stem: str = "server") -> tuple[Path, Path]:
    """A server certificate for `names`, signed by the CA; (cert, key) paths, `<stem>.pem` and `<stem>.key` in
    tls_dir."""
    cert, key = issue_cert_pem(tls_dir, names)
    cert_path, key_path = tls_dir / f"{stem}.pem", tls_dir / f"{stem}.key"
    _write_private(key_path, key)
    cert_path.write_bytes(cert)
    return cert_path, key_path


def server_context(cert: Path, key: Path, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(alpn)
    return ctx


def client_context(ca_file: Path | None, alpn: list[str] | None = None) -> ssl.SSLContext:
    """Checks the server against Berth's CA (or the system's roots when no CA file is given)."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx
