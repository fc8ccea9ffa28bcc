"""The programming model: `Paglet`, `PagletState`, `PagletContext`.

A paglet is a plain object with a typed dataclass state. Everything it does beyond its own
state goes through its context, which the runtime builds for each incarnation and which is
scoped to that one paglet (it never exposes the host's credentials).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from paglets.core.errors import ForbiddenError, HostError, LifecycleError
from paglets.core.messages import NOT_HANDLED, Message
from paglets.core.runtime_values import ServiceScope
from paglets.services.helpers import ContextServiceHelpers, PagletServiceHelpers

if TYPE_CHECKING:
    from paglets.core.events import CloneEvent, CreationEvent, MobilityEvent, PersistencyEvent
    from paglets.core.messages import ReplySet
    from paglets.persistence import DeactivationPolicy, DeactivationRequest, ManagedStorage
    from paglets.remote.proxy import PagletProxy
    from paglets.remote.transfer import TransferTicket
    from paglets.runtime.host import Host
    from paglets.runtime.resources import ResourceRegistry

__all__ = [
    "ACTIVE",
    "INACTIVE",
    "NOT_HANDLED",
    "Paglet",
    "PagletContext",
    "PagletState",
    "state_locked",
]

ACTIVE = 0x1
INACTIVE = 0x2

StateT = TypeVar("StateT")
F = TypeVar("F", bound=Callable[..., Any])

_lock_creation = threading.Lock()


class PagletState:
    """Marker base for paglet state. Subclass it with `@dataclass`."""


def state_locked(method: F) -> F:
    """Run the method holding the paglet's state lock."""

    @functools.wraps(method)
    def wrapper(self: Paglet[Any], *args: Any, **kwargs: Any) -> Any:
        with self.locked():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class Paglet(PagletServiceHelpers, Generic[StateT]):
    """A mobile agent: typed state, a mailbox, lifecycle hooks.

    Subclasses set `State` (a dataclass) and override `handle_message` and the hooks they
    need. Only `state` and registered files travel; every other attribute is transient.
    """

    State: ClassVar[type[Any]]
    MAILBOX_WORKERS: ClassVar[int] = 4  # kept for compatibility; handlers are always serial
    ISOLATION: ClassVar[str] = "host"
    CHECKPOINT: ClassVar[str] = "interval"
    SUBSCRIBED_MESSAGES: ClassVar[tuple[str, ...] | None] = None
    Init: ClassVar[Any] = None
    STATE_VERSION: ClassVar[int] = 1
    RESIDENT_SERVICES: ClassVar[tuple[Any, ...]] = ()
    AUTO_START: ClassVar[Any] = None

    # Transient, per incarnation; class-level defaults keep idle instances small.
    departed: bool = False
    _context: PagletContext | None = None
    _lock: threading.RLock | None = None
    _resources: ResourceRegistry | None = None

    def __init__(self, state: StateT | None = None, *, agent_id: str | None = None) -> None:
        self.agent_id: str = agent_id or uuid.uuid4().hex
        self.state: StateT = state if state is not None else self.state_class()()

    # -- class checks ----------------------------------------------------------------

    @classmethod
    def state_class(cls) -> type[Any]:
        state_cls = getattr(cls, "State", None)
        if state_cls is None:
            raise HostError(
                f"{cls.__module__}.{cls.__qualname__} has no State: set `State = <a dataclass>`"
            )
        if not (isinstance(state_cls, type) and is_dataclass(state_cls)):
            raise HostError(
                f"{cls.__module__}.{cls.__qualname__}.State must be a dataclass, got {state_cls!r}; "
                "decorate the state class with @dataclass"
            )
        return state_cls

    @classmethod
    def migrate_state(cls, payload: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Upgrade a stored state written by `STATE_VERSION` `from_version` (default: as is).

        Unknown fields are ignored and missing ones take their defaults anyway; override
        this for renames and changed meanings.
        """
        return payload

    @staticmethod
    def not_handled() -> Any:
        return NOT_HANDLED

    # -- context ---------------------------------------------------------------------

    @property
    def context(self) -> PagletContext:
        ctx = self._context
        if ctx is None:
            raise HostError(
                f"paglet {self.agent_id!r} is not running on a host (a standalone instance has no context)"
            )
        return ctx

    @property
    def resources(self) -> ResourceRegistry:
        registry = self._resources
        if registry is None:
            from paglets.runtime.resources import ResourceRegistry

            with _lock_creation:
                registry = self._resources
                if registry is None:
                    registry = self._resources = ResourceRegistry()
        return registry

    # -- the state lock --------------------------------------------------------------

    def _state_lock(self) -> threading.RLock:
        lock = self._lock
        if lock is None:
            with _lock_creation:
                lock = self._lock
                if lock is None:
                    lock = self._lock = threading.RLock()
        return lock

    def locked(self) -> threading.RLock:
        """The state lock, as a context manager: `with self.locked(): ...`."""
        return self._state_lock()

    @contextlib.contextmanager
    def locked_state(self) -> Iterator[StateT]:
        """Hold the lock, yield the state, and mark it dirty (to be checkpointed) on exit."""
        with self._state_lock():
            yield self.state
        if self._context is not None and not self.departed:
            self._context._mark_dirty()

    def wait_state(self, predicate: Callable[[StateT], bool], timeout: float | None = None) -> bool:
        """Wait until `predicate(state)` holds (woken by `notify_state_changed`).

        Inside a turn the turn is released while waiting, so the message that changes the
        state can run.
        """
        return self.context._wait_state(lambda: predicate(self.state), timeout)

    def notify_state_changed(self) -> None:
        self.context._notify_state(all_waiters=False)

    def notify_all_state_changed(self) -> None:
        self.context._notify_state(all_waiters=True)

    def checkpoint(self) -> None:
        """Store the state now; returns once it is durable."""
        self.context._checkpoint()

    # -- calls on itself -------------------------------------------------------------

    def dispatch(self, target: str | TransferTicket) -> PagletProxy:
        return self.context.dispatch(self.agent_id, target)

    def clone(self, target: str | TransferTicket | None = None) -> PagletProxy:
        return self.context.clone(self.agent_id, target)

    def dispatch_to(self, name_or_url: str) -> PagletProxy:
        return self.context.dispatch_to(name_or_url)

    def clone_to(self, name_or_url: str) -> PagletProxy:
        return self.context.clone_to(name_or_url)

    def deactivate(
        self,
        *,
        reason: str = "deactivate",
        policy: DeactivationPolicy | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> PagletProxy:
        from paglets.persistence import DeactivationRequest

        request = DeactivationRequest(
            reason=reason, source="self", policy=policy, metadata=metadata or {}
        )
        return self.context.deactivate(self.agent_id, request)

    def dispose(self) -> None:
        self.context.dispose(self.agent_id)

    def send(
        self,
        target_agent_id: str,
        message: Message,
        *,
        host_url: str | None = None,
        timeout: float | None = None,
        reply_type: Any = None,
    ) -> Any:
        return self.context.send(
            target_agent_id, message, host_url=host_url, timeout=timeout, reply_type=reply_type
        )

    async def send_async(
        self,
        target_agent_id: str,
        message: Message,
        *,
        host_url: str | None = None,
        timeout: float | None = None,
        reply_type: Any = None,
    ) -> Any:
        return await self.context.send_async(
            target_agent_id, message, host_url=host_url, timeout=timeout, reply_type=reply_type
        )

    def multicast(
        self,
        kind: str | Message,
        args: dict[str, Any] | None = None,
        *,
        include_self: bool = True,
        scope: ServiceScope = ServiceScope.LOCAL,
        timeout: float | None = None,
    ) -> ReplySet:
        exclude = None if include_self else [self.agent_id]
        return self.context.multicast(kind, args, exclude=exclude, scope=scope, timeout=timeout)

    def subscribe_message(self, kind: str) -> None:
        self.context._subscriptions(edit=("add", kind))

    def unsubscribe_message(self, kind: str) -> None:
        self.context._subscriptions(edit=("remove", kind))

    def unsubscribe_all_messages(self) -> None:
        self.context._subscriptions(edit=("clear", ""))

    def wait_message(self, timeout: float | None = None) -> bool:
        """Wait until a message handled by this paglet returns, or a notify; False on timeout."""
        return self.context._wait_message(timeout)

    def notify_message(self) -> None:
        self.context._notify_message(all_waiters=False)

    def notify_all_messages(self) -> None:
        self.context._notify_message(all_waiters=True)

    # -- files -----------------------------------------------------------------------

    def work_dir(self, *, create: bool = True) -> Path:
        return self.context.work_dir(create=create)

    def persistent_storage(self, *, quota_bytes: int | None = None) -> ManagedStorage:
        return self.context.persistent_storage(quota_bytes=quota_bytes)

    def register_file(
        self, path: str | Path, *, name: str | None = None, mode: str = "copy"
    ) -> Any:
        return self.context.register_file(path, name=name, mode=mode)

    def registered_files(self) -> list[Any]:
        return self.context.registered_files()

    def unregister_file(self, name_or_ref: Any) -> None:
        self.context.unregister_file(name_or_ref)

    def file_path(self, name_or_ref: Any) -> Path:
        return self.context.file_path(name_or_ref)

    def upload_artifact(
        self,
        path: str | Path,
        *,
        host_url: str | None = None,
        owner_agent_id: str | None = None,
        name: str | None = None,
        compression: str = "",
        expires_at: float = 0.0,
    ) -> Any:
        """Store a file as an artifact (on this host, or `host_url`); owner: this paglet."""
        return self.context.upload_artifact(
            path,
            host_url=host_url,
            owner_agent_id=owner_agent_id,
            name=name,
            compression=compression,
            expires_at=expires_at,
        )

    def download_artifact(self, artifact: Any, target: str | Path, *, move: bool = False) -> Path:
        """Fetch an artifact (size and SHA-256 checked, written atomically); a relative
        `target` is inside this paglet's work dir."""
        return self.context.download_artifact(artifact, target, move=move)

    def delete_artifact(self, artifact: Any) -> bool:
        return self.context.delete_artifact(artifact)

    # -- hooks (default: nothing) ------------------------------------------------------

    def on_creation(self, event: CreationEvent) -> None: ...
    def on_dispatching(self, event: MobilityEvent) -> None: ...
    def on_arrival(self, event: MobilityEvent) -> None: ...
    def on_reverting(self, event: MobilityEvent) -> None: ...
    def on_cloning(self, event: CloneEvent) -> None: ...
    def on_clone(self, event: CloneEvent) -> None: ...
    def on_cloned(self, event: CloneEvent) -> None: ...
    def on_deactivating(self, event: PersistencyEvent) -> None: ...
    def on_activation(self, event: PersistencyEvent) -> None: ...
    def on_disposing(self, event: PersistencyEvent) -> None: ...
    def on_transfer_aborted(self, event: Any) -> None: ...

    def handle_message(self, message: Message) -> Any:
        from paglets.core.errors import NotHandledError

        raise NotHandledError(
            f"{type(self).__qualname__} does not handle messages (kind {message.kind!r})"
        )

    def run(self) -> None:
        """Started on its own thread after each incarnation, only when overridden."""

    def deactivation_policy(self, request: DeactivationRequest) -> DeactivationPolicy:
        from paglets.persistence import DeactivationPolicy

        return request.policy or DeactivationPolicy()


class PagletContext(ContextServiceHelpers):
    """What a paglet may do on its host. Built by the runtime, one per incarnation.

    Identity-bound calls (moving, sending as this paglet, files) raise `LifecycleError`
    once the paglet has left (the instance is detached).
    """

    __slots__ = ("_agent_id", "_cell", "_detached", "_host")

    def __init__(self, host: Host, agent_id: str | None = None) -> None:
        self._host = host
        self._agent_id = agent_id
        self._detached = False
        self._cell: Any = None

    # -- identity ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._host.name

    @property
    def address(self) -> str:
        return self._host.address

    @property
    def agent_id(self) -> str | None:
        return self._agent_id

    @property
    def host(self) -> ScopedHost:
        return ScopedHost(self._host, self._agent_id)

    def _own_id(self, agent_id: str | None = None) -> str:
        own = self._agent_id
        if own is None:
            if agent_id is None:
                raise HostError("this context belongs to no paglet; pass agent_id")
            return agent_id
        if agent_id is not None and agent_id != own:
            raise ForbiddenError(
                f"paglet {own!r} may only act on itself, not on {agent_id!r}; use that paglet's proxy"
            )
        if self._detached:
            raise LifecycleError(
                f"paglet {own!r} has left this host (moved, deactivated or disposed); this instance is detached"
            )
        return own

    # -- other paglets -----------------------------------------------------------------

    def get_proxy(self, agent_id: str, host_url: str | None = None) -> PagletProxy | None:
        return self._host._context_get_proxy(agent_id, host_url)

    def get_proxies(self, state: int = ACTIVE) -> list[PagletProxy]:
        return self._host.get_proxies(state)

    def get_property(self, key: str, default: Any = None) -> Any:
        return self._host.get_property(key, default)

    def set_property(self, key: str, value: Any) -> None:
        self._host.set_property(key, value)

    def create_paglet(
        self,
        agent_cls: type[Paglet[Any]] | str,
        state: Any = None,
        *,
        init: Any = None,
        host_url: str | None = None,
        agent_id: str | None = None,
    ) -> PagletProxy:
        if host_url is not None and not self._host.is_local_url(host_url):
            return self._host.create_remote(
                host_url, agent_cls, state, init=init, agent_id=agent_id
            )
        return self._host.create(agent_cls, state, init=init, agent_id=agent_id)

    # -- lifecycle of itself ---------------------------------------------------------

    def dispatch(self, agent_id: str, target: str | TransferTicket) -> PagletProxy:
        return self._host.dispatch(self._own_id(agent_id), target)

    def clone(self, agent_id: str, target: str | TransferTicket | None = None) -> PagletProxy:
        return self._host.clone(self._own_id(agent_id), target)

    def dispatch_to(self, name_or_url: str) -> PagletProxy:
        return self._host.dispatch(self._own_id(), self._host.resolve_host_url(name_or_url))

    def clone_to(self, name_or_url: str) -> PagletProxy:
        return self._host.clone(self._own_id(), self._host.resolve_host_url(name_or_url))

    def deactivate(self, agent_id: str, request: DeactivationRequest | None = None) -> PagletProxy:
        return self._host.deactivate(self._own_id(agent_id), request)

    def dispose(self, agent_id: str | None = None) -> None:
        self._host.dispose(self._own_id(agent_id))

    def retract(self, remote_host_url: str, agent_id: str) -> PagletProxy:
        return self._host.retract(remote_host_url, agent_id)

    # -- messages --------------------------------------------------------------------

    def send(
        self,
        target_agent_id: str,
        message: Message,
        *,
        host_url: str | None = None,
        timeout: float | None = None,
        reply_type: Any = None,
    ) -> Any:
        sender = self._own_id() if self._agent_id is not None else None
        return self._host._send_from(
            sender,
            target_agent_id,
            message,
            host_url=host_url,
            timeout=timeout,
            reply_type=reply_type,
        )

    async def send_async(
        self,
        target_agent_id: str,
        message: Message,
        *,
        host_url: str | None = None,
        timeout: float | None = None,
        reply_type: Any = None,
    ) -> Any:
        import asyncio

        sender = self._own_id() if self._agent_id is not None else None
        future = self._host._send_future_from(
            sender,
            target_agent_id,
            message,
            host_url=host_url,
            timeout=timeout,
            reply_type=reply_type,
        )
        return await asyncio.wrap_future(future.future)

    def multicast(
        self,
        kind: str | Message,
        args: dict[str, Any] | None = None,
        *,
        exclude: list[str] | None = None,
        scope: ServiceScope = ServiceScope.LOCAL,
        timeout: float | None = None,
    ) -> ReplySet:
        return self._host.multicast_message(
            kind, args, exclude=exclude, scope=scope, timeout=timeout, sender=self._agent_id
        )

    # -- files and resources ---------------------------------------------------------

    def resources(self, agent_id: str | None = None) -> ResourceRegistry:
        return self._host._cell_of(self._own_id(agent_id)).paglet.resources

    def work_dir(self, *, create: bool = True) -> Path:
        return self._host.work_dir_for(self._own_id(), create=create)

    def file_roots(self) -> list[Path] | None:
        """Where this host lets paglets register or read files (`--file-root`, besides
        their own dirs); None: anywhere (an in-process host without `file_roots=`)."""
        roots = self._host.files.file_roots
        return None if roots is None else list(roots)

    def persistent_storage(self, *, quota_bytes: int | None = None) -> ManagedStorage:
        return self._host.persistent_storage_for(self._own_id(), quota_bytes=quota_bytes)

    def register_file(
        self, path: str | Path, *, name: str | None = None, mode: str = "copy"
    ) -> Any:
        return self._host.register_file_for(self._own_id(), path, name=name, mode=mode)

    def registered_files(self) -> list[Any]:
        return self._host.registered_files_for(self._own_id())

    def unregister_file(self, name_or_ref: Any) -> None:
        self._host.unregister_file_for(self._own_id(), name_or_ref)

    def file_path(self, name_or_ref: Any) -> Path:
        return self._host.file_path_for(self._own_id(), name_or_ref)

    def upload_artifact(
        self,
        path: str | Path,
        *,
        host_url: str | None = None,
        owner_agent_id: str | None = None,
        name: str | None = None,
        compression: str = "",
        expires_at: float = 0.0,
    ) -> Any:
        return self._host.upload_artifact_for(
            self._own_id(),
            path,
            host_url=host_url,
            owner_agent_id=owner_agent_id,
            name=name,
            compression=compression,
            expires_at=expires_at,
        )

    def download_artifact(self, artifact: Any, target: str | Path, *, move: bool = False) -> Path:
        return self._host.download_artifact_for(self._own_id(), artifact, target, move=move)

    def delete_artifact(self, artifact: Any) -> bool:
        return self._host.delete_artifact_for(self._own_id(), artifact)

    # -- hosts -------------------------------------------------------------------------

    def available_hosts(self, *, online_only: bool = True, include_self: bool = True) -> list[Any]:
        return self._host.list_hosts(online_only=online_only, include_self=include_self)

    # -- runtime plumbing used by Paglet (not public) ----------------------------------

    def _mark_dirty(self) -> None:
        if self._cell is not None and not self._detached:
            self._host._mark_dirty(self._cell)

    def _checkpoint(self) -> None:
        self._host._checkpoint_now(self._own_id())

    def _wait_state(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        return self._host._wait_state(self._cell_or_fail(), predicate, timeout)

    def _notify_state(self, *, all_waiters: bool) -> None:
        self._host._notify_state(self._cell_or_fail(), all_waiters=all_waiters)

    def _wait_message(self, timeout: float | None) -> bool:
        return self._host._wait_message(self._cell_or_fail(), timeout)

    def _notify_message(self, *, all_waiters: bool) -> None:
        self._host._notify_message(self._cell_or_fail(), all_waiters=all_waiters)

    def _subscriptions(self, *, edit: tuple[str, str]) -> None:
        self._host._edit_subscriptions(self._cell_or_fail(), *edit)

    def _cell_or_fail(self) -> Any:
        if self._cell is None:
            raise HostError("this context belongs to no live paglet")
        return self._cell


class ScopedHost:
    """`context.host`: the host as one paglet may see it. No credentials, no other ids."""

    __slots__ = ("_agent_id", "_host")

    def __init__(self, host: Host, agent_id: str | None) -> None:
        self._host = host
        self._agent_id = agent_id

    def _check(self, agent_id: str) -> str:
        if self._agent_id is not None and agent_id != self._agent_id:
            raise ForbiddenError(
                f"paglet {self._agent_id!r} may not act on {agent_id!r} through its host view"
            )
        return agent_id

    @property
    def name(self) -> str:
        return self._host.name

    @property
    def address(self) -> str:
        return self._host.address

    def health(self) -> dict[str, Any]:
        return self._host.health()

    def get_proxy(self, agent_id: str, *, include_inactive: bool = False) -> PagletProxy | None:
        return self._host.get_proxy(agent_id, include_inactive=include_inactive)

    def get_proxies(self, state: int = ACTIVE) -> list[PagletProxy]:
        return self._host.get_proxies(state)

    def list_agents(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self._host.list_agents(**kwargs)

    def get_property(self, key: str, default: Any = None) -> Any:
        return self._host.get_property(key, default)

    def set_property(self, key: str, value: Any) -> None:
        self._host.set_property(key, value)

    def dispose(self, agent_id: str) -> None:
        self._host.dispose(self._check(agent_id))

    def deactivate(self, agent_id: str, request: Any = None) -> PagletProxy:
        return self._host.deactivate(self._check(agent_id), request)

    def dispatch(self, agent_id: str, target: Any) -> PagletProxy:
        return self._host.dispatch(self._check(agent_id), target)

    def clone(self, agent_id: str, target: Any = None) -> PagletProxy:
        return self._host.clone(self._check(agent_id), target)

    def list_events(self, since: int = 0, limit: int = 100) -> list[Any]:
        return self._host.list_events(since=since, limit=limit)
