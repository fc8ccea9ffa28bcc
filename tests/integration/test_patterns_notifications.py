"""NotificationMixin.notify_user_info on a real host: best effort, never raises."""

from __future__ import annotations

import pytest

from paglets import Host, Message
from paglets.core.agent import Paglet, PagletContext
from support import pattern_models as pm


def _has_service_helpers() -> bool:
    return hasattr(PagletContext, "lookup_service") and hasattr(Paglet, "advertise_service")


def test_without_a_user_info_service_it_returns_false(host: Host) -> None:
    notifier = host.create(pm.Notifier)
    assert notifier.send(Message("notify", {"title": "hello", "timeout": 0.5})) is False
    assert notifier.send(Message("notify", {"severity": "nonsense"})) is False


@pytest.mark.skipif(not _has_service_helpers(), reason="service lookup helpers not there yet")
def test_a_user_info_provider_receives_the_notification(host: Host) -> None:
    pm.NOTIFICATIONS.clear()
    host.create(pm.FakeUserInfo)
    notifier = host.create(pm.Notifier)
    sent = notifier.send(
        Message(
            "notify",
            {
                "severity": "warning",
                "title": "t",
                "text": "m",
                "job_id": "j1",
                "metadata": {"k": 1},
            },
        )
    )
    assert sent is True
    (received,) = pm.NOTIFICATIONS
    assert received["severity"] == "warning" and received["title"] == "t"
    assert received["message"] == "m" and received["job_id"] == "j1"
    assert received["source_agent_id"] == notifier.agent_id
    assert received["metadata"] == {"k": 1}
