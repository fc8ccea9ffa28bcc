"""Notifications for the person who started the work, through the `user-info` service.

`notify_user_info` is best effort by design: a paglet reporting progress must never fail
because nobody listens, so it never raises and returns `False` when the notification could
not be handed over (no service layer, no `user-info` provider, a timeout, any error).

The call is defined by the service's **name and operation**, not by a contract object:
contract `"user-info"` (version `"1"`), operation `"notify"`, request `UserInfoRequest`
(`jobs.md` §6). The provider is found with the context's `lookup_service("user-info",
capability="notify", scope=...)` and sent `Message("notify", <UserInfoRequest wire>)`,
which is exactly what `ServiceHandle.call(NOTIFY, UserInfoRequest(...))` puts on the wire
(`ServiceOperation.to_message` = `Message(name, encoded request)`). So this works with any
provider of that contract, whichever module defines its request class.
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum
from typing import Any

from paglets.core.messages import Message
from paglets.core.runtime_values import ServiceScope, enum_from_wire

__all__ = [
    "USER_INFO_CONTRACT",
    "USER_INFO_NOTIFY",
    "NotificationMixin",
    "NotificationSeverity",
    "user_info_request",
]

_log = logging.getLogger(__name__)

USER_INFO_CONTRACT = "user-info"
USER_INFO_NOTIFY = "notify"


class NotificationSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def user_info_request(
    severity: NotificationSeverity | str,
    title: str,
    message: str,
    *,
    source_agent_id: str = "",
    job_id: str = "",
    metadata: dict[str, Any] | None = None,
    timestamp: float | None = None,
) -> dict[str, Any]:
    """The wire form of a `user-info` `notify` request (`UserInfoRequest`, `jobs.md` §6)."""
    level = enum_from_wire(NotificationSeverity, severity, "severity")
    return {
        "severity": level.value,
        "title": str(title),
        "message": str(message),
        "source_agent_id": source_agent_id,
        "job_id": job_id or "",
        "timestamp": time.time() if timestamp is None else float(timestamp),
        "metadata": dict(metadata or {}),
    }


def _start_resident_provider(context: Any, ref: Any) -> Any:
    """A lazy resident provider (the built-in `user-info`) that has not run yet on this
    host: ask the host to start it, then return its proxy (None if that is not possible)."""
    from paglets.services.handles import owner_call

    try:
        owner_call(
            ref.host_url, None, "ensure", "/services/resident/ensure", {"agent_id": ref.agent_id}
        )
    except Exception:
        return None
    return context.get_proxy(ref.agent_id, ref.host_url)


class NotificationMixin:
    """Adds `notify_user_info` to a paglet."""

    def notify_user_info(
        self,
        severity: NotificationSeverity | str,
        title: str,
        message: str,
        *,
        job_id: str = "",
        timeout: float = 2.0,
        scope: ServiceScope = ServiceScope.MESH,
        metadata: dict[str, Any] | None = None,
    ) -> bool:
        """Hand a notification to the `user-info` service; True once it accepted it.

        Never raises: False when the service layer or a provider is missing, or on any
        error (logged at debug level).
        """
        try:
            return self._notify_user_info(
                severity, title, message, job_id, timeout, scope, metadata
            )
        except Exception:
            _log.debug("user-info notification %r not delivered", title, exc_info=True)
            return False

    def _notify_user_info(
        self,
        severity: NotificationSeverity | str,
        title: str,
        message: str,
        job_id: str,
        timeout: float,
        scope: ServiceScope,
        metadata: dict[str, Any] | None,
    ) -> bool:
        context = getattr(self, "_context", None)
        if context is None or getattr(self, "departed", False):
            return False
        try:  # the service layer is optional here: imported only when used
            import paglets.services  # noqa: F401
        except ImportError:
            return False
        lookup = getattr(context, "lookup_service", None)
        if lookup is None:
            return False
        found = lookup(USER_INFO_CONTRACT, capability=USER_INFO_NOTIFY, scope=scope)
        if found is None:
            return False
        ref = getattr(found, "proxy", found)  # a ServiceRecord or a PagletProxyRef
        proxy = context.get_proxy(ref.agent_id, ref.host_url)
        if proxy is None:
            proxy = _start_resident_provider(context, ref)
        if proxy is None:
            return False
        payload = user_info_request(
            severity,
            title,
            message,
            source_agent_id=str(getattr(self, "agent_id", "")),
            job_id=job_id,
            metadata=metadata,
        )
        proxy.send(Message(USER_INFO_NOTIFY, payload), timeout=timeout)
        return True
