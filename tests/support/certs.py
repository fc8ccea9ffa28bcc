"""A throwaway certificate authority for TLS tests: a CA, and a server (for 127.0.0.1)
and a client certificate it signed, written as PEM files under a temporary dir."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_certificates(folder: Path) -> dict[str, str]:
    """Paths by role: `ca_cert`, `ca_key`, `server_cert`, `server_key`, `client_cert`,
    `client_key`."""
    now = datetime.datetime.now(datetime.UTC)
    paths: dict[str, str] = {}

    def issue(name: str, issuer: Any, issuer_key: Any, *, ca: bool = False) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer or subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(issuer_key or key, hashes.SHA256())
        key_path, cert_path = folder / f"{name}.key", folder / f"{name}.pem"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{name}_key"], paths[f"{name}_cert"] = str(key_path), str(cert_path)
        return key, cert

    ca_key, ca_cert = issue("ca", None, None, ca=True)
    issue("server", ca_cert.subject, ca_key)
    issue("client", ca_cert.subject, ca_key)
    return paths
