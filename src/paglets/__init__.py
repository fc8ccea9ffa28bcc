"""paglets: mobile agents for Python.

`import paglets` loads only the standard library; each name below is imported from its
home module on first use (PEP 562), so `from paglets import Host` is cheap until used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_HOMES: dict[str, str] = {
    "Paglet": "paglets.core.agent",
    "PagletState": "paglets.core.agent",
    "PagletContext": "paglets.core.agent",
    "state_locked": "paglets.core.agent",
    "ACTIVE": "paglets.core.agent",
    "INACTIVE": "paglets.core.agent",
    "NOT_HANDLED": "paglets.core.messages",
    "Message": "paglets.core.messages",
    "FutureReply": "paglets.core.messages",
    "ReplySet": "paglets.core.messages",
    "SYNCHRONOUS": "paglets.core.messages",
    "FUTURE": "paglets.core.messages",
    "ONEWAY": "paglets.core.messages",
    "CreationEvent": "paglets.core.events",
    "MobilityEvent": "paglets.core.events",
    "CloneEvent": "paglets.core.events",
    "PersistencyEvent": "paglets.core.events",
    "PagletError": "paglets.core.errors",
    "HostError": "paglets.core.errors",
    "TransferError": "paglets.core.errors",
    "NotHandledError": "paglets.core.errors",
    "PagletInactiveError": "paglets.core.errors",
    "PagletCrashedError": "paglets.core.errors",
    "InvalidAgentError": "paglets.core.errors",
    "PagletTimeoutError": "paglets.core.errors",
    "RemoteHandlerError": "paglets.core.errors",
    "ArrivalMode": "paglets.core.runtime_values",
    "ServiceScope": "paglets.core.runtime_values",
    "Isolation": "paglets.core.runtime_values",
    "CheckpointMode": "paglets.core.runtime_values",
    "ItineraryPlan": "paglets.core.itinerary",
    "DeactivationPolicy": "paglets.persistence",
    "DeactivationRequest": "paglets.persistence",
    "Host": "paglets.runtime.host",
    "HostClient": "paglets.remote.client",
    "PagletProxy": "paglets.remote.proxy",
    "PagletProxyRef": "paglets.remote.references",
    "TransferTicket": "paglets.remote.transfer",
    "ServiceContract": "paglets.services.contracts",
    "ServiceOperation": "paglets.services.contracts",
    "EmptyPayload": "paglets.services.contracts",
    "ArtifactRef": "paglets.artifacts",
}

__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'paglets' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
