"""Small paglets built on `paglets.patterns`, used by docs/patterns.md and the tests.

They live in an importable module because a host loads a paglet's class by
`module:qualname` (classes defined in a script's `__main__` cannot move or be created).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paglets import Message, Paglet
from paglets.core.events import MobilityEvent
from paglets.patterns.coordination import FANOUT_CHILD_DONE, MeshFanoutMixin, MeshFanoutState
from paglets.patterns.tasks import TaskPaglet, TaskState, TaskStatus

__all__ = [
    "HopRequest",
    "HopResult",
    "HoppingTask",
    "HostSurvey",
    "ManualTask",
    "SquareRequest",
    "SquareResult",
    "SquareTask",
    "SurveyState",
]


# -- a task that finishes inside "start" ---------------------------------------------------


@dataclass
class SquareRequest:
    n: int = 0


@dataclass
class SquareResult:
    square: int = 0


class SquareTask(TaskPaglet[SquareRequest, SquareResult, TaskState]):
    """Squares `n`; a negative `n` fails the task."""

    State = TaskState
    Request = SquareRequest
    Result = SquareResult

    def run_task(self, request: SquareRequest) -> SquareResult:
        if request.n < 0:
            raise ValueError(f"n must be >= 0, got {request.n}")
        return SquareResult(square=request.n * request.n)


# -- a task finished later, by a message ---------------------------------------------------


class ManualTask(TaskPaglet[dict[str, Any], dict[str, Any], TaskState]):
    """`run_task` returns `None`, so the task stays `RUNNING` until a `"finish"` message
    (`{"value": ...}`) completes it or `"give-up"` (`{"reason": ...}`) fails it."""

    State = TaskState

    def run_task(self, request: dict[str, Any]) -> None:
        return None

    def handle_task_message(self, message: Message) -> Any:
        if message.kind == "finish":
            self.complete_task({"value": message.get_arg("value")})
            return True
        if message.kind == "give-up":
            self.fail_task(str(message.get_arg("reason", "given up")))
            return True
        return None


# -- a task that moves itself --------------------------------------------------------------


@dataclass
class HopRequest:
    target: str = ""


@dataclass
class HopResult:
    host_name: str = ""


class HoppingTask(TaskPaglet[HopRequest, HopResult, TaskState]):
    """Moves to `target` and completes there, in `on_arrival`; `start` replies with the new
    location and a `TaskClient` follows it."""

    State = TaskState
    Request = HopRequest
    Result = HopResult

    def run_task(self, request: HopRequest) -> Any:
        self.set_task_status(TaskStatus.WAITING_FOR_ARRIVAL)
        return self.dispatch_to(request.target)

    def on_arrival(self, event: MobilityEvent) -> None:
        if self.state.status is TaskStatus.WAITING_FOR_ARRIVAL:
            self.complete_task(HopResult(host_name=self.context.name))


# -- a fan-out over the mesh ---------------------------------------------------------------


@dataclass
class SurveyState(MeshFanoutState):
    # host name -> what that host's child reported
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)


class HostSurvey(MeshFanoutMixin, Paglet[SurveyState]):
    """Clones itself to hosts of the mesh; each child reports its host's paglet count
    from `run()` and disposes itself; the parent collects the reports.

    Messages (to the parent): `"survey"` `{targets: [names] | None, timeout, include_self}`
    -> the selected host names; `"report"` -> `{pending, done, errors, reports}`;
    `"expire"` -> hosts given up on (only after the deadline); `"cleanup"` -> hosts whose
    child is gone.
    """

    State = SurveyState
    state: SurveyState

    def handle_message(self, message: Message) -> Any:
        kind = message.kind
        if kind == "survey":
            self.fanout_reset(timeout=float(message.get_arg("timeout", 30.0)))
            with self.locked_state() as state:
                state.reports = {}
            hosts = self.fanout_select_hosts(
                message.get_arg("targets"),
                include_self=bool(message.get_arg("include_self", False)),
            )
            for host in hosts:
                self.fanout_clone_to(host)
            return [h.name for h in hosts]
        if kind == FANOUT_CHILD_DONE:
            host = str(message.get_arg("host"))
            with self.locked_state() as state:
                state.reports[host] = dict(message.get_arg("report") or {})
            return self.fanout_record_child_done(host)
        if kind == "report":
            state = self.state
            return {
                "pending": list(state.pending_hosts),
                "done": list(state.done_hosts),
                "errors": dict(state.errors),
                "reports": dict(state.reports),
            }
        if kind == "expire":
            return self.fanout_expire_pending()
        if kind == "cleanup":
            return self.fanout_cleanup_children()
        return self.not_handled()

    def survey_report(self) -> dict[str, Any]:
        """What a child reports about its host (override for other surveys)."""
        return {"active_count": self.context.host.health()["active_count"]}

    def should_report(self) -> bool:
        return True

    def run(self) -> None:
        # run() starts after every incarnation: only a fresh child reports, once.
        if not self.fanout_is_child() or not self.should_report():
            return
        self.fanout_notify_parent({"report": self.survey_report()})
        self.dispose()
