"""ContextEvent values and the durable ContextEventLog."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from paglets.core.context_events import ContextEvent, ContextEventLog
from paglets.persistence.store import Store

WIRE_KEYS = {
    "event_id",
    "kind",
    "host_name",
    "host_address",
    "timestamp",
    "agent_id",
    "class_name",
    "message_id",
    "service_name",
    "data",
    "error",
}


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.005)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "paglets.db")
    yield s
    s.close()


@pytest.fixture
def log(store: Store) -> Iterator[ContextEventLog]:
    event_log = ContextEventLog(store, "h1", "http://127.0.0.1:1")
    yield event_log
    event_log.close()


def test_event_wire_round_trip() -> None:
    event = ContextEvent(
        7, "create", "h", "http://h", 1.5, agent_id="a", class_name="m:C", data={"x": [1]}
    )
    wire = event.to_wire()
    assert set(wire) == WIRE_KEYS
    assert ContextEvent.from_wire({**wire, "extra": True}) == event
    minimal = ContextEvent.from_wire({"event_id": 1, "kind": "dispose"})
    assert minimal.data == {} and minimal.agent_id is None and minimal.host_name == ""


def test_emit_assigns_ids_and_list_events_pages(log: ContextEventLog) -> None:
    emitted = [log.emit("create", agent_id=f"a{i}", data={"i": i}) for i in range(25)]
    assert [e.event_id for e in emitted] == list(range(1, 26))
    assert emitted[0].host_name == "h1" and emitted[0].host_address == "http://127.0.0.1:1"
    page = log.list_events(since=0, limit=10)  # flushes first: all visible at once
    assert [e.event_id for e in page] == list(range(1, 11))
    assert page[3] == emitted[3]
    page = log.list_events(since=page[-1].event_id, limit=10)
    assert [e.event_id for e in page] == list(range(11, 21))
    assert [e.event_id for e in log.list_events(since=20)] == [21, 22, 23, 24, 25]
    assert log.list_events(since=25) == []
    assert [e.agent_id for e in log.list_events(since=0, agent_id="a3")] == ["a3"]
    assert log.last_event_id == 25


def test_background_flusher_persists_without_flush(store: Store, log: ContextEventLog) -> None:
    log.emit("create", agent_id="a")
    wait_for(lambda: store.max_event_id() == 1)


def test_ids_monotonic_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "paglets.db"
    with Store(path) as store:
        first = ContextEventLog(store, "h", "addr")
        for _ in range(5):
            first.emit("create")
        first.close()  # flushes
    with Store(path) as store:
        second = ContextEventLog(store, "h", "addr")
        try:
            assert second.emit("activate").event_id == 6
            assert [e.kind for e in second.list_events(since=4)] == ["create", "activate"]
        finally:
            second.close()


def test_ids_monotonic_after_retention_pruned_everything(tmp_path: Path) -> None:
    path = tmp_path / "paglets.db"
    with Store(path) as store:
        first = ContextEventLog(store, "h", "addr")
        for _ in range(3):
            first.emit("create")
        first.close()
    with Store(path) as store:
        second = ContextEventLog(store, "h", "addr", retention_seconds=0.0)
        try:
            assert second.list_events() == []  # pruned at construction
            assert second.emit("create").event_id == 4
        finally:
            second.close()


def test_retention_max_prunes_on_close(tmp_path: Path) -> None:
    with Store(tmp_path / "paglets.db") as store:
        event_log = ContextEventLog(store, "h", "addr", retention_max=10)
        for _ in range(30):
            event_log.emit("create")
        event_log.close()
        assert [e.event_id for e in store.events_since(0, 100)] == list(range(21, 31))


def test_listeners_run_in_order_on_another_thread(log: ContextEventLog) -> None:
    calls: list[tuple[str, int, str]] = []
    caller = threading.current_thread().name

    def first(event: ContextEvent) -> None:
        calls.append(("first", event.event_id, threading.current_thread().name))

    def second(event: ContextEvent) -> None:
        calls.append(("second", event.event_id, threading.current_thread().name))

    log.add_listener(first)
    log.add_listener(second)
    ids = [log.emit("message-delivered").event_id for _ in range(50)]
    wait_for(lambda: len(calls) == 100)
    assert [(name, eid) for name, eid, _ in calls] == [
        (name, eid) for eid in ids for name in ("first", "second")
    ]
    assert {thread for _, _, thread in calls} != {caller}
    assert len({thread for _, _, thread in calls}) == 1

    log.remove_listener(first)
    log.remove_listener(first)  # unknown: ignored
    last = log.emit("dispose")
    wait_for(lambda: calls[-1][1] == last.event_id)
    assert calls[-1][0] == "second" and len(calls) == 101


def test_slow_listener_does_not_block_emit(log: ContextEventLog) -> None:
    release = threading.Event()
    seen: list[int] = []

    def slow(event: ContextEvent) -> None:
        release.wait(10)
        seen.append(event.event_id)

    log.add_listener(slow)
    for _ in range(100):
        log.emit("create")  # returns although the listener is blocked
    assert seen == []
    release.set()
    wait_for(lambda: len(seen) == 100)


def test_failing_listener_yields_event(log: ContextEventLog) -> None:
    received: list[ContextEvent] = []

    def broken(event: ContextEvent) -> None:
        raise RuntimeError(f"cannot handle {event.kind}")

    log.add_listener(broken)
    log.add_listener(received.append)
    original = log.emit("create", agent_id="a1")
    wait_for(lambda: any(e.kind == "event-listener-failed" for e in received))
    failure = next(e for e in received if e.kind == "event-listener-failed")
    assert failure.agent_id == "a1"
    assert failure.data["event_id"] == original.event_id
    assert failure.data["event_kind"] == "create"
    assert "broken" in failure.data["listener"]
    assert failure.error is not None and "RuntimeError" in failure.error
    # `broken` also failed on the failure event (it runs before `received` does); that
    # must not yield another failure. Anything it emitted would be queued before `marker`.
    log.remove_listener(broken)
    marker = log.emit("dispose")
    wait_for(lambda: received[-1].event_id >= marker.event_id)
    failures = [e for e in log.list_events(limit=100) if e.kind == "event-listener-failed"]
    assert [f.data["event_kind"] for f in failures] == ["create"]


def test_host_address_is_settable(log: ContextEventLog) -> None:
    log.host_address = "http://192.0.2.1:8080"
    assert log.emit("context-start").host_address == "http://192.0.2.1:8080"


def test_without_store_keeps_memory_ring() -> None:
    event_log = ContextEventLog(None, "h", "addr")
    try:
        for i in range(10_005):
            event_log.emit("create", agent_id=str(i))
        first = event_log.list_events(since=0, limit=3)
        assert [e.event_id for e in first] == [6, 7, 8]
        assert [e.event_id for e in event_log.list_events(since=10_003)] == [10_004, 10_005]
        assert [e.kind for e in event_log.list_events(kinds=["dispose"])] == []
    finally:
        event_log.close()


def test_close_stops_threads_and_flushes(store: Store) -> None:
    event_log = ContextEventLog(store, "h", "addr")
    seen: list[int] = []
    event_log.add_listener(lambda e: seen.append(e.event_id))
    for _ in range(10):
        event_log.emit("create")
    threads = [event_log._flusher, event_log._listener_thread]
    event_log.close()
    event_log.close()  # idempotent
    assert store.max_event_id() == 10
    assert seen == list(range(1, 11))  # listeners drained before stopping
    assert all(t is not None and not t.is_alive() for t in threads)


def test_odd_data_values_do_not_lose_events(log: ContextEventLog) -> None:
    log.emit("create", data={"path": Path("/tmp/x"), "obj": object()})
    (event,) = log.list_events()
    assert event.data["path"] == repr(Path("/tmp/x"))
