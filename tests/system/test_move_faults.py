"""The move protocol under SIGKILL (architecture §7, network.md §2.5).

Each case kills the source or the target `paglets host` process at one step of a
dispatch (`PAGLETS_FAULT=<step>` makes the process SIGKILL itself there), restarts it on the
same persistence dir and port, and checks that exactly one live copy exists, with its
state intact.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest

from paglets import Message, TransferTicket
from paglets.core.errors import PagletError
from paglets.remote.client import HostClient
from support.processes import HostProcess
from support.waiting import wait_until

COUNTER = "paglets.examples.counter:Counter"
COUNTER_STATE = "paglets.examples.counter:CounterState"


def live_on(client: HostClient, host: HostProcess, agent_id: str) -> bool:
    agents = client.get_json(f"{host.url}/agents?state=active&limit=1000")["agents"]
    return any(a["agent_id"] == agent_id for a in agents)


def copies(client: HostClient, hosts: list[HostProcess], agent_id: str) -> list[str]:
    return [h.name for h in hosts if live_on(client, h, agent_id)]


def restart_without_fault(host: HostProcess) -> None:
    assert host.wait(30) == -signal.SIGKILL, f"{host.name} did not die at the fault step"
    host.env.pop("PAGLETS_FAULT", None)
    host.restart(same_port=True)


def start_pair(
    host_process: Callable[..., HostProcess], fault_on: str, step: str
) -> tuple[HostProcess, HostProcess]:
    env: dict[str, Any] = {"PAGLETS_FAULT": step}
    source = host_process("source", env=env if fault_on == "source" else {})
    target = host_process("target", env=env if fault_on == "target" else {})
    return source, target


CASES = [
    # (who dies, at which step, where the paglet must end up)
    ("source", "source-after-preparing", "source"),  # row 11
    ("source", "source-after-prepared", "source"),  # PREPARED answer, decision not yet durable
    ("source", "source-after-committed", "target"),  # row 12
    ("target", "target-after-prepare-persisted", "source"),  # rows 8/9
    ("target", "target-before-prepared-reply", "source"),  # row 7 with a dead target
    ("target", "target-after-commit-persisted", "target"),  # row 14
]


@pytest.mark.parametrize(("victim", "step", "ends_on"), CASES, ids=[c[1] for c in CASES])
def test_sigkill_at_each_step_leaves_exactly_one_live_copy(
    host_process: Callable[..., HostProcess], victim: str, step: str, ends_on: str
) -> None:
    source, target = start_pair(host_process, victim, step)
    client = HostClient(timeout=10.0)
    proxy = client.create_agent(source.url, COUNTER, COUNTER_STATE, {"name": "x", "count": 41})
    agent_id = proxy.agent_id
    assert client.send_message(source.url, agent_id, Message("add")) == 42
    try:
        client.dispatch(source.url, agent_id, TransferTicket(target.url, timeout=3.0))
    except PagletError:
        pass  # the caller may see a connection error or a timeout; the outcome is checked below
    dead = source if victim == "source" else target
    restart_without_fault(dead)

    hosts = [source, target]
    expected = source if ends_on == "source" else target

    def settled() -> bool:
        found = copies(client, hosts, agent_id)
        open_target = client.get_json(f"{target.url}/transfers?role=target&status=PREPARED")[
            "transfers"
        ]
        open_source = client.get_json(f"{source.url}/transfers?role=source&status=COMMITTED")[
            "transfers"
        ]
        return found == [expected.name] and not open_target and not open_source

    wait_until(settled, timeout=30)
    assert copies(client, hosts, agent_id) == [expected.name]
    assert client.send_message(expected.url, agent_id, Message("get")) == 42
