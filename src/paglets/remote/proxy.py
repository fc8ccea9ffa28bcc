"""`PagletProxy`: how user code talks to a paglet, wherever it lives.

A proxy names `(host_url, agent_id)`. Routing, in this order:

1. the in-process `Host` it was made by (`_host`, set by `Host.proxy`), while running;
2. a host running in this process whose URL is `host_url` (architecture §8: no HTTP, no
   encoding), unless the proxy's client was built with `HostClient(in_process=False)`;
3. its client (`HostClient.default()` when it has none), over the network, following the
   paglet if it moved.

The first two paths are the in-process runtime's own calls; only the third encodes.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from paglets.core.errors import PagletError, PagletMovedError
from paglets.core.messages import FutureReply, Message
from paglets.remote.references import PagletProxyRef
from paglets.runtime import local_hosts, mailbox

if TYPE_CHECKING:
    from paglets.persistence import DeactivationPolicy
    from paglets.remote.client import HostClient
    from paglets.remote.transfer import TransferTicket
    from paglets.runtime.host import Host

__all__ = ["PagletProxy", "resolve_ref"]


class PagletProxy:
    """A handle on a paglet. Frozen: equality and hash are `(host_url, agent_id)`.

    Routing (module docstring): the host that made it, else a host in this process with
    that URL, else `client` over the network. A proxy whose client was built with
    `HostClient(in_process=False)` always uses the network, even for a host running in this
    process (`PagletProxy(url, agent_id, HostClient(in_process=False))`).
    """

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

    def _local(self) -> Host | None:
        """The in-process host serving this proxy, or None (then the client is used)."""
        host = self._host
        if host is not None and not host.stopped:
            return host
        client = self.client
        if client is not None and not getattr(client, "in_process", True):
            return None
        return local_hosts.lookup(self.host_url)

    def _moved_to(self, moved: PagletMovedError) -> PagletProxy:
        """Where an in-process host's forwarding pointer says the paglet went."""
        return PagletProxy(str(moved.moved.get("host_url")), self.agent_id, self.client)

    def _remote(self) -> HostClient:
        client = self.client
        return _default_client() if client is None else client

    # -- queries -----------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        host = self._local()
        if host is not None:
            try:
                return host.agent_info(self.agent_id)
            except PagletMovedError as moved:
                return self._moved_to(moved).info()
        return self._remote().agent_info(self.host_url, self.agent_id)

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
            owner = getattr(self.client, "owner_url", None)
            if owner:
                return local_hosts.normalise_url(owner) != local_hosts.normalise_url(self.host_url)
            return local_hosts.lookup(self.host_url) is None
        return local_hosts.normalise_url(local_host_url) != local_hosts.normalise_url(self.host_url)

    def get_address(self) -> str:
        """Where the paglet was last known to be: the client's cached location after it
        followed a move, else `host_url`."""
        client = self.client
        if client is None:
            from paglets.remote.client import HostClient

            client = HostClient._default  # only if it exists: asking must not create it
        locations = getattr(client, "locations", None)
        if locations is not None:
            return locations.start(self.host_url, self.agent_id)[0]
        return self.host_url

    def get_agent_id(self) -> str:
        return self.agent_id

    def get_agent_class_name(self) -> str:
        return str(self.info().get("class_name"))

    def get_state(self, state_cls: Any = None) -> Any:
        """A snapshot of the state. Remote: as `state_cls`, else as the paglet's own state
        class when its module is already imported here, else as a dict."""
        host = self._local()
        if host is not None:
            try:
                return host.get_state(self.agent_id, state_cls)
            except PagletMovedError as moved:
                return self._moved_to(moved).get_state(state_cls)
        return self._remote().get_state(self.host_url, self.agent_id, state_cls)

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
        host = self._local()
        if host is not None:
            return host.deliver_message(
                self.agent_id,
                message,
                activate_if_inactive=activate_if_inactive,
                no_delay=no_delay,
                timeout=timeout,
                reply_type=reply_type,
            )
        sender, reply_to = _calling_paglet()
        return self._remote().send_message(
            self.host_url,
            self.agent_id,
            message,
            activate_if_inactive=activate_if_inactive,
            no_delay=no_delay,
            timeout=timeout,
            reply_type=reply_type,
            sender=sender,
            reply_to=reply_to,
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
        host = self._local()
        if host is not None:
            try:
                return host.deliver_future(
                    self.agent_id,
                    message,
                    activate_if_inactive=activate_if_inactive,
                    no_delay=no_delay,
                    timeout=timeout,
                    reply_type=reply_type,
                )
            except PagletMovedError as moved:
                return self._moved_to(moved).send_future(
                    message,
                    activate_if_inactive=activate_if_inactive,
                    no_delay=no_delay,
                    timeout=timeout,
                    reply_type=reply_type,
                )
        sender, reply_to = _calling_paglet()
        return self._remote().send_future(
            self.host_url,
            self.agent_id,
            message,
            activate_if_inactive=activate_if_inactive,
            no_delay=no_delay,
            timeout=timeout,
            reply_type=reply_type,
            sender=sender,
            reply_to=reply_to,
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
        """Return once the message is queued at the target. Remote, `wait=False` returns
        once it is written to the host's peer socket (pipelined; the acknowledgement is
        collected later, a failure goes to the client's `on_oneway_failure`, else the log);
        `durable` is passed to the host (no sender-side outbox yet)."""
        host = self._local()
        if host is not None:
            host.deliver_message(
                self.agent_id,
                message,
                oneway=True,
                activate_if_inactive=activate_if_inactive,
                no_delay=no_delay,
                timeout=timeout,
            )
            return
        sender, reply_to = _calling_paglet()
        self._remote().send_message(
            self.host_url,
            self.agent_id,
            message,
            oneway=True,
            activate_if_inactive=activate_if_inactive,
            no_delay=no_delay,
            timeout=timeout,
            durable=durable,
            sender=sender,
            reply_to=reply_to,
            wait=wait,
        )

    # -- lifecycle ---------------------------------------------------------------------

    def send_artifact(
        self,
        message: Message,
        path: str | os.PathLike[str],
        *,
        arg_name: str = "artifact",
        move: bool = False,
        name: str | None = None,
        compression: str = "",
        timeout: float | None = None,
    ) -> Any:
        """Upload `path` to the host where the paglet lives (owned by the paglet), then send a
        copy of `message` whose `args[arg_name]` is the artifact's ref. A failed delivery
        deletes the artifact; `move=True` deletes the local file once delivered."""
        address = str(self.info().get("address") or self.host_url)
        host = self._local()
        if host is not None:
            from paglets.runtime import artifact_access

            ref = artifact_access.upload_artifact(
                host,
                path,
                host_url=address,
                owner_agent_id=self.agent_id,
                name=name,
                compression=compression,
            )

            def delete() -> None:
                artifact_access.delete_artifact(host, ref)
        else:
            client = self._remote()
            ref = client.upload_artifact(
                address, path, owner_agent_id=self.agent_id, name=name, compression=compression
            )

            def delete() -> None:
                client.delete_artifact(ref)

        carried = message.copy(args={**message.args, arg_name: ref.to_wire()})
        try:
            reply = self.send(carried, timeout=timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                delete()
            raise
        if move:
            os.remove(path)
        return reply

    def dispatch(self, target: str | TransferTicket) -> PagletProxy:
        host = self._local()
        if host is not None:
            try:
                return host.dispatch(self.agent_id, target)
            except PagletMovedError as moved:
                return self._moved_to(moved).dispatch(target)
        return self._remote().dispatch(self.host_url, self.agent_id, target)

    def clone(self, target: str | TransferTicket | None = None) -> PagletProxy:
        host = self._local()
        if host is not None:
            try:
                return host.clone(self.agent_id, target)
            except PagletMovedError as moved:
                return self._moved_to(moved).clone(target)
        return self._remote().clone(self.host_url, self.agent_id, target)

    def retract(self, target: str | None = None) -> PagletProxy:
        """Pull the paglet to `target`; by default to the host the caller belongs to (the
        client's `owner_url`, or the host of the paglet whose turn is calling). A standalone
        client has no host of its own and must pass `target`."""
        if target is None:  # "here": the calling paglet's host, the host that made this proxy
            maker = self._host.address if self._host is not None else None
            target = _calling_paglet()[1] or maker or getattr(self.client, "owner_url", None)
        host = self._local()
        if host is not None and target is not None:
            try:
                return host.retract(self.host_url, self.agent_id, target=target)
            except PagletMovedError as moved:
                return self._moved_to(moved).retract(target)
        if target is None:
            from paglets.core.errors import TransferError

            raise TransferError(
                f"retract of paglet {self.agent_id!r} needs target=: this proxy's client "
                "belongs to no host, so there is no 'here' to pull it to",
                stage="preflight",
            )
        return self._remote().retract(self.host_url, self.agent_id, target)

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
        host = self._local()
        if host is not None:
            try:
                return host.deactivate(self.agent_id, request)
            except PagletMovedError as moved:
                return self._moved_to(moved).deactivate(
                    reason=reason, policy=policy, metadata=metadata
                )
        return self._remote().deactivate(self.host_url, self.agent_id, request)

    def activate(self) -> PagletProxy:
        host = self._local()
        if host is not None:
            try:
                return host.activate(self.agent_id)
            except PagletMovedError as moved:
                return self._moved_to(moved).activate()
        return self._remote().activate(self.host_url, self.agent_id)

    def dispose(self) -> None:
        host = self._local()
        if host is not None:
            try:
                host.dispose(self.agent_id)
            except PagletMovedError as moved:
                self._moved_to(moved).dispose()
            return
        self._remote().dispose(self.host_url, self.agent_id)


def _calling_paglet() -> tuple[str | None, str | None]:
    """`(agent id, host URL)` of the paglet whose turn runs on this thread, if any: a remote
    send made from a handler names its sender, as a local one does."""
    cell = mailbox.current_cell()
    if cell is None:
        return None, None
    context = getattr(cell.paglet, "_context", None)
    host = getattr(context, "_host", None)
    return cell.agent_id, getattr(host, "address", None)


def resolve_ref(ref: PagletProxyRef, context_or_client: Any = None) -> PagletProxy:
    """Turn a stored reference into a proxy (api.md §12).

    * a `PagletContext` (or a `Host`): through that host, its own proxy when the reference
      names it, else a proxy on the host's client (which carries the mesh key);
    * a `HostClient`: a proxy on that client;
    * nothing: the context of the paglet whose turn runs on this thread, else
      `HostClient.default()`.
    """
    from paglets.runtime.host import Host

    target = context_or_client
    if target is None:
        cell = mailbox.current_cell()
        if cell is not None:
            target = getattr(cell.paglet, "_context", None)
    if target is not None:
        host = target if isinstance(target, Host) else getattr(target, "_host", None)
        if isinstance(host, Host):
            if host.is_local_url(ref.host_url):
                return host.proxy(ref.agent_id)
            return PagletProxy(ref.host_url, ref.agent_id, host.peer_client)
        if context_or_client is not None:
            return PagletProxy(ref.host_url, ref.agent_id, context_or_client)
    return PagletProxy(ref.host_url, ref.agent_id, _default_client())


def _default_client() -> HostClient:
    from paglets.remote.client import HostClient

    return HostClient.default()
