"""The in-process rows of targets.md: a1, b2, e1, e3, e5, f1, f2, f3 and f4 (in process).

Host and caller share one process here (targets.md §6). Every host gets its own temporary
persistence dir and is stopped at the end; nothing touches the home directory. Each group
is a function `(quick) -> list[Result]`; `bench.__main__` runs each in a fresh process so
that memory figures start from a clean heap.
"""

from __future__ import annotations

import itertools
import random
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from paglets import Host, Message
from paglets.persistence.store import AgentRow
from paglets.serialization import codec

from .harness import (
    GcWatch,
    GiB,
    KiB,
    MiB,
    Result,
    at_least,
    at_most,
    memory_snapshot,
    progress,
    summarize,
    time_batches,
    time_calls,
)
from .models import IsolatedSmall, Ping, Pong, Small, small_state

__all__ = ["FULL", "GROUPS", "QUICK", "Group", "Sizes", "bench_host"]

MS = 1e3  # seconds → milliseconds


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much each row does. QUICK keeps `make test` short; FULL is the targets' scale."""

    a1_n: int
    a1_warmup: int
    b2_batches: int
    b2_hops: int  # paglet→paglet sends per outer call
    b2_outside_n: int
    e1_n: int
    e3_pool: int
    e3_rounds: int
    f1_n: int
    f2_n: int
    f2_rtt_n: int
    f2_idle_s: float
    f3_records: int
    f3_starts: int
    f3_wakes: int
    f4_per_round: int
    f4_rounds: int


QUICK = Sizes(
    a1_n=1000, a1_warmup=100,
    b2_batches=10, b2_hops=1000, b2_outside_n=500,
    e1_n=300,
    e3_pool=20, e3_rounds=10,
    f1_n=5000,
    f2_n=20_000, f2_rtt_n=1000, f2_idle_s=0.5,
    f3_records=100_000, f3_starts=21, f3_wakes=20,
    f4_per_round=5000, f4_rounds=3,
)  # fmt: skip

FULL = Sizes(
    a1_n=20_000, a1_warmup=1000,
    b2_batches=50, b2_hops=1000, b2_outside_n=5000,
    e1_n=2000,
    e3_pool=20, e3_rounds=100,
    f1_n=50_000,
    f2_n=200_000, f2_rtt_n=5000, f2_idle_s=2.0,
    f3_records=1_000_000, f3_starts=41, f3_wakes=200,
    f4_per_round=20_000, f4_rounds=5,
)  # fmt: skip

# targets.md figures at their full scale.
F2_PAGLETS = 200_000
F2_MEMORY = 2 * GiB
F3_RECORDS = 1_000_000
# "unchanged" / "independent of their number": a ratio this close to 1 on a shared,
# noisy 2-core machine.
SAME_RATIO = 1.5


@contextmanager
def bench_host(
    name: str, persistence_dir: str | Path | None = None, **kwargs: Any
) -> Iterator[Host]:
    """A started host on loopback with a temporary persistence dir (or `persistence_dir`),
    stopped on exit. `mesh_version` is fixed so that no start runs `git`."""
    kwargs.setdefault("mesh_version", "bench")
    with tempfile.TemporaryDirectory(prefix=f"paglets-bench-{name}-") as tmp:
        host = Host(name, persistence_dir=persistence_dir or tmp, **kwargs).start_background()
        try:
            yield host
        finally:
            host.stop()


def _ms(samples: list[float]) -> tuple[float, float]:
    median, p95 = summarize(samples)
    return median * MS, p95 * MS


def _latency(
    row: str,
    key: str,
    measurement: str,
    samples: list[float],
    target_ms: float | None,
    **extra: Any,
) -> Result:
    median, p95 = _ms(samples)
    return Result(
        row,
        key,
        measurement,
        "ms",
        median,
        p95,
        len(samples),
        None if target_ms is None else at_most(target_ms),
        extra,
    )


# -- a1: Host.create() → proxy ------------------------------------------------------


def bench_a1(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    total = sizes.a1_n + sizes.a1_warmup
    states = iter([small_state(i) for i in range(total)])
    with bench_host("bench-a1") as host:
        samples = time_calls(
            lambda: host.create(Small, next(states)), n=sizes.a1_n, warmup=sizes.a1_warmup
        )
    return [_latency("a1", "a1", "Host.create() in process → proxy (100 B state)", samples, 0.2)]


# -- b2: paglet → paglet round trip, same host --------------------------------------


def bench_b2(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    hops = sizes.b2_hops
    with bench_host("bench-b2") as host:
        pong = host.create(Pong)
        ping = host.create(Ping)
        target = pong.agent_id

        def burst() -> None:
            got = ping.send(Message("burst", {"target": target, "n": hops}))
            if got != hops:
                raise RuntimeError(f"b2: the ping paglet saw {got} replies to {hops} pings")

        per_hop = time_batches(burst, per_batch=hops, batches=sizes.b2_batches, warmup=2)
        outside = time_calls(
            lambda: ping.send(Message("once", {"target": target})),
            n=sizes.b2_outside_n,
            warmup=min(200, sizes.b2_outside_n),
        )
        caller = time_calls(
            lambda: pong.send(Message("ping")),
            n=sizes.b2_outside_n,
            warmup=min(200, sizes.b2_outside_n),
        )
    return [
        _latency(
            "b2",
            "b2",
            f"sync round trip paglet → paglet, same host (per hop, {hops} per handler)",
            per_hop,
            0.03,
            hops_per_sample=hops,
        ),
        _latency(
            "b2",
            "b2.outside",
            "caller → ping paglet → pong paglet and back (2 hops)",
            outside,
            None,
        ),
        _latency(
            "b2", "b2.caller", "caller thread → paglet sync round trip, in process", caller, None
        ),
    ]


# -- e1: clone on the same host ------------------------------------------------------


def bench_e1(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    with bench_host("bench-e1") as host:
        source = host.create(Small, small_state(1))
        samples = time_calls(source.clone, n=sizes.e1_n, warmup=min(50, sizes.e1_n))
    return [_latency("e1", "e1", "clone on the same host (100 B state)", samples, 1.0)]


# -- e3: deactivate / activate ---------------------------------------------------------


def bench_e3(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    clock = time.perf_counter
    down: list[float] = []
    up: list[float] = []
    with bench_host("bench-e3") as host:
        pool = [host.create(Small, small_state(i)) for i in range(sizes.e3_pool)]
        for round_no in range(sizes.e3_rounds + 1):  # round 0 warms up
            for proxy in pool:
                t0 = clock()
                proxy.deactivate()
                t1 = clock()
                if round_no:
                    down.append(t1 - t0)
            for proxy in pool:
                t0 = clock()
                proxy.activate()
                t1 = clock()
                if round_no:
                    up.append(t1 - t0)
    return [
        _latency("e3", "e3.deactivate", "deactivate (100 B state)", down, 1.0),
        _latency("e3", "e3.activate", "activate (100 B state)", up, 1.0),
    ]


# -- e5: process-isolated paglet ------------------------------------------------------


def bench_e5(quick: bool) -> list[Result]:
    """Create → first answered message for `ISOLATION = "process"` (the forkserver is
    started by a warm-up create first), and the memory of an idle child."""
    n = 5 if quick else 30
    samples: list[float] = []
    with bench_host("bench-e5") as host:
        warm = host.create(IsolatedSmall, small_state(0))
        warm.send(Message("echo", arg=1))
        for i in range(n):
            t0 = time.perf_counter()
            proxy = host.create(IsolatedSmall, small_state(i + 1))
            proxy.send(Message("echo", arg=1))
            samples.append(time.perf_counter() - t0)
            proxy.dispose()
        child = psutil.Process(warm.info()["pid"])
        info = child.memory_full_info()
    return [
        _latency("e5", "e5", "process-isolated paglet: create → ready", samples, 40.0),
        Result(
            "e5", "e5.child_rss", "idle process paglet child, RSS", "MiB", info.rss / MiB, None, 1
        ),
        Result(
            "e5",
            "e5.child_pss",
            "idle process paglet child, PSS (shared pages split)",
            "MiB",
            getattr(info, "pss", info.rss) / MiB,
            None,
            1,
        ),
    ]


# -- f1: memory per active paglet ----------------------------------------------------


def bench_f1(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    n = sizes.f1_n
    with bench_host("bench-f1") as host:
        for i in range(200):  # warm every code path and cache before the baseline
            host.create(Small, small_state(i))
        before = memory_snapshot()
        for i in range(n):
            host.create(Small, small_state(i))
        after = memory_snapshot()
        growth = after.growth_since(before)
        progress(f"f1: RSS +{growth['rss'] / MiB:.1f} MiB for {n:,} paglets; tracemalloc pass")
        # tracemalloc sees Python allocations only (not SQLite's page cache, not arena slack).
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            host.create(Small, small_state(i))
        traced = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
    per_rss = growth["rss"] / n / KiB
    pss = growth["pss"]
    return [
        Result(
            "f1",
            "f1",
            "memory per active paglet, 100 B state: RSS growth / N",
            "KiB",
            per_rss,
            None,
            n,
            at_most(4.0),
            {
                "rss_growth_bytes": growth["rss"],
                "pss_per_paglet_kib": None if pss is None else pss / n / KiB,
                "mem_available_drop_per_paglet_kib": growth["mem_available_drop"] / n / KiB,
            },
        ),
        Result(
            "f1",
            "f1.tracemalloc",
            "memory per active paglet, 100 B state: Python heap (tracemalloc)",
            "KiB",
            traced / n / KiB,
            None,
            n,
            None,
            {"traced_bytes": traced},
        ),
    ]


# -- f2: many active paglets -----------------------------------------------------------


def bench_f2(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    n = sizes.f2_n
    scale = n / F2_PAGLETS
    scaled = "" if n == F2_PAGLETS else f" (target scaled to {n:,} paglets)"
    echo_msg = Message("echo", arg=1)
    proc = psutil.Process()
    with bench_host("bench-f2") as host:
        echo = host.create(Small, small_state(0))
        rtt_before = time_calls(lambda: echo.send(echo_msg), n=sizes.f2_rtt_n, warmup=200)
        before = memory_snapshot()
        step = max(1, n // 1000)
        sample: list[Any] = []
        with GcWatch() as gcw:
            t0 = time.perf_counter()
            for i in range(n):
                proxy = host.create(Small, small_state(i))
                if i % step == 0:
                    sample.append(proxy)
            create_s = time.perf_counter() - t0
        after = memory_snapshot()
        active = host.health()["active_count"]
        progress(f"f2: {active:,} active, RSS +{(after.rss - before.rss) / MiB:.0f} MiB; RTT again")
        rtt_after = time_calls(lambda: echo.send(echo_msg), n=sizes.f2_rtt_n, warmup=200)
        crowd = itertools.cycle(sample)
        rtt_crowd = time_calls(lambda: next(crowd).send(echo_msg), n=sizes.f2_rtt_n, warmup=200)
        # Background work that grows with the number of paglets would show here. The first
        # window still carries deferred work of the creates (event log, group commit).
        settling_cpu = _cpu_share(proc, sizes.f2_idle_s)
        idle_windows = [_cpu_share(proc, sizes.f2_idle_s) for _ in range(3)]
        idle_cpu = max(0.0, summarize(idle_windows)[0])  # clamp float noise below zero
        t_stop = time.perf_counter()
    stop_s = time.perf_counter() - t_stop
    growth = after.growth_since(before)
    before_ms, before_p95 = _ms(rtt_before)
    after_ms, after_p95 = _ms(rtt_after)
    crowd_ms, crowd_p95 = _ms(rtt_crowd)
    return [
        Result(
            "f2",
            "f2.active",
            f"active paglets on one host{scaled}",
            "paglets",
            active,
            None,
            n,
            at_least(F2_PAGLETS * scale),
            {
                "create_seconds": create_s,
                "creates_per_second": n / create_s,
                "stop_and_cleanup_seconds": stop_s,
                **gcw.to_json(),
            },
        ),
        Result(
            "f2",
            "f2.rss_total",
            f"RSS growth for {n:,} active paglets{scaled}",
            "MiB",
            growth["rss"] / MiB,
            None,
            n,
            at_most(F2_MEMORY * scale / MiB),
            {
                "pss_growth_mib": None if growth["pss"] is None else growth["pss"] / MiB,
                "mem_available_drop_mib": growth["mem_available_drop"] / MiB,
                "rss_after_mib": after.rss / MiB,
            },
        ),
        Result(
            "f2",
            "f2.rss_per_paglet",
            "RSS growth per active paglet (2 GiB / 200,000)",
            "KiB",
            growth["rss"] / n / KiB,
            None,
            n,
            at_most(F2_MEMORY / F2_PAGLETS / KiB),
        ),
        Result(
            "f2",
            "f2.rtt_ratio",
            f"message RTT with {n:,} paglets ÷ RTT with 1 (same paglet)",
            "x",
            after_ms / before_ms,
            None,
            len(rtt_after),
            at_most(SAME_RATIO),
            {
                "rtt_before_ms": before_ms,
                "rtt_before_p95_ms": before_p95,
                "rtt_after_ms": after_ms,
                "rtt_after_p95_ms": after_p95,
                "rtt_crowd_ms": crowd_ms,
                "rtt_crowd_p95_ms": crowd_p95,
            },
        ),
        Result(
            "f2",
            "f2.rtt_crowd",
            f"message RTT to paglets spread over the {n:,}",
            "ms",
            crowd_ms,
            crowd_p95,
            len(rtt_crowd),
            None,
        ),
        Result(
            "f2",
            "f2.idle_cpu",
            f"host CPU while idle with {n:,} paglets (median of 3 windows)",
            "%",
            idle_cpu * 100,
            None,
            1,
            None,
            {
                "window_seconds": sizes.f2_idle_s,
                "settling_window_percent": settling_cpu * 100,
                "windows_percent": [w * 100 for w in idle_windows],
            },
        ),
    ]


def _cpu_share(proc: psutil.Process, seconds: float) -> float:
    """CPU seconds per wall second this process spends while the caller just waits."""
    before = proc.cpu_times()
    threading.Event().wait(seconds)
    after = proc.cpu_times()
    return (after.user + after.system - before.user - before.system) / seconds


# -- f3: many inactive paglets --------------------------------------------------------


def _fill_inactive(directory: Path, count: int) -> float:
    """Write `count` inactive Small records straight into the store of a host that is
    constructed but not started (construction only opens the store). Returns seconds."""
    host = Host("bench-f3", persistence_dir=directory, mesh_version="bench")
    try:
        spec = host.classes.get(Small)
        blob = codec.encode_state(small_state(7))
        now = time.time()
        t0 = time.perf_counter()
        batch = 50_000
        for start in range(0, count, batch):
            host.store.put_agents(
                AgentRow(
                    agent_id=f"inactive-{i:09d}",
                    class_name=spec.class_name,
                    state_class_name=spec.state_class_name,
                    state=blob,
                    status="inactive",
                    created_at=now + i * 1e-6,
                    checkpointed_at=now,
                    deactivated_at=now,
                )
                for i in range(start, min(count, start + batch))
            )
        return time.perf_counter() - t0
    finally:
        host.stop()


def _start_once(directory: Path) -> tuple[float, int]:
    """Seconds from `Host(...)` to a started host answering `health()`, and its inactive count."""
    t0 = time.perf_counter()
    host = Host("bench-f3", persistence_dir=directory, mesh_version="bench")
    try:
        host.start_background()
        inactive = host.health()["inactive_count"]
        return time.perf_counter() - t0, inactive
    finally:
        host.stop()


def bench_f3(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    n = sizes.f3_records
    with tempfile.TemporaryDirectory(prefix="paglets-bench-f3-") as tmp:
        empty_dir, full_dir = Path(tmp, "empty"), Path(tmp, "full")
        fill_s = _fill_inactive(full_dir, n)
        db_bytes = sum(p.stat().st_size for p in full_dir.glob("paglets.db*"))
        progress(
            f"f3: {n:,} records written in {fill_s:.1f} s ({db_bytes / MiB:.0f} MiB); timing starts"
        )
        _start_once(empty_dir)  # create the empty store; both sides then open an existing one
        empty: list[float] = []
        full: list[float] = []
        counts: set[int] = set()
        for _ in range(sizes.f3_starts):  # alternate, so drift in machine load hits both
            empty.append(_start_once(empty_dir)[0])
            seconds, inactive = _start_once(full_dir)
            full.append(seconds)
            counts.add(inactive)
        if counts != {n}:
            raise RuntimeError(
                f"f3: a host started on {n:,} inactive records reported {sorted(counts)}"
            )
        # Waking a few of them: activation must find one record among n by its key.
        rng = random.Random(3)
        picks = rng.sample(range(n), 2 * sizes.f3_wakes)
        with bench_host("bench-f3", persistence_dir=full_dir) as host:
            wake_ids = iter(f"inactive-{i:09d}" for i in picks[: sizes.f3_wakes])
            activate = time_calls(lambda: host.activate(next(wake_ids)), n=sizes.f3_wakes, warmup=0)
            msg_ids = iter(f"inactive-{i:09d}" for i in picks[sizes.f3_wakes :])
            echo = Message("echo", arg=1)
            message = time_calls(
                lambda: host.deliver_message(next(msg_ids), echo), n=sizes.f3_wakes, warmup=0
            )
            listed = time_calls(
                lambda: host.list_agents(active=False, inactive=True, limit=100), n=20, warmup=2
            )
    empty_ms, empty_p95 = _ms(empty)
    full_ms, full_p95 = _ms(full)
    scaled = "" if n == F3_RECORDS else f" (target scaled to {n:,})"
    return [
        Result(
            "f3",
            "f3.records",
            f"inactive records on one host, seen at start{scaled}",
            "records",
            n,
            None,
            1,
            at_least(F3_RECORDS if not quick else n),
            {"fill_seconds": fill_s, "fill_per_second": n / fill_s, "db_bytes": db_bytes},
        ),
        Result(
            "f3",
            "f3.start_ratio",
            f"host start with {n:,} inactive records ÷ start with none",
            "x",
            full_ms / empty_ms,
            None,
            len(full),
            at_most(SAME_RATIO),
        ),
        Result(
            "f3",
            "f3.start_empty",
            "host start (construct, start, health) with no records",
            "ms",
            empty_ms,
            empty_p95,
            len(empty),
            None,
        ),
        Result(
            "f3",
            "f3.start_full",
            f"host start (construct, start, health) with {n:,} records",
            "ms",
            full_ms,
            full_p95,
            len(full),
            None,
        ),
        _latency("f3", "f3.activate", f"activate one inactive paglet among {n:,}", activate, None),
        _latency(
            "f3",
            "f3.message",
            f"message to an inactive paglet among {n:,} (activates it)",
            message,
            None,
        ),
        _latency("f3", "f3.list", f"list 100 inactive paglets among {n:,}", listed, None),
    ]


# -- f4: create rate -----------------------------------------------------------------


def bench_f4(quick: bool) -> list[Result]:
    """Rounds on one host, so the paglets of earlier rounds stay live: the rate a loop that
    keeps creating sees, including whatever grows with the number already there."""
    sizes = QUICK if quick else FULL
    per_round = sizes.f4_per_round
    rates: list[float] = []
    live: list[int] = []
    gc_share: list[float] = []
    with bench_host("bench-f4") as host:
        for round_no in range(sizes.f4_rounds + 1):  # round 0 warms up
            states = [small_state(i) for i in range(per_round)]
            create = host.create
            with GcWatch() as gcw:
                t0 = time.perf_counter()
                for state in states:
                    create(Small, state)
                elapsed = time.perf_counter() - t0
            if round_no:
                rates.append(per_round / elapsed)
                live.append(len(host.registry.live))
                gc_share.append(gcw.seconds / elapsed)
    median, _ = summarize(rates)
    return [
        Result(
            "f4",
            "f4",
            f"create rate in process, tight loop ({per_round:,} per round)",
            "/s",
            median,
            None,
            len(rates),
            at_least(20_000),
            {
                "rates": rates,
                "worst": min(rates),
                "live_after_round": live,
                "gen2_gc_share_per_round": gc_share,
            },
        ),
    ]


# -- the registry ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Group:
    """A set of rows measured together (one fresh process in the driver)."""

    name: str
    title: str
    run: Callable[[bool], list[Result]]


GROUPS: dict[str, Group] = {
    g.name: g
    for g in (
        Group("a1", "Host.create() in process", bench_a1),
        Group("b2", "paglet → paglet round trip, same host", bench_b2),
        Group("e1", "clone on the same host", bench_e1),
        Group("e3", "deactivate / activate", bench_e3),
        Group("e5", "process-isolated paglet", bench_e5),
        Group("f1", "memory per active paglet", bench_f1),
        Group("f2", "active paglets on one host", bench_f2),
        Group("f3", "inactive paglets on one host", bench_f3),
        Group("f4", "create rate in process", bench_f4),
    )
}
