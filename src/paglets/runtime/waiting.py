"""Waiting inside a paglet: `wait_message`, `wait_state`, their notifications, and the
multicast subscription set. A wait inside a turn releases the turn (api.md §1.3, §1.4)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from paglets.core.errors import HostError
from paglets.runtime.mailbox import Cell, Turns

__all__ = ["Waiting"]


class Waiting:
    def __init__(self, turns: Turns) -> None:
        self.turns = turns

    def wait_message(self, cell: Cell, timeout: float) -> bool:
        event = threading.Event()
        with cell.lock:
            if cell.msg_waiters is None:
                cell.msg_waiters = []
            cell.msg_waiters.append(event)
        woke = self.turns.release_while(cell, lambda: event.wait(timeout))
        if not woke:
            with cell.lock:
                if cell.msg_waiters and event in cell.msg_waiters:
                    cell.msg_waiters.remove(event)
        return bool(woke)

    def notify_message(self, cell: Cell, *, all_waiters: bool) -> None:
        with cell.lock:
            waiters = cell.msg_waiters or []
            woken = waiters if all_waiters else waiters[:1]
            cell.msg_waiters = [] if all_waiters else waiters[1:]
        for event in woken:
            event.set()

    def wait_state(self, cell: Cell, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            # Register before testing, so a notify between the test and the wait is not lost.
            event = threading.Event()
            with cell.lock:
                if cell.state_waiters is None:
                    cell.state_waiters = []
                cell.state_waiters.append(event)
            try:
                with cell.paglet.locked():
                    if predicate():
                        return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.turns.release_while(cell, lambda e=event, r=remaining: e.wait(r))
            finally:
                with cell.lock:
                    if cell.state_waiters and event in cell.state_waiters:
                        cell.state_waiters.remove(event)

    def notify_state(self, cell: Cell, *, all_waiters: bool) -> None:
        with cell.lock:
            waiters = cell.state_waiters or []
            woken = waiters if all_waiters else waiters[:1]
            cell.state_waiters = [] if all_waiters else waiters[1:]
        for event in woken:
            event.set()

    def wake_all(self, cell: Cell) -> None:
        self.notify_message(cell, all_waiters=True)
        self.notify_state(cell, all_waiters=True)

    def edit_subscriptions(self, cell: Cell, action: str, kind: str) -> None:
        with cell.lock:
            current = cell.subscriptions
            if action == "clear":
                cell.subscriptions = set()
            elif action == "add":
                if current is not None:
                    current.add(kind)
            elif action == "remove":
                if current is None:
                    # "all kinds" minus one cannot be a finite set: switch to an explicit
                    # empty set would drop everything, so refuse clearly instead.
                    raise HostError(
                        "this paglet receives every multicast kind (SUBSCRIBED_MESSAGES = None); "
                        "call unsubscribe_all_messages() then subscribe_message() for the kinds you want"
                    )
                current.discard(kind)
