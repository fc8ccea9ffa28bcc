"""Mailboxes and turns: a paglet does one thing at a time.

Every live paglet has a `Cell`: its instance, its mailbox (a heap ordered by lifecycle
first, then `UNQUEUED_PRIORITY`, then priority, FIFO within one) and whether its *turn* is
taken. `Turns` runs work in turns:

* A synchronous caller whose target's turn is free takes the turn and runs the handler on
  its own thread (a thread hand-off costs ~75 µs, a direct call ~0.3 µs; architecture §5).
* Otherwise the work is queued and a pool thread drains the mailbox.
* Re-entrancy: a synchronous send carries a call-chain id. When the target's current turn
  is blocked on that same chain (a self-send, A→B→A), the nested message runs at once, on
  the sending thread, instead of deadlocking. The thread that already holds the target's
  turn (A calling itself inline) always nests.
* A turn that waits (`wait_message`, `wait_state`) releases the turn meanwhile and gets it
  back before any queued message runs.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from paglets.core.errors import PagletTimeoutError
from paglets.runtime.workers import WorkerPool

__all__ = ["Cell", "CellGone", "Turns", "current_cell", "current_chain", "new_chain", "holds_turn"]

# Keys of the mailbox heap: smaller runs first.
LIFECYCLE = 0
UNQUEUED = 1
NORMAL = 2

MAX_INLINE_DEPTH = 12  # deeper synchronous chains continue on a pool thread (stack depth)
DRAIN_BATCH = 64  # items one drain runs before yielding its thread to other mailboxes

_tl = threading.local()
_chains = itertools.count(1)


def _held() -> list[Cell]:
    try:
        return _tl.held
    except AttributeError:
        _tl.held = held = []
        _tl.chain = None
        return held


def current_cell() -> Cell | None:
    """The cell whose turn the calling thread is running (innermost), if any."""
    held = _held()
    return held[-1] if held else None


def holds_turn(cell: Cell) -> bool:
    return cell in _held()


def current_chain() -> int | None:
    _held()
    return _tl.chain


def new_chain() -> int:
    return next(_chains)


class CellGone(Exception):
    """The paglet left this cell (deactivated, disposed, moved) before the work ran.

    Internal: the host catches it and routes the work again (e.g. to the inactive rules).
    """


class Item:
    __slots__ = ("cancelled", "chain", "fn", "future", "on_done", "started")

    def __init__(
        self,
        fn: Callable[[], Any],
        future: Future[Any] | None,
        chain: int | None,
        on_done: Callable[[Any, BaseException | None], None] | None = None,
    ) -> None:
        self.fn = fn
        self.future = future
        self.chain = chain
        self.started = False
        self.cancelled = False
        self.on_done = on_done


class Cell:
    """A live paglet: its instance, mailbox and bookkeeping. Slim on purpose (f1: ≤ 4 KiB)."""

    __slots__ = (
        "__weakref__",
        "agent_id",
        "busy",
        "delivered",
        "failed",
        "gone",
        "info",
        "lock",
        "msg_waiters",
        "paglet",
        "queue",
        "resumers",
        "state_waiters",
        "subscriptions",
        "waiting_chain",
    )

    def __init__(self, agent_id: str, paglet: Any, info: Any) -> None:
        self.agent_id = agent_id
        self.paglet = paglet
        self.lock = threading.Lock()
        self.busy = False
        self.gone = False
        self.queue: list[tuple[int, int, int, Item]] | None = None
        self.resumers: deque[threading.Event] | None = None
        self.waiting_chain: int | None = None
        self.msg_waiters: list[threading.Event] | None = None
        self.state_waiters: list[threading.Event] | None = None
        self.delivered = 0
        self.failed = 0
        self.info = info  # runtime.registry.AgentInfo
        self.subscriptions: set[str] | None = None

    def queued_count(self) -> int:
        return len(self.queue) if self.queue else 0


def _key(system: bool, priority: int) -> tuple[int, int]:
    if system:
        return LIFECYCLE, 0
    if priority == 0:
        return UNQUEUED, 0
    return NORMAL, -priority


class Turns:
    """Runs work in paglets' turns, on the caller's thread or on the worker pool."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self._seq = itertools.count()

    # -- taking the turn ---------------------------------------------------------------

    def try_acquire(self, cell: Cell) -> bool:
        """Take a free, idle cell's turn (used to build a paglet inside its own first turn)."""
        with cell.lock:
            if cell.busy or cell.queue or cell.resumers:
                return False
            cell.busy = True
            return True

    def call(
        self,
        cell: Cell,
        fn: Callable[[], Any],
        *,
        system: bool = False,
        priority: int = 5,
        timeout: float,
        chain: int | None = None,
        what: str = "message",
    ) -> Any:
        """Run `fn` in the cell's turn and return its result (blocking).

        Inline when the turn is free; nested when this thread holds the turn or the turn is
        blocked on `chain`; else queued, waiting at most `timeout` for the turn (nothing is
        done if it never comes).
        """
        held = _held()
        if cell in held:
            return self._run_nested(cell, fn, chain)
        with cell.lock:
            if cell.gone:
                raise CellGone
            if (
                not cell.busy
                and not cell.queue
                and not cell.resumers
                and len(held) < MAX_INLINE_DEPTH
            ):
                cell.busy = True
                mode = 0
            elif chain is not None and cell.busy and cell.waiting_chain == chain:
                mode = 1
            else:
                mode = 2
                future: Future[Any] = Future()
                item = Item(fn, future, chain)
                self._push(cell, item, system, priority)
        if mode == 0:
            try:
                return self._run_nested(cell, fn, chain)
            finally:
                self.release(cell)
        if mode == 1:
            return self._run_nested(cell, fn, chain)
        return self._wait(cell, item, future, timeout, what)

    def submit(
        self,
        cell: Cell,
        fn: Callable[[], Any],
        *,
        system: bool = False,
        priority: int = 5,
        chain: int | None = None,
    ) -> Future[Any]:
        """Queue `fn` for the cell's turn; the future completes with its result."""
        future: Future[Any] = Future()
        with cell.lock:
            if cell.gone:
                raise CellGone
            self._push(cell, Item(fn, future, chain), system, priority)
        return future

    def post(
        self,
        cell: Cell,
        fn: Callable[[], Any],
        *,
        priority: int = 5,
        on_done: Callable[[Any, BaseException | None], None] | None = None,
    ) -> None:
        """Queue `fn` with nobody waiting (one-way); `on_done(result, error)` sees the outcome."""
        with cell.lock:
            if cell.gone:
                raise CellGone
            self._push(cell, Item(fn, None, None, on_done), False, priority)

    def _push(self, cell: Cell, item: Item, system: bool, priority: int) -> None:
        # Called with cell.lock held.
        k0, k1 = _key(system, priority)
        if cell.queue is None:
            cell.queue = []
        heapq.heappush(cell.queue, (k0, k1, next(self._seq), item))
        if not cell.busy:
            cell.busy = True
            self.pool.submit(self._drain, cell)

    def _wait(self, cell: Cell, item: Item, future: Future[Any], timeout: float, what: str) -> Any:
        try:
            return future.result(timeout)
        except TimeoutError:
            with cell.lock:
                if not item.started:
                    item.cancelled = True
                    raise PagletTimeoutError(
                        f"paglet {cell.agent_id!r} stayed busy for {timeout:g}s; the {what} was "
                        "not delivered (nothing was done). Raise the timeout or make its handlers shorter."
                    ) from None
            raise PagletTimeoutError(
                f"no reply from paglet {cell.agent_id!r} within {timeout:g}s; the handler is still running"
            ) from None

    # -- running -----------------------------------------------------------------------

    def _run_nested(self, cell: Cell, fn: Callable[[], Any], chain: int | None) -> Any:
        held = _held()
        held.append(cell)
        previous = _tl.chain
        _tl.chain = chain
        try:
            return fn()
        finally:
            held.pop()
            _tl.chain = previous

    def _execute(self, cell: Cell, item: Item) -> None:
        try:
            result = self._run_nested(cell, item.fn, item.chain)
        except BaseException as exc:
            if item.future is not None:
                item.future.set_exception(exc)
            elif item.on_done is not None:
                item.on_done(None, exc)
            return
        if item.future is not None:
            item.future.set_result(result)
        elif item.on_done is not None:
            item.on_done(result, None)

    def _drain(self, cell: Cell) -> None:
        for _ in range(DRAIN_BATCH):
            with cell.lock:
                item = self._next_or_release(cell)
            if item is None:
                return
            self._execute(cell, item)
        self.pool.submit(self._drain, cell)  # keep the turn, but let other mailboxes run

    def _next_or_release(self, cell: Cell) -> Item | None:
        # Called with cell.lock held, by the current turn owner.
        if cell.resumers:
            cell.resumers.popleft().set()
            return None
        queue = cell.queue
        while queue:
            item = heapq.heappop(queue)[3]
            if item.cancelled:
                continue
            if cell.gone:
                self.pool.submit(_fail_gone, item)
                continue
            item.started = True
            return item
        cell.busy = False
        return None

    def release(self, cell: Cell) -> None:
        """End the current turn: hand it to a resumer, the next queued item, or free it."""
        with cell.lock:
            if cell.resumers:
                cell.resumers.popleft().set()
            elif cell.queue:
                self.pool.submit(self._drain, cell)
            else:
                cell.busy = False

    # -- waiting inside a turn ---------------------------------------------------------

    def release_while(self, cell: Cell, wait: Callable[[], Any]) -> Any:
        """Run `wait()` with the turn released if the calling thread holds it (once)."""
        held = _held()
        if not held or held[-1] is not cell or held.count(cell) != 1:
            return wait()  # not in the turn, or nested: keep the outer turn's guarantees
        held.pop()
        self.release(cell)
        try:
            return wait()
        finally:
            self._reacquire(cell)
            held.append(cell)

    def _reacquire(self, cell: Cell) -> None:
        with cell.lock:
            if not cell.busy:
                cell.busy = True
                return
            event = threading.Event()
            if cell.resumers is None:
                cell.resumers = deque()
            cell.resumers.append(event)
        event.wait()

    def mark_gone(self, cell: Cell) -> None:
        """The paglet left; queued work is failed with `CellGone` so callers route it again."""
        with cell.lock:
            cell.gone = True
            queue, cell.queue = cell.queue, None
        for entry in sorted(queue or ()):  # in mailbox order, so re-routing keeps it
            if not entry[3].cancelled:
                _fail_gone(entry[3])


def _fail_gone(item: Item) -> None:
    if item.future is not None:
        item.future.set_exception(CellGone())
    elif item.on_done is not None:
        item.on_done(None, CellGone())
