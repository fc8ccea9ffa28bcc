"""Request bodies of the HTTP API as msgspec structs, and the query-string readers.

Unknown fields are ignored and a wrong type is `400 invalid-body` naming its path
(network.md §1.2); limits that msgspec can check (priority range, id length) are declared
on the fields, so a bad value never reaches the runtime.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from msgspec import UNSET, Meta, Struct

from paglets.core.messages import Message
from paglets.runtime.http_wire import invalid, refuse, restore

__all__ = [
    "QUERY_INT_MAX",
    "CreateBody",
    "DeactivateBody",
    "Empty",
    "MessageWire",
    "MoveBody",
    "MulticastBody",
    "SendBody",
    "message_from",
    "query_bool",
    "query_int",
]

QUERY_INT_MAX = 2**62

Kind = Annotated[str, Meta(min_length=1, max_length=1024)]
Id = Annotated[str, Meta(min_length=1, max_length=256)]


class MessageWire(Struct):
    kind: Kind
    args: dict[str, Any] = {}
    arg: Any = None
    sender: str | None = None
    reply_to: str | None = None
    priority: Annotated[int, Meta(ge=0, le=10)] = 5
    message_type: Annotated[int, Meta(ge=0, le=2)] = 0
    timestamp: float | None = None
    message_id: Id | None = None


class SendBody(Struct):
    message: MessageWire
    oneway: bool = False
    activate_if_inactive: bool = True
    no_delay: bool = False
    durable: bool = False
    call_chain: Any = None


class MulticastBody(Struct):
    message: MessageWire
    exclude: list[str] = []
    subscribers_only: bool = False


class CreateBody(Struct):
    agent_class_name: str | None = None
    state_class_name: str | None = None
    state: dict[str, Any] | None = None
    init: Any = None
    agent_id: str | None = None
    envelope: Any = UNSET


class MoveBody(Struct):
    ticket: dict[str, Any] | None = None
    target: str | None = None


class DeactivateBody(Struct):
    request: dict[str, Any] | None = None


class Empty(Struct):
    pass


def message_from(wire: MessageWire, request: web.Request) -> Message:
    try:
        return Message(
            wire.kind,
            restore(wire.args, request),
            restore(wire.arg, request),
            wire.sender,
            wire.reply_to,
            wire.priority,
            wire.message_type,
            wire.timestamp,
            wire.message_id,
        )
    except (TypeError, ValueError) as exc:
        raise invalid("$.message", str(exc)) from None


def query_int(request: web.Request, name: str, default: int | None, minimum: int = 0) -> Any:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= QUERY_INT_MAX:
        refuse(
            f"query parameter {name}={raw!r} must be an integer from {minimum} to {QUERY_INT_MAX}",
            code="bad-query",
            error_type="SerializationError",
        )
    return value


def query_bool(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "").lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    refuse(
        f"query parameter {name}={raw!r} must be 1/0 or true/false",
        code="bad-query",
        error_type="SerializationError",
    )
