"""`user-info` (jobs.md §6): notifications and text streams that reach the submitter.

The contract and wire types are in `contract`; the outbox of output on its way home in
`outbox`; the provider `UserInfoService` (`service.user-info`) in `service`.
"""

from __future__ import annotations

from paglets.system.user_info.contract import (
    DROPPED_EVENT,
    NOTIFY,
    NOTIFY_EVENT,
    PI_NOTIFY,
    PI_STREAM,
    STREAM,
    STREAM_EVENT,
    USER_INFO,
    USER_INFO_AGENT_ID,
    UserInfoReply,
    UserInfoRequest,
    UserInfoStreamRequest,
)

__all__ = [
    "DROPPED_EVENT",
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
