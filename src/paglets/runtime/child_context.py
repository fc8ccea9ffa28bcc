"""What a paglet's context is inside its child process (`ISOLATION = "process"`).

The real `PagletContext` lives in the host. Here, `ChildContext` forwards each call over
the pipe as a callback frame; the host runs it on the real context (on the thread holding
the paglet's turn when the call comes from a handler or hook, so re-entrant sends work) and
sends back the result. Proxies handed to the paglet are `ChildProxy`s, which forward the
same way. What stays local to the child: the paglet's `resources` registry, and the
waits of `wait_state`/`wait_message` (they do not release the host turn while waiting:
use them from `run()` or a user thread, not from inside a handler).

Not available here (a clear `HostError`): `persistent_storage()`; results that are records
(registered files, artifact refs, host refs, service records) arrive as wire dicts.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from paglets.core.errors import ForbiddenError, HostError, LifecycleError, error_from_wire
from paglets.core.messages import ReplySet
from paglets.core.runtime_values import ServiceScope
from paglets.runtime.isolation_wire import pack, unpack
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.runtime.child import Child

__all__ = ["ChildContext", "ChildHostView", "ChildProxy"]


class ChildContext:
    """`paglet.context` in a child process; same methods as `PagletContext`."""

    __slots__ = (
        "_agent_id",
        "_child",
        "_detached",
        "_host_address",
        "_host_name",
        "_messages",
        "_states",
    )

    def __init__(self, child: Child, agent_id: str, host_name: str, host_address: str) -> None:
        self._child = child
        self._agent_id = agent_id
        self._host_name = host_name
        self._host_address = host_address
        self._detached = False
        self._states = threading.Condition()
        self._messages = threading.Condition()

    # -- identity ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._host_name

    @property
    def address(self) -> str:
        return self._host_address

    @property
    def agent_id(self) -> str:
        return self._agent_id

    @property
    def host(self) -> ChildHostView:
        return ChildHostView(self)

    def _own_id(self, agent_id: str | None = None) -> str:
        if agent_id is not None and agent_id != self._agent_id:
            raise ForbiddenError(
                f"paglet {self._agent_id!r} may only act on itself, not on {agent_id!r}; "
                "use that paglet's proxy"
            )
        if self._detached:
            raise LifecycleError(
                f"paglet {self._agent_id!r} has left this host (moved, deactivated or "
                "disposed); this instance is detached"
            )
        return self._agent_id

    # -- forwarding ----------------------------------------------------------------------

    def _forward(self, op: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        payload = [method, pack(list(args)), {k: pack(v) for k, v in kwargs.items()}]
        return unpack(self._child.callback(op, payload), self._make_proxy)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._forward("ctx", method, args, kwargs)

    def _make_proxy(self, host_url: str, agent_id: str) -> ChildProxy:
        return ChildProxy(self, host_url, agent_id)

    # -- other paglets -------------------------------------------------------------------

    def get_proxy(self, agent_id: str, host_url: str | None = None) -> ChildProxy | None:
        return self._call("get_proxy", agent_id, host_url)

    def get_proxies(self, state: int = 1) -> list[ChildProxy]:
        return self._call("get_proxies", state)

    def get_property(self, key: str, default: Any = None) -> Any:
        return self._call("get_property", key, default)

    def set_property(self, key: str, value: Any) -> None:
        self._call("set_property", key, value)

    def create_paglet(
        self,
        agent_cls: Any,
        state: Any = None,
        *,
        init: Any = None,
        host_url: str | None = None,
        agent_id: str | None = None,
    ) -> ChildProxy:
        return self._call(
            "create_paglet", agent_cls, state, init=init, host_url=host_url, agent_id=agent_id
        )

    # -- lifecycle of itself -------------------------------------------------------------

    def dispatch(self, agent_id: str, target: Any) -> ChildProxy:
        return self._call("dispatch", self._own_id(agent_id), target)

    def clone(self, agent_id: str, target: Any = None) -> ChildProxy:
        return self._call("clone", self._own_id(agent_id), target)

    def dispatch_to(self, name_or_url: str) -> ChildProxy:
        self._own_id()
        return self._call("dispatch_to", name_or_url)

    def clone_to(self, name_or_url: str) -> ChildProxy:
        self._own_id()
        return self._call("clone_to", name_or_url)

    def deactivate(self, agent_id: str, request: Any = None) -> ChildProxy:
        return self._call("deactivate", self._own_id(agent_id), request)

    def dispose(self, agent_id: str | None = None) -> None:
        self._call("dispose", self._own_id(agent_id))

    def retract(self, remote_host_url: str, agent_id: str) -> ChildProxy:
        return self._call("retract", remote_host_url, agent_id)

    # -- messages ------------------------------------------------------------------------

    def send(
        self,
        target_agent_id: str,
        message: Any,
        *,
        host_url: str | None = None,
        timeout: float | None = None,
        reply_type: Any = None,
    ) -> Any:
        self._own_id()
        reply = self._call("send", target_agent_id, message, host_url=host_url, timeout=timeout)
        return codec.convert(reply, reply_type) if reply_type is not None else reply

    async def send_async(
        self,
        target_agent_id: str,
        message: Any,
        *,
        host_url: str | None = None,
        timeout: float | None = None,
        reply_type: Any = None,
    ) -> Any:
        return await asyncio.to_thread(
            self.send,
            target_agent_id,
            message,
            host_url=host_url,
            timeout=timeout,
            reply_type=reply_type,
        )

    def multicast(
        self,
        kind: Any,
        args: dict[str, Any] | None = None,
        *,
        exclude: list[str] | None = None,
        scope: ServiceScope = ServiceScope.LOCAL,
        timeout: float | None = None,
    ) -> ReplySet:
        outcomes = self._call(
            "multicast", kind, args, exclude=exclude, scope=str(scope), timeout=timeout
        )
        futures = []
        for ok, value in outcomes:
            future: Future[Any] = Future()
            if ok:
                future.set_result(value)
            else:
                future.set_exception(error_from_wire(value))
            futures.append(future)
        return ReplySet(futures, timeout=timeout)

    # -- files and resources -------------------------------------------------------------

    def resources(self, agent_id: str | None = None) -> Any:
        self._own_id(agent_id)
        return self._child.paglet.resources

    def work_dir(self, *, create: bool = True) -> Any:
        self._own_id()
        return self._call("work_dir", create=create)

    def persistent_storage(self, *, quota_bytes: int | None = None) -> Any:
        raise HostError(
            "persistent_storage() is not available to ISOLATION='process' paglets yet; "
            "use work_dir() or a host-isolated paglet"
        )

    def register_file(self, path: Any, *, name: str | None = None, mode: str = "copy") -> Any:
        self._own_id()
        return self._call("register_file", path, name=name, mode=mode)

    def registered_files(self) -> list[Any]:
        self._own_id()
        return self._call("registered_files")

    def unregister_file(self, name_or_ref: Any) -> None:
        self._own_id()
        self._call("unregister_file", name_or_ref)

    def file_path(self, name_or_ref: Any) -> Any:
        self._own_id()
        return self._call("file_path", name_or_ref)

    def upload_artifact(self, path: Any, **kwargs: Any) -> Any:
        self._own_id()
        return self._call("upload_artifact", path, **kwargs)

    def download_artifact(self, artifact: Any, target: Any, *, move: bool = False) -> Any:
        self._own_id()
        return self._call("download_artifact", artifact, target, move=move)

    def delete_artifact(self, artifact: Any) -> bool:
        self._own_id()
        return self._call("delete_artifact", artifact)

    def available_hosts(self, *, online_only: bool = True, include_self: bool = True) -> Any:
        return self._call("available_hosts", online_only=online_only, include_self=include_self)

    # -- plumbing used by Paglet ---------------------------------------------------------

    def _mark_dirty(self) -> None:
        if not self._detached:
            self._child.state_changed()

    def _checkpoint(self) -> None:
        self._own_id()
        self._child.checkpoint()

    def _wait_state(self, predicate: Any, timeout: float | None) -> bool:
        with self._states:
            return self._states.wait_for(predicate, self._child.timeout(timeout))

    def _notify_state(self, *, all_waiters: bool) -> None:
        self._mark_dirty()
        with self._states:
            if all_waiters:
                self._states.notify_all()
            else:
                self._states.notify()

    def _wait_message(self, timeout: float | None) -> bool:
        with self._messages:
            return self._messages.wait(self._child.timeout(timeout))

    def _notify_message(self, *, all_waiters: bool) -> None:
        with self._messages:
            if all_waiters:
                self._messages.notify_all()
            else:
                self._messages.notify()

    def _message_handled(self) -> None:
        with self._messages:
            self._messages.notify_all()

    def _subscriptions(self, *, edit: tuple[str, str]) -> None:
        self._child.callback("subs", list(edit))


class ChildHostView:
    """`context.host` in a child: the scoped host view, forwarded."""

    __slots__ = ("_context",)

    _METHODS = frozenset(
        {
            "health",
            "get_proxy",
            "get_proxies",
            "list_agents",
            "get_property",
            "set_property",
            "dispose",
            "deactivate",
            "dispatch",
            "clone",
            "list_events",
        }
    )

    def __init__(self, context: ChildContext) -> None:
        self._context = context

    @property
    def name(self) -> str:
        return self._context.name

    @property
    def address(self) -> str:
        return self._context.address

    def __getattr__(self, method: str) -> Any:
        if method not in self._METHODS:
            raise AttributeError(f"the host view of a process paglet has no {method!r}")
        context = self._context

        def call(*args: Any, **kwargs: Any) -> Any:
            return context._forward("host", method, args, kwargs)

        return call


class ChildProxy:
    """A proxy handed to a process paglet: each call runs in the host on a real proxy."""

    __slots__ = ("_context", "agent_id", "host_url")

    _METHODS = frozenset(
        {
            "info",
            "is_valid",
            "is_active",
            "is_state",
            "get_address",
            "get_agent_class_name",
            "send",
            "send_oneway",
            "dispatch",
            "clone",
            "retract",
            "deactivate",
            "activate",
            "dispose",
        }
    )

    def __init__(self, context: ChildContext, host_url: str, agent_id: str) -> None:
        self._context = context
        self.host_url = host_url
        self.agent_id = agent_id

    def __eq__(self, other: object) -> bool:
        if not hasattr(other, "host_url") or not hasattr(other, "agent_id"):
            return NotImplemented
        return (self.host_url, self.agent_id) == (other.host_url, other.agent_id)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.host_url, self.agent_id))

    def __repr__(self) -> str:
        return f"PagletProxy(host_url={self.host_url!r}, agent_id={self.agent_id!r})"

    def to_wire(self) -> dict[str, str]:
        return {"host_url": self.host_url, "agent_id": self.agent_id}

    def ref(self) -> Any:
        from paglets.remote.references import PagletProxyRef

        return PagletProxyRef(self.host_url, self.agent_id)

    def get_agent_id(self) -> str:
        return self.agent_id

    def get_state(self, state_cls: Any = None) -> Any:
        """The state as `state_cls`, or as a dict of its fields."""
        wire = self._forward("get_state")
        return codec.dataclass_from_wire(state_cls, wire) if state_cls is not None else wire

    def _forward(self, method: str, *args: Any, **kwargs: Any) -> Any:
        payload = [
            self.host_url,
            self.agent_id,
            method,
            pack(list(args)),
            {k: pack(v) for k, v in kwargs.items()},
        ]
        return unpack(self._context._child.callback("proxy", payload), self._context._make_proxy)

    def __getattr__(self, method: str) -> Any:
        if method not in self._METHODS:
            raise AttributeError(f"a process paglet's proxy has no {method!r}")

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._forward(method, *args, **kwargs)

        return call
