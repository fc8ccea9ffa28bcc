"""The frames between a host and the child process of an `ISOLATION = "process"` paglet.

Both sides import this module (the child through the forkserver's preload), so it imports
only the programming model and the codec. Frames are msgpack arrays whose first item names
the frame; everything in them is a builtin (no pickle of user objects): class names, state
bytes from `codec.encode_state`, message and error wire dicts, event field dicts.

Host → child:
  [CALL, call_id, op, payload]        op: "handle" (message wire), "hook" ([name, event]),
                                      "policy" (request wire)
  [REPLY, cb_id, ok, value]           answer to a child's callback
  [RUN]                               start `run()` on its own thread
  [DEPARTED]                          the instance left (moved, deactivated, disposed)
  [STOP, grace]                       exit, after `run()` returned or `grace` seconds

Child → host:
  [READY, ok, error]                  the instance is built (or why not)
  [DONE, call_id, status, value, state]   status OK / FAILED / NOT_HANDLED; state: the
                                      encoded state when it changed since last sent, else nil
  [CALLBACK, cb_id, in_call, op, payload] a context call; `in_call` is the call the asking
                                      thread serves (0: `run()` or a user thread)
  [STATE, state]                      the state changed outside a call (dirty mark)
  [RUN_DONE, error]                   `run()` returned (error wire or nil)
  [BEAT]                              heartbeat, every second from a side thread
"""

from __future__ import annotations

import dataclasses
from pathlib import PurePath
from typing import Any

import msgspec

from paglets.core.events import CloneEvent, CreationEvent, MobilityEvent, PersistencyEvent
from paglets.core.messages import Message
from paglets.persistence.policy import DeactivationPolicy, DeactivationRequest
from paglets.serialization import codec

__all__ = [
    "BEAT",
    "CALL",
    "CALLBACK",
    "DEPARTED",
    "DEPARTURE_HOOKS",
    "DONE",
    "FAILED",
    "NOT_HANDLED_STATUS",
    "OK",
    "READY",
    "REPLY",
    "RUN",
    "RUN_DONE",
    "STATE",
    "STOP",
    "decode_frame",
    "encode_frame",
    "event_from_wire",
    "event_to_wire",
    "pack",
    "unpack",
]

CALL = "call"
REPLY = "reply"
RUN = "run"
DEPARTED = "departed"
STOP = "stop"
READY = "ready"
DONE = "done"
CALLBACK = "cb"
STATE = "state"
RUN_DONE = "run-done"
BEAT = "hb"

OK = 0
FAILED = 1
NOT_HANDLED_STATUS = 2

# Hooks after which the child cleans up the paglet's resources (the host does the same for
# host paglets); the host forwards them whether or not the class overrides them.
DEPARTURE_HOOKS = frozenset({"on_dispatching", "on_reverting", "on_deactivating", "on_disposing"})

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def encode_frame(frame: list[Any]) -> bytes:
    return _encoder.encode(frame)


def decode_frame(data: bytes) -> list[Any]:
    return _decoder.decode(data)


# -- hook events -------------------------------------------------------------------------

_EVENTS: dict[str, type] = {
    cls.__name__: cls for cls in (CreationEvent, MobilityEvent, CloneEvent, PersistencyEvent)
}


def event_to_wire(event: Any) -> dict[str, Any]:
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    for key in ("request", "policy"):
        value = fields.get(key)
        if value is not None:
            fields[key] = value.to_wire()
    if "init" in fields:
        fields["init"] = codec.to_wire_form(fields["init"])
    return {"type": type(event).__name__, "fields": fields}


def event_from_wire(wire: dict[str, Any], init_type: Any = None) -> Any:
    cls = _EVENTS[wire["type"]]
    fields = dict(wire["fields"])
    if fields.get("request") is not None:
        fields["request"] = DeactivationRequest.from_wire(fields["request"])
    if fields.get("policy") is not None:
        fields["policy"] = DeactivationPolicy.from_wire(fields["policy"])
    if init_type is not None and fields.get("init") is not None:
        fields["init"] = codec.convert(fields["init"], init_type)
    return cls(**fields)


# -- values of context calls -------------------------------------------------------------
# Tagged one-key dicts carry the few non-builtin values a context call takes or returns.

_MESSAGE = "__paglets_message__"
_PROXY = "__paglets_proxy__"
_REQUEST = "__paglets_request__"
_POLICY = "__paglets_policy__"
_TICKET = "__paglets_ticket__"
_PATH = "__paglets_path__"


def pack(value: Any) -> Any:
    """A context-call argument or result in a form the frame encoder takes."""
    if value is None or isinstance(value, str | int | float | bool | bytes):
        return value
    if isinstance(value, Message):
        return {_MESSAGE: value.to_wire()}
    if isinstance(value, DeactivationRequest):
        return {_REQUEST: value.to_wire()}
    if isinstance(value, DeactivationPolicy):
        return {_POLICY: value.to_wire()}
    if isinstance(value, PurePath):
        return {_PATH: str(value)}
    if isinstance(value, type):
        return codec.qualified_name(value)
    kind = type(value).__name__
    if kind in ("PagletProxy", "ChildProxy", "PagletProxyRef"):
        return {_PROXY: {"host_url": value.host_url, "agent_id": value.agent_id}}
    if kind == "TransferTicket":
        return {_TICKET: value.to_wire()}
    if isinstance(value, list | tuple):
        return [pack(v) for v in value]
    return codec.to_wire_form(value)


def unpack(value: Any, make_proxy: Any) -> Any:
    """The inverse of `pack`; `make_proxy(host_url, agent_id)` builds this side's proxy."""
    if isinstance(value, list):
        return [unpack(v, make_proxy) for v in value]
    if not isinstance(value, dict) or len(value) != 1:
        return value
    key, inner = next(iter(value.items()))
    if key == _MESSAGE:
        return Message.from_wire(inner)
    if key == _PROXY:
        return make_proxy(inner["host_url"], inner["agent_id"])
    if key == _REQUEST:
        return DeactivationRequest.from_wire(inner)
    if key == _POLICY:
        return DeactivationPolicy.from_wire(inner)
    if key == _PATH:
        from pathlib import Path

        return Path(inner)
    if key == _TICKET:
        from paglets.remote.transfer import TransferTicket

        return TransferTicket.from_wire(inner)
    return value
