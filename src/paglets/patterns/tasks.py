"""Task paglets: a paglet that does one job, started by a message, watched through its state.

A `TaskPaglet` answers three messages: `"start"` (run the task inside the handler),
`"status"` (where it is) and `"wait"` (block, releasing the turn, until it is done). The
status lives in the paglet's state, so it survives checkpoints, moves and restarts, and a
`TaskClient` on any host reads it the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from paglets.core.agent import Paglet, PagletState
from paglets.core.errors import HostError
from paglets.core.messages import Message
from paglets.core.runtime_values import enum_from_wire, require_enum

if TYPE_CHECKING:
    from paglets.remote.proxy import PagletProxy

__all__ = [
    "TaskClient",
    "TaskPaglet",
    "TaskSnapshot",
    "TaskState",
    "TaskStatus",
    "TaskStatusReply",
]

_log = logging.getLogger(__name__)

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")
StateT = TypeVar("StateT", bound="TaskState")

# A wait is bounded like every other wait (api.md §0); longer waits are a loop of these.
_MAX_WAIT_TIMEOUT = 300.0
_DEFAULT_TIMEOUT = 10.0


class TaskStatus(StrEnum):
    """Where a task is. The values are the upper-case names, as compute job statuses."""

    NEW = "NEW"
    RUNNING = "RUNNING"
    WAITING_FOR_ARRIVAL = "WAITING_FOR_ARRIVAL"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass
class TaskState(PagletState):
    """The task's progress. `request` and `result` are wire dicts (the codec's builtins form),
    so any host can read them without the request and result classes. Times are epoch
    seconds; `0.0` means "not yet"."""

    status: TaskStatus = TaskStatus.NEW
    done: bool = False
    request: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str = ""
    started_at: float = 0.0
    completed_at: float = 0.0


@dataclass(frozen=True, slots=True)
class TaskStatusReply:
    """The reply to `"status"`, `"wait"` and (unless the task moved) `"start"`."""

    status: TaskStatus
    done: bool
    result: dict[str, Any] | None = None
    error: str = ""
    started_at: float = 0.0
    completed_at: float = 0.0
    agent_id: str = ""
    host_name: str = ""
    host_url: str = ""

    def __post_init__(self) -> None:
        require_enum(self.status, TaskStatus, "status")

    def to_wire(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "done": self.done,
            "result": self.result,
            "error": self.error,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "agent_id": self.agent_id,
            "host_name": self.host_name,
            "host_url": self.host_url,
        }

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> TaskStatusReply:
        if not isinstance(payload, dict):
            raise ValueError(f"a task status reply must be a dict, got {type(payload).__name__}")
        result = payload.get("result")
        return cls(
            status=enum_from_wire(TaskStatus, payload.get("status", "NEW"), "status"),
            done=bool(payload.get("done", False)),
            result=dict(result) if isinstance(result, dict) else None,
            error=str(payload.get("error") or ""),
            started_at=float(payload.get("started_at") or 0.0),
            completed_at=float(payload.get("completed_at") or 0.0),
            agent_id=str(payload.get("agent_id") or ""),
            host_name=str(payload.get("host_name") or ""),
            host_url=str(payload.get("host_url") or ""),
        )


@dataclass(frozen=True, slots=True)
class TaskSnapshot(Generic[ResultT]):
    """What a `TaskClient` returns: the status reply with `result` decoded to the task's
    `Result` type (the wire dict when the client has no result type)."""

    status: TaskStatus
    done: bool
    result: ResultT | None
    error: str
    started_at: float
    completed_at: float
    agent_id: str
    host_name: str
    host_url: str

    @property
    def completed(self) -> bool:
        return self.status is TaskStatus.COMPLETED

    @property
    def failed(self) -> bool:
        return self.status is TaskStatus.FAILED


def _to_wire_dict(value: Any, what: str) -> dict[str, Any] | None:
    """A request or result as the wire dict the state stores."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        from paglets.serialization.codec import dataclass_to_wire

        return dataclass_to_wire(value)
    to_wire = getattr(value, "to_wire", None)
    if callable(to_wire):
        wire = to_wire()
        if isinstance(wire, dict):
            return wire
    raise TypeError(
        f"a task {what} must be a dataclass instance or a dict, got {type(value).__name__}"
    )


def _from_wire(cls: Any, payload: dict[str, Any] | None, what: str) -> Any:
    """Decode a wire dict to `cls`; with no class (or `dict`) the dict is returned."""
    if payload is None or cls is None or cls is dict:
        return payload
    from paglets.serialization.codec import convert, dataclass_from_wire

    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        return dataclass_from_wire(cls, payload)
    return convert(payload, cls, root=what)


def _is_reference(value: Any) -> bool:
    """A proxy or `PagletProxyRef`: what `run_task` returns when the task moved itself."""
    from paglets.remote.references import PagletProxyRef

    if isinstance(value, PagletProxyRef):
        return True
    from paglets.remote.proxy import PagletProxy

    return isinstance(value, PagletProxy)


def _is_moved_reply(reply: Any) -> bool:
    return isinstance(reply, dict) and set(reply) == {"host_url", "agent_id"}


class TaskPaglet(Paglet[StateT], Generic[RequestT, ResultT, StateT]):
    """A paglet that runs one task.

    Set `State` (a `TaskState` subclass), `Request` and `Result` (dataclasses; `None`
    passes the wire dicts through) and override `run_task(request)`:

    * return a `Result` (or a dict): the task is `COMPLETED` with it;
    * raise: the task is `FAILED` with `str(exc)` (the reply is the status, not an error);
    * return `None`: the task stays as `run_task` left it (`RUNNING`, or what it set) until
      `complete_task` / `fail_task`, e.g. from `run()` or a later message;
    * return a proxy or `PagletProxyRef` after moving itself: the reply is its wire, so
      the caller can follow it (`TaskClient` does).

    Other message kinds go to `handle_task_message` (`None` = not handled).
    """

    State: ClassVar[type[Any]] = TaskState
    Request: ClassVar[Any] = None
    Result: ClassVar[Any] = None

    # -- to override -------------------------------------------------------------------

    def run_task(self, request: RequestT) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must override run_task(request)")

    def handle_task_message(self, message: Message) -> Any:
        """Application messages beside the task protocol; `None` = not handled."""
        return None

    # -- the protocol ------------------------------------------------------------------

    def handle_message(self, message: Message) -> Any:
        kind = message.kind
        if kind == "start":
            return self._start_task(message)
        if kind == "status":
            return self.task_status_reply().to_wire()
        if kind == "wait":
            timeout = _wait_timeout(message.get_arg("wait_timeout", 0.5))
            self.wait_state(lambda state: bool(state.done), timeout)
            return self.task_status_reply().to_wire()
        reply = self.handle_task_message(message)
        return self.not_handled() if reply is None else reply

    def _start_task(self, message: Message) -> Any:
        state = self.state
        if state.status in (TaskStatus.RUNNING, TaskStatus.WAITING_FOR_ARRIVAL):
            raise HostError(
                f"task {self.agent_id!r} is already {state.status.value}; wait for it "
                "(message 'wait') or create a new task paglet"
            )
        wire = message.get_arg("request")
        if wire is None:
            wire = {}
        if not isinstance(wire, dict):
            raise TypeError(
                f"'start' needs args={{'request': <dict>}}, got a {type(wire).__name__}"
            )
        request = _from_wire(type(self).Request, wire, "request")
        with self.locked_state() as state:
            state.request = wire
            state.result = None
            state.error = ""
            state.started_at = time.time()
            state.completed_at = 0.0
            state.done = False
            state.status = TaskStatus.RUNNING
        try:
            outcome = self.run_task(request)
        except Exception as exc:
            _log.debug("task %s failed", self.agent_id, exc_info=True)
            if self.departed:
                raise
            self.fail_task(exc)
            return self.task_status_reply().to_wire()
        if outcome is not None and _is_reference(outcome):
            # The task moved itself: this instance is detached and its state is gone with
            # it; the caller follows the returned reference.
            return outcome.to_wire()
        if self.departed:
            raise HostError(
                f"task {self.agent_id!r} left this host in run_task but returned "
                f"{type(outcome).__name__}; return the proxy that dispatch() gave"
            )
        if outcome is not None:
            self.complete_task(outcome)
        return self.task_status_reply().to_wire()

    # -- helpers -----------------------------------------------------------------------

    def complete_task(self, result: Any, status: TaskStatus = TaskStatus.COMPLETED) -> None:
        """Finish the task with `result` (a dataclass, a dict or `None`); wakes waiters."""
        status = require_enum(status, TaskStatus, "status")
        wire = _to_wire_dict(result, "result")
        with self.locked_state() as state:
            state.result = wire
            state.status = status
            state.done = True
            state.completed_at = time.time()
        self._task_changed()

    def fail_task(self, error: BaseException | str) -> None:
        """Finish the task as `FAILED` with `error` (an exception's `str`, or its type name
        when that is empty); wakes waiters."""
        if isinstance(error, BaseException):
            text = str(error) or type(error).__name__
        else:
            text = str(error)
        with self.locked_state() as state:
            state.error = text
            state.status = TaskStatus.FAILED
            state.done = True
            state.completed_at = time.time()
        self._task_changed()

    def set_task_status(self, status: TaskStatus, done: bool | None = None) -> None:
        status = require_enum(status, TaskStatus, "status")
        with self.locked_state() as state:
            state.status = status
            if done is not None:
                state.done = done
                if done and not state.completed_at:
                    state.completed_at = time.time()
        self._task_changed()

    def task_status_reply(self) -> TaskStatusReply:
        context = self._context
        with self.locked():
            state = self.state
            return TaskStatusReply(
                status=state.status,
                done=state.done,
                result=state.result,
                error=state.error,
                started_at=state.started_at,
                completed_at=state.completed_at,
                agent_id=self.agent_id,
                host_name=context.name if context is not None else "",
                host_url=context.address if context is not None else "",
            )

    def _task_changed(self) -> None:
        # A standalone instance (no host) or a detached one has nobody to wake.
        if self._context is not None and not self.departed:
            self.notify_all_state_changed()


def _wait_timeout(value: Any) -> float:
    try:
        timeout = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"wait_timeout must be a number of seconds, got {value!r}") from None
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"wait_timeout must be >= 0 seconds, got {value!r}")
    return min(timeout, _MAX_WAIT_TIMEOUT)


class TaskClient(Generic[RequestT, ResultT]):
    """Starts and watches a task paglet through its proxy, from anywhere.

    When the task moves itself during `start`, the client re-points to the returned
    location, so later calls go there directly.
    """

    __slots__ = ("_proxy", "request_type", "result_type")

    def __init__(
        self,
        proxy: PagletProxy,
        request_type: type[RequestT] | None = None,
        result_type: type[ResultT] | None = None,
    ) -> None:
        self._proxy = proxy
        self.request_type = request_type
        self.result_type = result_type

    @classmethod
    def for_paglet(
        cls, proxy: PagletProxy, paglet_cls: type[TaskPaglet[Any, Any, Any]]
    ) -> TaskClient[Any, Any]:
        """A client typed by the task class's `Request` and `Result`."""
        return cls(proxy, paglet_cls.Request, paglet_cls.Result)

    @property
    def proxy(self) -> PagletProxy:
        return self._proxy

    def start(
        self, request: RequestT | dict[str, Any] | None, timeout: float | None = None
    ) -> TaskSnapshot[ResultT]:
        expected = self.request_type
        if (
            request is not None
            and expected is not None
            and isinstance(expected, type)
            and not isinstance(request, expected | dict)
        ):
            raise TypeError(
                f"request must be a {expected.__qualname__} (or its wire dict), "
                f"got {type(request).__name__}"
            )
        wire = _to_wire_dict(request, "request") or {}
        reply = self._proxy.send(Message("start", {"request": wire}), timeout=timeout)
        if _is_moved_reply(reply):
            self._repoint(reply)
            return self.status(timeout=timeout)
        return self._snapshot(reply)

    def status(self, timeout: float | None = None) -> TaskSnapshot[ResultT]:
        return self._snapshot(self._proxy.send(Message("status"), timeout=timeout))

    def wait(
        self, wait_timeout: float = 0.5, timeout: float | None = None
    ) -> TaskSnapshot[ResultT]:
        """Wait up to `wait_timeout` seconds for the task to be done; the snapshot says
        whether it is. `timeout` bounds the wait for the paglet's turn, as in `send`."""
        wait_timeout = _wait_timeout(wait_timeout)
        budget = (_DEFAULT_TIMEOUT if timeout is None else timeout) + wait_timeout
        reply = self._proxy.send(Message("wait", {"wait_timeout": wait_timeout}), timeout=budget)
        return self._snapshot(reply)

    def start_and_wait(
        self,
        request: RequestT | dict[str, Any] | None,
        wait_timeout: float = 0.5,
        timeout: float | None = None,
    ) -> TaskSnapshot[ResultT]:
        """`start`, then (unless already done) one `wait(wait_timeout)`."""
        snapshot = self.start(request, timeout=timeout)
        if snapshot.done:
            return snapshot
        return self.wait(wait_timeout, timeout=timeout)

    def wait_done(
        self, timeout: float = 30.0, *, wait_timeout: float = 0.5
    ) -> TaskSnapshot[ResultT]:
        """New: repeat `wait` until the task is done; `PagletTimeoutError` after `timeout`."""
        from paglets.core.errors import PagletTimeoutError

        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            snapshot = self.wait(max(0.0, min(wait_timeout, left)))
            if snapshot.done:
                return snapshot
            if time.monotonic() >= deadline:
                raise PagletTimeoutError(
                    f"task {self._proxy.agent_id!r} not done after {timeout}s "
                    f"(status {snapshot.status.value})"
                )

    def _repoint(self, reply: dict[str, Any]) -> None:
        from paglets.remote.proxy import PagletProxy

        old = self._proxy
        self._proxy = PagletProxy(str(reply["host_url"]), str(reply["agent_id"]), old.client)

    def _snapshot(self, reply: Any) -> TaskSnapshot[ResultT]:
        status = TaskStatusReply.from_wire(reply)
        result = _from_wire(self.result_type, status.result, "result")
        return TaskSnapshot(
            status=status.status,
            done=status.done,
            result=result,
            error=status.error,
            started_at=status.started_at,
            completed_at=status.completed_at,
            agent_id=status.agent_id,
            host_name=status.host_name,
            host_url=status.host_url,
        )
