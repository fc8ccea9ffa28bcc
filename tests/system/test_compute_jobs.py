"""Compute jobs on real `paglets host` processes (jobs.md §2, §3, §8).

The jobs are `paglets.examples.jobs` (short sleeps). Every host runs the built-in
`compute-slots` service; a launch config turns off the external-load gate, so a busy
test machine does not keep jobs from starting.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from paglets import Message
from paglets.cli.mesh_summary import member_resources
from paglets.remote.client import HostClient
from support.processes import HostProcess, run_paglets
from support.waiting import wait_until

SLEEP_JOB = "paglets.examples.jobs:SleepJob"
SLEEP_STATE = "paglets.examples.jobs:SleepJobState"
TERMINAL = ("COMPLETED", "FAILED_FINAL", "CANCELLED")
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


def _members(client: HostClient, host: HostProcess) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in client.get_json(f"{host.url}/mesh/members")["members"]}


def _ready(client: HostClient, hosts: list[HostProcess], idle: tuple[str, ...] = ()) -> bool:
    """Every host sees every other alive, with a load summary (what placement reads);
    the `idle` hosts with every job core free (their scheduler's figures have arrived)."""
    names = {h.name for h in hosts}
    for host in hosts:
        members = _members(client, host)
        if not names <= members.keys():
            return False
        for name in names:
            m = members[name]
            r = member_resources(m)
            if m.get("status") != "alive" or "free_cpu_cores" not in r:
                return False
            if name in idle and r["free_cpu_cores"] != r.get("job_cores"):
                return False
    return True


def _status(client: HostClient, hosts: list[HostProcess], agent_id: str) -> dict[str, Any]:
    """The job's `compute_status` answer from whichever host has it ({} while moving)."""
    for host in hosts:
        if not host.alive:
            continue
        try:
            answer = client.send_message(host.url, agent_id, Message("compute_status"), timeout=5.0)
        except Exception:
            continue
        if isinstance(answer, dict) and answer.get("host_name") == host.name:
            return answer
    return {}


def _wait_status(
    client: HostClient, hosts: list[HostProcess], agent_id: str, wanted: tuple[str, ...]
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.update(_status(client, hosts, agent_id))
        return seen.get("compute_status") in wanted

    wait_until(done, timeout=DEADLINE)
    return seen


def _create(client: HostClient, host: HostProcess, **state: Any) -> str:
    state.setdefault("seconds", 0.3)
    proxy = client.create_agent(host.url, SLEEP_JOB, SLEEP_STATE, state)
    return proxy.agent_id


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _jobs_cli(host: HostProcess, tmp: Path, *args: str) -> Any:
    done = run_paglets("jobs", *args, "--entry", host.url, "--json", home=tmp / "cli-home")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_placement_honours_tags_home_and_capability(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    alpha = _host(host_process, tmp_path, "alpha", "--tag", "laptop")
    beta = _host(host_process, tmp_path, "beta", "--tag", "linux", "--peer", alpha.url)
    gamma = _host(
        host_process, tmp_path, "gamma", "--tag", "linux", "--tag", "big", "--peer", alpha.url
    )
    hosts = [alpha, beta, gamma]
    client = HostClient(timeout=10.0)
    wait_until(lambda: _ready(client, hosts, ("alpha", "beta", "gamma")), timeout=DEADLINE)

    # The entry's gossip table ranks a preferred tag first; a missing tag is named.
    # (gossip is eventually consistent: the first answers may predate gamma's summary)
    answers: list[Any] = []

    def gamma_first() -> bool:
        answers.append(_jobs_cli(alpha, tmp_path, "hosts", "--tag", "linux", "--prefer-tag", "big"))
        return [c["host_name"] for c in answers[-1]["candidates"]] == ["gamma", "beta"]

    wait_until(gamma_first, timeout=DEADLINE)
    ranked = answers[-1]
    rejected = {r["host"]: r for r in ranked["rejected"]}
    assert any(x["code"] == "missing-tag" for x in rejected["alpha"]["reasons"])

    not_big = _create(
        client, alpha, required_host_tags=["linux"], excluded_host_tags=["big"], notify=True
    )
    anywhere = _create(client, alpha)  # never home: allow_home_compute is off
    at_home = _create(client, alpha, required_host_tags=["laptop"], allow_home_compute=True)
    nowhere = _create(client, alpha, required_host_tags=["no-such-tag"])

    assert _wait_status(client, hosts, not_big, TERMINAL)["host_name"] == "beta"
    done = _wait_status(client, hosts, anywhere, TERMINAL)
    assert done["compute_status"] == "COMPLETED" and done["host_name"] in ("beta", "gamma")
    assert _wait_status(client, hosts, at_home, TERMINAL)["host_name"] == "alpha"
    failed = _wait_status(client, hosts, nowhere, TERMINAL)
    assert failed["compute_status"] == "FAILED_FINAL"
    assert "no-such-tag" in failed["compute_error"]

    # The job's notification, made in its process on beta, reaches home (alpha).
    def notified() -> bool:
        page = client.get_json(f"{alpha.url}/events?kind=user-info.notify&limit=1000")
        return any(
            (e.get("data") or {}).get("job") == f"compute-job-{not_big}" for e in page["events"]
        )

    wait_until(notified, timeout=DEADLINE)

    listed = _jobs_cli(alpha, tmp_path, "ps")
    by_agent = {row["agent_id"]: row for row in listed["jobs"]}
    assert by_agent[not_big]["host"] == "beta"
    assert by_agent[not_big]["compute_status"] == "COMPLETED"


def test_waiting_job_wakes_on_grant_and_why_names_the_reason(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    alpha = _host(host_process, tmp_path, "alpha")
    client = HostClient(timeout=10.0)
    wait_until(lambda: _ready(client, [alpha], ("alpha",)), timeout=DEADLINE)
    cores = int(member_resources(_members(client, alpha)["alpha"])["job_cores"])
    first = _create(client, alpha, seconds=3.0, cpu_cores=cores, allow_home_compute=True)
    _wait_status(client, [alpha], first, ("RUNNING",))
    second = _create(client, alpha, seconds=0.2, cpu_cores=cores, allow_home_compute=True)
    _wait_status(client, [alpha], second, ("WAITING_FOR_SLOT",))

    why = _jobs_cli(alpha, tmp_path, "why", second)
    (item,) = [i for i in why["items"] if i["agent_id"] == second]
    codes = {r["code"] for r in item["reasons"]}
    assert codes & {"cpu", "reservation", "queue-order", "max-jobs"}, item

    queued = _jobs_cli(alpha, tmp_path, "queue")
    assert [q["agent_id"] for q in queued["queue"]] == [second]

    assert _wait_status(client, [alpha], second, TERMINAL)["compute_status"] == "COMPLETED"
    history = _jobs_cli(alpha, tmp_path, "history")
    reasons = {h["agent_id"]: h["finish_reason"] for h in history["history"]}
    assert reasons[first] == "released" and reasons[second] == "released"
    shown = run_paglets("jobs", "history", "--entry", alpha.url, home=tmp_path / "cli-home")
    assert shown.returncode == 0 and first[:12] in shown.stdout, shown.stderr
    status = _jobs_cli(alpha, tmp_path, "status")
    (row,) = status["hosts"]
    assert row["host"] == "alpha" and row["job_cores"] == cores and row["accepting"]


def test_cancel_kills_the_running_process_and_walltime_ends_a_runaway(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    alpha = _host(host_process, tmp_path, "alpha")
    client = HostClient(timeout=10.0)
    wait_until(lambda: _ready(client, [alpha], ("alpha",)), timeout=DEADLINE)
    marks = tmp_path / "marks"
    marks.mkdir()

    victim = _create(client, alpha, seconds=120.0, allow_home_compute=True, marker_dir=str(marks))
    runaway = _create(
        client,
        alpha,
        seconds=120.0,
        allow_home_compute=True,
        marker_dir=str(marks),
        walltime_seconds=1.0,
    )
    wait_until(lambda: (marks / f"{victim}.pid").exists(), timeout=DEADLINE)
    pid = int((marks / f"{victim}.pid").read_text())
    assert not _gone(pid)
    top = _jobs_cli(alpha, tmp_path, "top")
    assert victim in {j["agent_id"] for j in top["jobs"]}
    shown = run_paglets("jobs", "top", "--entry", alpha.url, home=tmp_path / "cli-home")
    assert shown.returncode == 0 and victim[:12] in shown.stdout, shown.stderr

    cancelled = _jobs_cli(alpha, tmp_path, "cancel", victim, "--force")
    assert [j["agent_id"] for j in cancelled["jobs"]] == [victim]
    assert _wait_status(client, [alpha], victim, TERMINAL)["compute_status"] == "CANCELLED"
    wait_until(lambda: _gone(pid), timeout=DEADLINE)

    ended = _wait_status(client, [alpha], runaway, TERMINAL)
    assert ended["compute_status"] == "FAILED_FINAL"
    assert "walltime" in ended["compute_error"]
    runaway_pid = int((marks / f"{runaway}.pid").read_text())
    wait_until(lambda: _gone(runaway_pid), timeout=DEADLINE)

    logs = run_paglets("jobs", "logs", victim, "--entry", alpha.url, home=tmp_path / "cli-home")
    assert logs.returncode == 0, logs.stderr
    assert "step 1" in logs.stdout

    # rm removes the paglet; the ended attempt's logs are kept on the host.
    removed = _jobs_cli(alpha, tmp_path, "rm", "--job", victim, "--force")
    assert [j["agent_id"] for j in removed["jobs"]] == [victim]
    assert victim not in {j["agent_id"] for j in _jobs_cli(alpha, tmp_path, "ps")["jobs"]}
    kept = run_paglets("jobs", "logs", victim, "--entry", alpha.url, home=tmp_path / "cli-home")
    assert kept.returncode == 0 and "step 1" in kept.stdout, kept.stderr


def test_a_killed_compute_host_reruns_its_job_once(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    alpha = _host(host_process, tmp_path, "alpha", "--tag", "laptop")
    beta = _host(host_process, tmp_path, "beta", "--tag", "linux", "--peer", alpha.url)
    hosts = [alpha, beta]
    client = HostClient(timeout=10.0)
    wait_until(lambda: _ready(client, hosts, ("alpha", "beta")), timeout=DEADLINE)
    marks = tmp_path / "marks"
    marks.mkdir()

    job = _create(
        client,
        alpha,
        seconds=0.5,
        first_attempt_seconds=120.0,
        required_host_tags=["linux"],
        marker_dir=str(marks),
        retry_backoff_seconds=0.5,
    )
    running = _wait_status(client, hosts, job, ("RUNNING", *TERMINAL))
    assert running["compute_status"] == "RUNNING" and running["host_name"] == "beta", running
    wait_until(lambda: (marks / f"{job}.pid").exists(), timeout=DEADLINE)
    first_pid = int((marks / f"{job}.pid").read_text())
    (marks / f"{job}.pid").unlink()

    beta.kill()
    assert beta.returncode == -signal.SIGKILL
    beta.restart(same_port=True)

    done = _wait_status(client, hosts, job, TERMINAL)
    assert done["compute_status"] == "COMPLETED", done
    assert done["attempt"] == 2
    assert (marks / f"{job}.done").read_text().split() == ["2"]  # completed once
    assert _gone(first_pid)  # the first attempt's orphan was killed at restart


def test_a_queued_job_is_redirected_to_a_host_that_joins(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    alpha = _host(host_process, tmp_path, "alpha")
    client = HostClient(timeout=10.0)
    wait_until(lambda: _ready(client, [alpha], ("alpha",)), timeout=DEADLINE)
    cores = int(member_resources(_members(client, alpha)["alpha"])["job_cores"])
    busy = dict(cpu_cores=cores, allow_home_compute=True)
    long = _create(client, alpha, seconds=120.0, estimated_runtime_seconds=600.0, **busy)
    _wait_status(client, [alpha], long, ("RUNNING",))
    head = _create(client, alpha, seconds=0.2, **busy)
    tail = _create(client, alpha, seconds=0.2, **busy)
    for job in (head, tail):
        _wait_status(client, [alpha], job, ("WAITING_FOR_SLOT",))

    beta = _host(host_process, tmp_path, "beta", "--peer", alpha.url)
    hosts = [alpha, beta]
    wait_until(lambda: _ready(client, hosts, ("beta",)), timeout=DEADLINE)
    moved = _wait_status(client, hosts, tail, TERMINAL)
    assert moved["compute_status"] == "COMPLETED" and moved["host_name"] == "beta", moved
    client.send_message(alpha.url, long, Message("compute_cancel"), timeout=10.0)
    assert _wait_status(client, hosts, long, TERMINAL)["compute_status"] == "CANCELLED"
