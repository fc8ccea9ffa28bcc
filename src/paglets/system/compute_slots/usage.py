"""Usage of a job's process tree (jobs.md §2.10): CPU, memory, I/O, work-dir bytes.

One `psutil.Process` is kept per pid of the tree between samples: CPU % is a rate, and a
fresh `Process` per sample has no previous reading, which is why paglets 2.0 read 0 %.
CPU = Δ(user + system of the live tree, plus the children's times their parents reaped)
/ Δwall, correct from the second sample and above 100 % for a job on several cores. RSS
is summed over the tree (PSS where readable, so shared pages are not counted N times).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import psutil

from .models import (
    UsageSample,
)

__all__ = ["ProcessTreeSampler", "UsageMonitor", "directory_bytes"]


def directory_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of the files under `path` (not following links); vanished files count 0."""
    total = 0
    stack = [os.fspath(path)]
    while stack:
        top = stack.pop()
        try:
            with os.scandir(top) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def _cpu_seconds(times: Any) -> float:
    return (
        times.user
        + times.system
        + getattr(times, "children_user", 0.0)
        + getattr(times, "children_system", 0.0)
    )


class ProcessTreeSampler:
    """Samples one job's process tree; `sample()` returns None once the root is gone."""

    __slots__ = ("_last_at", "_last_total", "_procs", "_pss", "create_time", "pid")

    def __init__(self, pid: int, *, create_time: float | None = None, use_pss: bool = True) -> None:
        self.pid = pid
        self.create_time = create_time
        self._procs: dict[int, psutil.Process] = {}
        self._last_total: float | None = None
        self._last_at = 0.0
        self._pss = use_pss

    def _root(self) -> psutil.Process | None:
        proc = self._procs.get(self.pid)
        try:
            if proc is None:
                proc = psutil.Process(self.pid)
                if (
                    self.create_time is not None
                    and abs(proc.create_time() - self.create_time) > 0.5
                ):
                    return None  # the pid was recycled: not our job
                self._procs[self.pid] = proc
            if not proc.is_running():
                return None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return proc

    def _tree(self, root: psutil.Process) -> list[psutil.Process]:
        try:
            children = root.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            children = []
        live = {self.pid: root}
        for child in children:
            # Reuse the Process we already hold for a pid (psutil checks its identity).
            live[child.pid] = self._procs.get(child.pid, child)
        self._procs = live
        return list(live.values())

    def _memory(self, proc: psutil.Process) -> int:
        if self._pss:
            try:
                return int(proc.memory_full_info().pss)
            except (psutil.AccessDenied, AttributeError, OSError):
                self._pss = False  # not readable here: use RSS from now on
        return int(proc.memory_info().rss)

    def sample(self, at: float | None = None) -> UsageSample | None:
        root = self._root()
        if root is None:
            return None
        wall = time.monotonic()
        total_cpu = 0.0
        rss = 0
        read = write = 0
        count = 0
        for proc in self._tree(root):
            try:
                with proc.oneshot():
                    total_cpu += _cpu_seconds(proc.cpu_times())
                    rss += self._memory(proc)
                    try:
                        io = proc.io_counters()
                        read += io.read_bytes
                        write += io.write_bytes
                    except (AttributeError, psutil.AccessDenied, NotImplementedError):
                        pass
                count += 1
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
        if count == 0:
            return None
        # A descendant re-parented outside the tree takes its time away: never go backwards.
        if self._last_total is not None:
            total_cpu = max(total_cpu, self._last_total)
        percent = None
        if self._last_total is not None and wall > self._last_at:
            percent = 100.0 * (total_cpu - self._last_total) / (wall - self._last_at)
        self._last_total, self._last_at = total_cpu, wall
        return UsageSample(
            at=time.time() if at is None else at,
            cpu_seconds=total_cpu,
            cpu_percent=percent,
            rss_bytes=rss,
            process_count=count,
            io_read_bytes=read,
            io_write_bytes=write,
        )


class UsageMonitor:
    """Samplers for every running lease; `sample_all()` feeds `Scheduler.record_usage`.

    Work directories are measured every `disk_interval` seconds (walking a tree is not
    free), and their last size is repeated in between."""

    def __init__(self, *, disk_interval: float = 60.0, use_pss: bool = True) -> None:
        self.disk_interval = disk_interval
        self.use_pss = use_pss
        self._samplers: dict[str, ProcessTreeSampler] = {}
        self._dirs: dict[str, list[Path]] = {}
        self._disk: dict[str, tuple[float, int]] = {}

    def track(
        self,
        lease_id: str,
        pid: int,
        *,
        create_time: float | None = None,
        paths: list[Path] | None = None,
    ) -> None:
        self._samplers[lease_id] = ProcessTreeSampler(
            pid, create_time=create_time, use_pss=self.use_pss
        )
        if paths:
            self._dirs[lease_id] = list(paths)

    def untrack(self, lease_id: str) -> None:
        self._samplers.pop(lease_id, None)
        self._dirs.pop(lease_id, None)
        self._disk.pop(lease_id, None)

    def tracked(self) -> Mapping[str, ProcessTreeSampler]:
        return self._samplers

    def _work_bytes(self, lease_id: str, now: float) -> int | None:
        paths = self._dirs.get(lease_id)
        if not paths:
            return None
        last = self._disk.get(lease_id)
        if last is not None and now - last[0] < self.disk_interval:
            return last[1]
        size = sum(directory_bytes(p) for p in paths)
        self._disk[lease_id] = (now, size)
        return size

    def sample_all(self, now: float | None = None) -> dict[str, UsageSample]:
        now = time.time() if now is None else now
        out: dict[str, UsageSample] = {}
        for lease_id, sampler in list(self._samplers.items()):
            sample = sampler.sample(now)
            if sample is None:
                continue
            work = self._work_bytes(lease_id, now)
            if work is not None:
                sample = msgspec.structs.replace(sample, work_bytes=work)
            out[lease_id] = sample
        return out
