"""How a system service paglet reaches its own host.

System services are part of paglets and run in the host process (`ISOLATION = "host"`),
so they may use the host's internals that ordinary paglets never see (the membership
table, the resource monitor, the event log). This is the one place that reaches past the
paglet's scoped context, so the coupling is easy to find.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from paglets.core.errors import HostError

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["host_of"]


def host_of(paglet: Any) -> Host:
    """The `Host` a system service paglet runs on (`HostError` outside a host process)."""
    host = getattr(paglet.context, "_host", None)
    if host is None or not hasattr(host, "events"):
        raise HostError(
            f"{type(paglet).__qualname__} is a system service and must run in the host "
            "process (ISOLATION = 'host')"
        )
    return host
