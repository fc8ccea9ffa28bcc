"""What the scheduler works from: the host's totals (from the resource sampler), its
policy (from the command line and admin API) and its measured load (jobs.md §1.1).

The scheduler takes these as plain values so that it can be tested without sampling the
machine; the host's resource sampler (`paglets.runtime.resource_probe`) feeds it through
`set_capacity` and `observe_load`, converted by the two adapters at the end. `GpuSpec` is
the sampler's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from paglets.runtime.resource_probe import GpuSpec

__all__ = [
    "GpuSpec",
    "HostCapacity",
    "HostPolicy",
    "MeasuredLoad",
    "capacity_from_spec",
    "load_from_sample",
]


@dataclass(frozen=True, slots=True)
class HostCapacity:
    """The host's totals, as the resource sampler measured them. `job_cpu_ids` are the
    eligible CPU ids minus those reserved for the OS; `numa_nodes` lists the job CPU ids of
    each NUMA node (empty when the topology is unknown)."""

    job_cpu_ids: tuple[int, ...]
    memory_total_bytes: int
    temp_total_bytes: int = 0
    gpus: tuple[GpuSpec, ...] = ()
    numa_nodes: tuple[tuple[int, ...], ...] = ()
    cpu_affinity_supported: bool = True

    @property
    def job_cores(self) -> int:
        return len(self.job_cpu_ids)


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """Who this host is and what it accepts (jobs.md §1.1 `policy`, §1.3 tags/properties).
    Limits of 0 mean "none"."""

    host_id: str = ""
    host_name: str = ""
    host_url: str = ""
    tags: frozenset[str] = frozenset()
    properties: Mapping[str, str] = field(default_factory=dict)
    accept_cpu_jobs: bool = True
    accept_gpu_jobs: bool = True
    max_job_cores: int = 0
    max_walltime_seconds: float = 0.0
    default_walltime_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class MeasuredLoad:
    """The latest measured load. `None` means "not measured": the scheduler then assumes
    nothing outside its leases uses the resource."""

    available_memory_bytes: int | None = None
    free_temp_bytes: int | None = None  # free space on the work volume
    external_busy_cores: float = 0.0  # CPU used outside paglets jobs, 60 s average
    load_per_cpu: float | None = None
    gpu_ok: bool = True  # False while the GPU sampler fails: no new GPU lease
    errors: tuple[str, ...] = ()  # failed samplers ("gpu", "disk")


def capacity_from_spec(spec: Any, numa_nodes: tuple[tuple[int, ...], ...] = ()) -> HostCapacity:
    """`HostCapacity` from the sampler's `HostSpec` (duck-typed: `job_cpu_ids`,
    `memory_total_bytes`, `temp_total_bytes`, `gpus`, `cpu_affinity_supported`)."""
    return HostCapacity(
        job_cpu_ids=tuple(spec.job_cpu_ids),
        memory_total_bytes=int(spec.memory_total_bytes),
        temp_total_bytes=int(spec.temp_total_bytes),
        gpus=tuple(spec.gpus),
        numa_nodes=numa_nodes,
        cpu_affinity_supported=bool(spec.cpu_affinity_supported),
    )


def load_from_sample(load: Any, job_busy_cores: float) -> MeasuredLoad:
    """`MeasuredLoad` from the sampler's load reading (duck-typed: `memory_available_bytes`,
    `temp_free_bytes`, `busy_cores`, `load_per_cpu`, `errors`). CPU used outside jobs is the
    busy cores minus what the jobs' process trees used (`job_busy_cores`, the sum of
    their CPU % / 100); the 60 s averaging is the caller's."""
    errors = tuple(load.errors)
    return MeasuredLoad(
        available_memory_bytes=int(load.memory_available_bytes),
        free_temp_bytes=int(load.temp_free_bytes),
        external_busy_cores=max(0.0, float(load.busy_cores) - job_busy_cores),
        load_per_cpu=float(load.load_per_cpu),
        gpu_ok="gpu" not in errors,
        errors=errors,
    )
