"""Keep-alive HTTP/1.1 connections for `HostClient` (network.md §1.1).

One small pool of idle `http.client` connections per (scheme, host, port). A request takes a
connection for itself, so the pool is thread-safe without holding a lock during I/O. A
connection that was kept alive may have been closed by the server in the meantime (its
keep-alive timeout is 75 s); the first write or read on it then fails at once, and the
exchange is retried once on a fresh connection. The retry re-sends the very same bytes, so
a message keeps its delivery id and a control call its `Idempotency-Key`: the server runs
it at most once (network.md §1.6).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

from paglets.core.errors import PagletTimeoutError, RemoteHostError

__all__ = ["ConnectionPool", "Response", "split_url"]

Response = tuple[int, http.client.HTTPMessage, bytes]
_Key = tuple[str, str, int]

# Failures that mean "the server closed this kept-alive connection before we used it".
_STALE = (
    http.client.RemoteDisconnected,
    http.client.BadStatusLine,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)
_MAX_IDLE = 16  # idle connections kept per (scheme, host, port)
_split_cache: dict[str, tuple[_Key, str, str]] = {}


def split_url(url: str) -> tuple[_Key, str, str]:
    """`(scheme, host, port)`, the request path (with any public-URL prefix and the query)
    and the base URL to name in errors. Cached: the same few hosts are called again and
    again."""
    cached = _split_cache.get(url)
    if cached is not None:
        return cached
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise RemoteHostError(
            f"could not reach {url}: not an http(s) URL; host URLs look like "
            "'http://127.0.0.1:8765' or 'https://gw.example.org/paglets'"
        )
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise RemoteHostError(f"could not reach {url}: the port is not a number") from None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    base = f"{scheme}://{parts.netloc}"
    result = ((scheme, parts.hostname, port), path, base)
    if len(_split_cache) < 4096:
        _split_cache[url] = result
    return result


class _HTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        # Small request/response pairs: never wait for Nagle.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _HTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the host running and listening there?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host name ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


class ConnectionPool:
    """Idle keep-alive connections by (scheme, host, port); see the module docstring."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _take(self, key: _Key, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(key)
            conn = idle.pop() if idle else None
        if conn is not None:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            return conn, True
        scheme, host, port = key
        if scheme == "https":
            context = self._ssl_context or ssl.create_default_context()
            return _HTTPSConnection(host, port, timeout=timeout, context=context), False
        return _HTTPConnection(host, port, timeout=timeout), False

    def _give(self, key: _Key, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                idle = self._idle.setdefault(key, [])
                if len(idle) < _MAX_IDLE:
                    idle.append(conn)
                    return
        conn.close()

    def exchange(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> Response:
        """One request and its whole response. Connection failures raise `RemoteHostError`
        ("could not reach <url>: <reason>"), a silent server `PagletTimeoutError`."""
        key, path, base = split_url(url)
        timeout = max(0.001, timeout)
        for attempt in (0, 1):
            conn, reused = self._take(key, timeout)
            try:
                conn.request(method, path, body=body, headers=dict(headers))
                response = conn.getresponse()
                data = response.read()
            except TimeoutError:
                conn.close()
                raise PagletTimeoutError(
                    f"{method} {url}: no answer from {base} within {timeout:g}s"
                ) from None
            except _STALE as exc:
                conn.close()
                if reused and attempt == 0:
                    continue
                raise RemoteHostError(f"could not reach {base}: {_reason(exc)}") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise RemoteHostError(f"could not reach {base}: {_reason(exc)}") from None
            if response.will_close:
                conn.close()
            else:
                self._give(key, conn)
            return response.status, response.headers, data
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close every idle connection (busy ones close when their request ends)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
