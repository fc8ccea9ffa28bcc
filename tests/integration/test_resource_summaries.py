"""Every host's resources reach every other host through membership (jobs.md §1.1, §1.4),
and the operator actions `restart` and `resolve` (network.md §1.8, §2.5) on real hosts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest

from paglets import Host, Message
from paglets.core.errors import (
    HostError,
    InvalidAgentError,
    LifecycleError,
    PagletCrashedError,
    SerializationError,
    TransferError,
)
from paglets.persistence.transfer_log import TransferRecord
from paglets.remote.client import HostClient
from paglets.runtime.resource_probe import eligible_cpu_ids
from support.isolation_models import Worker
from support.waiting import wait_until

JOIN = 20.0


def ref_of(host: Host, name: str) -> Any:
    return next((r for r in host.list_hosts() if r.name == name), None)


def knows_load_of(host: Host, name: str, **wanted: Any) -> Any:
    ref = ref_of(host, name)
    if ref is None or ref.resources.get("free_memory_bytes") is None:
        return None  # no load yet, or no spec yet (its totals turn 64ths into bytes)
    if any(ref.resources.get(k) != v for k, v in wanted.items()):
        return None
    return ref


@pytest.fixture
def pair(make_host: Callable[..., Host]) -> tuple[Host, Host]:
    alpha = make_host("alpha")
    beta = make_host("beta", peers=[alpha.address], tags=["GPU", "gpu"], properties={"rack": "7"})
    return alpha, beta


def test_a_peer_sees_cores_memory_and_load(pair: tuple[Host, Host]) -> None:
    alpha, _ = pair
    ref = wait_until(lambda: knows_load_of(alpha, "beta"), timeout=JOIN)
    resources = ref.resources
    eligible, _ = eligible_cpu_ids()
    assert resources["logical_cpus"] == psutil.cpu_count(logical=True)
    assert resources["job_cores"] == len(eligible)
    assert resources["memory_total_bytes"] == psutil.virtual_memory().total
    assert 0 <= resources["free_memory_bytes"] <= resources["memory_total_bytes"]
    assert 0 <= resources["free_cpu_cores"] <= len(eligible)
    assert resources["temp_total_bytes"] > 0 and resources["gpus"] == []
    assert resources["accepting"] is True and resources["errors"] == []
    assert resources["load_age_s"] >= 0
    assert ref.tags == ["gpu"]
    assert ref.properties["rack"] == "7" and ref.properties["python"]  # automatic ones too
    # This host's own entry carries its summary too.
    own = alpha.list_hosts()[0]
    assert own.name == "alpha" and own.resources["memory_total_bytes"] > 0


def test_counts_and_load_sources_travel_to_peers(pair: tuple[Host, Host]) -> None:
    from support.messaging_models import Echo

    alpha, beta = pair
    wait_until(lambda: knows_load_of(alpha, "beta"), timeout=JOIN)
    active = len(beta.get_proxies()) + 1  # the built-in system services are paglets too
    beta.create(Echo)
    # A scheduler refines the load with fields of its own (jobs.md §2.2).
    beta.resource_monitor.add_load_source(lambda resources, base: {"running_jobs": 3})
    beta.resource_monitor.set_accepting(False)
    ref = wait_until(
        lambda: knows_load_of(alpha, "beta", running_jobs=3, accepting=False, active_count=active),
        timeout=JOIN,
    )
    assert ref.active_count == active


def test_mesh_members_and_health_show_resources(pair: tuple[Host, Host]) -> None:
    alpha, beta = pair
    client = HostClient(timeout=10.0)
    wait_until(lambda: knows_load_of(alpha, "beta"), timeout=JOIN)

    def members() -> dict[str, Any] | None:
        listed = client.get_json(f"{alpha.address}/mesh/members")["members"]
        named = {m["name"]: m for m in listed}
        ok = all((named.get(n) or {}).get("resources", {}).get("load") for n in ("alpha", "beta"))
        return named if ok else None

    named = wait_until(members, timeout=JOIN)
    for name in ("alpha", "beta"):
        resources = named[name]["resources"]
        assert resources["spec"]["logical_cpus"] == psutil.cpu_count(logical=True)
        assert resources["spec"]["host_name"] == name
        assert resources["spec_version"] > 0
        assert resources["load"]["free_memory_bytes"] > 0  # jobs.md's names, not wire keys
    health = client.get_json(f"{beta.address}/health")
    assert health["resources"]["memory_total_bytes"] == psutil.virtual_memory().total
    assert health["properties"]["rack"] == "7" and "python" in health["properties"]
    client.close()


def test_a_bad_gpus_value_is_refused(tmp_path: Any) -> None:
    with pytest.raises(HostError, match="--gpus"):
        Host("alpha", persistence_dir=tmp_path / "a", gpus="0;1")


# -- restart --------------------------------------------------------------------------------


def test_restart_brings_a_crashed_paglet_back_from_its_checkpoint(host: Host) -> None:
    client = HostClient(timeout=10.0)
    proxy = host.create(Worker)
    proxy.send(Message("add_then_checkpoint", {"n": 5}))
    with pytest.raises(PagletCrashedError):
        proxy.send(Message("os_exit", {"code": 1}))

    restarted = client.restart(host.address, proxy.agent_id)

    assert restarted.agent_id == proxy.agent_id
    assert client.send_message(host.address, proxy.agent_id, Message("add")) == 6
    assert any(
        e.kind == "paglet-restarted" and e.agent_id == proxy.agent_id
        for e in host.list_events(limit=10_000)
    )
    with pytest.raises(LifecycleError, match="active, not crashed") as raised:
        client.restart(host.address, proxy.agent_id)
    assert raised.value.code == "not-crashed"
    proxy.deactivate()
    with pytest.raises(LifecycleError, match="inactive, not crashed"):
        client.restart(host.address, proxy.agent_id)
    with pytest.raises(InvalidAgentError):
        client.restart(host.address, "no-such-paglet")
    client.close()


# -- resolve --------------------------------------------------------------------------------


def open_target_record(host: Host, peer_url: str) -> str:
    """A target-side PREPARED transfer (hooks done) from `peer_url`, as the log holds it."""
    tid = "ab" * 16
    now = time.time()
    host.transfers.log.insert(
        TransferRecord(
            transfer_id=tid,
            role="target",
            agent_id="visitor",
            kind="dispatch",
            epoch=2,
            status="PREPARED",
            peer_url=peer_url,
            header={},
            state=None,
            reply=None,
            hooks_done=True,
            created_at=now,
            updated_at=now,
            deadline=now + 10,
            attempts=0,
            next_attempt=now + 3600,
        )
    )
    return tid


def test_resolve_is_refused_while_the_other_host_answers(pair: tuple[Host, Host]) -> None:
    alpha, beta = pair
    client = HostClient(timeout=10.0)
    tid = open_target_record(beta, alpha.address)
    with pytest.raises(TransferError, match="other host answers") as raised:
        client.post_json(f"{beta.address}/transfers/{tid}/resolve", {"decision": "keep-here"})
    assert raised.value.code == "transfer-conflict"
    assert beta.transfers.log.get(tid).status == "PREPARED"  # type: ignore[union-attr]
    client.close()


def test_resolve_refuses_bad_ids_and_decisions(host: Host) -> None:
    client = HostClient(timeout=10.0)
    url = f"{host.address}/transfers/{'c' * 32}/resolve"
    with pytest.raises(HostError) as unknown:
        client.post_json(url, {"decision": "give-up"})
    assert unknown.value.code == "unknown-transfer"
    with pytest.raises(SerializationError, match="keep-here"):
        client.post_json(url, {"decision": "maybe"})
    with pytest.raises(SerializationError):
        client.post_json(f"{host.address}/transfers/not-hex/resolve", {"decision": "give-up"})
    client.close()


def test_give_up_discards_a_prepared_copy_whose_source_is_gone(host: Host) -> None:
    client = HostClient(timeout=10.0)
    gone = "http://127.0.0.1:9"  # discard port: nothing listens
    tid = open_target_record(host, gone)
    answer = client.post_json(f"{host.address}/transfers/{tid}/resolve", {"decision": "give-up"})
    assert answer["status"] == "ABORTED" and answer["role"] == "target"
    record = host.transfers.log.get(tid)
    assert record is not None and record.status == "ABORTED"
    assert any(e.kind == "transfer-resolved" for e in host.list_events(limit=10_000))
    with pytest.raises(TransferError, match="already ABORTED"):
        client.post_json(f"{host.address}/transfers/{tid}/resolve", {"decision": "give-up"})
    client.close()
