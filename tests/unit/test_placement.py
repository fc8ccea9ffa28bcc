"""Placement filters, ranking and host property constraints (jobs.md §1.3, §2.12, §6)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paglets.remote.mesh import HostRef
from paglets.system.host_properties import (
    check_constraints,
    compare_keys,
    order_key,
    parse_constraint,
)
from paglets.system.placement import (
    GiB,
    HostSummary,
    PlacementNeeds,
    rank_hosts,
    rejection_reasons,
    score_host,
    spread_pick,
)

# -- constraints --------------------------------------------------------------------------

PROPS = {"python": "3.12.4", "os": "linux", "arch": "x86_64", "cuda_driver": "550.54.14"}


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("python", True),
        ("!python", False),
        ("gpu", False),
        ("!gpu", True),
        ("os==linux", True),
        ("os!=linux", False),
        ("python>=3.12", True),
        ("python>=3.13", False),
        ("python<=3.12.4", True),
        ("python>3.12.4", False),
        ("python<3.13", True),
        ("PYTHON>=3.9", True),  # keys are case-insensitive
        ("os in darwin, linux", True),
        ("os in darwin,win32", False),
        ("arch~=x86*", True),
        ("arch~=arm*", False),
        ("cuda_driver>=550", True),
    ],
)
def test_constraint_forms(text: str, holds: bool) -> None:
    assert parse_constraint(text).holds(PROPS) is holds
    assert (check_constraints([text], PROPS) == []) is holds


def test_failures_name_the_constraint_and_the_hosts_value() -> None:
    assert check_constraints(["python>=3.13"], PROPS) == ["`python>=3.13`, host has 3.12.4"]
    assert check_constraints(["gpu"], PROPS) == ["`gpu`, host has no gpu"]
    assert check_constraints(["!os"], PROPS) == ["`!os`, host has os=linux"]


@pytest.mark.parametrize(
    "text", ["", "python>=", "!python>=3", "os>=linux", "os in", ">=3", "py thon"]
)
def test_invalid_constraints_are_refused_when_made(text: str) -> None:
    with pytest.raises(ValueError, match="constraint"):
        parse_constraint(text)
    with pytest.raises(ValueError):
        PlacementNeeds(required_properties=(text,))


def test_a_host_value_that_cannot_be_ordered_fails_the_constraint() -> None:
    assert not parse_constraint("python>=3.9").holds({"python": "unknown"})


def test_dotted_prefixes_and_plain_numbers() -> None:
    assert order_key("3.12.4rc1") == (3.0, 12.0, 4.0)
    assert order_key("-1.5") == (-1.5,)
    assert order_key("linux") is None
    assert order_key("nan") is None
    assert compare_keys(order_key("3.12.4"), order_key("3.12")) == 1
    assert compare_keys(order_key("3.9"), order_key("3.12")) == -1
    assert compare_keys(order_key("3.12.0"), order_key("3.12")) == 0


versions = st.lists(st.integers(min_value=0, max_value=999), min_size=1, max_size=5)


@given(versions, versions)
def test_version_ordering_is_tuple_ordering_with_zero_padding(a: list[int], b: list[int]) -> None:
    left, right = ".".join(map(str, a)), ".".join(map(str, b))
    width = max(len(a), len(b))
    pa, pb = a + [0] * (width - len(a)), b + [0] * (width - len(b))
    expected = (pa > pb) - (pa < pb)
    assert compare_keys(order_key(left), order_key(right)) == expected
    assert parse_constraint(f"v>={right}").holds({"v": left}) is (expected >= 0)
    assert parse_constraint(f"v<{right}").holds({"v": left}) is (expected < 0)


@given(versions, st.sampled_from(["", "rc1", "-dev", "+local", "a"]))
def test_suffixes_are_ignored(a: list[int], suffix: str) -> None:
    text = ".".join(map(str, a))
    assert compare_keys(order_key(text + suffix), order_key(text)) == 0


# -- hosts -----------------------------------------------------------------------------------


def host(name: str, **kw: Any) -> HostSummary:
    base = HostSummary(
        host_id=f"id-{name}",
        host_name=name,
        url=f"http://{name}.invalid:8765",
        age_seconds=1.0,
        tags=frozenset({"linux"}),
        properties=dict(PROPS),
        logical_cpus=8,
        job_cpu_cores=8,
        memory_total_bytes=32 * GiB,
        temp_total_bytes=100 * GiB,
        free_cpu_cores=8,
        free_memory_bytes=16 * GiB,
        free_temp_bytes=50 * GiB,
        cpu_percent=10.0,
        load_per_cpu=0.2,
    )
    return replace(base, **kw)


def codes(h: HostSummary, needs: PlacementNeeds) -> set[str]:
    return {r.code for r in rejection_reasons(h, needs)}


def test_every_filter_has_its_reason() -> None:
    needs = PlacementNeeds(
        cpu_cores=4,
        memory_bytes=8 * GiB,
        required_tags=("Linux",),
        excluded_tags=("laptop",),
        required_properties=("python>=3.12",),
        excluded_hosts=("bad",),
        include_self=False,
        max_age_seconds=20,
        max_load_per_cpu=1.0,
        max_cpu_percent=90,
        require_fit_now=True,
    )
    assert codes(host("ok"), needs) == set()
    assert codes(host("a", status="dead"), needs) == {"offline"}
    assert codes(host("b", error="code version 'x'"), needs) == {"incompatible"}
    assert codes(host("c", is_self=True), needs) == {"self"}
    assert codes(host("bad"), needs) == {"excluded"}
    assert codes(host("d", accepting=False), needs) == {"draining"}
    assert codes(host("e", tags=frozenset()), needs) == {"missing-tag"}
    assert codes(host("f", tags=frozenset({"linux", "laptop"})), needs) == {"excluded-tag"}
    assert codes(host("g", properties={**PROPS, "python": "3.11.2"}), needs) == {"property"}
    assert codes(host("h", job_cpu_cores=2, free_cpu_cores=2), needs) == {"cores", "cores-now"}
    assert codes(host("i", memory_total_bytes=8 * GiB, free_memory_bytes=7 * GiB), needs) == {
        "memory",
        "memory-now",
    }
    assert codes(host("j", age_seconds=30.0), needs) == {"stale"}
    assert codes(host("k", age_seconds=None), needs) == {"no-summary"}
    assert codes(host("l", load_per_cpu=1.5), needs) == {"load"}
    assert codes(host("m", cpu_percent=95.0), needs) == {"cpu-percent"}
    assert codes(host("n", free_cpu_cores=2), needs) == {"cores-now"}


def test_gates_are_off_unless_asked() -> None:
    busy = host("busy", load_per_cpu=9.0, cpu_percent=100.0, age_seconds=600.0, free_cpu_cores=0)
    assert rejection_reasons(busy, PlacementNeeds(cpu_cores=4)) == []


def test_gpus_and_policy() -> None:
    gpu_host = host("g", gpu_memory_total_mb=(16000, 8000), free_gpus=2)
    assert codes(gpu_host, PlacementNeeds(gpus=1, gpu_memory_mb=12000)) == set()
    assert codes(gpu_host, PlacementNeeds(gpus=2, gpu_memory_mb=12000)) == {"gpu-memory"}
    assert codes(host("c"), PlacementNeeds(gpus=1)) == {"gpus"}
    no_gpu_jobs = host("p", gpu_memory_total_mb=(16000,), policy={"gpu_jobs": False})
    assert "gpu-jobs" in codes(no_gpu_jobs, PlacementNeeds(gpus=1))
    capped = host("q", policy={"max_job_cores": 2})
    assert codes(capped, PlacementNeeds(cpu_cores=4)) == {"cores"}


def test_ranking_fits_now_then_start_then_score_then_name() -> None:
    needs = PlacementNeeds(cpu_cores=2, preferred_tags=("fast",))
    idle = host("idle")
    half = host("half", free_cpu_cores=4)
    fast = host("fast-one", free_cpu_cores=4, tags=frozenset({"linux", "fast"}))
    full = host("full", free_cpu_cores=0, next_release_seconds=100.0)
    queued = host("queued", free_cpu_cores=0, queued_core_seconds=8 * 600.0)
    placement = rank_hosts([queued, full, half, idle, fast], needs)
    assert [c.host.host_name for c in placement.candidates] == [
        "idle",
        "fast-one",
        "half",
        "full",
        "queued",
    ]
    assert [c.expected_start_seconds for c in placement.candidates] == [0, 0, 0, 120, 600]
    assert placement.rejected == ()
    assert score_host(fast, needs) < score_host(half, needs)


def test_a_free_gpu_costs_half_a_point_for_work_without_gpus() -> None:
    needs = PlacementNeeds(cpu_cores=1)
    plain, gpu = host("plain"), host("gpu", gpu_memory_total_mb=(8000,), free_gpus=1)
    assert score_host(gpu, needs) == pytest.approx(score_host(plain, needs) + 0.5)
    assert [c.host.host_name for c in rank_hosts([gpu, plain], needs).candidates] == [
        "plain",
        "gpu",
    ]


def test_fallbacks_only_when_allowed_and_marked() -> None:
    needs = PlacementNeeds(max_load_per_cpu=1.0, require_fit_now=True, memory_bytes=GiB)
    loaded = host("loaded", load_per_cpu=3.0)
    tagged_out = host("wrong", tags=frozenset(), load_per_cpu=3.0)
    strict = PlacementNeeds(
        max_load_per_cpu=1.0, require_fit_now=True, memory_bytes=GiB, required_tags=("linux",)
    )
    assert rank_hosts([loaded], needs).candidates == ()
    offered = rank_hosts([loaded, tagged_out], strict, allow_fallback=True)
    (only,) = offered.candidates
    assert only.host.host_name == "loaded" and only.fallback
    assert [r.code for r in only.reasons] == ["load"]
    assert {r.host.host_name for r in offered.rejected} == {"loaded", "wrong"}
    # A real candidate means no fallbacks at all.
    assert [
        c.fallback for c in rank_hosts([loaded, host("ok")], needs, allow_fallback=True).candidates
    ] == [False]


def test_limit_and_spread_pick() -> None:
    hosts = [host(f"h{i}") for i in range(6)]
    placement = rank_hosts(hosts, PlacementNeeds(cpu_cores=1), limit=4)
    assert len(placement.candidates) == 4
    picks = {spread_pick(placement.candidates, f"job-{i}").host.host_name for i in range(60)}
    assert picks == {"h0", "h1", "h2"}  # the best three, all equally good
    assert spread_pick(placement.candidates, "job-7") == spread_pick(placement.candidates, "job-7")
    assert spread_pick((), "x") is None


def test_from_host_ref_reads_the_flat_resources() -> None:
    ref = HostRef(
        name="beta",
        url="http://beta.invalid:8765/",
        code_version="v1",
        host_id="id-beta",
        status="alive",
        tags=["Linux"],
        properties={"Python": "3.12.1"},
        active_count=3,
        resources={
            "logical_cpus": 4,
            "job_cores": 3,
            "memory_total_bytes": 8 * GiB,
            "temp_total_bytes": 10 * GiB,
            "gpus": [{"index": 0, "memory_total_mb": 4096}],
            "free_cpu_cores": 2,
            "free_memory_bytes": 4 * GiB,
            "free_temp_bytes": 5 * GiB,
            "free_gpus": 1,
            "cpu_percent": 35,
            "load_per_cpu": 0.75,
            "accepting": True,
            "load_age_s": 1.5,
            "policy": {"cpu_jobs": True},
        },
    )
    summary = HostSummary.from_host_ref(
        ref, local_url="http://alpha.invalid:8765", local_version="v1"
    )
    assert summary.host_id == "id-beta" and not summary.is_self and summary.error is None
    assert summary.tags == frozenset({"linux"}) and summary.properties == {"python": "3.12.1"}
    assert (summary.job_cpu_cores, summary.free_cpu_cores, summary.gpus_total) == (3, 2, 1)
    assert summary.age_seconds == 1.5 and summary.active_count == 3
    me = HostSummary.from_host_ref(ref, local_url="http://beta.invalid:8765", local_version="v2")
    assert me.is_self and me.age_seconds == 0.0
    assert me.error == "code version 'v1', this host runs 'v2'"
    unknown = HostSummary.from_host_ref(HostRef(name="x", url="http://x.invalid"))
    assert unknown.age_seconds is None and unknown.free_memory_bytes is None
