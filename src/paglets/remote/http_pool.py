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
_JOIN_BELOW = 256 * 1024  # bodies up to this size go out in the same write as the head
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


class _Connection:
    """One kept-alive HTTP/1.1 connection. A request goes out in a single `sendall` (head
    and small body together: `http.client` sends them as two segments, which costs a
    round of TCP scheduling per call); the response is parsed by `http.client`."""

    __slots__ = ("host_header", "sock")

    def __init__(
        self, key: _Key, timeout: float, ssl_context: ssl.SSLContext | None, base: str
    ) -> None:
        scheme, host, port = key
        try:
            sock = socket.create_connection((host, port), timeout)
        except TimeoutError:
            raise RemoteHostError(
                f"could not reach {base}: no connection within {timeout:g}s"
            ) from None
        except OSError as exc:
            raise RemoteHostError(f"could not reach {base}: {_reason(exc)}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                context = ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise RemoteHostError(f"could not reach {base}: {_reason(exc)}") from None
        self.sock = sock
        shown = f"[{host}]" if ":" in host else host
        default = 443 if scheme == "https" else 80
        self.host_header = shown if port == default else f"{shown}:{port}"

    def exchange(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[http.client.HTTPResponse, bytes]:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"HTTP header {name!r} must not contain line breaks")
            lines.append(f"{name}: {value}")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {0 if body is None else len(body)}")
        lines.append("\r\n")
        head = "\r\n".join(lines).encode("latin-1")
        sock = self.sock
        if body and len(body) <= _JOIN_BELOW:
            sock.sendall(head + body)
        else:
            sock.sendall(head)
            if body:
                sock.sendall(body)
        response = http.client.HTTPResponse(sock, method=method)  # type: ignore[arg-type]
        response.begin()
        return response, response.read()

    def settimeout(self, timeout: float) -> None:
        self.sock.settimeout(timeout)

    def close(self) -> None:
        self.sock.close()


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
        self._idle: dict[_Key, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _take(self, key: _Key, timeout: float, base: str) -> tuple[_Connection, bool]:
        with self._lock:
            idle = self._idle.get(key)
            conn = idle.pop() if idle else None
        if conn is not None:
            conn.settimeout(timeout)
            return conn, True
        return _Connection(key, timeout, self._ssl_context, base), False

    def _give(self, key: _Key, conn: _Connection) -> None:
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
            conn, reused = self._take(key, timeout, base)
            try:
                response, data = conn.exchange(method, path, body, headers)
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
            except BaseException:
                conn.close()
                raise
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
