"""`PagletProxyRef`: a storable reference to a paglet, resolved into a proxy on use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paglets.remote.proxy import PagletProxy

__all__ = ["PagletProxyRef"]


@dataclass(frozen=True, slots=True)
class PagletProxyRef:
    host_url: str
    agent_id: str

    @classmethod
    def from_proxy(cls, proxy: PagletProxy) -> PagletProxyRef:
        return cls(proxy.host_url, proxy.agent_id)

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> PagletProxyRef:
        try:
            return cls(str(payload["host_url"]), str(payload["agent_id"]))
        except (KeyError, TypeError):
            raise ValueError("a paglet reference needs 'host_url' and 'agent_id'") from None

    def to_wire(self) -> dict[str, str]:
        return {"host_url": self.host_url, "agent_id": self.agent_id}

    def resolve(self, context_or_client: Any = None) -> PagletProxy:
        """A proxy for this reference: through the given context or client, else the running
        paglet's context, else the process-wide default client."""
        from paglets.remote.proxy import resolve_ref

        return resolve_ref(self, context_or_client)
