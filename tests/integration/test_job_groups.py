"""Job groups on in-process hosts (jobs.md §4): submission, the collector's de-duplication,
summary, cancel, retry_failed and return home. The compute runtime is not needed: the jobs
here are plain paglets that report like a collecting job would."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from paglets import Host, Message
from paglets.system.compute_slots.collector import ResultCollectorPaglet
from paglets.system.compute_slots.groups import (
    WARNING_COLLECTOR_ON_SUBMITTER,
    submit_compute_job_group,
)
from support.group_models_fixtures import FakeGroupJob, FakeGroupJobState
from support.waiting import wait_until


@pytest.fixture
def make_host(make_host: Callable[..., Host]) -> Callable[..., Host]:
    """These hosts run the built-in system services (tests/conftest.py leaves them off)."""

    def factory(name: str = "alpha", **kwargs: object) -> Host:
        kwargs.setdefault("system_services", True)
        return make_host(name, **kwargs)

    return factory


def summary(sub: Any) -> dict[str, Any]:
    return sub.collector.send(Message("summary", {"limit": 1000, "details": True}))


def test_single_host_group_collects_each_report_once(host: Host) -> None:
    states = [FakeGroupJobState(value=i) for i in range(5)]
    sub = submit_compute_job_group(host, FakeGroupJob, states, group_id="grp-t-1")
    assert sub.group_id == "grp-t-1"
    assert WARNING_COLLECTOR_ON_SUBMITTER in sub.warnings
    assert sorted(sub.jobs) == [f"grp-t-1-{i:04d}" for i in range(1, 6)]
    assert not sub.creation_errors
    before = summary(sub)
    assert before["expected"] == 5 and before["counts"]["created"] == 5
    for key, proxy in sub.jobs.items():
        assert proxy.send(Message("report", {"report_id": "r-" + key})) == {
            "status": "accepted",
            "stand_down": False,
        }
    # The acknowledgement was lost: the same report again is accepted again.
    first = next(iter(sub.jobs.values()))
    again = first.send(Message("report", {"report_id": "r-grp-t-1-0001"}))
    assert again["status"] == "accepted"
    dup = first.send(Message("report", {"report_id": "another-attempt"}))
    assert dup == {"status": "duplicate", "stand_down": True}
    wait_until(lambda: summary(sub)["status"] == "COMPLETE")
    done = summary(sub)
    assert done["done"] == 5 and done["duplicate_reports"] == 1
    results = {m["job_key"]: m["result"] for m in done["members"]}
    assert results["grp-t-1-0003"] == {"value": 4}
    # The collector tells user-info (starting it) before it records the event itself.
    assert wait_until(
        lambda: [e for e in host.list_events(limit=1000) if e.kind == "compute-group.done"]
    )


def test_resubmitting_the_same_group_creates_nothing_twice(host: Host) -> None:
    states = [FakeGroupJobState(value=i) for i in range(3)]
    first = submit_compute_job_group(host, FakeGroupJob, states, group_id="grp-t-2")
    again = submit_compute_job_group(host, FakeGroupJob, states, group_id="grp-t-2")
    assert {k: p.agent_id for k, p in first.jobs.items()} == {
        k: p.agent_id for k, p in again.jobs.items()
    }
    assert first.collector.agent_id == again.collector.agent_id
    classes = [a["class_name"] for a in host.list_agents()]
    assert sum("FakeGroupJob" in c for c in classes) == 3
    assert summary(again)["expected"] == 3


def test_collector_on_tagged_host_returns_home_when_complete(
    make_host: Callable[..., Host],
) -> None:
    alpha = make_host("alpha", tags=["laptop"])
    beta = make_host("beta", peers=[alpha.address], tags=["linux", "collector"])
    wait_until(lambda: len(alpha.list_hosts(online_only=True)) == 2, timeout=20)
    states = [FakeGroupJobState(value=i) for i in range(3)]
    sub = submit_compute_job_group(alpha, FakeGroupJob, states, return_home_when_complete=True)
    assert not sub.warnings
    assert beta.get_proxy(sub.collector.agent_id) is not None
    for proxy in sub.jobs.values():
        assert proxy.send(Message("report"))["status"] == "accepted"
    wait_until(lambda: alpha.get_proxy(sub.collector.agent_id) is not None, timeout=30)
    home = alpha.proxy(sub.collector.agent_id)
    wait_until(lambda: home.send(Message("summary"))["status"] == "COMPLETE", timeout=30)
    assert home.send(Message("summary"))["at_home"] is True


def test_cancel_and_retry_failed(host: Host) -> None:
    states = [FakeGroupJobState(value=i) for i in range(3)]
    sub = submit_compute_job_group(host, FakeGroupJob, states, group_id="grp-t-3")
    keys = sorted(sub.jobs)
    failure = {
        "group_id": "grp-t-3",
        "job_key": keys[0],
        "agent_id": sub.jobs[keys[0]].agent_id,
        "report_id": "f1",
        "error": "ValueError: bad bundle",
        "kind": "exception",
        "stage": "run",
    }
    assert sub.collector.send(Message("job_failure", failure))["status"] == "accepted"
    retried = sub.collector.send(Message("retry_failed", {}))
    assert [r["job_key"] for r in retried["recreated"]] == [keys[0]]
    assert retried["recreated"][0]["agent_id"] != sub.jobs[keys[0]].agent_id
    assert summary(sub)["counts"]["created"] == 3
    new_job = host.proxy(retried["recreated"][0]["agent_id"])
    assert host.get_state(new_job.agent_id).attempt == 2
    assert new_job.send(Message("report"))["status"] == "accepted"
    reply = sub.collector.send(Message("cancel", {"kill_running": True}))
    assert reply["cancelling"] == 2
    for key in keys[1:]:
        cancelled = {**failure, "job_key": key, "report_id": "c-" + key, "cancelled": True}
        sub.collector.send(Message("job_failure", cancelled))
    wait_until(lambda: summary(sub)["status"] == "CANCELLED")
    final = summary(sub)
    assert final["done"] == 1 and final["cancelled"] == 2


def test_classes_from_main_are_refused(host: Host) -> None:
    from paglets.core.errors import SerializationError

    local = type("Local", (FakeGroupJob,), {"__module__": "__main__"})
    with pytest.raises(SerializationError, match="__main__"):
        submit_compute_job_group(host, local, [FakeGroupJobState()])
    assert not any(ResultCollectorPaglet.__name__ in a["class_name"] for a in host.list_agents())


def test_deadline_times_out_pending_members(host: Host) -> None:
    states = [FakeGroupJobState(value=i) for i in range(3)]
    sub = submit_compute_job_group(
        host, FakeGroupJob, states, group_id="grp-t-4", deadline_seconds=1.0
    )
    first = sub.jobs["grp-t-4-0001"]
    assert first.send(Message("report"))["status"] == "accepted"
    wait_until(lambda: summary(sub)["status"] == "COMPLETE", timeout=20)
    done = summary(sub)
    assert (done["done"], done["timed_out"]) == (1, 2)
    assert done["deadline_at"] > 0
    # A late report of a timed-out member is still the first report for its key.
    late = sub.jobs["grp-t-4-0002"].send(Message("report"))
    assert late["status"] == "accepted"
    assert sub.collector.send(Message("artifacts"))["artifacts"] == []


def test_a_settled_collector_wakes_for_a_retry(host: Host) -> None:
    sub = submit_compute_job_group(host, FakeGroupJob, [FakeGroupJobState()], group_id="grp-t-5")
    key = "grp-t-5-0001"
    failure = {"job_key": key, "report_id": "f", "error": "E", "kind": "exception"}
    sub.collector.send(Message("job_failure", failure))
    wait_until(lambda: summary(sub)["status"] == "COMPLETE")
    events = lambda: [e for e in host.list_events(limit=1000) if e.kind == "compute-group.done"]  # noqa: E731
    wait_until(lambda: len(events()) == 1)
    (row,) = sub.collector.send(Message("retry_failed", {}))["recreated"]
    assert summary(sub)["status"] == "ACTIVE"
    assert host.proxy(row["agent_id"]).send(Message("report"))["status"] == "accepted"
    wait_until(lambda: summary(sub)["status"] == "COMPLETE" and len(events()) == 2)
