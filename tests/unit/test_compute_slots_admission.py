"""compute-slots admission: run_now, sleep, redirect, rejected; holds; resource accounting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paglets.persistence.store import Store
from paglets.system.compute_slots import (
    ComputeSlotRequest,
    ComputeSlotsScheduler,
    GpuSpec,
    HostCapacity,
    HostPolicy,
    MeasuredLoad,
    PeerView,
    SchedulerConfig,
    SchedulerHooks,
    SlotReleaseRequest,
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
    def __init__(self, path: Path, capacity: HostCapacity, **kw: Any) -> None:
        self.path = path
        self.capacity = capacity
        self.clock = Clock()
        self.delivered: list[str] = []
        self.peer: PeerView | None = None
        self.kw = kw
        self.open()

    def open(self) -> None:
        self.store = Store(self.path)
        hooks = SchedulerHooks(
            deliver_grant=lambda lease, r: self.delivered.append(r.request_id),
            capable_peer=lambda r: self.peer,
        )
        self.s = ComputeSlotsScheduler(
            self.store,
            self.capacity,
            policy=self.kw.get("policy", HostPolicy(host_id="h1", host_name="alpha")),
            config=self.kw.get("config", SchedulerConfig(start_burst=1000)),
            hooks=hooks,
            clock=self.clock,
        )


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[Harness] = []

    def factory(cores: int = 4, mem: int = 16 * GiB, **kw: Any) -> Harness:
        cap = kw.pop("capacity", None) or HostCapacity(
            job_cpu_ids=tuple(range(cores)), memory_total_bytes=mem, temp_total_bytes=100 * GiB
        )
        h = Harness(tmp_path / f"db{len(made)}" / "paglets.db", cap, **kw)
        made.append(h)
        return h

    yield factory
    for h in made:
        h.store.close()


def test_run_now_takes_distinct_lowest_cpu_ids(make: Any) -> None:
    h = make()
    a = h.s.request_slot(req(1, cores=2))
    b = h.s.request_slot(req(2, cores=2))
    assert a.decision == b.decision == "run_now"
    assert a.lease is not None and b.lease is not None
    assert a.lease.cpu_core_ids == (0, 1) and b.lease.cpu_core_ids == (2, 3)
    assert a.lease.status == "GRANTED" and a.lease.expires_at == h.clock.t + 60
    assert h.delivered == []  # the requester gets its grant in the reply, not as a delivery


def test_sleep_queues_with_position_expected_start_and_reasons(make: Any) -> None:
    h = make()
    h.s.request_slot(req(1, cores=4, est=100))
    reply = h.s.request_slot(req(2, cores=2, est=50))
    assert reply.decision == "sleep"
    assert reply.queue_position == 1
    assert reply.expected_start_at == pytest.approx(h.clock.t + 100)
    assert [r.code for r in reply.reasons] == ["cpu"]
    assert reply.reasons[0].need == 2 and reply.reasons[0].have == 0
    third = h.s.request_slot(req(3, cores=1))
    assert third.queue_position == 2
    assert "queue-order" in [r.code for r in third.reasons]


def test_rerequest_is_idempotent_and_keeps_the_place(make: Any) -> None:
    h = make()
    first = h.s.request_slot(req(1, cores=4))
    again = h.s.request_slot(req(1, cores=4))
    assert again.lease == first.lease
    h.s.request_slot(req(2, cores=4, first_submitted_at=h.clock.t))
    h.s.request_slot(req(3, cores=4))
    h.clock.t += 50
    # A re-request with a new request id from the same agent keeps its seniority and place.
    moved = h.s.request_slot(
        ComputeSlotRequest(
            request_id="r2-bis", job_id="j2", agent_id="a2", cpu_cores=4, memory_bytes=GiB
        )
    )
    assert moved.decision == "sleep" and moved.queue_position == 1
    assert [e.request.request_id for e in h.s.queued()] == ["r2-bis", "r3"]


def test_redirect_when_never_here_but_a_peer_could(make: Any) -> None:
    h = make()
    h.peer = PeerView(host_id="h2", host_url="http://beta:1", host_name="beta")
    reply = h.s.request_slot(req(1, cores=8))
    assert reply.decision == "redirect"
    assert reply.redirect_host_url == "http://beta:1" and reply.redirect_host_id == "h2"
    assert reply.reasons[0].code == "never-here"
    assert h.s.queued() == []


def test_rejected_when_no_host_can_run_it_or_it_is_invalid(make: Any) -> None:
    h = make()
    reply = h.s.request_slot(req(1, cores=8))
    assert reply.decision == "rejected"
    assert "needs 8 cores, host has 4" in reply.message
    bad = h.s.request_slot(req(2, cores=0))
    assert bad.decision == "rejected" and "cpu_cores must be at least 1" in bad.message
    worse = h.s.request_slot(req(3, priority=11))
    assert worse.decision == "rejected" and "priority" in worse.message


def test_never_here_names_tags_constraints_gpus_and_walltime(make: Any) -> None:
    policy = HostPolicy(
        host_id="h1",
        host_name="alpha",
        tags=frozenset({"linux"}),
        properties={"python": "3.12.4"},
        max_walltime_seconds=3600,
    )
    h = make(policy=policy)
    reply = h.s.request_slot(
        req(
            1,
            required_host_tags=("gpu",),
            excluded_host_tags=("linux",),
            required_host_properties=("python>=3.13",),
            requires_gpu=True,
            walltime_seconds=7200,
        )
    )
    text = " | ".join(r.message for r in reply.reasons)
    assert reply.decision == "rejected"
    assert "missing tag `gpu`" in text and "excluded tag `linux`" in text
    assert "`python>=3.13`, host has 3.12.4" in text
    assert "GPU" in text and "walltime 7200 s, host allows at most 3600 s" in text
    ok = h.s.request_slot(
        req(2, required_host_tags=("LINUX",), required_host_properties=("python>=3.12",))
    )
    assert ok.decision == "run_now"


def test_draining_host_redirects_new_and_queued_requests(make: Any) -> None:
    h = make()
    h.s.request_slot(req(1, cores=4))
    assert h.s.request_slot(req(2)).decision == "sleep"
    h.s.set_accepting(False)
    h.peer = PeerView(host_id="h2", host_url="http://beta:1", host_name="beta")
    assert h.s.request_slot(req(3)).decision == "redirect"
    assert h.s.request_slot(req(2)).decision == "redirect"
    assert h.s.queued() == []


def test_hold_only_reserves_then_converts_on_arrival(make: Any) -> None:
    h = make()
    reply = h.s.request_slot(req(1, cores=3, hold_only=True))
    assert reply.decision == "run_now" and reply.hold_id and reply.lease is None
    assert h.s.queued() == []
    # The hold's cores are taken: a 2-core job does not fit.
    assert h.s.request_slot(req(2, cores=2)).decision == "sleep"
    lease = h.s.request_slot(req(1, cores=3, hold_id=reply.hold_id)).lease
    assert lease is not None and lease.hold_id == reply.hold_id and len(lease.cpu_core_ids) == 3
    assert h.s.holds() == []


def test_hold_only_that_cannot_start_queues_nothing(make: Any) -> None:
    h = make()
    h.s.request_slot(req(1, cores=4))
    reply = h.s.request_slot(req(2, hold_only=True))
    assert reply.decision == "sleep" and not reply.hold_id
    assert h.s.queued() == [] and h.s.holds() == []


def test_expired_hold_frees_its_resources_and_a_late_arrival_queues(make: Any) -> None:
    h = make()
    hold_id = h.s.request_slot(req(1, cores=4, hold_only=True)).hold_id
    assert h.s.request_slot(req(2)).decision == "sleep"
    h.clock.t += 31
    report = h.s.tick()
    assert [g.request_id for g in report.grants] == ["r2"] and h.delivered == ["r2"]
    late = h.s.request_slot(req(1, cores=4, hold_id=hold_id))
    assert late.decision == "sleep"  # the hold is gone: it waits like any other


def test_released_hold_frees_at_once(make: Any) -> None:
    h = make()
    hold_id = h.s.request_slot(req(1, cores=4, hold_only=True)).hold_id
    h.s.request_slot(req(2))
    assert h.s.release_slot(SlotReleaseRequest(hold_id=hold_id)).released
    assert h.delivered == ["r2"]


def test_an_arrival_never_jumps_a_reservation(make: Any) -> None:
    h = make()
    h.s.request_slot(req(1, cores=2, est=100))
    h.s.request_slot(req(2, cores=4, est=100))  # head: reserved for when r1 ends
    long = h.s.request_slot(req(3, cores=2, est=500))
    assert long.decision == "sleep"
    assert "reservation" in [r.code for r in long.reasons]
    short = h.s.request_slot(req(4, cores=2, est=50))
    assert short.decision == "run_now"  # it ends before the reservation: backfilled


def test_gpus_lowest_index_with_enough_memory(make: Any) -> None:
    gpus = (
        GpuSpec(0, "GPU-a", "small", 8000),
        GpuSpec(1, "GPU-b", "big", 40000),
        GpuSpec(2, "GPU-c", "big", 40000),
    )
    cap = HostCapacity(job_cpu_ids=(0, 1, 2, 3), memory_total_bytes=64 * GiB, gpus=gpus)
    h = make(capacity=cap)
    lease = h.s.request_slot(req(1, requires_gpu=True, gpu_memory_mb=30000)).lease
    assert lease is not None and lease.gpu_ids == ("GPU-b",) and lease.gpu_indices == (1,)
    two = h.s.request_slot(req(2, requires_gpu=True, gpu_count=2, gpu_memory_mb=1000))
    assert two.lease is not None and two.lease.gpu_indices == (0, 2)
    waiting = h.s.request_slot(req(3, requires_gpu=True))
    assert [r.code for r in waiting.reasons] == ["gpu"]
    assert h.s.request_slot(req(4)).decision == "run_now"  # a CPU job needs no GPU


def test_no_gpu_lease_while_the_gpu_sampler_fails(make: Any) -> None:
    cap = HostCapacity(
        job_cpu_ids=(0, 1), memory_total_bytes=8 * GiB, gpus=(GpuSpec(0, "G", "x", 16000),)
    )
    h = make(capacity=cap)
    h.s.observe_load(MeasuredLoad(gpu_ok=False, errors=("gpu",)))
    reply = h.s.request_slot(req(1, requires_gpu=True))
    assert reply.decision == "sleep"
    assert "host-status" in [r.code for r in reply.reasons]
    assert h.s.request_slot(req(2)).decision == "run_now"


def test_memory_counts_each_job_once_and_external_use(make: Any) -> None:
    h = make(mem=16 * GiB)  # headroom 1.6 GiB
    lease = h.s.request_slot(req(1, mem=4 * GiB)).lease
    assert lease is not None
    # The job uses 6 GiB (more than declared); something else uses 2 GiB.
    h.s.record_usage({lease.lease_id: _sample(rss=6 * GiB)})
    h.s.observe_load(MeasuredLoad(available_memory_bytes=16 * GiB - 8 * GiB))
    free = h.s.host_status().free_memory_bytes
    assert free == 16 * GiB - int(1.6 * GiB) - 6 * GiB - 2 * GiB
    assert h.s.request_slot(req(2, mem=7 * GiB)).decision == "sleep"
    assert h.s.request_slot(req(3, mem=6 * GiB)).decision == "run_now"


def test_external_busy_cores_are_kept_out(make: Any) -> None:
    h = make(cores=4)
    h.s.observe_load(MeasuredLoad(external_busy_cores=1.2))
    reply = h.s.request_slot(req(1, cores=3))
    assert reply.decision == "sleep"
    assert "2 taken by external load" in reply.reasons[0].message
    off = make(cores=4, config=SchedulerConfig(start_burst=1000, respect_external_load=False))
    off.s.observe_load(MeasuredLoad(external_busy_cores=1.2))
    assert off.s.request_slot(req(1, cores=3)).decision == "run_now"


def test_max_active_leases(make: Any) -> None:
    h = make(config=SchedulerConfig(start_burst=1000, max_active_leases=1))
    assert h.s.request_slot(req(1)).decision == "run_now"
    reply = h.s.request_slot(req(2))
    assert reply.decision == "sleep" and "max-jobs" in [r.code for r in reply.reasons]


def _sample(*, rss: int = 0, cpu: float = 0.0, pct: float | None = None) -> Any:
    from paglets.system.compute_slots import UsageSample

    return UsageSample(at=0.0, cpu_seconds=cpu, cpu_percent=pct, rss_bytes=rss, process_count=1)
