"""compute-slots resources: CPU-id allocation (never double-assigned, a hypothesis
property), NUMA placement, constraints, tunables, usage of a real process tree, affinity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paglets.persistence.store import Store
from paglets.system.compute_slots import (
    CancelSlotRequestsRequest,
    ComputeSlotRequest,
    ComputeSlotsScheduler,
    HostCapacity,
    ProcessTreeSampler,
    SchedulerConfig,
    SlotReleaseRequest,
    UsageMonitor,
    apply_process_cpu_affinity,
    cpu_affinity_supported,
)
from paglets.system.compute_slots.accounting import pick_cpu_ids
from paglets.system.compute_slots.usage import directory_bytes
from support.waiting import wait_until

GiB = 1024**3


# -- CPU ids ---------------------------------------------------------------------------


def test_pick_cpu_ids_prefers_one_numa_node_and_the_tightest() -> None:
    nodes = ((0, 1, 2, 3), (4, 5, 6, 7))
    assert pick_cpu_ids({0, 1, 2, 3, 4, 5, 6, 7}, 2, nodes) == (0, 1)
    assert pick_cpu_ids({0, 4, 5, 6, 7}, 1, nodes) == (0,)  # node 0 is the tighter fit
    assert pick_cpu_ids({2, 3, 4, 5, 6}, 3, nodes) == (4, 5, 6)
    assert pick_cpu_ids({2, 3, 4, 5}, 3, nodes) == (2, 3, 4)  # no node has 3: the lowest
    assert pick_cpu_ids({1, 2}, 3, nodes) is None
    assert pick_cpu_ids({9, 3}, 2) == (3, 9)


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.integers(1, 4), st.booleans()),
        st.tuples(st.just("release"), st.integers(0, 20), st.booleans()),
        st.tuples(st.just("start"), st.integers(0, 20), st.booleans()),
        st.tuples(st.just("convert"), st.integers(0, 20), st.booleans()),
        st.tuples(st.just("cancel"), st.integers(0, 40), st.booleans()),
        st.tuples(st.just("tick"), st.integers(0, 70), st.booleans()),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS)
def test_cpu_ids_are_never_assigned_twice(ops: list[tuple[str, int, bool]]) -> None:
    job_ids = (1, 2, 3, 5, 6, 7)  # 0 and 4 kept for the OS
    capacity = HostCapacity(
        job_cpu_ids=job_ids, memory_total_bytes=64 * GiB, numa_nodes=((1, 2, 3), (5, 6, 7))
    )
    clock = [1_000_000.0]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "db")
        try:
            s = ComputeSlotsScheduler(
                store, capacity, config=SchedulerConfig(start_burst=3), clock=lambda: clock[0]
            )
            n = 0
            holds: list[tuple[str, ComputeSlotRequest]] = []
            for op, arg, flag in ops:
                if op == "request":
                    n += 1
                    r = ComputeSlotRequest(
                        request_id=f"r{n}",
                        job_id=f"j{n}",
                        agent_id=f"a{n}",
                        cpu_cores=arg,
                        memory_bytes=GiB,
                        estimated_runtime_seconds=30,
                        hold_only=flag,
                    )
                    reply = s.request_slot(r)
                    if reply.hold_id:
                        holds.append((reply.hold_id, r))
                elif op == "convert" and holds:
                    hold_id, r = holds.pop(arg % len(holds))
                    s.request_slot(
                        ComputeSlotRequest(**{**_fields(r), "hold_id": hold_id, "hold_only": False})
                    )
                elif op in ("release", "start") and s.leases():
                    lease = s.leases()[arg % len(s.leases())]
                    if op == "release":
                        s.release_slot(SlotReleaseRequest(lease_id=lease.lease_id))
                    else:
                        s.mark_started(lease.lease_id, pid=1)
                elif op == "cancel":
                    s.cancel(
                        CancelSlotRequestsRequest(agent_ids=(f"a{arg}",), include_running=flag)
                    )
                elif op == "tick":
                    clock[0] += arg
                    s.tick()
                taken: list[int] = []
                for lease in s.leases():
                    assert len(lease.cpu_core_ids) == lease.cpu_cores
                    taken.extend(lease.cpu_core_ids)
                for hold in s.holds():
                    assert len(hold.cpu_core_ids) == hold.request.cpu_cores
                    taken.extend(hold.cpu_core_ids)
                assert len(taken) == len(set(taken)), f"a CPU id was given twice: {sorted(taken)}"
                assert set(taken) <= set(job_ids)
        finally:
            store.close()


def _fields(r: ComputeSlotRequest) -> dict[str, object]:
    return {f: getattr(r, f) for f in r.__struct_fields__}


# -- constraints and tunables ----------------------------------------------------------


def test_config_warns_about_paglets_2_tunables_and_refuses_unknown_ones() -> None:
    warnings: list[str] = []
    config = SchedulerConfig.from_mapping(
        {"grant_interval": 15, "burst_memory_factor": 2, "start_rate_per_second": 8},
        warn=warnings.append,
    )
    assert config.start_rate_per_second == 8
    assert any("grant_interval is ignored" in w and "start_rate_per_second" in w for w in warnings)
    assert any("burst_memory_factor is ignored" in w for w in warnings)
    with pytest.raises(ValueError, match="has no setting 'granularity'; known settings"):
        SchedulerConfig.from_mapping({"granularity": 1})
    with pytest.raises(ValueError, match="memory_enforcement must be one of"):
        SchedulerConfig(memory_enforcement="strict")
    assert SchedulerConfig().burst_for(2) == 4 and SchedulerConfig().burst_for(64) == 32


# -- usage and affinity with real processes --------------------------------------------

_BUSY_WITH_CHILD = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "end = time.time() + 120\n"
    "while time.time() < end:\n"
    "    pass\n"
)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def test_usage_of_a_real_process_tree() -> None:
    proc = subprocess.Popen([sys.executable, "-c", _BUSY_WITH_CHILD], start_new_session=True)
    try:
        sampler = ProcessTreeSampler(proc.pid, create_time=psutil.Process(proc.pid).create_time())
        wait_until(lambda: len(psutil.Process(proc.pid).children()) == 1, timeout=30)
        first = sampler.sample()
        assert first is not None and first.cpu_percent is None  # a rate needs two readings
        root = psutil.Process(proc.pid)

        def burned() -> bool:
            times = root.cpu_times()
            return times.user + times.system > first.cpu_seconds + 0.2

        wait_until(burned, timeout=60)  # polled on psutil, so the sampler's interval is long
        second = sampler.sample()
        assert second is not None and second.cpu_percent is not None
        assert 0.0 < second.cpu_percent <= 100.0 * (os.cpu_count() or 1) + 25.0
        assert second.rss_bytes > 0 and second.process_count == 2
        assert second.cpu_seconds >= first.cpu_seconds
    finally:
        _kill_group(proc)
    assert sampler.sample() is None


def test_a_recycled_pid_is_not_sampled() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert ProcessTreeSampler(proc.pid, create_time=1.0).sample() is None
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_usage_monitor_measures_work_dirs(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub" / "b").write_bytes(b"y" * 24)
    assert directory_bytes(tmp_path) == 1024
    assert directory_bytes(tmp_path / "missing") == 0
    monitor = UsageMonitor()
    monitor.track("lease-1", os.getpid(), paths=[tmp_path])
    samples = monitor.sample_all(now=10.0)
    assert samples["lease-1"].work_bytes == 1024 and samples["lease-1"].rss_bytes > 0
    (tmp_path / "c").write_bytes(b"z" * 100)
    assert monitor.sample_all(now=20.0)["lease-1"].work_bytes == 1024  # measured every 60 s
    assert monitor.sample_all(now=71.0)["lease-1"].work_bytes == 1124
    monitor.untrack("lease-1")
    assert monitor.sample_all() == {}


@pytest.mark.skipif(not cpu_affinity_supported(), reason="no CPU affinity on this platform")
def test_affinity_is_applied_before_threads_start_and_they_inherit_it() -> None:
    target = sorted(os.sched_getaffinity(0))[:1] if hasattr(os, "sched_getaffinity") else [0]
    code = (
        "import os, threading, sys\n"
        "from paglets.system.compute_slots import apply_current_process_cpu_affinity\n"
        f"r = apply_current_process_cpu_affinity({target!r})\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0))))\n"
        "t.start(); t.join()\n"
        "print(r.enforced, seen[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"True {target}"


@pytest.mark.skipif(not cpu_affinity_supported(), reason="no CPU affinity on this platform")
def test_affinity_of_another_process_and_a_clear_failure() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        first = sorted(psutil.Process(proc.pid).cpu_affinity())[0]
        result = apply_process_cpu_affinity(proc.pid, [first])
        assert result.enforced and psutil.Process(proc.pid).cpu_affinity() == [first]
        bad = apply_process_cpu_affinity(proc.pid, [4096])
        assert not bad.enforced and "could not pin" in bad.error
    finally:
        proc.kill()
        proc.wait(timeout=10)
