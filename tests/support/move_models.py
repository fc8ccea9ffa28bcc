"""Paglets for the move tests: they record their hooks per host and can be told to fail
or to take their time in `on_arrival`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from paglets import Message, Paglet, PagletState
from paglets.core.events import CloneEvent, MobilityEvent

HOOKS: list[tuple[str, str, str, str]] = []  # (agent_id, host_name, hook, detail)
ARRIVAL_GATES: dict[str, threading.Event] = {}  # agent_id -> released when on_arrival may end
FAIL_ARRIVAL: set[str] = set()


@dataclass
class TravellerState(PagletState):
    count: int = 0
    visited: list[str] = field(default_factory=list)
    payload: bytes = b""


class Traveller(Paglet[TravellerState]):
    State = TravellerState

    def _note(self, hook: str, detail: str = "") -> None:
        HOOKS.append((self.agent_id, self.context.name, hook, detail))

    def on_dispatching(self, event: MobilityEvent) -> None:
        self._note("on_dispatching", event.target_host_address)

    def on_reverting(self, event: MobilityEvent) -> None:
        self._note("on_reverting", event.target_host_address)

    def on_arrival(self, event: MobilityEvent) -> None:
        self._note("on_arrival", event.reason)
        self.state.visited.append(self.context.name)
        gate = ARRIVAL_GATES.get(self.agent_id)
        if gate is not None:
            gate.wait(30)
        if self.agent_id in FAIL_ARRIVAL:
            raise RuntimeError("on_arrival refused on purpose")

    def on_cloning(self, event: CloneEvent) -> None:
        self._note("on_cloning", event.clone_agent_id)

    def on_clone(self, event: CloneEvent) -> None:
        self._note("on_clone", event.source_agent_id)

    def on_cloned(self, event: CloneEvent) -> None:
        self._note("on_cloned", event.clone_agent_id)

    def on_transfer_aborted(self, event: object) -> None:
        self._note("on_transfer_aborted")

    def handle_message(self, message: Message) -> object:
        if message.kind == "add":
            self.state.count += int(message.get_arg("n", 1))
            return self.state.count
        if message.kind == "where":
            return self.context.name
        if message.kind == "go":
            return self.dispatch(message.get_arg("target")).to_wire()
        return self.not_handled()


@dataclass
class CourierState(PagletState):
    refs: list[dict[str, object]] = field(default_factory=list)


class Courier(Paglet[CourierState]):
    """Uploads and downloads artifacts on request (for the artifact tests)."""

    State = CourierState

    def handle_message(self, message: Message) -> object:
        if message.kind == "upload":
            ref = self.upload_artifact(
                message.get_arg("path"), host_url=message.get_arg("host_url")
            )
            self.state.refs.append(ref.to_wire())
            return ref.to_wire()
        if message.kind == "download":
            return str(self.download_artifact(message.get_arg("ref"), message.get_arg("target")))
        if message.kind == "delete":
            return self.delete_artifact(message.get_arg("ref"))
        return self.not_handled()


@dataclass
class PingPongState(PagletState):
    hops_left: int = 0
    homes: list[str] = field(default_factory=list)  # the two hosts' URLs
    visited: list[str] = field(default_factory=list)


class PingPong(Paglet[PingPongState]):
    """Bounces between two hosts as soon as it arrives, until its hops are used up: a
    paglet that goes back to the host it has just left, before that host let go of it."""

    State = PingPongState

    def run(self) -> None:
        state = self.state
        if state.hops_left <= 0:
            return
        state.hops_left -= 1
        here = self.context.address
        there = next(url for url in state.homes if url != here)
        state.visited.append(self.context.name)
        self.dispatch(there)
