"""The mesh rows of targets.md measured with real `paglets host` processes: h2 (N hosts
all see all, timed from the moment the last one answers /health) and h3 (a SIGKILLed host
marked dead everywhere). h1 and h4 (traffic per host, 1,000 hosts) are measured by the
simulator that runs the same membership code (tests/system/test_mesh_sim.py).
"""

from __future__ import annotations

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


GROUPS: dict[str, Group] = {
    "h2": Group("h2", "mesh convergence and failure detection (h2, h3)", bench_h2_h3)
}
