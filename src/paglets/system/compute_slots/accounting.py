"""Resource accounting: what is free now, whether a request could ever run here, and which
CPU ids and GPUs a grant takes (jobs.md §2.2, §2.4). Pure functions of their inputs.

Each running job counts once (**fix**): a lease holds `max(declared, measured)` of memory
and temp storage, and what the machine uses beyond the leases' measured figures is
"external" — never the declared figures a second time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from paglets.system.host_properties import check_constraints

from .config import SchedulerConfig
from .inputs import GpuSpec, HostCapacity, HostPolicy, MeasuredLoad
from .models import (
    ComputeSlotRequest,
    Hold,
    LeaseUsage,
    SlotLease,
    WaitReason,
)

__all__ = [
    "Pool",
    "Release",
    "build_pool",
    "effective_walltime",
    "invalid_request",
    "job_duration",
    "lease_releases",
    "never_here_reasons",
    "pick_cpu_ids",
    "pick_gpus",
]

_UNLIMITED = 1 << 30


def pick_cpu_ids(
    free: Iterable[int], count: int, numa_nodes: Sequence[Sequence[int]] = ()
) -> tuple[int, ...] | None:
    """`count` ids from `free`: within one NUMA node when one has enough (the node with the
    fewest free ids that still fits, so large nodes stay whole for large jobs), else the
    lowest ids. None if fewer than `count` are free."""
    free_set = set(free)
    if count <= 0:
        return ()
    if len(free_set) < count:
        return None
    best: list[int] | None = None
    for node in numa_nodes:
        in_node = sorted(free_set.intersection(node))
        if len(in_node) >= count and (best is None or len(in_node) < len(best)):
            best = in_node
    chosen = best if best is not None else sorted(free_set)
    return tuple(chosen[:count])


def pick_gpus(
    free: Sequence[GpuSpec], count: int, min_memory_mb: int
) -> tuple[GpuSpec, ...] | None:
    """The lowest-index free devices with at least `min_memory_mb` each, or None."""
    if count <= 0:
        return ()
    fitting = [g for g in sorted(free, key=lambda g: g.index) if g.memory_total_mb >= min_memory_mb]
    return tuple(fitting[:count]) if len(fitting) >= count else None


def effective_walltime(
    request: ComputeSlotRequest, policy: HostPolicy, config: SchedulerConfig
) -> float:
    """The job's walltime, else the host default (policy first, then the service's), else
    the host maximum; 0 = none."""
    if request.walltime_seconds > 0:
        return request.walltime_seconds
    default = policy.default_walltime_seconds or config.default_walltime_seconds
    return default or policy.max_walltime_seconds or config.max_walltime_seconds


def job_duration(walltime: float, estimate: float) -> float:
    """How long a job is assumed to run: its walltime bound, else its estimate."""
    return walltime if walltime > 0 else max(0.0, estimate)


def invalid_request(request: ComputeSlotRequest) -> str | None:
    """What is wrong with a request on its face, or None."""
    if not request.request_id or not request.job_id or not request.agent_id:
        return "the request needs request_id, job_id and agent_id"
    if request.cpu_cores < 1:
        return f"cpu_cores must be at least 1, got {request.cpu_cores}"
    if request.memory_bytes < 0 or request.temp_storage_bytes < 0:
        return "memory_bytes and temp_storage_bytes must not be negative"
    if request.walltime_seconds < 0 or request.estimated_runtime_seconds < 0:
        return "walltime_seconds and estimated_runtime_seconds must not be negative"
    if not -10 <= request.priority <= 10:
        return f"priority must be between -10 and 10, got {request.priority}"
    if request.requires_gpu and request.gpu_count < 1:
        return f"a GPU job needs gpu_count >= 1, got {request.gpu_count}"
    return None


def never_here_reasons(
    request: ComputeSlotRequest,
    capacity: HostCapacity,
    policy: HostPolicy,
    config: SchedulerConfig,
) -> list[WaitReason]:
    """Every reason `request` could never run on this host, however long it waited
    (`never-here`); empty when it can run here eventually."""
    out: list[str] = []
    tags = policy.tags
    missing = [t for t in request.required_host_tags if t.lower() not in tags]
    if missing:
        out.append("missing tag " + ", ".join(f"`{t}`" for t in missing))
    excluded = [t for t in request.excluded_host_tags if t.lower() in tags]
    if excluded:
        out.append("excluded tag " + ", ".join(f"`{t}`" for t in excluded))
    if policy.host_name and policy.host_name in request.excluded_host_names:
        out.append(f"host {policy.host_name} is excluded by name")
    if policy.host_url and policy.host_url in request.excluded_host_urls:
        out.append(f"host {policy.host_url} is excluded by URL")
    out.extend(check_constraints(request.required_host_properties, policy.properties))
    if request.requires_gpu and not policy.accept_gpu_jobs:
        out.append("this host does not accept GPU jobs")
    if not request.requires_gpu and not policy.accept_cpu_jobs:
        out.append("this host does not accept CPU-only jobs")
    if policy.max_job_cores and request.cpu_cores > policy.max_job_cores:
        out.append(f"needs {request.cpu_cores} cores, host allows {policy.max_job_cores} per job")
    if request.cpu_cores > capacity.job_cores:
        out.append(f"needs {request.cpu_cores} cores, host has {capacity.job_cores} for jobs")
    memory_limit = capacity.memory_total_bytes - config.memory_headroom(capacity.memory_total_bytes)
    if request.memory_bytes > memory_limit:
        out.append(f"needs {_gib(request.memory_bytes)} memory, host offers {_gib(memory_limit)}")
    temp_limit = capacity.temp_total_bytes - config.temp_headroom(capacity.temp_total_bytes)
    if request.temp_storage_bytes > max(0, temp_limit):
        out.append(
            f"needs {_gib(request.temp_storage_bytes)} temp storage, host offers {_gib(temp_limit)}"
        )
    if request.requires_gpu:
        able = [g for g in capacity.gpus if g.memory_total_mb >= request.gpu_memory_mb]
        if len(able) < request.gpu_count:
            out.append(
                f"needs {request.gpu_count} GPU(s) with {request.gpu_memory_mb} MB, "
                f"host has {len(able)}"
            )
    max_wall = policy.max_walltime_seconds or config.max_walltime_seconds
    if max_wall and request.walltime_seconds > max_wall:
        out.append(
            f"walltime {request.walltime_seconds:.0f} s, host allows at most {max_wall:.0f} s"
        )
    return [WaitReason("never-here", text) for text in out]


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"


@dataclass(slots=True)
class Release:
    """Resources a lease or hold gives back at `end` (its bound end)."""

    end: float
    cores: int
    memory: int
    temp: int
    gpus: tuple[GpuSpec, ...]
    owner_id: str  # request id of the holder


class Pool:
    """What is free right now; the grant pass takes from it as it grants."""

    __slots__ = (
        "affinity",
        "blocked",
        "cores",
        "external_cores",
        "gpu_ok",
        "gpus",
        "ids",
        "memory",
        "slots_left",
        "temp",
    )

    def __init__(
        self,
        *,
        cores: int,
        ids: set[int],
        memory: int,
        temp: int,
        gpus: list[GpuSpec],
        gpu_ok: bool = True,
        slots_left: int = _UNLIMITED,
        affinity: bool = True,
        external_cores: int = 0,
        blocked: WaitReason | None = None,
    ) -> None:
        self.cores = cores
        self.ids = ids
        self.memory = memory
        self.temp = temp
        self.gpus = gpus
        self.gpu_ok = gpu_ok
        self.slots_left = slots_left
        self.affinity = affinity
        self.external_cores = external_cores
        self.blocked = blocked  # a host-wide gate (load), else None

    def shortfall(self, request: ComputeSlotRequest) -> str | None:
        """The first resource that does not cover `request` now, or None if it fits."""
        if self.blocked is not None:
            return self.blocked.code
        if self.slots_left <= 0:
            return "max-jobs"
        cores = request.cpu_cores
        if cores > self.cores or (self.affinity and cores > len(self.ids)):
            return "cpu"
        if request.memory_bytes > self.memory:
            return "memory"
        if request.temp_storage_bytes > self.temp:
            return "temp-storage"
        if request.requires_gpu:
            if not self.gpu_ok:
                return "host-status"
            if len(self.gpus) < request.gpu_count:
                return "gpu"
            if pick_gpus(self.gpus, request.gpu_count, request.gpu_memory_mb) is None:
                return "gpu-memory"
        return None

    def take(
        self, request: ComputeSlotRequest, numa_nodes: Sequence[Sequence[int]] = ()
    ) -> tuple[tuple[int, ...], tuple[GpuSpec, ...]]:
        """Reserve what `request` needs (it must fit); returns the CPU ids and GPUs taken."""
        ids: tuple[int, ...] = ()
        if self.affinity:
            picked = pick_cpu_ids(self.ids, request.cpu_cores, numa_nodes)
            assert picked is not None, "take() called for a request that does not fit"
            ids = picked
            self.ids.difference_update(ids)
        gpus: tuple[GpuSpec, ...] = ()
        if request.requires_gpu:
            found = pick_gpus(self.gpus, request.gpu_count, request.gpu_memory_mb)
            assert found is not None, "take() called for a request that does not fit"
            gpus = found
            self.gpus = [g for g in self.gpus if g not in gpus]
        self.cores -= request.cpu_cores
        self.memory -= request.memory_bytes
        self.temp -= request.temp_storage_bytes
        self.slots_left -= 1
        return ids, gpus


def build_pool(
    capacity: HostCapacity,
    load: MeasuredLoad,
    config: SchedulerConfig,
    leases: Iterable[SlotLease],
    holds: Iterable[Hold],
    usage: Mapping[str, LeaseUsage],
) -> Pool:
    """The free pool from totals, the measured load, the leases and the holds (§2.2)."""
    used_ids: set[int] = set()
    used_gpus: set[int] = set()
    cores_taken = 0
    mem_taken = temp_taken = rss_sum = work_sum = 0
    count = 0
    for lease in leases:
        count += 1
        cores_taken += lease.cpu_cores
        used_ids.update(lease.cpu_core_ids)
        used_gpus.update(lease.gpu_indices)
        u = usage.get(lease.lease_id)
        rss = u.rss_bytes if u is not None else 0
        work = u.work_bytes if u is not None else 0
        rss_sum += rss
        work_sum += work
        mem_taken += max(lease.memory_bytes, rss)
        temp_taken += max(lease.temp_storage_bytes, work)
    for hold in holds:
        count += 1
        cores_taken += hold.request.cpu_cores
        used_ids.update(hold.cpu_core_ids)
        used_gpus.update(hold.gpu_indices)
        mem_taken += hold.request.memory_bytes
        temp_taken += hold.request.temp_storage_bytes
    external_cores = 0
    if config.respect_external_load and load.external_busy_cores > 0:
        external_cores = math.ceil(load.external_busy_cores - 1e-9)
    total = capacity.memory_total_bytes
    external_mem = 0
    if load.available_memory_bytes is not None:
        external_mem = max(0, (total - load.available_memory_bytes) - rss_sum)
    temp_total = capacity.temp_total_bytes
    external_temp = 0
    if load.free_temp_bytes is not None:
        external_temp = max(0, (temp_total - load.free_temp_bytes) - work_sum)
    blocked = None
    if config.max_load_per_cpu > 0 and (load.load_per_cpu or 0.0) > config.max_load_per_cpu:
        blocked = WaitReason(
            "host-status",
            f"load per CPU {load.load_per_cpu:.2f} is above max_load_per_cpu "
            f"{config.max_load_per_cpu:.2f}",
            need=config.max_load_per_cpu,
            have=load.load_per_cpu,
        )
    slots_left = _UNLIMITED
    if config.max_active_leases > 0:
        slots_left = config.max_active_leases - count
    return Pool(
        cores=capacity.job_cores - cores_taken - external_cores,
        ids=set(capacity.job_cpu_ids) - used_ids,
        memory=total - config.memory_headroom(total) - mem_taken - external_mem,
        temp=temp_total - config.temp_headroom(temp_total) - temp_taken - external_temp,
        gpus=[g for g in capacity.gpus if g.index not in used_gpus],
        gpu_ok=load.gpu_ok,
        slots_left=slots_left,
        affinity=capacity.cpu_affinity_supported,
        external_cores=external_cores,
        blocked=blocked,
    )


def lease_releases(
    leases: Iterable[tuple[SlotLease, LeaseUsage]],
    holds: Iterable[Hold],
    gpus: Sequence[GpuSpec],
    walltime_of: Callable[[ComputeSlotRequest], float],
    now: float,
) -> list[Release]:
    """What each lease and hold gives back at its bound end (`granted_at` + walltime, else
    + estimate; a hold from its expiry), soonest first. An overdue bound counts as now:
    the job is assumed about to end, and if it does not, the reservation built on that
    slips — which is what the slip limit measures."""
    by_index = {g.index: g for g in gpus}
    out: list[Release] = []
    for lease, usage in leases:
        end = lease.granted_at + job_duration(
            lease.walltime_seconds, lease.estimated_runtime_seconds
        )
        out.append(
            Release(
                max(end, now),
                lease.cpu_cores,
                max(lease.memory_bytes, usage.rss_bytes),
                max(lease.temp_storage_bytes, usage.work_bytes),
                tuple(by_index[i] for i in lease.gpu_indices if i in by_index),
                lease.request_id,
            )
        )
    for hold in holds:
        r = hold.request
        end = hold.expires_at + job_duration(walltime_of(r), r.estimated_runtime_seconds)
        out.append(
            Release(
                max(end, now),
                r.cpu_cores,
                r.memory_bytes,
                r.temp_storage_bytes,
                tuple(by_index[i] for i in hold.gpu_indices if i in by_index),
                r.request_id,
            )
        )
    out.sort(key=lambda rel: rel.end)
    return out
