"""Mesh membership between real `paglets host` processes (network.md §3.4-3.6).

Hosts join through `--peer` seeds and exchange SWIM frames over `POST /mesh/frame`; each
one's view is read from `GET /mesh/members`. A SIGKILLed host must be declared dead by the
others, come back alive when restarted (with a higher incarnation), a host started with
another `--mesh-version` must be listed incompatible, and a dispatch may name its target.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from paglets import Message
from paglets.remote.client import HostClient
from support.processes import HostProcess
from support.waiting import wait_until

COUNTER = "paglets.examples.counter:Counter"
COUNTER_STATE = "paglets.examples.counter:CounterState"
JOIN_DEADLINE = 20.0
DEATH_DEADLINE = 15.0  # about 10 s on a quiet machine; polled, so usually far less


def view(client: HostClient, host: HostProcess) -> dict[str, dict[str, Any]]:
    """`name → member` as `host` sees the mesh (itself included)."""
    members = client.get_json(f"{host.url}/mesh/members")["members"]
    return {m["name"]: m for m in members}


def status_of(client: HostClient, host: HostProcess, name: str) -> str | None:
    member = view(client, host).get(name)
    return None if member is None else member["status"]


def sees_all(client: HostClient, hosts: list[HostProcess], names: set[str]) -> bool:
    for host in hosts:
        members = view(client, host)
        if not names <= members.keys():
            return False
        if any(members[n]["status"] != "alive" for n in names):
            return False
    return True


def test_hosts_join_detect_a_killed_host_and_see_it_rejoin(
    host_process: Callable[..., HostProcess],
) -> None:
    alpha = host_process("alpha")
    beta = host_process("beta", args=["--peer", alpha.url])
    gamma = host_process("gamma", args=["--peer", alpha.url])
    hosts = [alpha, beta, gamma]
    names = {"alpha", "beta", "gamma"}
    client = HostClient(timeout=10.0)

    wait_until(lambda: sees_all(client, hosts, names), timeout=JOIN_DEADLINE)
    first = view(client, alpha)["gamma"]
    assert first["url"] == gamma.url
    assert first["incarnation"] >= 1
    assert view(client, gamma)["gamma"]["self"] is True

    gamma.kill()
    assert gamma.returncode == -signal.SIGKILL
    for host in (alpha, beta):
        wait_until(lambda h=host: status_of(client, h, "gamma") == "dead", timeout=DEATH_DEADLINE)

    gamma.restart()
    wait_until(lambda: sees_all(client, hosts, names), timeout=JOIN_DEADLINE)
    for host in (alpha, beta):
        again = view(client, host)["gamma"]
        assert again["url"] == gamma.url
        assert again["incarnation"] > first["incarnation"]

    # /hosts (the API's HostRef list) agrees with the member view.
    listed = {h["name"]: h for h in client.get_json(f"{beta.url}/hosts")["hosts"]}
    assert listed.keys() >= names
    assert all(listed[n]["online"] for n in names)


def test_other_version_is_incompatible_and_dispatch_goes_by_mesh_name(
    host_process: Callable[..., HostProcess],
) -> None:
    alpha = host_process("alpha")
    beta = host_process("beta", args=["--peer", alpha.url])
    host_process("other", mesh_version="other-version", args=["--peer", alpha.url])
    client = HostClient(timeout=10.0)

    wait_until(lambda: sees_all(client, [alpha, beta], {"alpha", "beta"}), timeout=JOIN_DEADLINE)
    wait_until(lambda: status_of(client, alpha, "other") == "incompatible", timeout=JOIN_DEADLINE)
    reason = view(client, alpha)["other"]["incompatible_reason"]
    assert "'other-version'" in reason and "'test'" in reason

    proxy = client.create_agent(alpha.url, COUNTER, COUNTER_STATE, {"name": "x", "count": 1})
    moved = client.dispatch(alpha.url, proxy.agent_id, "beta")
    assert moved.host_url.rstrip("/") == beta.url.rstrip("/")
    assert client.send_message(beta.url, proxy.agent_id, Message("add")) == 2
