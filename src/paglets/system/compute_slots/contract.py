"""The `compute-slots` contract (jobs.md §2.12): its operations and wire types, apart from
the service that implements them, so a client (`paglets jobs ...`) imports the contract
without the scheduler and the job runtime (targets i2)."""

from __future__ import annotations

from paglets.services.contracts import ServiceContract, ServiceOperation

from .catalog import (
    CandidateHostsReply,
    CandidateHostsRequest,
    JobLogsReply,
    JobLogsRequest,
    ListJobsReply,
    ListJobsRequest,
)
from .models import (
    CANCEL_SLOT_REQUESTS,
    CANDIDATE_HOSTS,
    COMPUTE_SLOTS,
    EXPLAIN_WAIT,
    JOB_LOGS,
    LIST_JOBS,
    RELEASE_SLOT,
    REQUEST_SLOT,
    SCHEDULER_STATUS,
    SYNC_SCHEDULER_STATUS,
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
]

COMPUTE_SLOTS_AGENT_ID = f"service.{COMPUTE_SLOTS}"

OP_CANDIDATE_HOSTS = ServiceOperation(CANDIDATE_HOSTS, CandidateHostsRequest, CandidateHostsReply)
OP_REQUEST_SLOT = ServiceOperation(REQUEST_SLOT, ComputeSlotRequest, SlotDecisionReply)
OP_RELEASE_SLOT = ServiceOperation(RELEASE_SLOT, SlotReleaseRequest, SlotReleaseReply)
OP_SCHEDULER_STATUS = ServiceOperation(
    SCHEDULER_STATUS, SchedulerStatusRequest, SchedulerStatusReply
)
OP_SYNC_SCHEDULER_STATUS = ServiceOperation(
    SYNC_SCHEDULER_STATUS, SchedulerStatusSyncRequest, SchedulerStatusSyncReply
)
OP_CANCEL_SLOT_REQUESTS = ServiceOperation(
    CANCEL_SLOT_REQUESTS, CancelSlotRequestsRequest, CancelSlotRequestsReply
)
OP_EXPLAIN_WAIT = ServiceOperation(EXPLAIN_WAIT, ExplainWaitRequest, ExplainWaitReply)
OP_LIST_JOBS = ServiceOperation(LIST_JOBS, ListJobsRequest, ListJobsReply)
OP_JOB_LOGS = ServiceOperation(JOB_LOGS, JobLogsRequest, JobLogsReply)

COMPUTE_SLOTS_CONTRACT = ServiceContract(
    COMPUTE_SLOTS,
    (
        OP_CANDIDATE_HOSTS,
        OP_REQUEST_SLOT,
        OP_RELEASE_SLOT,
        OP_SCHEDULER_STATUS,
        OP_SYNC_SCHEDULER_STATUS,
        OP_CANCEL_SLOT_REQUESTS,
        OP_EXPLAIN_WAIT,
        OP_LIST_JOBS,
        OP_JOB_LOGS,
    ),
    version="1",
)
