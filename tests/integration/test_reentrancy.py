"""Turns and re-entrancy on one in-process host (api.md §1.3, §1.4, §2.4; architecture.md §5).

A paglet runs one turn at a time; a synchronous message on a call chain its current turn
waits on runs nested instead of deadlocking; one-way messages never re-enter; a turn
suspended in `wait_message`/`wait_state` lets other messages run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from paglets import Host, Message, PagletProxy
from support import messaging_models as mm
from support.messaging_models import Echo, Relay, RelayState, Serial
from support.waiting import wait_until


@pytest.fixture(autouse=True)
def _release_gates() -> Iterator[None]:
    yield
    mm.release_all()


def block(proxy: PagletProxy) -> threading.Event:
    """Put the paglet in a long `block` handler; returns the gate that releases it."""
    gate = mm.gate(proxy.agent_id)
    gate.clear()
    mm.started(proxy.agent_id).clear()
    proxy.send_oneway(Message("block"))
    assert mm.started(proxy.agent_id).wait(10), "the block handler never started"
    return gate


def in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    """Run `fn` on a new thread; the list receives its result or its exception."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


# -- nested turns on one call chain ---------------------------------------------------------


def test_self_send_inside_a_handler_completes(host: Host) -> None:
    proxy = host.create(Relay)
    # Inline: the caller's thread holds the turn and sends to itself.
    assert proxy.send(Message("self-call"), timeout=5)["inner"] == 1
    # On a worker thread: the turn was queued (future), and the handler sends to itself.
    reply = proxy.send_future(Message("self-call")).get_reply(10)
    assert reply["inner"] == 2
    assert reply["outer_thread"] != threading.current_thread().name


def test_a_b_a_completes_when_b_runs_inline(host: Host) -> None:
    a, b = host.create(Relay), host.create(Relay)
    reply = a.send(Message("call", {"via": b.agent_id}), timeout=5)
    assert reply["b"]["leaf"]["agent"] == a.agent_id
    me = threading.current_thread().name
    assert reply["a_thread"] == reply["b"]["b_thread"] == reply["b"]["leaf"]["thread"] == me


def test_a_b_a_completes_when_b_was_busy_and_runs_on_a_worker(host: Host) -> None:
    a, b = host.create(Relay), host.create(Relay)
    gate = block(b)
    # A runs inline on the caller thread and waits for B; B's callback is queued.
    caller, out = in_thread(lambda: a.send(Message("call", {"via": b.agent_id}), timeout=20))
    wait_until(lambda: host.mailbox_status(b.agent_id)["queued"] == 1)
    gate.set()
    caller.join(30)
    assert not caller.is_alive()
    assert len(out) == 1 and not isinstance(out[0], BaseException), out
    reply = out[0]
    # B ran on a worker; its call back into A nested in A's waiting turn, on that worker.
    b_thread = reply["b"]["b_thread"]
    assert b_thread.startswith("paglets-worker")
    assert reply["b"]["leaf"] == {"thread": b_thread, "agent": a.agent_id}
    assert reply["a_thread"] != b_thread


def test_an_unrelated_caller_does_not_enter_a_turn_waiting_on_a_chain(host: Host) -> None:
    a, b = host.create(Relay), host.create(Relay)
    gate = block(b)
    chain, chain_out = in_thread(lambda: a.send(Message("call", {"via": b.agent_id}), timeout=20))
    wait_until(lambda: host.mailbox_status(b.agent_id)["queued"] == 1)
    # A's turn waits on the chain through B; an independent message must wait its turn.
    other, other_out = in_thread(lambda: a.send(Message("record", {"tag": "other"}), timeout=20))
    wait_until(lambda: host.mailbox_status(a.agent_id)["queued"] == 1)
    assert mm.records(a.agent_id) == []
    gate.set()
    chain.join(30)
    other.join(30)
    assert other_out == ["other"]
    assert not isinstance(chain_out[0], BaseException), chain_out
    assert mm.records(a.agent_id) == ["call-done", "other"]


def _chain(host: Host, length: int) -> PagletProxy:
    """`length` Relays, each forwarding to the next; returns the first."""
    next_id = ""
    for _ in range(length):
        next_id = host.create(Relay, RelayState(next_id=next_id)).agent_id
    proxy = host.get_proxy(next_id)
    assert proxy is not None
    return proxy


def test_a_chain_of_200_synchronous_sends_completes(host: Host) -> None:
    first = _chain(host, 200)
    assert first.send(Message("fwd"), timeout=60) == 199


def test_a_chain_of_1000_synchronous_sends_completes(host: Host) -> None:
    first = _chain(host, 1000)
    assert first.send(Message("fwd"), timeout=60) == 999
    # Again, from a worker thread (the first hop queued rather than inline).
    assert first.send_future(Message("fwd")).get_reply(60) == 999


def test_independent_callers_never_run_handlers_concurrently(host: Host) -> None:
    proxy = host.create(Serial)
    threads, sends = 8, 200
    errors: list[BaseException] = []
    go = threading.Event()

    def hammer() -> None:
        go.wait(10)
        try:
            for _ in range(sends):
                proxy.send(Message("enter"), timeout=30)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    go.set()
    for worker in workers:
        worker.join(60)
    assert not errors, errors[:3]
    assert mm.MAX_CONCURRENT[proxy.agent_id] == 1
    assert proxy.get_state().count == threads * sends
    assert host.mailbox_status(proxy.agent_id)["delivered"] == threads * sends


# -- one-way messages never re-enter ---------------------------------------------------------


def test_oneway_self_send_runs_after_the_current_turn(host: Host) -> None:
    proxy = host.create(Relay)
    assert proxy.send(Message("oneway-self"), timeout=5) is False  # not run inside the turn
    wait_until(lambda: mm.records(proxy.agent_id) == ["oneway"])


def test_oneway_back_into_a_waiting_turn_is_queued(host: Host) -> None:
    a, b = host.create(Relay), host.create(Relay)
    # A's turn waits on B (one chain); B's one-way message to A must not nest in it.
    assert a.send(Message("call-oneway-back", {"via": b.agent_id}), timeout=5) is False
    wait_until(lambda: mm.records(a.agent_id) == ["oneway"])


# -- wait_message / notify_message ------------------------------------------------------------


def test_wait_message_releases_the_turn_and_wakes_when_a_message_returns(host: Host) -> None:
    proxy = host.create(Echo)
    waiting = proxy.send_future(Message("wait", {"timeout": 30.0}))
    # Runs only if the waiting handler released its turn (else it times out queued).
    assert proxy.send(Message("record", {"tag": "poke"}), timeout=10) == "poke"
    assert waiting.get_reply(10) is True
    assert mm.records(proxy.agent_id) == ["waiting", "poke", "woke"]


def test_wait_message_returns_false_on_timeout(host: Host) -> None:
    proxy = host.create(Echo)
    assert proxy.send(Message("wait", {"timeout": 0.05})) is False
    assert mm.records(proxy.agent_id) == ["waiting", "timed-out"]
    assert proxy.send(Message("count")) == 1  # the turn was taken back and released


def test_notify_message_wakes_a_waiting_handler(host: Host) -> None:
    proxy = host.create(Echo)
    instance = mm.INSTANCES[proxy.agent_id]
    waiting = proxy.send_future(Message("wait", {"timeout": 30.0}))
    wait_until(lambda: "waiting" in mm.records(proxy.agent_id))

    def notified() -> bool:
        instance.notify_message()  # until the waiter is registered, this wakes nobody
        return waiting.is_available()

    wait_until(notified)
    assert waiting.get_reply() is True


def _registered_waiters(host: Host, agent_id: str) -> int:
    # No public API says whether a thread has entered wait_message yet; peek at the cell.
    cell = host.registry.live[agent_id]
    return len(cell.msg_waiters or ())


def test_notify_message_wakes_one_and_notify_all_wakes_all(host: Host) -> None:
    proxy = host.create(Echo)
    instance = mm.INSTANCES[proxy.agent_id]
    woken: list[bool] = []
    lock = threading.Lock()

    def waiter() -> None:
        result = instance.wait_message(30.0)  # a user thread of the paglet, outside any turn
        with lock:
            woken.append(result)

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: _registered_waiters(host, proxy.agent_id) == 4)

    instance.notify_message()
    wait_until(lambda: len(woken) >= 1)
    assert _registered_waiters(host, proxy.agent_id) == 3
    instance.notify_message()
    wait_until(lambda: len(woken) >= 2)
    assert _registered_waiters(host, proxy.agent_id) == 2
    assert len(woken) == 2

    instance.notify_all_messages()
    wait_until(lambda: len(woken) == 4)
    for thread in threads:
        thread.join(10)
    assert woken == [True] * 4


def test_every_handled_message_wakes_all_waiters(host: Host) -> None:
    proxy = host.create(Echo)
    instance = mm.INSTANCES[proxy.agent_id]
    woken: list[bool] = []
    threads = [
        threading.Thread(target=lambda: woken.append(instance.wait_message(30.0))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    wait_until(lambda: _registered_waiters(host, proxy.agent_id) == 3)
    proxy.send(Message("count"))
    wait_until(lambda: len(woken) == 3)
    for thread in threads:
        thread.join(10)
    assert woken == [True] * 3


# -- wait_state -------------------------------------------------------------------------------


def test_wait_state_in_a_handler_is_satisfied_by_later_messages(host: Host) -> None:
    proxy = host.create(Echo)
    waiting = proxy.send_future(Message("await-count", {"target": 3, "timeout": 30.0}))
    # Each "add" runs while the waiting handler has released its turn, and notifies it.
    assert [proxy.send(Message("add"), timeout=10) for _ in range(3)] == [1, 2, 3]
    assert waiting.get_reply(10) == {"ok": True, "count": 3}


def test_wait_state_returns_false_on_timeout(host: Host) -> None:
    proxy = host.create(Echo)
    reply = proxy.send(Message("await-count", {"target": 1, "timeout": 0.05}))
    assert reply == {"ok": False, "count": 0}
    assert proxy.send(Message("add")) == 1
