"""Draining and graceful stops with compute jobs on real `paglets host` processes
(jobs.md §3.7, cli.md §1.3, network.md §5).

`paglets host drain --wait` returns once the drained host's running jobs have ended; a
SIGTERM gives running jobs `--restart-grace` to finish, then stops them so that they run
again after the restart without using up an attempt. The jobs are
`paglets.examples.jobs:SleepJob`; the launch config turns off the external-load gate.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paglets import Message
from paglets.cli.mesh_summary import member_resources
from paglets.remote.client import HostClient
from paglets.system.compute_slots import COMPUTE_SLOTS_AGENT_ID, SchedulerStatusRequest
from paglets.system.compute_slots.service import OP_SCHEDULER_STATUS
from support.processes import HostProcess, run_paglets
from support.waiting import wait_until

SLEEP_JOB = "paglets.examples.jobs:SleepJob"
SLEEP_STATE = "paglets.examples.jobs:SleepJobState"
DEADLINE = 60.0
LAUNCH = """
[launch]
sync_demo_config = false

[services.compute-slots]
respect_external_load = false
"""


def _host(factory: Callable[..., HostProcess], tmp: Path, name: str, *args: str) -> HostProcess:
    config = tmp / f"{name}-launch.toml"
    config.write_text(LAUNCH)
    return factory(name, args=["--launch-config", str(config), *args])


def _ready(client: HostClient, hosts: list[HostProcess]) -> bool:
    names = {h.name for h in hosts}
    for host in hosts:
        members = {m["name"]: m for m in client.get_json(f"{host.url}/mesh/members")["members"]}
        if not names <= members.keys():
            return False
        for name in names:
            r = member_resources(members[name])
            if members[name].get("status") != "alive" or not r.get("job_cores"):
                return False
            if r.get("free_cpu_cores") != r["job_cores"]:  # the scheduler's figures arrived
                return False
    return True


def _status(client: HostClient, host: HostProcess, agent_id: str) -> dict[str, Any]:
    try:
        answer = client.send_message(host.url, agent_id, Message("compute_status"), timeout=5.0)
    except Exception as exc:
        return {"error": repr(exc)}
    return answer if isinstance(answer, dict) else {}


def _wait_status(
    client: HostClient, host: HostProcess, agent_id: str, wanted: tuple[str, ...]
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.clear()
        seen.update(_status(client, host, agent_id))
        return seen.get("compute_status") in wanted and seen.get("host_name") == host.name

    try:
        wait_until(done, timeout=DEADLINE)
    except pytest.fail.Exception:  # say where the job stands instead
        pytest.fail(f"{agent_id} on {host.name}: {wanted} never seen, last {seen}")
    return seen


def _history(client: HostClient, host: HostProcess, agent_id: str) -> list[str]:
    request = SchedulerStatusRequest(include_history=True)
    answer = client.send_message(
        host.url, COMPUTE_SLOTS_AGENT_ID, OP_SCHEDULER_STATUS.to_message(request), timeout=10.0
    )
    reply = OP_SCHEDULER_STATUS.decode_reply(answer)
    return [h.finish_reason for h in reversed(reply.history) if h.agent_id == agent_id]


def test_drain_wait_returns_after_the_running_jobs_end(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    alpha = _host(host_process, tmp_path, "alpha", "--tag", "laptop")
    beta = _host(host_process, tmp_path, "beta", "--tag", "linux", "--peer", alpha.url)
    client = HostClient(timeout=10.0)
    wait_until(lambda: _ready(client, [alpha, beta]), timeout=DEADLINE)
    marks = tmp_path / "marks"
    marks.mkdir()
    job = client.create_agent(
        alpha.url,
        SLEEP_JOB,
        SLEEP_STATE,
        {"seconds": 4.0, "required_host_tags": ["linux"], "marker_dir": str(marks)},
    ).agent_id
    _wait_status(client, beta, job, ("RUNNING",))
    wait_until(lambda: (marks / f"{job}.pid").exists(), timeout=DEADLINE)

    done = run_paglets(
        "host", "drain", "--target", beta.url, "--wait", "--entry", alpha.url, "--json",
        home=tmp_path / "cli-home",
        timeout=DEADLINE,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["draining"] is True and answer["running_jobs"] == 0, answer
    assert (marks / f"{job}.done").read_text().split() == ["1"]  # it ended, not stopped
    assert _wait_status(client, beta, job, ("COMPLETED",))["attempt"] == 1
    wait_until(
        lambda: {m["name"]: m for m in client.get_json(f"{alpha.url}/mesh/members")["members"]}[
            "beta"
        ].get("draining"),
        timeout=DEADLINE,
    )
    undo = run_paglets(
        "host", "drain", "--target", beta.url, "--undo", "--entry", alpha.url, "--json",
        home=tmp_path / "cli-home",
    )  # fmt: skip
    assert undo.returncode == 0 and json.loads(undo.stdout)["draining"] is False, undo.stderr


def test_sigterm_stops_a_long_job_after_the_restart_grace_and_it_reruns_same_attempt(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    alpha = _host(host_process, tmp_path, "alpha", "--tag", "laptop")
    beta = _host(
        host_process, tmp_path, "beta", "--tag", "linux", "--peer", alpha.url,
        "--restart-grace", "1s",
    )  # fmt: skip
    client = HostClient(timeout=10.0)
    wait_until(lambda: _ready(client, [alpha, beta]), timeout=DEADLINE)
    marks = tmp_path / "marks"
    marks.mkdir()
    quick = client.create_agent(
        alpha.url, SLEEP_JOB, SLEEP_STATE, {"seconds": 0.3, "required_host_tags": ["linux"]}
    ).agent_id
    _wait_status(client, beta, quick, ("COMPLETED",))
    job = client.create_agent(
        alpha.url,
        SLEEP_JOB,
        SLEEP_STATE,
        {
            "seconds": 300.0,
            "required_host_tags": ["linux"],
            "marker_dir": str(marks),
            "max_attempts": 1,  # a stop that used up the attempt would end FAILED_FINAL
        },
    ).agent_id
    _wait_status(client, beta, job, ("RUNNING",))
    wait_until(lambda: (marks / f"{job}.pid").exists(), timeout=DEADLINE)
    (marks / f"{job}.pid").unlink()

    assert beta.terminate() == 0
    assert "graceful-stop" in _history_offline(beta, job)
    beta.restart(same_port=True)

    again = _wait_status(client, beta, job, ("RUNNING", "COMPLETED", "FAILED_FINAL"))
    assert again["compute_status"] == "RUNNING" and again["attempt"] == 1, str(again)
    wait_until(lambda: (marks / f"{job}.pid").exists(), timeout=DEADLINE)  # runs again
    assert _history(client, beta, job) == ["graceful-stop"]
    client.send_message(beta.url, job, Message("compute_cancel"), timeout=10.0)
    assert _wait_status(client, beta, job, ("CANCELLED",))["attempt"] == 1


def _history_offline(host: HostProcess, agent_id: str) -> list[str]:
    """The finish reasons in a stopped host's `job_history` table, read from its store."""
    import sqlite3

    import msgspec

    from paglets.system.compute_slots.models import JobHistoryRow

    db = sqlite3.connect(host.persistence_dir / "paglets.db")
    try:
        rows = db.execute("SELECT row FROM job_history ORDER BY seq").fetchall()
    finally:
        db.close()
    decoded = [msgspec.msgpack.decode(r[0], type=JobHistoryRow) for r in rows]
    return [r.finish_reason for r in decoded if r.agent_id == agent_id]
