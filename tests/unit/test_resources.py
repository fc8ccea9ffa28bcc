"""ResourceRegistry: registration, reverse-order cleanup, failures, thread safety."""

from __future__ import annotations

import io
import logging
import threading

import pytest

from paglets.core.errors import ResourceCleanupError
from paglets.runtime.resources import ResourceRegistry


def test_cleanup_runs_newest_first_and_empties() -> None:
    registry = ResourceRegistry()
    order: list[str] = []
    for name in ("a", "b", "c"):
        registry.register(name, lambda name=name: order.append(name))
    assert registry.status() == {"a": False, "b": False, "c": False}
    assert registry.cleanup(reason="dispatch") == ["c", "b", "a"]
    assert order == ["c", "b", "a"]
    assert registry.status() == {}
    assert registry.cleanup(reason="dispatch") == []


def test_reregistering_replaces_and_moves_to_newest() -> None:
    registry = ResourceRegistry()
    order: list[str] = []
    registry.register("a", lambda: order.append("a-old"))
    registry.register("b", lambda: order.append("b"))
    registry.register("a", lambda: order.append("a-new"), suppress=True)
    assert registry.status() == {"b": False, "a": True}
    registry.cleanup(reason="deactivate")
    assert order == ["a-new", "b"]


def test_track_closeable() -> None:
    registry = ResourceRegistry()
    stream = io.BytesIO(b"data")
    assert registry.track_closeable("buf", stream) is stream

    class Pool:
        stopped = False

        def shutdown(self) -> None:
            self.stopped = True

    pool = registry.track_closeable("pool", Pool(), method="shutdown", suppress=True)
    assert registry.status() == {"buf": False, "pool": True}
    registry.cleanup(reason="dispose")
    assert stream.closed and pool.stopped
    with pytest.raises(TypeError, match="'close'"):
        registry.track_closeable("x", object())


def test_remove_and_clear_do_not_run_cleanup() -> None:
    registry = ResourceRegistry()
    ran: list[str] = []
    registry.register("a", lambda: ran.append("a"))
    registry.register("b", lambda: ran.append("b"))
    assert registry.remove("a") is True
    assert registry.remove("a") is False
    assert "b" in registry and "a" not in registry
    registry.clear()
    assert registry.status() == {}
    registry.cleanup(reason="dispose")
    assert ran == []


def test_failure_keeps_entry_tries_the_rest_and_raises() -> None:
    registry = ResourceRegistry()
    ran: list[str] = []
    registry.register("first", lambda: ran.append("first"))

    def fail() -> None:
        raise OSError("device busy")

    registry.register("bad", fail)
    registry.register("last", lambda: ran.append("last"))
    with pytest.raises(ResourceCleanupError) as info:
        registry.cleanup(reason="dispatch")
    assert "'bad'" in str(info.value) and "device busy" in str(info.value)
    assert "dispatch" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert ran == ["last", "first"]  # the others still ran
    assert registry.status() == {"bad": False}  # only the failed one stays
    registry.register("bad", lambda: ran.append("fixed"))
    assert registry.cleanup(reason="dispatch") == ["bad"]


def test_suppressed_failure_is_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    registry = ResourceRegistry()

    def fail() -> None:
        raise ValueError("already closed")

    registry.register("quiet", fail, suppress=True)
    with caplog.at_level(logging.WARNING, logger="paglets.runtime.resources"):
        assert registry.cleanup(reason="deactivate") == []
    assert registry.status() == {}
    assert "quiet" in caplog.text


def test_validation() -> None:
    registry = ResourceRegistry()
    with pytest.raises(ValueError):
        registry.register("", lambda: None)
    with pytest.raises(TypeError):
        registry.register("x", "not callable")  # type: ignore[arg-type]


def test_is_slotted_and_lazy() -> None:
    registry = ResourceRegistry()
    assert not hasattr(registry, "__dict__")
    assert registry._entries is None
    assert registry.status() == {}


def test_callback_may_register_during_cleanup() -> None:
    registry = ResourceRegistry()
    registry.register("a", lambda: registry.register("later", lambda: None))
    registry.cleanup(reason="dispatch")
    assert registry.status() == {"later": False}


def test_concurrent_registration() -> None:
    registry = ResourceRegistry()

    def work(n: int) -> None:
        for i in range(200):
            registry.register(f"{n}-{i}", lambda: None)
            if i % 2:
                registry.remove(f"{n}-{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(registry.status()) == 8 * 100
    assert len(registry.cleanup(reason="dispose")) == 800
