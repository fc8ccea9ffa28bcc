"""compute-slots leases: start deadline, TTL, walltime, memory watchdog, release, cancel,
vanished requests, activation failures, durability across a reopen, restart recovery."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from paglets.persistence.store import Store
from paglets.system.compute_slots import (
    CancelSlotRequestsRequest,
    ComputeSlotRequest,
    ComputeSlotsScheduler,
    HostCapacity,
    HostPolicy,
    MeasuredLoad,
    SchedulerConfig,
    SchedulerHooks,
    SlotLease,
    SlotReleaseRequest,
    UsageSample,
)

GiB = 1024**3


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def req(
    n: int | str, *, cores: int = 1, est: float = 100.0, mem: int = GiB, **kw: Any
) -> ComputeSlotRequest:
    return ComputeSlotRequest(
        request_id=f"r{n}",
        job_id=f"j{n}",
        agent_id=f"a{n}",
        cpu_cores=cores,
        estimated_runtime_seconds=est,
        memory_bytes=mem,
        **kw,
    )


class Harness:
    """A scheduler over a real store, with every hook call recorded."""

    def __init__(self, path: Path, config: SchedulerConfig, cores: int = 4) -> None:
        self.path = path
        self.config = config
        self.capacity = HostCapacity(job_cpu_ids=tuple(range(cores)), memory_total_bytes=16 * GiB)
        self.clock = Clock()
        self.delivered: list[str] = []
        self.stops: list[tuple[str, str, float]] = []
        self.cancelled: list[str] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.deliver: Callable[[SlotLease, ComputeSlotRequest], str | None] = lambda lease, r: None
        self.open()

    def _deliver(self, lease: SlotLease, r: ComputeSlotRequest) -> str | None:
        failure = self.deliver(lease, r)
        if failure is None:
            self.delivered.append(r.request_id)
        return failure

    def open(self) -> None:
        self.store = Store(self.path)
        hooks = SchedulerHooks(
            deliver_grant=self._deliver,
            stop_job=lambda lease, reason, grace: self.stops.append((lease.job_id, reason, grace)),
            cancel_waiting=lambda r: self.cancelled.append(r.request_id),
            event=lambda kind, data: self.events.append((kind, data)),
        )
        self.s = ComputeSlotsScheduler(
            self.store,
            self.capacity,
            policy=HostPolicy(host_id="h1", host_name="alpha"),
            config=self.config,
            hooks=hooks,
            clock=self.clock,
        )

    def reopen(self) -> None:
        self.store.close()
        self.open()

    def lease_of(self, request_id: str) -> SlotLease:
        return next(lease for lease in self.s.leases() if lease.request_id == request_id)

    def history(self, job_id: str) -> list[str]:
        return [row.finish_reason for row in self.s.history(job_id=job_id)]


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "paglets.db", SchedulerConfig(start_burst=1000))
    yield harness
    harness.store.close()


def test_a_grant_not_started_within_the_deadline_ends_not_started(h: Harness) -> None:
    h.s.request_slot(req(1, cores=4))
    h.s.request_slot(req(2, cores=4))
    h.clock.t += 60
    report = h.s.tick()
    assert [row.finish_reason for row in report.closed] == ["not-started"]
    assert [g.request_id for g in report.grants] == ["r2"]


def test_running_lease_renews_and_expires_when_the_supervisor_is_gone(h: Harness) -> None:
    lease = h.s.request_slot(req(1)).lease
    assert lease is not None
    running = h.s.mark_started(lease.lease_id, pid=4242, pid_started_at=1.0)
    assert running.status == "RUNNING" and running.pid == 4242
    for _ in range(5):  # renewed every 20 s: never expires
        h.clock.t += 20
        assert h.s.renew_lease(lease.lease_id) is not None
        assert h.s.tick().closed == []
    h.clock.t += 61
    report = h.s.tick()
    assert [row.finish_reason for row in report.closed] == ["expired"]
    assert h.stops == [("j1", "expired", 0.0)]
    assert h.s.renew_lease(lease.lease_id) is None
    with pytest.raises(KeyError, match="request a slot again"):
        h.s.mark_started(lease.lease_id, pid=1)


def test_walltime_stops_the_job_once_and_the_exit_is_recorded_as_walltime(h: Harness) -> None:
    lease = h.s.request_slot(req(1, walltime_seconds=30)).lease
    assert lease is not None and lease.walltime_seconds == 30
    h.s.mark_started(lease.lease_id, pid=77)
    h.clock.t += 29
    assert h.s.tick().stops == []
    h.clock.t += 1
    report = h.s.tick()
    assert [reason for _, reason in report.stops] == ["walltime"]
    assert h.stops == [("j1", "walltime", 10.0)]
    h.s.renew_lease(lease.lease_id)
    h.clock.t += 5
    assert h.s.tick().stops == []  # asked once, not every tick
    reply = h.s.release_slot(
        SlotReleaseRequest(lease_id=lease.lease_id, reason="killed", exit_code=-15)
    )
    assert reply.history_row is not None
    assert reply.history_row.finish_reason == "walltime" and reply.history_row.signal == 15


def test_host_default_walltime_applies(tmp_path: Path) -> None:
    harness = Harness(
        tmp_path / "db", SchedulerConfig(start_burst=1000, default_walltime_seconds=5)
    )
    try:
        lease = harness.s.request_slot(req(1)).lease
        assert lease is not None and lease.walltime_seconds == 5
    finally:
        harness.store.close()


def test_memory_watchdog_kills_the_largest_overrun_only_under_pressure(h: Harness) -> None:
    a = h.s.request_slot(req(1, mem=GiB)).lease
    b = h.s.request_slot(req(2, mem=GiB)).lease
    assert a is not None and b is not None
    for lease in (a, b):
        h.s.mark_started(lease.lease_id, pid=1)
    h.s.record_usage(
        {
            a.lease_id: UsageSample(at=0, rss_bytes=2 * GiB),
            b.lease_id: UsageSample(at=0, rss_bytes=4 * GiB),
        }
    )
    h.s.observe_load(MeasuredLoad(available_memory_bytes=8 * GiB))
    assert h.s.tick().stops == []  # over their declaration, but the host has memory
    h.s.observe_load(MeasuredLoad(available_memory_bytes=GiB))
    assert [(s.job_id, r) for s, r in h.s.tick().stops] == [("j2", "memory")]


def test_release_is_idempotent_and_checks_the_reason(h: Harness) -> None:
    lease = h.s.request_slot(req(1)).lease
    assert lease is not None
    with pytest.raises(ValueError, match="release reason 'done'"):
        h.s.release_slot(SlotReleaseRequest(lease_id=lease.lease_id, reason="done"))
    assert not h.s.release_slot(
        SlotReleaseRequest(lease_id=lease.lease_id, agent_id="other")
    ).released
    assert h.s.release_slot(SlotReleaseRequest(lease_id=lease.lease_id)).released
    assert not h.s.release_slot(SlotReleaseRequest(lease_id=lease.lease_id)).released
    assert h.history("j1") == ["released"]


def test_release_grants_the_next_request_at_once(h: Harness) -> None:
    lease = h.s.request_slot(req(1, cores=4)).lease
    assert lease is not None
    h.s.request_slot(req(2, cores=4))
    h.s.release_slot(SlotReleaseRequest(lease_id=lease.lease_id))
    assert h.delivered == ["r2"]


def test_usage_lands_in_the_history_row(h: Harness) -> None:
    lease = h.s.request_slot(req(1, cores=2)).lease
    assert lease is not None
    h.s.mark_started(lease.lease_id, pid=5)
    h.s.record_usage({lease.lease_id: UsageSample(at=1, cpu_seconds=1.0, rss_bytes=100)})
    h.s.record_usage(
        {lease.lease_id: UsageSample(at=2, cpu_seconds=9.0, cpu_percent=160.0, rss_bytes=300)}
    )
    h.s.record_usage(
        {lease.lease_id: UsageSample(at=3, cpu_seconds=10.0, cpu_percent=40.0, rss_bytes=200)}
    )
    h.clock.t += 10
    row = h.s.release_slot(SlotReleaseRequest(lease_id=lease.lease_id, exit_code=0)).history_row
    assert row is not None
    assert row.cpu_seconds == 10.0 and row.max_rss_bytes == 300
    assert row.cpu_percent_mean == pytest.approx(100.0) and row.cpu_percent_max == 160.0
    assert row.efficiency == pytest.approx(10.0 / (2 * 10))
    assert row.run_seconds == 10 and row.cpu_core_ids == lease.cpu_core_ids


def test_cancel_dequeues_and_stops_running_jobs(h: Harness) -> None:
    running = h.s.request_slot(req(1, cores=4, group_id="g")).lease
    assert running is not None
    h.s.mark_started(running.lease_id, pid=9)
    h.s.request_slot(req(2, group_id="g"))
    h.s.request_slot(req(3, group_id="other"))
    nothing = h.s.cancel(CancelSlotRequestsRequest())
    assert nothing.matched == () and "no filter given" in nothing.errors[0]
    dry = h.s.cancel(CancelSlotRequestsRequest(group_ids=("g",), include_leases=True, dry_run=True))
    assert set(dry.matched) == {"r1", "r2"} and len(h.s.queued()) == 2
    reply = h.s.cancel(
        CancelSlotRequestsRequest(group_ids=("g",), include_leases=True, kill_grace_seconds=3)
    )
    assert reply.cancelled_requests == ("r2",) and reply.stopped_jobs == ("j1",)
    assert h.cancelled == ["r2"] and h.stops == [("j1", "cancelled", 3.0)]
    assert [e.request.request_id for e in h.s.queued()] == ["r3"]
    assert h.history("j2") == ["cancelled"]
    h.s.release_slot(SlotReleaseRequest(lease_id=running.lease_id, reason="killed", exit_code=-15))
    assert h.history("j1") == ["cancelled"]


def test_cancel_without_running_leaves_running_jobs_alone(h: Harness) -> None:
    h.s.request_slot(req(1))
    reply = h.s.cancel(CancelSlotRequestsRequest(all=True))
    assert reply.matched == () and h.stops == [] and len(h.s.leases()) == 1


def test_a_vanished_request_is_removed_and_the_queue_moves_on(h: Harness) -> None:
    lease = h.s.request_slot(req(1, cores=4)).lease
    assert lease is not None
    h.s.request_slot(req(2, cores=4))
    h.s.request_slot(req(3, cores=4))
    assert h.s.agent_gone("a2") == 1
    assert h.history("j2") == ["vanished"]
    assert [e.request.request_id for e in h.s.queued()] == ["r3"]
    h.s.release_slot(SlotReleaseRequest(lease_id=lease.lease_id))
    assert h.delivered == ["r3"]


def test_reconcile_sweeps_requests_whose_paglet_is_unknown(h: Harness) -> None:
    h.s.request_slot(req(1, cores=4))
    for n in (2, 3, 4):
        h.s.request_slot(req(n, cores=4))
    gone = h.s.reconcile(lambda agent_id: agent_id in {"a1", "a3"})
    assert gone == ["a2", "a4"]
    assert [e.request.request_id for e in h.s.queued()] == ["r3"]


def test_a_grant_to_a_vanished_job_rolls_back_and_the_next_one_starts(h: Harness) -> None:
    lease = h.s.request_slot(req(1, cores=4)).lease
    assert lease is not None
    h.s.request_slot(req(2, cores=4))
    h.s.request_slot(req(3, cores=4))
    h.deliver = lambda ls, r: "vanished" if r.request_id == "r2" else None
    h.s.release_slot(SlotReleaseRequest(lease_id=lease.lease_id))
    assert h.delivered == ["r3"]
    assert h.history("j2") == ["vanished"]
    assert [ls.request_id for ls in h.s.leases()] == ["r3"]


def test_activation_failure_is_recorded_with_an_event(h: Harness) -> None:
    def fail(lease: SlotLease, r: ComputeSlotRequest) -> str | None:
        if r.request_id == "r2":
            raise ImportError("No module named 'missing'")
        return None

    lease = h.s.request_slot(req(1, cores=4)).lease
    assert lease is not None
    h.s.request_slot(req(2, cores=4, agent_class="pkg.mod:Job"))
    h.s.request_slot(req(3, cores=4))
    h.deliver = fail
    h.s.release_slot(SlotReleaseRequest(lease_id=lease.lease_id))
    assert h.delivered == ["r3"] and h.history("j2") == ["activation-failed"]
    kind, data = h.events[0]
    assert kind == "compute-activation-failed" and data["class"] == "pkg.mod:Job"
    assert "No module named" in data["error"]


def test_the_queue_survives_a_reopen_in_order(h: Harness) -> None:
    h.s.request_slot(req(1, cores=4))
    h.s.request_slot(req(2, cores=2, priority=1))
    h.s.request_slot(req(3, cores=2, priority=5))
    h.clock.t += 1
    h.s.request_slot(req(4, cores=2, priority=5))
    hold = h.s.request_slot(req(5, hold_only=True))
    before = [e.request.request_id for e in h.s.queued()]
    h.reopen()
    assert [e.request.request_id for e in h.s.queued()] == before == ["r3", "r4", "r2"]
    assert [ls.request_id for ls in h.s.leases()] == ["r1"]
    assert hold.decision == "sleep" and h.s.holds() == []


def test_recover_after_restart_closes_running_and_redelivers_granted(h: Harness) -> None:
    a = h.s.request_slot(req(1, cores=2)).lease
    b = h.s.request_slot(req(2, cores=2)).lease
    assert a is not None and b is not None
    h.s.mark_started(a.lease_id, pid=321, pid_started_at=5.0)
    h.reopen()
    closed = h.s.recover()
    assert [row.finish_reason for row in closed] == ["host-restart"]
    assert h.stops == [("j1", "host-restart", 0.0)]
    assert h.delivered == ["r2"]
    assert h.lease_of("r2").expires_at == h.clock.t + 60


def test_status_reads_have_no_side_effects(h: Harness) -> None:
    h.s.request_slot(req(1, cores=4))
    h.s.request_slot(req(2, cores=4))
    h.clock.t += 120  # the grant is past its start deadline, but only a tick ends it
    status = h.s.status()
    h.s.why("r2")
    assert len(status.leases) == 1 and len(h.s.leases()) == 1
    assert status.status.starting_jobs == 1 and status.status.queue_length == 1
