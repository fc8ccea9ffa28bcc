"""The lifecycle calls of `HostClient` (api.md §11, §14): create, dispatch, clone, retract,
deactivate, activate and dispose a paglet on a remote host.

A mixin of `HostClient` (its own module so that the client stays one idea per module);
every method is called on a `HostClient` and documented there. Mutating calls carry an
`Idempotency-Key`, so a retried call runs at most once (network.md §1.6). A move answers
the paglet's new proxy, and the client's location cache learns its new address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from paglets.core.errors import RemoteHostError, TransferError
from paglets.core.ids import validate_agent_id
from paglets.remote.agent_route import GRACE
from paglets.remote.proxy import PagletProxy
from paglets.remote.transfer import TransferTicket
from paglets.runtime.local_hosts import normalise_url
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.persistence.policy import DeactivationRequest
    from paglets.remote.locations import Locations

__all__ = ["LifecycleCalls"]

_ENCODE = msgspec.msgpack.Encoder().encode


class LifecycleCalls:
    """`HostClient`'s lifecycle methods."""

    if TYPE_CHECKING:  # provided by HostClient
        timeout: float
        locations: Locations

        def _agent_call(
            self,
            url: str,
            agent_id: str,
            method: str,
            suffix: str,
            body: bytes | None,
            *,
            timeout: float,
            deadline: bool = False,
            idempotent: bool = False,
        ) -> Any: ...

        def _call(
            self,
            method: str,
            url: str,
            payload: Any = None,
            *,
            timeout: float | None = None,
            idempotent: bool = False,
        ) -> Any: ...

    def _proxy_from(
        self, answer: Any, previous: str, what: str, wire_id: str | None = None
    ) -> PagletProxy:
        """The proxy in a lifecycle answer; a move of `wire_id` also updates the cache."""
        wire = answer.get("proxy") if isinstance(answer, dict) else None
        if not isinstance(wire, dict) or "host_url" not in wire or "agent_id" not in wire:
            raise RemoteHostError(f"{what}: the host answered without a proxy: {answer!r}"[:300])
        proxy = PagletProxy(
            str(wire["host_url"]),
            str(wire["agent_id"]),
            self,
            acknowledged=bool(answer.get("acknowledged", True)),
        )
        if proxy.agent_id == wire_id and normalise_url(proxy.host_url) != normalise_url(previous):
            epoch = answer.get("epoch")
            if not isinstance(epoch, int):
                # We just moved it, so this is its newest address whatever the epoch.
                epoch = self.locations.start(previous, proxy.agent_id)[1] + 1
            self.locations.note(proxy.agent_id, previous, proxy.host_url, epoch)
        return proxy

    def _lifecycle(
        self,
        url: str,
        agent_id: str,
        operation: str,
        payload: dict[str, Any] | None,
        timeout: float | None,
    ) -> Any:
        return self._agent_call(
            url,
            agent_id,
            "POST",
            f"/{operation}",
            _ENCODE(payload or {}),
            timeout=self.timeout if timeout is None else timeout,
            idempotent=True,
        )

    @staticmethod
    def _target_payload(target: str | TransferTicket | None) -> tuple[dict[str, Any], float]:
        if isinstance(target, TransferTicket):
            return {"ticket": target.to_wire()}, target.timeout
        if target is None or isinstance(target, str):
            return {"target": target}, 0.0
        raise TypeError(
            "a move target is a host URL, a mesh host name or a TransferTicket, got "
            f"{type(target).__name__}"
        )

    def _move_timeout(self, ticket_timeout: float, timeout: float | None) -> float:
        if timeout is not None:
            return timeout
        # The host holds the request for the whole move (turn, PREPARE, COMMIT).
        return max(self.timeout, ticket_timeout * 2 + GRACE)

    def dispatch(
        self,
        url: str,
        agent_id: str,
        target: str | TransferTicket,
        *,
        timeout: float | None = None,
    ) -> PagletProxy:
        """Move the paglet to `target` (URL, mesh name or ticket); its new proxy."""
        if target is None:
            raise TransferError(
                "dispatch needs a target host URL, mesh name or TransferTicket", stage="preflight"
            )
        payload, ticket_timeout = self._target_payload(target)
        origin = self.locations.start(url.rstrip("/"), agent_id)[0]
        answer = self._lifecycle(
            url, agent_id, "dispatch", payload, self._move_timeout(ticket_timeout, timeout)
        )
        return self._proxy_from(answer, origin, f"dispatch of {agent_id!r}", agent_id)

    def clone(
        self,
        url: str,
        agent_id: str,
        target: str | TransferTicket | None = None,
        *,
        timeout: float | None = None,
    ) -> PagletProxy:
        """A copy of the paglet on `target` (None: on its own host); the clone's proxy."""
        payload, ticket_timeout = self._target_payload(target)
        answer = self._lifecycle(
            url, agent_id, "clone", payload, self._move_timeout(ticket_timeout, timeout)
        )
        return self._proxy_from(answer, url, f"clone of {agent_id!r}")

    def retract(
        self, url: str, agent_id: str, target: str, *, timeout: float | None = None
    ) -> PagletProxy:
        """Pull the paglet from `url` (or wherever it moved since) to `target`."""
        if not isinstance(target, str) or not target:
            raise TransferError(
                "retract needs target=: the URL of the host to pull the paglet to",
                stage="preflight",
            )
        origin = self.locations.start(url.rstrip("/"), agent_id)[0]
        answer = self._lifecycle(
            url, agent_id, "retract", {"target": target}, self._move_timeout(0.0, timeout)
        )
        return self._proxy_from(answer, origin, f"retract of {agent_id!r}", agent_id)

    def deactivate(
        self,
        url: str,
        agent_id: str,
        request: DeactivationRequest | None = None,
        *,
        timeout: float | None = None,
    ) -> PagletProxy:
        """Deactivate the paglet (stored, woken per its policy); its proxy."""
        payload = {} if request is None else {"request": request.to_wire()}
        answer = self._lifecycle(url, agent_id, "deactivate", payload, timeout)
        return self._proxy_from(answer, url, f"deactivate of {agent_id!r}")

    def activate(self, url: str, agent_id: str, *, timeout: float | None = None) -> PagletProxy:
        """Activate an inactive paglet (restart a crashed one); its proxy."""
        answer = self._lifecycle(url, agent_id, "activate", None, timeout)
        return self._proxy_from(answer, url, f"activate of {agent_id!r}")

    def restart(self, url: str, agent_id: str, *, timeout: float | None = None) -> PagletProxy:
        """Restart a crashed paglet from its last checkpoint; its proxy. `LifecycleError`
        (code `not-crashed`) for a paglet that is active or inactive."""
        answer = self._lifecycle(url, agent_id, "restart", None, timeout)
        return self._proxy_from(answer, url, f"restart of {agent_id!r}")

    def dispose(self, url: str, agent_id: str, *, timeout: float | None = None) -> None:
        """Dispose the paglet, in any state."""
        self._lifecycle(url, agent_id, "dispose", None, timeout)
        self.locations.forget(agent_id)

    def create_agent(
        self,
        url: str,
        agent_class_name: Any,
        state_class_name: Any = None,
        state: Any = None,
        *,
        init: Any = None,
        agent_id: str | None = None,
        timeout: float | None = None,
    ) -> PagletProxy:
        """Create a paglet on the host at `url`. Classes may be given as classes or as
        `"module:qualname"` names; `state` as an instance, a dict or `None` (the class's
        defaults). Raises `DuplicateAgentError` for an existing `agent_id`."""
        if not isinstance(agent_class_name, str):
            state_cls = getattr(agent_class_name, "State", None)
            agent_class_name = codec.qualified_name(agent_class_name)
            if state_class_name is None and isinstance(state_cls, type):
                state_class_name = state_cls
        if state_class_name is None and state is not None and not isinstance(state, dict):
            state_class_name = type(state)
        if state_class_name is not None and not isinstance(state_class_name, str):
            state_class_name = codec.qualified_name(state_class_name)
        if agent_id is not None:
            validate_agent_id(agent_id)
        payload: dict[str, Any] = {
            "agent_class_name": agent_class_name,
            "state_class_name": state_class_name,
            "state": state,
            "init": init,
        }
        if agent_id is not None:
            payload["agent_id"] = agent_id
        answer = self._call(
            "POST", f"{url.rstrip('/')}/agents", payload, timeout=timeout, idempotent=True
        )
        return self._proxy_from(answer, url, f"create of {agent_class_name}")
