"""Paglet classes for the messaging and re-entrancy integration tests.

Test plumbing that must not be state (state is a codec-encodable dataclass and gets
checkpointed) lives in module-level dicts keyed by agent id: the gates a handler blocks on,
the events it sets, and the order in which handlers ran.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from paglets import NOT_HANDLED, Message, Paglet, PagletState
from paglets.core.errors import ForbiddenError

GATE_TIMEOUT = 30.0  # a blocked handler gives up after this (a test forgot to release it)

_lock = threading.Lock()
GATES: dict[str, threading.Event] = {}
STARTED: dict[str, threading.Event] = {}
FINISHED: dict[str, threading.Event] = {}
RECORDS: dict[str, list[str]] = {}
INSTANCES: dict[str, Paglet[Any]] = {}
CONCURRENT: dict[str, int] = {}
MAX_CONCURRENT: dict[str, int] = {}


def _event(table: dict[str, threading.Event], agent_id: str) -> threading.Event:
    with _lock:
        event = table.get(agent_id)
        if event is None:
            event = table[agent_id] = threading.Event()
        return event


def gate(agent_id: str) -> threading.Event:
    """The event a `block` handler of this paglet waits for."""
    return _event(GATES, agent_id)


def started(agent_id: str) -> threading.Event:
    """Set when a `block` handler of this paglet has started."""
    return _event(STARTED, agent_id)


def finished(agent_id: str) -> threading.Event:
    """Set when a `block` handler of this paglet is about to return."""
    return _event(FINISHED, agent_id)


def record(agent_id: str, tag: str) -> None:
    with _lock:
        RECORDS.setdefault(agent_id, []).append(tag)


def records(agent_id: str) -> list[str]:
    with _lock:
        return list(RECORDS.get(agent_id, ()))


def release_all() -> None:
    """Open every gate, so no handler outlives its test."""
    with _lock:
        gates = list(GATES.values())
    for event in gates:
        event.set()


# -- reply values of every codec kind ----------------------------------------------------


@dataclass
class Point:
    x: int
    y: int
    label: str = ""


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class CustomError(Exception):
    """Not a paglets error and not a builtin: reaches callers as `RemoteHandlerError`."""


WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)

REPLIES: dict[str, Any] = {
    "int": 42,
    "str": "hello",
    "dataclass": Point(1, 2, "p"),
    "enum": Color.BLUE,
    "tuple": (1, "a", 2.5),
    "bytes": b"\x00\xffpaglets",
    "datetime": WHEN,
    "nested": {"points": [Point(3, 4)], "color": Color.RED, "pair": (5, 6)},
}


# -- paglets ------------------------------------------------------------------------------


@dataclass
class EchoState(PagletState):
    count: int = 0
    log: list[str] = field(default_factory=list)


class Echo(Paglet[EchoState]):
    """A paglet with one message kind per behaviour the tests exercise."""

    State = EchoState

    def on_creation(self, event: Any) -> None:
        INSTANCES[self.agent_id] = self

    def on_activation(self, event: Any) -> None:
        INSTANCES[self.agent_id] = self

    def on_deactivating(self, event: Any) -> None:
        record(self.agent_id, "deactivate")

    def handle_message(self, m: Message) -> Any:
        kind = m.kind
        if kind == "reply":
            return REPLIES[m.get_arg("what")]
        if kind == "ping":
            return {"id": self.agent_id, "sender": m.sender, "reply_to": m.reply_to}
        if kind == "count":
            self.state.count += 1
            return self.state.count
        if kind == "record":
            record(self.agent_id, m.get_arg("tag"))
            return m.get_arg("tag")
        if kind == "mode":
            record(self.agent_id, str(m.message_type))
            return m.message_type
        if kind == "where":
            return threading.current_thread().name
        if kind == "inspect":
            return self._inspect(m)
        if kind == "block":
            started(self.agent_id).set()
            released = gate(self.agent_id).wait(GATE_TIMEOUT)
            finished(self.agent_id).set()
            return released
        if kind == "fail":
            raise ValueError(f"bad input: {m.get_arg('why', 'no reason')}")
        if kind == "fail-paglet":
            raise ForbiddenError("echo forbids this")
        if kind == "fail-custom":
            raise CustomError("custom trouble")
        if kind == "not-handled":
            return NOT_HANDLED
        if kind == "fanout":
            replies = self.multicast("ping", include_self=False)
            replies.wait_for_all_replies(10)
            return [reply.get_reply() for reply in replies]
        if kind == "subscribe":
            self.subscribe_message(m.get_arg("kind"))
            return True
        if kind == "wait":
            record(self.agent_id, "waiting")
            woke = self.wait_message(timeout=m.get_arg("timeout", 20.0))
            record(self.agent_id, "woke" if woke else "timed-out")
            return woke
        if kind == "add":
            self.state.count += 1
            self.notify_state_changed()
            return self.state.count
        if kind == "await-count":
            target = m.get_arg("target")
            ok = self.wait_state(lambda s: s.count >= target, timeout=m.get_arg("timeout", 20.0))
            return {"ok": ok, "count": self.state.count}
        return self.not_handled()

    def _inspect(self, m: Message) -> dict[str, Any]:
        seen = {
            "types": {name: type(value).__name__ for name, value in m.args.items()},
            "arg_type": type(m.arg).__name__,
            "point": dict(m.args["point"]),
            "arg": dict(m.arg),
            "blob": m.args["blob"],
        }
        # Mutating the delivered copy must not reach the caller's message.
        m.args["items"].append(99)
        m.args["point"]["x"] = 1000
        m.args["added"] = True
        m.arg["x"] = -1
        return seen


class Deaf(Echo):
    """Receives no multicast until it subscribes."""

    SUBSCRIBED_MESSAGES = ()


class PingOnly(Echo):
    SUBSCRIBED_MESSAGES = ("ping",)


class Quiet(Paglet[EchoState]):
    """Handles no kind at all."""

    State = EchoState

    def handle_message(self, m: Message) -> Any:
        return self.not_handled()


class FailingRun(Echo):
    """`run()` raises: the paglet must stay usable."""

    def run(self) -> None:
        raise RuntimeError("run exploded")


class AsyncEcho(Paglet[EchoState]):
    """`async def handle_message`: runs on the host's event loop."""

    State = EchoState

    async def handle_message(self, m: Message) -> Any:
        kind = m.kind
        if kind == "where":
            await asyncio.sleep(0)
            return threading.current_thread().name
        if kind == "ask":
            return await self.send_async(m.get_arg("target"), Message("reply", {"what": "int"}))
        if kind == "blocking-send":
            try:
                self.send(m.get_arg("target"), Message("ping"), timeout=2.0)
            except RuntimeError as exc:
                return {"raised": type(exc).__name__, "message": str(exc)}
            return {"raised": None, "message": ""}
        if kind == "fail":
            raise ValueError("async trouble")
        return NOT_HANDLED


# -- re-entrancy --------------------------------------------------------------------------


@dataclass
class RelayState(EchoState):
    next_id: str = ""


class Relay(Echo):
    """Chains of synchronous sends between paglets."""

    State = RelayState

    def handle_message(self, m: Message) -> Any:
        kind = m.kind
        here = threading.current_thread().name
        if kind == "fwd":
            nxt = self.state.next_id
            return self.send(nxt, Message("fwd"), timeout=60.0) + 1 if nxt else 0
        if kind == "self-call":
            inner = self.send(self.agent_id, Message("count"), timeout=5.0)
            return {"inner": inner, "outer_thread": here}
        if kind == "call":  # A: call B, which calls back into A
            reply = self.send(m.get_arg("via"), Message("callback", {"back": self.agent_id}))
            record(self.agent_id, "call-done")
            return {"a_thread": here, "b": reply}
        if kind == "callback":  # B: call back into the caller
            leaf = self.send(m.get_arg("back"), Message("leaf"))
            return {"b_thread": here, "leaf": leaf}
        if kind == "leaf":
            return {"thread": here, "agent": self.agent_id}
        if kind == "oneway-self":
            # A one-way message to itself is queued behind this turn, never run inside it.
            self.context.get_proxy(self.agent_id).send_oneway(Message("record", {"tag": "oneway"}))
            return "oneway" in records(self.agent_id)
        if kind == "call-oneway-back":  # A: B answers by a one-way message to A
            self.send(m.get_arg("via"), Message("oneway-back", {"back": self.agent_id}))
            return "oneway" in records(self.agent_id)
        if kind == "oneway-back":
            self.context.get_proxy(m.get_arg("back")).send_oneway(
                Message("record", {"tag": "oneway"})
            )
            return True
        return super().handle_message(m)


class Serial(Paglet[EchoState]):
    """Counts how many of its handlers run at once (must never exceed one)."""

    State = EchoState

    def handle_message(self, m: Message) -> Any:
        me = self.agent_id
        with _lock:
            now = CONCURRENT.get(me, 0) + 1
            CONCURRENT[me] = now
            MAX_CONCURRENT[me] = max(MAX_CONCURRENT.get(me, 0), now)
        try:
            # An unlocked read-modify-write with a GIL hand-off in the middle: if two turns
            # overlapped, increments would be lost (sleep(0) yields; it waits for nothing).
            value = self.state.count
            time.sleep(0)
            self.state.count = value + 1
            return self.state.count
        finally:
            with _lock:
                CONCURRENT[me] -= 1
