"""The mesh rows of targets.md measured with real `paglets host` processes: h1 (idle
traffic per host, at two mesh sizes, read from the kernel's TCP counters), h2 (N hosts all
see all, timed from the moment the last one answers /health) and h3 (a SIGKILLed host marked
dead everywhere). h4 (1,000 hosts) is measured by the simulator that runs the same
membership code (tests/system/test_mesh_sim.py).
"""

from __future__ import annotations

import re
import subprocess
import time

from paglets.core.errors import PagletError
from paglets.remote.client import HostClient

from .harness import Result, at_most, progress
from .hostprocs import host_cluster
from .inprocess import Group
from .network import make_client

__all__ = ["GROUPS"]

POLL = 0.05


def _views(client: HostClient, urls: list[str]) -> dict[str, dict[str, str]]:
    """name → status, as each host sees the mesh (a host that does not answer: empty)."""
    views = {}
    for url in urls:
        try:
            members = client.get_json(f"{url}/mesh/members", timeout=2.0)["members"]
        except PagletError:  # a host that does not answer sees nothing
            views[url] = {}
            continue
        views[url] = {m["name"]: m["status"] for m in members}
    return views


def bench_h2_h3(quick: bool) -> list[Result]:
    count = 8 if quick else 32
    names = [f"m{i:02d}" for i in range(count)]
    progress(f"h2: starting {count} host processes")
    with host_cluster(names) as hosts, make_client() as client:
        urls = [h.url for h in hosts]
        for url in urls:  # the last host answers /health: the clock starts
            client.health(url)
        t0 = time.monotonic()
        deadline = t0 + 120
        while True:
            views = _views(client, urls)
            if all(
                sum(1 for s in view.values() if s == "alive") == count for view in views.values()
            ):
                converged = time.monotonic() - t0
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"h2: {count} hosts did not converge within 120 s")
            time.sleep(POLL)
        victim = hosts[-1]
        progress(f"h3: SIGKILL of {victim.name}")
        victim.kill()
        t1 = time.monotonic()
        others = urls[:-1]
        while True:
            views = _views(client, others)
            if all(view.get(victim.name) == "dead" for view in views.values()):
                dead_everywhere = time.monotonic() - t1
                break
            if time.monotonic() > t1 + 60:
                raise RuntimeError("h3: the killed host was not marked dead everywhere within 60 s")
            time.sleep(POLL)
    scale = "" if count == 32 else f" (quick: {count} hosts; the target is for 32)"
    return [
        Result(
            "h2",
            "h2",
            f"{count} host processes: all see all after the last answers /health{scale}",
            "s",
            converged,
            None,
            1,
            at_most(5.0),
        ),
        Result(
            "h3",
            "h3",
            f"a SIGKILLed host marked dead everywhere ({count - 1} observers)",
            "s",
            dead_everywhere,
            None,
            1,
            at_most(5.0),
        ),
    ]


_SOCKET = re.compile(r"pid=(\d+),")
_SENT = re.compile(r"bytes_sent:(\d+)")
_RECEIVED = re.compile(r"bytes_received:(\d+)")


def _tcp_bytes(pids: set[int]) -> dict[int, tuple[int, int]]:
    """pid → (bytes sent, bytes received) over its established TCP sockets (`ss -ti`): TCP
    payload, HTTP heads included. A socket closed between two readings loses its bytes, so
    the figure can only err low by what the keep-alive pool closes in the window (rare)."""
    out = subprocess.run(
        ["ss", "-tinpH", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    totals = {pid: (0, 0) for pid in pids}
    owner: int | None = None
    for line in out.splitlines():
        if not line.startswith(("\t", " ")):
            found = _SOCKET.search(line)
            owner = int(found.group(1)) if found else None
            continue
        if owner in totals:
            sent, received = _SENT.search(line), _RECEIVED.search(line)
            s0, r0 = totals[owner]
            totals[owner] = (
                s0 + (int(sent.group(1)) if sent else 0),
                r0 + (int(received.group(1)) if received else 0),
            )
    return totals


def _idle_traffic(count: int, window: float) -> float:
    """Mean bytes per second sent by one host of an idle, converged mesh of `count` hosts."""
    names = [f"t{count:02d}-{i:02d}" for i in range(count)]
    with host_cluster(names) as hosts, make_client() as client:
        urls = [h.url for h in hosts]
        deadline = time.monotonic() + 120
        while not all(
            sum(1 for s in view.values() if s == "alive") == count
            for view in _views(client, urls).values()
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"h1: {count} hosts did not converge within 120 s")
            time.sleep(0.2)
        time.sleep(3.0)  # let the joins' gossip die down: h1 is about an idle mesh
        pids = {h.pid for h in hosts}
        before, t0 = _tcp_bytes(pids), time.monotonic()
        time.sleep(window)
        after, elapsed = _tcp_bytes(pids), time.monotonic() - t0
    rates = [max(0, after[p][0] - before[p][0]) / elapsed for p in pids]
    return sum(rates) / len(rates)


def bench_h1(quick: bool) -> list[Result]:
    sizes, window = ((4, 8), 5.0) if quick else ((8, 24), 15.0)
    results = []
    for count in sizes:
        progress(f"h1: idle traffic of {count} host processes over {window:g} s")
        rate = _idle_traffic(count, window)
        results.append(
            Result(
                "h1",
                f"h1.n{count}",
                f"idle mesh of {count} host processes: bytes sent per host per second",
                "B/s",
                rate,
                None,
                1,
                at_most(1024.0),
            )
        )
    return results


GROUPS: dict[str, Group] = {
    "h1": Group("h1", "idle mesh traffic per host, real processes (h1)", bench_h1),
    "h2": Group("h2", "mesh convergence and failure detection (h2, h3)", bench_h2_h3),
}
