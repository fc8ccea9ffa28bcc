"""Wire types of the operations answered from catalogs rather than the queue:
`candidate_hosts` (the gossip table), `list_jobs` (`job_index`) and `job_logs` (the log
files) (jobs.md §2.12, §8)."""

from __future__ import annotations

import msgspec

from .models import ComputeSlotRequest, WaitReason

__all__ = [
    "CandidateHost",
    "CandidateHostsReply",
    "CandidateHostsRequest",
    "JobIndexRow",
    "JobLogsReply",
    "JobLogsRequest",
    "ListJobsReply",
    "ListJobsRequest",
    "RejectedHost",
]

_WIRE = {"kw_only": True, "frozen": True}


class CandidateHost(msgspec.Struct, **_WIRE):
    host_id: str
    host_name: str = ""
    host_url: str = ""
    fits_now: bool = False
    expected_start_seconds: float = 0.0
    score: float = 0.0
    free_cpu_cores: int = 0
    job_cpu_cores: int = 0
    free_memory_bytes: int = 0
    memory_total_bytes: int = 0
    free_temp_bytes: int = 0
    temp_total_bytes: int = 0
    free_gpus: int = 0
    gpus_total: int = 0
    queue_length: int = 0
    tags: tuple[str, ...] = ()
    age_seconds: float = 0.0


class RejectedHost(msgspec.Struct, **_WIRE):
    host: str
    reasons: tuple[WaitReason, ...] = ()
    host_id: str = ""


class CandidateHostsRequest(msgspec.Struct, **_WIRE):
    request: ComputeSlotRequest
    limit: int = 8
    include_self: bool = False
    max_status_age: float = 30.0


class CandidateHostsReply(msgspec.Struct, **_WIRE):
    candidates: tuple[CandidateHost, ...] = ()
    rejected: tuple[RejectedHost, ...] = ()
    selected: CandidateHost | None = None
    generated_at: float = 0.0


# -- jobs listing and logs (served from `job_index` and the log files) -----------------


class ListJobsRequest(msgspec.Struct, **_WIRE):
    states: tuple[str, ...] = ()
    group_ids: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()  # "job" | "collector"
    offset: int = 0
    limit: int = 100


class JobIndexRow(msgspec.Struct, **_WIRE):
    """A compute job or collector as `jobs ps` shows it (one `job_index` row)."""

    job_id: str
    agent_id: str
    kind: str = "job"
    agent_class: str = ""
    host_id: str = ""
    host_name: str = ""
    compute_status: str = ""
    status: str = ""
    group_id: str = ""
    job_key: str = ""
    owner: str = ""
    attempt: int = 1
    active: bool = False
    since: float = 0.0


class ListJobsReply(msgspec.Struct, **_WIRE):
    rows: tuple[JobIndexRow, ...] = ()
    total: int = 0


class JobLogsRequest(msgspec.Struct, **_WIRE):
    job_id: str
    attempt: int = 0  # 0 = the latest
    stream: str = "stdout"
    offset: int = 0
    max_bytes: int = 65536
    wait_seconds: float = 0.0


class JobLogsReply(msgspec.Struct, **_WIRE):
    data: bytes = b""
    next_offset: int = 0
    eof: bool = False
