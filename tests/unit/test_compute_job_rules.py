"""The pure rules of a compute job (jobs.md §3.1, §3.4, §3.6, §3.7)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from paglets.serialization import codec
from paglets.system.compute_slots import ComputeJobPaglet, ComputeJobState
from paglets.system.compute_slots.job_rules import (
    default_retryable,
    merge_app_state,
    prepare_retry,
    slot_request,
    take_snapshot,
    validate_estimates,
)
from paglets.system.compute_slots.job_state import RUNTIME_FIELDS, backoff_seconds
from paglets.system.compute_slots.models import RedirectHop


@dataclass
class AppState(ComputeJobState):
    rows: int = 0
    path: str = ""
    memory_bytes: int = 1 << 20
    estimated_runtime_seconds: float = 5.0


def test_state_defaults_and_codec_round_trip() -> None:
    state = AppState(rows=3, required_host_tags=("linux",))
    assert state.compute_status == "NEW" and state.cpu_cores == 1 and state.max_attempts == 3
    assert state.owner == "user@home" and not state.allow_home_compute
    assert state.candidate_limit == 8 and state.restart_running_on_host_startup
    back = codec.decode_state(AppState, codec.encode_state(state))
    assert back == state
    assert "rows" not in RUNTIME_FIELDS and "status" not in RUNTIME_FIELDS
    assert {"home_host_id", "attempt", "first_submitted_at", "owner"} <= RUNTIME_FIELDS


@pytest.mark.parametrize(
    ("kind", "flags", "expected"),
    [
        ("host-restart", {}, True),
        ("killed", {}, True),
        ("walltime", {}, False),
        ("cancelled", {}, False),
        ("exception", {}, False),
        ("exception", {"retry_on_exception": True}, True),
        ("memory", {}, False),
        ("memory", {"retry_on_memory_kill": True}, True),
    ],
)
def test_which_failures_are_retried(kind: str, flags: dict[str, bool], expected: bool) -> None:
    assert default_retryable(AppState(**flags), kind) is expected


def test_a_retry_restores_the_snapshot_but_keeps_home_and_seniority() -> None:
    state = AppState(rows=1, path="in.csv")
    state.home_host_id, state.first_submitted_at = "home", 100.0
    state.redirect_history = (RedirectHop("h1", "http://h1", 1.0),)
    state.restart_initial_state = take_snapshot(state)
    state.rows, state.path = 99, "changed"
    state.compute_status, state.slot_lease_id, state.attempt = "RUNNING", "lease-1", 1
    prepare_retry(state, "host-restart", "the host restarted", "beta", now=1000.0)
    assert (state.rows, state.path) == (1, "in.csv")
    assert state.attempt == 2 and state.compute_status == "PLACING"
    assert state.home_host_id == "home" and state.first_submitted_at == 100.0
    assert state.redirect_history[0].host_id == "h1"
    assert state.failed_host_ids == ("beta",) and state.slot_lease_id == ""
    assert 1000.0 + 8.0 <= state.next_attempt_at <= 1000.0 + 12.0  # 10 s +- 20 %


def test_resume_from_checkpoint_restores_the_last_checkpoint() -> None:
    state = AppState(rows=1, resume_from_checkpoint=True)
    state.restart_initial_state = take_snapshot(state)
    state.rows = 50
    state.checkpoint_state = take_snapshot(state)
    state.rows = 77
    prepare_retry(state, "killed", "signal 9", "beta", now=0.0)
    assert state.rows == 50


def test_the_final_state_never_overwrites_runtime_fields() -> None:
    host_side = AppState(rows=1)
    host_side.home_host_id, host_side.attempt, host_side.compute_status = "home", 2, "RUNNING"
    child = AppState(rows=42, status="done")
    child.home_host_id, child.attempt, child.compute_status = "elsewhere", 7, "NEW"
    merge_app_state(host_side, codec.encode_state(child))
    assert (host_side.rows, host_side.status) == (42, "done")
    assert (host_side.home_host_id, host_side.attempt, host_side.compute_status) == (
        "home",
        2,
        "RUNNING",
    )


def test_backoff_doubles_up_to_the_cap() -> None:
    assert backoff_seconds(1, 10, 600, jitter=0) == 10
    assert backoff_seconds(3, 10, 600, jitter=0) == 40
    assert backoff_seconds(20, 10, 600, jitter=0) == 600


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"memory_bytes": 0}, "memory_bytes"),
        ({"estimated_runtime_seconds": 0}, "estimated_runtime_seconds"),
        ({"cpu_cores": 0}, "cpu_cores"),
        ({"priority": 11}, "priority"),
        ({"required_host_properties": ("python>=abc",)}, "required_host_properties"),
    ],
)
def test_validation_names_the_field(changes: dict[str, object], fragment: str) -> None:
    problem = validate_estimates(AppState(**changes))  # type: ignore[arg-type]
    assert problem is not None and fragment in problem


def test_zero_estimates_are_allowed_when_asked() -> None:
    state = AppState(
        memory_bytes=0,
        allow_zero_memory_bytes=True,
        estimated_runtime_seconds=0,
        allow_zero_runtime_seconds=True,
    )
    assert validate_estimates(state) is None


def test_the_slot_request_carries_the_jobs_fields_and_seniority() -> None:
    state = AppState(cpu_cores=4, priority=3, required_host_tags=("linux",), walltime_seconds=60)
    state.first_submitted_at, state.attempt, state.slot_request_id = 5.0, 2, "req-1"
    request = slot_request(
        state, job_id="compute-job-a", agent_id="a", agent_class="m:C", hold_id="h"
    )
    assert (request.request_id, request.job_id, request.agent_id) == ("req-1", "compute-job-a", "a")
    assert request.cpu_cores == 4 and request.priority == 3 and request.walltime_seconds == 60
    assert request.required_host_tags == ("linux",) and request.hold_id == "h"
    assert request.first_submitted_at == 5.0 and request.attempt == 2


def test_job_id_and_the_default_candidate_filter() -> None:
    from paglets.system.compute_slots import CandidateHost

    job = ComputeJobPaglet(ComputeJobState(), agent_id="abc")
    assert job.compute_job_id() == "compute-job-abc"
    job.state.home_host_id = "home"
    assert not job.accept_compute_candidate(CandidateHost(host_id="home"))
    assert job.accept_compute_candidate(CandidateHost(host_id="other"))
    job.state.allow_home_compute = True
    assert job.accept_compute_candidate(CandidateHost(host_id="home"))
    assert job.cancel_requested() is False
