"""Moves between two hosts (in one process, so through HTTP and the move protocol)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from paglets import Host, Message, TransferTicket
from paglets.core.errors import TransferError, TransferTimeoutError
from paglets.remote.proxy import PagletProxy
from support import move_models as mm
from support.waiting import wait_until


@pytest.fixture(autouse=True)
def _reset() -> None:
    mm.HOOKS.clear()
    mm.FAIL_ARRIVAL.clear()
    for gate in mm.ARRIVAL_GATES.values():
        gate.set()
    mm.ARRIVAL_GATES.clear()


def hooks_of(agent_id: str) -> list[tuple[str, str]]:
    return [(host, hook) for a, host, hook, _ in mm.HOOKS if a == agent_id]


def two_hosts(make_host: Callable[..., Host]) -> tuple[Host, Host]:
    return make_host("alpha"), make_host("beta")


def test_dispatch_moves_state_and_runs_hooks_on_each_side(make_host: Callable[..., Host]) -> None:
    alpha, beta = two_hosts(make_host)
    proxy = alpha.create(mm.Traveller)
    proxy.send(Message("add", {"n": 5}))
    moved = proxy.dispatch(beta.address)
    assert moved.host_url == beta.address and moved.agent_id == proxy.agent_id
    assert moved.acknowledged
    assert proxy.agent_id not in alpha.registry.live
    assert proxy.agent_id in beta.registry.live
    assert beta.get_state(proxy.agent_id).count == 5
    assert beta.get_state(proxy.agent_id).visited == ["beta"]
    assert hooks_of(proxy.agent_id) == [("alpha", "on_dispatching"), ("beta", "on_arrival")]
    assert beta.agent_info(proxy.agent_id)["epoch"] == 2


def test_old_proxy_follows_the_paglet(make_host: Callable[..., Host]) -> None:
    alpha, beta = two_hosts(make_host)
    proxy = alpha.create(mm.Traveller)
    proxy.dispatch(beta.address)
    assert proxy.send(Message("where")) == "beta"
    assert proxy.send(Message("add")) == 1
    assert alpha.transfers.location(proxy.agent_id)["state"] == "moved"


def test_self_dispatch_from_a_handler(make_host: Callable[..., Host]) -> None:
    alpha, beta = two_hosts(make_host)
    proxy = alpha.create(mm.Traveller)
    reply = proxy.send(Message("go", {"target": beta.address}))
    assert reply == {"host_url": beta.address, "agent_id": proxy.agent_id}
    assert proxy.send(Message("where")) == "beta"


def test_clone_to_another_host_keeps_the_original(make_host: Callable[..., Host]) -> None:
    alpha, beta = two_hosts(make_host)
    proxy = alpha.create(mm.Traveller)
    proxy.send(Message("add", {"n": 3}))
    clone = proxy.clone(beta.address)
    assert clone.agent_id != proxy.agent_id and clone.host_url == beta.address
    assert proxy.agent_id in alpha.registry.live
    assert beta.get_state(clone.agent_id).count == 3
    assert [h for _, h in hooks_of(proxy.agent_id)] == ["on_cloning", "on_cloned"]
    assert hooks_of(clone.agent_id) == [("beta", "on_clone")]


def test_retract_pulls_the_paglet_back(make_host: Callable[..., Host]) -> None:
    alpha, beta = two_hosts(make_host)
    proxy = alpha.create(mm.Traveller)
    proxy.dispatch(beta.address)
    back = alpha.retract(beta.address, proxy.agent_id)
    assert back.host_url == alpha.address
    assert proxy.agent_id in alpha.registry.live and proxy.agent_id not in beta.registry.live
    assert alpha.get_state(proxy.agent_id).visited == ["beta", "alpha"]
    assert ("beta", "on_reverting") in hooks_of(proxy.agent_id)
    assert alpha.agent_info(proxy.agent_id)["epoch"] == 3


def test_a_rejected_arrival_leaves_the_paglet_at_home(make_host: Callable[..., Host]) -> None:
    alpha, beta = two_hosts(make_host)
    proxy = alpha.create(mm.Traveller)
    mm.FAIL_ARRIVAL.add(proxy.agent_id)
    with pytest.raises(TransferError, match="on_arrival refused on purpose") as caught:
        proxy.dispatch(beta.address)
    assert caught.value.stage == "target-rejected"
    assert proxy.agent_id in alpha.registry.live and proxy.agent_id not in beta.registry.live
    assert ("alpha", "on_transfer_aborted") in hooks_of(proxy.agent_id)
    assert proxy.send(Message("add")) == 1


def test_other_mesh_version_is_refused_in_preflight(make_host: Callable[..., Host]) -> None:
    alpha = make_host("alpha")
    beta = make_host("beta", mesh_version="other")
    proxy = alpha.create(mm.Traveller)
    with pytest.raises(TransferError, match="'other'") as caught:
        proxy.dispatch(beta.address)
    assert caught.value.stage == "preflight"
    assert "'test'" in str(caught.value)
    assert proxy.agent_id in alpha.registry.live


def test_module_outside_the_allow_list_is_refused(make_host: Callable[..., Host]) -> None:
    alpha = make_host("alpha")
    beta = make_host("beta", allow_modules=["paglets"])
    proxy = alpha.create(mm.Traveller)
    with pytest.raises(TransferError, match="ForbiddenError"):
        proxy.dispatch(beta.address)
    assert proxy.agent_id in alpha.registry.live and proxy.agent_id not in beta.registry.live


def test_slow_arrival_past_the_ticket_timeout_leaves_one_copy(
    make_host: Callable[..., Host],
) -> None:
    """targets r2: paglets 2.0 ended with two live copies here."""
    alpha, beta = two_hosts(make_host)
    proxy = alpha.create(mm.Traveller)
    gate = mm.ARRIVAL_GATES[proxy.agent_id] = threading.Event()
    with pytest.raises(TransferTimeoutError):
        proxy.dispatch(TransferTicket(beta.address, timeout=0.5))
    gate.set()
    assert proxy.agent_id in alpha.registry.live
    wait_until(lambda: not beta.transfers.log.open_records("target", ("PREPARED",)))
    assert proxy.agent_id not in beta.registry.live
    assert proxy.send(Message("add")) == 1


def test_messages_sent_during_a_move_reach_the_paglet(make_host: Callable[..., Host]) -> None:
    alpha, beta = two_hosts(make_host)
    proxy = alpha.create(mm.Traveller)
    gate = mm.ARRIVAL_GATES[proxy.agent_id] = threading.Event()
    moving = threading.Thread(target=proxy.dispatch, args=(beta.address,))
    moving.start()
    wait_until(lambda: ("beta", "on_arrival") in hooks_of(proxy.agent_id))
    replies: list[object] = []
    sender = threading.Thread(target=lambda: replies.append(proxy.send(Message("add", {"n": 2}))))
    sender.start()
    gate.set()
    moving.join(30)
    sender.join(30)
    assert replies == [2]
    assert beta.get_state(proxy.agent_id).count == 2


def test_a_repeated_prepare_gets_the_same_answer(make_host: Callable[..., Host]) -> None:
    alpha, beta = two_hosts(make_host)
    proxy = alpha.create(mm.Traveller)
    moved = proxy.dispatch(beta.address)
    record = alpha.transfers.log.listing(role="source", agent_id=proxy.agent_id)[0]
    target = beta.transfers.log.get(record.transfer_id, "target")
    assert target is not None and target.status == "COMMITTED"
    again = beta.transfers.prepare(record.transfer_id, b"ignored: the stored answer comes first")
    assert again["outcome"] == "PREPARED"
    assert hooks_of(proxy.agent_id).count(("beta", "on_arrival")) == 1
    assert isinstance(moved, PagletProxy)


def test_registered_files_travel_with_the_paglet(make_host: Callable[..., Host], tmp_path) -> None:
    alpha, beta = two_hosts(make_host)
    proxy = alpha.create(mm.Traveller)
    keep = tmp_path / "notes.txt"
    keep.write_text("copied along")
    gone = tmp_path / "data.bin"
    gone.write_bytes(b"\x00\x01" * 1000)
    alpha.register_file_for(proxy.agent_id, keep)
    alpha.register_file_for(proxy.agent_id, gone, mode="move")
    proxy.dispatch(beta.address)
    files = {f.name: f for f in beta.registered_files_for(proxy.agent_id)}
    assert set(files) == {"notes.txt", "data.bin"}
    assert files["notes.txt"].status == "available"
    assert beta.file_path_for(proxy.agent_id, "notes.txt").read_text() == "copied along"
    assert beta.file_path_for(proxy.agent_id, "data.bin").read_bytes() == b"\x00\x01" * 1000
    assert beta.file_path_for(proxy.agent_id, "data.bin").is_relative_to(
        beta.work_dir_for(proxy.agent_id)
    )
    assert keep.exists() and not gone.exists()  # "move" deletes the source after the commit
    assert beta.artifacts.list() == []  # staged artifacts were claimed


def test_inactive_arrival_runs_no_hooks_until_woken(make_host: Callable[..., Host]) -> None:
    from paglets import ArrivalMode

    alpha, beta = two_hosts(make_host)
    proxy = alpha.create(mm.Traveller)
    proxy.send(Message("add", {"n": 4}))
    moved = proxy.dispatch(TransferTicket(beta.address, arrival_mode=ArrivalMode.INACTIVE))
    assert moved.host_url == beta.address
    assert proxy.agent_id not in beta.registry.live
    assert beta.agent_info(proxy.agent_id)["active"] is False
    assert ("beta", "on_arrival") not in hooks_of(proxy.agent_id)
    assert proxy.send(Message("add")) == 5  # the message wakes it on beta
    assert proxy.agent_id in beta.registry.live


def test_an_old_in_process_proxy_follows_for_every_call(make_host: Callable[..., Host]) -> None:
    alpha, beta = two_hosts(make_host)
    proxy = alpha.create(mm.Traveller)
    proxy.dispatch(beta.address)
    assert proxy.info()["host"] == "beta"
    assert proxy.is_active()
    assert proxy.get_state().visited == ["beta"]
    assert proxy.send_future(Message("add")).get_reply() == 1
    back = proxy.retract()  # "here" is alpha, the host that made this proxy
    assert back.host_url == alpha.address and proxy.agent_id in alpha.registry.live


def test_large_state_back_and_forth_leaves_one_copy(make_host: Callable[..., Host]) -> None:
    """A 16 MiB paglet moved A→B→A→B at once: every hop leaves exactly one live copy."""
    alpha, beta = two_hosts(make_host)
    proxy = alpha.create(mm.Traveller, mm.TravellerState(payload=b"\x07" * (16 << 20)))
    for target in (beta, alpha, beta):
        proxy = proxy.dispatch(target.address)
        live = [h.name for h in (alpha, beta) if proxy.agent_id in h.registry.live]
        assert live == [target.name]
    assert len(beta.get_state(proxy.agent_id).payload) == 16 << 20


def test_a_paglet_can_go_back_at_once_to_the_host_it_just_left(
    make_host: Callable[..., Host],
) -> None:
    from support.move_models import PingPong, PingPongState

    alpha, beta = make_host("alpha"), make_host("beta")
    hops = 30
    proxy = alpha.create(
        PingPong, state=PingPongState(hops_left=hops, homes=[alpha.address, beta.address])
    )

    def home_again() -> bool:  # an even number of hops ends where it began
        found = alpha.get_proxy(proxy.agent_id)
        return found is not None and alpha.get_state(proxy.agent_id).hops_left == 0

    wait_until(home_again, timeout=60)
    assert len(alpha.get_state(proxy.agent_id).visited) == hops
    # beta's copy lets go once its COMMIT is answered.
    wait_until(lambda: beta.get_proxy(proxy.agent_id) is None)
