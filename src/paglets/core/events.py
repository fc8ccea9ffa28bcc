"""The events a paglet's lifecycle hooks receive.

The runtime builds them (always with keywords) and passes one to each hook; `host_*` is the
host where the hook runs. They are frozen so that a hook cannot alter what the next hook,
or the runtime's own bookkeeping, sees. Keyword-only fields let subclasses add required
fields after the base class's defaulted `timestamp`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paglets.persistence import DeactivationPolicy, DeactivationRequest

__all__ = [
    "CloneEvent",
    "CreationEvent",
    "MobilityEvent",
    "PagletEvent",
    "PersistencyEvent",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PagletEvent:
    """Base of every hook event: which paglet, on which host, when."""

    agent_id: str
    host_name: str
    host_address: str
    timestamp: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreationEvent(PagletEvent):
    """`on_creation`: `init` is what `create(init=...)` was given (wire form or `Init`)."""

    init: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MobilityEvent(PagletEvent):
    """`on_dispatching`, `on_arrival`, `on_reverting`: a move from source to target.

    `reason` is `"dispatch"` or `"retract"`; `transfer_id` and `epoch` identify the move
    (the epoch is the paglet's location generation after it).
    """

    source_host_name: str
    source_host_address: str
    target_host_name: str
    target_host_address: str
    reason: str
    transfer_id: str | None = None
    epoch: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CloneEvent(PagletEvent):
    """`on_cloning`, `on_clone`, `on_cloned`: `source_agent_id` was cloned as `clone_agent_id`."""

    source_agent_id: str
    clone_agent_id: str
    source_host_name: str
    source_host_address: str
    target_host_name: str
    target_host_address: str
    transfer_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistencyEvent(PagletEvent):
    """`on_deactivating`, `on_activation`, `on_disposing`.

    `reason`: the request's reason on deactivation (`"deactivate"`, `"shutdown"`,
    `"resident-service-idle"` or custom), `"activate"` or `"recover"` on activation,
    `"dispose"` on disposal. `request` and `policy` are set on deactivation.
    """

    reason: str
    request: DeactivationRequest | None = None
    policy: DeactivationPolicy | None = None
