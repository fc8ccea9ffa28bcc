"""A membership simulator: N hosts running the real `SwimNode` on a virtual clock and a lossy,
delaying virtual network (targets.md h4: 1,000 hosts, same code).

Every frame is encoded with the real codec (its bytes are what the traffic figures count) and,
by default, decoded again before delivery, so the nodes see exactly what a wire would give
them. Nothing sleeps: `run(seconds)` jumps from timer to timer, so a minute of a 1,000-host mesh
takes seconds of CPU.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from paglets.remote.mesh_wire import (
    Frame,
    MemberRecord,
    decode_frame,
    encode_frame,
    encoded_size,
)
from paglets.remote.swim import MemberEvent, MeshConfig, SwimNode

__all__ = ["MeshSim", "SimHost", "TrafficWindow", "VirtualClock", "VirtualNetwork"]


class _Timer:
    __slots__ = ("args", "callback", "cancelled")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """The simulator's time: a heap of timers, `time()` and `call_later()` as asyncio has them."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = 0
        self.events = 0

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> _Timer:
        return self.call_at(self.now + max(0.0, delay), callback, *args)

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> _Timer:
        timer = _Timer(callback, args)
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, timer))
        return timer

    def run_until(self, until: float) -> None:
        """Run every timer due up to `until`, then set the time to `until`."""
        heap = self._heap
        while heap and heap[0][0] <= until:
            when, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            self.now = when
            self.events += 1
            timer.callback(*timer.args)
        self.now = max(self.now, until)


@dataclass
class TrafficWindow:
    """Frame bytes and counts per host over a window of virtual time."""

    started: float
    sent_bytes: list[int]
    received_bytes: list[int]
    sent_frames: list[int]
    received_frames: list[int]
    summary_bytes_in: list[int]
    by_kind: dict[str, int] = field(default_factory=dict)

    @classmethod
    def empty(cls, started: float, hosts: int) -> TrafficWindow:
        return cls(started, [0] * hosts, [0] * hosts, [0] * hosts, [0] * hosts, [0] * hosts)

    def grow(self, hosts: int) -> None:
        for values in (
            self.sent_bytes,
            self.received_bytes,
            self.sent_frames,
            self.received_frames,
            self.summary_bytes_in,
        ):
            values.extend([0] * (hosts - len(values)))


class VirtualNetwork:
    """Delivers frames between registered URLs after a random delay, losing some.

    `loss` is the chance each frame is lost; `latency` the (min, max) one-way delay in
    seconds. A URL with no live node swallows frames (a vanished machine), except one in
    `refusing` (a killed process on a live machine), whose senders hear `on_unreachable` as
    a refused TCP connection would tell them. Connections are modelled only as far as
    failure detection needs: two hosts that exchanged a frame within `keepalive` seconds hold
    one, and `drop_connections` tells the other end it broke.
    """

    keepalive = 60.0

    def __init__(
        self,
        clock: VirtualClock,
        rng: random.Random,
        *,
        loss: float = 0.0,
        latency: tuple[float, float] = (0.0005, 0.003),
        roundtrip: bool = True,
        count_summaries: bool = False,
    ) -> None:
        self.clock = clock
        self.rng = rng
        self.loss = loss
        self.latency = latency
        self.roundtrip = roundtrip
        self.refusing: set[str] = set()
        self.contacts: list[dict[int, float]] = []
        self.count_summaries = count_summaries
        self.nodes: dict[str, SwimNode] = {}
        self.index: dict[str, int] = {}
        self.blocked: set[tuple[int, int]] = set()  # (from, to) host indexes: a partition
        self.window = TrafficWindow.empty(0.0, 0)
        self.total_frames = 0

    def attach(self, url: str, index: int, node: SwimNode) -> None:
        self.nodes[url] = node
        self.index[url] = index
        self.refusing.discard(url)
        self.window.grow(index + 1)
        while len(self.contacts) <= index:
            self.contacts.append({})

    def detach(self, url: str, *, refuse: bool = False) -> None:
        self.nodes.pop(url, None)
        if refuse:
            self.refusing.add(url)

    def drop_connections(self, url: str) -> None:
        """`url`'s process died: each host with an open connection to it sees it reset."""
        index = self.index.get(url)
        if index is None:
            return
        now = self.clock.now
        urls = {i: u for u, i in self.index.items()}
        for peer, last in self.contacts[index].items():
            peer_url = urls.get(peer)
            node = self.nodes.get(peer_url) if peer_url is not None else None
            if node is not None and now - last <= self.keepalive:
                delay = self.rng.uniform(*self.latency)
                self.clock.call_later(delay, node.on_connection_lost, url)
        self.contacts[index].clear()

    def _touch(self, a: int, b: int) -> None:
        now = self.clock.now
        for mine, other in ((self.contacts[a], b), (self.contacts[b], a)):
            mine[other] = now
            if len(mine) > 512:
                for peer in [p for p, t in mine.items() if now - t > self.keepalive]:
                    del mine[peer]

    def reset_window(self) -> TrafficWindow:
        """Start counting afresh; returns the window that ends now."""
        old = self.window
        self.window = TrafficWindow.empty(self.clock.now, len(old.sent_bytes))
        return old

    def send(self, frame: Frame, source: str, to: str) -> None:
        data = encode_frame(frame)
        size = len(data)
        window = self.window
        src = self.index.get(source)
        dst = self.index.get(to)
        kind = type(frame).__name__
        window.by_kind[kind] = window.by_kind.get(kind, 0) + size
        self.total_frames += 1
        if src is not None:
            window.sent_bytes[src] += size
            window.sent_frames[src] += 1
        if dst is None or to not in self.nodes:
            if to in self.refusing:
                sender = self.nodes.get(source)
                if sender is not None:
                    delay = 2 * self.rng.uniform(*self.latency)
                    self.clock.call_later(delay, sender.on_unreachable, to)
            return
        if src is not None and (src, dst) in self.blocked:
            return
        if src is not None:
            self._touch(src, dst)
        if self.loss and self.rng.random() < self.loss:
            return
        delay = self.rng.uniform(*self.latency)
        self.clock.call_later(delay, self._deliver, data if self.roundtrip else frame, to, dst)

    def _deliver(self, payload: bytes | Frame, to: str, dst: int) -> None:
        node = self.nodes.get(to)
        if node is None:
            return
        window = self.window
        frame = decode_frame(payload) if isinstance(payload, bytes) else payload
        size = len(payload) if isinstance(payload, bytes) else len(encode_frame(frame))
        window.received_bytes[dst] += size
        window.received_frames[dst] += 1
        if self.count_summaries:
            summaries = getattr(frame, "summaries", None)
            if summaries:
                window.summary_bytes_in[dst] += encoded_size(summaries)
        node.on_frame(frame)


class _SimTransport:
    __slots__ = ("network", "url")

    def __init__(self, network: VirtualNetwork, url: str) -> None:
        self.network = network
        self.url = url

    def send(self, frame: Frame, to: str) -> None:
        self.network.send(frame, self.url, to)


@dataclass
class SimHost:
    """One virtual host: its node while it runs, and what it saw."""

    index: int
    name: str
    host_id: str
    url: str
    code_version: str
    seeds: tuple[str, ...]
    incarnation: int = 0
    node: SwimNode | None = None
    started_at: float | None = None
    fatal: tuple[str, str] | None = None
    dead_seen: dict[str, float] = field(default_factory=dict)  # subject host id → when
    suspected: int = 0

    @property
    def running(self) -> bool:
        return self.node is not None and self.node.running


class MeshSim:
    """N simulated hosts. Build, `start_all`, `run`, then read the hosts and the traffic."""

    def __init__(
        self,
        *,
        seed: int = 1,
        config: MeshConfig | None = None,
        loss: float = 0.0,
        latency: tuple[float, float] = (0.0005, 0.003),
        roundtrip: bool = True,
        count_summaries: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.clock = VirtualClock()
        self.config = config or MeshConfig()
        self.network = VirtualNetwork(
            self.clock,
            random.Random(seed + 1),
            loss=loss,
            latency=latency,
            roundtrip=roundtrip,
            count_summaries=count_summaries,
        )
        self.hosts: list[SimHost] = []
        self.false_deaths: list[tuple[float, str, str]] = []  # (when, observer, subject)
        self._by_id: dict[str, SimHost] = {}

    # -- building ------------------------------------------------------------------------------

    def add_host(
        self,
        name: str | None = None,
        *,
        seeds: Iterable[str] = (),
        code_version: str = "dev",
        host_id: str | None = None,
        url: str | None = None,
    ) -> SimHost:
        index = len(self.hosts)
        host = SimHost(
            index=index,
            name=name or f"host-{index:04d}",
            host_id=host_id or uuid.UUID(int=self.rng.getrandbits(128)).hex,
            url=url or f"http://10.{index // 65536}.{index // 256 % 256}.{index % 256}:8765",
            code_version=code_version,
            seeds=tuple(seeds),
        )
        self.hosts.append(host)
        self._by_id[host.host_id] = host
        return host

    def add_mesh(self, count: int, *, seeds: int = 3, code_version: str = "dev") -> list[SimHost]:
        """`count` hosts; the first `seeds` are everyone's `--peer`s (a seed lists the others)."""
        hosts = [self.add_host(code_version=code_version) for _ in range(count)]
        seed_urls = tuple(h.url for h in hosts[:seeds])
        for host in hosts:
            host.seeds = seed_urls
        return hosts

    def start(self, host: SimHost, *, at: float | None = None) -> None:
        """Start `host` now or at virtual time `at` (a restart raises its incarnation)."""
        if at is not None and at > self.clock.now:
            self.clock.call_at(at, self.start, host)
            return
        host.incarnation += 1
        record = MemberRecord(
            host.host_id,
            host.name,
            host.url,
            host.incarnation,
            code_version=host.code_version,
            tags=("linux",),
            properties={"python": "3.11.9", "os": "linux", "arch": "x86_64"},
        )
        node = SwimNode(
            record,
            scheduler=self.clock,
            transport=_SimTransport(self.network, host.url),
            config=self.config,
            seeds=[s for s in host.seeds if s != host.url],
            rng=random.Random(self.rng.getrandbits(64)),
            listener=lambda event, h=host: self._on_event(h, event),
            on_fatal=lambda code, message, h=host: self._on_fatal(h, code, message),
        )
        host.node = node
        host.started_at = self.clock.now
        host.fatal = None
        self.network.attach(host.url, host.index, node)
        node.start()

    def start_all(self, *, spread: float = 0.0) -> None:
        """Start every host not yet started, at random times within `spread` seconds."""
        now = self.clock.now
        for host in self.hosts:
            if host.node is None:
                self.start(host, at=now + self.rng.uniform(0.0, spread) if spread else None)

    def kill(self, host: SimHost, *, silent: bool = False) -> None:
        """Stop `host` at once. By default as SIGKILL would: its machine refuses connections
        to its port and resets the open ones. `silent=True`: the machine vanished (power,
        cable), frames to it are just lost."""
        if host.node is not None:
            host.node.stop()
        self.network.detach(host.url, refuse=not silent)
        if not silent:
            self.network.drop_connections(host.url)

    def leave(self, host: SimHost) -> None:
        if host.node is not None:
            host.node.leave()

    # -- running -------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.now

    def run(self, seconds: float) -> None:
        self.clock.run_until(self.clock.now + seconds)

    def run_until(
        self, predicate: Callable[[], bool], *, timeout: float, step: float = 0.1
    ) -> float | None:
        """Run until `predicate()` holds (checked every `step`); the virtual time it took, or
        None when `timeout` virtual seconds passed first."""
        start = self.clock.now
        while self.clock.now - start < timeout:
            if predicate():
                return self.clock.now - start
            self.run(step)
        return self.clock.now - start if predicate() else None

    # -- reading -------------------------------------------------------------------------------

    def settled(self) -> bool:
        """No running host has gossip left to send: the mesh is idle."""
        return all(
            not len(h.node.broadcasts)  # type: ignore[union-attr]
            for h in self.running()
        )

    def running(self) -> list[SimHost]:
        return [h for h in self.hosts if h.running]

    def converged(self) -> bool:
        """Every running host sees every other running host alive, with its full record."""
        live = self.running()
        want = len(live) - 1
        for host in live:
            table = host.node.table  # type: ignore[union-attr]
            if table.alive_count != want:
                return False
        for host in live:
            table = host.node.table  # type: ignore[union-attr]
            for other in live:
                if other is host:
                    continue
                member = table.get(other.host_id)
                if member is None or member.liveness != "alive" or member.partial:
                    return False
        return True

    def dead_everywhere(self, subject: SimHost) -> float | None:
        """When the last running host marked `subject` dead (None if some have not)."""
        times = []
        for host in self.running():
            seen = host.dead_seen.get(subject.host_id)
            if seen is None:
                return None
            times.append(seen)
        return max(times) if times else None

    def traffic(self, window: TrafficWindow | None = None) -> dict[str, float]:
        """Per-host figures over the current (or given) window, running hosts only."""
        window = window or self.network.window
        elapsed = max(1e-9, self.clock.now - window.started)
        live = [h.index for h in self.running()]
        if not live:
            return {}
        sent = [window.sent_bytes[i] / elapsed for i in live]
        received = [window.received_bytes[i] / elapsed for i in live]
        frames = [(window.sent_frames[i]) / elapsed for i in live]
        summary_in = [window.summary_bytes_in[i] / elapsed for i in live]
        return {
            "seconds": elapsed,
            "sent_bps_mean": sum(sent) / len(sent),
            "sent_bps_max": max(sent),
            "received_bps_mean": sum(received) / len(received),
            "received_bps_max": max(received),
            "frames_per_s_mean": sum(frames) / len(frames),
            "frames_per_s_max": max(frames),
            "summary_in_bps_mean": sum(summary_in) / len(summary_in),
            "summary_in_bps_max": max(summary_in),
        }

    # -- callbacks -----------------------------------------------------------------------------

    def _on_event(self, host: SimHost, event: MemberEvent) -> None:
        if event.kind == "member-dead":
            subject = event.member.host_id
            host.dead_seen.setdefault(subject, self.clock.now)
            if self._is_running(subject):
                self.false_deaths.append((self.clock.now, host.name, event.member.name))
        elif event.kind == "member-suspect":
            host.suspected += 1
        elif event.kind == "member-alive":
            host.dead_seen.pop(event.member.host_id, None)

    def _is_running(self, host_id: str) -> bool:
        host = self._by_id.get(host_id)
        return host is not None and host.running

    def _on_fatal(self, host: SimHost, code: str, message: str) -> None:
        host.fatal = (code, message)
        self.network.detach(host.url)
