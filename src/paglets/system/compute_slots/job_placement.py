"""Placement from the local gossip table (jobs.md §2.12 `candidate_hosts`, §3.5).

Pure glue between the scheduler's wire types and `paglets.system.placement`: a
`ComputeSlotRequest` becomes `PlacementNeeds`, every member of this host's membership
table a `HostSummary`, and the ranking a `CandidateHostsReply` with each rejected host's
reasons. Busy hosts stay candidates, ranked by expected start (a saturated mesh queues
instead of failing); only hard filters reject.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from paglets.system.placement import (
    HostRejection,
    HostSummary,
    PlacementNeeds,
    RankedHost,
    rank_hosts,
    spread_pick,
)

from .catalog import CandidateHost, CandidateHostsReply, CandidateHostsRequest, RejectedHost
from .models import ComputeSlotRequest, WaitReason

__all__ = [
    "WAIT_CODES",
    "candidate_hosts",
    "local_summaries",
    "needs_of",
    "never_anywhere",
    "to_candidate",
]

# Rejections that may pass: the host is (for now) offline, unheard of, or draining.
WAIT_CODES = frozenset({"offline", "draining", "stale", "no-summary"})


def local_summaries(host: Any) -> list[HostSummary]:
    """Every member of `host`'s membership table (itself included) as a `HostSummary`."""
    refs = host.list_hosts(online_only=False, include_self=True)
    out = [
        HostSummary.from_host_ref(ref, local_url=host.address, local_version=host.mesh_version)
        for ref in refs
    ]
    if not any(s.is_self for s in out):
        out.append(_self_summary(host))
    return [
        dataclasses.replace(s, host_id=host.host_id) if s.is_self and not s.host_id else s
        for s in out
    ]


def _self_summary(host: Any) -> HostSummary:
    """This host from its own resource monitor (a host without mesh has no members)."""
    view = host.resource_monitor.summary() or {}

    class _Ref:
        url = host.address
        name = host.name
        host_id = host.host_id
        status = "alive"
        error = None
        code_version = host.mesh_version
        tags = tuple(host.tags)
        properties = dict(host.properties)
        resources = view
        active_count = 0
        inactive_count = 0

    return HostSummary.from_host_ref(_Ref(), local_url=host.address)


def needs_of(
    request: ComputeSlotRequest, *, include_self: bool, exclude: Iterable[str] = ()
) -> PlacementNeeds:
    """The placement needs of a slot request (`ValueError` for a bad constraint)."""
    return PlacementNeeds(
        cpu_cores=max(0, request.cpu_cores),
        memory_bytes=max(0, request.memory_bytes),
        temp_bytes=max(0, request.temp_storage_bytes),
        gpus=request.gpus_needed,
        gpu_memory_mb=max(0, request.gpu_memory_mb),
        required_tags=request.required_host_tags,
        excluded_tags=request.excluded_host_tags,
        preferred_tags=request.preferred_host_tags,
        required_properties=request.required_host_properties,
        excluded_hosts=(*request.excluded_host_names, *request.excluded_host_urls, *exclude),
        include_self=include_self,
    )


def to_candidate(ranked: RankedHost) -> CandidateHost:
    h = ranked.host
    return CandidateHost(
        host_id=h.host_id,
        host_name=h.host_name,
        host_url=h.url,
        fits_now=ranked.fits_now,
        expected_start_seconds=ranked.expected_start_seconds,
        score=ranked.score,
        free_cpu_cores=h.free_cpu_cores,
        job_cpu_cores=h.job_cpu_cores,
        free_memory_bytes=h.free_memory_bytes or 0,
        memory_total_bytes=h.memory_total_bytes,
        free_temp_bytes=h.free_temp_bytes or 0,
        temp_total_bytes=h.temp_total_bytes,
        free_gpus=h.free_gpus,
        gpus_total=h.gpus_total,
        queue_length=h.queue_length,
        tags=tuple(sorted(h.tags)),
        age_seconds=h.age_seconds or 0.0,
    )


def _rejected(rejection: HostRejection) -> RejectedHost:
    return RejectedHost(
        host=rejection.host.host_name or rejection.host.url,
        host_id=rejection.host.host_id,
        reasons=tuple(WaitReason(r.code, r.message) for r in rejection.reasons),
    )


def never_anywhere(rejected: Sequence[RejectedHost]) -> bool:
    """True when no rejected host might become a candidate by itself (coming back
    online, finishing a drain): every one fails a hard filter."""
    return all(any(r.code not in WAIT_CODES for r in h.reasons) for h in rejected)


def candidate_hosts(
    summaries: Sequence[HostSummary],
    request: CandidateHostsRequest,
    *,
    now: float,
    exclude: Iterable[str] = (),
) -> CandidateHostsReply:
    """jobs.md §2.12 `candidate_hosts` over `summaries` (ranked ascending; `selected` is
    the deterministic spread pick among the best)."""
    needs = needs_of(request.request, include_self=request.include_self, exclude=exclude)
    placement = rank_hosts(summaries, needs, limit=max(0, request.limit))
    candidates = tuple(to_candidate(c) for c in placement.candidates)
    picked = spread_pick(placement.candidates, request.request.job_id)
    return CandidateHostsReply(
        candidates=candidates,
        rejected=tuple(_rejected(r) for r in placement.rejected),
        selected=to_candidate(picked) if picked is not None else None,
        generated_at=now,
    )
