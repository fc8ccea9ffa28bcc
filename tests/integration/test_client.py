"""`HostClient` against real hosts over loopback HTTP (api.md §14, network.md §1).

Every host runs in this process, so the client is built with `in_process=False` wherever a
proxy is involved: that forces the wire path a remote host would see.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from paglets import Host, HostClient, Message, TransferTicket
from paglets.core.errors import (
    AuthenticationError,
    DuplicateAgentError,
    InvalidAgentError,
    InvalidAgentIdError,
    NotHandledError,
    PagletTimeoutError,
    RemoteHandlerError,
    RemoteHostError,
    SerializationError,
)
from paglets.remote.proxy import PagletProxy
from support import messaging_models as mm
from support import move_models as moves
from support.certs import make_certificates
from support.waiting import wait_until


@pytest.fixture(autouse=True)
def _release_gates() -> Iterator[None]:
    yield
    mm.release_all()


@pytest.fixture
def client() -> Iterator[HostClient]:
    c = HostClient(in_process=False)
    yield c
    c.close()


def wire_proxy(host: Host, agent_id: str, client: HostClient) -> PagletProxy:
    return PagletProxy(host.address, agent_id, client)


def dead_url() -> str:
    """A loopback URL nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- JSON helpers and the raw exchange -----------------------------------------------------


def test_get_json_reads_health(host: Host, client: HostClient) -> None:
    health = client.get_json(f"{host.address}/health")
    assert health["name"] == "alpha"
    assert health["address"] == host.address
    assert client.health(host.address)["name"] == "alpha"


def test_json_restores_binary_tags(host: Host, client: HostClient) -> None:
    proxy = host.create(moves.Traveller, moves.TravellerState(payload=b"\x00\x01bin"))
    answer = client.get_json(f"{host.address}/agents/{proxy.agent_id}/state")
    assert answer["state"]["payload"] == b"\x00\x01bin"


def test_post_json_creates_and_errors_keep_their_type(host: Host, client: HostClient) -> None:
    body = {
        "agent_class_name": "support.messaging_models:Echo",
        "state_class_name": None,
        "state": None,
        "init": None,
        "agent_id": "by-json",
    }
    answer = client.post_json(f"{host.address}/agents", body)
    assert answer["proxy"] == {"host_url": host.address, "agent_id": "by-json"}
    with pytest.raises(DuplicateAgentError) as caught:
        client.post_json(f"{host.address}/agents", body)
    assert caught.value.host_name == "alpha"


def test_request_returns_any_status(host: Host, client: HostClient) -> None:
    status, headers, data = client.request(
        "GET", f"{host.address}/no/such/route", accept="application/json"
    )
    assert status == 404
    assert headers.get("Content-Type", "").startswith("application/json")
    assert b"no-route" in data


def test_unreachable_host_is_a_remote_host_error(client: HostClient) -> None:
    url = dead_url()
    with pytest.raises(RemoteHostError, match=f"could not reach {url}"):
        client.get_json(f"{url}/health")
    with pytest.raises(RemoteHostError, match="could not reach"):
        wire_proxy_url = PagletProxy(url, "someone", client)
        wire_proxy_url.send(Message("ping"))


def test_not_a_url_is_refused(client: HostClient) -> None:
    with pytest.raises(RemoteHostError, match="not an http"):
        client.get_json("ftp://example.org/health")


# -- errors ----------------------------------------------------------------------------


def test_remote_errors_keep_type_message_and_host(host: Host, client: HostClient) -> None:
    proxy = wire_proxy(host, host.create(mm.Echo).agent_id, client)
    with pytest.raises(ValueError, match="bad input: because") as caught:
        proxy.send(Message("fail", {"why": "because"}))
    assert isinstance(caught.value, RemoteHandlerError)
    assert caught.value.host_name == "alpha"
    with pytest.raises(NotHandledError):
        proxy.send(Message("not-handled"))
    with pytest.raises(RemoteHandlerError) as custom:
        proxy.send(Message("fail-custom"))
    assert custom.value.remote_type == "support.messaging_models:CustomError"


def test_unknown_and_malformed_agent_ids(host: Host, client: HostClient) -> None:
    with pytest.raises(InvalidAgentError) as caught:
        client.agent_info(host.address, "nobody-here")
    assert caught.value.code == "agent-not-found"
    with pytest.raises(InvalidAgentIdError):
        client.agent_info(host.address, "../etc")


def test_message_that_cannot_be_encoded(host: Host, client: HostClient) -> None:
    proxy = wire_proxy(host, host.create(mm.Echo).agent_id, client)
    with pytest.raises(SerializationError, match="'ping' cannot be sent"):
        proxy.send(Message("ping", {"bad": object()}))
    with pytest.raises(TypeError, match="paglets Message"):
        client.send_message(host.address, proxy.agent_id, "ping")  # type: ignore[arg-type]


def test_send_timeout_is_a_paglet_timeout(host: Host, client: HostClient) -> None:
    proxy = wire_proxy(host, host.create(mm.Echo).agent_id, client)
    mm.gate(proxy.agent_id).clear()
    with pytest.raises(PagletTimeoutError):
        proxy.send(Message("block"), timeout=0.3)
    mm.gate(proxy.agent_id).set()
    assert mm.finished(proxy.agent_id).wait(10)
    assert proxy.send(Message("count")) == 1


# -- authentication --------------------------------------------------------------------


def test_missing_key_names_the_variable(make_host: Callable[..., Host]) -> None:
    keyed = make_host("keyed", api_key="s3cret")
    with HostClient() as anonymous, pytest.raises(AuthenticationError) as caught:
        anonymous.health(keyed.address)
    assert "PAGLETS_API_KEY" in str(caught.value)
    with (
        HostClient(api_key_env="MY_MESH_KEY") as anonymous,
        pytest.raises(AuthenticationError) as caught,
    ):
        anonymous.health(keyed.address)
    assert "MY_MESH_KEY" in str(caught.value)


def test_wrong_key_is_refused(make_host: Callable[..., Host]) -> None:
    keyed = make_host("keyed", api_key="s3cret")
    with HostClient(api_key="wrong") as wrong, pytest.raises(AuthenticationError) as caught:
        wrong.health(keyed.address)
    assert "refused the mesh key from api_key=" in str(caught.value)


def test_key_sources(
    make_host: Callable[..., Host], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keyed = make_host("keyed", api_key="s3cret")
    with HostClient(api_key="s3cret") as explicit:
        assert explicit.health(keyed.address)["name"] == "keyed"
    monkeypatch.setenv("PAGLETS_API_KEY", "s3cret")
    with HostClient() as from_env:
        assert from_env.key_source == "PAGLETS_API_KEY"
        assert from_env.health(keyed.address)["name"] == "keyed"
    monkeypatch.delenv("PAGLETS_API_KEY")
    key_file = Path.home() / ".paglets" / "mesh.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text("s3cret\n")
    with HostClient() as from_file:
        assert from_file.key_source == "~/.paglets/mesh.key"
        assert from_file.health(keyed.address)["name"] == "keyed"


def test_default_client_is_process_wide() -> None:
    assert HostClient.default() is HostClient.default()


# -- connections ---------------------------------------------------------------------------


class _DroppingHandler(http.server.BaseHTTPRequestHandler):
    """Answers on HTTP/1.1 without `Connection: close`, then closes anyway: a server whose
    keep-alive timeout ran out between two requests of the client."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def dropping_server() -> Iterator[tuple[str, list[str]]]:
    _DroppingHandler.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DroppingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _DroppingHandler.seen
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_dropped_keepalive_connection_is_retried_once(
    dropping_server: tuple[str, list[str]], client: HostClient
) -> None:
    url, seen = dropping_server
    for i in range(5):
        assert client.get_json(f"{url}/n{i}") == {"ok": True}
    # Each request reached the server exactly once despite the stale connections.
    assert seen == [f"/n{i}" for i in range(5)]


def test_many_threads_share_one_client(host: Host, client: HostClient) -> None:
    proxies = [wire_proxy(host, host.create(mm.Echo).agent_id, client) for _ in range(4)]
    errors: list[BaseException] = []

    def work(proxy: PagletProxy) -> None:
        try:
            for _ in range(25):
                proxy.send(Message("count"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in proxies for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert [p.send(Message("count")) for p in proxies] == [51] * 4


# -- delivery ids ----------------------------------------------------------------------------


def test_an_explicit_message_id_runs_once(host: Host, client: HostClient) -> None:
    proxy = wire_proxy(host, host.create(mm.Echo).agent_id, client)
    message = Message("count", message_id="delivery-1")
    assert proxy.send(message) == 1
    assert proxy.send(message) == 1  # the stored reply; the handler did not run again
    assert proxy.send(Message("count")) == 2


def test_a_reused_message_without_explicit_id_runs_every_time(
    host: Host, client: HostClient
) -> None:
    proxy = wire_proxy(host, host.create(mm.Echo).agent_id, client)
    message = Message("count")
    assert [proxy.send(message) for _ in range(3)] == [1, 2, 3]


# -- creation and listings ---------------------------------------------------------------


def test_create_agent_from_classes_and_names(host: Host, client: HostClient) -> None:
    proxy = client.create_agent(
        host.address, mm.Echo, None, mm.EchoState(count=7), agent_id="seven"
    )
    assert proxy == PagletProxy(host.address, "seven")
    assert proxy.client is client
    assert host.get_state("seven").count == 7
    by_name = client.create_agent(
        host.address,
        "support.messaging_models:Echo",
        "support.messaging_models:EchoState",
        {"count": 2},
    )
    assert host.get_state(by_name.agent_id).count == 2
    with pytest.raises(DuplicateAgentError):
        client.create_agent(host.address, mm.Echo, agent_id="seven")


def test_list_agents_and_events(host: Host, client: HostClient) -> None:
    a = host.create(mm.Echo)
    b = host.create(mm.Echo)
    b.deactivate()
    active = {s["agent_id"] for s in client.list_agents(host.address)}
    assert active == {a.agent_id}
    everything = {s["agent_id"] for s in client.list_agents(host.address, state="all")}
    assert everything == {a.agent_id, b.agent_id}
    events = client.events(host.address, 0, 1000)
    kinds = [e["kind"] for e in events if e.get("agent_id") == b.agent_id]
    assert "create" in kinds
    assert all(isinstance(e, dict) for e in events)


def test_send_future_through_the_client(host: Host, client: HostClient) -> None:
    proxy = wire_proxy(host, host.create(mm.Echo).agent_id, client)
    futures = [client.send_future(host.address, proxy.agent_id, Message("count")) for _ in range(5)]
    assert sorted(f.get_reply(10) for f in futures) == [1, 2, 3, 4, 5]
    failing = client.send_future(host.address, proxy.agent_id, Message("fail"))
    with pytest.raises(ValueError):
        failing.get_reply(10)


# -- following moves -------------------------------------------------------------------------


def test_client_follows_a_move_and_caches_the_new_address(
    make_host: Callable[..., Host], client: HostClient
) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    agent_id = alpha.create(moves.Traveller).agent_id
    alpha.dispatch(agent_id, beta.address)
    old = wire_proxy(alpha, agent_id, client)
    assert old.send(Message("where")) == "beta"
    assert old.get_address() == beta.address
    # Another proxy of the same paglet made with the old URL goes straight to the new host.
    again = PagletProxy(alpha.address, agent_id, client)
    assert again.get_address() == beta.address
    assert again.send(Message("add", {"n": 2})) == 2
    # An unrelated paglet that happens to use the same id elsewhere is not misrouted.
    gamma = make_host("gamma")
    gamma.create(mm.Echo, agent_id=agent_id)
    assert PagletProxy(gamma.address, agent_id, client).get_address() == gamma.address


def test_client_follows_a_chain_of_moves(
    make_host: Callable[..., Host], client: HostClient
) -> None:
    alpha, beta, gamma = make_host("alpha"), make_host("beta"), make_host("gamma")
    agent_id = alpha.create(moves.Traveller).agent_id
    alpha.dispatch(agent_id, beta.address)
    beta.dispatch(agent_id, gamma.address)
    proxy = wire_proxy(alpha, agent_id, client)
    assert proxy.send(Message("where")) == "gamma"
    assert proxy.info()["epoch"] == 3
    assert proxy.get_address() == gamma.address


def test_a_hop_limit_of_zero_does_not_follow(
    make_host: Callable[..., Host],
) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    agent_id = alpha.create(moves.Traveller).agent_id
    alpha.dispatch(agent_id, beta.address)
    strict = HostClient(max_forward_hops=0, in_process=False)
    with strict, pytest.raises(InvalidAgentError, match="forwarding hops"):
        strict.send_message(alpha.address, agent_id, Message("where"))


def test_a_broken_chain_is_resolved_through_home(
    make_host: Callable[..., Host], client: HostClient
) -> None:
    alpha, beta, gamma, delta = (make_host(n) for n in ("alpha", "beta", "gamma", "delta"))
    agent_id = alpha.create(moves.Traveller).agent_id  # alpha is its home
    alpha.dispatch(agent_id, beta.address)
    # The client knows the paglet by its address on beta.
    on_beta = PagletProxy(beta.address, agent_id, client)
    beta.dispatch(agent_id, gamma.address)
    assert on_beta.send(Message("where")) == "gamma"  # beta's pointer, then cached
    gamma.dispatch(agent_id, delta.address)
    wait_until(lambda: alpha.transfers.location(agent_id).get("host_url") == delta.address)
    gamma.stop()  # the cached address is gone; beta still points at gamma
    assert on_beta.send(Message("where")) == "delta"
    assert on_beta.get_address() == delta.address


def test_dispatch_through_the_client_updates_the_cache(
    make_host: Callable[..., Host], client: HostClient
) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    agent_id = alpha.create(moves.Traveller).agent_id
    moved = client.dispatch(alpha.address, agent_id, TransferTicket(beta.address, timeout=10))
    assert moved == PagletProxy(beta.address, agent_id)
    assert moved.acknowledged
    assert PagletProxy(alpha.address, agent_id, client).get_address() == beta.address


# -- TLS ---------------------------------------------------------------------------------------


def test_https_with_the_mesh_ca_and_a_client_certificate(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path)
    host = make_host(
        "tls",
        api_key="s3cret",
        tls_cert=certs["server_cert"],
        tls_key=certs["server_key"],
        tls_ca=certs["ca_cert"],
    )
    url = f"https://127.0.0.1:{host.port}"
    agent_id = host.create(mm.Echo).agent_id
    mutual = HostClient(
        tls_ca=certs["ca_cert"],
        tls_cert=certs["client_cert"],
        tls_key=certs["client_key"],
        in_process=False,
    )
    with mutual:  # no key: the verified client certificate authenticates
        assert mutual.health(url)["tls"] is True
        assert PagletProxy(url, agent_id, mutual).send(Message("count")) == 1
    with HostClient(api_key="s3cret") as system_cas, pytest.raises(RemoteHostError, match="TLS"):
        system_cas.health(url)  # the test CA is not trusted by default
