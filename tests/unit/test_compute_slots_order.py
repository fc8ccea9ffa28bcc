"""compute-slots order: priorities, aging, fair share, reservations and backfill (with the
starvation bound as a hypothesis property), the start throttle."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paglets.persistence.store import Store
from paglets.system.compute_slots import (
    ComputeSlotRequest,
    ComputeSlotsScheduler,
    HostCapacity,
    SchedulerConfig,
    SchedulerHooks,
    SlotLease,
    SlotReleaseRequest,
)
from paglets.system.compute_slots.planner import TokenBucket

GiB = 1024**3


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def req(n: int | str, *, cores: int = 1, est: float = 100.0, **kw: Any) -> ComputeSlotRequest:
    return ComputeSlotRequest(
        request_id=f"r{n}",
        job_id=f"j{n}",
        agent_id=f"a{n}",
        cpu_cores=cores,
        estimated_runtime_seconds=est,
        memory_bytes=GiB,
        **kw,
    )


class Sim:
    """A scheduler whose granted jobs "run" for a chosen time on the fake clock."""

    def __init__(self, path: Path, config: SchedulerConfig, cores: int = 4) -> None:
        self.clock = Clock()
        self.store = Store(path)
        self.granted: list[SlotLease] = []
        self.s = ComputeSlotsScheduler(
            self.store,
            HostCapacity(job_cpu_ids=tuple(range(cores)), memory_total_bytes=64 * GiB),
            config=config,
            hooks=SchedulerHooks(deliver_grant=lambda lease, r: self.granted.append(lease)),
            clock=self.clock,
        )
        self.ends: dict[str, float] = {}  # lease id -> when its process exits
        self.runtime: dict[str, float] = {}  # request id -> real runtime
        self.started: dict[str, float] = {}  # request id -> start time

    def submit(self, request: ComputeSlotRequest, runtime: float) -> None:
        self.runtime[request.request_id] = runtime
        reply = self.s.request_slot(request)
        if reply.lease is not None:
            self._start(reply.lease)
        self._drain()

    def _start(self, lease: SlotLease) -> None:
        self.s.mark_started(lease.lease_id, pid=1)
        self.started[lease.request_id] = self.clock.t
        self.ends[lease.lease_id] = self.clock.t + self.runtime.get(lease.request_id, 1.0)

    def _drain(self) -> None:
        while self.granted:
            self._start(self.granted.pop(0))

    def step(self, seconds: float = 1.0) -> None:
        self.clock.t += seconds
        for lease_id, end in sorted(self.ends.items(), key=lambda kv: kv[1]):
            if end <= self.clock.t:
                del self.ends[lease_id]
                self.s.release_slot(SlotReleaseRequest(lease_id=lease_id, exit_code=0))
                self._drain()
        for lease_id in self.ends:
            self.s.renew_lease(lease_id)
        self.s.tick()
        self._drain()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Any]:
    made: list[Sim] = []

    def factory(**config: Any) -> Sim:
        config.setdefault("start_burst", 1000)
        s = Sim(tmp_path / f"db{len(made)}", SchedulerConfig(**config))
        made.append(s)
        return s

    yield factory
    for s in made:
        s.store.close()


def test_higher_priority_goes_first_then_seniority(sim: Any) -> None:
    s = sim()
    s.submit(req(0, cores=4), 10)
    s.submit(req(1, priority=0), 10)
    s.clock.t += 1
    s.submit(req(2, priority=3), 10)
    s.submit(req(3, priority=0, first_submitted_at=s.clock.t - 100), 10)  # redirected: older
    assert [e.request.request_id for e in s.s.queued()] == ["r2", "r3", "r1"]


def test_aging_lifts_a_long_waiting_job(sim: Any) -> None:
    s = sim()
    s.submit(req(0, cores=4, est=100_000), 100_000)
    s.submit(req(1, priority=-2), 10)
    s.clock.t += 900 * 3 - 1
    s.submit(req(2, priority=1), 10)
    assert [e.request.request_id for e in s.s.queued()] == ["r2", "r1"]  # -2 + 2 < 1
    s.clock.t += 1  # waited 2700 s: -2 + 3 = 1, and it is older
    assert [e.request.request_id for e in s.s.queued()] == ["r1", "r2"]
    explained = s.s.why("r1")
    assert explained is not None and explained.effective_priority == 1


def test_aging_boost_is_capped_at_ten(sim: Any) -> None:
    s = sim()
    s.submit(req(0, cores=4, est=10**7), 10**7)
    s.submit(req(1, priority=-10), 10)
    s.clock.t += 900 * 50
    explained = s.s.why("r1")
    assert explained is not None and explained.effective_priority == 0


def test_fair_share_puts_owners_with_fewer_cores_first(sim: Any) -> None:
    s = sim(fair_share="owner")
    s.submit(req(0, cores=3, owner="ann"), 100)
    s.submit(req(1, cores=2, owner="ann"), 10)
    s.submit(req(2, cores=2, owner="bob"), 10)
    assert [e.request.request_id for e in s.s.queued()] == ["r2", "r1"]


def test_backfill_only_jobs_that_end_before_the_reservation(sim: Any) -> None:
    s = sim()
    s.submit(req(0, cores=3, est=100), 100)
    s.submit(req(1, cores=4, est=100), 100)  # head: waits for r0, reserved at +100
    s.submit(req(2, cores=1, est=500), 500)  # would delay r1: not backfilled
    s.submit(req(3, cores=1, est=50), 50)  # ends before: backfilled
    assert "r3" in s.started and "r2" not in s.started
    status = s.s.host_status()
    assert status.reserved_request_id == "r1" and status.backfill_enabled
    for _ in range(100):
        s.step()
    assert s.started["r1"] == pytest.approx(1_000_100.0)
    assert "r2" not in s.started


def test_backfill_may_use_what_the_reservation_leaves_spare(sim: Any) -> None:
    s = sim()
    s.submit(req(0, cores=3, est=100), 100)
    s.submit(req(1, cores=2, est=100), 100)  # head: needs 2, 1 free; at +100 3 are spare... 4-2
    long = s.s.request_slot(req(2, cores=1, est=10_000))
    assert long.decision == "run_now"  # runs past t_res but fits in what r1 leaves free


def test_reservation_depth_zero_is_plain_first_fit(sim: Any) -> None:
    s = sim(reservation_depth=0)
    s.submit(req(0, cores=3, est=100), 100)
    s.submit(req(1, cores=4, est=100), 100)
    assert s.s.request_slot(req(2, cores=1, est=10_000)).decision == "run_now"


def test_slipping_reservation_turns_backfill_off(sim: Any) -> None:
    s = sim(max_reservation_slip_seconds=30)
    s.submit(req(0, cores=3, est=10), 1000)  # will overrun its estimate by far
    s.submit(req(1, cores=4, est=10), 10)
    s.submit(req(2, cores=1, est=5), 5)
    assert "r2" in s.started  # backfilled while the reservation holds
    for _ in range(30):  # the reservation slips a second per second from +10 s on
        s.step()
    assert s.s.host_status().backfill_enabled
    for _ in range(15):
        s.step()
    status = s.s.host_status()
    assert not status.backfill_enabled
    reply = s.s.request_slot(req(3, cores=1, est=1))
    assert reply.decision == "sleep"
    assert "backfill-off" in [r.code for r in reply.reasons]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    running=st.lists(
        st.tuples(st.integers(1, 3), st.integers(1, 60), st.integers(1, 200)),
        min_size=1,
        max_size=4,
    ),
    stream=st.lists(
        # estimates of 0 (allowed with allow_zero_runtime_seconds) always "end before" the
        # reservation: only the slip limit stops them from starving the big job
        st.lists(st.tuples(st.integers(1, 2), st.integers(0, 60), st.integers(1, 200)), max_size=3),
        min_size=10,
        max_size=150,
    ),
)
def test_a_large_job_at_the_head_starts_under_a_stream_of_small_ones(
    running: list[tuple[int, int, int]], stream: list[list[tuple[int, int, int]]]
) -> None:
    """Whatever small jobs keep arriving, and however wrong their estimates are, the big
    job starts within: the reservation's first estimate + the slip limit + the longest
    real runtime (then backfill is off and only the jobs running at that moment remain)."""
    slip = 120.0
    with tempfile.TemporaryDirectory() as tmp:
        s = Sim(
            Path(tmp) / "db", SchedulerConfig(start_burst=1000, max_reservation_slip_seconds=slip)
        )
        try:
            n = 0
            for cores, est, real in running:
                s.submit(req(f"pre{n}", cores=cores, est=est), real)
                n += 1
            t0 = s.clock.t
            s.submit(req("big", cores=4, est=100), 100)
            bound = t0 + 60 + slip + 200 + 5
            tick = 0
            while "rbig" not in s.started:
                assert s.clock.t <= bound, "the big job starved"
                for cores, est, real in stream[tick % len(stream)] if tick < 400 else []:
                    s.submit(req(f"s{n}", cores=cores, est=est), real)
                    n += 1
                s.step()
                tick += 1
        finally:
            s.store.close()


def test_throttle_spreads_starts_and_why_says_so(sim: Any) -> None:
    s = sim(start_burst=2, start_rate_per_second=1.0)
    assert s.s.request_slot(req(1)).decision == "run_now"
    assert s.s.request_slot(req(2)).decision == "run_now"
    held = s.s.request_slot(req(3))
    assert held.decision == "sleep"
    throttle = [r for r in held.reasons if r.code == "throttle"]
    assert throttle and throttle[0].until == pytest.approx(s.clock.t + 1.0)
    assert s.s.host_status().next_token_at == pytest.approx(s.clock.t + 1.0)
    s.clock.t += 0.5
    assert s.s.tick().grants == []
    s.clock.t += 0.5
    assert [g.request_id for g in s.s.tick().grants] == ["r3"]


def test_token_bucket_refills_to_its_burst() -> None:
    bucket = TokenBucket(3, 2.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.next_token_at(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert bucket.available(100.0) == 3.0


def test_a_second_reservation_waits_for_the_first_reserved_job(sim: Any) -> None:
    s = sim(reservation_depth=2)
    s.submit(req(0, cores=3, est=100), 100)
    s.submit(req(1, cores=4, est=100), 100)  # reserved from +100 to +200
    s.submit(req(2, cores=4, est=100), 100)  # reserved from +200
    status = s.s.status()
    assert [q.first_reason for q in status.queue] == ["cpu", "cpu"]
    outcome = s.s.last_outcome(s.clock.t)
    assert [(r.request_id, r.t_res - s.clock.t) for r in outcome.reservations] == [
        ("r1", 100.0),
        ("r2", 200.0),
    ]
    assert s.s.request_slot(req(3, cores=1, est=150)).decision == "sleep"  # delays r1
    assert s.s.request_slot(req(4, cores=1, est=50)).decision == "run_now"
