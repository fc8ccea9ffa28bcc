"""The `mesh-info` contract, version "1" (jobs.md §6): the mesh's resources as this host's
membership table knows them. No operation makes a network call.

Operations: `snapshot(force)` (this host's summary), `landscape(fresh_only, max_age,
limit)` (every member's), `sync` (the local view; paglets 2.0 pulled from peers here),
`select(TargetSelectionRequest)` (hosts for some work, every filter applied).
"""

from __future__ import annotations

import msgspec

from paglets.services.contracts import EmptyPayload, ServiceContract, ServiceOperation

__all__ = [
    "DEFAULT_MAX_AGE",
    "LANDSCAPE",
    "MESH_INFO",
    "MESH_INFO_AGENT_ID",
    "SELECT",
    "SNAPSHOT",
    "SYNC",
    "LandscapeRequest",
    "MeshHostSnapshot",
    "MeshLandscape",
    "RejectedTarget",
    "SnapshotRequest",
    "TargetCandidate",
    "TargetReason",
    "TargetSelectionReply",
    "TargetSelectionRequest",
]

_WIRE = {"kw_only": True, "frozen": True}

DEFAULT_MAX_AGE = 20.0  # seconds: `max_age=0` means this (cli.md §3)


class MeshHostSnapshot(msgspec.Struct, **_WIRE):
    """One host's summary (jobs.md §1.1) as this host last heard it. `age_seconds` is the
    age of its load part on this host's clock (None: none heard yet); byte values are None
    while its spec is unknown. `error` names an incompatibility or a suspicion."""

    host_name: str
    host_url: str = ""
    host_id: str = ""
    status: str = "alive"
    is_self: bool = False
    code_version: str | None = None
    error: str | None = None
    age_seconds: float | None = None
    generated_at: float = 0.0
    tags: tuple[str, ...] = ()
    properties: dict[str, str] = {}
    logical_cpus: int = 0
    job_cpu_cores: int = 0
    memory_total_bytes: int = 0
    temp_total_bytes: int = 0
    gpus_total: int = 0
    free_cpu_cores: int = 0
    free_memory_bytes: int | None = None
    free_temp_bytes: int | None = None
    free_gpus: int = 0
    cpu_percent: float = 0.0
    load_per_cpu: float = 0.0
    running_jobs: int = 0
    queue_length: int = 0
    accepting: bool = True
    errors: tuple[str, ...] = ()
    active_count: int = 0
    inactive_count: int = 0


class SnapshotRequest(msgspec.Struct, **_WIRE):
    """`force`: sample this host now instead of answering from the last 2 s sample."""

    force: bool = False


class LandscapeRequest(msgspec.Struct, **_WIRE):
    """`fresh_only`: leave out hosts whose load is older than `max_age` seconds (0 = 20 s);
    `limit`: at most this many hosts (0 = all)."""

    fresh_only: bool = True
    max_age: float = 0.0
    limit: int = 0


class MeshLandscape(msgspec.Struct, **_WIRE):
    hosts: tuple[MeshHostSnapshot, ...] = ()
    stale: tuple[str, ...] = ()  # names left out by `fresh_only`
    max_age: float = DEFAULT_MAX_AGE
    generated_at: float = 0.0


class TargetSelectionRequest(msgspec.Struct, **_WIRE):
    """Which hosts may take some work. Every filter applies: a gate set to None is off.

    `max_age` 0 means 20 s. `min_free_memory_bytes`/`min_free_temp_bytes` and `cpu_cores`/
    `gpus` must be free now. Tags are case-insensitive; `required_properties` are
    constraints (`python>=3.12`, jobs.md §1.3); `excluded_hosts` are names, URLs or ids.
    Hosts that fail only gates are offered as fallbacks only with `allow_fallback`."""

    limit: int = 5
    max_age: float = 0.0
    max_load_per_cpu: float | None = 1.0
    max_cpu_percent: float | None = 100.0
    min_free_memory_bytes: int = 0
    min_free_temp_bytes: int = 0
    cpu_cores: int = 0
    gpus: int = 0
    required_tags: tuple[str, ...] = ()
    excluded_tags: tuple[str, ...] = ()
    preferred_tags: tuple[str, ...] = ()
    required_properties: tuple[str, ...] = ()
    excluded_hosts: tuple[str, ...] = ()
    include_self: bool = True
    allow_fallback: bool = False


class TargetReason(msgspec.Struct, **_WIRE):
    code: str
    message: str = ""


class TargetCandidate(msgspec.Struct, **_WIRE):
    """A selected host, best first; a `fallback` one carries the reasons it failed."""

    host: MeshHostSnapshot
    score: float = 0.0
    fits_now: bool = True
    expected_start_seconds: float = 0.0
    fallback: bool = False
    reasons: tuple[TargetReason, ...] = ()


class RejectedTarget(msgspec.Struct, **_WIRE):
    host_name: str
    host_url: str = ""
    host_id: str = ""
    reasons: tuple[TargetReason, ...] = ()


class TargetSelectionReply(msgspec.Struct, **_WIRE):
    targets: tuple[TargetCandidate, ...] = ()
    rejected: tuple[RejectedTarget, ...] = ()
    fallback: bool = False  # True: no host qualified and `targets` are fallbacks
    generated_at: float = 0.0


SNAPSHOT: ServiceOperation[SnapshotRequest, MeshHostSnapshot] = ServiceOperation(
    "snapshot", SnapshotRequest, MeshHostSnapshot
)
LANDSCAPE: ServiceOperation[LandscapeRequest, MeshLandscape] = ServiceOperation(
    "landscape", LandscapeRequest, MeshLandscape
)
SYNC: ServiceOperation[EmptyPayload, MeshLandscape] = ServiceOperation(
    "sync", EmptyPayload, MeshLandscape
)
SELECT: ServiceOperation[TargetSelectionRequest, TargetSelectionReply] = ServiceOperation(
    "select", TargetSelectionRequest, TargetSelectionReply
)

MESH_INFO = ServiceContract("mesh-info", (SNAPSHOT, LANDSCAPE, SYNC, SELECT), version="1")
MESH_INFO_AGENT_ID = "service.mesh-info"
