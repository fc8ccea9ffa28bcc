"""Collecting compute jobs (jobs.md §4.3, §4.5) on in-process hosts: the durable report
outbox, partial artifacts of a failed job, and cancel through the collector."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from paglets import Host, Message
from paglets.system.compute_slots.groups import submit_compute_job_group
from support.group_models_fixtures import GatedJob, GatedJobState
from support.waiting import wait_until

LAUNCH = """\
[launch]
sync_demo_config = false

[services.compute-slots]
respect_external_load = false
"""


def job_state(tmp: Path, label: str, **kw: Any) -> GatedJobState:
    return GatedJobState(
        label=label,
        gate=str(tmp / f"gate-{label}"),
        cpu_cores=1,
        memory_bytes=16 << 20,
        estimated_runtime_seconds=5,
        allow_home_compute=True,
        **kw,
    )


def summary(proxy: Any) -> dict[str, Any]:
    return proxy.send(Message("summary", {"details": True}))


def launch_file(tmp_path: Path) -> Path:
    path = tmp_path / "launch.toml"
    path.write_text(LAUNCH)
    return path


def test_failed_job_reports_partial_artifacts_and_is_kept(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    host = make_host("alpha", launch_config=launch_file(tmp_path), system_services=True)
    (tmp_path / "gate-bad").touch()
    (tmp_path / "gate-good").touch()
    sub = submit_compute_job_group(
        host,
        GatedJob,
        [job_state(tmp_path, "good"), job_state(tmp_path, "bad", fail=True)],
        group_id="grp-fail",
    )
    wait_until(lambda: summary(sub.collector)["status"] == "COMPLETE", timeout=60)
    doc = summary(sub.collector)
    rows = {m["job_key"]: m for m in doc["members"]}
    good, bad = rows["grp-fail-0001"], rows["grp-fail-0002"]
    assert good["state"] == "result" and good["result"] == {"label": "good"}
    assert bad["state"] == "failed" and bad["kind"] == "exception"
    assert "bundle bad is broken" in bad["error"] + bad["stderr_tail"]
    (partial,) = bad["artifacts"]
    assert partial["name"] == "bad.txt" and partial["size_bytes"] == len("output of bad\n")
    # The success disposed itself after the acknowledgement; the failure is kept.
    wait_until(lambda: host.get_proxy(good["agent_id"], include_inactive=True) is None)
    kept = host.get_state(bad["agent_id"])
    assert kept.report_sent and kept.compute_status == "FAILED_FINAL"


def test_report_waits_in_the_outbox_until_the_collector_is_back(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    launch = launch_file(tmp_path)
    alpha = make_host("alpha", launch_config=launch, system_services=True)
    beta = make_host(
        "beta",
        launch_config=launch,
        peers=[alpha.address],
        tags=["collector"],
        system_services=True,
    )
    wait_until(lambda: len(alpha.list_hosts(online_only=True)) == 2, timeout=20)
    sub = submit_compute_job_group(
        alpha, GatedJob, [job_state(tmp_path, "one")], group_id="grp-outbox"
    )
    assert sub.collector.host_url == beta.address
    job = sub.jobs["grp-outbox-0001"]
    wait_until(lambda: alpha.get_state(job.agent_id).compute_status == "RUNNING", timeout=30)
    beta_port = int(beta.address.rsplit(":", 1)[1])
    beta.stop()
    (tmp_path / "gate-one").touch()

    def waiting() -> bool:
        st = alpha.get_state(job.agent_id)
        return st.compute_status == "COMPLETED" and bool(st.report_error) and not st.report_sent

    wait_until(waiting, timeout=30)
    st = alpha.get_state(job.agent_id)
    assert st.report_payload["report_id"] == st.report_id  # durable before it was sent
    assert st.next_report_at > 0

    beta = make_host(
        "beta",
        launch_config=launch,
        peers=[alpha.address],
        tags=["collector"],
        port=beta_port,
        persistence_dir=tmp_path / "beta",
        system_services=True,
    )
    collector = beta.proxy(sub.collector.agent_id)
    wait_until(lambda: summary(collector)["done"] == 1, timeout=60)
    doc = summary(collector)
    assert doc["members"][0]["result"] == {"label": "one"}
    (ref,) = doc["members"][0]["artifacts"]
    assert ref["host_name"] == "beta"  # pushed to the collector's host
    wait_until(lambda: alpha.get_proxy(job.agent_id, include_inactive=True) is None, timeout=30)


def test_cancel_through_the_collector(make_host: Callable[..., Host], tmp_path: Path) -> None:
    host = make_host("alpha", launch_config=launch_file(tmp_path), system_services=True)
    never = job_state(
        tmp_path,
        "never",
        required_host_tags=("nowhere",),
        wait_for_capable_host=True,
    )
    sub = submit_compute_job_group(host, GatedJob, [never], group_id="grp-cancel")
    job = sub.jobs["grp-cancel-0001"]
    wait_until(lambda: host.get_state(job.agent_id).compute_status == "PLACING", timeout=30)
    reply = sub.collector.send(Message("cancel", {"kill_running": True}))
    assert reply["cancelling"] == 1
    wait_until(lambda: summary(sub.collector)["status"] == "CANCELLED", timeout=30)
    assert summary(sub.collector)["cancelled"] == 1
    wait_until(lambda: host.get_proxy(job.agent_id, include_inactive=True) is None, timeout=30)


def test_a_second_copy_stands_down_and_deletes_its_artifact(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    import dataclasses

    host = make_host("alpha", launch_config=launch_file(tmp_path), system_services=True)
    (tmp_path / "gate-twin").touch()
    first = job_state(tmp_path, "twin")
    sub = submit_compute_job_group(host, GatedJob, [first], group_id="grp-twin")
    wait_until(lambda: summary(sub.collector)["done"] == 1, timeout=60)
    accepted = summary(sub.collector)["members"][0]
    # A copy of the same member (as if a host came back with it) runs and reports too.
    copy_state = dataclasses.replace(
        first,
        group_id="grp-twin",
        job_key="grp-twin-0001",
        collector_agent_id=sub.collector.agent_id,
        collector_host_url=host.address,
    )
    copy = host.create(GatedJob, copy_state)
    wait_until(lambda: host.get_proxy(copy.agent_id, include_inactive=True) is None, timeout=60)
    doc = summary(sub.collector)
    assert doc["duplicate_reports"] == 1
    assert doc["members"][0]["report_id"] == accepted["report_id"]
    # The copy deleted its artifact when it stood down: only the accepted one is left.
    left = [r.artifact_id for r in host.artifacts.list() if r.name == "twin.txt"]
    assert left == [accepted["artifacts"][0]["artifact_id"]]
