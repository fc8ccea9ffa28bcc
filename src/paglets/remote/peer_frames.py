"""The peer socket's frames as msgspec structs (the format is described in
`paglets.runtime.peer_socket`).

Each WebSocket binary message is one MessagePack map whose `t` names its type. Both ends
decode into these structs, so a wrong type or a missing field is a validation error naming
its path, and a message inside a frame is validated exactly as `Message` validates itself
(decoded straight into a `Message`, whose `message_id` then counts as explicit: it is the
delivery id). Clients encode their frames as plain dicts (cheaper than building structs),
with the message wire pre-encoded (`msgspec.Raw`) so a resend or a followed move never
encodes it twice.
"""

from __future__ import annotations

from typing import Any

import msgspec

from paglets.core.messages import Message

__all__ = [
    "PROTOCOL",
    "Acks",
    "Fault",
    "MeshFrame",
    "Post",
    "Reply",
    "Send",
    "Welcome",
    "decode_client_frame",
    "decode_host_frame",
    "encode",
]

PROTOCOL = 1

encode = msgspec.msgpack.Encoder().encode


def _reject_ext(code: int, data: memoryview) -> Any:
    raise ValueError(f"MessagePack extension type {code} is not accepted (only timestamps)")


# -- client -> host ---------------------------------------------------------------------


class Send(msgspec.Struct, tag_field="t", tag="send", omit_defaults=True):
    """A message that gets exactly one `reply` with the same `id`."""

    id: int
    agent: str
    msg: Message
    oneway: bool = False
    activate: bool = True
    no_delay: bool = False
    timeout_ms: int | None = None
    durable: bool = False


class Post(msgspec.Struct, tag_field="t", tag="post", omit_defaults=True):
    """A pipelined one-way message: acknowledged in an `acks` frame once queued, or
    answered by a `reply` carrying `error` or `moved` when it could not be queued."""

    id: int
    agent: str
    msg: Message
    activate: bool = True
    no_delay: bool = False
    durable: bool = False


class MeshFrame(msgspec.Struct, tag_field="t", tag="mesh"):
    """A membership frame (`paglets.remote.mesh_wire`) for the host's mesh node: no reply,
    no acknowledgement (SWIM tolerates loss), and none of an HTTP exchange's ~300 bytes of
    heads either way (targets h1)."""

    data: bytes


# -- host -> client ---------------------------------------------------------------------


class Welcome(msgspec.Struct, tag_field="t", tag="welcome"):
    """The host's first frame. `boot` is new at every start of the host process: a client
    that reconnects to the same `boot` knows the host still remembers every delivery id it
    saw, so resending an unanswered message cannot run it twice."""

    protocol: int
    host_id: str = ""
    name: str = ""
    boot: str = ""
    max_frame: int = 16 * 1024 * 1024


class Reply(msgspec.Struct, tag_field="t", tag="reply", omit_defaults=True):
    """The answer to `send` (or to a `post` that failed). One of: `result` (the handler's
    reply in wire form; `None` for a one-way message), `held` (the message id, queued for
    an inactive paglet), `moved` (the forwarding block of network.md §1.6) or `error` (the
    error body of §1.5)."""

    id: int
    result: Any = None
    held: str | None = None
    moved: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class Acks(msgspec.Struct, tag_field="t", tag="acks"):
    """The `post` ids queued at the target since the last `acks`."""

    ids: list[int]


class Fault(msgspec.Struct, tag_field="t", tag="fault"):
    """A connection-level error (a frame that could not be read); the host closes next."""

    error: dict[str, Any]


_client_decoder = msgspec.msgpack.Decoder(Send | Post | MeshFrame, ext_hook=_reject_ext)
_host_decoder = msgspec.msgpack.Decoder(Reply | Acks | Welcome | Fault)

decode_client_frame = _client_decoder.decode
decode_host_frame = _host_decoder.decode
