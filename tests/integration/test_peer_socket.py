"""The peer socket, `GET /peer/ws`: the binary fast path for messages (network.md §1.1,
architecture §8), host side (`paglets.runtime.peer_socket`) and client side
(`paglets.remote.peer_socket`).

Hosts run in this process; clients are built with `in_process=False`, so every message
takes the wire. One test talks to a `paglets host` process, one speaks raw frames through
the `websockets` library (any WebSocket client can), one runs over TLS.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from paglets import Host, HostClient, Message
from paglets.core.errors import (
    AuthenticationError,
    ForbiddenError,
    InvalidAgentError,
    InvalidAgentIdError,
    NotHandledError,
    PagletError,
    RemoteHandlerError,
)
from paglets.remote.proxy import PagletProxy
from paglets.runtime import peer_session, peer_socket
from paglets.runtime.http_wire import HttpRefusal
from support import messaging_models as mm
from support import move_models as moves
from support.certs import make_certificates
from support.waiting import wait_until

TESTS_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _release_gates() -> Iterator[None]:
    yield
    mm.release_all()


@pytest.fixture
def client() -> Iterator[HostClient]:
    c = HostClient(in_process=False)
    yield c
    c.close()


def wire(host: Host, agent_id: str, client: HostClient) -> PagletProxy:
    return PagletProxy(host.address, agent_id, client)


def sessions(host: Host) -> int:
    """How many peer-socket connections the host is serving now."""
    peer = host.http.peer
    return 0 if peer is None else len(peer.sessions)


def upgrade(host: Host, headers: dict[str, str] | None = None) -> bytes:
    """Send a WebSocket upgrade for /peer/ws by hand; the raw bytes of the answer's start."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /peer/ws HTTP/1.1",
        f"Host: 127.0.0.1:{host.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def incoming(ws: Any) -> Any:
    """The next frame a raw WebSocket client got, decoded."""
    data = ws.recv(timeout=10)
    assert isinstance(data, bytes), f"a text message came: {data!r}"
    return msgspec.msgpack.decode(data)


# -- round trips --------------------------------------------------------------------------


def test_a_round_trip_takes_the_peer_socket(host: Host, client: HostClient) -> None:
    proxy = wire(host, host.create(mm.Echo).agent_id, client)
    assert proxy.send(Message("reply", {"what": "dataclass"}), reply_type=mm.Point) == mm.Point(
        1, 2, "p"
    )
    assert proxy.send(Message("reply", {"what": "bytes"})) == mm.REPLIES["bytes"]
    assert proxy.send_future(Message("count")).get_reply(10) == 1
    proxy.send_oneway(Message("count"))
    assert proxy.send(Message("count")) == 3
    assert sessions(host) == 1  # one connection, shared by every call


def test_errors_keep_their_type(host: Host, client: HostClient) -> None:
    proxy = wire(host, host.create(mm.Echo).agent_id, client)
    with pytest.raises(ValueError, match="bad input: because") as caught:
        proxy.send(Message("fail", {"why": "because"}))
    assert isinstance(caught.value, RemoteHandlerError)
    assert caught.value.host_name == "alpha"
    assert "bad input" in (caught.value.remote_traceback or "")
    with pytest.raises(ForbiddenError, match="echo forbids this"):
        proxy.send(Message("fail-paglet"))
    with pytest.raises(RemoteHandlerError) as custom:
        proxy.send(Message("fail-custom"))
    assert custom.value.remote_type == "support.messaging_models:CustomError"
    with pytest.raises(NotHandledError):
        proxy.send(Message("not-handled"))
    with pytest.raises(InvalidAgentError) as missing:
        client.send_message(host.address, "nobody-here", Message("count"))
    assert missing.value.code == "agent-not-found"
    with pytest.raises(InvalidAgentIdError):
        client.send_message(host.address, "../etc", Message("count"))
    assert sessions(host) == 1


def test_a_host_process_answers_over_the_peer_socket(
    host_process: Callable[..., Any], client: HostClient
) -> None:
    path = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
    far = host_process("far", env={"PYTHONPATH": path})
    agent_id = client.create_agent(far.url, "support.messaging_models:Echo").agent_id
    proxy = PagletProxy(far.url, agent_id, client)
    conn = client._sockets.get(far.url)
    assert conn is not None and conn.name == "far"
    assert [proxy.send(Message("count")) for _ in range(50)] == list(range(1, 51))
    for _ in range(200):
        proxy.send_oneway(Message("count"), wait=False)
    with pytest.raises(ValueError, match="bad input"):
        proxy.send(Message("fail"))
    assert proxy.send(Message("count")) == 251
    assert client._sockets.get(far.url) is conn  # one persistent connection throughout


# -- following a move -----------------------------------------------------------------------


def test_a_moved_paglet_is_followed(make_host: Callable[..., Host], client: HostClient) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    agent_id = alpha.create(moves.Traveller).agent_id
    proxy = wire(alpha, agent_id, client)
    assert proxy.send(Message("add")) == 1
    alpha.dispatch(agent_id, beta.address)
    assert proxy.send(Message("add")) == 2  # alpha answers `moved`; the client follows
    assert client.locations.start(alpha.address, agent_id)[0] == beta.address
    proxy.send_oneway(Message("add"), wait=False)  # goes straight to beta now
    assert proxy.send(Message("add")) == 4
    assert sessions(beta) == 1


def test_a_pipelined_message_to_a_moved_paglet_is_followed(
    make_host: Callable[..., Host], client: HostClient
) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    agent_id = alpha.create(moves.Traveller).agent_id
    failures: list[Any] = []
    client.on_oneway_failure = lambda *failure: failures.append(failure)
    wire(alpha, agent_id, client).send(Message("add"))  # the socket to alpha is open
    alpha.dispatch(agent_id, beta.address)
    wire(alpha, agent_id, client).send_oneway(Message("add"), wait=False)
    assert client.flush(10)
    wait_until(lambda: beta.get_state(agent_id).count == 2)
    assert failures == []


# -- one-way messages -------------------------------------------------------------------------


@pytest.mark.parametrize("lane_limit", [8192, 4], ids=["lane", "full-lane"])
def test_one_way_messages_keep_their_order(
    host: Host, client: HostClient, lane_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a tiny lane the reader keeps stopping until the lane drains (TCP back-pressure).
    monkeypatch.setattr(peer_session, "LANE_LIMIT", lane_limit)
    agent_id = host.create(mm.Echo).agent_id
    proxy = wire(host, agent_id, client)
    tags = [str(i) for i in range(2000)]
    for i, tag in enumerate(tags):
        proxy.send_oneway(Message("record", {"tag": tag}), wait=i % 7 == 0)
    proxy.send(Message("record", {"tag": "last"}))  # a synchronous send queues after them
    assert mm.records(agent_id) == [*tags, "last"]


def test_a_pipelined_burst_of_10000_is_all_handled(host: Host, client: HostClient) -> None:
    proxy = wire(host, host.create(mm.Echo).agent_id, client)
    failures: list[Any] = []
    client.on_oneway_failure = lambda *failure: failures.append(failure)
    count = Message("count")
    for _ in range(10_000):
        proxy.send_oneway(count, wait=False)
    assert client.flush(60)
    assert proxy.send(count, timeout=60) == 10_001
    assert failures == []


def test_a_failed_pipelined_message_is_reported(host: Host, client: HostClient) -> None:
    proxy = wire(host, host.create(mm.Echo).agent_id, client)
    failures: list[tuple[str, str, PagletError]] = []
    client.on_oneway_failure = lambda *failure: failures.append(failure)
    proxy.send(Message("count"))
    PagletProxy(host.address, "nobody-here", client).send_oneway(
        Message("count", message_id="f" * 32), wait=False
    )
    assert client.flush(10)
    wait_until(lambda: failures)
    agent_id, message_id, error = failures[0]
    assert (agent_id, message_id) == ("nobody-here", "f" * 32)
    assert isinstance(error, InvalidAgentError)


# -- authentication and fallback -------------------------------------------------------------


def test_the_upgrade_needs_the_key(make_host: Callable[..., Host]) -> None:
    keyed = make_host("keyed", api_key="s3cret")
    assert upgrade(keyed).startswith(b"HTTP/1.1 401")
    assert upgrade(keyed, {"Authorization": "Bearer wrong"}).startswith(b"HTTP/1.1 401")
    assert sessions(keyed) == 0
    answer = upgrade(keyed, {"Authorization": "Bearer s3cret"})
    assert answer.startswith(b"HTTP/1.1 101")
    agent_id = keyed.create(mm.Echo).agent_id
    with HostClient(in_process=False) as keyless, pytest.raises(AuthenticationError):
        keyless.send_message(keyed.address, agent_id, Message("count"))
    with HostClient(api_key="s3cret", in_process=False) as keyed_client:
        assert keyed_client.send_message(keyed.address, agent_id, Message("count")) == 1
        assert keyed_client._sockets.get(keyed.address) is not None


def test_a_plain_get_is_told_to_upgrade(host: Host) -> None:
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as sock:
        sock.sendall(b"GET /peer/ws HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 426")


def test_a_host_without_the_peer_socket_is_reached_over_http(
    make_host: Callable[..., Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    async def like_an_old_host(self: Any, request: Any) -> Any:
        asked.append(request.path)
        raise HttpRefusal(f"no route GET {request.path}", code="no-route")

    monkeypatch.setattr(peer_socket.PeerServer, "handle", like_an_old_host)
    host = make_host("old")
    with HostClient(in_process=False) as client:
        proxy = wire(host, host.create(mm.Echo).agent_id, client)
        assert proxy.send(Message("count")) == 1
        proxy.send_oneway(Message("count"), wait=False)  # no socket: waits for the ack
        assert proxy.send(Message("count")) == 3
    assert asked == ["/peer/ws"]  # refused once, then HTTP without asking again
    assert sessions(host) == 0


# -- at most once -----------------------------------------------------------------------------


def test_a_resent_delivery_id_runs_the_handler_once(host: Host, client: HostClient) -> None:
    """targets r4 over the fast path."""
    agent_id = host.create(moves.Traveller).agent_id
    first = client.send_message(host.address, agent_id, Message("add", message_id="a" * 32))
    again = client.send_message(host.address, agent_id, Message("add", message_id="a" * 32))
    assert first == again == 1
    assert client.send_message(host.address, agent_id, Message("add")) == 2
    # Raw frames: the same delivery id under two request ids of one connection.
    msg = Message("add", message_id="b" * 32).to_wire()
    with connect(f"ws://127.0.0.1:{host.port}/peer/ws", compression=None) as ws:
        welcome = incoming(ws)
        assert welcome["t"] == "welcome" and welcome["name"] == "alpha"
        for rid in (1, 2):
            frame = {"t": "send", "id": rid, "agent": agent_id, "msg": msg}
            ws.send(msgspec.msgpack.encode(frame))
        replies = [incoming(ws) for _ in range(2)]
        ws.ping()  # control frames are answered too
    assert sorted((r["id"], r["result"]) for r in replies) == [(1, 3), (2, 3)]
    assert host.get_state(agent_id).count == 3


def test_bad_frames_are_answered(host: Host) -> None:
    agent_id = host.create(mm.Echo).agent_id
    good = {"t": "send", "id": 3, "agent": agent_id, "msg": Message("count").to_wire()}
    with connect(f"ws://127.0.0.1:{host.port}/peer/ws", compression=None) as ws:
        ws.recv(timeout=10)  # welcome
        ws.send(b"\xc1 not msgpack")
        fault = incoming(ws)
        assert fault["t"] == "fault" and fault["error"]["code"] == "invalid-body"
        bad = {"t": "send", "id": 2, "agent": agent_id, "msg": {"kind": "x", "priority": 99}}
        ws.send(msgspec.msgpack.encode(bad))
        reply = incoming(ws)
        assert reply["id"] == 2 and reply["error"]["error_type"] == "SerializationError"
        assert "priority" in reply["error"]["error"]
        ws.send(msgspec.msgpack.encode({**good, "agent": "../etc"}))
        reply = incoming(ws)
        assert reply["error"]["code"] == "bad-agent-id"
        ws.send(msgspec.msgpack.encode(good))
        assert incoming(ws) == {"t": "reply", "id": 3, "result": 1}
        ws.send("text is not a frame")
        fault = incoming(ws)
        assert "binary" in fault["error"]["error"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


def test_a_connection_lost_mid_call_resends_to_the_same_host_process(
    host: Host, client: HostClient
) -> None:
    agent_id = host.create(mm.Echo).agent_id
    proxy = wire(host, agent_id, client)
    answer: list[Any] = []
    caller = threading.Thread(target=lambda: answer.append(proxy.send(Message("block"))))
    caller.start()
    assert mm.started(agent_id).wait(10)
    peer = host.http.peer
    assert peer is not None
    for session in list(peer.sessions):
        session.close()  # the connection drops while the handler runs
    wait_until(lambda: sessions(host) == 1)  # the client reconnected and sent it again
    mm.gate(agent_id).set()
    caller.join(20)
    assert answer == [True]
    assert host.mailbox_status(agent_id)["delivered"] == 1  # the handler ran once


def test_a_restarted_host_is_reached_on_a_fresh_connection(
    make_host: Callable[..., Host], client: HostClient, tmp_path: Path
) -> None:
    first = make_host("alpha")
    agent_id = first.create(moves.Traveller).agent_id
    assert client.send_message(first.address, agent_id, Message("add")) == 1
    port, url = first.port, first.address
    first.stop()  # the idle connection dies with it
    second = make_host("alpha", persistence_dir=tmp_path / "alpha", port=port)
    assert second.address == url
    # The dead connection is noticed before the frame is written: sent once, on a new one.
    assert client.send_message(url, agent_id, Message("add")) == 2
    assert sessions(second) == 1


# -- concurrency ------------------------------------------------------------------------------


def test_a_slow_handler_does_not_hold_up_the_connection(host: Host, client: HostClient) -> None:
    slow = host.create(mm.Echo).agent_id
    quick = wire(host, host.create(mm.Echo).agent_id, client)
    caller = threading.Thread(target=lambda: wire(host, slow, client).send(Message("block")))
    caller.start()
    assert mm.started(slow).wait(10)
    assert [quick.send(Message("count")) for _ in range(20)] == list(range(1, 21))
    assert not mm.finished(slow).is_set()
    mm.gate(slow).set()
    caller.join(20)


def test_32_concurrent_senders_share_one_connection(host: Host, client: HostClient) -> None:
    agents = [host.create(mm.Serial).agent_id for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(32)

    def sender(i: int) -> None:
        proxy = wire(host, agents[i % 4], client)
        start.wait()
        for _ in range(40):
            try:
                proxy.send(Message("count"), timeout=30)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert [host.get_state(a).count for a in agents] == [8 * 40] * 4
    assert all(mm.MAX_CONCURRENT[a] == 1 for a in agents)
    assert sessions(host) == 1


# -- TLS: served on the event loop ------------------------------------------------------------


def test_tls_connections_are_served_on_the_event_loop(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path)
    host = make_host("tls", tls_cert=certs["server_cert"], tls_key=certs["server_key"])
    url = f"https://127.0.0.1:{host.port}"
    agent_id = host.create(mm.Echo).agent_id
    with HostClient(tls_ca=certs["ca_cert"], in_process=False) as client:
        proxy = PagletProxy(url, agent_id, client)
        assert [proxy.send(Message("count")) for _ in range(20)] == list(range(1, 21))
        for _ in range(500):
            proxy.send_oneway(Message("count"), wait=False)
        assert proxy.send(Message("count")) == 521
        with pytest.raises(ValueError, match="bad input"):
            proxy.send(Message("fail"))
        assert sessions(host) == 1
