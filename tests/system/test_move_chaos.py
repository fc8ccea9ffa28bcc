"""targets r1: dispatches among 3 `paglets host` processes while one of them is SIGKILLed
and restarted at random moments: nothing lost, nothing duplicated, every state intact.

`make test` runs a bounded version; the full 1,000-dispatch run is marked slow.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest

from paglets import Message, TransferTicket
from paglets.core.errors import PagletError
from paglets.remote.client import HostClient
from support.processes import HostProcess

COUNTER = "paglets.examples.counter:Counter"
COUNTER_STATE = "paglets.examples.counter:CounterState"


def live_agents(client: HostClient, url: str) -> set[str]:
    agents = client.get_json(f"{url}/agents?state=active&limit=1000")["agents"]
    return {a["agent_id"] for a in agents}


def open_transfers(client: HostClient, url: str) -> int:
    source = client.get_json(f"{url}/transfers?role=source&status=COMMITTED")["transfers"]
    target = client.get_json(f"{url}/transfers?role=target&status=PREPARED")["transfers"]
    return len(source) + len(target)


def run_chaos(
    host_process: Callable[..., HostProcess], dispatches: int, kills: int, paglets: int
) -> None:
    rng = random.Random(1234)
    hosts = [host_process(name) for name in ("red", "green", "blue")]
    client = HostClient(timeout=5.0)
    urls = {h.name: h.url for h in hosts}  # restarts keep the port, so the URL stays
    expected: dict[str, int] = {}
    for i in range(paglets):
        proxy = client.create_agent(
            hosts[i % 3].url, COUNTER, COUNTER_STATE, {"name": f"p{i}", "count": 1000 + i}
        )
        expected[proxy.agent_id] = 1000 + i
    where = {agent_id: hosts[i % 3] for i, agent_id in enumerate(expected)}

    stop = threading.Event()
    killed = []

    def killer() -> None:
        for _ in range(kills):
            if stop.wait(rng.uniform(0.1, 0.6)):
                return
            victim = rng.choice(hosts)
            victim.kill()
            killed.append(victim.name)
            victim.restart(same_port=True)

    chaos = threading.Thread(target=killer, name="chaos-killer")
    chaos.start()
    done = 0
    deadline = time.monotonic() + 240
    try:
        while (done < dispatches or chaos.is_alive()) and time.monotonic() < deadline:
            agent_id = rng.choice(list(expected))
            source = where[agent_id]
            target = rng.choice([h for h in hosts if h is not source])
            try:
                proxy = client.dispatch(
                    urls[source.name], agent_id, TransferTicket(urls[target.name], timeout=2.0)
                )
                where[agent_id] = next(h for h in hosts if urls[h.name] == proxy.host_url)
            except PagletError:
                # A dead host, a timeout, a move that did not happen: find the paglet again.
                for host in hosts:
                    try:
                        if agent_id in live_agents(client, urls[host.name]):
                            where[agent_id] = host
                            break
                    except PagletError:
                        continue
            done += 1
    finally:
        stop.set()
        chaos.join(120)
    assert done >= dispatches, f"only {done} dispatches in the time allowed"
    assert len(killed) == kills, f"the chaos thread killed {len(killed)} of {kills} times"

    def settled() -> bool:
        try:
            return all(open_transfers(client, urls[h.name]) == 0 for h in hosts)
        except PagletError:
            return False

    deadline = time.monotonic() + 120
    while not settled():
        if time.monotonic() > deadline:
            still_open = {
                h.name: [
                    client.get_json(f"{urls[h.name]}/transfers?role={role}&status={status}")[
                        "transfers"
                    ]
                    for role, status in (("source", "COMMITTED"), ("target", "PREPARED"))
                ]
                for h in hosts
            }
            pytest.fail(f"transfers still undecided after 120 s: {still_open}")
        time.sleep(0.2)
    seen: dict[str, list[str]] = {agent_id: [] for agent_id in expected}
    for host in hosts:
        for agent_id in live_agents(client, urls[host.name]) & set(expected):
            seen[agent_id].append(host.name)
    lost = [a for a, on in seen.items() if not on]
    duplicated = {a: on for a, on in seen.items() if len(on) > 1}
    assert not lost, f"lost paglets: {lost}"
    assert not duplicated, f"duplicated paglets: {duplicated}"
    for agent_id, count in expected.items():
        host = next(h for h in hosts if h.name == seen[agent_id][0])
        assert client.send_message(urls[host.name], agent_id, Message("get")) == count


def test_dispatch_chaos_bounded(host_process: Callable[..., HostProcess]) -> None:
    run_chaos(host_process, dispatches=120, kills=3, paglets=12)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_dispatch_chaos_full(host_process: Callable[..., HostProcess]) -> None:
    run_chaos(host_process, dispatches=1000, kills=15, paglets=30)
