"""Recipient certificates and private keys for the reversible option's tests.

Each is a fresh self-signed RSA-2048 certificate made with ``cryptography`` (cached per name
and process): nothing is downloaded, nothing is shared with real systems.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from dicomveil.identity.envelope import Recipient


@dataclass(frozen=True)
class Holder:
    """A recipient and the private key that opens its envelopes."""

    name: str
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.certificate)

    def write(self, folder: Path) -> tuple[Path, Path]:
        """The certificate and the key as PEM files in ``folder``: (cert, key)."""
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / f"{self.name}.pem", folder / f"{self.name}.key"
        cert.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key.chmod(0o600)
        return cert, key


@cache
def holder(name: str) -> Holder:
    """The recipient called ``name`` (made once per process)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"honest broker {name}")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return Holder(name, key, certificate)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed server certificate for localhost and 127.0.0.1 (EC P-256), and its key,
    written to ``folder`` as gateway.crt and gateway.key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "gateway.crt", folder / "gateway.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
