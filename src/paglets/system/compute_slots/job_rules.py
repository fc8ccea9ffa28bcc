"""The pure rules of a compute job's life (jobs.md §3.4, §3.6, §3.7), apart from the
paglet so they can be tested without a host: which failures are retried, how a retry
resets the state, how the job process's final state is taken over, what `validate`
checks, and the slot request a job sends.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import fields
from typing import Any

from paglets.serialization import codec
from paglets.system.host_properties import parse_constraints

from .job_state import RUNTIME_FIELDS, ComputeJobState, backoff_seconds
from .models import (
    COMPUTE_STATUS_PLACING,
    ComputeSlotRequest,
)

__all__ = [
    "FINAL_KINDS",
    "app_fields",
    "default_retryable",
    "merge_app_state",
    "prepare_rerun",
    "prepare_retry",
    "slot_request",
    "take_snapshot",
    "validate_estimates",
]

# Failure kinds that never use up an attempt or retry by themselves.
FINAL_KINDS = frozenset(
    {"cancelled", "invalid", "no-capable-host", "placement-timeout", "queue-timeout"}
)


def default_retryable(state: ComputeJobState, kind: str) -> bool:
    """jobs.md §3.6's defaults: a host restart or a signal paglets did not send is
    retried; memory and exceptions only when asked; walltime and cancel never."""
    if kind in ("host-restart", "killed", "lost"):
        return True
    if kind == "memory":
        return state.retry_on_memory_kill
    if kind == "exception":
        return state.retry_on_exception
    return False


def app_fields(state: Any) -> list[str]:
    """The application's fields: everything the host does not own."""
    return [f.name for f in fields(state) if f.name not in RUNTIME_FIELDS]


def merge_app_state(state: Any, encoded: bytes) -> None:
    """Take the application's fields from `encoded` (the job process's final state, a
    pushed checkpoint or a restart snapshot) into `state`, in place. Runtime-owned fields
    (home, owner, attempt, seniority, redirects, ...) are never overwritten."""
    if not encoded:
        return
    other = codec.decode_state(type(state), encoded)
    for name in app_fields(state):
        setattr(state, name, getattr(other, name))


def take_snapshot(state: Any) -> bytes:
    """The restart snapshot (jobs.md §3.7), taken when the job leaves NEW."""
    return codec.encode_state(state)


def prepare_retry(state: ComputeJobState, kind: str, error: str, host_id: str, now: float) -> None:
    """Reset `state` for its next attempt: attempt + 1, backoff, avoid the failed host,
    seniority kept, the snapshot (or last checkpoint) restored, back to PLACING."""
    source = state.checkpoint_state if state.resume_from_checkpoint else b""
    merge_app_state(state, source or state.restart_initial_state)
    state.attempt += 1
    state.compute_status = COMPUTE_STATUS_PLACING
    state.compute_error = error
    state.compute_failure_kind = kind
    if host_id and host_id not in state.failed_host_ids:
        state.failed_host_ids = (*state.failed_host_ids, host_id)
    state.next_attempt_at = now + backoff_seconds(
        state.attempt - 1, state.retry_backoff_seconds, state.retry_backoff_max_seconds
    )
    state.placing_since = now
    state.slot_lease_id = ""
    state.slot_request_id = new_request_id()
    state.hold_id = ""
    state.selected_host_url = state.selected_host_id = ""
    state.cpu_core_ids, state.gpu_ids = (), ()
    state.started_at = 0.0
    state.progress, state.progress_text = 0.0, ""


def prepare_rerun(state: ComputeJobState, now: float, host_id: str, host_url: str) -> None:
    """Reset `state` to run again after a graceful stop (jobs.md §3.7): like a retry from
    the last checkpoint (or the snapshot), but the attempt is not used up, no backoff, and
    the job asks this host (`host_id`) first: placement's "arrived where it was sent"
    step queues it here (with its seniority) rather than reading a gossip table that a
    host just restarted does not have yet."""
    source = state.checkpoint_state if state.resume_from_checkpoint else b""
    merge_app_state(state, source or state.restart_initial_state)
    state.compute_status = COMPUTE_STATUS_PLACING
    state.compute_failure_kind = "graceful-stop"
    state.compute_error = ""
    state.placement_note = (
        "stopped by a graceful host stop after the restart grace; runs again after the "
        f"restart (attempt {state.attempt} not used up)"
    )
    state.next_attempt_at = now
    state.placing_since = now
    state.slot_lease_id = ""
    state.slot_request_id = new_request_id()
    state.hold_id = ""
    state.selected_host_url, state.selected_host_id = host_url, host_id
    state.cpu_core_ids, state.gpu_ids = (), ()
    state.started_at = 0.0
    state.progress, state.progress_text = 0.0, ""


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex[:16]}"


def validate_estimates(state: ComputeJobState) -> str | None:
    """The default `validate_compute_estimates()`: jobs.md §3.1's rules and constraint
    syntax. An error string names the field and how to fix it; None when valid."""
    if state.cpu_cores < 1:
        return f"cpu_cores must be at least 1, got {state.cpu_cores}"
    if state.memory_bytes <= 0 and not state.allow_zero_memory_bytes:
        return (
            "memory_bytes must be > 0 (an estimate of the job's peak memory); set "
            "allow_zero_memory_bytes=True to run without one"
        )
    if state.estimated_runtime_seconds <= 0 and not state.allow_zero_runtime_seconds:
        return (
            "estimated_runtime_seconds must be > 0 (it orders the queue and backfill); set "
            "allow_zero_runtime_seconds=True to run without one"
        )
    if state.walltime_seconds < 0 or state.temp_storage_bytes < 0:
        return "walltime_seconds and temp_storage_bytes must be >= 0"
    if not -10 <= state.priority <= 10:
        return f"priority must be from -10 to 10, got {state.priority}"
    if state.requires_gpu and state.gpu_count < 1:
        return f"gpu_count must be at least 1 for a GPU job, got {state.gpu_count}"
    if state.max_attempts < 1:
        return f"max_attempts must be at least 1, got {state.max_attempts}"
    try:
        parse_constraints(state.required_host_properties)
    except ValueError as exc:
        return f"required_host_properties: {exc}"
    return None


def slot_request(
    state: ComputeJobState,
    *,
    job_id: str,
    agent_id: str,
    agent_class: str,
    hold_id: str = "",
    hold_only: bool = False,
) -> ComputeSlotRequest:
    """The job's `request_slot` (its §3.1 fields, ids, seniority and hold)."""
    return ComputeSlotRequest(
        request_id=state.slot_request_id or new_request_id(),
        job_id=job_id,
        agent_id=agent_id,
        agent_class=agent_class,
        owner=state.owner,
        group_id=str(getattr(state, "group_id", "") or ""),
        job_key=str(getattr(state, "job_key", "") or ""),
        home_host_id=state.home_host_id,
        cpu_cores=state.cpu_cores,
        memory_bytes=state.memory_bytes,
        temp_storage_bytes=state.temp_storage_bytes,
        estimated_runtime_seconds=state.estimated_runtime_seconds,
        walltime_seconds=state.walltime_seconds,
        requires_gpu=state.requires_gpu,
        gpu_memory_mb=state.gpu_memory_mb,
        gpu_count=state.gpu_count,
        required_host_tags=tuple(state.required_host_tags),
        excluded_host_tags=tuple(state.excluded_host_tags),
        preferred_host_tags=tuple(state.preferred_host_tags),
        required_host_properties=tuple(state.required_host_properties),
        excluded_host_names=tuple(state.excluded_host_names),
        excluded_host_urls=tuple(state.excluded_host_urls),
        allow_home_compute=state.allow_home_compute,
        candidate_limit=state.candidate_limit,
        priority=state.priority,
        first_submitted_at=state.first_submitted_at or time.time(),
        attempt=state.attempt,
        redirect_history=tuple(state.redirect_history),
        redirect_count=state.redirect_count,
        last_redirect_at=state.last_redirect_at,
        hold_id=hold_id,
        hold_only=hold_only,
    )
