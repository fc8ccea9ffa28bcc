"""Authentication of the HTTP API (network.md §1.3, targets.md r6): a keyed host answers 401
on every route but the open ones, before the media type and before any body byte; failures
are throttled per address; `/mesh/hello` proves the key without revealing it."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from paglets import Host
from support.certs import make_certificates
from support.http_calls import Answer, Http

KEY = "k"
ECHO = "support.messaging_models:Echo"
NONCE = "0123456789abcdef0123456789ABCDEF"
_PARAM = re.compile(r"\{[^}]+\}")


@pytest.fixture
def keyed(make_host: Callable[..., Host]) -> Host:
    return make_host("keyed", api_key=KEY)


@pytest.fixture
def client(keyed: Host) -> Iterator[Http]:
    with Http(keyed.address, key=KEY) as http_client:
        yield http_client


def every_route(host: Host) -> list[tuple[str, str]]:
    """(method, concrete path) for every route the host's app serves, mounted ones too."""
    seen: set[tuple[str, str]] = set()
    for route in host.http.app.router.routes():
        path = _PARAM.sub("x1", route.resource.canonical)
        method = "POST" if route.method == "*" else route.method
        if method != "HEAD":
            seen.add((method, path))
    return sorted(seen)


def is_open(method: str, path: str) -> bool:
    if method == "POST":
        return path == "/ui/login"  # checks the key itself (test_dashboard_auth.py)
    return method == "GET" and (
        path in ("/mesh/hello", "/ui/login") or path.startswith("/ui/static/")
    )


def assert_401(answer: Answer, code: str) -> None:
    assert answer.status == 401, answer.body
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="paglets"'
    body = answer.body
    assert body["error_type"] == "AuthenticationError" and body["code"] == code
    assert body["status"] == 401


def test_every_route_but_the_open_ones_needs_the_key(keyed: Host) -> None:
    keyed.http.auth.max_failures = 10_000  # this test fails on purpose, many times
    routes = every_route(keyed)
    assert ("POST", "/agents/x1/messages") in routes and ("GET", "/events/stream") in routes
    with Http(keyed.address) as anonymous, Http(keyed.address, key="wrong") as wrong:
        for method, path in routes:
            if is_open(method, path):
                continue
            assert_401(anonymous.request(method, path, {"x": 1}), "auth-required")
            assert_401(wrong.request(method, path, {"x": 1}), "auth-failed")
        assert_401(anonymous.get("/no/such/route"), "auth-required")
        assert_401(anonymous.get("/health", headers={"Authorization": "Basic azpr"}), "auth-failed")


def test_the_right_key_is_accepted(keyed: Host, client: Http) -> None:
    health = client.get("/health")
    assert health.status == 200 and health.body["auth_required"] is True
    created = client.post("/agents", {"agent_class_name": ECHO, "agent_id": "e1"})
    assert created.status == 200
    answer = client.post("/agents/e1/messages", {"message": {"kind": "count"}})
    assert answer.body == {"result": 1}
    padded = client.get("/health", key=None, headers={"Authorization": f"bearer  {KEY} "})
    assert padded.status == 200


def test_open_routes_answer_without_the_key(keyed: Host) -> None:
    with Http(keyed.address) as anonymous:
        hello = anonymous.get(f"/mesh/hello?nonce={NONCE}")
        assert hello.status == 200
        assert anonymous.get("/ui/login").status == 200  # the login page holds no data
        assert anonymous.get("/ui/static/app.js").status == 200
        assert anonymous.get("/ui/static/missing.js").status == 404
        assert_401(anonymous.post("/mesh/hello"), "auth-required")  # only GET is open


def test_authentication_comes_before_the_pickle_refusal(keyed: Host, client: Http) -> None:
    pickle = {"Content-Type": "application/x-paglets-pickle"}
    with Http(keyed.address) as anonymous:
        assert_401(
            anonymous.post("/agents", raw=b"\x80\x04K\x01.", headers=pickle), "auth-required"
        )
    refused = client.post("/agents", raw=b"\x80\x04K\x01.", headers=pickle)
    assert refused.status == 415 and refused.body["code"] == "pickle-refused"


def test_a_refused_body_is_not_read_and_the_connection_closes(keyed: Host) -> None:
    with socket.create_connection(("127.0.0.1", keyed.port), timeout=10) as sock:
        sock.sendall(
            b"POST /agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100000000\r\n\r\n{"agent_class_name": '
        )
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 401
        assert json.loads(response.read())["code"] == "auth-required"
        assert response.will_close
        assert sock.recv(1) == b""


def test_mesh_hello_proves_the_key(keyed: Host, client: Http) -> None:
    with Http(keyed.address) as anonymous:
        body = anonymous.get(f"/mesh/hello?nonce={NONCE}").body
        host_id = client.get("/health").body["host_id"]
        assert body["protocol"] == 1 and body["host_id"] == host_id
        expected = hmac.new(
            KEY.encode(), f"hello{NONCE}{host_id}".encode(), hashlib.sha256
        ).hexdigest()
        assert body["proof"] == expected
        for nonce in ("", "abc", "z" * 32, NONCE + "0"):
            bad = anonymous.get(f"/mesh/hello?nonce={nonce}")
            assert bad.status == 400 and bad.body["code"] == "bad-query"


def test_failures_are_throttled_per_address(keyed: Host) -> None:
    with Http(keyed.address, key="wrong") as wrong:
        for _ in range(21):
            assert wrong.get("/health").status == 401
        throttled = wrong.get("/health")
        assert throttled.status == 429 and throttled.body["code"] == "auth-throttled"
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    with Http(keyed.address, key=KEY) as right:
        assert right.get("/health").status == 429  # the address, not the key, is blocked
    # Another loopback address is not affected.
    other = http.client.HTTPConnection(
        "127.0.0.1", keyed.port, timeout=10, source_address=("127.0.0.2", 0)
    )
    try:
        other.request("GET", "/health", headers={"Authorization": f"Bearer {KEY}"})
        assert other.getresponse().status == 200
    finally:
        other.close()


def test_a_loopback_host_without_a_key_is_open(host: Host) -> None:
    with Http(host.address) as anonymous:
        body: dict[str, Any] = anonymous.get("/health").body
        assert body["auth_required"] is False
        assert anonymous.get(f"/mesh/hello?nonce={NONCE}").body["proof"] is None


def test_the_key_never_appears_in_answers(make_host: Callable[..., Host]) -> None:
    secret = "s3cret-mesh-key-value"
    host = make_host("secretive", api_key=secret)
    with Http(host.address, key=secret) as client:
        client.post("/agents", {"agent_class_name": ECHO, "agent_id": "e1"})
        for path in ("/health", "/hosts", f"/mesh/hello?nonce={NONCE}", "/events", "/agents/e1"):
            answer = client.get(path)
            assert answer.status == 200 and secret not in answer.raw.decode()
        assert secret not in client.get("/nope", key="wrong-" + secret).raw.decode()


# -- TLS ----------------------------------------------------------------------------------


def _https(host: Host, certs: dict[str, str], *, client_cert: bool) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=certs["ca_cert"])
    if client_cert:
        context.load_cert_chain(certs["client_cert"], certs["client_key"])
    return http.client.HTTPSConnection("127.0.0.1", host.port, timeout=10, context=context)


def test_tls_serves_https(make_host: Callable[..., Host], tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    host = make_host("tls", tls_cert=certs["server_cert"], tls_key=certs["server_key"])
    conn = _https(host, certs, client_cert=False)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["tls"] is True
    finally:
        conn.close()


def test_a_verified_client_certificate_authenticates(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path)
    host = make_host(
        "mtls",
        api_key=KEY,
        tls_cert=certs["server_cert"],
        tls_key=certs["server_key"],
        tls_ca=certs["ca_cert"],
    )
    conn = _https(host, certs, client_cert=True)
    try:
        conn.request("GET", "/health")  # no bearer key: the certificate is enough
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    without = _https(host, certs, client_cert=False)
    try:
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
            without.request("GET", "/health")
            without.getresponse()
    finally:
        without.close()
