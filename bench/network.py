"""The latency rows measured between real host processes: a2, a3, b1, b3, b4, d1-d3, e2, e4.

targets.md §6: hosts are `paglets host` processes (`bench.hostprocs`), and the client is
another process: the benchmark process itself, talking to them through `HostClient` and the
`PagletProxy`s it returns, exactly as a user's program would (so whatever transport the
client uses for messages is what gets measured). The throughput, start-up and memory rows
are in `bench.network_load`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paglets import Message
from paglets.remote.client import HostClient
from paglets.remote.proxy import PagletProxy

from .harness import MiB, Result, at_least, at_most, progress, summarize, time_batches, time_calls
from .hostprocs import host_cluster
from .inprocess import Group
from .models import Blob, Ping, Pong, Small, small_state

__all__ = ["FULL", "GROUPS", "QUICK", "NetSizes", "latency", "make_client"]

MS = 1e3
CLIENT_TIMEOUT = 120.0  # a 64 MiB dispatch on a loaded machine must not time out
SAME_RATIO = 1.5  # "same as b1" on a shared, noisy 2-core machine
B1_TARGET_MS = 0.25
D3_FULL_BYTES = 64 * MiB
D3_TARGET_MS = 300.0


@dataclass(frozen=True, slots=True)
class NetSizes:
    """How much each latency row does: QUICK keeps all network rows well under a minute."""

    a2_n: int
    a3_n: int
    b1_n: int
    b3_batches: int
    b3_hops: int
    b3_outside_n: int
    b4_n: int
    d1_hops: int
    d2_hops: int
    d3_hops: int
    d3_bytes: int
    e2_n: int
    e4_pool: int
    e4_rounds: int


QUICK = NetSizes(
    a2_n=150, a3_n=100, b1_n=400,
    b3_batches=4, b3_hops=100, b3_outside_n=100,
    b4_n=200,
    d1_hops=16, d2_hops=8, d3_hops=4, d3_bytes=8 * MiB,
    e2_n=40, e4_pool=20, e4_rounds=2,
)  # fmt: skip

FULL = NetSizes(
    a2_n=3000, a3_n=1000, b1_n=10_000,
    b3_batches=30, b3_hops=500, b3_outside_n=2000,
    b4_n=5000,
    d1_hops=300, d2_hops=100, d3_hops=12, d3_bytes=D3_FULL_BYTES,
    e2_n=1000, e4_pool=50, e4_rounds=20,
)  # fmt: skip

ECHO = Message("echo", arg=1)


def make_client() -> HostClient:
    """The client of one row: a plain `HostClient`, as a user's program makes it."""
    return HostClient(timeout=CLIENT_TIMEOUT)


def latency(
    row: str,
    key: str,
    measurement: str,
    samples: list[float],
    target_ms: float | None,
    **extra: Any,
) -> Result:
    """A latency figure in ms from samples in seconds: median against `target_ms`, p95."""
    median, p95 = summarize(samples)
    return Result(
        row,
        key,
        measurement,
        "ms",
        median * MS,
        p95 * MS,
        len(samples),
        None if target_ms is None else at_most(target_ms),
        extra,
    )


def _check(got: object, want: object, what: str) -> None:
    if got != want:
        raise RuntimeError(f"{what}: expected {want!r}, got {got!r}")


# -- a2, a3: create over HTTP, first message ---------------------------------------------


def bench_a2(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    warmup = 30
    states = iter([small_state(i) for i in range(sizes.a2_n + warmup)])
    with host_cluster(["bench-a2"]) as (host,), make_client() as client:
        url = host.url
        samples = time_calls(
            lambda: client.create_agent(url, Small, state=next(states)),
            n=sizes.a2_n,
            warmup=warmup,
        )
    return [
        latency("a2", "a2", "create over HTTP (POST /agents, 100 B state) → proxy", samples, 2.0)
    ]


def bench_a3(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    clock = time.perf_counter
    samples: list[float] = []
    with host_cluster(["bench-a3"]) as (host,), make_client() as client:
        for i in range(sizes.a3_n + 20):  # the first 20 warm up
            proxy = client.create_agent(host.url, Small, state=small_state(i))
            t0 = clock()
            got = proxy.send(ECHO)
            t1 = clock()
            _check(got, 1, "a3: echo reply")
            if i >= 20:
                samples.append(t1 - t0)
    return [
        latency(
            "a3",
            "a3",
            "first message right after create (sync echo, client process → host process)",
            samples,
            0.3,
        )
    ]


# -- b1, b3, b4: round trips --------------------------------------------------------------


def bench_b1(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    with host_cluster(["bench-b1"]) as (host,), make_client() as client:
        proxy = client.create_agent(host.url, Small, state=small_state(1))
        samples = time_calls(lambda: proxy.send(ECHO), n=sizes.b1_n, warmup=200)
    return [
        latency(
            "b1",
            "b1",
            "sync round trip, client process → paglet on a host process (loopback)",
            samples,
            B1_TARGET_MS,
        )
    ]


def bench_b3(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    hops = sizes.b3_hops
    with host_cluster(["bench-b3-a", "bench-b3-b"]) as (a, b), make_client() as client:
        pong = client.create_agent(b.url, Pong)
        ping = client.create_agent(a.url, Ping)
        burst_msg = Message("burst", {"target": pong.agent_id, "host_url": b.url, "n": hops})

        def burst() -> None:
            _check(ping.send(burst_msg), hops, "b3: pongs counted by the ping paglet")

        per_hop = time_batches(burst, per_batch=hops, batches=sizes.b3_batches, warmup=1)
        once = Message("once", {"target": pong.agent_id, "host_url": b.url})
        outside = time_calls(lambda: ping.send(once), n=sizes.b3_outside_n, warmup=50)
    return [
        latency(
            "b3",
            "b3",
            f"sync round trip paglet → paglet, other host process (per hop, {hops} per handler)",
            per_hop,
            0.3,
            hops_per_sample=hops,
        ),
        latency(
            "b3",
            "b3.outside",
            "client → ping paglet (host A) → pong paglet (host B) and back",
            outside,
            None,
        ),
    ]


def bench_b4(quick: bool) -> list[Result]:
    """Echo to a paglet holding 16 MiB, interleaved in blocks with echo to a 100 B paglet on
    the same host, so that a drift in machine load hits both figures alike."""
    sizes = QUICK if quick else FULL
    block = 100
    big: list[float] = []
    small: list[float] = []
    with host_cluster(["bench-b4"]) as (host,), make_client() as client:
        blob = client.create_agent(host.url, Blob)
        _check(blob.send(Message("fill", {"size": 16 * MiB})), 16 * MiB, "b4: state size")
        plain = client.create_agent(host.url, Small, state=small_state(1))
        time_calls(lambda: blob.send(ECHO), n=0, warmup=100)
        time_calls(lambda: plain.send(ECHO), n=0, warmup=100)
        while len(big) < sizes.b4_n:
            big += time_calls(lambda: blob.send(ECHO), n=block, warmup=0)
            small += time_calls(lambda: plain.send(ECHO), n=block, warmup=0)
    big_ms = summarize(big)[0] * MS
    small_ms = summarize(small)[0] * MS
    return [
        latency(
            "b4",
            "b4",
            "sync round trip to a paglet holding 16 MiB of state (target: b1's)",
            big,
            B1_TARGET_MS,
        ),
        Result(
            "b4",
            "b4.ratio",
            "RTT with 16 MiB of state ÷ RTT with 100 B, same host, interleaved",
            "x",
            big_ms / small_ms,
            None,
            len(big),
            at_most(SAME_RATIO),
            {"rtt_16mib_ms": big_ms, "rtt_100b_ms": small_ms},
        ),
    ]


# -- d1, d2, d3: dispatch hops --------------------------------------------------------------


def _check_left(
    client: HostClient, name: str, hop: int, source: str, target: str, agent_id: str
) -> None:
    """Untimed, after every hop: the host the paglet left must know it moved. A source
    that still holds it live means two live copies, which the exactly-once protocol must
    never allow; that is a failure of the row, not a slow figure."""
    deadline = time.monotonic() + 2.0  # the source decided before it answered; be lenient
    while True:
        where = client.location(source, agent_id)
        if where.get("state") != "live":
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    raise RuntimeError(
        f"{name}: after hop {hop} ({source} → {target}) the source still holds paglet "
        f"{agent_id!r} live at epoch {where.get('epoch')} while the target has it: two live "
        "copies (exactly-once violated). It happens when a paglet with a large state is "
        "dispatched again right after it arrived; a pause of ~0.3 s between hops hides it"
    )


def _hops(name: str, size: int, hops: int, warmup: int) -> tuple[list[float], dict[str, Any]]:
    """Seconds per dispatch hop of one paglet bouncing between two host processes; size 0
    is the 100 B `Small`, else a `Blob` of `size` random bytes made on the first host."""
    clock = time.perf_counter
    samples: list[float] = []
    with host_cluster([f"{name}-a", f"{name}-b"]) as (a, b), make_client() as client:
        if size:
            proxy: PagletProxy = client.create_agent(a.url, Blob)
            _check(proxy.send(Message("fill", {"size": size})), size, f"{name}: state size")
        else:
            proxy = client.create_agent(a.url, Small, state=small_state(1))
        urls = (b.url, a.url)
        for i in range(warmup + hops):
            target = urls[i % 2]
            t0 = clock()
            proxy = proxy.dispatch(target)
            t1 = clock()
            if i >= warmup:
                samples.append(t1 - t0)
            _check_left(client, name, i, urls[(i + 1) % 2], target, proxy.agent_id)
        _check(proxy.host_url.rstrip("/"), urls[(warmup + hops - 1) % 2], f"{name}: final host")
        if size:
            _check(proxy.send(Message("size")), size, f"{name}: state size after the hops")
        else:
            _check(proxy.send(ECHO), 1, f"{name}: echo after the hops")
    return samples, {"hops": hops, "state_bytes": size or 100}


def bench_d1(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    samples, extra = _hops("bench-d1", 0, sizes.d1_hops, warmup=4)
    return [
        latency(
            "d1",
            "d1",
            "dispatch hop A→B, 100 B state, durable (exactly-once)",
            samples,
            3.0,
            **extra,
        )
    ]


def bench_d2(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    samples, extra = _hops("bench-d2", MiB, sizes.d2_hops, warmup=2)
    return [latency("d2", "d2", "dispatch hop A→B, 1 MiB state", samples, 8.0, **extra)]


def bench_d3(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    size = sizes.d3_bytes
    progress(f"d3: {size // MiB} MiB state, {sizes.d3_hops} hops")
    samples, extra = _hops("bench-d3", size, sizes.d3_hops, warmup=1)
    scale = size / D3_FULL_BYTES
    scaled = "" if size == D3_FULL_BYTES else f" (target scaled from 64 MiB by size: {scale:g}x)"
    result = latency(
        "d3",
        "d3",
        f"dispatch hop A→B, {size // MiB} MiB state{scaled}",
        samples,
        D3_TARGET_MS * scale,
        **extra,
    )
    return [
        result,
        Result(
            "d3",
            "d3.rate",
            f"dispatch hop throughput, {size // MiB} MiB state (size ÷ median hop)",
            "MiB/s",
            size / MiB / (result.median / MS),
            None,
            result.n,
            at_least(D3_FULL_BYTES / MiB / (D3_TARGET_MS / MS)),
        ),
    ]


# -- e2, e4: clone to another host, message to an inactive paglet ------------------------


def bench_e2(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    with host_cluster(["bench-e2-a", "bench-e2-b"]) as (a, b), make_client() as client:
        source = client.create_agent(a.url, Small, state=small_state(1))
        target = b.url
        samples = time_calls(lambda: source.clone(target), n=sizes.e2_n, warmup=10)
        clone = source.clone(target)
        _check(clone.host_url.rstrip("/"), target, "e2: the clone's host")
        _check(clone.send(ECHO), 1, "e2: echo from a clone")
    return [latency("e2", "e2", "clone to another host process (100 B state)", samples, 3.0)]


def bench_e4(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    clock = time.perf_counter
    samples: list[float] = []
    with host_cluster(["bench-e4"]) as (host,), make_client() as client:
        pool = [
            client.create_agent(host.url, Small, state=small_state(i)) for i in range(sizes.e4_pool)
        ]
        for round_no in range(sizes.e4_rounds + 1):  # round 0 warms up
            for proxy in pool:
                proxy.deactivate()
            for proxy in pool:
                t0 = clock()
                got = proxy.send(ECHO)
                t1 = clock()
                _check(got, 1, "e4: echo from a paglet woken by it")
                if round_no:
                    samples.append(t1 - t0)
            if not pool[0].is_active():
                raise RuntimeError("e4: a paglet that answered a message is not active")
    return [
        latency(
            "e4",
            "e4",
            "message to an inactive paglet (activates it; sync echo)",
            samples,
            2.0,
        )
    ]


# -- the registry ----------------------------------------------------------------------------

_ROWS: tuple[tuple[str, str, Callable[[bool], list[Result]]], ...] = (
    ("a2", "create over HTTP from another process", bench_a2),
    ("a3", "first message right after create", bench_a3),
    ("b1", "sync round trip, client process → host process", bench_b1),
    ("b3", "paglet → paglet round trip, other host process", bench_b3),
    ("b4", "round trip to a paglet holding 16 MiB", bench_b4),
    ("d1", "dispatch hop, 100 B state", bench_d1),
    ("d2", "dispatch hop, 1 MiB state", bench_d2),
    ("d3", "dispatch hop, 64 MiB state (8 MiB quick)", bench_d3),
    ("e2", "clone to another host process", bench_e2),
    ("e4", "message to an inactive paglet", bench_e4),
)
GROUPS: dict[str, Group] = {name: Group(name, title, run) for name, title, run in _ROWS}
