"""`paglets examples mesh-benchmark` (jobs.md §7, cli.md §8): what a move costs between
every two hosts of the mesh.

The driver (on the entry host) first estimates each host's clock offset from its own
(`clock_probes` round trips to a `ClockProbe` created there; the sample with the shortest
round trip wins, as NTP does). Then one `BenchmarkTraveller` walks a route that takes
every directed pair of hosts exactly once per repeat (an Eulerian circuit of the complete
directed graph, self-hops included unless `exclude_self`), carrying `payload_size` bytes.
Each hop's time is its arrival on the destination's clock minus its departure on the
origin's, both moved onto the entry host's clock with the offsets; it is reported as it
happens and printed as a line, and at the end the driver prints the movement-cost matrix
(mean seconds per origin and destination) and returns it, with every hop, as its result.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any

from paglets import Message, Paglet
from paglets.core.agent import PagletState
from paglets.core.errors import PagletError
from paglets.examples.runner import ExampleDriver

__all__ = [
    "BenchmarkDriver",
    "BenchmarkTraveller",
    "ClockProbe",
    "ClockProbeState",
    "TravellerState",
    "cost_matrix",
    "pair_tour",
]

REPORT_TIMEOUT = 10.0


def pair_tour(nodes: list[str], *, self_loops: bool = True) -> list[tuple[str, str]]:
    """Hops that take every directed pair of `nodes` exactly once, starting and ending at
    `nodes[0]` (Hierholzer's algorithm; every node has as many ways in as out)."""
    if not nodes:
        return []
    out = {n: [m for m in reversed(nodes) if m != n or self_loops] for n in nodes}
    stack, path = [nodes[0]], []
    while stack:
        here = stack[-1]
        if out[here]:
            stack.append(out[here].pop())
        else:
            path.append(stack.pop())
    path.reverse()
    return list(itertools.pairwise(path))


def cost_matrix(hops: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, Any]]:
    """`{origin: {destination: {"mean", "min", "max", "count"}}}` in seconds."""
    cells: dict[tuple[str, str], list[float]] = {}
    for hop in hops:
        cells.setdefault((hop["from"], hop["to"]), []).append(float(hop["seconds"]))
    matrix: dict[str, dict[str, Any]] = {}
    for a in names:
        row: dict[str, Any] = {}
        for b in names:
            values = cells.get((a, b))
            if values:
                row[b] = {
                    "mean": sum(values) / len(values),
                    "min": min(values),
                    "max": max(values),
                    "count": len(values),
                }
        matrix[a] = row
    return matrix


@dataclass
class ClockProbeState(PagletState):
    pass


class ClockProbe(Paglet[ClockProbeState]):
    """Answers `"now"` with this host's wall clock."""

    State = ClockProbeState

    def handle_message(self, message: Message) -> Any:
        if message.kind == "now":
            return time.time()
        return self.not_handled()


@dataclass
class TravellerState(PagletState):
    driver_id: str = ""
    driver_url: str = ""
    route: list[list[str]] = field(default_factory=list)  # [[from_url, to_url], ...]
    next_hop: int = 0
    departed_at: float = 0.0
    arrived_at: float = 0.0
    payload: bytes = b""
    names: dict[str, str] = field(default_factory=dict)  # url -> host name


class BenchmarkTraveller(Paglet[TravellerState]):
    """Walks `route`; reports each hop (`"report"` `hop-<i>`) to the driver from where
    it arrived; reports `"done"` when the route is over (at the entry host)."""

    State = TravellerState

    def on_arrival(self, event: Any) -> None:
        self.state.arrived_at = time.time()  # first thing: the hop's end

    def run(self) -> None:
        state = self.state
        index = state.next_hop
        if index > 0 and state.departed_at:
            origin, dest = state.route[index - 1]
            self._report(
                f"hop-{index - 1}",
                {
                    "index": index - 1,
                    "from": state.names.get(origin, origin),
                    "to": state.names.get(dest, dest),
                    "departed_at": state.departed_at,
                    "arrived_at": state.arrived_at,
                    "payload_bytes": len(state.payload),
                    "pid": os.getpid(),
                },
            )
        if index >= len(state.route):
            self._report("done", {"hops": index})
            return
        with self.locked_state() as s:
            s.next_hop = index + 1
            s.departed_at = time.time()
        try:
            self.dispatch(state.route[index][1])
        except PagletError as exc:
            with self.locked_state() as s:
                s.next_hop = index
            self._report("failed", {"index": index, "error": f"{type(exc).__name__}: {exc}"})

    def _report(self, key: str, value: Any) -> None:
        proxy = self.context.get_proxy(self.state.driver_id, host_url=self.state.driver_url)
        if proxy is not None:
            proxy.send(Message("report", {"key": key, "value": value}), timeout=REPORT_TIMEOUT)


class BenchmarkDriver(ExampleDriver):
    """Options: `repeats` (1), `payload_size` (0), `exclude_self` (False),
    `clock_probes` (5), `hosts` (names or URLs; all online members when empty)."""

    def run_example(self) -> dict[str, Any]:
        opts = self.options
        repeats = max(1, int(opts.get("repeats", 1)))
        payload = int(opts.get("payload_size", 0))
        probes = max(0, int(opts.get("clock_probes", 5)))
        exclude_self = bool(opts.get("exclude_self", False))
        hosts = self._selected(list(opts.get("hosts") or ()))
        names = [h.name for h in hosts]
        urls = {h.url: h.name for h in hosts}
        self.say(
            f"mesh-benchmark: {len(hosts)} host(s) ({', '.join(names)}), {repeats} repeat(s), "
            f"payload {payload} B{', no self-hops' if exclude_self else ''}"
        )
        offsets = self._offsets(hosts, probes)
        if probes:
            shown = ", ".join(f"{n} {offsets[n] * 1000:+.2f} ms" for n in names)
            self.say(f"clock offsets from {names[0]} ({probes} probes each): {shown}")
        tour = pair_tour([h.url for h in hosts], self_loops=not exclude_self)
        route = [list(hop) for _ in range(repeats) for hop in tour]
        if not route:
            raise ValueError("nothing to measure: one host and --exclude-self leave no hop")
        traveller = self.context.create_paglet(
            BenchmarkTraveller,
            TravellerState(
                driver_id=self.agent_id or "",
                driver_url=self.context.address,
                route=route,
                payload=os.urandom(payload) if payload else b"",
                names=urls,
            ),
        )
        self.track_everywhere(traveller.get_agent_id())
        hops = []
        for index in range(len(route)):
            key = f"hop-{index}"
            while key not in self.state.reports:
                if "failed" in self.state.reports:
                    failed = self.state.reports["failed"]
                    raise PagletError(f"hop {failed['index']} failed: {failed['error']}")
                self.wait_state(
                    lambda s, k=key: k in s.reports or "failed" in s.reports,
                    timeout=min(1.0, self.remaining()),
                )
            hop = dict(self.state.reports[key])
            departed = hop["departed_at"] - offsets.get(hop["from"], 0.0)
            arrived = hop["arrived_at"] - offsets.get(hop["to"], 0.0)
            hop["seconds"] = max(0.0, arrived - departed)
            hops.append(hop)
            self.say(
                f"  hop {index + 1}/{len(route)}: {hop['from']} -> {hop['to']} "
                f"{hop['seconds'] * 1000:.1f} ms"
            )
        self.wait_report("done")
        matrix = cost_matrix(hops, names)
        self.say("movement cost (mean ms; rows: from, columns: to)")
        width = max(8, *(len(n) for n in names))
        self.say(" " * width + "".join(f"{n:>{width + 2}}" for n in names))
        for a in names:
            cells = []
            for b in names:
                cell = matrix[a].get(b)
                cells.append(
                    f"{cell['mean'] * 1000:>{width + 2}.1f}" if cell else f"{'-':>{width + 2}}"
                )
            self.say(f"{a:<{width}}" + "".join(cells))
        return {
            "hosts": [{"name": h.name, "url": h.url} for h in hosts],
            "repeats": repeats,
            "payload_bytes": payload,
            "exclude_self": exclude_self,
            "clock_offsets": offsets,
            "hops": hops,
            "matrix": matrix,
        }

    def _selected(self, wanted: list[str]) -> list[Any]:
        hosts = self.hosts()  # this host first: the traveller starts and ends here
        if not wanted:
            return hosts
        chosen = [hosts[0]] + [
            h for h in hosts[1:] if h.name in wanted or h.url.rstrip("/") in wanted
        ]
        known = {h.name for h in chosen} | {h.url.rstrip("/") for h in chosen}
        missing = [w for w in wanted if w.rstrip("/") not in known]
        if missing:
            raise ValueError(
                f"--host: not online members of this mesh: {', '.join(missing)} "
                f"(online: {', '.join(h.name for h in hosts)})"
            )
        return chosen

    def _offsets(self, hosts: list[Any], probes: int) -> dict[str, float]:
        """Each host's clock minus this one's, from the round trip with the least delay."""
        offsets = {h.name: 0.0 for h in hosts}
        if probes <= 0:
            return offsets
        me = self.context.address.rstrip("/")
        for host in hosts:
            if host.url.rstrip("/") == me:
                continue
            probe = self.context.create_paglet(ClockProbe, None, host_url=host.url)
            self.track(host.url, probe.get_agent_id())
            best: tuple[float, float] | None = None
            for _ in range(probes):
                sent = time.time()
                remote = float(probe.send(Message("now"), timeout=min(5.0, self.remaining())))
                back = time.time()
                sample = (back - sent, remote - (sent + back) / 2)
                if best is None or sample[0] < best[0]:
                    best = sample
            offsets[host.name] = best[1] if best else 0.0
            try:
                probe.dispose()
                self.untrack(probe.get_agent_id())
            except PagletError:
                pass  # the cleanup at the end tries again
        return offsets
