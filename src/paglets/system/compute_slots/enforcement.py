"""Ending and stopping jobs (jobs.md §2.3, §2.8, §2.9): lease expiry, the start deadline,
walltime, the memory and temp-storage watchdog, cancel, vanished requests and the
restart recovery.

Runs inside a scheduler turn; process signals are effects (the `stop_job` hook) that run
after the turn commits. A stop only *asks*: the lease closes when the process exit is
reported, with the stop's reason as its finish reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from .models import (
    LEASE_GRANTED,
    LEASE_RUNNING,
    CancelSlotRequestsReply,
    CancelSlotRequestsRequest,
    ComputeSlotRequest,
    JobHistoryRow,
    SlotLease,
)

if TYPE_CHECKING:
    from .hooks import LeaseRecord, TickReport
    from .scheduler import ComputeSlotsScheduler

__all__ = ["agent_gone", "cancel", "enforce", "reconcile", "recover", "request_stop"]


def request_stop(
    sched: ComputeSlotsScheduler, rec: LeaseRecord, reason: str, grace: float, now: float
) -> SlotLease:
    """Mark the lease as being stopped for `reason` and queue the signal."""
    lease = msgspec.structs.replace(rec.lease, stop_reason=reason, stop_requested_at=now)
    rec.lease = lease
    sched.tables.put_lease(lease, rec.request)
    sched._effects.append(lambda: sched.hooks.stop_job(lease, reason, grace))
    return lease


def enforce(sched: ComputeSlotsScheduler, now: float, report: TickReport) -> None:
    """Expire leases, enforce walltime, and run the memory watchdog (one kill per tick)."""
    config = sched.config
    for rec in list(sched._leases.values()):
        lease = rec.lease
        if lease.status == LEASE_GRANTED and lease.expires_at <= now:
            report.closed.append(sched._close(rec, "not-started", now))
        elif lease.status == LEASE_RUNNING and lease.expires_at <= now:
            # The supervisor stopped renewing: it is gone. Make sure the process is too.
            report.closed.append(sched._close(rec, "expired", now))
            if lease.pid:
                sched._effects.append(lambda ls=lease: sched.hooks.stop_job(ls, "expired", 0.0))
        elif (
            lease.status == LEASE_RUNNING
            and lease.walltime_seconds > 0
            and not lease.stop_reason
            and now >= lease.started_at + lease.walltime_seconds
        ):
            stopped = request_stop(sched, rec, "walltime", config.kill_grace_seconds, now)
            report.stops.append((stopped, "walltime"))
    if config.memory_enforcement != "watchdog":
        return
    load, capacity = sched.load, sched.capacity
    running = [
        r
        for r in sched._leases.values()
        if r.lease.status == LEASE_RUNNING and not r.lease.stop_reason
    ]
    if (
        load.available_memory_bytes is not None
        and load.available_memory_bytes < config.memory_headroom(capacity.memory_total_bytes)
    ):
        over = [
            (r.usage.rss_bytes - r.lease.memory_bytes, r)
            for r in running
            if r.lease.memory_bytes > 0 and r.usage.rss_bytes > r.lease.memory_bytes
        ]
        if over:
            rec = max(over, key=lambda pair: pair[0])[1]
            stopped = request_stop(sched, rec, "memory", config.kill_grace_seconds, now)
            report.stops.append((stopped, "memory"))
            return
    if load.free_temp_bytes is not None and load.free_temp_bytes < config.temp_headroom(
        capacity.temp_total_bytes
    ):
        over = [
            (r.usage.work_bytes - r.lease.temp_storage_bytes, r)
            for r in running
            if r.usage.work_bytes > r.lease.temp_storage_bytes
        ]
        if over:
            rec = max(over, key=lambda pair: pair[0])[1]
            stopped = request_stop(sched, rec, "killed", config.kill_grace_seconds, now)
            report.stops.append((stopped, "killed"))


def _matcher(req: CancelSlotRequestsRequest):
    sets = (
        set(req.request_ids),
        set(req.agent_ids),
        set(req.job_ids),
        set(req.group_ids),
        set(req.owners),
    )

    def match(r: ComputeSlotRequest) -> bool:
        if req.all:
            return True
        return (
            r.request_id in sets[0]
            or r.agent_id in sets[1]
            or r.job_id in sets[2]
            or (bool(r.group_id) and r.group_id in sets[3])
            or r.owner in sets[4]
        )

    return match


def cancel(sched: ComputeSlotsScheduler, req: CancelSlotRequestsRequest) -> CancelSlotRequestsReply:
    """Dequeue matching requests; with `include_running` (or its synonym
    `include_leases`) stop matching jobs too. Empty filters without `all` match nothing."""
    if not (
        req.all or req.request_ids or req.agent_ids or req.job_ids or req.group_ids or req.owners
    ):
        return CancelSlotRequestsReply(
            errors=(
                "no filter given: name request_ids, agent_ids, job_ids, group_ids or owners, "
                "or set all=True",
            )
        )
    match = _matcher(req)
    stop_running = req.include_running or req.include_leases
    queued = [e for e in sched._entries.values() if match(e.request)]
    held = [h for h in sched._holds.values() if match(h.request)]
    running = [r for r in sched._leases.values() if stop_running and match(r.request)]
    matched = tuple(
        [e.request.request_id for e in queued]
        + [h.request.request_id for h in held]
        + [r.lease.request_id for r in running]
    )
    if req.dry_run:
        return CancelSlotRequestsReply(matched=matched)
    now = sched.clock()
    cancelled: list[str] = []
    stopped: list[str] = []
    with sched._turn():
        for entry in queued:
            sched._end_entry(entry, "cancelled", now)
            cancelled.append(entry.request.request_id)
            sched._effects.append(lambda r=entry.request: sched.hooks.cancel_waiting(r))
        for hold in held:
            del sched._holds[hold.hold_id]
            sched.tables.delete_hold(hold.hold_id)
            cancelled.append(hold.request.request_id)
        for rec in running:
            if rec.lease.status == LEASE_GRANTED:
                sched._close(rec, "cancelled", now)
                cancelled.append(rec.lease.request_id)
                sched._effects.append(lambda r=rec.request: sched.hooks.cancel_waiting(r))
            elif rec.lease.stop_reason != "cancelled":
                request_stop(sched, rec, "cancelled", req.kill_grace_seconds, now)
                stopped.append(rec.lease.job_id)
        sched._pass(now)
    return CancelSlotRequestsReply(
        matched=matched, cancelled_requests=tuple(cancelled), stopped_jobs=tuple(stopped)
    )


def recover(sched: ComputeSlotsScheduler) -> list[JobHistoryRow]:
    """At host start: RUNNING leases end as `host-restart` (their processes are killed
    through `stop_job`), GRANTED grants are delivered again."""
    now = sched.clock()
    closed = []
    with sched._turn():
        for rec in list(sched._leases.values()):
            lease = rec.lease
            if lease.status == LEASE_RUNNING:
                closed.append(sched._close(rec, "host-restart", now))
                if lease.pid:
                    sched._effects.append(
                        lambda ls=lease: sched.hooks.stop_job(ls, "host-restart", 0.0)
                    )
            else:
                fresh = msgspec.structs.replace(
                    lease, expires_at=now + sched.config.start_deadline_seconds
                )
                sched._put_lease(rec, fresh)
                sched._effects.append(lambda lid=lease.lease_id: sched._deliver(lid))
    return closed


def agent_gone(sched: ComputeSlotsScheduler, agent_id: str, reason: str = "vanished") -> int:
    """A paglet was disposed, departed or crashed: drop its queue entry, holds and
    not-yet-started leases in this turn. Returns how many were dropped."""
    now = sched.clock()
    dropped = 0
    with sched._turn():
        rid = sched._agent_entry.get(agent_id)
        if rid is not None and rid in sched._entries:
            sched._end_entry(sched._entries[rid], reason, now)
            dropped += 1
        for hold in [h for h in sched._holds.values() if h.request.agent_id == agent_id]:
            del sched._holds[hold.hold_id]
            sched.tables.delete_hold(hold.hold_id)
            dropped += 1
        for rec in [r for r in sched._leases.values() if r.lease.agent_id == agent_id]:
            if rec.lease.status == LEASE_GRANTED:
                sched._close(rec, reason, now)
                dropped += 1
        if dropped:
            sched._pass(now)
    return dropped


def reconcile(sched: ComputeSlotsScheduler, is_known: Callable[[str], bool]) -> list[str]:
    """The 60 s sweep: every waiting request whose paglet the registry no longer knows
    is dropped as `vanished`. Returns the agent ids dropped."""
    agents = {e.request.agent_id for e in sched._entries.values()}
    agents.update(h.request.agent_id for h in sched._holds.values())
    agents.update(
        r.lease.agent_id for r in sched._leases.values() if r.lease.status == LEASE_GRANTED
    )
    gone = sorted(a for a in agents if not is_known(a))
    for agent_id in gone:
        agent_gone(sched, agent_id)
    return gone
