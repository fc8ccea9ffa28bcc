"""The relay between real `paglets host` processes (network.md §3.8): a hub, a node started
with `--connect-to HUB_URL`, and another member. The test never uses the node's own port: it
reaches the node only at `HUB_URL/relay/hosts/<name>`.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paglets import Message
from paglets.remote.client import HostClient
from support.processes import HostProcess
from support.waiting import wait_until

KEY = "relay-test-key-" + "0" * 32
TESTS = str(Path(__file__).resolve().parents[1])  # support.relay_models, for the hosts
COUNTER = "paglets.examples.counter:Counter"
COUNTER_STATE = "paglets.examples.counter:CounterState"
TALLY = "support.relay_models:Tally"
TALLY_STATE = "support.relay_models:TallyState"
JOIN_DEADLINE = 30.0


def start_mesh(
    host_process: Callable[..., HostProcess], *hub_args: str
) -> tuple[HostProcess, HostProcess, str]:
    env = {"PYTHONPATH": TESTS}
    hub = host_process("hub", api_key=KEY, env=env, args=list(hub_args))
    node = host_process("n1", api_key=KEY, env=env, args=["--connect-to", hub.url])
    relay_url = f"{hub.url}/relay/hosts/n1"
    ready = node.stdout.splitlines()[0]
    assert f"connected via {relay_url}" in ready, node.describe()
    return hub, node, relay_url


def member_view(client: HostClient, url: str) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in client.get_json(f"{url}/mesh/members")["members"]}


def sees(client: HostClient, url: str, name: str, member_url: str) -> bool:
    member = member_view(client, url).get(name)
    return member is not None and member["status"] == "alive" and member["url"] == member_url


def process_state(pid: int) -> str:
    """The process's state letter in /proc (`T`: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


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
    status, _h, data = client.request(
        "POST",
        f"{url}/agents/{agent_id}/messages",
        body=json.dumps(body).encode(),
        accept="application/json",
        headers={"Idempotency-Key": key} if key else None,
    )
    return status, json.loads(data)


def test_paglets_are_created_messaged_and_moved_in_and_out_through_the_hub(
    host_process: Callable[..., HostProcess],
) -> None:
    hub, _node, relay_url = start_mesh(host_process)
    beta = host_process("beta", api_key=KEY, args=["--peer", hub.url])
    client = HostClient(timeout=20.0, api_key=KEY)

    for url in (hub.url, beta.url):
        wait_until(lambda u=url: sees(client, u, "n1", relay_url), timeout=JOIN_DEADLINE)
    assert client.get_json(f"{relay_url}/health")["name"] == "n1"

    tally = client.create_agent(relay_url, TALLY, TALLY_STATE, {})
    assert tally.host_url == relay_url
    assert client.send_message(relay_url, tally.agent_id, Message("add")) == 1

    # Into the node, by its mesh name: beta sends PREPARE and COMMIT through the hub.
    proxy = client.create_agent(beta.url, COUNTER, COUNTER_STATE, {"name": "x", "count": 1})
    moved = client.dispatch(beta.url, proxy.agent_id, "n1")
    assert moved.host_url == relay_url
    assert client.send_message(relay_url, proxy.agent_id, Message("add")) == 2

    # Out of the node, by mesh name: the node talks to beta directly.
    back = client.dispatch(relay_url, proxy.agent_id, "beta")
    assert back.host_url.rstrip("/") == beta.url.rstrip("/")
    assert client.send_message(beta.url, proxy.agent_id, Message("add")) == 3

    entry = next(
        n for n in client.get_json(f"{hub.url}/relay/diagnostics")["nodes"] if n["name"] == "n1"
    )
    assert entry["online"] and entry["delivered"] > 0


def test_a_timed_out_delivery_is_unknown_and_never_runs_twice(
    host_process: Callable[..., HostProcess],
) -> None:
    _hub, node, relay_url = start_mesh(host_process, "--relay-delivery-timeout", "2s")
    client = HostClient(timeout=20.0, api_key=KEY)
    tally = client.create_agent(relay_url, TALLY, TALLY_STATE, {})

    # A handler longer than the deadline: 504, outcome unknown; the run goes on, and a
    # retry under the same Idempotency-Key joins it or gets its answer.
    key, mid = uuid.uuid4().hex, uuid.uuid4().hex
    args = {"seconds": 4.0}
    status, body = post_message(
        client, relay_url, tally.agent_id, "slow", args, message_id=mid, key=key
    )
    assert status == 504, body
    assert body["code"] == "relay-timeout" and body["detail"]["outcome"] == "unknown"

    def retried() -> dict[str, Any] | None:
        status, body = post_message(
            client, relay_url, tally.agent_id, "slow", args, message_id=mid, key=key
        )
        assert status in (200, 504), body
        return body if status == 200 else None

    assert wait_until(retried, timeout=30, interval=0.2) == {"result": 1}
    assert client.send_message(relay_url, tally.agent_id, Message("get")) == 1

    # A paused node: the hub gives up at its deadline and sends `cancel`; when the node
    # resumes it reads the request and its cancel together, and never runs it.
    node.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: process_state(node.pid) == "T", timeout=10)  # stopped for real
        late = uuid.uuid4().hex
        status, body = post_message(client, relay_url, tally.agent_id, "add", {}, message_id=late)
        assert status == 504 and body["detail"]["outcome"] == "unknown", body
    finally:
        node.signal(signal.SIGCONT)

    def node_state() -> dict[str, Any] | None:
        status, _h, data = client.request(
            "GET", f"{relay_url}/relay/diagnostics", accept="application/json"
        )
        return json.loads(data)["connected_to"] if status == 200 else None

    def cancelled_before_start() -> bool:
        return (node_state() or {}).get("cancelled_before_start", 0) >= 1

    wait_until(cancelled_before_start, timeout=30, interval=0.05)
    assert client.send_message(relay_url, tally.agent_id, Message("get")) == 1
    # The same message sent again runs now, once.
    for _ in range(2):
        status, body = post_message(client, relay_url, tally.agent_id, "add", {}, message_id=late)
        assert status == 200 and body == {"result": 2}, body
    assert client.send_message(relay_url, tally.agent_id, Message("get")) == 2


def test_a_second_host_cannot_take_a_connected_relay_name(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    hub, _node, _url = start_mesh(host_process)
    impostor = host_process(
        "n1",
        api_key=KEY,
        persistence_dir=tmp_path / "impostor",
        args=["--connect-to", hub.url],
        start=False,
    )
    try:
        impostor.start()
    except RuntimeError:
        pass
    assert impostor.wait(30) == 2, impostor.describe()
    assert "name is taken" in impostor.stderr + impostor.stdout
