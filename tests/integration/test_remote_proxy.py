"""`PagletProxy` over the network (api.md §11, §12; architecture §8).

Proxies built with `HostClient(in_process=False)` take the wire path even though the host
runs in this process; a few tests use a host in a second process, where every path is
remote by nature.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from paglets import (
    INACTIVE,
    Host,
    HostClient,
    Message,
    PagletProxyRef,
    TransferTicket,
)
from paglets.core.agent import ACTIVE
from paglets.core.errors import (
    InvalidAgentError,
    PagletInactiveError,
    SerializationError,
    TransferError,
)
from paglets.persistence import DeactivationPolicy
from paglets.remote.proxy import PagletProxy
from support import messaging_models as mm
from support import move_models as moves
from support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _release_gates() -> Iterator[None]:
    yield
    mm.release_all()


@pytest.fixture
def client() -> Iterator[HostClient]:
    c = HostClient(in_process=False)
    yield c
    c.close()


def over_wire(proxy: PagletProxy, client: HostClient) -> PagletProxy:
    return PagletProxy(proxy.host_url, proxy.agent_id, client)


_FAR_HOST = """
import sys
from paglets import Host
host = Host("far", persistence_dir=sys.argv[1], mesh_version="test").start_background()
print(host.address, flush=True)
sys.stdin.read()
host.stop()
"""


@pytest.fixture
def far_host(tmp_path: Path) -> Iterator[str]:
    """A host in a second Python process; yields its URL."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "tests"), str(ROOT / "src"), env.get("PYTHONPATH", "")]
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", _FAR_HOST, str(tmp_path / "far")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://"), f"far host did not start (exit {proc.poll()})"
        yield url
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- routing -------------------------------------------------------------------------------


def test_in_process_proxies_skip_the_network(host: Host, client: HostClient) -> None:
    proxy = host.create(mm.Echo)
    me = threading.current_thread().name
    # The caller's thread runs the handler itself: no HTTP, no worker hop.
    assert proxy.send(Message("where")) == me
    assert PagletProxy(host.address, proxy.agent_id).send(Message("where")) == me
    assert PagletProxy(host.address, proxy.agent_id, HostClient()).send(Message("where")) == me
    # in_process=False forces the wire: the handler runs on a host worker.
    assert over_wire(proxy, client).send(Message("where")) != me


def test_is_remote(host: Host, client: HostClient, far_host: str) -> None:
    proxy = host.create(mm.Echo)
    assert not proxy.is_remote()
    assert PagletProxy(far_host, "x", client).is_remote()
    assert proxy.is_remote(far_host)
    owned = HostClient(owner_url=host.address)
    assert not PagletProxy(host.address, "x", owned).is_remote()
    assert PagletProxy(far_host, "x", owned).is_remote()


# -- queries ---------------------------------------------------------------------------------


def test_info_and_states(host: Host, client: HostClient) -> None:
    proxy = over_wire(host.create(mm.Echo), client)
    info = proxy.info()
    assert info["agent_id"] == proxy.agent_id
    assert info["class_name"] == "support.messaging_models:Echo"
    assert info["active"] is True
    assert proxy.get_agent_class_name() == "support.messaging_models:Echo"
    assert proxy.is_valid() and proxy.is_active()
    assert proxy.is_state(ACTIVE) and proxy.is_state(True) and not proxy.is_state(INACTIVE)
    assert proxy.get_agent_id() == proxy.agent_id
    assert proxy.get_address() == host.address
    ghost = PagletProxy(host.address, "ghost", client)
    assert not ghost.is_valid() and not ghost.is_active() and not ghost.is_state(INACTIVE)


def test_get_state(host: Host, client: HostClient) -> None:
    proxy = over_wire(host.create(moves.Traveller, moves.TravellerState(count=3)), client)
    state = proxy.get_state()
    assert state == moves.TravellerState(count=3)  # its class is imported here
    assert proxy.get_state(moves.TravellerState).count == 3
    assert client.agent_state(host.address, proxy.agent_id)["state"]["count"] == 3


# -- messages --------------------------------------------------------------------------------


@pytest.mark.parametrize("what", sorted(mm.REPLIES))
def test_replies_match_the_in_process_path(host: Host, client: HostClient, what: str) -> None:
    local = host.create(mm.Echo)
    remote = over_wire(local, client)
    message = Message("reply", {"what": what})
    assert remote.send(message) == local.send(message)


def test_typed_replies(host: Host, client: HostClient) -> None:
    proxy = over_wire(host.create(mm.Echo), client)
    ask = {what: Message("reply", {"what": what}) for what in mm.REPLIES}
    assert proxy.send(ask["dataclass"], reply_type=mm.Point) == mm.Point(1, 2, "p")
    assert proxy.send(ask["enum"], reply_type=mm.Color) is mm.Color.BLUE
    assert proxy.send(ask["tuple"], reply_type=tuple[int, str, float]) == (1, "a", 2.5)
    assert proxy.send(ask["bytes"], reply_type=bytes) == b"\x00\xffpaglets"
    assert proxy.send(ask["datetime"], reply_type=type(mm.WHEN)) == mm.WHEN
    with pytest.raises(SerializationError):
        proxy.send(ask["str"], reply_type=int)


def test_message_arguments_arrive_as_in_process(host: Host, client: HostClient) -> None:
    proxy = over_wire(host.create(mm.Echo), client)
    args = {"items": [1, 2], "point": mm.Point(1, 2), "blob": b"\x00\x01"}
    message = Message("inspect", args, arg=mm.Point(5, 6))
    seen = proxy.send(message)
    assert seen["types"] == {"items": "list", "point": "dict", "blob": "bytes"}
    assert seen["point"] == {"x": 1, "y": 2, "label": ""}
    assert seen["blob"] == b"\x00\x01"
    assert message.args["items"] == [1, 2]  # the caller's message is untouched


def test_send_async_future_and_oneway(host: Host, client: HostClient) -> None:
    proxy = over_wire(host.create(mm.Echo), client)
    assert asyncio.run(proxy.send_async(Message("count"))) == 1
    future = proxy.send_future(Message("count"))
    assert future.get_reply(10) == 2
    failing = proxy.send_future(Message("fail"))
    with pytest.raises(ValueError):
        failing.get_reply(10)
    proxy.send_oneway(Message("record", {"tag": "one-way"}))
    wait_until(lambda: "one-way" in mm.records(proxy.agent_id))
    proxy.send_oneway(Message("record", {"tag": "no-wait"}), wait=False)
    wait_until(lambda: "no-wait" in mm.records(proxy.agent_id))


def test_sender_is_named_for_sends_from_a_paglet(host: Host, far_host: str) -> None:
    far = host.create_remote(far_host, mm.Echo)
    assert far.host_url == far_host
    relay = host.create(mm.Echo)
    # The relay's context sends to the far paglet through this host's client, as itself.
    context = mm.INSTANCES[relay.agent_id].context
    answer = context.send(far.agent_id, Message("ping"), host_url=far_host)
    assert answer == {"id": far.agent_id, "sender": relay.agent_id, "reply_to": host.address}
    got = context.get_proxy(far.agent_id, far_host)
    assert got is not None and got.send(Message("count")) == 1


def test_create_remote_then_every_call_crosses_processes(far_host: str, host: Host) -> None:
    proxy = host.create_remote(far_host, mm.Echo, mm.EchoState(count=10), agent_id="far-one")
    assert proxy == PagletProxy(far_host, "far-one")
    assert proxy.send(Message("count")) == 11
    assert proxy.get_state().count == 11
    clone = proxy.clone()
    assert clone.host_url == far_host and clone.agent_id != "far-one"
    assert clone.send(Message("count")) == 12
    proxy.dispose()
    assert not proxy.is_valid()


# -- lifecycle -----------------------------------------------------------------------------


def test_deactivate_activate_and_dispose(host: Host, client: HostClient) -> None:
    proxy = over_wire(host.create(mm.Echo), client)
    sleeping = proxy.deactivate(reason="nap", policy=DeactivationPolicy(activate_on_message=False))
    assert sleeping == proxy and sleeping.client is client
    assert not proxy.is_active() and proxy.is_state(INACTIVE) and proxy.is_valid()
    with pytest.raises(PagletInactiveError):
        proxy.send(Message("count"), no_delay=True)
    assert proxy.activate() == proxy
    assert proxy.send(Message("count")) == 1
    proxy.dispose()
    assert not proxy.is_valid()
    with pytest.raises(InvalidAgentError):
        proxy.send(Message("count"))


def test_dispatch_clone_and_retract(make_host: Callable[..., Host], client: HostClient) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    proxy = over_wire(alpha.create(moves.Traveller), client)
    assert proxy.send(Message("add", {"n": 4})) == 4
    moved = proxy.dispatch(TransferTicket(beta.address))
    assert moved == PagletProxy(beta.address, proxy.agent_id)
    assert moved.client is client
    assert moved.send(Message("where")) == "beta"
    assert proxy.send(Message("where")) == "beta"  # the old proxy follows

    twin = moved.clone(alpha.address)
    assert twin.host_url == alpha.address and twin.agent_id != proxy.agent_id
    assert twin.send(Message("add")) == 5
    local_twin = moved.clone()
    assert local_twin.host_url == beta.address

    with pytest.raises(TransferError, match="needs target="):
        moved.retract()
    back = moved.retract(alpha.address)
    assert back == PagletProxy(alpha.address, proxy.agent_id)
    assert proxy.agent_id in alpha.registry.live
    assert proxy.send(Message("where")) == "alpha"


def test_retract_defaults_to_the_clients_own_host(
    make_host: Callable[..., Host],
) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    agent_id = alpha.create(moves.Traveller).agent_id
    alpha.dispatch(agent_id, beta.address)
    owned = HostClient(in_process=False, owner_url=alpha.address)
    back = PagletProxy(beta.address, agent_id, owned).retract()
    assert back.host_url == alpha.address
    assert agent_id in alpha.registry.live


# -- references ----------------------------------------------------------------------------


def test_reference_resolution(host: Host, client: HostClient, far_host: str) -> None:
    proxy = host.create(mm.Echo)
    ref = PagletProxyRef.from_proxy(proxy)
    with_client = ref.resolve(client)
    assert with_client.client is client
    assert with_client.send(Message("where")) != threading.current_thread().name
    via_host = ref.resolve(host)
    assert via_host.send(Message("where")) == threading.current_thread().name
    default = ref.resolve()
    assert default.client is HostClient.default()
    assert default.send(Message("count")) == 1
    far_ref = PagletProxyRef(far_host, "nobody")
    assert far_ref.resolve(host).client is host.peer_client
    assert not far_ref.resolve().is_valid()
