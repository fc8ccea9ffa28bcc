"""Paglets for the pattern tests (importable by `module:qualname`, as hosts require)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paglets import Message, Paglet, PagletState
from paglets.core.events import CreationEvent
from paglets.examples.patterns import HostSurvey, SurveyState
from paglets.patterns.notifications import NotificationMixin

NOTIFICATIONS: list[dict[str, Any]] = []  # what FakeUserInfo received


@dataclass
class QuietSurveyState(SurveyState):
    quiet_hosts: list[str] = field(default_factory=list)


class QuietSurvey(HostSurvey):
    """A survey whose children on `quiet_hosts` never report (to test the deadline)."""

    State = QuietSurveyState

    def handle_message(self, message: Message) -> Any:
        if message.kind == "quiet":
            with self.locked_state() as state:
                state.quiet_hosts = list(message.get_arg("hosts") or [])
            return True
        if message.kind == "move-deadline":  # tests cannot wait 30 s for a deadline
            with self.locked_state() as state:
                state.deadline = float(message.get_arg("deadline"))
            return True
        return super().handle_message(message)

    def should_report(self) -> bool:
        return self.state.target_host_name not in self.state.quiet_hosts


@dataclass
class NotifierState(PagletState):
    sent: int = 0


class Notifier(NotificationMixin, Paglet[NotifierState]):
    State = NotifierState

    def handle_message(self, message: Message) -> Any:
        if message.kind == "notify":
            return self.notify_user_info(
                message.get_arg("severity", "info"),
                message.get_arg("title", "title"),
                message.get_arg("text", "text"),
                job_id=message.get_arg("job_id", ""),
                timeout=float(message.get_arg("timeout", 2.0)),
                metadata=message.get_arg("metadata"),
            )
        return self.not_handled()


@dataclass
class FakeUserInfoState(PagletState):
    count: int = 0


class FakeUserInfo(Paglet[FakeUserInfoState]):
    """Advertises itself as `user-info` (capability `notify`) and records notifications."""

    State = FakeUserInfoState

    def on_creation(self, event: CreationEvent) -> None:
        self.advertise_service("user-info", capabilities=["notify"])  # type: ignore[attr-defined]

    def handle_message(self, message: Message) -> Any:
        if message.kind == "notify":
            NOTIFICATIONS.append(dict(message.args))
            self.state.count += 1
            return {}
        return self.not_handled()
