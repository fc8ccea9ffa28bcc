"""Paglet classes for the process-isolation, crash and checkpoint tests.

They run in child processes (`ISOLATION = "process"`), so nothing they do can be seen
through module globals of the test process: every hook appends to `state.hooks`, which the
host's copy of the state mirrors after each call.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from paglets import Message, Paglet, PagletState
from paglets.core.errors import LifecycleError


@dataclass
class WorkState(PagletState):
    count: int = 0
    hooks: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    note: str = ""


def _square(n: int) -> int:
    return n * n


class Worker(Paglet[WorkState]):
    """A process paglet that can be told to crash in every way a process can."""

    State = WorkState
    ISOLATION = "process"

    def _seen(self, hook: str, detail: str = "") -> None:
        self.state.hooks.append(f"{hook}:{detail}" if detail else hook)
        pid = os.getpid()
        if not self.state.pids or self.state.pids[-1] != pid:
            self.state.pids.append(pid)

    def on_creation(self, event: Any) -> None:
        self._seen("on_creation")

    def on_arrival(self, event: Any) -> None:
        self._seen("on_arrival", event.reason)

    def on_activation(self, event: Any) -> None:
        self._seen("on_activation", event.reason)

    def on_deactivating(self, event: Any) -> None:
        self._seen("on_deactivating", event.reason)

    def on_dispatching(self, event: Any) -> None:
        self._seen("on_dispatching", event.reason)

    def on_clone(self, event: Any) -> None:
        self._seen("on_clone")

    def on_disposing(self, event: Any) -> None:
        self._seen("on_disposing")

    def handle_message(self, message: Message) -> Any:
        kind = message.kind
        if kind == "add":
            self.state.count += int(message.get_arg("n", 1))
            return self.state.count
        if kind == "pid":
            return os.getpid()
        if kind == "sys_exit":
            sys.exit(int(message.get_arg("code", 3)))
        if kind == "os_exit":
            os._exit(int(message.get_arg("code", 7)))
        if kind == "signal":
            os.kill(os.getpid(), int(message.get_arg("signal")))
            time.sleep(30)  # the signal ends the process before this returns
            return "survived"
        if kind == "sleep":
            time.sleep(float(message.get_arg("seconds")))
            self.state.count += 1
            return self.state.count
        if kind == "stop_self":  # SIGSTOP inside a handler: a "long" call, never hung
            self.state.note = "stopped"
            os.kill(os.getpid(), signal.SIGSTOP)
            # The stop reaches this thread a moment after kill() returns: without a pause
            # the reply could leave before the process stops.
            time.sleep(0.5)
            return "resumed"
        if kind == "fail":
            raise ValueError(f"failed on purpose: {message.get_arg('why', '')}")
        if kind == "pool":  # paglet code using multiprocessing (the child is not daemonic)
            with multiprocessing.get_context("fork").Pool(2) as pool:
                return pool.map(_square, list(message.get_arg("values", [])))
        if kind == "process":
            ctx = multiprocessing.get_context("fork")
            child = ctx.Process(target=os._exit, args=(5,))
            child.start()
            child.join(30)
            return child.exitcode
        if kind == "send":
            return self.send(
                message.get_arg("target"), Message("add", {"n": message.get_arg("n", 1)})
            )
        if kind == "self_send":  # re-entrant: runs nested while this handler waits
            return self.send(self.agent_id, Message("add", {"n": 10}))
        if kind == "add_then_checkpoint":
            self.state.count += int(message.get_arg("n", 1))
            self.checkpoint()
            return self.state.count
        if kind == "dispatch_self":
            self.state.note = "leaving"
            proxy = self.dispatch(message.get_arg("target"))
            try:
                self.send(self.agent_id, Message("add"))
            except LifecycleError:
                return {"moved_to": proxy.host_url, "detached": True}
            return {"moved_to": proxy.host_url, "detached": False}
        if kind == "modules":  # what the child imported besides the paglet's own module
            prefixes = tuple(message.get_arg("prefixes"))
            return sorted(name for name in sys.modules if name.startswith(prefixes))
        if kind == "context":
            return {
                "name": self.context.name,
                "address": self.context.address,
                "agent_id": self.context.agent_id,
            }
        if kind == "create":
            proxy = self.context.create_paglet(Worker)
            return proxy.send(Message("add", {"n": 5})) and proxy.agent_id
        return self.not_handled()


class NeverWorker(Worker):
    """Stored only at lifecycle transitions (`CHECKPOINT = "never"`)."""

    CHECKPOINT = "never"


@dataclass
class TickState(PagletState):
    ticks: int = 0
    stopped: bool = False


class Ticker(Paglet[TickState]):
    """A process paglet whose `run()` changes its state on its own thread."""

    State = TickState
    ISOLATION = "process"

    def run(self) -> None:
        while not self.departed:
            with self.locked_state() as state:
                state.ticks += 1
            if self.wait_state(lambda s: s.stopped, timeout=0.05):
                return

    def handle_message(self, message: Message) -> Any:
        if message.kind == "ticks":
            return self.state.ticks
        if message.kind == "stop":
            with self.locked_state() as state:
                state.stopped = True
            self.notify_all_state_changed()
            return True
        return self.not_handled()


class FailingRun(Paglet[TickState]):
    State = TickState
    ISOLATION = "process"

    def run(self) -> None:
        raise RuntimeError("run failed on purpose")


class ExitingRun(Paglet[TickState]):
    State = TickState
    ISOLATION = "process"

    def run(self) -> None:
        sys.exit(4)


class BadInit(Paglet[TickState]):
    State = TickState
    ISOLATION = "process"

    def __init__(self, state: TickState | None = None, *, agent_id: str | None = None) -> None:
        super().__init__(state, agent_id=agent_id)
        raise RuntimeError("cannot build on purpose")


class Plain(Paglet[WorkState]):
    """The default isolation, next to process paglets."""

    State = WorkState

    def handle_message(self, message: Message) -> Any:
        if message.kind == "add":
            self.state.count += int(message.get_arg("n", 1))
            return self.state.count
        if message.kind == "pid":
            return os.getpid()
        return self.not_handled()


# -- checkpoint and shutdown models ----------------------------------------------------------

GATE = threading.Event()  # released by the tests (in-process host paglets only)


@dataclass
class SlowState(PagletState):
    value: int = 0
    finished: bool = False


class Slow(Paglet[SlowState]):
    """`work` sets a value, then blocks until the test opens `GATE` (or 60 s pass)."""

    State = SlowState

    def handle_message(self, message: Message) -> Any:
        if message.kind == "set":
            self.state.value = int(message.get_arg("value"))
            return self.state.value
        if message.kind == "work":
            self.state.value += 1000
            GATE.wait(60)
            self.state.finished = True
            return self.state.value
        return self.not_handled()
