"""Compute jobs on one in-process host (jobs.md §3): thread-isolated jobs, retries,
cooperative cancel, validation, vanished requests, and the `compute-slots` service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paglets import Message
from paglets.examples.jobs import SleepJobState, ThreadSleepJob
from paglets.runtime.host import Host
from paglets.system.compute_slots import (
    COMPUTE_SLOTS_AGENT_ID,
    ListJobsRequest,
    SchedulerStatusRequest,
)
from paglets.system.compute_slots.service import OP_LIST_JOBS, OP_SCHEDULER_STATUS
from support.waiting import wait_until

TERMINAL = ("COMPLETED", "FAILED_FINAL", "CANCELLED")


class FailingThreadJob(ThreadSleepJob):
    def run_compute_job(self) -> None:
        raise ValueError("boom")


@pytest.fixture
def alpha(make_host: Callable[..., Host], tmp_path: Path) -> Host:
    config = tmp_path / "launch.toml"
    config.write_text(
        "[launch]\nsync_demo_config = false\n\n"
        "[services.compute-slots]\nrespect_external_load = false\n"
    )
    return make_host("alpha", launch_config=config, mesh=False, system_services=True)


def _state(host: Host, agent_id: str) -> Any:
    return host.get_state(agent_id)


def _wait(host: Host, agent_id: str, wanted: tuple[str, ...] = TERMINAL) -> Any:
    wait_until(lambda: _state(host, agent_id).compute_status in wanted, timeout=30)
    return _state(host, agent_id)


def _service(host: Host, op: Any, request: Any) -> Any:
    reply = host.proxy(COMPUTE_SLOTS_AGENT_ID).send(op.to_message(request), timeout=10)
    return op.decode_reply(reply)


def test_a_thread_job_runs_here_and_is_listed(alpha: Host) -> None:
    proxy = alpha.create(ThreadSleepJob, SleepJobState(seconds=0.1, allow_home_compute=True))
    done = _wait(alpha, proxy.agent_id)
    assert done.compute_status == "COMPLETED" and done.result.startswith("slept")
    assert done.home_host_id == alpha.host_id and done.first_submitted_at > 0
    assert done.steps > 0 and done.restart_initial_state

    listed = _service(alpha, OP_LIST_JOBS, ListJobsRequest())
    (row,) = [r for r in listed.rows if r.agent_id == proxy.agent_id]
    assert row.compute_status == "COMPLETED" and row.job_id == f"compute-job-{proxy.agent_id}"
    status = _service(alpha, OP_SCHEDULER_STATUS, SchedulerStatusRequest(include_history=True))
    assert [h.finish_reason for h in status.history if h.agent_id == proxy.agent_id] == ["released"]


def test_a_failing_job_is_retried_then_final(alpha: Host) -> None:
    state = SleepJobState(
        allow_home_compute=True,
        retry_on_exception=True,
        max_attempts=2,
        retry_backoff_seconds=0.1,
    )
    proxy = alpha.create(FailingThreadJob, state)
    done = _wait(alpha, proxy.agent_id)
    assert done.compute_status == "FAILED_FINAL" and done.attempt == 2
    assert done.compute_failure_kind == "exception" and "boom" in done.compute_error
    status = _service(alpha, OP_SCHEDULER_STATUS, SchedulerStatusRequest(include_history=True))
    reasons = [h.finish_reason for h in status.history if h.agent_id == proxy.agent_id]
    assert reasons == ["failed", "failed"]


def test_cancel_is_cooperative_for_a_thread_job(alpha: Host) -> None:
    proxy = alpha.create(ThreadSleepJob, SleepJobState(seconds=60, allow_home_compute=True))
    _wait(alpha, proxy.agent_id, ("RUNNING",))
    proxy.send(Message("compute_cancel"), timeout=10)
    done = _wait(alpha, proxy.agent_id)
    assert done.compute_status == "CANCELLED" and done.compute_error == "cancelled"


def test_an_invalid_job_fails_at_once(alpha: Host) -> None:
    proxy = alpha.create(ThreadSleepJob, SleepJobState(memory_bytes=0, allow_home_compute=True))
    done = _wait(alpha, proxy.agent_id)
    assert done.compute_status == "FAILED_FINAL" and done.compute_failure_kind == "invalid"
    assert "memory_bytes" in done.compute_error


def test_a_disposed_waiting_job_leaves_the_queue(alpha: Host) -> None:
    cores = len(alpha.resource_monitor.current().spec.job_cpu_ids)
    first = alpha.create(
        ThreadSleepJob, SleepJobState(seconds=60, cpu_cores=cores, allow_home_compute=True)
    )
    _wait(alpha, first.agent_id, ("RUNNING",))
    second = alpha.create(
        ThreadSleepJob, SleepJobState(seconds=0.1, cpu_cores=cores, allow_home_compute=True)
    )
    wait_until(
        lambda: (
            alpha.store.get_agent(second.agent_id) is not None
            and alpha.store.get_agent(second.agent_id).status == "inactive"
        ),
        timeout=30,
    )

    def queued() -> list[str]:
        reply = _service(alpha, OP_SCHEDULER_STATUS, SchedulerStatusRequest())
        return [q.agent_id for q in reply.queue]

    assert queued() == [second.agent_id]
    alpha.dispose(second.agent_id)
    wait_until(lambda: queued() == [], timeout=30)
    first.send(Message("compute_cancel"), timeout=10)
    _wait(alpha, first.agent_id)


class CheckpointingJob(ThreadSleepJob):
    """Attempt 1 checkpoints `steps = 5` and fails; attempt 2 resumes from there."""

    def run_compute_job(self) -> None:
        self.context.report_progress(0.5, "half way")
        if self.state.attempt == 1:
            self.state.steps = 5
            self.context.checkpoint()
            raise RuntimeError("first attempt fails after its checkpoint")
        self.state.steps += 1
        self.state.result = "resumed"


def test_a_retry_resumes_from_the_last_checkpoint(alpha: Host) -> None:
    state = SleepJobState(
        allow_home_compute=True,
        retry_on_exception=True,
        resume_from_checkpoint=True,
        retry_backoff_seconds=0.1,
    )
    proxy = alpha.create(CheckpointingJob, state)
    done = _wait(alpha, proxy.agent_id)
    assert done.compute_status == "COMPLETED" and done.attempt == 2
    assert (done.steps, done.result) == (6, "resumed")
    assert done.progress == 0.5 and done.progress_text == "half way"
