"""`paglets certs` (cli.md section 12): the mesh key (printed, or written 0600 and never
replaced without --force) and a mesh CA whose host and client certificates a real host
serves and the CLI presents (mutual TLS)."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from paglets import Host
from paglets.cli.keys import read_mesh_key
from paglets.cli.main import run
from support.processes import run_paglets


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def home() -> Path:
    return Path(os.environ["HOME"])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_printed_is_32_random_urlsafe_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    keys = set()
    for _ in range(3):
        code, out, err = cli(capsys, "certs", "key")
        assert (code, err) == (0, "")
        keys.add(out.strip())
    assert len(keys) == 3
    for key in keys:
        assert len(base64.urlsafe_b64decode(key + "=")) == 32
    assert not (home() / ".paglets").exists()  # printing writes nothing


def test_key_write_is_0600_and_not_replaced_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_host: Callable[..., Host]
) -> None:
    # A real process, as a user runs it.
    result = run_paglets("certs", "key", "--write", home=tmp_path)
    path = tmp_path / ".paglets" / "mesh.key"
    assert result.returncode == 0, result.stderr
    assert str(path) in result.stdout
    key = path.read_text().strip()
    assert key not in result.stdout + result.stderr  # never shown
    assert mode(path) == 0o600 and len(base64.urlsafe_b64decode(key + "=")) == 32
    again = run_paglets("certs", "key", "--write", home=tmp_path)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.startswith(f"paglets certs key: {path} already exists")
    assert path.read_text().strip() == key

    # In this process (HOME is the test's): --force replaces, and the key is the one
    # every command then uses.
    assert cli(capsys, "certs", "key", "--write")[0] == 0
    first = (home() / ".paglets" / "mesh.key").read_text().strip()
    assert cli(capsys, "certs", "key", "--write", "--force")[0] == 0
    second = read_mesh_key().value
    assert second and second != first
    keyed = make_host("keyed", api_key=second)
    code, out, _ = cli(capsys, "events", "--entry", keyed.address, "--kind", "context-start")
    assert code == 0 and "context-start" in out


def test_ca_host_and_client_certificates(capsys: pytest.CaptureFixture[str]) -> None:
    tls = home() / ".paglets" / "tls"
    code, _, err = cli(capsys, "certs", "host", "alpha")
    assert code == 2 and err.startswith("paglets certs host: no mesh CA in")
    assert 'hint: make one first with "paglets certs init"' in err

    code, out, _ = cli(capsys, "certs", "init", "--mesh", "lab")
    assert code == 0 and str(tls / "ca.crt") in out
    assert mode(tls / "ca.key") == 0o600 and mode(tls) == 0o700
    code, _, err = cli(capsys, "certs", "ca")  # the same command: refuses to replace
    assert code == 2 and "already exist" in err and "--force" in err
    assert cli(capsys, "certs", "ca", "--force", "--mesh", "lab")[0] == 0

    code, out, _ = cli(
        capsys, "certs", "host", "alpha", "--ip", "192.0.2.3", "--dns", "alpha.lab", "--days", "30"
    )
    assert code == 0 and "--tls-cert" in out
    assert mode(tls / "alpha.key") == 0o600
    ca = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((tls / "alpha.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = sans.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    assert {"alpha", "alpha.lab", "localhost"} <= set(dns)
    assert {"192.0.2.3", "127.0.0.1", "::1"} <= set(ips)
    assert 29 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 30

    code, out, _ = cli(capsys, "certs", "show", str(tls / "alpha.crt"))
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert code == 0 and fields["subject"].strip() == "CN=alpha,O=lab"
    assert "192.0.2.3" in fields["sans"] and fields["ca"].strip() == "no"
    assert any(x.startswith("not after") and x.endswith("(valid)") for x in out.splitlines())

    assert cli(capsys, "certs", "client", "operator")[0] == 0
    client = x509.load_pem_x509_certificate((tls / "client.crt").read_bytes())
    client.verify_directly_issued_by(ca)
    assert mode(tls / "client.key") == 0o600

    for args, what in [
        (["certs", "host", "bad name"], "NAME"),
        (["certs", "host", "beta", "--ip", "300.1.1.1"], "--ip"),
        (["certs", "host", "beta", "--dns", "no spaces"], "--dns"),
        (["certs", "show", str(tls / "ca.key")], "not a PEM certificate"),
    ]:
        code, _, err = cli(capsys, *args)
        assert code == 2 and what in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) <= 2


def test_a_host_serving_them_with_mutual_tls(
    make_host: Callable[..., Host], capsys: pytest.CaptureFixture[str]
) -> None:
    tls = home() / ".paglets" / "tls"
    for args in (["init"], ["host", "alpha", "--no-local", "--ip", "127.0.0.1"], ["client", "me"]):
        assert cli(capsys, "certs", *args)[0] == 0
    alpha = make_host(
        "alpha",
        tls_cert=str(tls / "alpha.crt"),
        tls_key=str(tls / "alpha.key"),
        tls_ca=str(tls / "ca.crt"),
    )
    url = f"https://127.0.0.1:{alpha.port}"
    code, out, _ = cli(capsys, "events", "--entry", url, "--kind", "context-start")
    assert code == 0 and "context-start" in out
    code, out, _ = cli(
        capsys, "agents", "create", "paglets.examples.counter:Counter", "--entry", url
    )
    assert code == 0 and out.startswith("created ")

    # Without the client certificate the host refuses the connection: exit 2, one line.
    (tls / "client.crt").rename(tls / "client.crt.off")
    code, _, err = cli(capsys, "agents", "ls", "--entry", url)
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"paglets agents ls: no paglets host at {url}")
    assert "client certificate" in err
