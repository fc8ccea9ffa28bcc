"""A thread pool that grows on demand.

Paglet handlers are plain blocking Python and may block on a synchronous send to another
paglet. A fixed pool would deadlock a chain of N such sends once N exceeds its size, so
this pool starts a new thread whenever no idle one is waiting, and idle threads retire
after a while. `max_threads` is a safety bound, far above what healthy code reaches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

log = logging.getLogger("paglets.workers")

__all__ = ["WorkerPool"]

_STOP = object()


class WorkerPool:
    def __init__(
        self, *, name: str = "paglets-worker", max_threads: int = 4096, idle_timeout: float = 30.0
    ) -> None:
        self._name = name
        self._max_threads = max_threads
        self._idle_timeout = idle_timeout
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0  # items put and not yet taken
        self._waiting = 0  # threads blocked in get()
        self._threads = 0
        self._started = 0
        self._closed = False

    @property
    def thread_count(self) -> int:
        return self._threads

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on a pool thread; exceptions are logged, never lost silently."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed (the host is stopping)")
            self._pending += 1
            self._queue.put((fn, args))
            if self._waiting < self._pending and self._threads < self._max_threads:
                self._threads += 1
                self._started += 1
                name = f"{self._name}-{self._started}"
                threading.Thread(target=self._work, name=name, daemon=True).start()

    def close(self) -> None:
        """Let every thread finish its current item and exit."""
        with self._lock:
            self._closed = True
            count = self._threads
        for _ in range(count):
            self._queue.put(_STOP)

    def _work(self) -> None:
        while True:
            with self._lock:
                self._waiting += 1
            try:
                item = self._queue.get(timeout=self._idle_timeout)
            except Empty:
                with self._lock:
                    self._waiting -= 1
                    if self._pending <= self._waiting:  # nobody counts on this thread
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._waiting -= 1
                if item is _STOP:
                    self._threads -= 1
                    return
                self._pending -= 1
            fn, args = item
            try:
                fn(*args)
            except BaseException:  # a bug in runtime code: keep the thread alive
                log.exception("unhandled error in %s", getattr(fn, "__qualname__", fn))
