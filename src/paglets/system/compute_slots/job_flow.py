"""A compute job's placement steps (jobs.md §3.5), run in the job's own turn.

1. `candidate_hosts` from the local gossip table (this host included when home compute is
   allowed or the job is away from home), cut to `candidate_limit`, filtered by
   `accept_compute_candidate`, without hosts the job was redirected away from within the
   cooldown and without the host of a failed attempt (unless no other can take it).
2. `request_slot(hold_only=True)` to the selected host and the next best, in parallel.
3. A `run_now` hold wins (better rank first), else the earliest expected start; the
   other hold is released.
4. Here: convert the hold (or queue). Elsewhere: move there exactly once; on arrival the
   job converts its hold, or queues with its original seniority.
5. Nothing now: stay `PLACING`, asleep until `next_attempt_at`. Only when no known host
   can *ever* run the job does it fail (a saturated mesh queues instead).
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from typing import TYPE_CHECKING, Any

from paglets.core.errors import PagletError
from paglets.system.host_access import host_of

from .catalog import CandidateHost, CandidateHostsRequest
from .job_placement import candidate_hosts, local_summaries, never_anywhere
from .models import (
    COMPUTE_STATUS_FAILED_FINAL,
    COMPUTE_STATUS_PLACING,
    DECISION_RUN_NOW,
    DECISION_SLEEP,
    SlotDecisionReply,
    SlotReleaseRequest,
)

if TYPE_CHECKING:
    from .job import ComputeJobPaglet

__all__ = ["move_to", "place", "release_hold"]

REDIRECT_COOLDOWN = 60.0
PARALLEL = 2


def _exclusions(job: ComputeJobPaglet, now: float, *, with_failed: bool) -> tuple[str, ...]:
    st = job.state
    out = [hop.host_id for hop in st.redirect_history if now - hop.at < REDIRECT_COOLDOWN]
    if with_failed:
        out.extend(st.failed_host_ids)
    return tuple(dict.fromkeys(x for x in out if x))


def _is_here(host: Any, candidate: CandidateHost) -> bool:
    return candidate.host_id == host.host_id or host.is_local_url(candidate.host_url)


def _ask(job: ComputeJobPaglet, candidate: CandidateHost) -> SlotDecisionReply:
    """`request_slot(hold_only=True)` on one candidate (locally without a message)."""
    from .contract import COMPUTE_SLOTS_AGENT_ID, OP_REQUEST_SLOT

    request = job._request(hold_only=True)
    host = host_of(job)
    if _is_here(host, candidate):
        rt = job.runtime
        return rt.call(rt.scheduler.request_slot, request)
    reply = job.send(
        COMPUTE_SLOTS_AGENT_ID,
        OP_REQUEST_SLOT.to_message(request),
        host_url=candidate.host_url,
        timeout=job.state.scheduler_timeout_seconds,
    )
    return OP_REQUEST_SLOT.decode_reply(reply)


def _describe(rejected: Any) -> str:
    parts = []
    for r in rejected[:4]:
        reasons = ", ".join(x.message for x in r.reasons[:2])
        parts.append(f"{r.host}: {reasons}")
    return "; ".join(parts) or "no hosts known"


# Right after a host starts (a laptop back from sleep, a restart) its membership view may not
# list every capable host yet: "no known host can ever run it" is not decided then.
MESH_SETTLE_SECONDS = 15.0
UNSETTLED_RETRY = 1.0


def view_settled(host: Any) -> bool:
    started = getattr(host, "mesh_started_at", None)
    return started is None or time.monotonic() - started >= MESH_SETTLE_SECONDS


def place(job: ComputeJobPaglet) -> None:
    st = job.state
    host = host_of(job)
    rt = job.runtime
    now = time.time()
    if st.next_attempt_at > now + 0.05:
        job._sleep_until(st.next_attempt_at)
        return
    if st.selected_host_id == host.host_id or (
        st.selected_host_url and host.is_local_url(st.selected_host_url)
    ):  # arrived where placement sent it: convert the hold, or queue
        hold = st.hold_id
        st.selected_host_url = st.selected_host_id = st.hold_id = ""
        job._decided(rt.call(rt.scheduler.request_slot, job._request(hold_id=hold)))
        return
    at_home = not st.home_host_id or st.home_host_id == host.host_id
    summaries = local_summaries(host)
    base = job._request()
    query = CandidateHostsRequest(
        request=base,
        limit=max(1, st.candidate_limit),
        include_self=st.allow_home_compute or not at_home,
    )
    try:
        reply = candidate_hosts(
            summaries, query, now=now, exclude=_exclusions(job, now, with_failed=True)
        )
        candidates = [c for c in reply.candidates if job.accept_compute_candidate(c)]
        if not candidates and st.failed_host_ids:  # the failed host, if no other can
            reply = candidate_hosts(
                summaries, query, now=now, exclude=_exclusions(job, now, with_failed=False)
            )
            candidates = [c for c in reply.candidates if job.accept_compute_candidate(c)]
    except ValueError as exc:  # a bad constraint
        job._final(COMPUTE_STATUS_FAILED_FINAL, "invalid", str(exc))
        return
    if not candidates:
        note = "no candidate host: " + _describe(reply.rejected)
        if not view_settled(host):
            job._wait_placing(note, retry_in=UNSETTLED_RETRY)
        elif never_anywhere(reply.rejected) and not st.wait_for_capable_host:
            job._final(COMPUTE_STATUS_FAILED_FINAL, "no-capable-host", note)
        else:
            job._wait_placing(note)
        return
    order = list(candidates)
    if reply.selected is not None:
        sel = next((c for c in order if c.host_id == reply.selected.host_id), None)
        if sel is not None:
            order.remove(sel)
            order.insert(0, sel)
    tried = order[:PARALLEL]
    answers: list[SlotDecisionReply | None] = [None] * len(tried)
    notes: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(tried)) as pool:
        futures = [pool.submit(_ask, job, c) for c in tried]
        for i, future in enumerate(futures):
            try:
                answers[i] = future.result()
            except (PagletError, OSError, ValueError) as exc:
                notes.append(f"{tried[i].host_name}: {type(exc).__name__}: {exc}")
    chosen: int | None = None
    for i, a in enumerate(answers):
        if a is not None and a.decision == DECISION_RUN_NOW and a.hold_id:
            chosen = i
            break
    if chosen is None:
        best = math.inf
        for i, a in enumerate(answers):
            if a is not None and a.decision == DECISION_SLEEP:
                start = a.expected_start_at if a.expected_start_at is not None else math.inf
                if chosen is None or start < best:
                    chosen, best = i, start
    for i, a in enumerate(answers):
        if a is not None and a.hold_id and i != chosen:
            release_hold(job, a.hold_id, tried[i].host_url)
        elif a is not None and i != chosen and a.message:
            notes.append(f"{tried[i].host_name}: {a.decision}: {a.message}")
    if chosen is None:
        job._wait_placing("; ".join(notes) or "no candidate answered")
        return
    target = tried[chosen]
    answer = answers[chosen]
    hold = answer.hold_id if answer is not None else ""
    st.placement_attempts = 0
    if _is_here(host, target):
        job._decided(rt.call(rt.scheduler.request_slot, job._request(hold_id=hold)))
    else:
        move_to(job, target.host_url, target.host_id, hold)


def move_to(job: ComputeJobPaglet, url: str, host_id: str, hold_id: str) -> None:
    """Move to the chosen host (exactly once); the state says what to do there."""
    st = job.state
    st.selected_host_url, st.selected_host_id, st.hold_id = url, host_id, hold_id
    st.placement_note = f"moving to {url}"
    job._transition(COMPUTE_STATUS_PLACING)
    try:
        job.dispatch(url)
    except PagletError as exc:
        release_hold(job, hold_id, url)
        st.selected_host_url = st.selected_host_id = st.hold_id = ""
        job._wait_placing(f"moving to {url} failed: {exc}")


def release_hold(job: ComputeJobPaglet, hold_id: str, url: str) -> None:
    """Give a hold back (best effort: an unreleased hold expires after 30 s)."""
    if not hold_id:
        return
    host = host_of(job)
    request = SlotReleaseRequest(hold_id=hold_id, agent_id=job.agent_id, reason="released")
    try:
        if not url or host.is_local_url(url):
            rt = job.runtime
            rt.call(rt.scheduler.release_slot, request)
            return
        from .contract import COMPUTE_SLOTS_AGENT_ID, OP_RELEASE_SLOT

        job.send(
            COMPUTE_SLOTS_AGENT_ID,
            OP_RELEASE_SLOT.to_message(request),
            host_url=url,
            timeout=job.state.release_timeout_seconds,
        )
    except (PagletError, OSError) as exc:
        job.state.placement_note = f"hold {hold_id} at {url} not released: {exc}"
