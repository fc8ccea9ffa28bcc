"""Persistence on real hosts: messages to inactive paglets (api.md §2.7), timed and startup
activation, restarts, checkpoints, files and storage across restarts, listing, export and
the durable event log (api.md §1.3, §3-§4, §9, §10; architecture §6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from paglets import DeactivationPolicy, Host, Message
from paglets.core.errors import InvalidAgentError, PagletInactiveError
from paglets.persistence import StorageQuotaError
from support.lifecycle_models import (
    FAIL,
    NeverCheckpoint,
    NoRun,
    Recorder,
    RecState,
    SleepsUnqueued,
    hooks,
)
from support.waiting import wait_until

TESTS_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clear_failures() -> None:
    FAIL.clear()


def queued(reply: object) -> str:
    """The message id of a `{"queued": True, "message_id": ...}` reply."""
    assert isinstance(reply, dict) and reply.get("queued") is True, reply
    assert isinstance(reply.get("message_id"), str) and reply["message_id"]
    return reply["message_id"]


# -- messages to inactive paglets (§2.7) -------------------------------------------------


def test_default_policy_activates_on_message_with_real_reply(host: Host) -> None:
    proxy = host.create(Recorder)
    proxy.send(Message("add", {"n": 2}))
    proxy.deactivate()

    assert proxy.send(Message("add", {"n": 3})) == 5

    assert proxy.is_active()
    assert hooks(proxy.agent_id)[-2:] == ["__init__", "on_activation:activate"]


def test_queue_policy_queues_durably_and_drains_in_order_after_activate(host: Host) -> None:
    proxy = host.create(Recorder)
    proxy.deactivate(policy=DeactivationPolicy(activate_on_message=False))

    ids = [queued(proxy.send(Message("append", {"v": v}))) for v in ("a", "b", "c")]
    assert proxy.send_oneway(Message("append", {"v": "d"})) is None

    assert len(set(ids)) == 3
    assert not proxy.is_active()
    assert proxy.info()["queued_messages"] == 4
    assert proxy.get_state().items == []

    proxy.activate()

    wait_until(lambda: proxy.get_state().items == ["a", "b", "c", "d"])
    wait_until(lambda: host.store.count_queued(proxy.agent_id) == 0)
    kinds = [e.kind for e in host.list_events(limit=10_000) if e.agent_id == proxy.agent_id]
    assert kinds.count("message-queued") == 4


def test_queued_messages_survive_a_restart(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha")
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    proxy.deactivate(policy=DeactivationPolicy(activate_on_message=False))
    queued(proxy.send(Message("append", {"v": "first"})))
    queued(proxy.send(Message("append", {"v": "second"})))
    host.shutdown()

    again = make_host("alpha")
    assert agent_id not in again.registry.live  # not activate_on_startup
    assert again.agent_info(agent_id)["queued_messages"] == 2
    again.activate(agent_id)
    wait_until(lambda: again.get_state(agent_id).items == ["first", "second"])


def test_activate_if_inactive_false_queues_instead_of_activating(host: Host) -> None:
    proxy = host.create(Recorder)
    proxy.deactivate()

    queued(proxy.send(Message("append", {"v": "x"}), activate_if_inactive=False))

    assert not proxy.is_active()
    proxy.activate()
    wait_until(lambda: proxy.get_state().items == ["x"])


def test_refusing_policy_raises_paglet_inactive(host: Host) -> None:
    proxy = host.create(Recorder)
    proxy.deactivate(
        policy=DeactivationPolicy(activate_on_message=False, queue_messages_when_inactive=False)
    )

    with pytest.raises(PagletInactiveError):
        proxy.send(Message("add"))

    assert not proxy.is_active()
    assert proxy.info()["queued_messages"] == 0


def test_deactivation_policy_override_beats_the_callers_policy(host: Host) -> None:
    proxy = host.create(SleepsUnqueued)
    proxy.deactivate(policy=DeactivationPolicy())  # the class overrides it to "refuse"

    with pytest.raises(PagletInactiveError):
        proxy.send(Message("add"))
    assert not proxy.is_active()


@pytest.mark.parametrize(
    "policy",
    [DeactivationPolicy(), DeactivationPolicy(activate_on_message=False)],
    ids=["would-activate", "would-queue"],
)
def test_no_delay_refuses_activation_and_queueing(host: Host, policy: DeactivationPolicy) -> None:
    proxy = host.create(Recorder)
    proxy.deactivate(policy=policy)

    with pytest.raises(PagletInactiveError):
        proxy.send(Message("add"), no_delay=True)

    assert not proxy.is_active()
    assert proxy.info()["queued_messages"] == 0


def test_no_delay_has_no_effect_on_active_paglets(host: Host) -> None:
    proxy = host.create(Recorder)
    assert proxy.send(Message("add", {"n": 4}), no_delay=True) == 4


# -- timed and startup activation --------------------------------------------------------


def test_timed_activation_without_any_message(host: Host) -> None:
    proxy = host.create(Recorder)
    proxy.send(Message("add", {"n": 9}))
    proxy.deactivate(policy=DeactivationPolicy.after(0.3))
    assert not proxy.is_active()

    wait_until(proxy.is_active, timeout=15)

    assert hooks(proxy.agent_id)[-2:] == ["__init__", "on_activation:activate"]
    assert proxy.get_state().count == 9


def test_failed_timed_activation_emits_activation_failed_and_retries(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    FAIL.add((agent_id, "on_activation"))
    proxy.deactivate(policy=DeactivationPolicy.after(0.2))

    wait_until(
        lambda: any(
            e.kind == "activation-failed" and e.agent_id == agent_id
            for e in host.list_events(limit=10_000)
        ),
        timeout=15,
    )
    assert not proxy.is_active()

    FAIL.clear()  # the retry (after a back-off of at least 1 s) succeeds
    wait_until(proxy.is_active, timeout=15)


def test_concurrent_triggers_give_one_activation(host: Host) -> None:
    proxy = host.create(Recorder)
    agent_id = proxy.agent_id
    proxy.deactivate()
    before = hooks(agent_id).count("on_activation:activate")

    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda _: proxy.send(Message("add")), range(16)))
        pool.submit(proxy.activate).result()

    assert sorted(replies) == list(range(1, 17))
    assert hooks(agent_id).count("on_activation:activate") == before + 1
    assert hooks(agent_id).count("__init__") == 2


def test_activate_on_startup_brings_the_paglet_back_at_start(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha")
    early = host.create(Recorder).agent_id
    late = host.create(Recorder).agent_id
    host.deactivate(early, None)
    host.get_proxy(late).deactivate(policy=DeactivationPolicy(activate_on_startup=True))
    host.shutdown()

    again = make_host("alpha")

    assert late in again.registry.live
    assert hooks(late)[-2:] == ["__init__", "on_activation:activate"]
    assert early not in again.registry.live


# -- restarts ------------------------------------------------------------------------------


def test_all_paglets_and_their_state_survive_shutdown_and_restart(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha")
    ids = []
    for i in range(20):
        proxy = host.create(Recorder)
        proxy.send(Message("add", {"n": i}))
        proxy.send(Message("append", {"v": f"item-{i}"}))
        ids.append(proxy.agent_id)
    host.shutdown()

    again = make_host("alpha")

    assert sorted(again.registry.live) == sorted(ids)
    for i, agent_id in enumerate(ids):
        state = again.get_state(agent_id)
        assert (state.count, state.items) == (i, [f"item-{i}"])
    assert again.deliver_message(ids[3], Message("add")) == 4


def test_stop_then_restart_recovers_live_paglets_from_checkpoints(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha", checkpoint_interval=3600)
    ids = [host.create(Recorder).agent_id for _ in range(3)]
    for i, agent_id in enumerate(ids):
        host.deliver_message(agent_id, Message("add", {"n": 10 + i}))
    host.stop()

    again = make_host("alpha")

    for i, agent_id in enumerate(ids):
        assert agent_id in again.registry.live
        assert hooks(agent_id)[-2:] == ["__init__", "on_activation:recover"]
        assert again.get_state(agent_id).count == 10 + i


def test_checkpoint_never_comes_back_from_its_last_lifecycle_transition(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha")
    proxy = host.create(NeverCheckpoint)
    proxy.send(Message("add", {"n": 5}))
    host.stop()

    again = make_host("alpha")

    assert hooks(proxy.agent_id)[-1] == "on_activation:recover"
    assert again.get_state(proxy.agent_id).count == 0


_CRASH_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from paglets import Host, Message
    from support.lifecycle_models import AlwaysCheckpoint, NeverCheckpoint

    host = Host("crashy", persistence_dir=sys.argv[1], mesh_version="test",
                checkpoint_interval=3600).start_background()
    always = host.create(AlwaysCheckpoint)
    for n in (1, 2, 3):
        always.send(Message("add", {"n": n}))
    explicit = host.create(NeverCheckpoint)
    explicit.send(Message("add_then_checkpoint", {"n": 5}))
    explicit.send(Message("add", {"n": 100}))
    print(json.dumps({"always": always.agent_id, "explicit": explicit.agent_id}), flush=True)
    os._exit(0)  # a crash: no stop(), no flush
    """
)


def test_checkpoint_always_and_explicit_checkpoint_survive_a_crash(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    persistence_dir = tmp_path / "crashy"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", _CRASH_SCRIPT, str(persistence_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout.strip().splitlines()[-1])

    host = make_host("crashy", persistence_dir=persistence_dir)

    # CHECKPOINT="always": stored before each reply, so every acknowledged change is there.
    assert host.get_state(ids["always"]).count == 6
    # Paglet.checkpoint(): durable when it returns; the later change of a "never" paglet is not.
    assert host.get_state(ids["explicit"]).count == 5
    for agent_id in ids.values():
        assert agent_id in host.registry.live
        assert hooks(agent_id)[-1] == "on_activation:recover"


# -- state, files and storage ------------------------------------------------------------


def test_get_state_works_for_inactive_paglets(host: Host) -> None:
    proxy = host.create(Recorder, RecState(count=3, items=["a"], blob=b"\x00\x01"))
    proxy.deactivate()

    state = host.get_state(proxy.agent_id)

    assert isinstance(state, RecState)
    assert (state.count, state.items, state.blob) == (3, ["a"], b"\x00\x01")
    assert proxy.get_state().count == 3
    assert not proxy.is_active()  # reading the state does not wake it


def test_work_dir_is_kept_across_restart_for_active_and_inactive(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha")
    awake = host.create(Recorder)
    asleep = host.create(Recorder)
    awake_file = Path(awake.send(Message("write_work_file", {"name": "a.txt", "text": "awake"})))
    asleep_file = Path(asleep.send(Message("write_work_file", {"name": "b.txt", "text": "asleep"})))
    asleep.deactivate()
    host.shutdown()

    again = make_host("alpha")

    assert again.work_dir_for(awake.agent_id, create=False) / "a.txt" == awake_file
    assert awake_file.read_text() == "awake"
    assert asleep_file.read_text() == "asleep"
    assert asleep.agent_id not in again.registry.live


def test_registered_files_are_kept_across_restart(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    data = tmp_path / "kept.txt"
    data.write_text("kept")
    host = make_host("alpha")
    proxy = host.create(Recorder)
    proxy.send(Message("register", {"path": str(data), "name": "kept.txt"}))
    host.shutdown()

    again = make_host("alpha")

    assert [f.name for f in again.registered_files_for(proxy.agent_id)] == ["kept.txt"]
    assert (
        again.deliver_message(proxy.agent_id, Message("file_text", {"name": "kept.txt"})) == "kept"
    )


def test_persistent_storage_quota_cannot_be_raised_by_the_paglet(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha", persistent_storage_quota_bytes=1024)
    proxy = host.create(Recorder)

    with pytest.raises(StorageQuotaError):
        proxy.send(Message("store", {"quota": 1_000_000, "size": 4096}))

    quota = proxy.send(Message("store", {"quota": 1_000_000, "size": 512}))
    assert quota is not None and quota <= 1024
    view = host.persistent_storage_for(proxy.agent_id, quota_bytes=10**9)
    assert view.status().quota_bytes <= 1024
    # A paglet may lower it.
    with pytest.raises(StorageQuotaError):
        proxy.send(Message("store", {"quota": 100, "size": 200, "rel": "small"}))


# -- listing and export --------------------------------------------------------------------


def test_list_agents_filters_and_pages(host: Host) -> None:
    active = [host.create(Recorder).agent_id for _ in range(5)]
    inactive = [host.create(Recorder).agent_id for _ in range(4)]
    for agent_id in inactive:
        host.deactivate(agent_id, None)

    assert sorted(a["agent_id"] for a in host.list_agents()) == sorted(active)
    only_inactive = host.list_agents(active=False, inactive=True)
    assert sorted(a["agent_id"] for a in only_inactive) == sorted(inactive)
    assert all(a["active"] is False for a in only_inactive)
    everything = host.list_agents(active=True, inactive=True)
    assert len(everything) == 9

    pages = [
        host.list_agents(active=True, inactive=True, offset=o, limit=2) for o in range(0, 10, 2)
    ]
    assert [len(p) for p in pages] == [2, 2, 2, 2, 1]
    paged_ids = [a["agent_id"] for page in pages for a in page]
    assert sorted(paged_ids) == sorted(active + inactive)
    assert host.list_agents(active=True, inactive=True, offset=9, limit=5) == []
    for summary in everything:
        assert summary["active"] is (summary["agent_id"] in active)

    with_state = host.list_agents(active=False, inactive=True, include_state=True, limit=1)
    assert with_state[0]["state"]["count"] == 0


def test_export_inactive_record_has_the_2_0_layout(host: Host) -> None:
    proxy = host.create(Recorder, RecState(count=7, blob=b"hello"))
    policy = DeactivationPolicy(activate_on_message=False)
    proxy.deactivate(reason="nap", policy=policy)
    queued(proxy.send(Message("append", {"v": "later"})))

    record = host.export_inactive_record(proxy.agent_id)

    assert set(record) == {
        "schema_version",
        "envelope",
        "policy",
        "request",
        "deactivated_at",
        "queued_messages",
    }
    assert record["schema_version"] == 1
    assert record["envelope"]["agent_id"] == proxy.agent_id
    assert record["envelope"]["state"]["count"] == 7
    assert record["envelope"]["state"]["blob"] == {
        "__paglets_binary__": "bytes",
        "base64": "aGVsbG8=",
    }
    assert record["policy"] == policy.to_wire()
    assert record["request"]["reason"] == "nap"
    assert isinstance(record["deactivated_at"], float)
    [message] = record["queued_messages"]
    assert set(message) == {"message", "oneway", "queued_at"}
    assert message["oneway"] is False
    assert message["message"]["kind"] == "append"
    json.dumps(record)  # JSON-safe throughout

    with pytest.raises(InvalidAgentError):
        host.export_inactive_record(host.create(Recorder).agent_id)  # active: no record


# -- events ----------------------------------------------------------------------------------


def test_events_show_lifecycle_kinds_with_monotonic_ids_across_restarts(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha")
    proxy = host.create(Recorder)
    proxy.deactivate()
    proxy.activate()
    proxy.dispose()
    events = host.list_events(limit=10_000)
    kinds = [e.kind for e in events if e.agent_id == proxy.agent_id]
    for kind in ("create", "deactivate", "activate", "dispose"):
        assert kind in kinds
    assert (
        kinds.index("create")
        < kinds.index("deactivate")
        < kinds.index("activate")
        < kinds.index("dispose")
    )
    ids = [e.event_id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    last = ids[-1]
    host.shutdown()

    again = make_host("alpha")
    again.create(Recorder)
    newer = again.list_events(since=last, limit=10_000)
    assert newer and all(e.event_id > last for e in newer)
    assert [e.event_id for e in again.list_events(limit=10_000)][: len(ids)] == ids  # kept


def test_listener_receives_events(host: Host) -> None:
    seen: list[tuple[str, str | None]] = []

    def listener(event: object) -> None:
        seen.append((event.kind, event.agent_id))  # type: ignore[attr-defined]

    host.add_listener(listener)
    proxy = host.create(Recorder)
    proxy.deactivate()

    wait_until(lambda: ("deactivate", proxy.agent_id) in seen)
    assert ("create", proxy.agent_id) in seen
    assert seen.index(("create", proxy.agent_id)) < seen.index(("deactivate", proxy.agent_id))

    still: list[tuple[str, str | None]] = []
    host.add_listener(lambda event: still.append((event.kind, event.agent_id)))
    host.remove_listener(listener)
    other = host.create(Recorder)
    # Listeners run in order on one thread: once the remaining one saw the event, the
    # removed one would have too.
    wait_until(lambda: ("create", other.agent_id) in still)
    assert ("create", other.agent_id) not in seen


# -- many inactive records ---------------------------------------------------------------


def test_host_start_does_not_load_inactive_paglets(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha")
    ids = [host.create(NoRun).agent_id for _ in range(2000)]
    for agent_id in ids:
        host.deactivate(agent_id, None)
    assert host.health()["inactive_count"] == 2000
    host.shutdown()

    again = make_host("alpha")

    assert len(again.registry.live) == 0
    assert again.health()["inactive_count"] == 2000
    assert again.health()["active_count"] == 0
    # Any one of them wakes on demand.
    assert again.deliver_message(ids[1234], Message("add")) == 1
