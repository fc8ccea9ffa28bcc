"""The hosts running in this Python process, by URL.

A proxy whose URL belongs to one of them calls that host directly: no HTTP, no encoding
of the state (architecture §8).
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paglets.runtime.host import Host

_hosts: weakref.WeakValueDictionary[str, Host] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def normalise_url(url: str) -> str:
    url = url.strip().rstrip("/")
    return url.replace("://localhost:", "://127.0.0.1:")


def register(url: str, host: Host) -> None:
    with _lock:
        _hosts[normalise_url(url)] = host


def unregister(url: str, host: Host) -> None:
    with _lock:
        key = normalise_url(url)
        if _hosts.get(key) is host:
            del _hosts[key]


def lookup(url: str) -> Host | None:
    return _hosts.get(normalise_url(url))
