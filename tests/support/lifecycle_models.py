"""Paglet classes for the lifecycle, persistence and bad-input integration tests.

They live in an importable module (not in the test files) because a host stores a
paglet's class as `module:qualname` and imports it again on activation and restart.

Every hook call is appended to `LOG` as `(agent_id, hook, detail)`, in call order, from
whichever thread runs it; the tests read it back with `hooks()` / `hooks_of()`.
A hook raises when its name is in the state's `fail` list (travels with the state, so a
clone inherits it) or when `(agent_id, hook)` is in `FAIL` (set by the test at any time).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from paglets import Message, Paglet, PagletState
from paglets.core.errors import LifecycleError
from paglets.persistence import DeactivationPolicy, DeactivationRequest

LOG: list[tuple[str, str, str]] = []
FAIL: set[tuple[str, str]] = set()
INSTANCES: dict[str, list[Paglet[Any]]] = {}
_lock = threading.Lock()


def record(agent_id: str, hook: str, detail: str = "") -> None:
    with _lock:
        LOG.append((agent_id, hook, detail))


def hooks(agent_id: str, *, with_run: bool = False) -> list[str]:
    """The hooks one paglet id saw, in order, as `hook` or `hook:detail`.

    `run` is left out unless asked for: it runs on its own thread, so its position
    relative to later steps is not deterministic.
    """
    with _lock:
        entries = list(LOG)
    return [
        f"{hook}:{detail}" if detail else hook
        for aid, hook, detail in entries
        if aid == agent_id and (with_run or hook != "run")
    ]


def hooks_of(*agent_ids: str) -> list[tuple[str, str]]:
    """`(agent_id, hook)` for several ids, interleaved in call order, without `run`."""
    wanted = set(agent_ids)
    with _lock:
        entries = list(LOG)
    return [(aid, hook) for aid, hook, _detail in entries if aid in wanted and hook != "run"]


def run_count(agent_id: str) -> int:
    with _lock:
        return sum(1 for aid, hook, _ in LOG if aid == agent_id and hook == "run")


@dataclass
class RecState(PagletState):
    count: int = 0
    items: list[str] = field(default_factory=list)
    fail: list[str] = field(default_factory=list)
    blob: bytes = b""


@dataclass
class OtherState(PagletState):
    name: str = "other"


class Recorder(Paglet[RecState]):
    """Records every hook; registers one resource per incarnation so cleanup is visible."""

    State = RecState

    def __init__(self, state: RecState | None = None, *, agent_id: str | None = None) -> None:
        super().__init__(state, agent_id=agent_id)
        record(self.agent_id, "__init__")
        with _lock:
            INSTANCES.setdefault(self.agent_id, []).append(self)
        own_id = self.agent_id
        self.resources.register("recorder", lambda: self._cleanup(own_id))

    def _cleanup(self, agent_id: str) -> None:
        record(agent_id, "cleanup")
        if (agent_id, "cleanup") in FAIL:
            raise RuntimeError(f"cleanup of {agent_id} failed on purpose")

    def _hook(self, name: str, detail: str = "") -> None:
        record(self.agent_id, name, detail)
        if name in self.state.fail or (self.agent_id, name) in FAIL:
            # A change made before the failure: "earlier state changes are kept".
            self.state.items.append(f"before-failed-{name}")
            raise RuntimeError(f"{name} failed on purpose")

    # -- hooks -----------------------------------------------------------------------

    def on_creation(self, event: Any) -> None:
        self._hook("on_creation", repr(event.init) if event.init is not None else "")

    def on_dispatching(self, event: Any) -> None:
        self._hook("on_dispatching", event.reason)

    def on_arrival(self, event: Any) -> None:
        self._hook("on_arrival", event.reason)

    def on_reverting(self, event: Any) -> None:
        self._hook("on_reverting", event.reason)

    def on_cloning(self, event: Any) -> None:
        self._hook("on_cloning")

    def on_clone(self, event: Any) -> None:
        assert event.clone_agent_id == self.agent_id
        self._hook("on_clone", event.source_agent_id)

    def on_cloned(self, event: Any) -> None:
        self._hook("on_cloned", event.clone_agent_id)

    def on_deactivating(self, event: Any) -> None:
        self._hook("on_deactivating", event.reason)

    def on_activation(self, event: Any) -> None:
        self._hook("on_activation", event.reason)

    def on_disposing(self, event: Any) -> None:
        self._hook("on_disposing", event.reason)

    def on_transfer_aborted(self, event: Any) -> None:
        record(self.agent_id, "on_transfer_aborted")

    def deactivation_policy(self, request: DeactivationRequest) -> DeactivationPolicy:
        record(self.agent_id, "deactivation_policy", request.source)
        return super().deactivation_policy(request)

    def run(self) -> None:
        record(self.agent_id, "run")

    # -- messages --------------------------------------------------------------------

    def handle_message(self, message: Message) -> Any:
        kind = message.kind
        if kind == "add":
            self.state.count += message.get_arg("n", 1)
            return self.state.count
        if kind == "append":
            self.state.items.append(message.get_arg("v"))
            return len(self.state.items)
        if kind == "get":
            return {"count": self.state.count, "items": list(self.state.items)}
        if kind == "add_then_checkpoint":
            self.state.count += message.get_arg("n", 1)
            self.checkpoint()
            return self.state.count
        if kind == "deactivate_self":
            self.deactivate(policy=DeactivationPolicy())
            return self._after_departure()
        if kind == "clone_self":
            return self.clone().agent_id
        if kind == "dispatch_self":
            self.dispatch(self.context.address)
            return self._after_departure()
        if kind == "write_work_file":
            path = self.work_dir() / message.get_arg("name")
            path.write_text(message.get_arg("text"))
            return str(path)
        if kind == "register":
            return self.register_file(message.get_arg("path"), name=message.get_arg("name")).name
        if kind == "file_text":
            return self.file_path(message.get_arg("name")).read_text()
        if kind == "store":
            storage = self.persistent_storage(quota_bytes=message.get_arg("quota"))
            storage.write_bytes(message.get_arg("rel", "blob"), b"x" * message.get_arg("size"))
            return storage.status().quota_bytes
        return self.not_handled()

    def _after_departure(self) -> dict[str, Any]:
        # The handler goes on on a detached instance: the reply still reaches the caller,
        # later state changes are lost, identity-bound context calls raise LifecycleError.
        self.state.count = 999_999
        try:
            self.work_dir()
            context_call = "allowed"
        except LifecycleError:
            context_call = "LifecycleError"
        return {"departed": self.departed, "context_call": context_call}


class NoRun(Paglet[RecState]):
    """Does not override run(): the runtime must not start a run thread for it."""

    State = RecState

    def handle_message(self, message: Message) -> Any:
        if message.kind == "add":
            self.state.count += message.get_arg("n", 1)
            return self.state.count
        return self.not_handled()


class AlwaysCheckpoint(Recorder):
    CHECKPOINT = "always"


class NeverCheckpoint(Recorder):
    CHECKPOINT = "never"


class SleepsUnqueued(Recorder):
    """Overrides the caller's policy: never wakes on messages and never queues them."""

    def deactivation_policy(self, request: DeactivationRequest) -> DeactivationPolicy:
        record(self.agent_id, "deactivation_policy", request.source)
        return DeactivationPolicy(activate_on_message=False, queue_messages_when_inactive=False)


# -- bad classes ------------------------------------------------------------------------


class NotADataclassState(PagletState):
    count: int = 0


class StateNotDataclass(Paglet[Any]):
    State = NotADataclassState


class MissingState(Paglet[Any]):
    pass
