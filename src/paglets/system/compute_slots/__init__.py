"""`paglets.system.compute_slots`: the per-host `compute-slots` scheduler (jobs.md §2).

This package holds the scheduler core: the contract's names and wire types, admission,
leases, holds, the grant pass with reservations and backfill, the start throttle,
redirects, `why`, usage sampling and CPU affinity. The service agent
(`ComputeSlotsAgent`) and the job classes build on it.

The names load on first use (PEP 562), so a command that needs only the wire types
(`paglets jobs hosts`) does not import the scheduler, the job runtime and their
dependencies (targets i2).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "CpuAffinityResult": ".affinity",
    "apply_current_process_cpu_affinity": ".affinity",
    "apply_process_cpu_affinity": ".affinity",
    "cpu_affinity_supported": ".affinity",
    "current_cpu_ids": ".affinity",
    "CandidateHost": ".catalog",
    "CandidateHostsReply": ".catalog",
    "CandidateHostsRequest": ".catalog",
    "JobIndexRow": ".catalog",
    "JobLogsReply": ".catalog",
    "JobLogsRequest": ".catalog",
    "ListJobsReply": ".catalog",
    "ListJobsRequest": ".catalog",
    "RejectedHost": ".catalog",
    "CollectingComputeJobPaglet": ".collecting",
    "CollectingComputeJobState": ".collecting",
    "ResultCollectorPaglet": ".collector",
    "ResultCollectorState": ".collector",
    "SchedulerConfig": ".config",
    "ComputeJobGroupSubmission": ".group_models",
    "GroupMember": ".group_models",
    "HostAtUrl": ".groups",
    "submit_compute_job_group": ".groups",
    "SchedulerHooks": ".hooks",
    "TickReport": ".hooks",
    "GpuSpec": ".inputs",
    "HostCapacity": ".inputs",
    "HostPolicy": ".inputs",
    "MeasuredLoad": ".inputs",
    "capacity_from_spec": ".inputs",
    "load_from_sample": ".inputs",
    "ComputeJobPaglet": ".job",
    "ComputeJobCancelled": ".job_process",
    "ComputeJobState": ".job_state",
    "CANCEL_SLOT_REQUESTS": ".models",
    "CANDIDATE_HOSTS": ".models",
    "COMPUTE_SLOTS": ".models",
    "COMPUTE_STATUS_CANCELLED": ".models",
    "COMPUTE_STATUS_COMPLETED": ".models",
    "COMPUTE_STATUS_FAILED_FINAL": ".models",
    "COMPUTE_STATUS_NEW": ".models",
    "COMPUTE_STATUS_PLACING": ".models",
    "COMPUTE_STATUS_RUNNING": ".models",
    "COMPUTE_STATUS_WAITING_FOR_SLOT": ".models",
    "COMPUTE_USAGE_PATHS_MESSAGE": ".models",
    "CancelSlotRequestsReply": ".models",
    "CancelSlotRequestsRequest": ".models",
    "ComputeJobRuntimeInfo": ".models",
    "ComputeSlotRequest": ".models",
    "DECISION_REDIRECT": ".models",
    "DECISION_REJECTED": ".models",
    "DECISION_RUN_NOW": ".models",
    "DECISION_SLEEP": ".models",
    "EXPLAIN_WAIT": ".models",
    "ExplainWaitReply": ".models",
    "ExplainWaitRequest": ".models",
    "Hold": ".models",
    "JOB_LOGS": ".models",
    "JobHistoryRow": ".models",
    "LIST_JOBS": ".models",
    "QueueEntry": ".models",
    "RELEASE_SLOT": ".models",
    "REQUEST_SLOT": ".models",
    "RedirectHop": ".models",
    "SCHEDULER_STATUS": ".models",
    "SYNC_SCHEDULER_STATUS": ".models",
    "SchedulerHostStatus": ".models",
    "SchedulerStatusReply": ".models",
    "SchedulerStatusRequest": ".models",
    "SchedulerStatusSyncReply": ".models",
    "SchedulerStatusSyncRequest": ".models",
    "SlotDecisionReply": ".models",
    "SlotLease": ".models",
    "SlotReleaseReply": ".models",
    "SlotReleaseRequest": ".models",
    "UsageSample": ".models",
    "WaitExplanation": ".models",
    "WaitReason": ".models",
    "PeerView": ".redirects",
    "RedirectOrder": ".redirects",
    "RedirectPlan": ".redirects",
    "ComputeSlotsScheduler": ".scheduler",
    "COMPUTE_SLOTS_AGENT_ID": ".contract",
    "COMPUTE_SLOTS_CONTRACT": ".contract",
    "ComputeSlotsAgent": ".service",
    "ComputeSlotsState": ".service",
    "ProcessTreeSampler": ".usage",
    "UsageMonitor": ".usage",
    "Constraint": "paglets.system.host_properties",
    "check_constraints": "paglets.system.host_properties",
    "parse_constraint": "paglets.system.host_properties",
}

__all__ = [
    "CANCEL_SLOT_REQUESTS",
    "CANDIDATE_HOSTS",
    "COMPUTE_SLOTS",
    "COMPUTE_SLOTS_AGENT_ID",
    "COMPUTE_SLOTS_CONTRACT",
    "COMPUTE_STATUS_CANCELLED",
    "COMPUTE_STATUS_COMPLETED",
    "COMPUTE_STATUS_FAILED_FINAL",
    "COMPUTE_STATUS_NEW",
    "COMPUTE_STATUS_PLACING",
    "COMPUTE_STATUS_RUNNING",
    "COMPUTE_STATUS_WAITING_FOR_SLOT",
    "COMPUTE_USAGE_PATHS_MESSAGE",
    "CancelSlotRequestsReply",
    "CancelSlotRequestsRequest",
    "CandidateHost",
    "CandidateHostsReply",
    "CandidateHostsRequest",
    "CollectingComputeJobPaglet",
    "CollectingComputeJobState",
    "ComputeJobCancelled",
    "ComputeJobGroupSubmission",
    "ComputeJobPaglet",
    "ComputeJobRuntimeInfo",
    "ComputeJobState",
    "ComputeSlotRequest",
    "ComputeSlotsAgent",
    "ComputeSlotsScheduler",
    "ComputeSlotsState",
    "Constraint",
    "CpuAffinityResult",
    "DECISION_REDIRECT",
    "DECISION_REJECTED",
    "DECISION_RUN_NOW",
    "DECISION_SLEEP",
    "EXPLAIN_WAIT",
    "ExplainWaitReply",
    "ExplainWaitRequest",
    "GpuSpec",
    "GroupMember",
    "Hold",
    "HostAtUrl",
    "HostCapacity",
    "HostPolicy",
    "JOB_LOGS",
    "JobHistoryRow",
    "JobIndexRow",
    "JobLogsReply",
    "JobLogsRequest",
    "LIST_JOBS",
    "ListJobsReply",
    "ListJobsRequest",
    "MeasuredLoad",
    "PeerView",
    "ProcessTreeSampler",
    "QueueEntry",
    "RELEASE_SLOT",
    "REQUEST_SLOT",
    "RedirectHop",
    "RedirectOrder",
    "RedirectPlan",
    "RejectedHost",
    "ResultCollectorPaglet",
    "ResultCollectorState",
    "SCHEDULER_STATUS",
    "SYNC_SCHEDULER_STATUS",
    "SchedulerConfig",
    "SchedulerHooks",
    "SchedulerHostStatus",
    "SchedulerStatusReply",
    "SchedulerStatusRequest",
    "SchedulerStatusSyncReply",
    "SchedulerStatusSyncRequest",
    "SlotDecisionReply",
    "SlotLease",
    "SlotReleaseReply",
    "SlotReleaseRequest",
    "TickReport",
    "UsageMonitor",
    "UsageSample",
    "WaitExplanation",
    "WaitReason",
    "apply_current_process_cpu_affinity",
    "apply_process_cpu_affinity",
    "capacity_from_spec",
    "check_constraints",
    "cpu_affinity_supported",
    "current_cpu_ids",
    "load_from_sample",
    "parse_constraint",
    "submit_compute_job_group",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from paglets.system.host_properties import Constraint, check_constraints, parse_constraint

    from .affinity import (
        CpuAffinityResult,
        apply_current_process_cpu_affinity,
        apply_process_cpu_affinity,
        cpu_affinity_supported,
        current_cpu_ids,
    )
    from .catalog import (
        CandidateHost,
        CandidateHostsReply,
        CandidateHostsRequest,
        JobIndexRow,
        JobLogsReply,
        JobLogsRequest,
        ListJobsReply,
        ListJobsRequest,
        RejectedHost,
    )
    from .collecting import CollectingComputeJobPaglet, CollectingComputeJobState
    from .collector import ResultCollectorPaglet, ResultCollectorState
    from .config import SchedulerConfig
    from .contract import COMPUTE_SLOTS_AGENT_ID, COMPUTE_SLOTS_CONTRACT
    from .group_models import ComputeJobGroupSubmission, GroupMember
    from .groups import HostAtUrl, submit_compute_job_group
    from .hooks import SchedulerHooks, TickReport
    from .inputs import (
        GpuSpec,
        HostCapacity,
        HostPolicy,
        MeasuredLoad,
        capacity_from_spec,
        load_from_sample,
    )
    from .job import ComputeJobPaglet
    from .job_process import ComputeJobCancelled
    from .job_state import ComputeJobState
    from .models import (
        CANCEL_SLOT_REQUESTS,
        CANDIDATE_HOSTS,
        COMPUTE_SLOTS,
        COMPUTE_STATUS_CANCELLED,
        COMPUTE_STATUS_COMPLETED,
        COMPUTE_STATUS_FAILED_FINAL,
        COMPUTE_STATUS_NEW,
        COMPUTE_STATUS_PLACING,
        COMPUTE_STATUS_RUNNING,
        COMPUTE_STATUS_WAITING_FOR_SLOT,
        COMPUTE_USAGE_PATHS_MESSAGE,
        DECISION_REDIRECT,
        DECISION_REJECTED,
        DECISION_RUN_NOW,
        DECISION_SLEEP,
        EXPLAIN_WAIT,
        JOB_LOGS,
        LIST_JOBS,
        RELEASE_SLOT,
        REQUEST_SLOT,
        SCHEDULER_STATUS,
        SYNC_SCHEDULER_STATUS,
        CancelSlotRequestsReply,
        CancelSlotRequestsRequest,
        ComputeJobRuntimeInfo,
        ComputeSlotRequest,
        ExplainWaitReply,
        ExplainWaitRequest,
        Hold,
        JobHistoryRow,
        QueueEntry,
        RedirectHop,
        SchedulerHostStatus,
        SchedulerStatusReply,
        SchedulerStatusRequest,
        SchedulerStatusSyncReply,
        SchedulerStatusSyncRequest,
        SlotDecisionReply,
        SlotLease,
        SlotReleaseReply,
        SlotReleaseRequest,
        UsageSample,
        WaitExplanation,
        WaitReason,
    )
    from .redirects import PeerView, RedirectOrder, RedirectPlan
    from .scheduler import ComputeSlotsScheduler
    from .service import ComputeSlotsAgent, ComputeSlotsState
    from .usage import ProcessTreeSampler, UsageMonitor
