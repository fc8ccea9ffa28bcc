"""Timing and memory helpers, result records, and the facts about the machine a run ran on.

Benchmarks report medians (targets.md §1 says "medians unless stated") and p95 over
individually timed calls; batch figures (b2, f4) are one sample per batch. Nothing here
asserts: a figure that misses its target is a result, not an error.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "KiB",
    "MiB",
    "GiB",
    "GcWatch",
    "MemorySnapshot",
    "Result",
    "Target",
    "at_least",
    "at_most",
    "git_commit",
    "machine_info",
    "memory_snapshot",
    "percentile",
    "progress",
    "stopwatch",
    "summarize",
    "time_batches",
    "time_calls",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True, slots=True)
class Target:
    """A bound a figure must meet: `figure <op> value`, `op` is "<=" or ">="."""

    op: str
    value: float

    def met(self, figure: float) -> bool:
        return figure <= self.value if self.op == "<=" else figure >= self.value

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "value": self.value}


def at_most(value: float) -> Target:
    return Target("<=", value)


def at_least(value: float) -> Target:
    return Target(">=", value)


@dataclass(frozen=True, slots=True)
class Result:
    """One measured figure. `median` is the figure compared with the target; `p95` is None
    for figures that are a single computed value (memory per paglet, a ratio)."""

    row: str  # targets.md row id: "a1", "e3", ...
    key: str  # unique within a run: "e3.deactivate"
    measurement: str
    unit: str
    median: float
    p95: float | None
    n: int
    target: Target | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.median)

    def to_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "key": self.key,
            "measurement": self.measurement,
            "unit": self.unit,
            "median": self.median,
            "p95": self.p95,
            "n": self.n,
            "target": None if self.target is None else self.target.to_json(),
            "met": self.met,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        target = data.get("target")
        return cls(
            row=data["row"],
            key=data["key"],
            measurement=data["measurement"],
            unit=data["unit"],
            median=data["median"],
            p95=data["p95"],
            n=data["n"],
            target=None if target is None else Target(target["op"], target["value"]),
            extra=data.get("extra") or {},
        )


# -- statistics ------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (`q` in 0..100) of an already sorted list."""
    if not sorted_values:
        raise ValueError("percentile of no samples: the benchmark took none")
    pos = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(sorted_values) - 1)
    frac = pos - low
    return sorted_values[low] * (1 - frac) + sorted_values[high] * frac


def summarize(samples: list[float]) -> tuple[float, float]:
    """(median, p95) of the samples."""
    ordered = sorted(samples)
    return percentile(ordered, 50), percentile(ordered, 95)


# -- timing ----------------------------------------------------------------------------


def time_calls(fn: Callable[[], object], *, n: int, warmup: int) -> list[float]:
    """Seconds per call for `n` calls of `fn`, each timed alone, after `warmup` untimed ones.

    The garbage collector stays on: its pauses are part of what a user sees.
    """
    for _ in range(warmup):
        fn()
    clock = time.perf_counter
    samples = [0.0] * n
    for i in range(n):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    return samples


def time_batches(
    fn: Callable[[], object], *, per_batch: int, batches: int, warmup: int
) -> list[float]:
    """Seconds per operation, one sample per call of `fn` (which does `per_batch` operations)."""
    for _ in range(warmup):
        fn()
    clock = time.perf_counter
    samples = []
    for _ in range(batches):
        t0 = clock()
        fn()
        samples.append((clock() - t0) / per_batch)
    return samples


# -- memory ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    """This process's RSS and PSS, and the machine's MemAvailable, in bytes."""

    rss: int
    pss: int | None
    available: int

    def growth_since(self, before: MemorySnapshot) -> dict[str, int | None]:
        return {
            "rss": self.rss - before.rss,
            "pss": None if self.pss is None or before.pss is None else self.pss - before.pss,
            "mem_available_drop": before.available - self.available,
        }


def memory_snapshot(*, pss: bool = True) -> MemorySnapshot:
    """Collect garbage first, so that the figure is what is live, not what awaits a collection.

    PSS walks /proc/self/smaps, which costs milliseconds for a large heap; pass `pss=False`
    where that matters.
    """
    gc.collect()
    proc = psutil.Process()
    pss_bytes: int | None = None
    if pss:
        try:
            pss_bytes = int(getattr(proc.memory_full_info(), "pss", 0)) or None
        except (psutil.AccessDenied, OSError):
            pss_bytes = None
    return MemorySnapshot(
        rss=proc.memory_info().rss, pss=pss_bytes, available=psutil.virtual_memory().available
    )


class GcWatch:
    """Counts full (generation 2) collections and the time they take while active.

    With hundreds of thousands of live paglets a full collection walks every one of them;
    this tells how much of a figure that is.
    """

    __slots__ = ("_started", "collections", "seconds")

    def __init__(self) -> None:
        self.collections = 0
        self.seconds = 0.0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.collections += 1
            self.seconds += time.perf_counter() - self._started

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def to_json(self) -> dict[str, Any]:
        return {"gen2_collections": self.collections, "gen2_seconds": self.seconds}


# -- the machine -----------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """What a figure depends on: platform, CPUs, memory, load, Python."""
    vm = psutil.virtual_memory()
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_total": vm.total,
        "memory_available": vm.available,
        "load_average": load,
        "python": sys.version,
        "python_implementation": platform.python_implementation(),
    }


def git_commit(repo: Path) -> dict[str, Any]:
    """HEAD of the checkout the benchmark ran from, and whether the tree had local edits."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


# -- progress --------------------------------------------------------------------------


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries only the table)."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as t: ...` then `t[0]` is the elapsed seconds."""
    out = [0.0]
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out[0] = time.perf_counter() - t0
