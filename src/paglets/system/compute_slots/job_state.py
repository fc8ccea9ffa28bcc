"""`ComputeJobState`: a compute job's fields (jobs.md §3.1).

Applications subclass it with `@dataclass` and add their own fields; every field here has
a default. The groups: resources, GPU, placement, timeouts, retries, restart, and the
runtime-owned fields the job keeps for itself. `RUNTIME_FIELDS` are never taken from the
job process's final state or a restart snapshot: the host owns them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

from paglets.core.agent import PagletState

from .models import COMPUTE_STATUS_NEW, RedirectHop

__all__ = ["RUNTIME_FIELDS", "ComputeJobState", "backoff_seconds"]


@dataclass
class ComputeJobState(PagletState):
    """jobs.md §3.1; subclass with `@dataclass` to add the job's own fields."""

    # resources
    cpu_cores: int = 1
    memory_bytes: int = 0
    allow_zero_memory_bytes: bool = False
    temp_storage_bytes: int = 0
    estimated_runtime_seconds: float = 0.0
    allow_zero_runtime_seconds: bool = False
    walltime_seconds: float = 0.0
    # GPU
    requires_gpu: bool = False
    gpu_memory_mb: int = 0
    gpu_count: int = 1
    # placement
    required_host_tags: tuple[str, ...] = ()
    excluded_host_tags: tuple[str, ...] = ()
    preferred_host_tags: tuple[str, ...] = ()
    required_host_properties: tuple[str, ...] = ()
    excluded_host_names: tuple[str, ...] = ()
    excluded_host_urls: tuple[str, ...] = ()
    allow_home_compute: bool = False
    candidate_limit: int = 8
    priority: int = 0
    owner: str = "user@home"
    # timeouts
    scheduler_timeout_seconds: float = 5.0
    release_timeout_seconds: float = 2.0
    placement_timeout_seconds: float = 86400.0
    queue_timeout_seconds: float = 0.0
    wait_for_capable_host: bool = False
    # retries
    max_attempts: int = 3
    retry_backoff_seconds: float = 10.0
    retry_backoff_max_seconds: float = 600.0
    retry_on_exception: bool = False
    retry_on_memory_kill: bool = False
    # restart
    restart_running_on_host_startup: bool = True
    restart_initial_state: bytes = b""  # the snapshot taken when the job leaves NEW
    resume_from_checkpoint: bool = False
    # the application's own status (separate from compute_status)
    status: str = ""
    # runtime-owned
    compute_status: str = COMPUTE_STATUS_NEW
    compute_error: str = ""
    compute_failure_kind: str = ""
    home_host_id: str = ""
    home_host_name: str = ""
    home_host_url: str = ""
    selected_host_url: str = ""
    selected_host_id: str = ""
    slot_request_id: str = ""
    slot_lease_id: str = ""
    hold_id: str = ""
    redirect_count: int = 0
    last_redirect_at: float = 0.0
    last_redirect_from_host_url: str = ""
    redirect_history: tuple[RedirectHop, ...] = ()
    cpu_core_ids: tuple[int, ...] = ()
    gpu_ids: tuple[str, ...] = ()
    cpu_affinity_supported: bool = False
    cpu_affinity_enforced: bool = False
    cpu_affinity_error: str = ""
    attempt: int = 1
    first_submitted_at: float = 0.0
    placing_since: float = 0.0
    queued_since: float = 0.0
    next_attempt_at: float = 0.0
    placement_attempts: int = 0
    placement_note: str = ""
    failed_host_ids: tuple[str, ...] = ()
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int | None = None
    log_hosts: tuple[str, ...] = ()
    progress: float = 0.0
    progress_text: str = ""
    checkpoint_state: bytes = b""
    success_handled: bool = False
    stderr_tail: str = ""


# Fields the host owns: never copied from the job process's final state, a pushed
# checkpoint or a restart snapshot. Everything else (a subclass's fields and `status`)
# belongs to the application.
RUNTIME_FIELDS = frozenset(f.name for f in fields(ComputeJobState)) - {"status"}


def backoff_seconds(attempt: int, base: float, cap: float, *, jitter: float = 0.2) -> float:
    """`min(cap, base x 2^(attempt-1))` +- 20 % (jobs.md §3.6)."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return max(0.0, delay * (1.0 + random.uniform(-jitter, jitter)))
