"""The relay with in-process hosts on loopback (network.md §3.8): a hub and a node started
with `connect_to`, reached only through `HUB/relay/hosts/<name>` by a network client.

(Real `paglets host` processes, moves and a paused node: tests/system/test_relay.py.)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from paglets import Host, Message
from paglets.core.errors import HostError, RemoteHostError
from paglets.remote.client import HostClient
from paglets.remote.relay_frames import RelaySettings
from paglets.runtime.relay_fallback import RelayFallbackPool, forward
from support.waiting import wait_until

TALLY = "support.relay_models:Tally"
TALLY_STATE = "support.relay_models:TallyState"
MiB = 1024 * 1024


@pytest.fixture
def client() -> Any:
    with HostClient(timeout=20.0) as c:
        yield c


def node_entry(client: HostClient, hub: Host, name: str) -> dict[str, Any] | None:
    nodes = client.get_json(f"{hub.address}/relay/diagnostics")["nodes"]
    return next((n for n in nodes if n["name"] == name), None)


def post_message(
    client: HostClient,
    url: str,
    agent_id: str,
    kind: str,
    args: dict[str, Any],
    *,
    message_id: str,
    key: str | None = None,
) -> tuple[int, dict[str, Any]]:
    body = {"message": {"kind": kind, "args": args, "message_id": message_id}}
    headers = {"Idempotency-Key": key} if key else None
    status, _h, data = client.request(
        "POST",
        f"{url}/agents/{agent_id}/messages",
        body=json.dumps(body).encode(),
        accept="application/json",
        headers=headers,
    )
    return status, json.loads(data)


def start_pair(make_host: Callable[..., Host], **hub_kwargs: Any) -> tuple[Host, Host]:
    hub = make_host("hub", **hub_kwargs)
    node = make_host("n1", connect_to=hub.address, mesh=hub_kwargs.get("mesh", True))
    return hub, node


def test_a_node_is_reached_through_its_hub(
    make_host: Callable[..., Host], client: HostClient
) -> None:
    hub, node = start_pair(make_host)
    relay_url = f"{hub.address}/relay/hosts/n1"
    assert node.address == relay_url  # the URL the hub built, from its welcome
    assert node.relay_node.local_url != relay_url

    assert client.get_json(f"{relay_url}/health")["name"] == "n1"
    proxy = client.create_agent(relay_url, TALLY, TALLY_STATE, {})
    assert proxy.host_url == relay_url
    assert client.send_message(relay_url, proxy.agent_id, Message("add")) == 1
    assert client.send_message(relay_url, proxy.agent_id, Message("get")) == 1

    entry = node_entry(client, hub, "n1")
    assert entry is not None and entry["online"] and entry["connected"]
    assert entry["url"] == relay_url and entry["delivered"] >= 3
    # The node's own view of its link, fetched through the hub.
    mine = client.get_json(f"{relay_url}/relay/diagnostics")["connected_to"]
    assert mine["connected"] and mine["relay_url"] == relay_url and mine["hub_name"] == "hub"
    # The mesh lists the node at its relay URL.
    wait_until(
        lambda: any(
            m["name"] == "n1" and m["url"] == relay_url and m["status"] == "alive"
            for m in client.get_json(f"{hub.address}/mesh/members")["members"]
        ),
        timeout=20,
    )


def test_large_bodies_stream_both_ways_under_credit(
    make_host: Callable[..., Host], client: HostClient
) -> None:
    hub, _node = start_pair(make_host, mesh=False)
    relay_url = f"{hub.address}/relay/hosts/n1"
    data = bytes(range(256)) * (13 * MiB // 256 // 4)  # ~3.25 MiB: four chunks
    status, _h, answer = client.request(
        "POST",
        f"{relay_url}/artifacts?name=big.bin",
        body=data,
        content_type="application/octet-stream",
        accept="application/json",
    )
    assert status == 200, answer
    artifact = json.loads(answer)["artifact"]
    assert artifact["size_bytes"] == len(data)
    status, _h, back = client.request("GET", f"{relay_url}/artifacts/{artifact['artifact_id']}")
    assert status == 200 and back == data
    # A large reply to a message streams back too.
    proxy = client.create_agent(relay_url, TALLY, TALLY_STATE, {})
    blob = client.send_message(relay_url, proxy.agent_id, Message("blob", {"size": 3 * MiB}))
    assert blob == bytes(3 * MiB)


def test_a_delivery_past_the_deadline_is_504_unknown_and_a_retry_runs_it_once(
    make_host: Callable[..., Host], client: HostClient
) -> None:
    settings = RelaySettings(delivery_timeout=0.5)
    hub, _node = start_pair(make_host, mesh=False, relay=settings)
    relay_url = f"{hub.address}/relay/hosts/n1"
    proxy = client.create_agent(relay_url, TALLY, TALLY_STATE, {})
    key, mid = uuid.uuid4().hex, uuid.uuid4().hex

    status, body = post_message(
        client, relay_url, proxy.agent_id, "slow", {"seconds": 1.5}, message_id=mid, key=key
    )
    assert status == 504, body
    assert body["code"] == "relay-timeout" and body["error_type"] == "PagletTimeoutError"
    assert body["detail"]["outcome"] == "unknown"

    def retried() -> dict[str, Any] | None:
        status, body = post_message(
            client, relay_url, proxy.agent_id, "slow", {"seconds": 1.5}, message_id=mid, key=key
        )
        assert status in (200, 504), body
        return body if status == 200 else None

    answer = wait_until(retried, timeout=20, interval=0.2)
    assert answer == {"result": 1}
    assert client.send_message(relay_url, proxy.agent_id, Message("get")) == 1
    entry = node_entry(client, hub, "n1")
    assert entry is not None and entry["timeouts"] >= 1


def test_another_host_id_cannot_take_a_connected_name(
    make_host: Callable[..., Host], tmp_path: Any
) -> None:
    hub, _node = start_pair(make_host, mesh=False)
    other = Host("n1", persistence_dir=tmp_path / "impostor", connect_to=hub.address, mesh=False)
    with pytest.raises(HostError) as refused:
        other.start_background()
    assert refused.value.code == "name-taken"
    assert "name is taken" in str(refused.value)
    other.stop()


def test_past_the_queue_limit_is_429_and_a_dropped_socket_is_502(
    make_host: Callable[..., Host], client: HostClient
) -> None:
    settings = RelaySettings(queue_limit=1, delivery_timeout=30.0)
    hub, node = start_pair(make_host, mesh=False, relay=settings)
    relay_url = f"{hub.address}/relay/hosts/n1"
    proxy = client.create_agent(relay_url, TALLY, TALLY_STATE, {})
    outcome: dict[str, Any] = {}

    def slow() -> None:
        outcome["slow"] = post_message(
            client, relay_url, proxy.agent_id, "slow", {"seconds": 30}, message_id="m-slow"
        )

    thread = threading.Thread(target=slow)
    thread.start()
    wait_until(lambda: (node_entry(client, hub, "n1") or {}).get("in_flight") == 1, timeout=10)
    status, body = post_message(client, relay_url, proxy.agent_id, "get", {}, message_id="m-2")
    assert status == 429 and body["code"] == "relay-queue-full", body

    # The node's socket drops while the slow delivery is in flight.
    relay = node.relay_node
    node._on_loop(lambda: relay.link.close("test: cut the link"))
    thread.join(20)
    status, body = outcome["slow"]
    assert status == 502 and body["code"] == "relay-disconnected", body
    assert body["detail"]["outcome"] == "unknown"


def test_a_silent_node_is_offline_until_it_speaks_again(
    make_host: Callable[..., Host], client: HostClient
) -> None:
    settings = RelaySettings(offline_after=0.3)  # the hub pings every 0.1 s
    hub, node = start_pair(make_host, mesh=False, relay=settings)
    url = f"{hub.address}/relay/hosts/n1/health"

    def online() -> bool:
        return bool((node_entry(client, hub, "n1") or {}).get("online"))

    assert online() and client.get_json(url)["name"] == "n1"
    # The node's event loop stalls (as a paused or overloaded process): no pong comes.
    assert node._loop is not None
    node._loop.call_soon_threadsafe(time.sleep, 2.0)
    wait_until(lambda: not online(), timeout=10)
    status, _h, data = client.request("GET", url, accept="application/json")
    assert status == 503 and json.loads(data)["code"] == "relay-node-offline"
    wait_until(online, timeout=20)
    assert client.get_json(url)["name"] == "n1"
    status, _h, data = client.request("GET", f"{hub.address}/relay/hosts/nobody/health")
    assert status == 404


class _Unreachable:
    """A direct route that cannot connect (as from behind NAT to a LAN-only host)."""

    def exchange(self, method: str, url: str, *args: Any) -> Any:
        raise RemoteHostError(f"could not reach {url}: connection refused (is the host running?)")


def test_a_node_sends_through_its_hub_what_it_cannot_send_itself(
    make_host: Callable[..., Host],
) -> None:
    hub, node = start_pair(make_host, mesh=False)
    other = make_host("other", mesh=False)
    pool = RelayFallbackPool(_Unreachable(), node.relay_node)
    accept = {"Accept": "application/json"}
    status, headers, data = pool.exchange("GET", f"{other.address}/health", None, accept, 10.0)
    assert status == 200 and json.loads(data)["name"] == "other"
    assert "application/json" in headers["content-type"]
    # The hub itself is never a detour to itself.
    with pytest.raises(RemoteHostError, match="connection refused"):
        pool.exchange("GET", f"{hub.address}/health", None, accept, 10.0)
    # The coroutine behind it, on the node's loop.
    future = asyncio.run_coroutine_threadsafe(
        forward(node.relay_node, "GET", f"{other.address}/health", None, {}, 10.0), node._loop
    )
    assert future.result(15)[0] == 200
