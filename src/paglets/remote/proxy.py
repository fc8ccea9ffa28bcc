"""`PagletProxy`: how user code talks to a paglet, wherever it lives.

A proxy names `(host_url, agent_id)`. When the host runs in this process the proxy calls
it directly; otherwise it goes through a `HostClient`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from paglets.core.errors import PagletError, RemoteHostError
from paglets.core.messages import FutureReply, Message
from paglets.remote.references import PagletProxyRef
from paglets.runtime import local_hosts

if TYPE_CHECKING:
    from paglets.persistence import DeactivationPolicy
    from paglets.remote.transfer import TransferTicket
    from paglets.runtime.host import Host

__all__ = ["PagletProxy", "resolve_ref"]


class PagletProxy:
    """A handle on a paglet. Frozen: equality and hash are `(host_url, agent_id)`."""

    __slots__ = ("_host", "acknowledged", "agent_id", "client", "host_url")

    host_url: str
    agent_id: str

    def __init__(
        self,
        host_url: str,
        agent_id: str,
        client: Any = None,
        *,
        _host: Host | None = None,
        acknowledged: bool = True,
    ) -> None:
        if not isinstance(host_url, str) or not host_url:
            raise ValueError("PagletProxy needs a host_url such as 'http://127.0.0.1:8765'")
        if not isinstance(agent_id, str) or not agent_id:
            raise ValueError("PagletProxy needs an agent_id")
        set_ = object.__setattr__
        set_(self, "host_url", host_url)
        set_(self, "agent_id", agent_id)
        set_(self, "client", client)
        set_(self, "acknowledged", acknowledged)
        set_(self, "_host", _host)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("PagletProxy is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PagletProxy):
            return NotImplemented
        return self.host_url == other.host_url and self.agent_id == other.agent_id

    def __hash__(self) -> int:
        return hash((self.host_url, self.agent_id))

    def __repr__(self) -> str:
        return f"PagletProxy(host_url={self.host_url!r}, agent_id={self.agent_id!r})"

    # -- wire --------------------------------------------------------------------------

    def to_wire(self) -> dict[str, str]:
        return {"host_url": self.host_url, "agent_id": self.agent_id}

    @classmethod
    def from_wire(cls, payload: dict[str, Any], client: Any = None) -> PagletProxy:
        ref = PagletProxyRef.from_wire(payload)
        return cls(ref.host_url, ref.agent_id, client)

    def ref(self) -> PagletProxyRef:
        return PagletProxyRef(self.host_url, self.agent_id)

    # -- routing -----------------------------------------------------------------------

    def _target(self) -> Host:
        host = self._host
        if host is not None and not host.stopped:
            return host
        host = local_hosts.lookup(self.host_url)
        if host is not None:
            return host
        raise RemoteHostError(
            f"could not reach {self.host_url}: no host with that URL runs in this process, "
            "and remote hosts need the HTTP client (not available in this build)"
        )

    # -- queries -----------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return self._target().agent_info(self.agent_id)

    def is_valid(self) -> bool:
        try:
            self.info()
        except PagletError:
            return False
        return True

    def is_active(self) -> bool:
        try:
            return bool(self.info().get("active"))
        except PagletError:
            return False

    def is_state(self, state: int | bool) -> bool:
        from paglets.core.agent import ACTIVE, INACTIVE

        try:
            active = bool(self.info().get("active"))
        except PagletError:
            return False
        if isinstance(state, bool):
            return active is state
        if state == ACTIVE:
            return active
        if state == INACTIVE:
            return not active
        return False

    def is_remote(self, local_host_url: str | None = None) -> bool:
        if local_host_url is None:
            return local_hosts.lookup(self.host_url) is None
        return local_hosts.normalise_url(local_host_url) != local_hosts.normalise_url(self.host_url)

    def get_address(self) -> str:
        return self.host_url

    def get_agent_id(self) -> str:
        return self.agent_id

    def get_agent_class_name(self) -> str:
        return str(self.info().get("class_name"))

    def get_state(self, state_cls: Any = None) -> Any:
        return self._target().get_state(self.agent_id, state_cls)

    # -- messages ----------------------------------------------------------------------

    def send(
        self,
        message: Message,
        *,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
        reply_type: Any = None,
    ) -> Any:
        return self._target().deliver_message(
            self.agent_id,
            message,
            activate_if_inactive=activate_if_inactive,
            no_delay=no_delay,
            timeout=timeout,
            reply_type=reply_type,
        )

    async def send_async(
        self,
        message: Message,
        *,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
        reply_type: Any = None,
    ) -> Any:
        future = self.send_future(
            message,
            activate_if_inactive=activate_if_inactive,
            no_delay=no_delay,
            timeout=timeout,
            reply_type=reply_type,
        )
        return await future

    def send_future(
        self,
        message: Message,
        *,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
        reply_type: Any = None,
    ) -> FutureReply:
        return self._target().deliver_future(
            self.agent_id,
            message,
            activate_if_inactive=activate_if_inactive,
            no_delay=no_delay,
            timeout=timeout,
            reply_type=reply_type,
        )

    def send_oneway(
        self,
        message: Message,
        *,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
        durable: bool = False,
        wait: bool = True,
    ) -> None:
        self._target().deliver_message(
            self.agent_id,
            message,
            oneway=True,
            activate_if_inactive=activate_if_inactive,
            no_delay=no_delay,
            timeout=timeout,
        )

    # -- lifecycle ---------------------------------------------------------------------

    def dispatch(self, target: str | TransferTicket) -> PagletProxy:
        return self._target().dispatch(self.agent_id, target)

    def clone(self, target: str | TransferTicket | None = None) -> PagletProxy:
        return self._target().clone(self.agent_id, target)

    def retract(self, target: str | None = None) -> PagletProxy:
        host = self._target()
        return host.retract(self.host_url, self.agent_id, target=target)

    def deactivate(
        self,
        *,
        reason: str = "deactivate",
        policy: DeactivationPolicy | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> PagletProxy:
        from paglets.persistence import DeactivationRequest

        request = DeactivationRequest(
            reason=reason, source="external", policy=policy, metadata=metadata or {}
        )
        return self._target().deactivate(self.agent_id, request)

    def activate(self) -> PagletProxy:
        return self._target().activate(self.agent_id)

    def dispose(self) -> None:
        self._target().dispose(self.agent_id)


def resolve_ref(ref: PagletProxyRef, context_or_client: Any = None) -> PagletProxy:
    """Turn a stored reference into a proxy (see `PagletProxyRef.resolve`)."""
    if (
        context_or_client is not None
        and hasattr(context_or_client, "get_proxy")
        and hasattr(context_or_client, "address")
    ):
        host = local_hosts.lookup(ref.host_url)
        return PagletProxy(ref.host_url, ref.agent_id, _host=host)
    return PagletProxy(
        ref.host_url, ref.agent_id, context_or_client, _host=local_hosts.lookup(ref.host_url)
    )
