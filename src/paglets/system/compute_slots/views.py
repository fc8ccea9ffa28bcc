"""Read-only views of a scheduler: `why`, `explain_wait`, the queue listing and
`scheduler_status`. Nothing here changes state: a status read never grants, expires or
sweeps (**fix**: in paglets 2.0 any status call could sweep a just-granted lease).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .accounting import job_duration, never_here_reasons
from .explain import wait_reasons
from .models import (
    LEASE_GRANTED,
    ComputeSlotRequest,
    ExplainWaitReply,
    ExplainWaitRequest,
    QueueEntry,
    SchedulerHostStatus,
    SchedulerStatusReply,
    SchedulerStatusRequest,
    WaitExplanation,
    WaitReason,
)
from .planner import expected_starts
from .queue import effective_priority
from .records import runtime_info

if TYPE_CHECKING:
    from .scheduler import ComputeSlotsScheduler

__all__ = [
    "explain_request",
    "start_estimates",
    "explain_wait",
    "host_status",
    "queue_view",
    "scheduler_status",
    "why",
]


_NO_WALLTIME = ComputeSlotRequest(request_id="-", job_id="-", agent_id="-")


def start_estimates(
    sched: ComputeSlotsScheduler, requests: Sequence[ComputeSlotRequest], now: float
) -> list[float]:
    """Expected start of each request in `requests` (queue order): in-order starts as the
    leases' bound ends free resources; where that never fits (external load), after the
    core-seconds queued ahead have run on all job cores."""

    default_wall = sched.walltime_of(_NO_WALLTIME)  # the host's default for jobs without one

    def duration(r: ComputeSlotRequest) -> float:
        wall = r.walltime_seconds or default_wall
        return wall if wall > 0 else r.estimated_runtime_seconds

    raw = expected_starts(requests, sched.pool(), sched.releases(now), now, duration)
    out: list[float] = []
    ahead = 0.0
    for r, start in zip(requests, raw, strict=True):
        out.append(start if start is not None else now + ahead / max(1, sched.capacity.job_cores))
        ahead += r.cpu_cores * duration(r)
    return out


def _core_seconds(sched: ComputeSlotsScheduler, r: ComputeSlotRequest) -> float:
    return r.cpu_cores * job_duration(sched.walltime_of(r), r.estimated_runtime_seconds)


def explain_request(
    sched: ComputeSlotsScheduler, request: ComputeSlotRequest, now: float, *, queued: bool = True
) -> WaitExplanation:
    """Position, expected start and every reason for a waiting request (or, with
    `queued=False`, for one asking for a hold that is not in the queue)."""
    order = sched.ordered(now)
    if queued:
        index = next(
            (i for i, e in enumerate(order) if e.request.request_id == request.request_id),
            len(order),
        )
    else:
        index = sched._order.position(request, now)
    ahead = [e.request for e in order[:index]]
    pool = sched.pool()
    outcome = sched.last_outcome(now)
    effective = {r.request_id: effective_priority(r, now, sched.config) for r in ahead[:1]}
    reasons = never_here_reasons(request, sched.capacity, sched.policy, sched.config)
    reasons += wait_reasons(
        request,
        position=index + 1,
        ahead=ahead,
        pool=pool,
        pool_without_holds=sched.pool(with_holds=False) if sched._holds else None,
        holds=list(sched._holds.values()),
        outcome=outcome,
        next_token_at=sched.next_token_at(now),
        effective_priority_of=effective,
        now=now,
        config=sched.config,
        accepting=sched.accepting,
        errors=sched.load.errors,
        duration=job_duration(sched.walltime_of(request), request.estimated_runtime_seconds),
    )
    start = start_estimates(sched, [*ahead, request], now)[-1]
    return WaitExplanation(
        request_id=request.request_id,
        job_id=request.job_id,
        agent_id=request.agent_id,
        state="queued" if queued else "unknown",
        position=index + 1,
        effective_priority=effective_priority(request, now, sched.config),
        waited_seconds=max(0.0, now - request.first_submitted_at),
        expected_start_at=start,
        reasons=tuple(reasons),
        computed_at=now,
    )


def why(sched: ComputeSlotsScheduler, request_id: str) -> WaitExplanation | None:
    """`why` for one request id (or agent or job id) known here; None if unknown."""
    now = sched.clock()
    for entry in sched._entries.values():
        r = entry.request
        if request_id in (r.request_id, r.agent_id, r.job_id):
            return explain_request(sched, r, now)
    for rec in sched._leases.values():
        lease = rec.lease
        if request_id in (lease.request_id, lease.agent_id, lease.job_id):
            reasons: tuple[WaitReason, ...] = ()
            state = "running"
            if lease.status == LEASE_GRANTED:
                state = "starting"
                reasons = (
                    WaitReason(
                        "starting",
                        "granted; the job process is starting",
                        until=lease.expires_at,
                    ),
                )
            return WaitExplanation(
                request_id=lease.request_id,
                job_id=lease.job_id,
                agent_id=lease.agent_id,
                state=state,
                effective_priority=effective_priority(rec.request, now, sched.config),
                waited_seconds=max(0.0, lease.granted_at - lease.queued_at),
                expected_start_at=lease.started_at or lease.granted_at,
                reasons=reasons,
                computed_at=now,
            )
    return None


def explain_wait(sched: ComputeSlotsScheduler, req: ExplainWaitRequest) -> ExplainWaitReply:
    wanted = set(req.request_ids) | set(req.agent_ids) | set(req.job_ids)
    groups = set(req.group_ids)
    ids: list[str] = []
    requests = [e.request for e in sched._entries.values()] + [
        rec.request for rec in sched._leases.values()
    ]
    for r in requests:
        if wanted.intersection((r.request_id, r.agent_id, r.job_id)) or (
            r.group_id and r.group_id in groups
        ):
            ids.append(r.request_id)
    items = tuple(item for item in (why(sched, rid) for rid in ids) if item is not None)
    return ExplainWaitReply(host_name=sched.policy.host_name, items=items)


def queue_view(sched: ComputeSlotsScheduler, now: float) -> list[QueueEntry]:
    """The queue in order as `jobs queue` lists it (one pass over prefix sums)."""
    order = sched.ordered(now)
    starts = start_estimates(sched, [e.request for e in order], now)
    outcome = sched.last_outcome(now)
    out: list[QueueEntry] = []
    for position, entry in enumerate(order, start=1):
        r = entry.request
        out.append(
            QueueEntry(
                request_id=r.request_id,
                job_id=r.job_id,
                agent_id=r.agent_id,
                position=position,
                agent_class=r.agent_class,
                group_id=r.group_id,
                job_key=r.job_key,
                owner=r.owner,
                priority=r.priority,
                effective_priority=effective_priority(r, now, sched.config),
                cpu_cores=r.cpu_cores,
                memory_bytes=r.memory_bytes,
                temp_storage_bytes=r.temp_storage_bytes,
                gpu_count=r.gpus_needed,
                first_submitted_at=r.first_submitted_at,
                queued_at=entry.queued_at,
                waited_seconds=max(0.0, now - r.first_submitted_at),
                expected_start_at=starts[position - 1],
                first_reason=outcome.blocked.get(r.request_id, ""),
            )
        )
    return out


def host_status(sched: ComputeSlotsScheduler) -> SchedulerHostStatus:
    now = sched.clock()
    pool = sched.pool()
    leases = [rec.lease for rec in sched._leases.values()]
    ends = [
        lease.granted_at + job_duration(lease.walltime_seconds, lease.estimated_runtime_seconds)
        for lease in leases
    ]
    outcome = sched.last_outcome(now)
    capacity = sched.capacity
    return SchedulerHostStatus(
        host_id=sched.policy.host_id,
        host_name=sched.policy.host_name,
        host_url=sched.policy.host_url,
        generated_at=now,
        accepting=sched.accepting,
        cpu_affinity_supported=capacity.cpu_affinity_supported,
        job_cpu_cores=capacity.job_cores,
        free_cpu_cores=max(0, pool.cores),
        leased_cpu_cores=sum(lease.cpu_cores for lease in leases),
        held_cpu_cores=sum(h.request.cpu_cores for h in sched._holds.values()),
        external_busy_cores=sched.load.external_busy_cores,
        memory_total_bytes=capacity.memory_total_bytes,
        free_memory_bytes=max(0, pool.memory),
        temp_total_bytes=capacity.temp_total_bytes,
        free_temp_bytes=max(0, pool.temp),
        gpus_total=len(capacity.gpus),
        free_gpus=len(pool.gpus) if pool.gpu_ok else 0,
        running_jobs=sum(1 for lease in leases if lease.status != LEASE_GRANTED),
        starting_jobs=sum(1 for lease in leases if lease.status == LEASE_GRANTED),
        holds=len(sched._holds),
        queue_length=len(sched._entries),
        queued_core_seconds=sum(_core_seconds(sched, e.request) for e in sched._entries.values()),
        next_release_seconds=max(0.0, min(ends) - now) if ends else 0.0,
        start_tokens=copy.copy(sched._bucket).available(now),
        next_token_at=sched.next_token_at(now),
        reserved_request_id=outcome.reservations[0].request_id if outcome.reservations else "",
        backfill_enabled=not any(r.off for r in outcome.reservations),
        errors=sched.load.errors,
        tags=tuple(sorted(sched.policy.tags)),
    )


def scheduler_status(
    sched: ComputeSlotsScheduler, req: SchedulerStatusRequest
) -> SchedulerStatusReply:
    now = sched.clock()
    queue = tuple(queue_view(sched, now)) if req.include_queue else ()
    leases = tuple(rec.lease for rec in sched._leases.values()) if req.include_leases else ()
    jobs = ()
    if req.include_jobs or req.include_usage:
        jobs = tuple(
            runtime_info(rec.lease, rec.request, rec.usage, now) for rec in sched._leases.values()
        )
    history = tuple(sched.history(limit=req.history_limit)) if req.include_history else ()
    whys = ()
    if req.include_why:
        whys = tuple(explain_request(sched, e.request, now) for e in sched.ordered(now))
    return SchedulerStatusReply(
        status=host_status(sched), queue=queue, leases=leases, jobs=jobs, history=history, why=whys
    )
