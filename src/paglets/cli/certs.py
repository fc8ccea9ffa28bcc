"""`paglets certs`: the mesh key and a small mesh CA with host and client certificates
(cli.md section 12, network.md 1.1 and 1.3).

* `key`: 32 random bytes, URL-safe base64, on stdout; `--write` stores it in
  `~/.paglets/mesh.key` (mode 0600, the file `paglets host` and the CLI read) instead.
* `init` (also `ca`): a mesh CA, `ca.crt` and `ca.key` (0600).
* `host NAME`: `NAME.crt`/`NAME.key` signed by that CA, for server and client use
  (`paglets host --tls-cert NAME.crt --tls-key NAME.key --tls-ca ca.crt`); the machine's
  own names and addresses are in it unless `--no-local`.
* `client NAME`: `client.crt`/`client.key` for CLI users (read by every command, cli.md 0.2).
* `show PATH`: what a certificate says.

Files go to `~/.paglets/tls/` unless `--dir`. Keys are ECDSA P-256 (small, fast
handshakes); private keys are written to a temporary file created with mode 0600 and
renamed into place, so no other user ever sees them, not even half-written. An existing
file is never replaced without `--force`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from paglets.cli.errors import CliError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

__all__ = ["MESH_KEY_BYTES", "app", "new_mesh_key", "write_private"]

MESH_KEY_BYTES = 32
CA_DAYS = 3650
LEAF_DAYS = 825
BACKDATE = dt.timedelta(minutes=5)  # tolerate clocks a little behind ours
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # as `paglets host --name`
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")

app = typer.Typer(
    name="certs",
    help="The mesh key, and a mesh CA with host and client certificates for TLS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)

Dir = Annotated[
    Path | None,
    typer.Option("--dir", metavar="PATH", help="Where the files go (default ~/.paglets/tls)."),
]
Force = Annotated[bool, typer.Option("--force", help="Replace existing files.")]


def _days(default: int) -> Any:
    return typer.Option("--days", metavar="N", min=1, help=f"Validity in days ({default}).")


# -- files ----------------------------------------------------------------------------------


def _tls_dir(directory: Path | None) -> Path:
    return (directory or Path.home() / ".paglets" / "tls").expanduser()


def _refuse_existing(paths: Iterable[Path], force: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        shown = ", ".join(str(p) for p in existing)
        raise CliError(
            f"{shown} already exist{'s' if len(existing) == 1 else ''}; not replaced",
            hint="pass --force to replace (hosts and clients using the old files must be "
            "given the new ones)",
        )


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create {path}: {exc.strerror or exc}") from None


def write_private(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write `data` to `path` with `mode` from the first byte: a temporary file in the
    same directory, created with that mode, flushed and renamed over `path`."""
    _make_dir(path.parent)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits away; never added any
            with os.fdopen(fd, "wb") as out:
                fd = -1
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        finally:
            if fd != -1:
                os.close(fd)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None


# -- the mesh key ---------------------------------------------------------------------------


def new_mesh_key() -> str:
    """A new mesh key: 32 random bytes as URL-safe base64 (43 characters, no padding)."""
    return secrets.token_urlsafe(MESH_KEY_BYTES)


@app.command("key")
def key(
    write: Annotated[
        bool,
        typer.Option("--write", help="Store it in ~/.paglets/mesh.key (0600) instead of printing."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key file.")] = False,
) -> None:
    """A new mesh key on stdout (or, with --write, in ~/.paglets/mesh.key)."""
    from paglets.cli.keys import default_key_file

    value = new_mesh_key()
    if not write:
        print(value)
        return
    path = default_key_file()
    if path.exists() and not force:
        raise CliError(
            f"{path} already exists; not replaced (every host of the mesh uses that key)",
            hint="pass --force to replace it, then copy the new file to every host",
        )
    write_private(path, (value + "\n").encode("ascii"))
    print(f"wrote a new mesh key to {path} (mode 0600); copy it to every host of the mesh")


# -- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ca:
    cert: x509.Certificate
    key: EllipticCurvePrivateKey


def _new_key() -> EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(private: EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, mesh: str | None) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    attributes = []
    if mesh:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, mesh))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _load_ca(folder: Path) -> _Ca:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    cert_path, key_path = folder / "ca.crt", folder / "ca.key"
    if not cert_path.is_file() or not key_path.is_file():
        raise CliError(
            f"no mesh CA in {folder} (ca.crt and ca.key)",
            hint='make one first with "paglets certs init" (same --dir)',
        )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CliError(f"cannot read the mesh CA in {folder}: {exc}") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise CliError(f"{key_path} is not an EC private key made by paglets certs init")
    return _Ca(cert, private)


def _ca_name(ca: _Ca) -> str | None:
    from cryptography.x509.oid import NameOID

    names = ca.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(names[0].value) if names else None


def _local_names() -> tuple[list[str], list[str]]:
    """This machine's names and addresses: localhost, loopback, the host name and the
    LAN address (found with an unconnected UDP socket: no packet is sent)."""
    dns = ["localhost"]
    ips = ["127.0.0.1", "::1"]
    hostname = socket.gethostname()
    if hostname and all(_DNS_LABEL.match(part) for part in hostname.split(".")):
        dns.append(hostname)
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing decision only
        address = probe.getsockname()[0]
        if address and not address.startswith("127.") and address != "0.0.0.0":
            ips.append(address)
    return dns, ips


def _sans(dns: Iterable[str], ips: Iterable[str]) -> list[x509.GeneralName]:
    from cryptography import x509

    names: list[x509.GeneralName] = []
    for item in dict.fromkeys(d.strip().lower() for d in dns if d.strip()):
        labels = item.removeprefix("*.").split(".")
        if not all(_DNS_LABEL.match(label) for label in labels):
            raise CliError(f"--dns {item!r} is not a DNS name", hint="e.g. --dns node1.lan")
        names.append(x509.DNSName(item))
    for item in dict.fromkeys(i.strip() for i in ips if i.strip()):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(item)))
        except ValueError:
            raise CliError(
                f"--ip {item!r} is not an IP address", hint="e.g. --ip 192.168.1.20"
            ) from None
    return names


def _issue(
    ca: _Ca,
    common_name: str,
    days: int,
    *,
    server: bool,
    sans: list[x509.GeneralName],
) -> tuple[x509.Certificate, EllipticCurvePrivateKey]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    private = _new_key()
    now = dt.datetime.now(dt.UTC)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, _ca_name(ca)))
        .issuer_name(ca.cert.subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(private.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca.key, hashes.SHA256()), private


def _write_pair(cert_path: Path, key_path: Path, cert: x509.Certificate, private: Any) -> None:
    write_private(key_path, _key_pem(private))
    write_private(cert_path, _cert_pem(cert), mode=0o644)


@app.command("init")
def init(
    mesh: Annotated[
        str, typer.Option("--mesh", metavar="NAME", help="The mesh's name, shown in certificates.")
    ] = "paglets",
    days: Annotated[int, _days(CA_DAYS)] = CA_DAYS,
    force: Force = False,
    directory: Dir = None,
) -> None:
    """Make the mesh CA: ca.crt and ca.key (0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    folder = _tls_dir(directory)
    cert_path, key_path = folder / "ca.crt", folder / "ca.key"
    _refuse_existing((cert_path, key_path), force)
    private = _new_key()
    now = dt.datetime.now(dt.UTC)
    subject = _name(f"{mesh} mesh CA", mesh)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(private.public_key()), critical=False
        )
        .sign(private, hashes.SHA256())
    )
    _write_pair(cert_path, key_path, cert, private)
    print(f"wrote the mesh CA: {cert_path} and {key_path} (0600)")
    print("next: paglets certs host NAME for each host, paglets certs client NAME for CLI users")


# `paglets certs ca`: the same command under the name the task list and older notes use.
app.command("ca", help="Make the mesh CA (the same as init).")(init)


@app.command("host")
def host(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The host's name (files NAME.*).")],
    ip: Annotated[
        list[str] | None,
        typer.Option("--ip", metavar="IP", help="An address the host is reached at (repeatable)."),
    ] = None,
    dns: Annotated[
        list[str] | None,
        typer.Option("--dns", metavar="NAME", help="A DNS name of the host (repeatable)."),
    ] = None,
    no_local: Annotated[
        bool,
        typer.Option("--no-local", help="Leave out this machine's own names and addresses."),
    ] = False,
    days: Annotated[int, _days(LEAF_DAYS)] = LEAF_DAYS,
    force: Force = False,
    directory: Dir = None,
) -> None:
    """A host certificate (server and client use): NAME.crt and NAME.key (0600)."""
    if not _NAME.match(name):
        raise CliError(
            f"NAME {name!r}: use 1-63 characters from A-Z a-z 0-9 . _ -, starting with a "
            "letter or digit (as paglets host --name)"
        )
    folder = _tls_dir(directory)
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    if name in ("ca", "client"):
        raise CliError(f"NAME {name!r} would overwrite the {name} files; choose another name")
    _refuse_existing((cert_path, key_path), force)
    ca = _load_ca(folder)
    dns_names, ips = ([], []) if no_local else _local_names()
    if all(_DNS_LABEL.match(part) for part in name.split(".")):
        dns_names.insert(0, name)
    sans = _sans([*dns_names, *(dns or ())], [*ips, *(ip or ())])
    cert, private = _issue(ca, name, days, server=True, sans=sans)
    _write_pair(cert_path, key_path, cert, private)
    shown = ", ".join(_san_text(s) for s in sans)
    print(f"wrote {cert_path} and {key_path} (0600) for {shown}")
    print(
        f"use: paglets host --name {name} --tls-cert {cert_path} --tls-key {key_path} "
        f"--tls-ca {folder / 'ca.crt'}"
    )


@app.command("client")
def client(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Who uses it (its common name).")],
    days: Annotated[int, _days(LEAF_DAYS)] = LEAF_DAYS,
    force: Force = False,
    directory: Dir = None,
) -> None:
    """A client certificate for CLI users: client.crt and client.key (0600)."""
    if not name.strip():
        raise CliError("NAME must not be empty")
    folder = _tls_dir(directory)
    cert_path, key_path = folder / "client.crt", folder / "client.key"
    _refuse_existing((cert_path, key_path), force)
    ca = _load_ca(folder)
    cert, private = _issue(ca, name.strip(), days, server=False, sans=[])
    _write_pair(cert_path, key_path, cert, private)
    print(f"wrote {cert_path} and {key_path} (0600); every paglets command now presents it")


def _san_text(name: Any) -> str:
    from cryptography import x509

    if isinstance(name, x509.IPAddress):
        return str(name.value)
    return str(getattr(name, "value", name))


@app.command("show")
def show(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A PEM certificate.")],
) -> None:
    """Subject, SANs, issuer and validity of a certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        cert = x509.load_pem_x509_certificate(path.expanduser().read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(f"{path} is not a PEM certificate: {exc}") from None
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        san_text = ", ".join(_san_text(s) for s in sans) or "-"
    except x509.ExtensionNotFound:
        san_text = "-"
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    now = dt.datetime.now(dt.UTC)
    after = cert.not_valid_after_utc
    state = "valid" if cert.not_valid_before_utc <= now <= after else "NOT valid now"
    lines = [
        ("subject", cert.subject.rfc4514_string()),
        ("issuer", cert.issuer.rfc4514_string()),
        ("sans", san_text),
        ("ca", "yes" if is_ca else "no"),
        ("not before", cert.not_valid_before_utc.isoformat()),
        ("not after", f"{after.isoformat()} ({state})"),
        ("serial", format(cert.serial_number, "x")),
        ("sha256", cert.fingerprint(hashes.SHA256()).hex(":")),
    ]
    width = max(len(k) for k, _ in lines)
    for label, value in lines:
        print(f"{label.ljust(width)}  {value}")
