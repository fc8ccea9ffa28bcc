"""Contracts and paglets for the service tests (importable: process children load them)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import msgspec

from paglets import Message, Paglet, PagletState
from paglets.config.startup import AutoStartSpec
from paglets.core.events import CreationEvent, PersistencyEvent
from paglets.patterns.operations import OperationPaglet
from paglets.services import (
    EmptyPayload,
    ResidentLifecycle,
    ResidentServiceSpec,
    ServiceContract,
    ServiceOperation,
    ServiceScope,
)


@dataclass
class EchoRequest:
    text: str = ""


@dataclass
class EchoReply:
    text: str = ""
    host: str = ""
    pid: int = 0


@dataclass
class Count:
    value: int = 0


class StructRequest(msgspec.Struct):
    n: int = 0


ECHO = ServiceOperation("echo", EchoRequest, EchoReply)
COUNT = ServiceOperation("count", EmptyPayload, Count)
CRASH = ServiceOperation("crash")
SQUARE = ServiceOperation("square", StructRequest, Count)
ECHO_CONTRACT = ServiceContract("echo", (ECHO, COUNT))
ECHO_V2 = ServiceContract("echo", (ECHO, COUNT), version="2")
CRASHY_CONTRACT = ServiceContract("crashy", (ECHO, CRASH))
BAD_REPLY = ServiceOperation("bad", EmptyPayload, EchoReply)
BAD_CONTRACT = ServiceContract("bad", (BAD_REPLY,))

# Process-wide tallies of instances built (host isolation only), by class name.
CREATED: dict[str, int] = {}
_created_lock = threading.Lock()


def created(name: str) -> int:
    with _created_lock:
        return CREATED.get(name, 0)


def _count(name: str) -> None:
    with _created_lock:
        CREATED[name] = CREATED.get(name, 0) + 1


@dataclass
class EchoState(PagletState):
    calls: int = 0
    prefix: str = ""
    hooks: list[str] = field(default_factory=list)


class EchoService(OperationPaglet[EchoState]):
    """Advertises ECHO_CONTRACT itself (call `advertise` with a scope)."""

    State = EchoState
    Operations = ECHO_CONTRACT.operations

    def operation_handlers(self) -> dict[Any, Any]:
        return {ECHO: self.echo, "count": self.count}

    def echo(self, request: EchoRequest) -> EchoReply:
        self.state.calls += 1
        return EchoReply(self.state.prefix + request.text, self.context.name, os.getpid())

    def count(self, request: EmptyPayload) -> Count:
        return Count(self.state.calls)

    def handle_operation_message(self, message: Message) -> Any:
        if message.kind == "advertise":
            scope = ServiceScope(message.get_arg("scope", "local"))
            ttl = message.get_arg("ttl")
            return self.advertise_contract(ECHO_CONTRACT, scope=scope, ttl=ttl).to_wire()
        if message.kind == "unadvertise":
            return len(self.unadvertise_service(ECHO_CONTRACT.name))
        return None


class AdvertisesOnCreation(EchoService):
    def on_creation(self, event: CreationEvent) -> None:
        self.advertise_contract(ECHO_CONTRACT, scope=ServiceScope.MESH)


class LazyEcho(EchoService):
    """A lazy resident echo service; counts its instances."""

    RESIDENT_SERVICES = (ResidentServiceSpec(ECHO_CONTRACT, idle_timeout=30.0),)

    def __init__(self, state: Any = None, *, agent_id: str | None = None) -> None:
        super().__init__(state, agent_id=agent_id)
        _count("LazyEcho")

    def on_creation(self, event: CreationEvent) -> None:
        self.state.hooks.append("created")

    def on_activation(self, event: PersistencyEvent) -> None:
        self.state.hooks.append(f"activated:{event.reason}")

    def on_deactivating(self, event: PersistencyEvent) -> None:
        self.state.hooks.append(f"deactivating:{event.reason}")


class EagerEcho(EchoService):
    RESIDENT_SERVICES = (
        ResidentServiceSpec(
            ECHO_CONTRACT, lifecycle=ResidentLifecycle.EAGER, scope=ServiceScope.MESH
        ),
    )


class TwoServices(EchoService):
    RESIDENT_SERVICES = (
        ResidentServiceSpec(ECHO_CONTRACT),
        ResidentServiceSpec(CRASHY_CONTRACT, agent_id="two.crashy"),
    )


class CrashyEcho(Paglet[EchoState]):
    """A resident provider in its own process; `crash` kills that process."""

    State = EchoState
    ISOLATION = "process"
    RESIDENT_SERVICES = (ResidentServiceSpec(CRASHY_CONTRACT),)

    def handle_message(self, message: Message) -> Any:
        if message.kind == "crash":
            os._exit(3)
        return CRASHY_CONTRACT.route(
            message,
            {"echo": lambda r: EchoReply(r.text, self.context.name, os.getpid())},
        )


class BadReplier(Paglet[EchoState]):
    """Replies to `bad` with the wrong type (provider-side check) or a raw value."""

    State = EchoState

    def handle_message(self, message: Message) -> Any:
        if message.get_arg("raw"):
            return 42
        return BAD_CONTRACT.route(message, {BAD_REPLY: lambda r: Count(1)})


@dataclass
class WatchState(PagletState):
    label: str = "default"
    starts: int = 0


class Watchdog(Paglet[WatchState]):
    State = WatchState
    AUTO_START = AutoStartSpec(agent_id="watchdog", state={"label": "from-class"})

    def on_activation(self, event: PersistencyEvent) -> None:
        self.state.starts += 1


class Plain(Paglet[WatchState]):
    State = WatchState


class Caller(Paglet[EchoState]):
    """Uses the service helpers from inside a handler."""

    State = EchoState

    def handle_message(self, message: Message) -> Any:
        scope = ServiceScope(message.get_arg("scope", "local"))
        if message.kind == "call":
            handle = self.require_contract(ECHO_CONTRACT, scope=scope)
            return handle.call(ECHO, EchoRequest(message.get_arg("text", ""))).text
        if message.kind == "lookup":
            ref = self.lookup_service("echo", capability=message.get_arg("capability"), scope=scope)
            return None if ref is None else ref.to_wire()
        if message.kind == "lease":
            return self.lease_contract(ECHO_CONTRACT, ttl=60.0).lease_id
        if message.kind == "settings":
            return self.service_settings(message.get_arg("name", "echo"))
        return None


class SelfAdvertisingLazy(LazyEcho):
    """A resident provider that also advertises its contract itself."""

    def on_creation(self, event: CreationEvent) -> None:
        super().on_creation(event)
        self.advertise_contract(ECHO_CONTRACT, metadata={"zone": "a"})
