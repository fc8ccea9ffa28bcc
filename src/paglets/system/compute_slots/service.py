"""The `compute-slots` contract (version 1) and its provider, `ComputeSlotsAgent`
(`service.compute-slots`), an eager resident service on every host (jobs.md §2.1, §6).

The agent is a thin door to the host's `SlotsRuntime` (`host_slots.py`): every operation
runs as one turn of the scheduler under the runtime's lock, so the service's mailbox, the
tick and the job supervisor share one writer. It runs in the host process (it reaches the
store, the resource monitor and the membership table), starts at host start and after
every restart (when the runtime recovers leases: `host-restart`, grants re-delivered),
and its `run()` only keeps the runtime alive while the service is.

The nine operations keep paglets 2.0's names and order, then the three new ones
(`explain_wait`, `list_jobs`, `job_logs`). `candidate_hosts` reads the local gossip table
(no fan-out); `list_jobs` reads `job_index`; `job_logs` the attempt's log files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from paglets.core.agent import PagletState
from paglets.core.runtime_values import ResidentLifecycle, ServiceScope
from paglets.patterns.operations import OperationPaglet
from paglets.services.resident import ResidentServiceSpec
from paglets.system.host_access import host_of

from .catalog import (
    CandidateHostsReply,
    CandidateHostsRequest,
    JobLogsReply,
    JobLogsRequest,
    ListJobsReply,
    ListJobsRequest,
)
from .contract import (
    COMPUTE_SLOTS_AGENT_ID,
    COMPUTE_SLOTS_CONTRACT,
    OP_CANCEL_SLOT_REQUESTS,
    OP_CANDIDATE_HOSTS,
    OP_EXPLAIN_WAIT,
    OP_JOB_LOGS,
    OP_LIST_JOBS,
    OP_RELEASE_SLOT,
    OP_REQUEST_SLOT,
    OP_SCHEDULER_STATUS,
    OP_SYNC_SCHEDULER_STATUS,
)
from .host_slots import SlotsRuntime, slots_runtime
from .job_index import list_rows
from .job_placement import candidate_hosts, local_summaries
from .models import (
    CancelSlotRequestsReply,
    CancelSlotRequestsRequest,
    ComputeSlotRequest,
    ExplainWaitReply,
    ExplainWaitRequest,
    SchedulerStatusReply,
    SchedulerStatusRequest,
    SchedulerStatusSyncReply,
    SchedulerStatusSyncRequest,
    SlotDecisionReply,
    SlotReleaseReply,
    SlotReleaseRequest,
)

__all__ = [
    "COMPUTE_SLOTS_AGENT_ID",
    "COMPUTE_SLOTS_CONTRACT",
    "OP_CANCEL_SLOT_REQUESTS",
    "OP_CANDIDATE_HOSTS",
    "OP_EXPLAIN_WAIT",
    "OP_JOB_LOGS",
    "OP_LIST_JOBS",
    "OP_RELEASE_SLOT",
    "OP_REQUEST_SLOT",
    "OP_SCHEDULER_STATUS",
    "OP_SYNC_SCHEDULER_STATUS",
    "ComputeSlotsAgent",
    "ComputeSlotsState",
    "job_logs",
]

MAX_LOG_CHUNK = 1 << 20


@dataclass
class ComputeSlotsState(PagletState):
    """Nothing to keep here: the scheduler's tables are the durable state."""

    started_at: float = 0.0


def job_logs(host: Any, request: JobLogsRequest) -> JobLogsReply:
    """A chunk of an attempt's captured output (`stdout`/`stderr`), from `offset`: from the
    kept logs of ended attempts, else from the running attempt's work dir."""
    from .job_process import job_logs_dir

    agent_id = request.job_id.removeprefix("compute-job-")
    job_id = f"compute-job-{agent_id}"
    places = [job_logs_dir(host, job_id)]
    try:
        places.append(Path(host.work_dir_for(agent_id, create=False)) / "logs")
    except Exception:
        pass
    attempt = request.attempt
    if attempt <= 0:
        found = [
            int(p.name.removeprefix("attempt-"))
            for place in places
            for p in place.glob("attempt-*")
            if p.name.removeprefix("attempt-").isdigit()
        ]
        attempt = max(found, default=1)
    stream = "stderr" if request.stream == "stderr" else "stdout"
    for place in places:
        path = place / f"attempt-{attempt}" / f"{stream}.log"
        if not path.exists():
            continue
        try:
            with path.open("rb") as f:
                f.seek(max(0, request.offset))
                data = f.read(max(0, min(request.max_bytes, MAX_LOG_CHUNK)))
                end = f.tell()
                size = path.stat().st_size
        except OSError:
            continue
        return JobLogsReply(data=data, next_offset=end, eof=end >= size)
    return JobLogsReply(next_offset=request.offset, eof=True)


class ComputeSlotsAgent(OperationPaglet[ComputeSlotsState]):
    """The `compute-slots` operations (module docstring)."""

    State = ComputeSlotsState
    Operations = COMPUTE_SLOTS_CONTRACT.operations
    SUBSCRIBED_MESSAGES: ClassVar[tuple[str, ...] | None] = ()
    RESIDENT_SERVICES: ClassVar[tuple[Any, ...]] = (
        ResidentServiceSpec(
            COMPUTE_SLOTS_CONTRACT,
            scope=ServiceScope.LOCAL,
            lifecycle=ResidentLifecycle.EAGER,
        ),
    )

    @property
    def runtime(self) -> SlotsRuntime:
        return slots_runtime(host_of(self))

    def on_creation(self, event: Any) -> None:
        self.state.started_at = time.time()
        self.runtime  # noqa: B018 - recover the scheduler at once, not at the first call

    def on_activation(self, event: Any) -> None:
        self.runtime  # noqa: B018

    def operation_handlers(self) -> Mapping[Any, Callable[[Any], Any]]:
        return {
            OP_CANDIDATE_HOSTS: self.candidate_hosts,
            OP_REQUEST_SLOT: self.request_slot,
            OP_RELEASE_SLOT: self.release_slot,
            OP_SCHEDULER_STATUS: self.scheduler_status,
            OP_SYNC_SCHEDULER_STATUS: self.sync_scheduler_status,
            OP_CANCEL_SLOT_REQUESTS: self.cancel_slot_requests,
            OP_EXPLAIN_WAIT: self.explain_wait,
            OP_LIST_JOBS: self.list_jobs,
            OP_JOB_LOGS: self.job_logs,
        }

    # -- operations ------------------------------------------------------------------------

    def candidate_hosts(self, request: CandidateHostsRequest) -> CandidateHostsReply:
        host = host_of(self)
        return candidate_hosts(local_summaries(host), request, now=time.time())

    def request_slot(self, request: ComputeSlotRequest) -> SlotDecisionReply:
        rt = self.runtime
        return rt.call(rt.scheduler.request_slot, request)

    def release_slot(self, request: SlotReleaseRequest) -> SlotReleaseReply:
        rt = self.runtime
        return rt.call(rt.scheduler.release_slot, request)

    def scheduler_status(self, request: SchedulerStatusRequest) -> SchedulerStatusReply:
        rt = self.runtime
        return rt.call(rt.scheduler.status, request)

    def sync_scheduler_status(
        self, request: SchedulerStatusSyncRequest
    ) -> SchedulerStatusSyncReply:
        rt = self.runtime
        return SchedulerStatusSyncReply(statuses=(rt.call(rt.scheduler.host_status),))

    def cancel_slot_requests(self, request: CancelSlotRequestsRequest) -> CancelSlotRequestsReply:
        rt = self.runtime
        return rt.call(rt.scheduler.cancel, request)

    def explain_wait(self, request: ExplainWaitRequest) -> ExplainWaitReply:
        rt = self.runtime
        return rt.call(rt.scheduler.explain_wait, request)

    def list_jobs(self, request: ListJobsRequest) -> ListJobsReply:
        return list_rows(host_of(self), request)

    def job_logs(self, request: JobLogsRequest) -> JobLogsReply:
        return job_logs(host_of(self), request)
