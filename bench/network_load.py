"""The throughput, start-up and memory rows between real host processes: c1-c4, the HTTP
half of f4, g1 and g2 (targets.md §1, §2, §6).

Throughput is closed-loop: each sender waits for its answer before sending again, and only
what completes inside one common window counts (`bench.senders`). c2 is the exception: it
pushes a one-way burst and times until the paglet has handled all of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from paglets import Message
from paglets.core.errors import PagletError
from paglets.remote.client import HostClient

from .harness import MiB, Result, at_least, at_most, percentile, progress, summarize
from .hostprocs import HostProc, host_cluster
from .inprocess import Group
from .models import Sink, Small, small_state
from .network import MS, latency, make_client
from .senders import CREATE, ECHO, SenderPlan, SenderReport, run_processes, run_threads

__all__ = ["FULL", "GROUPS", "QUICK", "LoadSizes"]


@dataclass(frozen=True, slots=True)
class LoadSizes:
    c1_windows: int
    c1_window_s: float
    c2_burst: int
    c2_rounds: int
    c3_duration: float
    c4_duration: float
    f4_duration: float
    f4_threads: int
    g1_runs: int
    g2_idle_s: float


QUICK = LoadSizes(
    c1_windows=3, c1_window_s=0.3,
    c2_burst=1500, c2_rounds=2,
    c3_duration=1.0, c4_duration=1.0,
    f4_duration=0.6, f4_threads=8,
    g1_runs=2, g2_idle_s=0.5,
)  # fmt: skip

FULL = LoadSizes(
    c1_windows=10, c1_window_s=1.0,
    c2_burst=10_000, c2_rounds=5,
    c3_duration=10.0, c4_duration=10.0,
    f4_duration=5.0, f4_threads=8,
    g1_runs=10, g2_idle_s=5.0,
)  # fmt: skip

ECHO_MSG = Message("echo", arg=1)
C3_PAGLETS = 8
C4_SENDERS = 32
C4_PROCESSES = 4  # 32 senders as 4 processes x 8 threads, each process one HostClient


def _errors_text(errors: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(errors.items())) or "none"


# -- c1: closed loop, one sender ---------------------------------------------------------


def bench_c1(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    rates: list[float] = []
    clock = time.perf_counter
    with host_cluster(["bench-c1"]) as (host,), make_client() as client:
        proxy = client.create_agent(host.url, Small, state=small_state(1))
        send = proxy.send
        for _ in range(300):
            send(ECHO_MSG)
        for _ in range(sizes.c1_windows):
            count = 0
            t0 = clock()
            end = t0 + sizes.c1_window_s
            while clock() < end:
                send(ECHO_MSG)
                count += 1
            rates.append(count / (clock() - t0))
    median, _ = summarize(rates)
    return [
        Result(
            "c1",
            "c1",
            "closed-loop throughput, 1 paglet, 1 sender process (sync echo)",
            "msg/s",
            median,
            None,
            len(rates),
            at_least(5000),
            {"window_seconds": sizes.c1_window_s, "rates": rates, "worst": min(rates)},
        )
    ]


# -- c2: one-way burst ----------------------------------------------------------------------


def bench_c2(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    n = sizes.c2_burst
    hit = Message("hit")
    count_msg = Message("count")
    clock = time.perf_counter
    handled: list[float] = []
    pushed: list[float] = []
    with host_cluster(["bench-c2"]) as (host,), make_client() as client:
        sink = client.create_agent(host.url, Sink)
        expected = 0
        for round_no in range(sizes.c2_rounds + 1):  # round 0 (a tenth) warms up
            burst = n if round_no else max(100, n // 10)
            oneway = sink.send_oneway
            t0 = clock()
            for _ in range(burst):
                oneway(hit, wait=False)
            t_sent = clock()
            expected += burst
            # The sync "count" may overtake one-way messages still on their way; ask again
            # until the paglet has handled all of them.
            deadline = t_sent + 120
            while (got := sink.send(count_msg)) < expected:
                if clock() > deadline:
                    raise RuntimeError(f"c2: the paglet handled {got} of {expected} in 120 s")
            t_done = clock()
            if got != expected:
                raise RuntimeError(f"c2: the paglet counted {got} hits, {expected} were sent")
            if round_no:
                handled.append(burst / (t_done - t0))
                pushed.append(burst / (t_sent - t0))
    median, _ = summarize(handled)
    return [
        Result(
            "c2",
            "c2",
            f"one-way burst of {n:,} into one paglet (send_oneway(wait=False)), handled/s",
            "/s",
            median,
            None,
            len(handled),
            at_least(50_000),
            {"rates": handled, "send_rates": pushed, "burst": n},
        )
    ]


# -- c3, c4: many senders -----------------------------------------------------------------


def bench_c3(quick: bool) -> list[Result]:
    """8 paglets, 4 on each of 2 hosts; 8 sender processes, one paglet each."""
    sizes = QUICK if quick else FULL
    duration = sizes.c3_duration
    with host_cluster(["bench-c3-a", "bench-c3-b"]) as hosts, make_client() as client:
        targets = []
        for i in range(C3_PAGLETS):
            url = hosts[i % 2].url
            targets.append((url, client.create_agent(url, Small, state=small_state(i)).agent_id))
        plans = [SenderPlan(ECHO, (target,), duration) for target in targets]
        reports = run_processes(plans, duration)
    total = SenderReport()
    for report in reports:
        total.merge(report)
    rate = total.completed / duration
    return [
        Result(
            "c3",
            "c3",
            "8 paglets on 2 host processes, 8 sender processes, aggregate (sync echo)",
            "msg/s",
            rate,
            None,
            total.completed,
            at_least(15_000),
            {
                "duration_seconds": duration,
                "per_sender": [r.completed / duration for r in reports],
                "errors": total.errors,
            },
        )
    ]


def bench_c4(quick: bool) -> list[Result]:
    """32 senders (4 processes x 8 threads), each with its own paglet on one host."""
    sizes = QUICK if quick else FULL
    duration = sizes.c4_duration
    per_process = C4_SENDERS // C4_PROCESSES
    with host_cluster(["bench-c4"]) as (host,), make_client() as client:
        ids = [
            client.create_agent(host.url, Small, state=small_state(i)).agent_id
            for i in range(C4_SENDERS)
        ]
        plans = [
            SenderPlan(
                ECHO,
                tuple((host.url, a) for a in ids[p * per_process : (p + 1) * per_process]),
                duration,
                keep_latencies=True,
            )
            for p in range(C4_PROCESSES)
        ]
        reports = run_processes(plans, duration)
        alive = host.proc.poll() is None
    total = SenderReport()
    for report in reports:
        total.merge(report)
    if not total.latencies:
        raise RuntimeError(f"c4: no call succeeded; errors: {_errors_text(total.errors)}")
    ordered = sorted(total.latencies)
    p99 = percentile(ordered, 99) * MS
    errors = sum(total.errors.values())
    common = {
        "senders": C4_SENDERS,
        "processes": C4_PROCESSES,
        "duration_seconds": duration,
        "throughput_per_second": total.completed / duration,
        "errors": total.errors,
        "host_alive_after": alive,
    }
    return [
        Result(
            "c4",
            "c4.errors",
            f"{C4_SENDERS} concurrent senders to one host: failed calls",
            "errors",
            errors,
            None,
            total.completed + errors,
            at_most(0),
            common,
        ),
        Result(
            "c4",
            "c4.p99",
            f"{C4_SENDERS} concurrent senders to one host: p99 round trip",
            "ms",
            p99,
            None,
            len(ordered),
            at_most(20.0),
            {
                "median_ms": percentile(ordered, 50) * MS,
                "p95_ms": percentile(ordered, 95) * MS,
                "max_ms": ordered[-1] * MS,
            },
        ),
        latency("c4", "c4.latency", f"{C4_SENDERS} concurrent senders: round trip", ordered, None),
    ]


# -- f4 over HTTP -----------------------------------------------------------------------------


def bench_f4http(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    with host_cluster(["bench-f4http"]) as (host,), make_client() as client:
        target = (host.url, "")
        threads = sizes.f4_threads
        many = run_threads(SenderPlan(CREATE, (target,) * threads, sizes.f4_duration), client)
        one = run_threads(SenderPlan(CREATE, (target,), sizes.f4_duration), client)
        active = client.health(host.url)["active_count"]
    for report in (many, one):
        if report.errors:
            raise RuntimeError(f"f4.http: creates failed: {_errors_text(report.errors)}")
    return [
        Result(
            "f4",
            "f4.http",
            f"create rate over HTTP from a client process ({threads} threads)",
            "/s",
            many.completed / many.window,
            None,
            many.completed,
            at_least(2000),
            {"threads": threads, "active_after": active},
        ),
        Result(
            "f4",
            "f4.http_seq",
            "create rate over HTTP from a client process (1 thread)",
            "/s",
            one.completed / one.window,
            None,
            one.completed,
            None,
        ),
    ]


# -- g1, g2: host start, idle memory ---------------------------------------------------------


def _health_after_spawn(host: HostProc, client: HostClient) -> float:
    """Seconds from spawning `host` to its first answered `GET /health`."""
    deadline = time.perf_counter() + 30
    while True:
        try:
            client.health(host.url, timeout=2.0)
            return time.perf_counter() - host.spawned_at
        except PagletError:
            if time.perf_counter() > deadline:
                raise
            time.sleep(0.002)


def bench_g1(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    health: list[float] = []
    ready: list[float] = []
    with make_client() as client:
        for i in range(sizes.g1_runs + 1):  # run 0 warms the OS caches
            with host_cluster([f"bench-g1-{i}"]) as (host,):
                seconds = _health_after_spawn(host, client)
            if i:
                health.append(seconds)
                ready.append(host.ready_seconds)
    ready_ms, _ = summarize(ready)
    return [
        latency(
            "g1",
            "g1",
            "`paglets host` start → /health answers (fresh persistence dir)",
            health,
            400.0,
            ready_line_ms=ready_ms * MS,
        )
    ]


def _tree_memory(host: HostProc) -> dict[str, Any]:
    rss = 0
    pss = 0
    names = []
    for proc in host.tree():
        try:
            rss += proc.memory_info().rss
            pss += int(getattr(proc.memory_full_info(), "pss", 0))
            names.append(proc.name())
        except psutil.Error:
            continue
    return {"rss": rss, "pss": pss or None, "processes": names}


def bench_g2(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    with host_cluster(["bench-g2"]) as (host,), make_client() as client:
        client.health(host.url)
        progress(f"g2: idle for {sizes.g2_idle_s:g} s")
        proc = psutil.Process(host.pid)
        cpu_before = proc.cpu_times()
        time.sleep(sizes.g2_idle_s)  # idle is the measurement here, not a wait for a condition
        cpu_after = proc.cpu_times()
        idle = _tree_memory(host)
    cpu_share = (
        cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system
    ) / sizes.g2_idle_s
    return [
        Result(
            "g2",
            "g2",
            "idle host memory: RSS of the host process tree",
            "MiB",
            idle["rss"] / MiB,
            None,
            1,
            at_most(80.0),
            {
                "pss_mib": None if idle["pss"] is None else idle["pss"] / MiB,
                "processes": idle["processes"],
                "idle_seconds": sizes.g2_idle_s,
                "idle_cpu_percent": cpu_share * 100,
            },
        )
    ]


# -- the registry ----------------------------------------------------------------------------

_ROWS: tuple[tuple[str, str, Callable[[bool], list[Result]]], ...] = (
    ("c1", "closed-loop throughput, 1 sender process", bench_c1),
    ("c2", "one-way burst into one paglet", bench_c2),
    ("c3", "8 paglets on 2 hosts, 8 sender processes", bench_c3),
    ("c4", "32 concurrent senders to one host", bench_c4),
    ("f4http", "create rate over HTTP", bench_f4http),
    ("g1", "`paglets host` start → /health", bench_g1),
    ("g2", "idle host memory", bench_g2),
)
GROUPS: dict[str, Group] = {name: Group(name, title, run) for name, title, run in _ROWS}
