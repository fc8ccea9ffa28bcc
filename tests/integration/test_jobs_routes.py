"""The dashboard's jobs routes (runtime/jobs_routes.py): `GET /jobs`, `/jobs/queue` and
`/jobs/groups` answer from the host's `job_index`, scheduler and local collectors."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paglets import Message
from paglets.examples.jobs import SleepJobState, ThreadSleepJob
from paglets.remote.client import HostClient
from paglets.runtime.host import Host
from paglets.system.compute_slots import (
    CollectingComputeJobPaglet,
    CollectingComputeJobState,
    submit_compute_job_group,
)
from support.waiting import wait_until

MiB = 1024 * 1024


@dataclass
class QuickGroupState(CollectingComputeJobState):
    seconds: float = 0.1
    memory_bytes: int = 64 * MiB
    estimated_runtime_seconds: float = 1.0
    allow_home_compute: bool = True
    dispose_after_report: bool = False


class QuickGroupJob(CollectingComputeJobPaglet):
    State = QuickGroupState
    COMPUTE_ISOLATION = "thread"

    def run_compute_job(self) -> None:
        time.sleep(self.state.seconds)
        self.state.staged_result = {"slept": self.state.seconds}


def _host(make_host: Callable[..., Host], tmp_path: Path) -> Host:
    config = tmp_path / "launch.toml"
    config.write_text(
        "[launch]\nsync_demo_config = false\n\n"
        "[services.compute-slots]\nrespect_external_load = false\n"
    )
    return make_host("alpha", launch_config=config, mesh=False, system_services=True)


def _get(client: HostClient, host: Host, path: str) -> Any:
    return client.get_json(f"{host.address}{path}")


def test_jobs_queue_and_groups_routes(make_host: Callable[..., Host], tmp_path: Path) -> None:
    alpha = _host(make_host, tmp_path)
    with HostClient(timeout=10.0) as client:
        assert _get(client, alpha, "/jobs/groups")["groups"] == []
        empty = _get(client, alpha, "/jobs/queue")
        assert empty == {"queue": [], "leases": []}

        long = alpha.create(ThreadSleepJob, SleepJobState(seconds=60.0, allow_home_compute=True))
        wait_until(lambda: alpha.get_state(long.agent_id).compute_status == "RUNNING", timeout=30)
        wanted = [(f"compute-job-{long.agent_id}", "running")]  # granted until it starts
        wait_until(
            lambda: (
                [(x["job_id"], x["state"]) for x in _get(client, alpha, "/jobs/queue")["leases"]]
                == wanted
            ),
            timeout=30,
        )

        sub = submit_compute_job_group(
            alpha, QuickGroupJob, [QuickGroupState(seconds=0.1) for _ in range(2)], group_id="g-ui"
        )
        assert not sub.creation_errors

        def complete() -> dict[str, Any] | None:
            groups = _get(client, alpha, "/jobs/groups")["groups"]
            done = groups and groups[0]["done"] == 2 and groups[0]["status"] == "COMPLETE"
            return groups[0] if done else None

        group = wait_until(complete, timeout=30)
        assert isinstance(group, dict)
        assert group["group_id"] == "g-ui" and group["expected"] == 2
        assert (group["failed"], group["cancelled"], group["running"], group["waiting"]) == (
            0,
            0,
            0,
            0,
        )
        assert group["collector_host"] == "alpha" and group["status"] == "COMPLETE"

        def listed() -> list[tuple[str, str]]:
            jobs = _get(client, alpha, "/jobs?limit=50")
            return sorted((j["kind"], j["compute_status"]) for j in jobs["jobs"])

        # The job index follows each checkpoint: the collector's row catches up.
        kinds = wait_until(lambda: (k := listed()) and ("collector", "COMPLETE") in k and k)
        assert kinds == [
            ("collector", "COMPLETE"),
            ("job", "COMPLETED"),
            ("job", "COMPLETED"),
            ("job", "RUNNING"),
        ]
        assert _get(client, alpha, "/jobs?limit=50")["total"] == 4
        running = _get(client, alpha, "/jobs?state=RUNNING")["jobs"]
        assert [j["agent_id"] for j in running] == [long.agent_id]
        long.send_oneway(Message("compute_cancel"))
        wait_until(lambda: alpha.get_state(long.agent_id).compute_status == "CANCELLED", timeout=30)
