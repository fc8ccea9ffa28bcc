"""`ISOLATION = "process"` on real hosts (architecture §5, api.md §1.2, §1.6, §1.7).

The paglet's instance lives in a child process started from the forkserver; the tests
check that hooks, handlers and `run()` execute there, that the host's copy of the state
follows, that every way a child can die is reported as a crash without touching other
paglets, that crashed paglets can be disposed or restarted from their last checkpoint, and
that moves, clones, deactivation and messages work as for host paglets.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from paglets import Host, Message
from paglets.core.errors import (
    InvalidAgentError,
    PagletCrashedError,
    RemoteHandlerError,
)
from paglets.runtime.child_link import HEARTBEAT_TIMEOUT_ENV
from support.isolation_models import (
    BadInit,
    ExitingRun,
    FailingRun,
    NeverWorker,
    Plain,
    Ticker,
    Worker,
)
from support.waiting import wait_until


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, reading
        return False


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def crash_events(host: Host, agent_id: str) -> list[dict[str, object]]:
    return [
        {"exitcode": e.data.get("exitcode"), "error": e.error}
        for e in host.list_events(limit=100_000)
        if e.kind == "paglet-crashed" and e.agent_id == agent_id
    ]


# -- it runs in its own process ------------------------------------------------------------


def test_hooks_and_handlers_run_in_a_child_process_and_the_state_follows(host: Host) -> None:
    proxy = host.create(Worker)

    child_pid = proxy.send(Message("pid"))
    assert child_pid != os.getpid()
    assert alive(child_pid)
    assert proxy.send(Message("add", {"n": 4})) == 4

    state = host.get_state(proxy.agent_id)  # the host's copy, refreshed after each call
    assert state.count == 4
    assert state.hooks == ["on_creation"]
    assert state.pids == [child_pid]  # on_creation ran in the child too
    assert proxy.info()["isolation"] == "process"
    assert proxy.send(Message("context")) == {
        "name": host.name,
        "address": host.address,
        "agent_id": proxy.agent_id,
    }


def test_the_child_never_imports_the_cli_or_the_examples(host: Host) -> None:
    proxy = host.create(Worker)

    unwanted = ["paglets.cli", "paglets.examples", "rich", "typer", "pytest", "_pytest"]
    assert proxy.send(Message("modules", {"prefixes": unwanted})) == []
    assert "paglets.runtime.child" in proxy.send(Message("modules", {"prefixes": ["paglets"]}))


def test_handler_errors_reach_the_caller_and_the_paglet_stays_usable(host: Host) -> None:
    proxy = host.create(Worker)

    with pytest.raises(ValueError, match="failed on purpose: boom") as caught:
        proxy.send(Message("fail", {"why": "boom"}))

    assert isinstance(caught.value, RemoteHandlerError)
    assert "ValueError" in (caught.value.remote_traceback or "")
    assert proxy.send(Message("add")) == 1
    assert not proxy.info()["crashed"]


def test_reentrant_self_send_and_sends_to_other_paglets(host: Host) -> None:
    proxy = host.create(Worker)
    other = host.create(Plain)

    # The handler waits in the child while its self-send runs nested (on the host thread
    # that holds the turn, then on another thread of the child).
    assert proxy.send(Message("self_send")) == 10
    assert proxy.send(Message("send", {"target": other.agent_id, "n": 3})) == 3
    assert other.send(Message("add")) == 4
    # A paglet created from inside a process paglet, answering through a child proxy.
    created = proxy.send(Message("create"))
    assert host.get_state(created).count == 5


def test_deactivate_and_activate_restart_the_child(host: Host) -> None:
    proxy = host.create(Worker)
    proxy.send(Message("add", {"n": 2}))
    first = proxy.send(Message("pid"))

    proxy.deactivate()

    wait_until(lambda: not alive(first))
    assert host.get_state(proxy.agent_id).count == 2
    proxy.activate()
    second = proxy.send(Message("pid"))
    assert second != first
    state = host.get_state(proxy.agent_id)
    assert state.hooks == ["on_creation", "on_deactivating:deactivate", "on_activation:activate"]
    assert state.count == 2


def test_messages_to_an_inactive_process_paglet_activate_it(host: Host) -> None:
    proxy = host.create(Worker)
    proxy.deactivate()

    assert proxy.send(Message("add", {"n": 6})) == 6
    assert proxy.is_active()


def test_clone_on_the_same_host_gets_its_own_child(host: Host) -> None:
    proxy = host.create(Worker)
    proxy.send(Message("add", {"n": 9}))

    clone = proxy.clone()

    assert clone.agent_id != proxy.agent_id
    assert clone.send(Message("pid")) != proxy.send(Message("pid"))
    assert clone.send(Message("add")) == 10
    assert host.get_state(clone.agent_id).hooks[-1] == "on_clone"
    assert proxy.send(Message("add")) == 10


def test_dispatch_to_the_same_host_moves_into_a_new_child(host: Host) -> None:
    proxy = host.create(Worker)
    proxy.send(Message("add", {"n": 4}))
    first = proxy.send(Message("pid"))

    moved = proxy.dispatch(host.address)

    assert moved.send(Message("add")) == 5
    assert moved.send(Message("pid")) != first
    wait_until(lambda: not alive(first))
    assert host.get_state(proxy.agent_id).hooks[-2:] == [
        "on_dispatching:dispatch",
        "on_arrival:dispatch",
    ]


def test_run_executes_in_the_child_and_its_state_changes_reach_the_host(host: Host) -> None:
    proxy = host.create(Ticker)

    # locked_state() in the child's run() thread marks the state dirty: the host's copy
    # follows without any message.
    wait_until(lambda: host.get_state(proxy.agent_id).ticks >= 3)
    assert proxy.send(Message("stop")) is True
    ticks = proxy.send(Message("ticks"))
    assert ticks >= 3
    wait_until(lambda: not host.registry.live[proxy.agent_id].info.run_thread.is_alive())


def test_run_errors_are_reported_and_the_paglet_stays_usable(host: Host) -> None:
    proxy = host.create(FailingRun)

    wait_until(
        lambda: any(
            e.kind == "run-failed" and e.agent_id == proxy.agent_id
            for e in host.list_events(limit=10_000)
        )
    )

    assert "run failed on purpose" in proxy.info()["run_error"]
    assert proxy.is_active()
    assert not proxy.info()["crashed"]


def test_a_class_that_cannot_be_built_leaves_nothing_behind(host: Host) -> None:
    with pytest.raises(RuntimeError, match="cannot build on purpose"):
        host.create(BadInit)

    assert host.list_agents(active=True, inactive=True) == []
    assert not any(e.kind == "paglet-crashed" for e in host.list_events(limit=10_000))


def test_multiprocessing_from_a_process_paglet(host: Host) -> None:
    proxy = host.create(Worker)

    # A non-daemonic child may start processes of its own.
    assert proxy.send(Message("pool", {"values": [1, 2, 3, 4]}), timeout=60) == [1, 4, 9, 16]
    assert proxy.send(Message("process"), timeout=60) == 5
    assert proxy.send(Message("add")) == 1


# -- crashes -------------------------------------------------------------------------------

CRASHES = [
    pytest.param("sys_exit", {"code": 3}, 3, id="sys.exit"),
    pytest.param("os_exit", {"code": 7}, 7, id="os._exit"),
    pytest.param("signal", {"signal": int(signal.SIGTERM)}, -signal.SIGTERM, id="SIGTERM"),
    pytest.param("signal", {"signal": int(signal.SIGSEGV)}, -signal.SIGSEGV, id="segfault"),
]


@pytest.mark.parametrize(("kind", "args", "exitcode"), CRASHES)
def test_a_child_dying_in_a_handler_is_reported_crashed(
    host: Host, kind: str, args: dict[str, int], exitcode: int
) -> None:
    proxy = host.create(Worker)
    bystander = host.create(Worker)
    plain = host.create(Plain)
    proxy.send(Message("add", {"n": 2}))
    pid = proxy.send(Message("pid"))

    with pytest.raises(PagletCrashedError):
        proxy.send(Message(kind, args))

    assert_crashed(host, proxy.agent_id, exitcode)
    assert not alive(pid)
    assert bystander.send(Message("add")) == 1  # others are unaffected
    assert plain.send(Message("add")) == 1


def test_a_child_killed_from_outside_is_reported_crashed(host: Host) -> None:
    # SIGKILL is what the OOM killer sends.
    proxy = host.create(Worker)
    bystander = host.create(Worker)
    pid = proxy.send(Message("pid"))

    os.kill(pid, signal.SIGKILL)

    wait_until(lambda: crash_events(host, proxy.agent_id))  # the report's last step
    assert_crashed(host, proxy.agent_id, -signal.SIGKILL)
    assert "SIGKILL" in (proxy.info()["error"] or "")
    assert bystander.send(Message("add")) == 1


def test_sys_exit_in_run_is_a_crash(host: Host) -> None:
    proxy = host.create(ExitingRun)

    wait_until(lambda: crash_events(host, proxy.agent_id))  # the report's last step

    assert_crashed(host, proxy.agent_id, 4)


def assert_crashed(host: Host, agent_id: str, exitcode: int) -> None:
    info = host.agent_info(agent_id)
    assert info["crashed"] is True
    assert info["active"] is False
    assert info["exitcode"] == exitcode
    assert info["error"]
    assert agent_id not in host.registry.live
    assert host.get_proxy(agent_id) is None
    events = crash_events(host, agent_id)
    assert [e["exitcode"] for e in events] == [exitcode]
    with pytest.raises(PagletCrashedError):
        host.deliver_message(agent_id, Message("add"))
    assert host.agent_info(agent_id)["crashed"] is True  # a message does not restart it


def test_a_crashed_paglet_can_be_disposed(host: Host) -> None:
    proxy = host.create(Worker)
    with pytest.raises(PagletCrashedError):
        proxy.send(Message("os_exit", {"code": 1}))

    proxy.dispose()

    with pytest.raises(InvalidAgentError):
        proxy.info()
    assert host.list_agents(active=True, inactive=True) == []
    assert host.store.count_agents("crashed") == 0


def test_activate_restarts_a_crashed_paglet_from_its_last_checkpoint(host: Host) -> None:
    proxy = host.create(Worker)
    proxy.send(Message("add_then_checkpoint", {"n": 5}))
    first = proxy.send(Message("pid"))
    with pytest.raises(PagletCrashedError):
        proxy.send(Message("os_exit"))

    proxy.activate()

    second = proxy.send(Message("pid"))
    assert second != first
    state = host.get_state(proxy.agent_id)
    assert state.count == 5
    assert state.hooks[-1] == "on_activation:recover"
    info = proxy.info()
    assert (info["active"], info["crashed"], info["exitcode"]) == (True, False, None)
    assert host.store.get_agent(proxy.agent_id).meta.get("exitcode") is None
    assert proxy.send(Message("add")) == 6
    assert any(
        e.kind == "paglet-recovered" and e.agent_id == proxy.agent_id
        for e in host.list_events(limit=10_000)
    )


@pytest.mark.parametrize(
    ("cls", "expected"),
    [(Worker, 8), (NeverWorker, 0)],
    ids=["interval: its last completed turn", "never: its last lifecycle transition"],
)
def test_the_state_a_crashed_paglet_restarts_from(
    host: Host, cls: type[Worker], expected: int
) -> None:
    proxy = host.create(cls)
    proxy.send(Message("add", {"n": 8}))  # no explicit checkpoint
    with pytest.raises(PagletCrashedError):
        proxy.send(Message("sys_exit"))

    proxy.activate()

    assert proxy.send(Message("add", {"n": 0})) == expected


# -- hangs ---------------------------------------------------------------------------------


@pytest.fixture
def short_heartbeat(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv(HEARTBEAT_TIMEOUT_ENV, "1.0")
    return 1.0


def test_an_idle_child_without_heartbeat_is_killed_as_hung(
    host: Host, short_heartbeat: float
) -> None:
    proxy = host.create(Worker)
    bystander = host.create(Worker)
    pid = proxy.send(Message("pid"))

    os.kill(pid, signal.SIGSTOP)  # no heartbeat from now on

    wait_until(lambda: crash_events(host, proxy.agent_id), timeout=30)
    info = proxy.info()
    assert "hung" in info["error"]
    assert info["exitcode"] == -signal.SIGKILL
    assert not alive(pid)
    assert bystander.send(Message("add")) == 1


def test_a_long_handler_is_never_counted_as_hung(host: Host, short_heartbeat: float) -> None:
    proxy = host.create(Worker)
    pid = proxy.send(Message("pid"))

    # The handler stops its own process: no heartbeat, but a call is running.
    reply = proxy.send_future(Message("stop_self"), timeout=60)
    wait_until(lambda: proc_state(pid) == "T")
    time.sleep(short_heartbeat * 3)  # a negative check: several heartbeat timeouts pass
    assert proxy.is_active()
    assert not proxy.info()["crashed"]

    os.kill(pid, signal.SIGCONT)

    assert reply.get_reply(30) == "resumed"
    assert proxy.send(Message("add")) == 1


# -- moves between hosts -------------------------------------------------------------------


def test_a_process_paglet_moves_between_hosts_over_http(
    make_host: Callable[..., Host],
) -> None:
    alpha = make_host("alpha")
    beta = make_host("beta")
    proxy = alpha.create(Worker)
    proxy.send(Message("add", {"n": 3}))
    first = proxy.send(Message("pid"))

    moved = proxy.dispatch(beta.address)

    assert moved.host_url == beta.address
    wait_until(lambda: not alive(first))  # the source's child stopped at commit
    second = moved.send(Message("pid"))
    assert second != first
    assert moved.send(Message("add")) == 4
    assert beta.get_state(proxy.agent_id).hooks[-2:] == [
        "on_dispatching:dispatch",
        "on_arrival:dispatch",
    ]
    assert proxy.agent_id not in alpha.registry.live

    clone = moved.clone(alpha.address)  # a clone travels the same way, into a new child
    assert clone.host_url == alpha.address
    assert clone.send(Message("add")) == 5
    assert clone.send(Message("pid")) not in (first, second)
    assert moved.send(Message("add")) == 5

    # From its own handler: the hooks run, the reply still reaches the caller, and the
    # detached instance can no longer act as the paglet.
    answer = moved.send(Message("dispatch_self", {"target": alpha.address}))
    assert answer == {"moved_to": alpha.address, "detached": True}
    wait_until(lambda: not alive(second))
    back = alpha.get_proxy(proxy.agent_id)
    assert back is not None
    assert back.send(Message("add")) == 6
    assert alpha.get_state(proxy.agent_id).note == "leaving"


def test_shutdown_saves_process_paglets_and_restart_brings_them_back(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha")
    proxies = [host.create(Worker) for _ in range(3)]
    pids = [
        p.send(Message("add", {"n": i + 1})) and p.send(Message("pid"))
        for i, p in enumerate(proxies)
    ]

    host.shutdown()

    for pid in pids:
        wait_until(lambda pid=pid: not alive(pid))
    again = make_host("alpha")
    for i, proxy in enumerate(proxies):
        state = again.get_state(proxy.agent_id)
        assert state.count == i + 1
        assert state.hooks[-2:] == ["on_deactivating:shutdown", "on_activation:activate"]
        assert again.deliver_message(proxy.agent_id, Message("pid")) not in pids


def test_shutdown_saves_a_busy_process_paglet_and_ends_its_child(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha")
    proxy = host.create(Worker)
    proxy.send(Message("add", {"n": 2}))
    pid = proxy.send(Message("pid"))
    proxy.send_future(Message("sleep", {"seconds": 300}), timeout=600)
    wait_until(lambda: host.mailbox_status(proxy.agent_id)["in_flight"])

    host.shutdown(grace=0.5)

    wait_until(lambda: not alive(pid), timeout=30)  # not left running after its host
    again = make_host("alpha")
    state = again.get_state(proxy.agent_id)
    assert state.count == 2  # saved from its checkpoint
    assert state.hooks[-1] == "on_activation:recover"


# -- figures (printed, not asserted) ---------------------------------------------------------


def child_memory_mib(pid: int) -> dict[str, float]:
    """RSS, and PSS (shares with the forkserver split fairly) of one process, in MiB."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1]) / 1024
    smaps = Path(f"/proc/{pid}/smaps_rollup")
    if smaps.exists():
        for line in smaps.read_text().splitlines():
            key = line.split(":")[0]
            if key in ("Pss", "Private_Dirty"):
                out[key.lower()] = int(line.split()[1]) / 1024
    return out


def test_e5_create_to_ready_and_idle_child_memory(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    host.create(Worker)  # the first one starts the forkserver
    times = []
    proxies = []
    for _ in range(10):
        started = time.perf_counter()
        proxies.append(host.create(Worker))
        times.append((time.perf_counter() - started) * 1000)
    pid = proxies[-1].send(Message("pid"))
    memory = child_memory_mib(pid)

    with capsys.disabled():
        print(
            f"\ne5 process paglet create → ready: median {statistics.median(times):.1f} ms "
            f"(min {min(times):.1f}, max {max(times):.1f}); idle child: "
            + ", ".join(f"{k} {v:.1f} MiB" for k, v in memory.items())
        )
    assert all(p.is_active() for p in proxies)
