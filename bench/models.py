"""The paglet classes the benchmarks run. Importable as `bench.models` so that stored
records (f3) name classes a restarted host can import again."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from paglets import Message, Paglet, PagletState

__all__ = [
    "Blob",
    "BlobState",
    "Ping",
    "PingState",
    "Pong",
    "PongState",
    "Sink",
    "SinkState",
    "Small",
    "SmallState",
    "small_state",
]

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
    """The near end of b2 and b3. "burst" sends `n` synchronous "ping"s to `target` from
    inside one handler, so the caller's single outer hop is amortised over `n` paglet→paglet
    hops; "once" sends one, for the figure as seen from outside. An optional `host_url`
    names the target's host when it is another host process (b3)."""

    State = PingState

    def handle_message(self, message: Message) -> Any:
        kind = message.kind
        if kind == "burst":
            target = message.args["target"]
            host_url = message.args.get("host_url")
            total = 0
            for _ in range(message.args["n"]):
                total += self.send(target, Message("ping"), host_url=host_url)
            return total
        if kind == "once":
            args = message.args
            return self.send(args["target"], Message("ping"), host_url=args.get("host_url"))
        return self.not_handled()


@dataclass
class SinkState(PagletState):
    count: int = 0


class Sink(Paglet[SinkState]):
    """The target of c2: counts one-way "hit"s in its state; "count" answers the count, so
    a synchronous "count" queued behind a burst tells when the burst was handled."""

    State = SinkState

    def handle_message(self, message: Message) -> Any:
        kind = message.kind
        if kind == "hit":
            self.state.count += 1
            return None
        if kind == "count":
            return self.state.count
        if kind == "echo":
            return message.arg
        return self.not_handled()


@dataclass
class BlobState(PagletState):
    blob: bytes = b""


class Blob(Paglet[BlobState]):
    """A paglet holding a large state (b4, d2, d3). "fill" makes `size` random bytes on the
    host itself, so the benchmark does not upload them; "echo" answers without touching the
    state (b4: a message must not copy it); "size" reports it after a move."""

    State = BlobState

    def handle_message(self, message: Message) -> Any:
        kind = message.kind
        if kind == "echo":
            return message.arg
        if kind == "fill":
            rng = random.Random(message.args.get("seed", 0))
            self.state.blob = rng.randbytes(int(message.args["size"]))
            return len(self.state.blob)
        if kind == "size":
            return len(self.state.blob)
        return self.not_handled()


class IsolatedSmall(Small):
    """The 100 B paglet in its own child process (targets e5)."""

    ISOLATION = "process"
