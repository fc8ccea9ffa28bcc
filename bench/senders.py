"""Closed-loop senders for the throughput rows (c3, c4, f4 over HTTP).

A sender is a thread that repeats one operation (a synchronous "echo" to its paglet, or a
create over HTTP) as fast as its answers come back. `run_threads` runs a set of them in this
process; `run_processes` runs sets of them in fresh sender processes (spawned, so none
inherits this process's threads or connections), each with one `HostClient` shared by its
threads, as a user's program would.

Every sender counts only the operations that complete inside one common window, so that
start-up, connection set-up and warm-up never count. In sender processes the window is
given by the parent once every process has warmed up: CLOCK_MONOTONIC is system-wide on
Linux, so one `time.monotonic()` deadline holds in all of them.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paglets import Message
from paglets.remote.client import HostClient
from paglets.remote.proxy import PagletProxy

from .models import Small, small_state

__all__ = ["SenderPlan", "SenderReport", "run_processes", "run_threads"]

ECHO = "echo"
CREATE = "create"
START_MARGIN = 0.05  # seconds between announcing the window and its start
READY_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class SenderPlan:
    """What one sender process (or `run_threads` call) does: one thread per target, each
    a `(host_url, agent_id)` for "echo" or a `(host_url, "")` for "create"."""

    op: str
    targets: tuple[tuple[str, str], ...]
    duration: float
    warmup: int = 50
    keep_latencies: bool = False


@dataclass(slots=True)
class SenderReport:
    """What the senders of one plan did inside the window."""

    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    window: float = 0.0

    def merge(self, other: SenderReport) -> None:
        self.completed += other.completed
        for name, count in other.errors.items():
            self.errors[name] = self.errors.get(name, 0) + count
        self.latencies.extend(other.latencies)
        self.window = max(self.window, other.window)

    def to_dict(self) -> dict[str, Any]:
        return {
            "completed": self.completed,
            "errors": self.errors,
            "latencies": self.latencies,
            "window": self.window,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SenderReport:
        return cls(data["completed"], dict(data["errors"]), list(data["latencies"]), data["window"])


def _operation(op: str, client: HostClient, url: str, agent_id: str) -> Callable[[], object]:
    if op == ECHO:
        proxy = PagletProxy(url, agent_id, client)
        message = Message("echo", arg=1)
        return lambda: proxy.send(message)
    if op == CREATE:
        seq = iter(range(1 << 62))
        return lambda: client.create_agent(url, Small, state=small_state(next(seq)))
    raise ValueError(f"unknown sender operation {op!r}; use {ECHO!r} or {CREATE!r}")


def _sender(
    fn: Callable[[], object],
    warmup: int,
    warmed: threading.Barrier,
    window: list[float],
    started: threading.Barrier,
    keep: bool,
    out: SenderReport,
) -> None:
    errors: Counter[str] = Counter()
    for _ in range(warmup):
        try:
            fn()
        except Exception as exc:
            errors[type(exc).__name__] += 1
    warmed.wait()
    started.wait()  # `window` is set between the two barriers
    start, end = window
    clock = time.monotonic
    while clock() < start:
        pass  # at most START_MARGIN: spin, so that all senders start together
    completed = 0
    latencies = out.latencies
    errors.clear()  # warm-up failures are not the window's
    while True:
        t0 = clock()
        if t0 >= end:
            break
        try:
            fn()
        except Exception as exc:
            errors[type(exc).__name__] += 1
            continue
        t1 = clock()
        if t1 <= end:
            completed += 1
            if keep:
                latencies.append(t1 - t0)
    out.completed = completed
    out.errors = dict(errors)
    out.window = end - start


def _run(
    plan: SenderPlan, client: HostClient, announce: Callable[[], tuple[float, float]]
) -> SenderReport:
    """Start one thread per target; `announce()` runs once all have warmed up and returns
    the window `(start, end)` in `time.monotonic()` seconds."""
    n = len(plan.targets)
    warmed = threading.Barrier(n + 1)
    started = threading.Barrier(n + 1)
    window = [0.0, 0.0]
    reports = [SenderReport() for _ in range(n)]
    threads = [
        threading.Thread(
            target=_sender,
            args=(
                _operation(plan.op, client, url, agent_id),
                plan.warmup,
                warmed,
                window,
                started,
                plan.keep_latencies,
                reports[i],
            ),
            name=f"bench-sender-{i}",
            daemon=True,
        )
        for i, (url, agent_id) in enumerate(plan.targets)
    ]
    for thread in threads:
        thread.start()
    warmed.wait(READY_TIMEOUT)
    window[0], window[1] = announce()
    started.wait(READY_TIMEOUT)
    for thread in threads:
        thread.join(plan.duration + 60)
    total = SenderReport()
    for report in reports:
        total.merge(report)
    return total


def run_threads(plan: SenderPlan, client: HostClient | None = None) -> SenderReport:
    """Run `plan`'s senders as threads of this process."""
    own = client is None
    client = client or HostClient()
    try:

        def announce() -> tuple[float, float]:
            start = time.monotonic() + START_MARGIN
            return start, start + plan.duration

        return _run(plan, client, announce)
    finally:
        if own:
            client.close()


def _process_main(plan: SenderPlan, ready: Any, go: Any, window: Any, results: Any) -> None:
    """A sender process: warm up, report ready, wait for the common window, run, report.
    A failure goes to the queue the parent is reading at that moment, so it never waits
    for an answer that cannot come."""
    announced = False
    try:
        client = HostClient()

        def announce() -> tuple[float, float]:
            nonlocal announced
            ready.put(("ready", None))
            announced = True
            go.wait()
            return window[0], window[1]

        report = _run(plan, client, announce)
        client.close()
        results.put(("done", report.to_dict()))
    except BaseException as exc:
        (results if announced else ready).put(("error", f"{type(exc).__name__}: {exc}"))


def run_processes(plans: list[SenderPlan], duration: float) -> list[SenderReport]:
    """Run each plan in its own spawned sender process, all in one window of `duration`
    seconds. The processes are joined (or killed, by PID) before this returns."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    results = ctx.Queue()
    go = ctx.Event()
    window = ctx.Array("d", 2)
    procs = [
        ctx.Process(
            target=_process_main,
            args=(plan, ready, go, window, results),
            name=f"bench-senders-{i}",
            daemon=True,
        )
        for i, plan in enumerate(plans)
    ]
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            _get(ready, procs, "warm up")
        start = time.monotonic() + START_MARGIN
        window[0], window[1] = start, start + duration
        go.set()
        reports = []
        for _ in procs:
            reports.append(SenderReport.from_dict(_get(results, procs, "finish", duration)))
        return reports
    finally:
        for proc in procs:
            if proc.pid is None:  # never started: a failure while starting the others
                continue
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def _get(queue: Any, procs: list[Any], what: str, extra: float = 0.0) -> Any:
    deadline = time.monotonic() + READY_TIMEOUT + extra
    while True:
        try:
            kind, value = queue.get(timeout=0.5)
        except Exception:  # queue.Empty
            dead = [p.name for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(
                    f"sender processes did not {what}: "
                    f"{'exited ' + ', '.join(dead) if dead else 'timed out'}"
                ) from None
            continue
        if kind == "error":
            raise RuntimeError(f"a sender process failed: {value}")
        return value
