"""Mesh-scope service lookups across in-process hosts on loopback: the gossiped digest, and
stale digests confirmed by asking the owners in parallel (network.md §3.4, api.md §16.2)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from paglets import Host, Message
from paglets.services import ServiceScope
from support.service_models import ECHO, ECHO_CONTRACT, EchoRequest, EchoService, EchoState
from support.waiting import wait_until

MESH = ServiceScope.MESH
MakeHost = Callable[..., Host]


def _provider(host: Host, scope: str = "mesh") -> Any:
    proxy = host.create(EchoService, EchoState(prefix=f"{host.name}:"))
    proxy.send(Message("advertise", {"scope": scope}))
    return proxy


def _owners(host: Host) -> set[str]:
    return {r.host_name for r in host.lookup_services("echo", scope=MESH)}


@pytest.fixture
def trio(make_host: MakeHost) -> tuple[Host, Host, Host]:
    alpha = make_host("alpha")
    beta = make_host("beta", peers=[alpha.address])
    gamma = make_host("gamma", peers=[alpha.address])
    wait_until(lambda: len(alpha.list_hosts(online_only=True)) == 3, timeout=20)
    return alpha, beta, gamma


def test_mesh_lookups_read_the_gossiped_digest(trio: tuple[Host, Host, Host]) -> None:
    alpha, beta, gamma = trio
    alpha.services.registry.stale_after = 60.0  # a slow machine must not make it ask
    _provider(beta)
    _provider(gamma, scope="local")  # local scope never leaves gamma
    wait_until(lambda: _owners(alpha) == {"beta"}, timeout=20)
    asks = alpha.services.registry.asks
    handle = alpha.require_contract(ECHO_CONTRACT, scope=MESH)
    assert alpha.services.registry.asks == asks  # fresh digests: no network call to look up
    assert handle.record.host_name == "beta"
    assert handle.call(ECHO, EchoRequest("hi")).text == "beta:hi"
    assert alpha.lookup_contract(ECHO_CONTRACT) is None  # LOCAL scope: this host only

    _provider(alpha)  # local first, then the mesh
    names = [h.record.host_name for h in alpha.lookup_contracts(ECHO_CONTRACT, scope=MESH)]
    assert names == ["alpha", "beta"]
    assert alpha.lookup_contract(ECHO_CONTRACT, scope=MESH).record.host_name == "alpha"


def test_withdrawn_mesh_records_leave_other_hosts_views(trio: tuple[Host, Host, Host]) -> None:
    alpha, beta, _gamma = trio
    proxy = _provider(beta)
    wait_until(lambda: _owners(alpha) == {"beta"}, timeout=20)
    beta.dispose(proxy.agent_id)
    wait_until(lambda: _owners(alpha) == set(), timeout=20)


def test_stale_digests_are_confirmed_by_asking_owners_in_parallel(
    trio: tuple[Host, Host, Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta, gamma = trio
    _provider(beta)
    _provider(gamma)
    wait_until(lambda: _owners(alpha) == {"beta", "gamma"}, timeout=20)
    registry = alpha.services.registry
    registry.stale_after = 0.0  # every digest is stale now
    registry.ask_timeout = 10.0
    # Each owner answers only once the other has been asked too: asking one after the
    # other would break the barrier (and lose both answers).
    barrier = threading.Barrier(2)
    beta_says_gone = threading.Event()
    for owner in (beta, gamma):
        original = owner.lookup_services

        def answer(*args: Any, _original: Any = original, _owner: Host = owner, **kw: Any) -> Any:
            barrier.wait(8)
            if _owner is beta and beta_says_gone.is_set():
                return []  # the owner knows better than its old digest
            return _original(*args, **kw)

        monkeypatch.setattr(owner, "lookup_services", answer)
    asks = registry.asks
    assert _owners(alpha) == {"beta", "gamma"}
    assert registry.asks == asks + 2
    assert not barrier.broken
    beta_says_gone.set()
    assert _owners(alpha) == {"gamma"}
    assert not barrier.broken


def test_an_owner_that_does_not_answer_in_time_contributes_nothing(
    trio: tuple[Host, Host, Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta, gamma = trio
    _provider(beta)
    _provider(gamma)
    wait_until(lambda: _owners(alpha) == {"beta", "gamma"}, timeout=20)
    registry = alpha.services.registry
    registry.stale_after = 0.0
    registry.ask_timeout = 0.5
    release = threading.Event()
    original = gamma.lookup_services

    def slow(*args: Any, **kw: Any) -> Any:
        release.wait(20)
        return original(*args, **kw)

    monkeypatch.setattr(gamma, "lookup_services", slow)
    try:
        assert _owners(alpha) == {"beta"}
    finally:
        release.set()


def test_the_digest_rides_in_the_membership_summaries(trio: tuple[Host, Host, Host]) -> None:
    alpha, beta, _gamma = trio
    proxy = _provider(beta)

    def beta_digest() -> Any:
        found = alpha._on_loop(lambda: alpha.mesh.summary(beta.host_id, "services"))
        return found and found[1]["records"]

    rows = wait_until(beta_digest, timeout=20)
    assert isinstance(rows, list)
    (row,) = rows
    assert row["a"] == proxy.agent_id and row["n"] == "echo"
    contract = row["m"]["paglets.service_contract"]
    assert set(contract) == {"name", "version", "fingerprint"}  # schemas travel as a hash
