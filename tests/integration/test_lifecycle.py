"""Lifecycle hook order on one real host (api.md §1.7), hook failures, self-departure.

Each test starts real in-process hosts (loopback, temporary persistence dirs) and reads
back the hook calls recorded by `support.lifecycle_models`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from paglets import DeactivationPolicy, Host, Message
from paglets.core.errors import (
    InvalidAgentError,
    PagletError,
    ResourceCleanupError,
    TransferError,
)
from support.lifecycle_models import (
    FAIL,
    INSTANCES,
    NoRun,
    Recorder,
    RecState,
    hooks,
    hooks_of,
    run_count,
)
from support.waiting import wait_until


@pytest.fixture(autouse=True)
def _clear_failures() -> None:
    FAIL.clear()


def event_kinds(host: Host, agent_id: str) -> list[str]:
    return [e.kind for e in host.list_events(limit=10_000) if e.agent_id == agent_id]


def latest_instance(agent_id: str) -> Recorder:
    return INSTANCES[agent_id][-1]  # type: ignore[return-value]


# -- create ------------------------------------------------------------------------------


def test_create_runs_init_then_on_creation_then_starts_run(host: Host) -> None:
    proxy = host.create(Recorder, init={"x": 1})
    agent_id = proxy.agent_id

    assert hooks(agent_id) == ["__init__", "on_creation:{'x': 1}"]
    wait_until(lambda: run_count(agent_id) == 1)
    assert hooks(agent_id, with_run=True) == ["__init__", "on_creation:{'x': 1}", "run"]
    assert proxy.is_active()
    assert "create" in event_kinds(host, agent_id)


def test_run_is_not_started_when_not_overridden(host: Host) -> None:
    proxy = host.create(NoRun)
    assert proxy.send(Message("add", {"n": 2})) == 2
    cell = host.registry.live[proxy.agent_id]
    assert cell.info.run_thread is None


def test_on_creation_failure_creates_nothing_and_raises_to_caller(host: Host) -> None:
    with pytest.raises(RuntimeError, match="on_creation failed on purpose"):
        host.create(Recorder, RecState(fail=["on_creation"]), agent_id="fails-at-birth")

    assert host.get_proxy("fails-at-birth", include_inactive=True) is None
    assert host.list_agents(active=True, inactive=True) == []
    assert host.health()["inactive_count"] == 0
    with pytest.raises(InvalidAgentError):
        host.get_state("fails-at-birth")
    assert run_count("fails-at-birth") == 0
    # The id was not left reserved: it can be used now.
    again = host.create(Recorder, agent_id="fails-at-birth")
    assert again.is_active()


# -- clone -------------------------------------------------------------------------------


def test_clone_on_same_host_hook_order_new_id_and_clone_of(host: Host) -> None:
    source = host.create(Recorder)
    source.send(Message("add", {"n": 5}))
    sid = source.agent_id
    wait_until(lambda: run_count(sid) == 1)

    clone = host.clone(sid)
    cid = clone.agent_id

    assert cid != sid
    assert hooks_of(sid, cid)[-4:] == [
        (sid, "on_cloning"),
        (cid, "__init__"),
        (cid, "on_clone"),
        (sid, "on_cloned"),
    ]
    assert hooks(cid) == ["__init__", f"on_clone:{sid}"]
    assert hooks(sid)[-1] == f"on_cloned:{cid}"
    # No resource cleanup on clone, for the source or the clone.
    assert "cleanup" not in hooks(sid)
    assert "cleanup" not in hooks(cid)
    # run() starts on the clone; the source's run() is not started again.
    wait_until(lambda: run_count(cid) == 1)
    assert run_count(sid) == 1
    # Both live, same state, the clone knows its original.
    assert source.is_active() and clone.is_active()
    assert clone.get_state().count == 5
    assert host.store.get_agent(cid).meta.get("clone_of") == sid
    clone_events = [
        e for e in host.list_events(limit=10_000) if e.kind == "clone" and e.agent_id == cid
    ]
    assert clone_events and clone_events[0].data.get("clone_of") == sid
    # They are independent afterwards.
    clone.send(Message("add", {"n": 1}))
    assert source.get_state().count == 5
    assert clone.get_state().count == 6


def test_clone_through_proxy_copies_registered_files(host: Host, tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("payload")
    source = host.create(Recorder)
    source.send(Message("register", {"path": str(data), "name": "data.txt"}))

    clone = source.clone()

    assert clone.send(Message("file_text", {"name": "data.txt"})) == "payload"
    clone_path = host.file_path_for(clone.agent_id, "data.txt")
    assert clone_path != data  # a clone always gets its own copy
    assert data.read_text() == "payload"  # the source's file stays


def test_on_clone_failure_raises_transfer_error_and_leaves_no_clone(host: Host) -> None:
    source = host.create(Recorder, RecState(fail=["on_clone"]))
    sid = source.agent_id

    with pytest.raises(TransferError, match="on_clone failed on purpose"):
        source.clone()

    assert source.is_active()
    assert source.send(Message("add")) == 1
    live = host.list_agents(active=True, inactive=True)
    assert [a["agent_id"] for a in live] == [sid]
    assert "on_transfer_aborted" in hooks(sid)
    assert "on_cloned" not in [h.split(":")[0] for h in hooks(sid)]


def test_on_cloned_failure_still_returns_the_clone_and_emits_hook_failed(host: Host) -> None:
    source = host.create(Recorder)
    sid = source.agent_id
    FAIL.add((sid, "on_cloned"))

    clone = source.clone()

    assert clone.is_active()
    assert clone.send(Message("add")) == 1
    assert source.is_active()
    assert "hook-failed" in event_kinds(host, sid)


def test_on_cloning_failure_aborts_the_clone(host: Host) -> None:
    source = host.create(Recorder)
    sid = source.agent_id
    FAIL.add((sid, "on_cloning"))

    with pytest.raises(Exception, match="on_cloning failed on purpose") as caught:
        source.clone()

    assert [a["agent_id"] for a in host.list_agents(active=True, inactive=True)] == [sid]
    assert source.send(Message("add")) == 1
    # network.md §2.5 row 2: a departure hook that raises gives `TransferError hook-failed`.
    assert isinstance(caught.value, TransferError), type(caught.value)
    assert caught.value.stage == "hook-failed"


# -- dispatch and retract to the same host -------------------------------------------


def test_dispatch_to_same_host_hook_order_epoch_and_files(host: Host, tmp_path: Path) -> None:
    data = tmp_path / "carried.txt"
    data.write_text("carried")
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    proxy.send(Message("add", {"n": 3}))
    proxy.send(Message("register", {"path": str(data), "name": "carried.txt"}))
    wait_until(lambda: run_count(agent_id) == 1)
    before = latest_instance(agent_id)
    epoch = proxy.info()["epoch"]

    moved = host.dispatch(agent_id, host.address)

    assert moved.agent_id == agent_id
    assert hooks(agent_id)[-4:] == [
        "on_dispatching:dispatch",
        "cleanup",
        "__init__",
        "on_arrival:dispatch",
    ]
    assert proxy.info()["epoch"] == epoch + 1
    assert before.departed is True
    assert latest_instance(agent_id) is not before
    assert proxy.get_state().count == 3
    # Registered files are kept (2.0 deleted them on a same-host move).
    assert [f.name for f in host.registered_files_for(agent_id)] == ["carried.txt"]
    assert proxy.send(Message("file_text", {"name": "carried.txt"})) == "carried"
    # run() starts again on the arriving instance.
    wait_until(lambda: run_count(agent_id) == 2)
    kinds = event_kinds(host, agent_id)
    assert "dispatch" in kinds and "arrival" in kinds


def test_retract_to_self_hook_order(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    epoch = proxy.info()["epoch"]

    host.retract(host.address, agent_id)

    assert hooks(agent_id)[-4:] == [
        "on_reverting:retract",
        "cleanup",
        "__init__",
        "on_arrival:retract",
    ]
    assert proxy.info()["epoch"] == epoch + 1
    assert proxy.is_active()


def test_departure_hook_failure_on_dispatch_aborts_and_paglet_stays(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    epoch = proxy.info()["epoch"]
    FAIL.add((agent_id, "on_dispatching"))
    instance = latest_instance(agent_id)

    with pytest.raises(Exception, match="on_dispatching failed on purpose") as caught:
        proxy.dispatch(host.address)

    assert proxy.info()["epoch"] == epoch
    assert latest_instance(agent_id) is instance and not instance.departed
    assert "cleanup" not in hooks(agent_id)
    assert proxy.send(Message("add")) == 1
    # Earlier state changes made by the hook are kept.
    assert "before-failed-on_dispatching" in proxy.get_state().items
    # network.md §2.5 row 2: a departure hook that raises gives `TransferError hook-failed`.
    assert isinstance(caught.value, TransferError), type(caught.value)
    assert caught.value.stage == "hook-failed"


def test_on_arrival_failure_on_same_host_dispatch_keeps_the_source(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    proxy.send(Message("add", {"n": 7}))
    epoch = proxy.info()["epoch"]
    FAIL.add((agent_id, "on_arrival"))

    with pytest.raises(TransferError, match="on_arrival failed on purpose"):
        proxy.dispatch(host.address)

    assert "on_transfer_aborted" in hooks(agent_id)
    assert proxy.info()["epoch"] == epoch
    FAIL.clear()
    assert proxy.send(Message("add")) == 8


# -- deactivate and activate ----------------------------------------------------------


def test_deactivate_hook_order_stores_and_drops_instance(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    proxy.send(Message("add", {"n": 4}))
    instance = latest_instance(agent_id)

    host.deactivate(agent_id)

    assert hooks(agent_id)[-3:] == [
        "deactivation_policy:external",
        "on_deactivating:deactivate",
        "cleanup",
    ]
    assert instance.departed is True
    assert agent_id not in host.registry.live
    info = proxy.info()
    assert info["active"] is False and info["deactivated_at"]
    assert host.health()["inactive_count"] == 1
    assert host.get_proxy(agent_id) is None
    assert host.get_proxy(agent_id, include_inactive=True) == proxy
    assert proxy.get_state().count == 4


def test_activate_hook_order_run_then_queued_messages(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    wait_until(lambda: run_count(agent_id) == 1)
    proxy.deactivate(policy=DeactivationPolicy(activate_on_message=False))
    assert proxy.send(Message("append", {"v": "one"}))["queued"] is True
    assert proxy.send(Message("append", {"v": "two"}))["queued"] is True

    proxy.activate()

    assert hooks(agent_id)[-2:] == ["__init__", "on_activation:activate"]
    wait_until(lambda: run_count(agent_id) == 2)
    wait_until(lambda: proxy.get_state().items == ["one", "two"])
    assert proxy.is_active()
    assert "activate" in event_kinds(host, agent_id)


def test_departure_hook_failure_on_deactivate_aborts_and_paglet_stays(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    FAIL.add((agent_id, "on_deactivating"))

    with pytest.raises(Exception, match="on_deactivating failed on purpose"):
        proxy.deactivate()

    assert proxy.is_active()
    assert host.health()["inactive_count"] == 0
    assert not latest_instance(agent_id).departed
    assert proxy.send(Message("add")) == 1
    assert "before-failed-on_deactivating" in proxy.get_state().items
    FAIL.clear()
    proxy.deactivate()
    assert not proxy.is_active()


def test_cleanup_failure_aborts_deactivation(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    FAIL.add((agent_id, "cleanup"))

    with pytest.raises(ResourceCleanupError):
        proxy.deactivate()

    assert proxy.is_active()
    assert proxy.send(Message("add")) == 1


def test_on_activation_failure_keeps_paglet_inactive_and_trigger_gets_error(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    proxy.deactivate()
    FAIL.add((agent_id, "on_activation"))

    with pytest.raises(RuntimeError, match="on_activation failed on purpose"):
        proxy.activate()
    assert not proxy.is_active()
    assert host.health()["inactive_count"] == 1
    # A message that would activate it gets the error too.
    with pytest.raises(RuntimeError, match="on_activation failed on purpose"):
        proxy.send(Message("add"))
    assert not proxy.is_active()
    assert "activation-failed" in event_kinds(host, agent_id)

    FAIL.clear()
    proxy.activate()
    assert proxy.send(Message("add")) == 1


# -- dispose ------------------------------------------------------------------------------


def test_dispose_active_runs_on_disposing_then_cleanup_and_removes_everything(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    proxy.send(Message("write_work_file", {"name": "scratch.txt", "text": "x"}))
    work_dir = host.work_dir_for(agent_id, create=False)
    assert work_dir.is_dir()

    proxy.dispose()

    assert hooks(agent_id)[-2:] == ["on_disposing:dispose", "cleanup"]
    assert latest_instance(agent_id).departed is True
    assert not work_dir.exists()
    assert host.get_proxy(agent_id, include_inactive=True) is None
    assert not proxy.is_valid()
    with pytest.raises(InvalidAgentError):
        proxy.info()
    assert "dispose" in event_kinds(host, agent_id)


def test_dispose_inactive_runs_no_hooks_and_removes_everything(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    proxy.send(Message("write_work_file", {"name": "scratch.txt", "text": "x"}))
    work_dir = host.work_dir_for(agent_id, create=False)
    proxy.deactivate()
    seen = len(hooks(agent_id))

    proxy.dispose()

    assert len(hooks(agent_id)) == seen  # no hooks, no new incarnation
    assert not work_dir.exists()
    assert host.health()["inactive_count"] == 0
    assert host.get_proxy(agent_id, include_inactive=True) is None
    with pytest.raises(InvalidAgentError):
        host.get_state(agent_id)


# -- shutdown and stop ---------------------------------------------------------------------


def test_shutdown_deactivates_each_live_paglet_and_all_come_back(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha")
    live = [host.create(Recorder).agent_id for _ in range(3)]
    sleeping = host.create(Recorder).agent_id
    host.deactivate(sleeping)
    for i, agent_id in enumerate(live):
        host.deliver_message(agent_id, Message("add", {"n": i + 1}))

    host.shutdown()

    for agent_id in live:
        assert hooks(agent_id)[-2:] == ["on_deactivating:shutdown", "cleanup"]
    assert hooks(sleeping)[-1] == "cleanup"  # nothing new for the inactive one

    again = make_host("alpha")
    assert sorted(again.registry.live) == sorted(live)
    for i, agent_id in enumerate(live):
        assert hooks(agent_id)[-2:] == ["__init__", "on_activation:activate"]
        assert again.get_state(agent_id).count == i + 1
    assert sleeping not in again.registry.live
    assert again.health()["inactive_count"] == 1


def test_stop_runs_no_hooks_and_next_start_recovers(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha")
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    proxy.send(Message("add", {"n": 6}))
    seen = hooks(agent_id)

    host.stop()

    assert hooks(agent_id) == seen  # stop() runs no hooks
    again = make_host("alpha")
    assert agent_id in again.registry.live
    assert hooks(agent_id)[-2:] == ["__init__", "on_activation:recover"]
    assert again.get_state(agent_id).count == 6
    kinds = event_kinds(again, agent_id)
    assert "paglet-recovered" in kinds


# -- self-departure from a handler --------------------------------------------------------


def test_handler_deactivating_itself_still_replies(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    proxy.send(Message("add", {"n": 2}))

    reply = proxy.send(Message("deactivate_self"))

    assert reply == {"departed": True, "context_call": "LifecycleError"}
    assert not proxy.is_active()
    assert hooks(agent_id)[-3:] == [
        "deactivation_policy:self",
        "on_deactivating:deactivate",
        "cleanup",
    ]
    # The change the handler made after leaving is lost.
    assert proxy.get_state().count == 2
    # It wakes on the next message (default policy).
    assert proxy.send(Message("add")) == 3


def test_handler_cloning_itself_still_replies(host: Host) -> None:
    proxy = host.create(Recorder)
    sid = proxy.agent_id
    proxy.send(Message("add", {"n": 2}))

    clone_id = proxy.send(Message("clone_self"))

    assert isinstance(clone_id, str) and clone_id != sid
    clone = host.get_proxy(clone_id)
    assert clone is not None and clone.is_active()
    assert clone.get_state().count == 2
    assert proxy.send(Message("add")) == 3  # the source stays and keeps working
    assert host.store.get_agent(clone_id).meta.get("clone_of") == sid


def test_handler_dispatching_itself_to_same_host_still_replies(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    proxy.send(Message("add", {"n": 2}))
    epoch = proxy.info()["epoch"]

    reply = proxy.send(Message("dispatch_self"))

    assert reply == {"departed": True, "context_call": "LifecycleError"}
    assert hooks(agent_id)[-4:] == [
        "on_dispatching:dispatch",
        "cleanup",
        "__init__",
        "on_arrival:dispatch",
    ]
    assert proxy.info()["epoch"] == epoch + 1
    assert proxy.get_state().count == 2  # the detached instance's later change is lost
    assert proxy.send(Message("add")) == 3


def test_lifecycle_errors_are_paglet_errors(host: Host) -> None:
    # Operations on a paglet that never existed fail with a PagletError naming it.
    with pytest.raises(InvalidAgentError, match="no-such-paglet"):
        host.deactivate("no-such-paglet")
    with pytest.raises(PagletError, match="no-such-paglet"):
        host.clone("no-such-paglet")
