"""Pinning a job process to its leased CPU ids (jobs.md §2.4).

The job process applies the mask to itself before job code runs and before it starts any
thread, so every thread and subprocess inherits it (**fix**: paglets 2.0 masked only the
main thread, after the worker existed). Linux uses `os.sched_setaffinity`; Windows and
FreeBSD use psutil's `cpu_affinity`; elsewhere (macOS) affinity is unsupported and only
the core count is reserved.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

__all__ = [
    "CpuAffinityResult",
    "apply_current_process_cpu_affinity",
    "apply_process_cpu_affinity",
    "cpu_affinity_supported",
    "current_cpu_ids",
]


@dataclass(frozen=True, slots=True)
class CpuAffinityResult:
    """What applying a mask did: `supported` (the platform can pin), `enforced` (this mask
    is now in place), the ids asked for, and the error if it failed."""

    supported: bool
    enforced: bool
    cpu_ids: tuple[int, ...]
    error: str = ""


def cpu_affinity_supported() -> bool:
    return hasattr(os, "sched_setaffinity") or hasattr(psutil.Process, "cpu_affinity")


def current_cpu_ids() -> tuple[int, ...]:
    """The CPU ids this process may run on (all logical CPUs where unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    if hasattr(psutil.Process, "cpu_affinity"):
        try:
            return tuple(sorted(psutil.Process().cpu_affinity()))
        except (psutil.Error, OSError):
            pass
    return tuple(range(os.cpu_count() or 1))


def apply_process_cpu_affinity(pid: int, cpu_ids: Iterable[int]) -> CpuAffinityResult:
    """Pin process `pid` (0 = this one) to `cpu_ids`. Never raises: a failure is reported
    in the result, and the job runs unpinned rather than not at all."""
    ids = tuple(sorted(set(cpu_ids)))
    if not ids:
        return CpuAffinityResult(cpu_affinity_supported(), False, ids, "no CPU ids given")
    try:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(pid, ids)
        elif hasattr(psutil.Process, "cpu_affinity"):
            psutil.Process(pid or os.getpid()).cpu_affinity(list(ids))
        else:
            return CpuAffinityResult(False, False, ids, "CPU affinity is not supported here")
    except (OSError, ValueError, psutil.Error) as exc:
        return CpuAffinityResult(
            True, False, ids, f"could not pin pid {pid or os.getpid()} to CPUs {list(ids)}: {exc}"
        )
    return CpuAffinityResult(True, True, ids)


def apply_current_process_cpu_affinity(cpu_ids: Iterable[int]) -> CpuAffinityResult:
    """Pin this process (call it before starting threads: they inherit the mask)."""
    return apply_process_cpu_affinity(0, cpu_ids)
