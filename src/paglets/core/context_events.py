"""The host's event log: what happened to which paglet, durable and paged by id.

`emit()` runs on every create, message and move, so it only assigns an id, builds the
event and appends it to a buffer (a few microseconds). The rest happens elsewhere:

* a background flusher writes buffered events to the store at most every 0.2 s (group
  commit: one transaction per batch), and `flush()` writes them now;
* listeners run in registration order on one dedicated thread, so a slow listener delays
  other listeners, never the host. A raising listener yields an `event-listener-failed`
  event (but a listener failing on that event is only logged, so failures cannot loop).

Ids continue from the store's highest id, so they are monotonic across restarts and
`list_events(since=...)` / SSE `Last-Event-ID` resume after one. Without a store (tests,
tools) the log keeps the last 10,000 events in memory.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from paglets.persistence.store import Store

__all__ = ["ContextEvent", "ContextEventLog", "EventListener"]

_log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.2
PRUNE_INTERVAL = 3600.0
MEMORY_RING_SIZE = 10_000
LISTENER_FAILED = "event-listener-failed"


@dataclass(frozen=True, slots=True)
class ContextEvent:
    """One entry of the event log (wire: the same keys)."""

    event_id: int
    kind: str
    host_name: str
    host_address: str
    timestamp: float
    agent_id: str | None = None
    class_name: str | None = None
    message_id: str | None = None
    service_name: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "kind": self.kind,
            "host_name": self.host_name,
            "host_address": self.host_address,
            "timestamp": self.timestamp,
            "agent_id": self.agent_id,
            "class_name": self.class_name,
            "message_id": self.message_id,
            "service_name": self.service_name,
            "data": self.data,
            "error": self.error,
        }

    @classmethod
    def from_wire(cls, payload: Mapping[str, Any]) -> ContextEvent:
        if not isinstance(payload, Mapping):
            raise ValueError(
                f"ContextEvent wire form must be a JSON object, got {type(payload).__name__}"
            )
        get = payload.get
        data = get("data")
        return cls(
            event_id=int(get("event_id", 0)),
            kind=str(get("kind", "")),
            host_name=str(get("host_name", "")),
            host_address=str(get("host_address", "")),
            timestamp=float(get("timestamp", 0.0)),
            agent_id=get("agent_id"),
            class_name=get("class_name"),
            message_id=get("message_id"),
            service_name=get("service_name"),
            data=dict(data) if isinstance(data, Mapping) else {},
            error=get("error"),
        )


EventListener = Callable[[ContextEvent], Any]


def _enc_fallback(obj: Any) -> Any:
    # Event data comes from all over the runtime; an odd value must not lose the batch.
    return repr(obj)


_encode = msgspec.msgpack.Encoder(enc_hook=_enc_fallback).encode
_decode = msgspec.msgpack.Decoder().decode

_STOP = object()


def _listener_name(fn: Any) -> str:
    module = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}:{name}" if module else name


class ContextEventLog:
    """Assigns ids, buffers, persists (group commit), serves pages and feeds listeners."""

    def __init__(
        self,
        store: Store | None,
        host_name: str,
        host_address: str,
        *,
        retention_seconds: float | None = 7 * 86400,
        retention_max: int | None = 1_000_000,
    ) -> None:
        self.host_name = host_name
        self.host_address = host_address
        self.retention_seconds = retention_seconds
        self.retention_max = retention_max
        self._store = store
        self._lock = threading.Lock()  # ids, the pending buffer, the listener queue order
        self._flush_lock = threading.Lock()  # one batch written at a time, in full
        self._pending: list[ContextEvent] = []
        self._ring: deque[ContextEvent] | None = (
            deque(maxlen=MEMORY_RING_SIZE) if store is None else None
        )
        self._listeners: tuple[EventListener, ...] = ()
        self._listener_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._listener_thread: threading.Thread | None = None
        self._flusher: threading.Thread | None = None
        self._has_pending = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._flush_failing = False
        if store is not None:
            self._prune()
            self._next_id = store.max_event_id() + 1
        else:
            self._next_id = 1

    @property
    def last_event_id(self) -> int:
        """The id of the newest event emitted (0 if none, ever)."""
        return self._next_id - 1

    # -- emitting ------------------------------------------------------------------------

    def emit(
        self,
        kind: str,
        *,
        agent_id: str | None = None,
        class_name: str | None = None,
        message_id: str | None = None,
        service_name: str | None = None,
        data: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> ContextEvent:
        """Record an event; returns it with its id. Cheap: no I/O, no thread switch."""
        timestamp = time.time()
        with self._lock:
            event_id = self._next_id
            self._next_id = event_id + 1
            event = ContextEvent(
                event_id,
                kind,
                self.host_name,
                self.host_address,
                timestamp,
                agent_id,
                class_name,
                message_id,
                service_name,
                {} if data is None else data,
                error,
            )
            ring = self._ring
            if ring is None:
                pending = self._pending
                pending.append(event)
                first = len(pending) == 1
            else:
                ring.append(event)
                first = False
            # Queued under the lock so listeners see events in id order.
            if self._listeners:
                self._listener_queue.put(event)
                if self._listener_thread is None and not self._closed:
                    self._start_listener_thread()
            if first and not self._closed:
                if self._flusher is None:
                    self._start_flusher()
                self._has_pending.set()
        return event

    # -- listeners -----------------------------------------------------------------------

    def add_listener(self, fn: EventListener) -> None:
        """Call `fn(event)` for every later event, on the log's listener thread."""
        if not callable(fn):
            raise TypeError(f"an event listener must be callable, got {fn!r}")
        with self._lock:
            self._listeners = (*self._listeners, fn)

    def remove_listener(self, fn: EventListener) -> None:
        """Stop calling `fn` (the first registration equal to it); unknown ones are ignored."""
        with self._lock:
            listeners = list(self._listeners)
            for index, existing in enumerate(listeners):
                if existing == fn:
                    del listeners[index]
                    self._listeners = tuple(listeners)
                    return

    def _start_listener_thread(self) -> None:
        # Called with self._lock held.
        thread = threading.Thread(
            target=self._listener_loop, name="paglets-event-listeners", daemon=True
        )
        self._listener_thread = thread
        thread.start()

    def _listener_loop(self) -> None:
        get = self._listener_queue.get
        while True:
            event = get()
            if event is _STOP:
                return
            for fn in self._listeners:
                try:
                    fn(event)
                except Exception as exc:
                    self._listener_failed(fn, event, exc)

    def _listener_failed(self, fn: EventListener, event: ContextEvent, exc: Exception) -> None:
        name = _listener_name(fn)
        if event.kind == LISTENER_FAILED:
            _log.error(
                "event listener %s failed on an %s event", name, LISTENER_FAILED, exc_info=exc
            )
            return
        _log.warning("event listener %s failed on event %s", name, event.event_id, exc_info=exc)
        self.emit(
            LISTENER_FAILED,
            agent_id=event.agent_id,
            data={"listener": name, "event_id": event.event_id, "event_kind": event.kind},
            error=f"{type(exc).__name__}: {exc}",
        )

    # -- durability ----------------------------------------------------------------------

    def _start_flusher(self) -> None:
        # Called with self._lock held.
        thread = threading.Thread(target=self._flusher_loop, name="paglets-event-log", daemon=True)
        self._flusher = thread
        thread.start()

    def _flusher_loop(self) -> None:
        next_prune = time.monotonic() + PRUNE_INTERVAL
        while not self._closed:
            self._has_pending.wait(max(0.0, next_prune - time.monotonic()))
            if self._closed:
                return
            if self._has_pending.is_set():
                # Group commit: let a burst accumulate, then write it in one transaction.
                self._stop.wait(FLUSH_INTERVAL)
                if self._closed:
                    return  # close() flushes what is left
                try:
                    self._write_pending()
                except Exception:
                    pass  # logged once by _write_pending; the batch is retried
            if time.monotonic() >= next_prune:
                self._prune()
                next_prune = time.monotonic() + PRUNE_INTERVAL

    def _write_pending(self) -> None:
        store = self._store
        with self._flush_lock:
            with self._lock:
                batch = self._pending
                if not batch:
                    self._has_pending.clear()
                    return
                self._pending = []
                self._has_pending.clear()
            if store is None:
                return
            from paglets.persistence.store import EventRow

            rows = [
                EventRow(ev.event_id, ev.kind, ev.agent_id, ev.timestamp, _encode(ev.to_wire()))
                for ev in batch
            ]
            try:
                store.append_events(rows)
            except Exception:
                # Keep the batch (in id order, ahead of newer events) and retry next round.
                with self._lock:
                    self._pending[:0] = batch
                    if not self._closed:
                        self._has_pending.set()
                if not self._flush_failing:
                    _log.exception("could not write %d events to the store; will retry", len(batch))
                self._flush_failing = True
                raise
            self._flush_failing = False

    def flush(self) -> None:
        """Write every event emitted so far to the store (no-op without a store)."""
        if self._store is None:
            return
        self._write_pending()

    def _prune(self) -> None:
        store = self._store
        if store is None:
            return
        if self.retention_seconds is None and self.retention_max is None:
            return
        before = 0.0 if self.retention_seconds is None else time.time() - self.retention_seconds
        keep = 2**62 if self.retention_max is None else self.retention_max
        try:
            store.prune_events(before=before, keep_max=keep)
        except Exception:
            _log.exception("pruning the event log failed")

    # -- reading -------------------------------------------------------------------------

    def list_events(
        self,
        since: int = 0,
        limit: int = 100,
        *,
        kinds: Iterable[str] | None = None,
        agent_id: str | None = None,
    ) -> list[ContextEvent]:
        """Events with id > `since`, oldest first, at most `limit` (optionally filtered)."""
        if limit <= 0:
            return []
        store = self._store
        if store is None:
            wanted = None if kinds is None else frozenset(kinds)
            with self._lock:
                ring = list(self._ring or ())
            out: list[ContextEvent] = []
            for event in ring:
                if event.event_id <= since:
                    continue
                if wanted and event.kind not in wanted:
                    continue
                if agent_id is not None and event.agent_id != agent_id:
                    continue
                out.append(event)
                if len(out) >= limit:
                    break
            return out
        self.flush()
        rows = store.events_since(since, limit, kinds=kinds, agent_id=agent_id)
        return [ContextEvent.from_wire(_decode(row.body)) for row in rows]

    # -- shutdown ------------------------------------------------------------------------

    def close(self, *, timeout: float = 5.0) -> None:
        """Flush, stop the threads (listeners drain what was emitted first), prune once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            flusher, listener = self._flusher, self._listener_thread
        self._stop.set()
        self._has_pending.set()  # wake the flusher so it sees _closed
        current = threading.current_thread()
        if flusher is not None and flusher is not current:
            flusher.join(timeout)
        try:
            self.flush()
        except Exception:
            pass  # already logged by _write_pending
        self._prune()
        if listener is not None:
            self._listener_queue.put(_STOP)
            if listener is not current:
                listener.join(timeout)
