"""The `server-info` contract, version "1" (jobs.md §6): what a host's machine looks like
and what it is doing right now.

Operations (names kept from paglets 2.0): `load(interval, include_gpu)`, `df(paths,
all_volumes)`, `plist(query, limit, include_args)`, `summary()`. The wire types are
frozen msgspec Structs with defaults for every field, so a caller may leave anything out
and a newer provider may add fields. Importing this module is cheap (no psutil), so the
CLI can use it.
"""

from __future__ import annotations

import msgspec

from paglets.services.contracts import EmptyPayload, ServiceContract, ServiceOperation

__all__ = [
    "DF",
    "LOAD",
    "PLIST",
    "SERVER_INFO",
    "SERVER_INFO_AGENT_ID",
    "SUMMARY",
    "DfReply",
    "DfRequest",
    "DiskUsage",
    "GpuLoad",
    "LoadReply",
    "LoadRequest",
    "PlistReply",
    "PlistRequest",
    "ProcessInfo",
    "ServerSummary",
]

_WIRE = {"kw_only": True, "frozen": True}

MAX_INTERVAL = 10.0  # seconds a `load` call may measure for (it holds the service's turn)
MAX_PLIST_LIMIT = 1000


class LoadRequest(msgspec.Struct, **_WIRE):
    """`interval` > 0 measures CPU use over that many seconds (at most 10); 0 answers at
    once from the service's per-second sampler."""

    interval: float = 0.0
    include_gpu: bool = True


class GpuLoad(msgspec.Struct, **_WIRE):
    index: int
    name: str = ""
    uuid: str = ""
    utilization_percent: int = 0
    memory_used_mb: int = 0
    memory_total_mb: int = 0


class LoadReply(msgspec.Struct, **_WIRE):
    """CPU, memory and GPUs now. `cpu_source` says where the CPU % came from: `"sampler"`
    (the last whole second), `"interval"` (measured over the request's interval) or
    `"host-monitor"` (the host's own 2 s sample, while the sampler has none yet).
    `gpu_error` is the failing `nvidia-smi`'s message; `gpu_present` False means this
    machine has no `nvidia-smi` (no GPUs, no error)."""

    host_name: str
    host_url: str = ""
    sampled_at: float = 0.0
    cpu_percent: float = 0.0
    per_cpu_percent: tuple[float, ...] = ()
    cpu_count: int = 0
    cpu_window_seconds: float = 0.0
    cpu_source: str = "sampler"
    memory_percent: float = 0.0
    memory_total_bytes: int = 0
    memory_available_bytes: int = 0
    swap_percent: float = 0.0
    swap_total_bytes: int = 0
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_per_cpu: float = 0.0
    gpus: tuple[GpuLoad, ...] = ()
    gpu_present: bool = False
    gpu_error: str | None = None
    gpu_sampled_at: float = 0.0


class DfRequest(msgspec.Struct, **_WIRE):
    """`paths` empty: `/` plus every real (device-backed) partition. `all_volumes` adds
    every mounted volume, pseudo file systems included, to whatever else is listed."""

    paths: tuple[str, ...] = ()
    all_volumes: bool = False


class DiskUsage(msgspec.Struct, **_WIRE):
    """One path's volume, or `error` (the path does not exist, no permission, ...)."""

    path: str
    mountpoint: str = ""
    device: str = ""
    fstype: str = ""
    total_bytes: int = 0
    used_bytes: int = 0
    free_bytes: int = 0
    percent: float = 0.0
    error: str | None = None


class DfReply(msgspec.Struct, **_WIRE):
    host_name: str
    host_url: str = ""
    volumes: tuple[DiskUsage, ...] = ()


class PlistRequest(msgspec.Struct, **_WIRE):
    """Processes whose name or command line contains `query` (case-insensitive; empty =
    all), largest resident memory first, at most `limit`. `include_args` returns the full
    command line instead of the name."""

    query: str = ""
    limit: int = 25
    include_args: bool = False


class ProcessInfo(msgspec.Struct, **_WIRE):
    pid: int
    name: str = ""
    cmdline: str = ""
    username: str = ""
    status: str = ""
    rss_bytes: int = 0
    memory_percent: float = 0.0
    cpu_percent: float | None = None  # None: first sight of it, no interval to measure over
    create_time: float = 0.0


class PlistReply(msgspec.Struct, **_WIRE):
    host_name: str
    host_url: str = ""
    processes: tuple[ProcessInfo, ...] = ()
    matched: int = 0
    denied: int = 0  # processes whose details this host's user may not read


class ServerSummary(msgspec.Struct, **_WIRE):
    host_name: str
    host_url: str = ""
    host_id: str = ""
    hostname: str = ""
    platform: str = ""
    os_release: str = ""
    arch: str = ""
    python_version: str = ""
    paglets_version: str = ""
    code_version: str = ""
    logical_cpus: int = 0
    physical_cpus: int = 0
    memory_total_bytes: int = 0
    swap_total_bytes: int = 0
    boot_time: float = 0.0
    tags: tuple[str, ...] = ()


LOAD: ServiceOperation[LoadRequest, LoadReply] = ServiceOperation("load", LoadRequest, LoadReply)
DF: ServiceOperation[DfRequest, DfReply] = ServiceOperation("df", DfRequest, DfReply)
PLIST: ServiceOperation[PlistRequest, PlistReply] = ServiceOperation(
    "plist", PlistRequest, PlistReply
)
SUMMARY: ServiceOperation[EmptyPayload, ServerSummary] = ServiceOperation(
    "summary", EmptyPayload, ServerSummary
)

SERVER_INFO = ServiceContract("server-info", (LOAD, DF, PLIST, SUMMARY), version="1")
SERVER_INFO_AGENT_ID = "service.server-info"
