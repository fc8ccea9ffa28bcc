"""`ISOLATION = "process"`: the host-side stand-in of a paglet living in a child process.

The rest of the runtime sees an ordinary paglet instance in its cell: `ProcessPaglet`.
Its hooks, `handle_message`, `deactivation_policy` and `run` forward to the real instance
in the child (`paglets.runtime.child`) over a pipe; its `state` is the host's copy, which
the child refreshes after every call and on every dirty mark, so checkpoints, moves and
`get_state` read it as they read any paglet's state. Context calls the child makes come
back as callbacks: one made by a handler or hook runs on the host thread that holds the
paglet's turn (so re-entrant sends work as for host paglets), others on the worker pool.

A child that dies (exit, signal, OOM kill) or hangs (no heartbeat for
`PAGLETS_CHILD_HEARTBEAT_TIMEOUT` seconds, default 10, while no call is running; a long
handler is never hung) is reported crashed: the store row gets status `"crashed"` with the
exit code, `paglet-crashed` is emitted, the cell leaves the live set. `activate()`
restarts it from its last checkpoint (`on_activation(reason="recover")`), `dispose()`
removes it. When the stand-in departs (moved, deactivated, disposed, host stopped) the
child is told to stop once no call is running in it any more.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from paglets.core.agent import Paglet
from paglets.core.errors import ForbiddenError, HostError, PagletTimeoutError, error_to_wire
from paglets.core.runtime_values import ServiceScope
from paglets.persistence.policy import DeactivationPolicy, DeactivationRequest
from paglets.runtime import isolation_wire as wire
from paglets.runtime.child_link import ChildLink
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.runtime.classes import ClassSpec
    from paglets.runtime.host import Host

log = logging.getLogger("paglets.isolation")

__all__ = ["ProcessPaglet", "incarnate"]

_HOOKS = (
    "on_creation",
    "on_dispatching",
    "on_arrival",
    "on_reverting",
    "on_cloning",
    "on_clone",
    "on_cloned",
    "on_deactivating",
    "on_activation",
    "on_disposing",
    "on_transfer_aborted",
)

_CTX_METHODS = frozenset(
    {
        "get_proxy",
        "get_proxies",
        "get_property",
        "set_property",
        "create_paglet",
        "dispatch",
        "clone",
        "dispatch_to",
        "clone_to",
        "deactivate",
        "dispose",
        "retract",
        "send",
        "multicast",
        "work_dir",
        "register_file",
        "registered_files",
        "unregister_file",
        "file_path",
        "upload_artifact",
        "download_artifact",
        "delete_artifact",
        "available_hosts",
    }
)
_HOST_METHODS = frozenset(
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
_PROXY_METHODS = frozenset(
    {
        "info",
        "is_valid",
        "is_active",
        "is_state",
        "get_address",
        "get_agent_class_name",
        "get_state",
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


# -- the stand-in ----------------------------------------------------------------------------


class ProcessPaglet(Paglet[Any]):
    """Stands in the host for a paglet whose instance lives in a child process."""

    _forwarded: frozenset[str] = frozenset()
    _policy_overridden = False
    _link: ChildLink
    _departed = False

    def __init__(self, state: Any, *, agent_id: str) -> None:
        self.agent_id = agent_id
        self.state = state

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self._link.pid

    @property
    def departed(self) -> bool:  # type: ignore[override]
        return self._departed

    @departed.setter
    def departed(self, value: bool) -> None:
        if value and not self._departed:
            self._departed = True
            link = self.__dict__.get("_link")
            if link is not None:
                link.detach()

    # -- state -------------------------------------------------------------------------

    def _apply_state(self, data: bytes | None, *, dirty: bool = False) -> None:
        if data is None:
            return
        state = codec.decode_state(type(self).State, data)
        with self.locked():
            self.state = state
        if dirty:
            context = self._context
            if context is not None:
                context._mark_dirty()

    # -- what the runtime calls ----------------------------------------------------------

    def handle_message(self, message: Any) -> Any:
        return self._link.call("handle", message.to_wire())

    def deactivation_policy(self, request: DeactivationRequest) -> DeactivationPolicy:
        if not self._policy_overridden:
            return request.policy or DeactivationPolicy()
        return DeactivationPolicy.from_wire(self._link.call("policy", request.to_wire()))

    def _hook(self, name: str, event: Any) -> None:
        if name in self._forwarded:
            self._link.call("hook", [name, wire.event_to_wire(event)])

    def on_creation(self, event: Any) -> None:
        self._hook("on_creation", event)

    def on_dispatching(self, event: Any) -> None:
        self._hook("on_dispatching", event)

    def on_arrival(self, event: Any) -> None:
        self._hook("on_arrival", event)

    def on_reverting(self, event: Any) -> None:
        self._hook("on_reverting", event)

    def on_cloning(self, event: Any) -> None:
        self._hook("on_cloning", event)

    def on_clone(self, event: Any) -> None:
        self._hook("on_clone", event)

    def on_cloned(self, event: Any) -> None:
        self._hook("on_cloned", event)

    def on_deactivating(self, event: Any) -> None:
        self._hook("on_deactivating", event)

    def on_activation(self, event: Any) -> None:
        self._hook("on_activation", event)

    def on_disposing(self, event: Any) -> None:
        self._hook("on_disposing", event)

    def on_transfer_aborted(self, event: Any) -> None:
        self._hook("on_transfer_aborted", event)

    # -- callbacks from the child ------------------------------------------------------

    def _callback(self, op: str, payload: Any) -> Any:
        context = self._context
        if context is None:
            raise HostError(f"paglet {self.agent_id!r} is not attached to a host yet")
        if op == "checkpoint":
            self._apply_state(payload)
            context._checkpoint()
            return None
        if op == "subs":
            context._subscriptions(edit=(str(payload[0]), str(payload[1])))
            return None
        host = context._host
        if op == "proxy":
            url, agent_id, method, args, kwargs = payload
            target: Any = self._proxy(host, url, agent_id)
            allowed = _PROXY_METHODS
        else:
            method, args, kwargs = payload
            target = context if op == "ctx" else context.host
            allowed = _CTX_METHODS if op == "ctx" else _HOST_METHODS
        if method not in allowed:
            raise ForbiddenError(f"a process paglet may not call {op}.{method}()")
        args = wire.unpack(args, lambda u, a: self._proxy(host, u, a))
        kwargs = {
            k: wire.unpack(v, lambda u, a: self._proxy(host, u, a)) for k, v in kwargs.items()
        }
        if method == "multicast" and op == "ctx":
            if "scope" in kwargs:
                kwargs["scope"] = ServiceScope(kwargs["scope"])
            return _replies(context.multicast(*args, **kwargs))
        return wire.pack(getattr(target, method)(*args, **kwargs))

    @staticmethod
    def _proxy(host: Host, url: str, agent_id: str) -> Any:
        if host.is_local_url(url):
            return host.proxy(agent_id)
        from paglets.remote.proxy import PagletProxy

        return PagletProxy(url, agent_id, host.peer_client)

    # -- crash -------------------------------------------------------------------------

    def _crashed(self, exitcode: int | None, reason: str) -> None:
        """The child died while this paglet was live: report it crashed (once)."""
        context = self._context
        if context is None or self._departed:
            return
        host = context._host
        cell = context._cell
        if host.stopped or cell is None:
            return
        registry = host.registry
        agent_id = self.agent_id
        if registry.live.get(agent_id) is not cell:
            return  # not live yet: the create/activation/arrival building it fails by itself
        row = host.store.get_agent(agent_id)
        if row is not None:
            if cell.info.checkpoint_mode != "never":
                try:  # the state after its last completed turn
                    row.state = host.lifecycle._encode(cell)
                    row.checkpointed_at = time.time()
                except Exception as exc:
                    log.warning("could not save the state of crashed paglet %s: %s", agent_id, exc)
            meta = dict(row.meta or {})
            meta.update(
                exitcode=exitcode, error=reason, isolation="process", crashed_at=time.time()
            )
            row.meta = meta
            row.status = "crashed"
            host.store.put_agent(row)
        with registry.lock:
            if registry.live.get(agent_id) is cell:
                del registry.live[agent_id]
        host.lifecycle._depart(cell)
        log.warning("paglet %s crashed: %s", agent_id, reason)
        host.events.emit(
            "paglet-crashed",
            agent_id=agent_id,
            class_name=cell.info.class_name,
            error=reason,
            data={"exitcode": exitcode},
        )


class _RunningProcessPaglet(ProcessPaglet):
    """A stand-in whose class overrides `run()`: the runtime starts it on its thread."""

    def run(self) -> None:
        self._link.run()


def _replies(replies: Any) -> list[list[Any]]:
    out: list[list[Any]] = []
    for reply in replies:
        try:
            out.append([True, wire.pack(reply.get_reply())])
        except PagletTimeoutError:
            raise
        except Exception as exc:
            out.append([False, error_to_wire(exc, with_traceback=False)])
    return out


_standins: dict[type, type[ProcessPaglet]] = {}
_standins_lock = threading.Lock()


def _standin_class(spec: ClassSpec) -> type[ProcessPaglet]:
    cls = _standins.get(spec.cls)
    if cls is None:
        user = spec.cls
        forwarded = frozenset(
            name
            for name in _HOOKS
            if name in wire.DEPARTURE_HOOKS or getattr(user, name) is not getattr(Paglet, name)
        )
        base = _RunningProcessPaglet if spec.overrides_run else ProcessPaglet
        namespace = {
            "__module__": __name__,
            "__qualname__": user.__qualname__,
            "State": spec.state_cls,
            "ISOLATION": "process",
            "_forwarded": forwarded,
            "_policy_overridden": user.deactivation_policy is not Paglet.deactivation_policy,
        }
        cls = cast("type[ProcessPaglet]", type(user.__name__, (base,), namespace))
        with _standins_lock:
            cls = _standins.setdefault(user, cls)
    return cls


def incarnate(host: Host, spec: ClassSpec, state: Any, agent_id: str) -> ProcessPaglet:
    """Start a child process holding a new instance of `spec.cls`; its stand-in."""
    paglet = _standin_class(spec)(state, agent_id=agent_id)
    paglet._link = ChildLink(paglet, host, spec, agent_id, codec.encode_state(state))
    changed = paglet._link.wait_ready()
    paglet._apply_state(changed)
    return paglet
