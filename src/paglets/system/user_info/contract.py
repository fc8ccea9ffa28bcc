"""The `user-info` contract, version "1" (jobs.md §6): output that reaches the person who
started the work.

`notify(UserInfoRequest)` and `stream(UserInfoStreamRequest)` keep paglets 2.0's names and
fields; `pi.notify` and `pi.stream` are deprecated aliases. New fields, all with defaults:
`group_id`, `home_host_id` (and `home_url`, for callers that know only an address) on both,
and a per-stream `seq` on streams (0: the service numbers the stream itself).

`NotificationMixin.notify_user_info` sends exactly a `UserInfoRequest`'s wire form (its
`user_info_request()`), so it works with this provider unchanged.
"""

from __future__ import annotations

from typing import Any

import msgspec

from paglets.services.contracts import ServiceContract, ServiceOperation

__all__ = [
    "DROPPED_EVENT",
    "FORWARD_KIND",
    "NOTIFY",
    "NOTIFY_EVENT",
    "PI_NOTIFY",
    "PI_STREAM",
    "STREAM",
    "STREAM_EVENT",
    "USER_INFO",
    "USER_INFO_AGENT_ID",
    "UserInfoReply",
    "UserInfoRequest",
    "UserInfoStreamRequest",
]

_WIRE = {"kw_only": True, "frozen": True}

NOTIFY_EVENT = "user-info.notify"
STREAM_EVENT = "user-info.stream"
DROPPED_EVENT = "user-info.dropped"
FORWARD_KIND = "user-info.forward"  # host to host, not part of the contract
USER_INFO_AGENT_ID = "service.user-info"


class UserInfoRequest(msgspec.Struct, **_WIRE):
    """A notification. `severity` is `info`, `warning` or `error`. The home host (where the
    submitter watches) is `home_host_id`, else `home_url`, else the home of the sending
    paglet (where it was created); none or this host: the notification stays here."""

    severity: str = "info"
    title: str = ""
    message: str = ""
    source_agent_id: str = ""
    job_id: str = ""
    timestamp: float = 0.0
    metadata: dict[str, Any] = {}
    group_id: str = ""
    home_host_id: str = ""
    home_url: str = ""


class UserInfoStreamRequest(msgspec.Struct, **_WIRE):
    """A piece of a text stream (`target` `stdout` or `stderr`), shown raw and in `seq`
    order. `seq` 0 lets the receiving service number the stream's pieces."""

    stream_id: str = ""
    text: str = ""
    target: str = "stdout"
    flush: bool = False
    seq: int = 0
    source_agent_id: str = ""
    job_id: str = ""
    group_id: str = ""
    timestamp: float = 0.0
    metadata: dict[str, Any] = {}
    home_host_id: str = ""
    home_url: str = ""


class UserInfoReply(msgspec.Struct, **_WIRE):
    """`event_id`: the event recorded here. `forwarding`: queued for the home host
    (durably: it arrives when that host is reachable). `dropped`: over the job's in-transit
    cap, so kept here only (and counted in a `user-info.dropped` event)."""

    accepted: bool = True
    event_id: int = 0
    forwarding: bool = False
    dropped: bool = False
    home_host_id: str = ""
    seq: int = 0


NOTIFY: ServiceOperation[UserInfoRequest, UserInfoReply] = ServiceOperation(
    "notify", UserInfoRequest, UserInfoReply
)
STREAM: ServiceOperation[UserInfoStreamRequest, UserInfoReply] = ServiceOperation(
    "stream", UserInfoStreamRequest, UserInfoReply
)
PI_NOTIFY: ServiceOperation[UserInfoRequest, UserInfoReply] = ServiceOperation(
    "pi.notify", UserInfoRequest, UserInfoReply
)
PI_STREAM: ServiceOperation[UserInfoStreamRequest, UserInfoReply] = ServiceOperation(
    "pi.stream", UserInfoStreamRequest, UserInfoReply
)

USER_INFO = ServiceContract("user-info", (NOTIFY, STREAM, PI_NOTIFY, PI_STREAM), version="1")
