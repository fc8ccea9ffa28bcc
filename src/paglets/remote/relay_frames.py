"""The relay WebSocket's frames (network.md §3.8) and the relay's settings.

A node without inbound connectivity (`paglets host --connect-to HUB_URL`) keeps one
WebSocket to `HUB_URL/relay/ws` (subprotocol `paglets.relay.v1`). Every WebSocket message is
one binary MessagePack map whose `t` names the frame; both ends decode into these structs, so
a wrong type or a missing field is a validation error naming its path.

Exchanges. A `req` starts one HTTP exchange on the link and names it with `sid`, an integer
chosen by the side that sends the `req`: the hub uses even numbers, the node odd ones, so
either side can tell from `sid` alone whether a `chunk`, `credit` or `cancel` is about an
exchange it started or one it serves. `delivery_id` is the idempotency id of the request
(its `Idempotency-Key`, else `transfer_id:phase`, else the message's `message_id`, else new;
`keyed` says it came from the request, so a retry can carry it again). Two attempts with the
same `delivery_id` are two exchanges (two `sid`s); the node runs the request once.

Bodies up to `CHUNK_BYTES` travel inside `req`/`res`; larger or open-ended ones (`chunked`)
follow as `chunk` frames of at most `CHUNK_BYTES`, the last with `end`. The receiver grants
`credit` as it consumes them (`seq` = chunks consumed so far); the sender keeps at most
`WINDOW` chunks beyond the granted count in flight, so neither end buffers more than a
window per exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = [
    "CHUNK_BYTES",
    "MAX_FRAME_BYTES",
    "PING_SECONDS",
    "PROTOCOL",
    "SUBPROTOCOL",
    "WINDOW",
    "Cancel",
    "Chunk",
    "Credit",
    "Hello",
    "Ping",
    "Pong",
    "RelayFrame",
    "RelaySettings",
    "Req",
    "Res",
    "Welcome",
    "decode",
    "encode",
]

PROTOCOL = 1
SUBPROTOCOL = "paglets.relay.v1"
CHUNK_BYTES = 1024 * 1024  # the largest body inside req/res, and the largest chunk
WINDOW = 8  # chunks in flight beyond the receiver's credit
PING_SECONDS = 15.0
# A frame holds at most one chunk plus the request head (headers are <= 16 KiB on the wire).
MAX_FRAME_BYTES = 2 * CHUNK_BYTES + 256 * 1024

Headers = list[tuple[str, str]]


class Hello(msgspec.Struct, tag_field="t", tag="hello", omit_defaults=True):
    """node → hub, the first frame: the node's record (the hub checks it against the
    upgrade's `X-Paglets-Host-Id` and `X-Paglets-Relay-Name`)."""

    protocol: int
    name: str
    host_id: str
    code_version: str = ""
    paglets_version: str = ""
    tags: list[str] = []


class Welcome(msgspec.Struct, tag_field="t", tag="welcome", omit_defaults=True):
    """hub → node, the answer to `hello`: the node's URL, built by the hub (never taken from
    the node), and the hub's view of the mesh (`{name, url, host_id}` per alive member)."""

    protocol: int
    hub_id: str
    hub_name: str
    relay_url: str
    members: list[dict[str, str]] = []


class Req(msgspec.Struct, tag_field="t", tag="req", omit_defaults=True):
    """One HTTP request. `path` has no prefix (`/agents/x/messages`); `target` is set only
    on node → hub requests: the base URL of the host the node could not reach itself."""

    sid: int
    delivery_id: str
    method: str
    path: str
    query: str = ""
    headers: Headers = []
    body: bytes | None = None
    chunked: bool = False
    deadline_ms: int = 0
    keyed: bool = False
    target: str | None = None


class Res(msgspec.Struct, tag_field="t", tag="res", omit_defaults=True):
    """The answer's head (and its body when it is small)."""

    sid: int
    status: int
    headers: Headers = []
    body: bytes | None = None
    chunked: bool = False


class Chunk(msgspec.Struct, tag_field="t", tag="chunk", omit_defaults=True):
    sid: int
    seq: int
    data: bytes = b""
    end: bool = False


class Credit(msgspec.Struct, tag_field="t", tag="credit"):
    sid: int
    seq: int  # chunks consumed so far: the sender may send up to seq + WINDOW


class Cancel(msgspec.Struct, tag_field="t", tag="cancel", omit_defaults=True):
    """The requester gave up (its deadline passed): a request not started yet never runs;
    one already running finishes, and its answer is kept under its delivery id."""

    sid: int
    delivery_id: str = ""


class Ping(msgspec.Struct, tag_field="t", tag="ping"):
    t_ms: int  # the sender's clock, echoed in the pong (only the sender compares it)


class Pong(msgspec.Struct, tag_field="t", tag="pong"):
    t_ms: int


RelayFrame = Hello | Welcome | Req | Res | Chunk | Credit | Cancel | Ping | Pong


def _reject_ext(code: int, data: memoryview) -> Any:
    raise ValueError(f"MessagePack extension type {code} is not accepted in a relay frame")


encode = msgspec.msgpack.Encoder().encode
_decoder = msgspec.msgpack.Decoder(RelayFrame, ext_hook=_reject_ext)


def decode(data: bytes) -> RelayFrame:
    """One frame; `msgspec.ValidationError`/`DecodeError` (or `ValueError`) if it is not."""
    return _decoder.decode(data)


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """The hub's knobs (cli.md §1.1): whether this host accepts relay nodes, how long a
    silent node stays online, the default deadline of a relayed request, and how many
    deliveries may be in flight per node."""

    hub: bool = True
    offline_after: float = 30.0
    delivery_timeout: float = 10.0
    queue_limit: int = 1024

    def __post_init__(self) -> None:
        if self.offline_after <= 0 or self.delivery_timeout <= 0:
            raise ValueError(
                "relay offline_after and delivery_timeout must be positive seconds, got "
                f"{self.offline_after!r} and {self.delivery_timeout!r}"
            )
        if self.queue_limit < 1:
            raise ValueError(f"relay queue_limit must be at least 1, got {self.queue_limit!r}")
