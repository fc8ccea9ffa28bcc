"""Running compute jobs at a graceful stop, and draining (jobs.md §3.7, network.md §5,
cli.md §1.3), on in-process hosts with thread-isolated jobs.

`Host.shutdown()` gives running jobs up to `restart_grace` to finish: one that ends within
it is COMPLETED before the host stops; one that does not is stopped as `graceful-stop` and
runs again after the restart with its attempt unchanged. `POST /admin/drain` reports the
scheduler's running and queued jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paglets import Message
from paglets.examples.jobs import SleepJobState, ThreadSleepJob
from paglets.remote.client import HostClient
from paglets.runtime.host import Host
from paglets.system.compute_slots.graceful import job_counts
from paglets.system.compute_slots.host_slots import slots_runtime
from support.waiting import wait_until

TERMINAL = ("COMPLETED", "FAILED_FINAL", "CANCELLED")
LAUNCH = "[launch]\nsync_demo_config = false\n\n[services.compute-slots]\nrespect_external_load = false\n"


class SlowFirstRunJob(ThreadSleepJob):
    """Its first run (on any attempt) takes two minutes, every later run a moment: the
    first run is the one a graceful stop cuts short."""

    def run_compute_job(self) -> None:
        flag = Path(self.state.marker_dir) / f"{self.agent_id}.ran"
        if not flag.exists():
            flag.write_text("once")
            self.state.seconds = 120.0
        super().run_compute_job()


@pytest.fixture
def start(make_host: Callable[..., Host], tmp_path: Path) -> Callable[..., Host]:
    config = tmp_path / "launch.toml"
    config.write_text(LAUNCH)

    def factory(**kwargs: Any) -> Host:
        return make_host(
            "alpha",
            launch_config=config,
            mesh=False,
            system_services=True,
            persistence_dir=tmp_path / "alpha",
            **kwargs,
        )

    return factory


def _status(host: Host, agent_id: str) -> str:
    return str(host.get_state(agent_id).compute_status)


def _wait(host: Host, agent_id: str, wanted: tuple[str, ...]) -> Any:
    wait_until(lambda: _status(host, agent_id) in wanted, timeout=30)
    return host.get_state(agent_id)


def _history(host: Host, agent_id: str) -> list[str]:
    rt = slots_runtime(host)
    rows = rt.call(lambda: rt.scheduler.history(job_id=f"compute-job-{agent_id}"))
    return [r.finish_reason for r in reversed(rows)]


def test_a_job_that_ends_within_the_grace_completes_before_the_host_stops(
    start: Callable[..., Host], tmp_path: Path
) -> None:
    alpha = start()
    marks = tmp_path / "marks"
    marks.mkdir()
    job = alpha.create(
        ThreadSleepJob,
        SleepJobState(seconds=1.0, allow_home_compute=True, marker_dir=str(marks)),
    ).agent_id
    _wait(alpha, job, ("RUNNING",))
    alpha.shutdown(grace=5.0, restart_grace=60.0)
    assert (marks / f"{job}.done").read_text().split() == ["1"]

    again = start()
    done = _wait(again, job, TERMINAL)
    assert done.compute_status == "COMPLETED" and done.attempt == 1
    assert _history(again, job) == ["released"]


def test_a_job_still_running_after_the_grace_runs_again_without_using_an_attempt(
    start: Callable[..., Host], tmp_path: Path
) -> None:
    alpha = start()
    marks = tmp_path / "marks"
    marks.mkdir()
    job = alpha.create(
        SlowFirstRunJob,
        SleepJobState(seconds=0.2, allow_home_compute=True, marker_dir=str(marks), max_attempts=1),
    ).agent_id
    _wait(alpha, job, ("RUNNING",))
    wait_until(lambda: (marks / f"{job}.ran").exists(), timeout=30)
    alpha.shutdown(grace=5.0, restart_grace=0.2)
    assert not (marks / f"{job}.done").exists()  # cut short

    again = start()
    done = _wait(again, job, TERMINAL)
    # max_attempts=1: a stop that used up the attempt would have ended FAILED_FINAL.
    assert done.compute_status == "COMPLETED", done.compute_error
    assert done.attempt == 1
    assert (marks / f"{job}.done").read_text().split() == ["1"]
    assert _history(again, job) == ["graceful-stop", "released"]


def test_drain_reports_running_and_queued_jobs_and_stops_admission(
    start: Callable[..., Host], tmp_path: Path
) -> None:
    alpha = start()
    marks = tmp_path / "marks"
    marks.mkdir()
    job = alpha.create(
        ThreadSleepJob,
        SleepJobState(seconds=60.0, allow_home_compute=True, marker_dir=str(marks)),
    ).agent_id
    _wait(alpha, job, ("RUNNING",))
    with HostClient(timeout=10.0) as client:
        answer = client.post_json(f"{alpha.address}/admin/drain", {"drain": True})
        assert answer == {"draining": True, "running_jobs": 1, "queued": 0}
        # Draining: a new job is not admitted here (no other host can take it: it waits).
        late = alpha.create(
            ThreadSleepJob, SleepJobState(seconds=0.1, allow_home_compute=True)
        ).agent_id
        wait_until(
            lambda: alpha.get_state(late).placement_note or _status(alpha, late) != "NEW",
            timeout=30,
        )
        assert _status(alpha, late) in ("PLACING", "WAITING_FOR_SLOT")
        assert job_counts(alpha)["running_jobs"] == 1
        undo = client.post_json(f"{alpha.address}/admin/drain", {"drain": False})
        assert undo["draining"] is False
    assert _wait(alpha, late, TERMINAL).compute_status == "COMPLETED"
    alpha.proxy(job).send_oneway(Message("compute_cancel"))
    assert _wait(alpha, job, TERMINAL).compute_status == "CANCELLED"


def test_an_auto_update_restart_gives_running_jobs_the_restart_grace(
    start: Callable[..., Host], tmp_path: Path
) -> None:
    from paglets.tooling.restart import drain_and_stop

    alpha = start(restart_grace=3600.0)  # the restart's own grace wins over the host's
    marks = tmp_path / "marks"
    marks.mkdir()
    job = alpha.create(
        SlowFirstRunJob,
        SleepJobState(seconds=0.2, allow_home_compute=True, marker_dir=str(marks), max_attempts=1),
    ).agent_id
    _wait(alpha, job, ("RUNNING",))
    wait_until(lambda: (marks / f"{job}.ran").exists(), timeout=30)
    assert drain_and_stop(alpha, shutdown_grace=5.0, restart_grace=0.2) == 0
    assert alpha.stopped

    again = start()
    done = _wait(again, job, TERMINAL)
    assert (done.compute_status, done.attempt) == ("COMPLETED", 1), done.compute_error
    assert _history(again, job) == ["graceful-stop", "released"]


def test_the_hosts_restart_grace_is_the_default_of_shutdown(
    start: Callable[..., Host], tmp_path: Path
) -> None:
    alpha = start(restart_grace=0.2)
    marks = tmp_path / "marks"
    marks.mkdir()
    job = alpha.create(
        SlowFirstRunJob,
        SleepJobState(seconds=0.2, allow_home_compute=True, marker_dir=str(marks)),
    ).agent_id
    _wait(alpha, job, ("RUNNING",))
    wait_until(lambda: (marks / f"{job}.ran").exists(), timeout=30)
    alpha.shutdown(grace=5.0)
    again = start()
    done = _wait(again, job, TERMINAL)
    assert (done.compute_status, done.attempt) == ("COMPLETED", 1), done.compute_error
    assert _history(again, job) == ["graceful-stop", "released"]
