"""The paglet classes the benchmarks run. Importable as `bench.models` so that stored
records (f3) name classes a restarted host can import again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paglets import Message, Paglet, PagletState

__all__ = ["Ping", "PingState", "Pong", "PongState", "Small", "SmallState", "small_state"]

STATE_BYTES = 100


@dataclass
class SmallState(PagletState):
    """About 100 B of state, as in targets f1, e3: one distinct 100-byte blob."""

    blob: bytes = b""


def small_state(i: int) -> SmallState:
    """A distinct 100-byte state per paglet, so that no two paglets share their state
    object (sharing would hide the real per-paglet cost in f1 and f2)."""
    return SmallState(blob=i.to_bytes(8, "little") * (STATE_BYTES // 8) + b"\0" * (STATE_BYTES % 8))


class Small(Paglet[SmallState]):
    """The 100 B paglet: answers "echo" with its argument (message RTT rows)."""

    State = SmallState

    def handle_message(self, message: Message) -> Any:
        if message.kind == "echo":
            return message.arg
        return self.not_handled()


@dataclass
class PongState(PagletState):
    hits: int = 0


class Pong(Paglet[PongState]):
    """The far end of b2: answers "ping" without touching its state."""

    State = PongState

    def handle_message(self, message: Message) -> Any:
        if message.kind == "ping":
            return 1
        return self.not_handled()


@dataclass
class PingState(PagletState):
    target: str = ""


class Ping(Paglet[PingState]):
    """The near end of b2. "burst" sends `n` synchronous "ping"s to `target` from inside
    one handler, so the caller's single outer hop is amortised over `n` paglet→paglet hops;
    "once" sends one, for the figure as seen from outside."""

    State = PingState

    def handle_message(self, message: Message) -> Any:
        kind = message.kind
        if kind == "burst":
            target = message.args["target"]
            total = 0
            for _ in range(message.args["n"]):
                total += self.send(target, Message("ping"))
            return total
        if kind == "once":
            return self.send(message.args["target"], Message("ping"))
        return self.not_handled()
