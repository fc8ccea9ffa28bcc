"""Keep-alive HTTP/1.1 connections for `HostClient` (network.md §1.1).

One small pool of idle connections per (scheme, host, port). A request takes a connection
for itself, so the pool is thread-safe without holding a lock during I/O. A connection that
was kept alive may have been closed by the server in the meantime (its keep-alive timeout
is 75 s); the first write or read on it then fails at once, and the exchange is retried
once on a fresh connection. The retry re-sends the very same bytes, so a message keeps its
delivery id and a control call its `Idempotency-Key`: the server runs it at most once
(network.md §1.6).

The HTTP/1.1 client itself is a small one written for this hot path rather than
`http.client`: a request goes out in a single write (head and body together; `http.client`
sends them as two segments), and the response is read from a buffered reader kept with the
connection, without the `email` header parser. It speaks what a paglets host answers:
`Content-Length` or chunked bodies, keep-alive unless `Connection: close`.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from paglets.core.errors import PagletTimeoutError, RemoteHostError

__all__ = ["Body", "ConnectionPool", "Headers", "Response", "split_url"]

_Key = tuple[str, str, int]
_MAX_IDLE = 16  # idle connections kept per (scheme, host, port)
# A request body: bytes, or parts sent one after another (never joined when large).
Body = bytes | tuple[bytes, ...] | None
_JOIN_BELOW = 256 * 1024  # bodies up to this size go out in the same write as the head
_MAX_LINE = 65536
_MAX_HEADERS = 200
_split_cache: dict[str, tuple[_Key, str, str]] = {}


class Headers(dict[str, str]):
    """Response headers: a dict with lower-case keys, looked up case-insensitively."""

    __slots__ = ()

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


Response = tuple[int, Headers, bytes]


class _Dropped(ConnectionError):
    """The server closed the connection without answering."""


class _BadResponse(ConnectionError):
    """The answer is not HTTP/1.x as this client reads it."""


# Failures that mean "the server closed this kept-alive connection before we used it".
_STALE = (_Dropped, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


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


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the host running and listening there?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host name ({exc.strerror})"
    if isinstance(exc, _Dropped | _BadResponse):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


class _Connection:
    """One kept-alive HTTP/1.1 connection and the buffered reader of its answers."""

    __slots__ = ("host_header", "reader", "sock")

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
        self.reader = sock.makefile("rb", buffering=65536)
        shown = f"[{host}]" if ":" in host else host
        default = 443 if scheme == "https" else 80
        self.host_header = shown if port == default else f"{shown}:{port}"

    def exchange(
        self, method: str, path: str, body: Body, headers: Mapping[str, str]
    ) -> tuple[int, Headers, bytes, bool]:
        """Send one request, read its whole answer: `(status, headers, body, will_close)`.
        A tuple body is sent part by part, so a large one is never joined into a copy."""
        parts = body if isinstance(body, tuple) else () if body is None else (body,)
        size = sum(len(part) for part in parts)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"HTTP header {name!r} must not contain line breaks")
            lines.append(f"{name}: {value}")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {size}")
        lines.append("\r\n")
        head = "\r\n".join(lines).encode("latin-1")
        sock = self.sock
        if size <= _JOIN_BELOW:
            sock.sendall(head + b"".join(parts))
        else:
            sock.sendall(head)
            for part in parts:
                sock.sendall(part)
        return self._read(method)

    def _read(self, method: str) -> tuple[int, Headers, bytes, bool]:
        readline = self.reader.readline
        while True:
            line = readline(_MAX_LINE)
            if not line:
                raise _Dropped("the connection was closed before an answer came")
            parts = line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
                raise _BadResponse(f"not an HTTP/1.x answer: {line[:80]!r}")
            try:
                status = int(parts[1])
            except ValueError:
                raise _BadResponse(f"not an HTTP status line: {line[:80]!r}") from None
            headers = Headers()
            for _ in range(_MAX_HEADERS):
                line = readline(_MAX_LINE)
                if line in (b"\r\n", b"\n"):
                    break
                if not line:
                    raise _Dropped("the connection was closed in the middle of an answer")
                name, sep, value = line.decode("latin-1").partition(":")
                if not sep:
                    raise _BadResponse(f"malformed header line: {line[:80]!r}")
                key = name.strip().lower()
                value = value.strip()
                previous = dict.get(headers, key)
                dict.__setitem__(
                    headers, key, value if previous is None else f"{previous}, {value}"
                )
            else:
                raise _BadResponse(f"more than {_MAX_HEADERS} header lines")
            if 100 <= status < 200:
                continue  # an interim answer (we send no Expect, but be lenient)
            break
        connection = dict.get(headers, "connection", "").lower()
        will_close = "close" in connection or (
            parts[0] == b"HTTP/1.0" and "keep-alive" not in connection
        )
        if method == "HEAD" or status in (204, 304):
            return status, headers, b"", will_close
        if "chunked" in dict.get(headers, "transfer-encoding", "").lower():
            return status, headers, self._read_chunked(), will_close
        length = dict.get(headers, "content-length")
        if length is None:
            return status, headers, self.reader.read(), True
        try:
            size = int(length)
        except ValueError:
            raise _BadResponse(f"bad Content-Length {length!r}") from None
        data = self.reader.read(size) if size else b""
        if len(data) != size:
            raise _Dropped(f"the answer ended after {len(data)} of {size} bytes")
        return status, headers, data, will_close

    def _read_chunked(self) -> bytes:
        reader = self.reader
        parts: list[bytes] = []
        while True:
            line = reader.readline(_MAX_LINE)
            if not line:
                raise _Dropped("the connection was closed in the middle of a chunked answer")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadResponse(f"bad chunk size line: {line[:80]!r}") from None
            if size == 0:
                while reader.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            chunk = reader.read(size)
            if len(chunk) != size:
                raise _Dropped("the connection was closed in the middle of a chunk")
            parts.append(chunk)
            reader.readline(_MAX_LINE)  # the CRLF after the chunk

    def settimeout(self, timeout: float) -> None:
        self.sock.settimeout(timeout)

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.sock.close()


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
        body: Body,
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
                status, rheaders, data, will_close = conn.exchange(method, path, body, headers)
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
            except OSError as exc:
                conn.close()
                raise RemoteHostError(f"could not reach {base}: {_reason(exc)}") from None
            except BaseException:
                conn.close()
                raise
            if will_close:
                conn.close()
            else:
                self._give(key, conn)
            return status, rheaders, data
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close every idle connection (busy ones close when their request ends)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
