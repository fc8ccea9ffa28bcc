"""Admission: the `request_slot` decision (jobs.md §2.2).

| decision | when |
|---|---|
| `run_now` | it may start now (fits, first among those that fit, breaks no reservation, a start token is free), or it already holds a lease or hold here |
| `sleep` | it can run here eventually: queued, an existing entry keeping its place |
| `redirect` | it can never run here, or the host drains, but a known host could |
| `rejected` | no known host can ever run it, or the request is invalid |

"May start now" is decided by the grant pass itself, with the request in its place in the
queue order, so an arriving request never jumps a queued one that fits, and a `run_now`
always means the resources are reserved in the same turn (**fix** of check-then-act).
With `hold_only=True` nothing is queued: a request that may start now gets a hold (30 s),
else `sleep`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from . import views
from .accounting import invalid_request, never_here_reasons
from .models import (
    DECISION_REDIRECT,
    DECISION_REJECTED,
    DECISION_RUN_NOW,
    DECISION_SLEEP,
    ComputeSlotRequest,
    Hold,
    SlotDecisionReply,
    SlotLease,
    WaitReason,
)
from .queue import QueuedRequest
from .records import new_id

if TYPE_CHECKING:
    from .scheduler import ComputeSlotsScheduler

__all__ = ["request_slot"]

_replace = msgspec.structs.replace


def request_slot(sched: ComputeSlotsScheduler, request: ComputeSlotRequest) -> SlotDecisionReply:
    now = sched.clock()
    problem = invalid_request(request)
    if problem is not None:
        return SlotDecisionReply(
            decision=DECISION_REJECTED, request_id=request.request_id, message=problem
        )
    with sched._turn():
        rec = sched._lease_for(request)
        if rec is not None:  # idempotent: it already holds a lease here
            return _run_now(rec.lease)
        if request.hold_id:
            hold = sched._holds.get(request.hold_id)
            if hold is not None and hold.request.job_id == request.job_id:
                return _run_now(_convert_hold(sched, hold, request, now))
            request = _replace(request, hold_id="")  # expired: queue like any other
        never = never_here_reasons(request, sched.capacity, sched.policy, sched.config)
        if never or not sched.accepting:
            return _elsewhere(sched, request, never)
        if request.hold_only:
            return _hold(sched, request, now)
        entry = _enqueue(sched, request, now)
        sched._pass(now, requester=entry.request.request_id)
        rec = sched._lease_for(request)
        if rec is not None:
            return _run_now(rec.lease)
        return _sleep_reply(sched, entry.request, now)


def _run_now(lease: SlotLease) -> SlotDecisionReply:
    return SlotDecisionReply(
        decision=DECISION_RUN_NOW, request_id=lease.request_id, lease=lease, hold_id=lease.hold_id
    )


def _enqueue(
    sched: ComputeSlotsScheduler, request: ComputeSlotRequest, now: float
) -> QueuedRequest:
    request = _replace(request, hold_id="", hold_only=False)
    existing = sched._entry_for(request)
    first = request.first_submitted_at or now
    if existing is not None:  # an existing entry keeps its place
        old = existing.request.first_submitted_at
        first = min(first, old) if old else first
        if existing.request.request_id != request.request_id:
            sched._drop_entry(existing.request.request_id)
        entry = QueuedRequest(
            _replace(request, first_submitted_at=first),
            existing.queued_at,
            existing.redirect_tried_at,
        )
    else:
        entry = QueuedRequest(_replace(request, first_submitted_at=first), now)
    sched._add_entry(entry)
    return entry


def _convert_hold(
    sched: ComputeSlotsScheduler, hold: Hold, request: ComputeSlotRequest, now: float
) -> SlotLease:
    """The job arrived with its hold: the held resources become its lease."""
    del sched._holds[hold.hold_id]
    sched.tables.delete_hold(hold.hold_id)
    r = _replace(request, hold_only=False)
    stale = sched._entry_for(r)
    if stale is not None:
        sched._drop_entry(stale.request.request_id)
    gpus = {g.index: g for g in sched.capacity.gpus}
    return sched._new_lease(
        r,
        hold.cpu_core_ids,
        tuple(gpus[i] for i in hold.gpu_indices if i in gpus),
        queued_at=hold.created_at,
        now=now,
        hold_id=hold.hold_id,
    )


def _hold(
    sched: ComputeSlotsScheduler, request: ComputeSlotRequest, now: float
) -> SlotDecisionReply:
    if request.first_submitted_at == 0:
        request = _replace(request, first_submitted_at=now)
    outcome, _ = sched._pass(now, extra=request)
    grant = next((g for g in outcome.grants if g.request is request), None)
    if grant is None:
        return _sleep_reply(sched, request, now, queued=False)
    hold = Hold(
        hold_id=new_id("hold"),
        request=_replace(request, hold_only=False),
        cpu_core_ids=grant.cpu_ids,
        gpu_ids=tuple(g.uuid for g in grant.gpus),
        gpu_indices=tuple(g.index for g in grant.gpus),
        created_at=now,
        expires_at=now + sched.config.hold_ttl_seconds,
    )
    sched._holds[hold.hold_id] = hold
    sched.tables.put_hold(hold)
    return SlotDecisionReply(
        decision=DECISION_RUN_NOW, request_id=request.request_id, hold_id=hold.hold_id
    )


def _elsewhere(
    sched: ComputeSlotsScheduler, request: ComputeSlotRequest, never: list[WaitReason]
) -> SlotDecisionReply:
    entry = sched._entry_for(request)
    if entry is not None:  # it leaves this queue: it is placed again
        sched._drop_entry(entry.request.request_id)
    reasons = tuple(never) or (WaitReason("draining", "the host is draining"),)
    peer = sched.hooks.capable_peer(request)
    if peer is not None:
        return SlotDecisionReply(
            decision=DECISION_REDIRECT,
            request_id=request.request_id,
            redirect_host_url=peer.host_url,
            redirect_host_id=peer.host_id,
            reasons=reasons,
            message=f"{peer.host_name or peer.host_url} can run this job; this host cannot",
        )
    return SlotDecisionReply(
        decision=DECISION_REJECTED,
        request_id=request.request_id,
        reasons=reasons,
        message="no known host can ever run this job: " + "; ".join(r.message for r in reasons),
    )


def _sleep_reply(
    sched: ComputeSlotsScheduler, request: ComputeSlotRequest, now: float, *, queued: bool = True
) -> SlotDecisionReply:
    item = views.explain_request(sched, request, now, queued=queued)
    return SlotDecisionReply(
        decision=DECISION_SLEEP,
        request_id=request.request_id,
        queue_position=item.position,
        expected_start_at=item.expected_start_at,
        reasons=item.reasons,
    )
