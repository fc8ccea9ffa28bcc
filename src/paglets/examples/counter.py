"""A small paglet used by the quickstart demo and the docs: a counter that keeps a log."""

from __future__ import annotations

from dataclasses import dataclass, field

from paglets import Message, Paglet, PagletState
from paglets.core.events import CreationEvent, PersistencyEvent


@dataclass
class CounterState(PagletState):
    name: str = "counter"
    count: int = 0
    history: list[str] = field(default_factory=list)


class Counter(Paglet[CounterState]):
    """Answers `add` (returns the new count), `get` and `total` (asks its peers and sums)."""

    State = CounterState

    def on_creation(self, event: CreationEvent) -> None:
        self.state.history.append("created")

    def on_deactivating(self, event: PersistencyEvent) -> None:
        self.state.history.append(f"sleeping ({event.reason})")

    def on_activation(self, event: PersistencyEvent) -> None:
        self.state.history.append(f"woke ({event.reason})")

    def handle_message(self, message: Message) -> object:
        if message.kind == "add":
            self.state.count += int(message.get_arg("n", 1))
            return self.state.count
        if message.kind == "get":
            return self.state.count
        if message.kind == "total":
            # Paglet-to-paglet messages on one host: a direct call in the sender's thread.
            peers = message.get_arg("peers", [])
            return self.state.count + sum(self.send(p, Message("get")) for p in peers)
        return self.not_handled()


class IsolatedCounter(Counter):
    """The same counter in a child process of its own (`ISOLATION = "process"`)."""

    ISOLATION = "process"
