"""Agent ids: what a valid one looks like, checked before it touches a lookup or a file name."""

from __future__ import annotations

import re
import uuid

from paglets.core.errors import InvalidAgentIdError

__all__ = ["new_agent_id", "validate_agent_id"]

_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def new_agent_id() -> str:
    return uuid.uuid4().hex


def validate_agent_id(agent_id: object) -> str:
    """Return `agent_id` if valid, else raise `InvalidAgentIdError` saying what is allowed."""
    if not isinstance(agent_id, str):
        raise InvalidAgentIdError(
            f"agent id must be a string, got {type(agent_id).__name__}", code="bad-agent-id"
        )
    if ".." in agent_id or _VALID.fullmatch(agent_id) is None:
        shown = agent_id if len(agent_id) <= 64 else agent_id[:61] + "..."
        raise InvalidAgentIdError(
            f"invalid agent id {shown!r}: use 1-128 characters from A-Z a-z 0-9 . _ -, starting with a "
            "letter or digit, without '..'",
            code="bad-agent-id",
        )
    return agent_id
