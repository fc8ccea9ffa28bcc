"""The built-in system services on in-process hosts (jobs.md §6): `server-info`,
`mesh-info` and `user-info`, called through their contracts."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from paglets import Host
from paglets.core.errors import PagletError
from paglets.system.mesh_info import (
    LANDSCAPE,
    MESH_INFO,
    SELECT,
    SNAPSHOT,
    SYNC,
    LandscapeRequest,
    SnapshotRequest,
    TargetSelectionRequest,
)
from paglets.system.server_info import (
    DF,
    LOAD,
    PLIST,
    SERVER_INFO,
    SUMMARY,
    DfRequest,
    LoadRequest,
    PlistRequest,
)
from paglets.system.user_info import (
    NOTIFY,
    PI_NOTIFY,
    STREAM,
    USER_INFO,
    UserInfoRequest,
    UserInfoStreamRequest,
)
from support.waiting import wait_until


@pytest.fixture
def make_host(make_host: Callable[..., Host]) -> Callable[..., Host]:
    """These hosts run the built-in system services (tests/conftest.py leaves them off)."""

    def factory(name: str = "alpha", **kwargs: object) -> Host:
        kwargs.setdefault("system_services", True)
        return make_host(name, **kwargs)

    return factory


def user_info_events(host: Host, job: str) -> list[object]:
    host.events.flush()
    return [
        e
        for e in host.list_events(0, 1000)
        if e.kind.startswith("user-info.") and e.data.get("job") == job
    ]


def test_the_system_services_are_built_in_and_lazy(host: Host) -> None:
    status = {s["service"]: s for s in host.services.resident.status()}
    assert {"server-info", "mesh-info", "user-info"} <= set(status)
    for name in ("server-info", "mesh-info", "user-info"):
        assert status[name]["agent_id"] == f"service.{name}"
        assert status[name]["lifecycle"] == "lazy" and not status[name]["live"]
    assert "service.server-info" not in {a["agent_id"] for a in host.list_agents()}
    host.require_contract(SERVER_INFO).call(SUMMARY)
    assert "service.server-info" in {a["agent_id"] for a in host.list_agents()}


def test_server_info_operations(host: Host) -> None:
    handle = host.require_contract(SERVER_INFO)
    load = handle.call(LOAD, LoadRequest())
    assert load.host_name == "alpha" and load.cpu_source in ("sampler", "host-monitor", "interval")
    assert 0.0 <= load.cpu_percent <= 100.0 and load.memory_total_bytes > 0
    assert len(load.load_average) == 3 and load.cpu_count >= 1
    assert load.gpu_present is False or load.gpu_error is None or isinstance(load.gpu_error, str)
    # The sampler runs while the service is active: after a second the answer comes from it.
    wait_until(lambda: handle.call(LOAD, LoadRequest()).cpu_source == "sampler", timeout=10.0)
    sampled = handle.call(LOAD, LoadRequest(include_gpu=False))
    assert len(sampled.per_cpu_percent) == sampled.cpu_count and sampled.gpus == ()
    measured = handle.call(LOAD, LoadRequest(interval=0.2))
    assert measured.cpu_source == "interval" and measured.cpu_window_seconds == 0.2

    default = handle.call(DF, DfRequest())
    assert default.volumes[0].path == os.path.abspath(os.sep)
    assert all(v.error is None and v.total_bytes > 0 for v in default.volumes)
    mixed = handle.call(DF, DfRequest(paths=("/no/such/dir", "~")))
    assert "No such file" in mixed.volumes[0].error and mixed.volumes[1].free_bytes > 0

    me = str(os.getpid())
    listing = handle.call(PLIST, PlistRequest(query="python", limit=1000, include_args=True))
    assert me in {str(p.pid) for p in listing.processes}
    rss = [p.rss_bytes for p in listing.processes]
    assert rss == sorted(rss, reverse=True) and listing.matched >= 1
    assert all("python" in (p.name + p.cmdline).lower() for p in listing.processes)
    short = handle.call(PLIST, PlistRequest(query="python", limit=1))
    assert len(short.processes) == 1 and short.processes[0].cmdline == ""

    summary = handle.call(SUMMARY)
    assert summary.host_id == host.host_id and summary.logical_cpus >= 1
    assert summary.boot_time > 0 and summary.paglets_version


@pytest.fixture
def pair(make_host: Callable[..., Host]) -> tuple[Host, Host]:
    alpha = make_host("alpha", tags=["laptop"])
    beta = make_host("beta", peers=[alpha.address], tags=["linux", "big"])

    def ready(host: Host) -> bool:
        refs = host.list_hosts(online_only=True)
        return {r.name for r in refs} == {"alpha", "beta"} and all(
            "free_cpu_cores" in r.resources and "memory_total_bytes" in r.resources for r in refs
        )  # both the load and the spec (pulled separately) have arrived

    wait_until(lambda: ready(alpha) and ready(beta), timeout=30.0)
    return alpha, beta


def test_mesh_info_reads_the_local_membership_table(pair: tuple[Host, Host]) -> None:
    alpha, beta = pair
    handle = alpha.require_contract(MESH_INFO)
    own = handle.call(SNAPSHOT, SnapshotRequest(force=True))
    assert own.is_self and own.host_id == alpha.host_id and own.tags == ("laptop",)
    assert own.memory_total_bytes > 0 and own.free_memory_bytes is not None
    land = handle.call(LANDSCAPE, LandscapeRequest())
    assert [h.host_name for h in land.hosts] == ["alpha", "beta"] and land.stale == ()
    assert land.hosts[1].host_url == beta.address and land.hosts[1].age_seconds is not None
    assert [h.host_name for h in handle.call(LANDSCAPE, LandscapeRequest(limit=1)).hosts] == [
        "alpha"
    ]
    assert [h.host_name for h in handle.call(SYNC).hosts] == ["alpha", "beta"]


def test_mesh_info_select_applies_every_filter(pair: tuple[Host, Host]) -> None:
    alpha, _ = pair
    handle = alpha.require_contract(MESH_INFO)

    def select(**kw: object) -> tuple[list[str], dict[str, set[str]]]:
        request = TargetSelectionRequest(
            **{"max_load_per_cpu": None, "max_cpu_percent": None, **kw}  # type: ignore[arg-type]
        )
        reply = handle.call(SELECT, request)
        rejected = {r.host_name: {x.code for x in r.reasons} for r in reply.rejected}
        return [t.host.host_name for t in reply.targets], rejected

    names, _ = select()
    assert sorted(names) == ["alpha", "beta"]
    assert select(required_tags=("LINUX",)) == (["beta"], {"alpha": {"missing-tag"}})
    assert select(excluded_tags=("big",)) == (["alpha"], {"beta": {"excluded-tag"}})
    assert select(include_self=False) == (["beta"], {"alpha": {"self"}})
    assert select(required_properties=("python>=99",))[0] == []
    too_much = {"memory", "memory-now"}  # more than the machine has, and than is free
    assert select(min_free_memory_bytes=2**62)[1] == {"alpha": too_much, "beta": too_much}
    # The load gates apply too (paglets 2.0 ignored them): a negative-free bound rejects all.
    reply = handle.call(SELECT, TargetSelectionRequest(max_load_per_cpu=-0.0, max_cpu_percent=None))
    loaded = {r.host_name for r in reply.rejected if any(x.code == "load" for x in r.reasons)}
    assert {t.host.host_name for t in reply.targets} | loaded == {"alpha", "beta"}
    # Fallbacks only when asked for, and marked: all the usable memory, which is never
    # all free at once (both hosts are this machine).
    total = handle.call(SNAPSHOT).memory_total_bytes
    usable = total - min(total // 10, 4 * 1024**3)
    gates_off = {"max_load_per_cpu": None, "max_cpu_percent": None}
    none = handle.call(SELECT, TargetSelectionRequest(min_free_memory_bytes=usable, **gates_off))
    assert none.targets == () and not none.fallback
    assert {x.code for r in none.rejected for x in r.reasons} == {"memory-now"}
    fallback = handle.call(
        SELECT,
        TargetSelectionRequest(min_free_memory_bytes=usable, allow_fallback=True, **gates_off),
    )
    assert fallback.fallback and len(fallback.targets) == 2
    assert all(t.fallback and t.reasons for t in fallback.targets)
    with pytest.raises(PagletError, match="constraint"):
        handle.call(SELECT, TargetSelectionRequest(required_properties=("os>=linux",)))


def test_user_info_records_events_tagged_with_the_job(host: Host) -> None:
    handle = host.require_contract(USER_INFO)
    reply = handle.call(
        NOTIFY, UserInfoRequest(severity="warning", title="t", message="m", job_id="J")
    )
    assert reply.event_id > 0 and not reply.forwarding and not reply.dropped
    handle.call(PI_NOTIFY, UserInfoRequest(title="old name", job_id="J"))  # deprecated alias
    first = handle.call(STREAM, UserInfoStreamRequest(stream_id="s", text="a", job_id="J"))
    second = handle.call(STREAM, UserInfoStreamRequest(stream_id="s", text="b", job_id="J"))
    assert (first.seq, second.seq) == (1, 2)
    events = user_info_events(host, "J")
    assert [e.kind for e in events] == ["user-info.notify"] * 2 + ["user-info.stream"] * 2
    assert events[0].data["severity"] == "warning" and events[0].service_name == "user-info"
    assert [e.data["text"] for e in events[2:]] == ["a", "b"]
    with pytest.raises(PagletError, match="severity"):
        handle.call(NOTIFY, UserInfoRequest(severity="loud"))
    with pytest.raises(PagletError, match="target"):
        handle.call(STREAM, UserInfoStreamRequest(stream_id="s", target="printer"))


def test_user_info_reaches_the_home_host_after_both_restart(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    """Output made while its home is away waits on the sender, survives a restart of the
    sender, and reaches the home when it comes back at another address, exactly once."""
    alpha = make_host("alpha")
    beta = make_host("beta", peers=[alpha.address])
    wait_until(lambda: "beta" in {h.name for h in alpha.list_hosts(online_only=True)})
    wait_until(lambda: "alpha" in {h.name for h in beta.list_hosts(online_only=True)})
    home = alpha.host_id
    sender = beta.require_contract(USER_INFO)

    def notify(title: str) -> object:
        return sender.call(NOTIFY, UserInfoRequest(title=title, job_id="J", home_host_id=home))

    assert notify("while home").forwarding
    wait_until(lambda: len(user_info_events(alpha, "J")) == 1, timeout=20.0)
    (arrived,) = user_info_events(alpha, "J")
    assert arrived.data["origin_host"] == "beta" and arrived.data["title"] == "while home"

    alpha.shutdown()
    wait_until(lambda: "alpha" not in {h.name for h in beta.list_hosts(online_only=True)})
    assert notify("away 1").forwarding and notify("away 2").forwarding
    beta.shutdown()  # the sender stops too, with output still on its way

    beta = make_host("beta", persistence_dir=tmp_path / "beta")
    alpha = make_host("alpha", persistence_dir=tmp_path / "alpha", peers=[beta.address])
    assert alpha.host_id == home
    wait_until(lambda: "service.user-info" in beta.registry.live, timeout=10.0)
    wait_until(lambda: len(user_info_events(alpha, "J")) == 3, timeout=40.0)
    titles = [e.data["title"] for e in user_info_events(alpha, "J")]
    assert titles == ["while home", "away 1", "away 2"]
    time.sleep(0.5)  # nothing more arrives (no repeats)
    assert len(user_info_events(alpha, "J")) == 3


def test_user_info_caps_output_in_transit_per_job(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    config = tmp_path / "launch.toml"
    config.write_text("[services.user-info]\nmax_items_per_job = 2\n")
    beta = make_host("beta", launch_config=config)
    sender = beta.require_contract(USER_INFO)
    away = "0" * 32  # a home host nobody has heard of: output waits
    replies = [
        sender.call(NOTIFY, UserInfoRequest(title=str(i), job_id="J", home_host_id=away))
        for i in range(4)
    ]
    assert [r.forwarding for r in replies] == [True, True, False, False]
    assert [r.dropped for r in replies] == [False, False, True, True]
    other = sender.call(NOTIFY, UserInfoRequest(title="x", job_id="K", home_host_id=away))
    assert other.forwarding  # the cap is per job
    events = user_info_events(beta, "J")
    assert [e.kind for e in events].count("user-info.notify") == 4  # all recorded here
    dropped = [e for e in events if e.kind == "user-info.dropped"]
    assert len(dropped) == 1 and dropped[0].data["in_transit_items"] == 2
