"""Checkpoints, crash recovery and graceful shutdown (architecture §5-§6, api.md §1.2, §1.7,
§10; targets r3 and r7).

* r3: a `paglets host` process holding N active paglets whose state keeps changing is
  SIGKILLed; after a restart all N are back (`on_activation(reason="recover")`), each at
  least at the state its last checkpoint stored. N = 1,000 in the normal run, 10,000 in
  the slow one. The lag between an acknowledged change and its checkpoint is printed.
* Process paglets on a `paglets host` process: their children end with the host and the
  paglets come back in new children after the restart.
* r7: shutdown while 100 paglets are inside long handlers saves every one.
* `STATE_VERSION` / `migrate_state` for states written by an older class version.
* Arrivals during shutdown are refused (`draining`); the sender keeps the paglet.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paglets import Host, Message
from paglets.core.errors import PagletCrashedError, TransferError
from paglets.persistence.store import Store
from paglets.remote.client import HostClient
from paglets.serialization import codec
from support.isolation_models import GATE, Plain, Slow, SlowState, Worker, WorkState
from support.processes import HostProcess
from support.recovery_models import CountV1, TickState, TotalV2, Versioned
from support.waiting import wait_until

TESTS_DIR = Path(__file__).resolve().parents[1]
SPAWNER = "support.recovery_models:Spawner"
WORKER = "support.isolation_models:Worker"
BIG_TIMEOUT = 300.0


def host_env() -> dict[str, str]:
    """Host processes import the test models from tests/support."""
    path = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# -- r3: SIGKILL of a host process with N changing paglets -----------------------------------


def sigkill_with_active_paglets(host_process: Callable[..., HostProcess], n: int) -> None:
    host = host_process("r3", env=host_env())
    client = HostClient(timeout=BIG_TIMEOUT)
    spawner = client.create_agent(host.url, SPAWNER).agent_id

    def call(kind: str, **args: Any) -> Any:
        return client.send_message(host.url, spawner, Message(kind, args), timeout=BIG_TIMEOUT)

    spawned = call("spawn", n=n)
    assert spawned["count"] == n
    sample = spawned["sample"]
    for round_ in (1, 2):
        assert call("tick_all", round=round_) == n
    acknowledged = time.time()

    # No explicit checkpoint: the group commit stores round 2 on its own. Durability is
    # read from the host's database itself (the sample holds the last ids ticked).
    database = host.persistence_dir / "paglets.db"
    wait_until(lambda: stored_rounds(database, sample) >= 2, timeout=60, interval=0.02)
    lag = time.time() - acknowledged

    # Round 3 is running when the host dies.
    third = threading.Thread(target=lambda: _ignore_errors(call, "tick_all", round=3))
    third.start()
    wait_until(lambda: client.get_state(host.url, sample[0], TickState).round == 3, timeout=60)
    host.kill()
    third.join(60)

    started = time.monotonic()
    host.start(timeout=BIG_TIMEOUT)
    restart = time.monotonic() - started
    summary = call("summary")

    assert summary["count"] == n
    assert summary["recovered"] == n  # every one came back through on_activation("recover")
    rounds = {int(k): v for k, v in summary["rounds"].items()}
    assert sum(rounds.values()) == n
    assert min(rounds) >= 2  # none older than its last checkpoint
    print(
        f"\nr3 n={n}: acknowledged change → durable checkpoint {lag:.2f} s (interval 1 s); "
        f"restart with "
        f"{n} to recover {restart:.1f} s; rounds after restart {rounds}"
    )


def stored_rounds(database: Path, agent_ids: list[str]) -> int:
    """The lowest round stored for `agent_ids` (what a crash now would bring back)."""
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as conn:
        marks = ",".join("?" * len(agent_ids))
        rows = conn.execute(
            f"SELECT state FROM agents WHERE agent_id IN ({marks})", agent_ids
        ).fetchall()
    if len(rows) != len(agent_ids):
        return -1
    return min(codec.decode_state(TickState, row[0]).round for row in rows)


def _ignore_errors(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:
        pass  # the host is killed under this call


def test_r3_sigkill_with_1000_active_paglets(host_process: Callable[..., HostProcess]) -> None:
    sigkill_with_active_paglets(host_process, 1_000)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_r3_sigkill_with_10000_active_paglets(host_process: Callable[..., HostProcess]) -> None:
    sigkill_with_active_paglets(host_process, 10_000)


def test_process_paglets_end_with_their_host_process_and_come_back(
    host_process: Callable[..., HostProcess],
) -> None:
    host = host_process("iso", env=host_env())
    client = HostClient(timeout=30)
    ids = [client.create_agent(host.url, WORKER).agent_id for _ in range(3)]
    pids = []
    for i, agent_id in enumerate(ids):
        client.send_message(host.url, agent_id, Message("add_then_checkpoint", {"n": i + 1}))
        pids.append(client.send_message(host.url, agent_id, Message("pid")))

    host.kill()

    for pid in pids:  # each child sees the end of its pipe and exits
        wait_until(lambda pid=pid: not alive(pid), timeout=30)
    host.start()
    for i, agent_id in enumerate(ids):
        assert client.send_message(host.url, agent_id, Message("add")) == i + 2
        assert client.send_message(host.url, agent_id, Message("pid")) not in pids
        state = client.get_state(host.url, agent_id, WorkState)
        assert state.hooks[-1] == "on_activation:recover"


def test_a_crashed_process_paglet_stays_crashed_across_a_host_restart(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha")
    proxy = host.create(Worker)
    proxy.send(Message("add", {"n": 2}))
    with pytest.raises(PagletCrashedError):
        proxy.send(Message("os_exit", {"code": 9}))
    host.stop()

    again = make_host("alpha")

    info = again.agent_info(proxy.agent_id)
    assert (info["crashed"], info["exitcode"]) == (True, 9)
    again.activate(proxy.agent_id)
    assert again.deliver_message(proxy.agent_id, Message("add")) == 3


# -- r7: graceful shutdown with busy paglets ---------------------------------------------------


@pytest.fixture
def gate() -> Any:
    GATE.clear()
    yield GATE
    GATE.set()  # no handler of any test stays blocked


def test_r7_shutdown_with_100_paglets_in_long_handlers_saves_all(
    make_host: Callable[..., Host], gate: threading.Event
) -> None:
    host = make_host("alpha")
    busy = [host.create(Slow) for _ in range(100)]
    idle = [host.create(Slow) for _ in range(20)]
    for i, proxy in enumerate(busy + idle):
        assert proxy.send(Message("set", {"value": i})) == i
    replies = [proxy.send_future(Message("work"), timeout=120) for proxy in busy]
    wait_until(lambda: all(host.mailbox_status(p.agent_id)["in_flight"] for p in busy))

    host.shutdown(grace=0.5)  # the busy ones cannot finish: saved from their checkpoint

    gate.set()
    for reply in replies:  # the handlers end on detached instances
        reply.wait_for_reply(30)
    again = make_host("alpha")
    assert sorted(again.registry.live) == sorted(p.agent_id for p in busy + idle)
    for i, proxy in enumerate(busy):
        state = again.get_state(proxy.agent_id, SlowState)
        assert state.value in (i, i + 1000)  # its last checkpoint: before or inside "work"
        assert state.finished is False
    for i, proxy in enumerate(idle, start=len(busy)):
        assert again.get_state(proxy.agent_id).value == i


# -- STATE_VERSION -----------------------------------------------------------------------------


def store_as_version_1(store: Store, agent_id: str, count: int, status: str) -> None:
    row = store.get_agent(agent_id)
    assert row is not None
    row.state = codec.encode_state(CountV1(count=count))
    row.state_version = 1
    row.status = status
    store.put_agent(row)


def test_migrate_state_upgrades_an_older_stored_state_on_activation(host: Host) -> None:
    proxy = host.create(Versioned)
    proxy.deactivate()
    store_as_version_1(host.store, proxy.agent_id, count=4, status="inactive")

    assert host.get_state(proxy.agent_id).total == 40  # an inactive state reads migrated
    assert proxy.send(Message("total")) == 40  # activation migrates before decoding

    state = host.get_state(proxy.agent_id)
    assert isinstance(state, TotalV2)
    assert (state.label, state.seen) == ("migrated from v1", ["activate:40"])
    assert host.store.get_agent(proxy.agent_id).state_version == 2


def test_migrate_state_on_recovery_after_a_restart(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha")
    proxy = host.create(Versioned)
    host.stop()
    with Store(host.persistence_dir / "paglets.db") as store:  # as a crash left it
        store_as_version_1(store, proxy.agent_id, count=7, status="active")

    again = make_host("alpha")

    state = again.get_state(proxy.agent_id)
    assert (state.total, state.seen) == (70, ["recover:70"])


# -- arrivals during shutdown -------------------------------------------------------------------


def test_a_stopping_host_refuses_arrivals_and_the_sender_keeps_the_paglet(
    make_host: Callable[..., Host], gate: threading.Event
) -> None:
    alpha = make_host("alpha")
    beta = make_host("beta")
    blocker = beta.create(Slow)
    blocked = blocker.send_future(Message("work"), timeout=120)
    wait_until(lambda: beta.mailbox_status(blocker.agent_id)["in_flight"])
    stopping = threading.Thread(target=beta.shutdown, kwargs={"grace": 60.0})
    stopping.start()
    try:
        wait_until(lambda: beta.stopped)
        traveller = alpha.create(Plain)
        traveller.send(Message("add", {"n": 3}))

        with pytest.raises(TransferError) as refused:
            traveller.dispatch(beta.address)

        assert refused.value.code == "draining"
        assert traveller.agent_id in alpha.registry.live
        assert traveller.send(Message("add")) == 4
        assert traveller.agent_id not in beta.registry.live
    finally:
        gate.set()
        blocked.wait_for_reply(30)
        stopping.join(60)
    assert not stopping.is_alive()


def test_sigterm_of_a_host_process_is_a_graceful_shutdown(
    host_process: Callable[..., HostProcess],
) -> None:
    host = host_process("term", env=host_env())
    client = HostClient(timeout=30)
    agent_id = client.create_agent(host.url, WORKER).agent_id
    client.send_message(host.url, agent_id, Message("add", {"n": 5}))
    pid = client.send_message(host.url, agent_id, Message("pid"))

    assert host.terminate() == 0

    wait_until(lambda: not alive(pid), timeout=30)
    host.start()
    state = client.get_state(host.url, agent_id, WorkState)
    assert state.count == 5
    assert state.hooks[-2:] == ["on_deactivating:shutdown", "on_activation:activate"]


def test_signal_names_in_crash_reports() -> None:
    from paglets.runtime.child_link import describe_exit

    assert describe_exit(3, None) == "exited with code 3"
    assert describe_exit(-signal.SIGSEGV, None) == "killed by SIGSEGV"
    assert "OOM" in describe_exit(-signal.SIGKILL, None)
    assert describe_exit(-9, 10.0) == "hung: no heartbeat for 10s, killed"
