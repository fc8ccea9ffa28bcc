"""Fan-out over the mesh: a parent paglet clones itself to several hosts and tracks them.

The parent keeps, in its state, which hosts it is waiting for, which are done, which
failed, and where its children are, so a restart or a move of the parent loses nothing.
A clone learns that it is a child through the state it is cloned with (`role="child"`,
its parent and its target host), set just before the clone and restored just after.

**Changed:** `deadline` is epoch time (2.0 stored `time.monotonic()`, which means nothing
on another host or after a restart).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from paglets.core.agent import PagletState
from paglets.core.errors import InvalidAgentError
from paglets.core.messages import Message

if TYPE_CHECKING:
    from paglets.remote.mesh import HostRef
    from paglets.remote.proxy import PagletProxy

__all__ = [
    "FANOUT_CHILD_DONE",
    "ChildRoleState",
    "MeshFanoutMixin",
    "MeshFanoutState",
]

FANOUT_CHILD_DONE = "fanout-child-done"
"""The message kind `fanout_notify_parent` sends by default (`args["host"]` = child's host)."""

_PARENT = "parent"
_CHILD = "child"


@dataclass
class ChildRoleState(PagletState):
    """Who this paglet is in a fan-out: the parent, or a child (with its parent and the
    host it was cloned to)."""

    role: str = _PARENT
    parent_host_url: str = ""
    parent_agent_id: str = ""
    target_host_name: str = ""
    target_host_url: str = ""


@dataclass
class MeshFanoutState(ChildRoleState):
    """The parent's book-keeping; hosts are keyed by name.

    `deadline`: epoch seconds after which pending hosts may be expired (`0.0` = none).
    `child_proxies`: host name -> proxy wire `{host_url, agent_id}`.
    `errors`, `cleanup_errors`: host name (or the target as given) -> message.
    """

    deadline: float = 0.0
    pending_hosts: list[str] = field(default_factory=list)
    done_hosts: list[str] = field(default_factory=list)
    child_proxies: dict[str, dict[str, str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    cleanup_errors: dict[str, str] = field(default_factory=dict)


def _norm_url(url: str) -> str:
    return url.rstrip("/").lower()


class MeshFanoutMixin:
    """Fan-out helpers for a paglet whose `State` is (a subclass of) `MeshFanoutState`.

    Typical parent handler::

        self.fanout_reset(timeout=30.0)
        for host in self.fanout_select_hosts(targets):
            self.fanout_clone_to(host)

    and in the children (their `run()` or a handler) `self.fanout_notify_parent(...)`, whose
    message the parent answers with `fanout_record_child_done(host)`. Later
    `fanout_expire_pending()` gives up on silent hosts once the deadline has passed, and
    `fanout_cleanup_children()` disposes the clones.
    """

    state: MeshFanoutState
    agent_id: str
    _fanout_saved: tuple[str, str, str, str, str] | None = None

    # -- the round -----------------------------------------------------------------------

    def fanout_reset(self, timeout: float = 30.0) -> None:
        """Start a new round: this paglet is the parent; every list is cleared and the
        deadline is `timeout` seconds from now (wall clock, meaningful on any host)."""
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout!r}")
        with self.locked_state() as state:  # type: ignore[attr-defined]
            state.role = _PARENT
            state.parent_host_url = ""
            state.parent_agent_id = ""
            state.target_host_name = ""
            state.target_host_url = ""
            state.deadline = time.time() + timeout
            state.pending_hosts = []
            state.done_hosts = []
            state.child_proxies = {}
            state.errors = {}
            state.cleanup_errors = {}

    def fanout_is_child(self) -> bool:
        return self.state.role == _CHILD

    def fanout_remaining(self) -> float:
        """Seconds until the deadline (negative once it has passed)."""
        return self.state.deadline - time.time()

    def fanout_complete(self) -> bool:
        """True when no host is pending (each is done or failed)."""
        return not self.state.pending_hosts

    # -- hosts ---------------------------------------------------------------------------

    def fanout_available_hosts(self, include_self: bool = False) -> list[HostRef]:
        """Online, compatible members of the mesh (this host too with `include_self`)."""
        return list(
            self.context.available_hosts(online_only=True, include_self=include_self)  # type: ignore[attr-defined]
        )

    def fanout_select_hosts(
        self, targets: Iterable[str] | None = None, include_self: bool = False
    ) -> list[HostRef]:
        """Choose the hosts of this round and mark them pending.

        `targets` are host names or URLs; `None` (or empty) = every available host. A
        target that is no member is recorded in `errors` as unknown, one that is not
        online as offline, and this host without `include_self` as excluded; none of them
        is returned.
        """
        context = self.context  # type: ignore[attr-defined]
        own_url = _norm_url(context.address)
        known = context.available_hosts(online_only=False, include_self=True)
        wanted = [t for t in targets or () if t]
        selected: list[HostRef] = []
        errors: dict[str, str] = {}
        if not wanted:
            for ref in known:
                if ref.online and (include_self or _norm_url(ref.url) != own_url):
                    selected.append(ref)
        else:
            by_name = {ref.name: ref for ref in known}
            by_url = {_norm_url(ref.url): ref for ref in known}
            for target in wanted:
                ref = by_name.get(target) or by_url.get(_norm_url(target))
                if ref is None:
                    errors[target] = (
                        f"unknown host {target!r}: not a member of this host's mesh view "
                        "(check the name, or that it joined with --peer)"
                    )
                elif not include_self and _norm_url(ref.url) == own_url:
                    errors[target] = (
                        f"host {target!r} is this host; pass include_self=True to use it"
                    )
                elif not ref.online:
                    errors[target] = f"host {target!r} is offline ({ref.status})"
                elif all(r.name != ref.name for r in selected):
                    selected.append(ref)
        with self.locked_state() as state:  # type: ignore[attr-defined]
            state.errors.update(errors)
            for ref in selected:
                if ref.name not in state.pending_hosts and ref.name not in state.done_hosts:
                    state.pending_hosts.append(ref.name)
        return selected

    # -- cloning children ----------------------------------------------------------------

    def fanout_prepare_clone(self, host: HostRef | str) -> None:
        """Turn the state into a child's for the clone that follows; call
        `fanout_finish_clone_prepare()` right after the clone (use `try/finally`)."""
        name, url = self._fanout_host(host)
        state = self.state
        self._fanout_saved = (
            state.role,
            state.parent_host_url,
            state.parent_agent_id,
            state.target_host_name,
            state.target_host_url,
        )
        with self.locked_state() as state:  # type: ignore[attr-defined]
            state.role = _CHILD
            state.parent_host_url = self.context.address  # type: ignore[attr-defined]
            state.parent_agent_id = self.agent_id
            state.target_host_name = name
            state.target_host_url = url

    def fanout_finish_clone_prepare(self) -> None:
        """Restore the parent's role after `fanout_prepare_clone`."""
        saved = self._fanout_saved
        if saved is None:
            return
        self._fanout_saved = None
        with self.locked_state() as state:  # type: ignore[attr-defined]
            (
                state.role,
                state.parent_host_url,
                state.parent_agent_id,
                state.target_host_name,
                state.target_host_url,
            ) = saved

    def fanout_clone_to(self, host: HostRef | str) -> PagletProxy | None:
        """New: prepare, clone to `host`, restore, and record the child's proxy (or, if the
        clone fails, the error); returns the proxy or `None`."""
        name, url = self._fanout_host(host)
        self.fanout_prepare_clone(host)
        try:
            proxy = self.clone(url)  # type: ignore[attr-defined]
        except Exception as exc:
            self.fanout_finish_clone_prepare()
            self.fanout_record_child_error(name, f"clone to {name!r} failed: {exc}")
            return None
        self.fanout_finish_clone_prepare()
        self.fanout_record_child_proxy(name, proxy)
        return proxy

    def _fanout_host(self, host: HostRef | str) -> tuple[str, str]:
        if isinstance(host, str):
            if "://" in host:
                return host, host
            for ref in self.context.available_hosts(online_only=False, include_self=True):  # type: ignore[attr-defined]
                if ref.name == host:
                    return ref.name, ref.url
            raise ValueError(f"unknown host {host!r}: not a member of this host's mesh view")
        return host.name, host.url

    # -- recording -----------------------------------------------------------------------

    def fanout_record_child_proxy(self, host: str, proxy: Any) -> None:
        """Remember where the child on `host` is (a proxy, a ref or its wire)."""
        wire = proxy if isinstance(proxy, dict) else proxy.to_wire()
        with self.locked_state() as state:  # type: ignore[attr-defined]
            state.child_proxies[host] = {
                "host_url": str(wire["host_url"]),
                "agent_id": str(wire["agent_id"]),
            }

    def fanout_record_child_error(self, host: str, error: BaseException | str) -> None:
        """`host` failed: it is no longer pending."""
        text = str(error) or type(error).__name__
        with self.locked_state() as state:  # type: ignore[attr-defined]
            state.errors[host] = text
            if host in state.pending_hosts:
                state.pending_hosts.remove(host)
        self._fanout_changed()

    def fanout_record_child_done(self, host: str) -> bool:
        """`host` is done; False when it was already recorded as done (a repeat)."""
        with self.locked_state() as state:  # type: ignore[attr-defined]
            if host in state.done_hosts:
                return False
            if host in state.pending_hosts:
                state.pending_hosts.remove(host)
            state.done_hosts.append(host)
        self._fanout_changed()
        return True

    def fanout_expire_pending(self, error: str = "no answer before the deadline") -> list[str]:
        """Once the deadline has passed, move every pending host to `errors` and return
        them; before it, change nothing and return `[]`."""
        if time.time() < self.state.deadline:
            return []
        with self.locked_state() as state:  # type: ignore[attr-defined]
            expired = list(state.pending_hosts)
            for host in expired:
                state.errors[host] = error
            state.pending_hosts = []
        if expired:
            self._fanout_changed()
        return expired

    # -- children's side -----------------------------------------------------------------

    def fanout_parent_proxy(self) -> PagletProxy | None:
        """The parent's proxy, in a child; `None` in the parent."""
        state = self.state
        if state.role != _CHILD or not state.parent_agent_id:
            return None
        return self.context.get_proxy(state.parent_agent_id, state.parent_host_url)  # type: ignore[attr-defined]

    def fanout_notify_parent(
        self,
        args: dict[str, Any] | None = None,
        *,
        kind: str = FANOUT_CHILD_DONE,
        timeout: float | None = None,
    ) -> Any:
        """Send `kind` to the parent with `args` plus `host` (this child's target host name)
        and `agent_id`; returns the reply. In the parent (no parent to tell) it returns
        `None` and sends nothing."""
        parent = self.fanout_parent_proxy()
        if parent is None:
            return None
        payload = {
            **(args or {}),
            "host": self.state.target_host_name,
            "agent_id": self.agent_id,
        }
        return parent.send(Message(kind, payload), timeout=timeout)

    # -- cleanup -------------------------------------------------------------------------

    def fanout_cleanup_children(self) -> list[str]:
        """Dispose every recorded child; returns the hosts whose child is gone (already
        gone counts). Failures go to `cleanup_errors` and those children stay recorded."""
        context = self.context  # type: ignore[attr-defined]
        cleaned: list[str] = []
        failed: dict[str, str] = {}
        for host, wire in list(self.state.child_proxies.items()):
            try:
                proxy = context.get_proxy(wire["agent_id"], wire["host_url"])
                if proxy is not None:
                    proxy.dispose()
            except InvalidAgentError:
                pass  # already gone (it may dispose itself once done)
            except Exception as exc:
                failed[host] = str(exc) or type(exc).__name__
                continue
            cleaned.append(host)
        with self.locked_state() as state:  # type: ignore[attr-defined]
            for host in cleaned:
                state.child_proxies.pop(host, None)
                state.cleanup_errors.pop(host, None)
            state.cleanup_errors.update(failed)
        return cleaned

    def _fanout_changed(self) -> None:
        if getattr(self, "_context", None) is not None and not getattr(self, "departed", False):
            self.notify_all_state_changed()  # type: ignore[attr-defined]
