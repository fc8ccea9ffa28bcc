"""A client's peer sockets: one per host, opened on first use, shared by every thread
(`peer_socket` is the connection itself).

A host that refuses the upgrade is reached over HTTP for a while: for a minute when the
answer says it has no peer socket at all (an older host, a proxy in the way), for a few
seconds when it refused for another reason (the key, the failure throttle, a host that is
stopping). A host that cannot be reached at all gets no socket either, so that the HTTP
attempt reports the failure in its usual words.

A child process made by `fork` inherits the parent's connections but must never write on
them (its frames would interleave with the parent's): it forgets them, without closing
them, and opens its own.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

import msgspec

from paglets.remote.http_pool import split_url
from paglets.remote.peer_socket import PeerSocket, PostReplied, PostsLost, SocketRefused

__all__ = ["PeerSockets"]

REFUSED_SECONDS = 60.0  # a host (or proxy) without the peer socket: HTTP for this long
RETRY_SECONDS = 5.0  # an upgrade refused for another reason (key, throttle, draining)
_NO_SOCKET = frozenset({400, 404, 405, 426, 501})

_registries: weakref.WeakSet[PeerSockets] = weakref.WeakSet()


class PeerSockets:
    """A client's peer sockets, one per host (by scheme, address and path prefix).

    `get(url)` returns a usable connection, opening it if needed, or None when this host
    is to be reached over HTTP (it refused the upgrade recently, or it cannot be reached at
    all: then HTTP reports the failure in its usual words)."""

    def __init__(
        self,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext | None,
        timeout: float,
        on_post_reply: PostReplied,
        on_posts_lost: PostsLost,
    ) -> None:
        self._headers = dict(headers)
        self._ssl_context = ssl_context
        self._timeout = timeout
        self._on_post_reply = on_post_reply
        self._on_posts_lost = on_posts_lost
        self._conns: dict[Any, PeerSocket] = {}
        self._refused: dict[Any, float] = {}
        self._opening: dict[Any, threading.Lock] = {}
        self._lock = threading.Lock()
        self._closed = False
        _registries.add(self)

    def _forget(self) -> None:
        """In a forked child: the parent's connections are not ours to use or close."""
        self._conns = {}
        self._opening = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> PeerSocket | None:
        split = split_url(url)
        key = (split[0], split[1])
        conn = self._conns.get(key)
        if conn is not None and conn.usable:
            return conn
        until = self._refused.get(key)
        if until is not None and until > time.monotonic():
            return None
        with self._lock:
            if self._closed:
                return None
            opening = self._opening.setdefault(key, threading.Lock())
        with opening:  # one connect per host at a time; the others then share it
            conn = self._conns.get(key)
            if conn is not None and conn.usable:
                return conn
            if conn is not None:
                conn.close()
            try:
                conn = PeerSocket(
                    split[2] + split[1].partition("?")[0],
                    self._headers,
                    self._ssl_context,
                    self._timeout,
                    self._on_post_reply,
                    self._on_posts_lost,
                )
            except SocketRefused as refused:
                wait = REFUSED_SECONDS if refused.status in _NO_SOCKET else RETRY_SECONDS
                self._refused[key] = time.monotonic() + wait
                return None
            except (OSError, ValueError, msgspec.MsgspecError):
                return None
            with self._lock:
                if self._closed:
                    conn.close()
                    return None
                self._conns[key] = conn
            return conn

    def flush(self, timeout: float | None) -> bool:
        """Wait for the acknowledgement of every pipelined message on every connection."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for conn in list(self._conns.values()):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ok = conn.flush(left) and ok
        return ok

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()


def _after_fork_in_child() -> None:
    for registry in list(_registries):
        registry._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
