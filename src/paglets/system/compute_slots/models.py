"""The `compute-slots` contract's names and wire types (jobs.md §2.12), and the host inputs
the scheduler works from.

Every wire type is a frozen msgspec Struct with keyword-only fields and defaults for all
but identity, so a newer peer may add fields without breaking an older one. The names are
paglets 2.0's where it had one (`SlotDecisionReply`, `SlotReleaseRequest/Reply`,
`SchedulerStatusSyncRequest/Reply`); the operations added here (`explain_wait`,
`list_jobs`, `job_logs`) follow the spec's table. The host inputs (totals, policy, load)
are in `inputs.py`; the placement and listing types in `catalog.py`.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "CANCEL_SLOT_REQUESTS",
    "CANDIDATE_HOSTS",
    "COMPUTE_SLOTS",
    "COMPUTE_STATUS_CANCELLED",
    "COMPUTE_STATUS_COMPLETED",
    "COMPUTE_STATUS_FAILED_FINAL",
    "COMPUTE_STATUS_NEW",
    "COMPUTE_STATUS_PLACING",
    "COMPUTE_STATUS_RUNNING",
    "COMPUTE_STATUS_WAITING_FOR_SLOT",
    "COMPUTE_USAGE_PATHS_MESSAGE",
    "DECISION_REDIRECT",
    "DECISION_REJECTED",
    "DECISION_RUN_NOW",
    "DECISION_SLEEP",
    "EXPLAIN_WAIT",
    "FINISH_REASONS",
    "JOB_LOGS",
    "LEASE_GRANTED",
    "LEASE_RUNNING",
    "LIST_JOBS",
    "RELEASE_SLOT",
    "RELEASE_REASONS",
    "REQUEST_SLOT",
    "SCHEDULER_STATUS",
    "SYNC_SCHEDULER_STATUS",
    "CancelSlotRequestsReply",
    "CancelSlotRequestsRequest",
    "ComputeJobRuntimeInfo",
    "ComputeSlotRequest",
    "ExplainWaitReply",
    "ExplainWaitRequest",
    "Hold",
    "JobHistoryRow",
    "LeaseUsage",
    "QueueEntry",
    "RedirectHop",
    "SchedulerHostStatus",
    "SchedulerStatusReply",
    "SchedulerStatusRequest",
    "SchedulerStatusSyncReply",
    "SchedulerStatusSyncRequest",
    "SlotDecisionReply",
    "SlotLease",
    "SlotReleaseReply",
    "SlotReleaseRequest",
    "UsageSample",
    "WaitExplanation",
    "WaitReason",
    "to_wire",
]

# -- the contract and its operations ---------------------------------------------------

COMPUTE_SLOTS = "compute-slots"
CANDIDATE_HOSTS = "candidate_hosts"
REQUEST_SLOT = "request_slot"
RELEASE_SLOT = "release_slot"
SCHEDULER_STATUS = "scheduler_status"
SYNC_SCHEDULER_STATUS = "sync_scheduler_status"
CANCEL_SLOT_REQUESTS = "cancel_slot_requests"
EXPLAIN_WAIT = "explain_wait"
LIST_JOBS = "list_jobs"
JOB_LOGS = "job_logs"
COMPUTE_USAGE_PATHS_MESSAGE = "compute_usage_paths"

COMPUTE_STATUS_NEW = "NEW"
COMPUTE_STATUS_PLACING = "PLACING"
COMPUTE_STATUS_WAITING_FOR_SLOT = "WAITING_FOR_SLOT"
COMPUTE_STATUS_RUNNING = "RUNNING"
COMPUTE_STATUS_COMPLETED = "COMPLETED"
COMPUTE_STATUS_FAILED_FINAL = "FAILED_FINAL"
COMPUTE_STATUS_CANCELLED = "CANCELLED"

DECISION_RUN_NOW = "run_now"
DECISION_SLEEP = "sleep"
DECISION_REDIRECT = "redirect"
DECISION_REJECTED = "rejected"

LEASE_GRANTED = "GRANTED"  # grant delivered; the process must start within the start deadline
LEASE_RUNNING = "RUNNING"

# What a process exit may report (§2.3) ...
RELEASE_REASONS = frozenset(
    {"released", "failed", "killed", "walltime", "memory", "cancelled", "activation-failed"}
)
# ... and every way a job's stay here can end (§2.10's finish reasons).
FINISH_REASONS = RELEASE_REASONS | {
    "expired",
    "not-started",
    "host-restart",
    "vanished",
    "graceful-stop",  # stopped by a graceful host stop after --restart-grace (§3.7)
}

_WIRE = {"kw_only": True, "frozen": True}


# -- requests and decisions -------------------------------------------------------------


class RedirectHop(msgspec.Struct, frozen=True):
    """One host a job was redirected away from, and when."""

    host_id: str
    host_url: str = ""
    at: float = 0.0


class ComputeSlotRequest(msgspec.Struct, **_WIRE):
    """A job's request for a slot: its resources and placement fields (jobs.md §3.1), its
    ids, its seniority (kept across redirects and retries) and the hold it converts."""

    request_id: str
    job_id: str
    agent_id: str
    agent_class: str = ""
    owner: str = "user@home"
    group_id: str = ""
    job_key: str = ""
    home_host_id: str = ""
    # resources
    cpu_cores: int = 1
    memory_bytes: int = 0
    temp_storage_bytes: int = 0
    estimated_runtime_seconds: float = 0.0
    walltime_seconds: float = 0.0
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
    # seniority
    first_submitted_at: float = 0.0
    attempt: int = 1
    redirect_history: tuple[RedirectHop, ...] = ()
    redirect_count: int = 0
    last_redirect_at: float = 0.0
    # holds
    hold_id: str = ""
    hold_only: bool = False

    @property
    def gpus_needed(self) -> int:
        return self.gpu_count if self.requires_gpu else 0


class WaitReason(msgspec.Struct, frozen=True):
    """Why a request waits (jobs.md §2.11): a stable `code`, a sentence with numbers, and
    the numbers themselves (`until` is a wall-clock time)."""

    code: str
    message: str
    need: float | None = None
    have: float | None = None
    until: float | None = None


class SlotLease(msgspec.Struct, **_WIRE):
    """Resources granted to one job on this host, from grant to process exit."""

    lease_id: str
    request_id: str
    job_id: str
    agent_id: str
    host_id: str = ""
    status: str = LEASE_GRANTED
    cpu_cores: int = 1
    cpu_core_ids: tuple[int, ...] = ()
    gpu_ids: tuple[str, ...] = ()  # UUIDs, for CUDA_VISIBLE_DEVICES
    gpu_indices: tuple[int, ...] = ()
    memory_bytes: int = 0
    temp_storage_bytes: int = 0
    walltime_seconds: float = 0.0  # effective: the job's, else the host default; 0 = none
    estimated_runtime_seconds: float = 0.0
    cpu_affinity_supported: bool = True
    queued_at: float = 0.0
    granted_at: float = 0.0
    expires_at: float = 0.0
    started_at: float = 0.0
    pid: int = 0
    pid_started_at: float = 0.0  # the process's create time: a recycled pid is not ours
    hold_id: str = ""
    stop_reason: str = ""  # set when the host asked the process to stop, and why
    stop_requested_at: float = 0.0


class Hold(msgspec.Struct, **_WIRE):
    """Resources kept for a job that is about to arrive (a redirect or a placement)."""

    hold_id: str
    request: ComputeSlotRequest
    cpu_core_ids: tuple[int, ...] = ()
    gpu_ids: tuple[str, ...] = ()
    gpu_indices: tuple[int, ...] = ()
    created_at: float = 0.0
    expires_at: float = 0.0


class SlotDecisionReply(msgspec.Struct, **_WIRE):
    """The answer to `request_slot` (the spec's `ComputeSlotReply`)."""

    decision: str
    request_id: str
    lease: SlotLease | None = None
    hold_id: str = ""
    redirect_host_url: str = ""
    redirect_host_id: str = ""
    queue_position: int = 0
    expected_start_at: float | None = None
    reasons: tuple[WaitReason, ...] = ()
    message: str = ""


class JobHistoryRow(msgspec.Struct, **_WIRE):
    """One finished stay of a job on this host (`job_history`, jobs.md §2.10). The server
    and the CLI share this class."""

    job_id: str
    request_id: str
    agent_id: str
    lease_id: str = ""
    agent_class: str = ""
    group_id: str = ""
    job_key: str = ""
    owner: str = ""
    host_id: str = ""
    host_name: str = ""
    attempt: int = 1
    first_submitted_at: float = 0.0
    queued_at: float = 0.0
    granted_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    wait_seconds: float = 0.0
    run_seconds: float = 0.0
    finish_reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    error: str = ""
    cpu_cores: int = 0
    memory_bytes: int = 0
    temp_storage_bytes: int = 0
    gpu_count: int = 0
    walltime_seconds: float = 0.0
    cpu_core_ids: tuple[int, ...] = ()
    gpu_ids: tuple[str, ...] = ()
    cpu_seconds: float = 0.0
    cpu_percent_mean: float = 0.0
    cpu_percent_max: float = 0.0
    efficiency: float = 0.0  # cpu_seconds / (cores x run seconds)
    max_rss_bytes: int = 0
    max_work_bytes: int = 0
    io_read_bytes: int = 0
    io_write_bytes: int = 0


class SlotReleaseRequest(msgspec.Struct, **_WIRE):
    """Close a lease (process exit) or drop a hold (the spec's `ReleaseSlotRequest`)."""

    lease_id: str = ""
    hold_id: str = ""
    agent_id: str = ""
    reason: str = "released"
    exit_code: int | None = None
    error: str = ""


class SlotReleaseReply(msgspec.Struct, **_WIRE):
    released: bool
    history_row: JobHistoryRow | None = None


# -- usage -------------------------------------------------------------------------------


class UsageSample(msgspec.Struct, **_WIRE):
    """One reading of a job's process tree. `cpu_percent` is None on the first reading
    (a rate needs two); it exceeds 100 for a job using several cores."""

    at: float
    cpu_seconds: float = 0.0
    cpu_percent: float | None = None
    rss_bytes: int = 0
    process_count: int = 0
    io_read_bytes: int = 0
    io_write_bytes: int = 0
    work_bytes: int | None = None


class LeaseUsage(msgspec.Struct, kw_only=True):
    """A lease's running usage figures (mutable: updated in place every sample)."""

    sampled_at: float = 0.0
    samples: int = 0
    cpu_seconds: float = 0.0
    cpu_percent: float = 0.0
    cpu_percent_sum: float = 0.0
    cpu_percent_n: int = 0
    cpu_percent_max: float = 0.0
    rss_bytes: int = 0
    max_rss_bytes: int = 0
    work_bytes: int = 0
    max_work_bytes: int = 0
    io_read_bytes: int = 0
    io_write_bytes: int = 0


# -- status, queue, why ------------------------------------------------------------------


class QueueEntry(msgspec.Struct, **_WIRE):
    """A queued request as `jobs queue` shows it."""

    request_id: str
    job_id: str
    agent_id: str
    position: int
    agent_class: str = ""
    group_id: str = ""
    job_key: str = ""
    owner: str = ""
    priority: int = 0
    effective_priority: int = 0
    cpu_cores: int = 1
    memory_bytes: int = 0
    temp_storage_bytes: int = 0
    gpu_count: int = 0
    first_submitted_at: float = 0.0
    queued_at: float = 0.0
    waited_seconds: float = 0.0
    expected_start_at: float | None = None
    first_reason: str = ""


class WaitExplanation(msgspec.Struct, **_WIRE):
    """`why` for one job: where it stands and every reason it has not started."""

    request_id: str
    job_id: str
    agent_id: str
    state: str  # "queued" | "starting" | "running" | "unknown"
    position: int = 0
    effective_priority: int = 0
    waited_seconds: float = 0.0
    expected_start_at: float | None = None
    reasons: tuple[WaitReason, ...] = ()
    computed_at: float = 0.0


class ExplainWaitRequest(msgspec.Struct, **_WIRE):
    request_ids: tuple[str, ...] = ()
    agent_ids: tuple[str, ...] = ()
    job_ids: tuple[str, ...] = ()
    group_ids: tuple[str, ...] = ()


class ExplainWaitReply(msgspec.Struct, **_WIRE):
    host_name: str
    items: tuple[WaitExplanation, ...] = ()


class ComputeJobRuntimeInfo(msgspec.Struct, **_WIRE):
    """A running job as `jobs top` shows it."""

    job_id: str
    agent_id: str
    request_id: str
    lease_id: str
    status: str = LEASE_GRANTED
    agent_class: str = ""
    group_id: str = ""
    job_key: str = ""
    owner: str = ""
    pid: int = 0
    cpu_cores: int = 1
    cpu_core_ids: tuple[int, ...] = ()
    gpu_ids: tuple[str, ...] = ()
    cpu_percent: float = 0.0
    efficiency: float = 0.0
    rss_bytes: int = 0
    max_rss_bytes: int = 0
    work_bytes: int = 0
    granted_at: float = 0.0
    started_at: float = 0.0
    runtime_seconds: float = 0.0
    walltime_left_seconds: float | None = None


class SchedulerHostStatus(msgspec.Struct, **_WIRE):
    """This host's scheduler figures; the load part of its gossiped summary is drawn from
    them (jobs.md §1.1)."""

    host_id: str
    host_name: str = ""
    host_url: str = ""
    generated_at: float = 0.0
    accepting: bool = True
    cpu_affinity_supported: bool = True
    job_cpu_cores: int = 0
    free_cpu_cores: int = 0
    leased_cpu_cores: int = 0
    held_cpu_cores: int = 0
    external_busy_cores: float = 0.0
    memory_total_bytes: int = 0
    free_memory_bytes: int = 0
    temp_total_bytes: int = 0
    free_temp_bytes: int = 0
    gpus_total: int = 0
    free_gpus: int = 0
    running_jobs: int = 0
    starting_jobs: int = 0
    holds: int = 0
    queue_length: int = 0
    queued_core_seconds: float = 0.0
    next_release_seconds: float = 0.0
    start_tokens: float = 0.0
    next_token_at: float | None = None
    reserved_request_id: str = ""
    backfill_enabled: bool = True
    errors: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


class SchedulerStatusRequest(msgspec.Struct, **_WIRE):
    include_queue: bool = True
    include_leases: bool = True
    include_jobs: bool = False
    include_usage: bool = False
    include_history: bool = False
    history_limit: int = 50
    include_why: bool = False


class SchedulerStatusReply(msgspec.Struct, **_WIRE):
    status: SchedulerHostStatus
    queue: tuple[QueueEntry, ...] = ()
    leases: tuple[SlotLease, ...] = ()
    jobs: tuple[ComputeJobRuntimeInfo, ...] = ()
    history: tuple[JobHistoryRow, ...] = ()
    why: tuple[WaitExplanation, ...] = ()


class SchedulerStatusSyncRequest(msgspec.Struct, **_WIRE):
    statuses: tuple[SchedulerHostStatus, ...] = ()


class SchedulerStatusSyncReply(msgspec.Struct, **_WIRE):
    statuses: tuple[SchedulerHostStatus, ...] = ()


class CancelSlotRequestsRequest(msgspec.Struct, **_WIRE):
    """Which requests to cancel. Empty filters without `all` match nothing;
    `include_leases` is a synonym of `include_running` (both stop running jobs)."""

    request_ids: tuple[str, ...] = ()
    agent_ids: tuple[str, ...] = ()
    job_ids: tuple[str, ...] = ()
    group_ids: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    all: bool = False
    include_running: bool = False
    include_leases: bool = False
    kill_grace_seconds: float = 10.0
    dry_run: bool = False


class CancelSlotRequestsReply(msgspec.Struct, **_WIRE):
    matched: tuple[str, ...] = ()  # request ids
    cancelled_requests: tuple[str, ...] = ()  # request ids dequeued
    stopped_jobs: tuple[str, ...] = ()  # job ids asked to stop
    errors: tuple[str, ...] = ()


def to_wire(value: msgspec.Struct) -> dict[str, Any]:
    """A struct as plain builtins (for message payloads and JSON)."""
    return msgspec.to_builtins(value)
