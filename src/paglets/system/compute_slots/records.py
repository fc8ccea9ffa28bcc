"""Rows built from the scheduler's state: history rows, running-job rows, usage folding.
Pure functions, so the scheduler's turn code stays about decisions."""

from __future__ import annotations

import uuid

from .models import (
    ComputeJobRuntimeInfo,
    ComputeSlotRequest,
    JobHistoryRow,
    LeaseUsage,
    SlotLease,
    UsageSample,
)

__all__ = ["ERROR_TAIL_BYTES", "fold_usage", "history_row", "new_id", "runtime_info"]

ERROR_TAIL_BYTES = 4096


def new_id(prefix: str) -> str:
    """A lease or hold id: the prefix says which, 80 random bits make it unique."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def _tail(text: str) -> str:
    data = text.encode("utf-8", "replace")
    if len(data) <= ERROR_TAIL_BYTES:
        return text
    return data[-ERROR_TAIL_BYTES:].decode("utf-8", "ignore")


def history_row(
    request: ComputeSlotRequest,
    *,
    reason: str,
    now: float,
    host_id: str,
    host_name: str,
    queued_at: float,
    lease: SlotLease | None = None,
    usage: LeaseUsage | None = None,
    exit_code: int | None = None,
    error: str = "",
) -> JobHistoryRow:
    """The `job_history` row for a job whose stay here ended with `reason`. A request that
    never got a lease (vanished, cancelled in the queue) has zero run time."""
    granted = lease.granted_at if lease is not None else 0.0
    started = lease.started_at if lease is not None else 0.0
    run = max(0.0, now - started) if started else 0.0
    waited_until = granted or now
    cores = lease.cpu_cores if lease is not None else request.cpu_cores
    cpu_seconds = usage.cpu_seconds if usage is not None else 0.0
    signal = -exit_code if exit_code is not None and exit_code < 0 else None
    return JobHistoryRow(
        job_id=request.job_id,
        request_id=request.request_id,
        agent_id=request.agent_id,
        lease_id=lease.lease_id if lease is not None else "",
        agent_class=request.agent_class,
        group_id=request.group_id,
        job_key=request.job_key,
        owner=request.owner,
        host_id=host_id,
        host_name=host_name,
        attempt=request.attempt,
        first_submitted_at=request.first_submitted_at,
        queued_at=queued_at,
        granted_at=granted,
        started_at=started,
        finished_at=now,
        wait_seconds=max(0.0, waited_until - queued_at) if queued_at else 0.0,
        run_seconds=run,
        finish_reason=reason,
        exit_code=exit_code,
        signal=signal,
        error=_tail(error),
        cpu_cores=cores,
        memory_bytes=request.memory_bytes,
        temp_storage_bytes=request.temp_storage_bytes,
        gpu_count=request.gpus_needed,
        walltime_seconds=lease.walltime_seconds if lease is not None else request.walltime_seconds,
        cpu_core_ids=lease.cpu_core_ids if lease is not None else (),
        gpu_ids=lease.gpu_ids if lease is not None else (),
        cpu_seconds=cpu_seconds,
        cpu_percent_mean=(
            usage.cpu_percent_sum / usage.cpu_percent_n
            if usage is not None and usage.cpu_percent_n
            else 0.0
        ),
        cpu_percent_max=usage.cpu_percent_max if usage is not None else 0.0,
        efficiency=cpu_seconds / (cores * run) if run > 0 and cores > 0 else 0.0,
        max_rss_bytes=usage.max_rss_bytes if usage is not None else 0,
        max_work_bytes=usage.max_work_bytes if usage is not None else 0,
        io_read_bytes=usage.io_read_bytes if usage is not None else 0,
        io_write_bytes=usage.io_write_bytes if usage is not None else 0,
    )


def fold_usage(usage: LeaseUsage, sample: UsageSample) -> None:
    """Add one sample to a lease's running figures (in place)."""
    usage.sampled_at = sample.at
    usage.samples += 1
    usage.cpu_seconds = max(usage.cpu_seconds, sample.cpu_seconds)
    if sample.cpu_percent is not None:
        usage.cpu_percent = sample.cpu_percent
        usage.cpu_percent_sum += sample.cpu_percent
        usage.cpu_percent_n += 1
        usage.cpu_percent_max = max(usage.cpu_percent_max, sample.cpu_percent)
    usage.rss_bytes = sample.rss_bytes
    usage.max_rss_bytes = max(usage.max_rss_bytes, sample.rss_bytes)
    if sample.work_bytes is not None:
        usage.work_bytes = sample.work_bytes
        usage.max_work_bytes = max(usage.max_work_bytes, sample.work_bytes)
    usage.io_read_bytes = max(usage.io_read_bytes, sample.io_read_bytes)
    usage.io_write_bytes = max(usage.io_write_bytes, sample.io_write_bytes)


def runtime_info(
    lease: SlotLease, request: ComputeSlotRequest, usage: LeaseUsage, now: float
) -> ComputeJobRuntimeInfo:
    """A running (or starting) job as `jobs top` shows it."""
    run = max(0.0, now - lease.started_at) if lease.started_at else 0.0
    left = None
    if lease.walltime_seconds > 0 and lease.started_at:
        left = max(0.0, lease.started_at + lease.walltime_seconds - now)
    return ComputeJobRuntimeInfo(
        job_id=lease.job_id,
        agent_id=lease.agent_id,
        request_id=lease.request_id,
        lease_id=lease.lease_id,
        status=lease.status,
        agent_class=request.agent_class,
        group_id=request.group_id,
        job_key=request.job_key,
        owner=request.owner,
        pid=lease.pid,
        cpu_cores=lease.cpu_cores,
        cpu_core_ids=lease.cpu_core_ids,
        gpu_ids=lease.gpu_ids,
        cpu_percent=usage.cpu_percent,
        efficiency=usage.cpu_seconds / (lease.cpu_cores * run) if run > 0 else 0.0,
        rss_bytes=usage.rss_bytes,
        max_rss_bytes=usage.max_rss_bytes,
        work_bytes=usage.work_bytes,
        granted_at=lease.granted_at,
        started_at=lease.started_at,
        runtime_seconds=run,
        walltime_left_seconds=left,
    )
