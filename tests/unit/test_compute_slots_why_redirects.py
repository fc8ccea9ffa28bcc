"""compute-slots `why` (every reason, with numbers), status views, and redirects with
holds, shadows and cooldowns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paglets.persistence.store import Store
from paglets.system.compute_slots import (
    ComputeSlotRequest,
    ComputeSlotsScheduler,
    ExplainWaitRequest,
    GpuSpec,
    HostCapacity,
    HostPolicy,
    MeasuredLoad,
    RedirectHop,
    SchedulerConfig,
    SchedulerStatusRequest,
    SlotDecisionReply,
)
from paglets.system.compute_slots.redirects import RedirectBook, choose_target, redirect_budget
from paglets.system.placement import HostSummary

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


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    stores: list[Store] = []

    def factory(
        cores: int = 4, *, gpus: tuple[GpuSpec, ...] = (), **config: Any
    ) -> ComputeSlotsScheduler:
        config.setdefault("start_burst", 1000)
        store = Store(tmp_path / f"db{len(stores)}")
        stores.append(store)
        return ComputeSlotsScheduler(
            store,
            HostCapacity(
                job_cpu_ids=tuple(range(cores)),
                memory_total_bytes=16 * GiB,
                temp_total_bytes=10 * GiB,
                gpus=gpus,
            ),
            policy=HostPolicy(host_id="h1", host_name="alpha", tags=frozenset({"linux"})),
            config=SchedulerConfig(**config),
            clock=Clock(),
        )

    yield factory
    for store in stores:
        store.close()


def codes(s: ComputeSlotsScheduler, request_id: str) -> dict[str, Any]:
    item = s.why(request_id)
    assert item is not None
    return {r.code: r for r in item.reasons}


# -- why -------------------------------------------------------------------------------


def test_why_lists_every_short_resource_with_numbers(make: Any) -> None:
    s = make(gpus=(GpuSpec(0, "G0", "t4", 16000),))
    s.request_slot(req(1, cores=3, mem=10 * GiB, temp_storage_bytes=2 * GiB, requires_gpu=True))
    s.observe_load(MeasuredLoad(external_busy_cores=0.5))
    s.request_slot(req(2, cores=2, mem=8 * GiB, temp_storage_bytes=9 * GiB, requires_gpu=True))
    found = codes(s, "r2")
    assert {"cpu", "memory", "temp-storage", "gpu"} <= set(found)
    assert found["cpu"].message == "needs 2 cores, 0 free, 1 taken by external load"
    assert found["memory"].need == 8 * GiB
    explained = s.why("r2")
    assert explained is not None and explained.position == 1 and explained.state == "queued"


def test_why_gpu_memory(make: Any) -> None:
    s = make(gpus=(GpuSpec(0, "G0", "t4", 16000), GpuSpec(1, "G1", "a100", 40000)))
    s.request_slot(req(1, requires_gpu=True, gpu_memory_mb=30000))
    s.request_slot(req(2, requires_gpu=True, gpu_memory_mb=30000))
    assert codes(s, "r2")["gpu-memory"].message == (
        "needs GPUs with 30000 MB, free ones have at most 16000 MB"
    )


def test_why_queue_order_reservation_and_backfill(make: Any) -> None:
    s = make()
    s.request_slot(req(1, cores=3, est=600))
    s.request_slot(req(2, cores=4, priority=2, group_id="grp-7", job_key="0001"))
    s.request_slot(req(3, cores=1, est=3600))
    found = codes(s, "r3")
    assert found["queue-order"].message == "1 ahead; first grp-7/0001, priority 2"
    assert found["reservation"].message.startswith("held for j2 from ≈ ")
    assert found["reservation"].until == pytest.approx(s.clock() + 600)


def test_why_throttle_cooldown_and_draining(make: Any) -> None:
    s = make(start_burst=1, start_rate_per_second=0.5)
    s.request_slot(req(1, cores=1))
    s.request_slot(req(2, cores=1, last_redirect_at=s.clock() - 10))
    found = codes(s, "r2")
    assert found["throttle"].message == "next start token in 2.0 s"
    assert found["redirect-cooldown"].until == pytest.approx(s.clock() + 50)
    assert set(found) == {"throttle", "redirect-cooldown"}
    s.set_accepting(False)
    assert "draining" in codes(s, "r2")


def test_why_hold_when_only_a_hold_is_in_the_way(make: Any) -> None:
    s = make()
    s.request_slot(req(1, cores=3, hold_only=True))
    s.request_slot(req(2, cores=2))
    found = codes(s, "r2")
    assert found["hold"].until == pytest.approx(s.clock() + 30)


def test_why_starting_running_unknown_and_never_here(make: Any) -> None:
    s = make()
    lease = s.request_slot(req(1)).lease
    assert lease is not None
    item = s.why("j1")
    assert item is not None and item.state == "starting" and item.reasons[0].code == "starting"
    s.mark_started(lease.lease_id, pid=3)
    item = s.why("a1")
    assert item is not None and item.state == "running" and item.reasons == ()
    assert s.why("nobody") is None
    s.request_slot(req(2, cores=4, required_host_tags=("linux",)))
    s.set_capacity(s.capacity, HostPolicy(host_id="h1"))  # the tag was removed at runtime
    assert codes(s, "r2")["never-here"].message == "missing tag `linux`"


def test_why_backfill_off(make: Any) -> None:
    s = make(max_reservation_slip_seconds=5)
    s.request_slot(req(1, cores=3, est=1))
    s.request_slot(req(2, cores=4, est=1))
    for _ in range(10):
        s.clock.t += 1
        s.tick()
    s.request_slot(req(3, cores=1, est=0))
    assert "backfill-off" in codes(s, "r3")


def test_why_host_status_when_a_sampler_fails(make: Any) -> None:
    s = make(gpus=(GpuSpec(0, "G", "x", 1000),))
    s.observe_load(MeasuredLoad(gpu_ok=False, errors=("gpu",)))
    s.request_slot(req(1, requires_gpu=True))
    assert codes(s, "r1")["host-status"].message == "sampler failed: gpu"


def test_explain_wait_and_status_views(make: Any) -> None:
    s = make()
    s.request_slot(req(1, cores=4, group_id="g"))
    s.request_slot(req(2, cores=2, group_id="g"))
    s.request_slot(req(3, cores=2, group_id="h"))
    reply = s.explain_wait(ExplainWaitRequest(group_ids=("g",)))
    assert reply.host_name == "alpha"
    assert sorted(i.request_id for i in reply.items) == ["r1", "r2"]
    status = s.status(
        SchedulerStatusRequest(include_jobs=True, include_history=True, include_why=True)
    )
    assert [q.request_id for q in status.queue] == ["r2", "r3"]
    assert status.queue[0].first_reason == "cpu"
    assert status.queue[1].expected_start_at >= status.queue[0].expected_start_at
    assert [j.job_id for j in status.jobs] == ["j1"]
    assert [w.request_id for w in status.why] == ["r2", "r3"]
    assert status.status.queue_length == 2 and status.status.queued_core_seconds == 400
    assert status.status.next_release_seconds == 100


# -- redirects -------------------------------------------------------------------------


def peer(host_id: str, cores: int = 4, free: int = 4, **kw: Any) -> HostSummary:
    kw.setdefault("tags", frozenset({"linux"}))
    return HostSummary(
        host_id=host_id,
        host_name=host_id,
        url=f"http://{host_id}:1",
        job_cpu_cores=cores,
        memory_total_bytes=16 * GiB,
        temp_total_bytes=10 * GiB,
        free_cpu_cores=free,
        free_memory_bytes=12 * GiB,
        free_temp_bytes=9 * GiB,
        **kw,
    )


def _busy_queue(s: ComputeSlotsScheduler, n: int) -> None:
    s.request_slot(req(0, cores=4, est=3600))
    for i in range(1, n + 1):
        s.request_slot(req(i, cores=2, est=600))


def test_the_head_and_soon_starting_jobs_stay(make: Any) -> None:
    s = make()
    s.request_slot(req(0, cores=4, est=20))
    for i in (1, 2, 3):
        s.request_slot(req(i, cores=2, est=100))
    # r1 is the head; r2 starts beside it in 20 s (< 30 s); r3 only in 120 s: it may go.
    plans = s.plan_redirects([peer("h2"), peer("h3")])
    assert [p.request.request_id for p in plans] == ["r3"]


def test_budget_shadows_and_pending(make: Any) -> None:
    s = make()
    _busy_queue(s, 9)
    assert redirect_budget(9, s.config) == 4 and redirect_budget(3, s.config) == 2
    plans = s.plan_redirects([peer("h2", free=4), peer("h3", free=2)])
    # Budget 4; r1 is the anchor. Shadows spread them: h2 takes two, h3 one, then full.
    assert [p.request.request_id for p in plans] == ["r2", "r3", "r4"]
    assert sorted(p.target.host_id for p in plans) == ["h2", "h2", "h3"]
    # Asked-for ones are pending until answered: the next pass takes others.
    again = s.plan_redirects([peer("h9", free=64, cores=64)])
    assert [p.request.request_id for p in again] == ["r5", "r6", "r7", "r8"]


def test_cooldown_history_full_marks_and_max_redirects(make: Any) -> None:
    s = make()
    now = s.clock()
    book = RedirectBook()
    r = req(9, cores=2, redirect_history=(RedirectHop("h2", "http://h2:1", now - 10),))
    assert choose_target(r, [peer("h2")], book, now, s.config) is None  # left it 10 s ago
    assert choose_target(r, [peer("h2")], book, now + 60, s.config) is not None
    book.mark_full("h3", now, s.config)
    assert choose_target(req(8), [peer("h3")], book, now, s.config) is None
    assert choose_target(req(8), [peer("h3")], book, now + 10, s.config) is not None
    old = peer("h4", age_seconds=11)
    assert choose_target(req(8), [old], book, now, s.config) is None
    wrong = peer("h5", tags=frozenset())
    assert (
        choose_target(req(8, required_host_tags=("linux",)), [wrong], book, now, s.config) is None
    )
    _busy_queue(s, 4)
    s.request_slot(req(5, cores=2, est=600, redirect_count=8))
    s.request_slot(req(6, cores=2, est=600, last_redirect_at=now - 5))
    ids = [p.request.request_id for p in s.plan_redirects([peer("h9", free=64, cores=64)])]
    assert "r5" not in ids and "r6" not in ids


def test_ranking_prefers_emptier_and_preferred_tags_and_spares_gpus(make: Any) -> None:
    s = make()
    now, book = s.clock(), RedirectBook()
    busy, idle = peer("busy", free=2), peer("idle", free=4)
    assert choose_target(req(1), [busy, idle], book, now, s.config) == idle
    tagged = peer("tagged", free=4, tags=frozenset({"linux", "fast"}))
    assert (
        choose_target(req(1, preferred_host_tags=("fast",)), [idle, tagged], book, now, s.config)
        == tagged
    )
    gpu = peer("gpu", gpu_memory_total_mb=(16000,), free_gpus=1)
    assert choose_target(req(1), [gpu, peer("cpu")], book, now, s.config).host_id == "cpu"


def test_a_run_now_hold_moves_the_job_and_a_sleep_marks_the_peer_full(make: Any) -> None:
    s = make()
    _busy_queue(s, 4)
    plans = s.plan_redirects([peer("h2", free=4)])
    assert [p.request.request_id for p in plans] == ["r2", "r3"]
    order = s.redirect_answer(
        "r2", SlotDecisionReply(decision="run_now", request_id="r2", hold_id="hold-1")
    )
    assert order is not None and not order.release_only
    assert (order.target_url, order.hold_id) == ("http://h2:1", "hold-1")
    assert "r2" not in [e.request.request_id for e in s.queued()]
    assert s.redirect_answer("r3", SlotDecisionReply(decision="sleep", request_id="r3")) is None
    assert "h2" in s.book.peer_full
    assert s.redirect_answer("r3", SlotDecisionReply(decision="run_now", request_id="r3")) is None


def test_a_hold_for_a_job_that_left_is_released(make: Any) -> None:
    s = make()
    _busy_queue(s, 3)
    plans = s.plan_redirects([peer("h2")])
    rid = plans[0].request.request_id
    s.agent_gone(plans[0].request.agent_id)
    order = s.redirect_answer(
        rid, SlotDecisionReply(decision="run_now", request_id=rid, hold_id="hold-9")
    )
    assert order is not None and order.release_only and order.hold_id == "hold-9"


def test_a_draining_host_lets_its_whole_queue_go(make: Any) -> None:
    s = make()
    _busy_queue(s, 3)
    s.set_accepting(False)
    plans = s.plan_redirects([peer("h2", free=64, cores=64)])
    assert [p.request.request_id for p in plans] == ["r1", "r2", "r3"]
