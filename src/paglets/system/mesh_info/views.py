"""Pure functions behind `mesh-info`: host summaries into snapshots, landscapes and
target selections. No host, no clock (the caller passes `now`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from paglets.system.mesh_info.contract import (
    DEFAULT_MAX_AGE,
    MeshHostSnapshot,
    MeshLandscape,
    RejectedTarget,
    TargetCandidate,
    TargetReason,
    TargetSelectionReply,
    TargetSelectionRequest,
)
from paglets.system.placement import (
    HostSummary,
    PlacementNeeds,
    PlacementReason,
    rank_hosts,
)

__all__ = ["landscape", "needs_for", "select_targets", "snapshot_of"]


def snapshot_of(host: HostSummary, now: float) -> MeshHostSnapshot:
    return MeshHostSnapshot(
        host_name=host.host_name,
        host_url=host.url,
        host_id=host.host_id,
        status=host.status,
        is_self=host.is_self,
        code_version=host.code_version,
        error=host.error,
        age_seconds=None if host.age_seconds is None else round(host.age_seconds, 3),
        generated_at=now,
        tags=tuple(sorted(host.tags)),
        properties=dict(host.properties),
        logical_cpus=host.logical_cpus,
        job_cpu_cores=host.job_cpu_cores,
        memory_total_bytes=host.memory_total_bytes,
        temp_total_bytes=host.temp_total_bytes,
        gpus_total=host.gpus_total,
        free_cpu_cores=host.free_cpu_cores,
        free_memory_bytes=host.free_memory_bytes,
        free_temp_bytes=host.free_temp_bytes,
        free_gpus=host.free_gpus,
        cpu_percent=host.cpu_percent,
        load_per_cpu=host.load_per_cpu,
        running_jobs=host.running_jobs,
        queue_length=host.queue_length,
        accepting=host.accepting,
        errors=host.errors,
        active_count=host.active_count,
        inactive_count=host.inactive_count,
    )


def _max_age(value: float) -> float:
    return float(value) if value and value > 0 else DEFAULT_MAX_AGE


def landscape(
    hosts: Iterable[HostSummary],
    now: float,
    *,
    fresh_only: bool = True,
    max_age: float = 0.0,
    limit: int = 0,
) -> MeshLandscape:
    """Every member's snapshot, this host first then by name; with `fresh_only` those
    whose load is older than `max_age` (0 = 20 s), or unknown, are named in `stale`."""
    newest = _max_age(max_age)
    shown: list[MeshHostSnapshot] = []
    stale: list[str] = []
    for host in sorted(hosts, key=lambda h: (not h.is_self, h.host_name, h.host_id)):
        if fresh_only and (host.age_seconds is None or host.age_seconds > newest):
            stale.append(host.host_name)
            continue
        shown.append(snapshot_of(host, now))
    if limit > 0:
        shown = shown[:limit]
    return MeshLandscape(hosts=tuple(shown), stale=tuple(stale), max_age=newest, generated_at=now)


def needs_for(request: TargetSelectionRequest) -> PlacementNeeds:
    """The placement needs of a selection request (`ValueError` for a bad constraint)."""
    return PlacementNeeds(
        cpu_cores=max(0, int(request.cpu_cores)),
        memory_bytes=max(0, int(request.min_free_memory_bytes)),
        temp_bytes=max(0, int(request.min_free_temp_bytes)),
        gpus=max(0, int(request.gpus)),
        required_tags=request.required_tags,
        excluded_tags=request.excluded_tags,
        preferred_tags=request.preferred_tags,
        required_properties=request.required_properties,
        excluded_hosts=request.excluded_hosts,
        include_self=request.include_self,
        max_age_seconds=_max_age(request.max_age),
        max_load_per_cpu=request.max_load_per_cpu,
        max_cpu_percent=request.max_cpu_percent,
        require_fit_now=True,
    )


def _reasons(reasons: Sequence[PlacementReason]) -> tuple[TargetReason, ...]:
    return tuple(TargetReason(code=r.code, message=r.message) for r in reasons)


def select_targets(
    hosts: Iterable[HostSummary], request: TargetSelectionRequest, now: float
) -> TargetSelectionReply:
    """Rank `hosts` for `request` with every filter applied (jobs.md §6, **fix**: paglets
    2.0 ignored the load and CPU limits and mixed in fallback hosts)."""
    placement = rank_hosts(
        hosts,
        needs_for(request),
        limit=max(0, int(request.limit)),
        allow_fallback=request.allow_fallback,
    )
    targets = tuple(
        TargetCandidate(
            host=snapshot_of(c.host, now),
            score=c.score,
            fits_now=c.fits_now,
            expected_start_seconds=c.expected_start_seconds,
            fallback=c.fallback,
            reasons=_reasons(c.reasons),
        )
        for c in placement.candidates
    )
    rejected = tuple(
        RejectedTarget(
            host_name=r.host.host_name,
            host_url=r.host.url,
            host_id=r.host.host_id,
            reasons=_reasons(r.reasons),
        )
        for r in placement.rejected
    )
    return TargetSelectionReply(
        targets=targets,
        rejected=rejected,
        fallback=bool(targets) and all(t.fallback for t in targets),
        generated_at=now,
    )
