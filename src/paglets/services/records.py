"""`ServiceRecord`: one advertised service of one paglet on one host (api.md §16.2)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from paglets.core.runtime_values import ServiceScope, enum_from_wire
from paglets.remote.references import PagletProxyRef

__all__ = ["ServiceRecord"]


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """A service advertised by the paglet `proxy` names, on `host_name` at `host_url`.

    `expires_at` is epoch seconds, `None` for no TTL. Wire: the same keys, `proxy` as
    `{host_url, agent_id}` and `scope` as its value. Records are values: equal when every
    field is; hashed by (name, proxy, host_url).
    """

    name: str
    proxy: PagletProxyRef
    capabilities: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    scope: ServiceScope = ServiceScope.LOCAL
    host_name: str = ""
    host_url: str = ""
    advertised_at: float = 0.0
    expires_at: float | None = None

    def __hash__(self) -> int:
        return hash((self.name, self.proxy, self.host_url))

    @property
    def agent_id(self) -> str:
        """The providing paglet's id (`proxy.agent_id`)."""
        return self.proxy.agent_id

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and time.time() >= self.expires_at

    def expired_at(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def matches(
        self,
        name: str | None = None,
        *,
        capability: str | None = None,
        scope: ServiceScope | str | None = None,
    ) -> bool:
        """True when every given filter holds: the name, one of the capabilities, the scope."""
        if name is not None and self.name != name:
            return False
        if capability is not None and capability not in self.capabilities:
            return False
        return scope is None or self.scope == scope

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "proxy": self.proxy.to_wire(),
            "capabilities": list(self.capabilities),
            "metadata": dict(self.metadata),
            "scope": self.scope.value,
            "host_name": self.host_name,
            "host_url": self.host_url,
            "advertised_at": self.advertised_at,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_wire(cls, payload: Mapping[str, Any]) -> ServiceRecord:
        """Unknown keys are ignored, missing ones default; a record without a name or proxy
        is a `ValueError` naming the field."""
        if not isinstance(payload, Mapping):
            raise ValueError(f"a service record must be a dict, got {type(payload).__name__}")
        name = payload.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"service record: name must be a non-empty string, got {name!r}")
        proxy = payload.get("proxy")
        if not isinstance(proxy, Mapping):
            raise ValueError(f"service record {name!r}: proxy must be {{host_url, agent_id}}")
        expires = payload.get("expires_at")
        metadata = payload.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ValueError(f"service record {name!r}: metadata must be a dict")
        return cls(
            name=name,
            proxy=PagletProxyRef.from_wire(dict(proxy)),
            capabilities=tuple(str(c) for c in payload.get("capabilities") or ()),
            metadata=dict(metadata),
            scope=enum_from_wire(ServiceScope, payload.get("scope", "local"), "scope"),
            host_name=str(payload.get("host_name") or ""),
            host_url=str(payload.get("host_url") or ""),
            advertised_at=float(payload.get("advertised_at") or 0.0),
            expires_at=None if expires is None else float(expires),
        )
