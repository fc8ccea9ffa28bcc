"""The client side of the peer socket: one persistent WebSocket per host, shared by every
thread of a `HostClient` (network.md §1.1; the frames are described in
`paglets.runtime.peer_socket`).

Reading without a reader thread. A library WebSocket client reads on a thread of its own
and hands each reply to the waiting caller: a thread hand-off (~75 µs) per message. Here
the first caller that waits for a reply becomes the *leader*: it reads frames, hands the
other callers' replies to them (each parks on a lock of its own), and when its own reply
has come it passes the role to a parked caller. A lone sender therefore reads its reply on
its own thread. Pipelined one-way messages (`post`) are acknowledged by the host in
batches; while some are unacknowledged and no caller leads, a per-connection *drainer*
thread reads.

Failures. A frame that could not be written was not received: the caller may send it again
anywhere. A connection lost after the frame was written leaves the outcome unknown; the
caller reconnects, and resends under the same delivery id only to the same `boot` of the
host (which still remembers every delivery id it saw, so it cannot run the message twice),
else reports the outcome as unknown (`RemoteHostError`). `SocketRefused` means the host (or
a proxy in front of it) does not speak the peer socket: the registry (`peer_registry`)
remembers that for a while, and the caller uses HTTP.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import random
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from paglets.core.errors import RemoteHostError, error_from_wire
from paglets.remote.http_pool import split_url
from paglets.remote.peer_frames import Acks, Fault, Reply, Welcome, decode_host_frame, encode
from paglets.remote.ws_frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    FrameError,
    FrameReader,
    accept_key,
    encode_frame,
)

__all__ = ["PeerSocket", "PendingPost", "PostReplied", "PostsLost", "SocketLost", "SocketRefused"]

RECV_BYTES = 65536
MAX_HEAD = 65536
DRAIN_SLICE = 0.5  # a reading drainer looks at its work this often
READ_SLICE = 0.05  # a blocking read returns this often to look at its caller's deadline
_MAX_INCOMING = 256 * 1024 * 1024  # replies may be large (a state snapshot); the host bounds them


class SocketRefused(Exception):
    """The upgrade was answered without a `101` (an older host, a proxy): use HTTP.
    `status` is the HTTP status of the answer (0 if it was not HTTP)."""

    def __init__(self, reason: str, status: int = 0) -> None:
        super().__init__(reason)
        self.status = status


class SocketLost(Exception):
    """The connection broke. `written`: the frame had been written (the host may have
    acted on it); `boot`: the host process that connection reached."""

    def __init__(self, reason: str, *, written: bool, boot: str) -> None:
        super().__init__(reason)
        self.written = written
        self.boot = boot


class PendingPost:
    """A pipelined one-way message not yet acknowledged: enough to resend or report it."""

    __slots__ = ("activate", "agent_id", "durable", "msg", "no_delay")

    def __init__(
        self, agent_id: str, msg: msgspec.Raw, activate: bool, no_delay: bool, durable: bool
    ) -> None:
        self.agent_id = agent_id
        self.msg = msg
        self.activate = activate
        self.no_delay = no_delay
        self.durable = durable


class _Call:
    """A caller waiting for its reply. `lock` is held while it waits parked; releasing it
    wakes the caller (its reply came, or it is to lead)."""

    __slots__ = ("done", "lock", "parked", "reply")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.done = False
        self.parked = False
        self.reply: Any = None


# What the owner of the sockets is told about pipelined messages that did not go well.
PostReplied = Callable[["PeerSocket", PendingPost, Reply], None]
PostsLost = Callable[["PeerSocket", list[PendingPost], BaseException], None]


class PeerSocket:
    """One multiplexed WebSocket to one host; see the module docstring. Thread-safe."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext | None,
        timeout: float,
        on_post_reply: PostReplied,
        on_posts_lost: PostsLost,
    ) -> None:
        self.url = url.rstrip("/")
        self.boot = ""
        self.host_id = ""
        self.name = ""
        self.max_frame = 0
        self._on_post_reply = on_post_reply
        self._on_posts_lost = on_posts_lost
        self._frames = FrameReader(_MAX_INCOMING)
        self._sock = self._open(headers, ssl_context, timeout)
        self._tls = isinstance(self._sock, ssl.SSLSocket)
        if not self._tls:
            # Blocking calls bounded by the kernel (one syscall per read or write, where
            # Python's own timeouts add a poll to each); TLS keeps Python's timeouts.
            self._sock.settimeout(None)
            _set_timeouts(self._sock, send=max(1.0, timeout), receive=READ_SLICE)
        self._poll = select.poll()
        self._poll.register(self._sock.fileno(), select.POLLIN)
        self._rng = random.Random(os.urandom(16))
        self._wlock = threading.Lock()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending: dict[int, _Call] = {}
        self._posts: dict[int, PendingPost] = {}
        self._reading = False
        self._broken: BaseException | None = None
        self._closing = False
        self._ids = itertools.count(1)
        self._drainer: threading.Thread | None = None

    # -- opening ---------------------------------------------------------------------------

    def _open(
        self, headers: Mapping[str, str], ssl_context: ssl.SSLContext | None, timeout: float
    ) -> socket.socket:
        (scheme, host, port), path, base = split_url(self.url)
        sock: socket.socket = socket.create_connection((host, port), timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = (ssl_context or ssl.create_default_context()).wrap_socket(
                    sock, server_hostname=host
                )
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            shown = f"[{host}]" if ":" in host else host
            default = 443 if scheme == "https" else 80
            lines = [
                f"GET {path.partition('?')[0].rstrip('/')}/peer/ws HTTP/1.1",
                f"Host: {shown if port == default else f'{shown}:{port}'}",
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Key: {key}",
                "Sec-WebSocket-Version: 13",
            ]
            lines.extend(f"{name}: {value}" for name, value in headers.items())
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            self._read_upgrade(sock, key, base)
            welcome = self._read_welcome(sock, base)
        except (FrameError, msgspec.MsgspecError) as exc:
            sock.close()
            raise SocketRefused(f"{base} did not speak the peer socket: {exc}") from None
        except BaseException:
            sock.close()
            raise
        self.boot = welcome.boot
        self.host_id = welcome.host_id
        self.name = welcome.name
        self.max_frame = welcome.max_frame
        return sock

    def _read_upgrade(self, sock: socket.socket, key: str, base: str) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(RECV_BYTES)
            if not chunk:
                raise SocketRefused(
                    f"{base} closed the connection instead of answering the upgrade"
                )
            data += chunk
            if len(data) > MAX_HEAD:
                raise SocketRefused(f"{base} answered the upgrade with an oversized head")
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(None, 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status != 101:
            raise SocketRefused(f"{base} answered GET /peer/ws with HTTP {status}", status)
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if fields.get("sec-websocket-accept") != accept_key(key):
            raise SocketRefused(f"{base} answered the upgrade with a wrong Sec-WebSocket-Accept")
        self._frames.feed(rest)

    def _read_welcome(self, sock: socket.socket, base: str) -> Welcome:
        while True:
            item = self._frames.next()
            if item is not None:
                opcode, data = item
                frame = decode_host_frame(data) if opcode == OP_BINARY else None
                if not isinstance(frame, Welcome):
                    raise SocketRefused(f"{base} did not start the peer socket with 'welcome'")
                return frame
            chunk = sock.recv(RECV_BYTES)
            if not chunk:
                raise SocketRefused(f"{base} closed the peer socket before its welcome")
            self._frames.feed(chunk)

    # -- state ---------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self._broken is None and not self._closing

    # -- sending ---------------------------------------------------------------------------

    def _write(self, payload: bytes) -> None:
        data = encode_frame(payload, mask=self._rng.randbytes(4))
        with self._wlock:
            self._sock.sendall(data)

    def request(self, frame: dict[str, Any], wait: float) -> Reply:
        """Send a `send` frame (its `id` is set here) and return the host's `Reply`.

        Raises `SocketLost` if the connection breaks (see the module docstring) and
        `TimeoutError` when no reply came within `wait` seconds."""
        self._refresh()
        rid = frame["id"] = next(self._ids)
        data = encode(frame)
        call = _Call()
        with self._lock:
            if self._broken is not None or self._closing:
                raise SocketLost("the connection is closed", written=False, boot=self.boot)
            self._pending[rid] = call
        try:
            self._write(data)
        except OSError as exc:
            with self._lock:
                self._pending.pop(rid, None)
            self._break(exc)
            raise SocketLost(f"writing failed ({exc})", written=False, boot=self.boot) from None
        return self._wait(rid, call, time.monotonic() + wait)

    def push(self, frame: dict[str, Any]) -> None:
        """Write a frame that gets no answer at all (a mesh frame). Raises
        `SocketLost(written=False)` if it could not be written."""
        self._refresh()
        data = encode(frame)
        with self._lock:
            if self._broken is not None or self._closing:
                raise SocketLost("the connection is closed", written=False, boot=self.boot)
        try:
            self._write(data)
        except OSError as exc:
            self._break(exc)
            raise SocketLost(f"writing failed ({exc})", written=False, boot=self.boot) from None

    def post(self, frame: dict[str, Any], pending: PendingPost) -> None:
        """Write a `post` frame (its `id` is set here) and return; the acknowledgement is
        collected later. Raises `SocketLost(written=False)` if it could not be written."""
        self._refresh()
        rid = frame["id"] = next(self._ids)
        data = encode(frame)
        with self._lock:
            if self._broken is not None or self._closing:
                raise SocketLost("the connection is closed", written=False, boot=self.boot)
            self._posts[rid] = pending
            if not self._reading:
                self._wake_drainer()
        try:
            self._write(data)
        except OSError as exc:
            with self._lock:
                self._posts.pop(rid, None)
            self._break(exc)
            raise SocketLost(f"writing failed ({exc})", written=False, boot=self.boot) from None

    def _refresh(self) -> None:
        """Before writing on a connection nobody is reading: take in what already arrived.
        A host that closed the connection (it stopped, or restarted) while it sat idle is
        noticed here, before the frame is written: the caller then sends it on a fresh
        connection without wondering whether the old one ran it."""
        if self._reading:
            return
        with self._lock:  # the reader role: a poll object is not for two threads at once
            if self._reading or self._broken is not None:
                return
            self._reading = True
        try:
            if self._poll.poll(0) and self._fill(time.monotonic()):
                while self._broken is None:
                    item = self._frames.next()
                    if item is None:
                        break
                    self._dispatch(item)
        except FrameError as exc:
            self._break(RemoteHostError(f"{self.url} broke the WebSocket framing: {exc}"))
        except (OSError, ValueError) as exc:
            self._break(exc)
        finally:
            self._pass_role()
        if self._broken is not None:
            raise SocketLost(str(self._broken), written=False, boot=self.boot)

    def _wake_drainer(self) -> None:
        # Called with the lock held.
        if self._drainer is None:
            self._drainer = threading.Thread(
                target=self._drain, name=f"paglets-peer-acks {self.url}", daemon=True
            )
            self._drainer.start()
        self._cond.notify_all()

    # -- waiting and reading -----------------------------------------------------------

    def _wait(self, rid: int, call: _Call, deadline: float) -> Reply:
        while True:
            with self._lock:
                if call.done:
                    break
                lead = not self._reading
                if lead:
                    self._reading = True
                else:
                    call.parked = True
            if lead:
                try:
                    self._lead(call, deadline)
                finally:
                    self._pass_role()
                if call.done:
                    break
                if time.monotonic() < deadline:
                    continue
            else:
                remaining = deadline - time.monotonic()
                if remaining > 0 and call.lock.acquire(timeout=remaining):
                    continue
            with self._lock:
                if call.done:
                    break
                self._pending.pop(rid, None)
                call.parked = False
            raise TimeoutError
        reply = call.reply
        if isinstance(reply, SocketLost):
            raise SocketLost(str(reply), written=True, boot=self.boot)
        return reply

    def _lead(self, call: _Call, deadline: float) -> None:
        frames = self._frames
        while not call.done:
            try:
                item = frames.next()
            except FrameError as exc:
                self._break(RemoteHostError(f"{self.url} broke the WebSocket framing: {exc}"))
                return
            if item is None:
                if not self._fill(deadline):
                    return
            else:
                self._dispatch(item)

    def _fill(self, deadline: float) -> bool:
        """Read more bytes; False if none came before `deadline` (which plain sockets notice
        within `READ_SLICE`)."""
        sock = self._sock
        try:
            if not self._tls:
                while True:
                    try:
                        chunk = sock.recv(RECV_BYTES)
                        break
                    except BlockingIOError:  # the receive timeout: nothing yet
                        if time.monotonic() >= deadline:
                            return False
            else:
                if not sock.pending():  # type: ignore[attr-defined]
                    ms = int((deadline - time.monotonic()) * 1000) + 1
                    if ms <= 0 or not self._poll.poll(ms):
                        return False
                chunk = sock.recv(RECV_BYTES)
        except TimeoutError:
            return False
        except (OSError, ValueError) as exc:  # reset, or closed meanwhile
            self._break(exc)
            return True
        if not chunk:
            self._break(RemoteHostError(f"{self.url} closed the peer socket"))
            return True
        self._frames.feed(chunk)
        return True

    def _dispatch(self, item: tuple[int, bytes]) -> None:
        opcode, data = item
        if opcode != OP_BINARY:
            if opcode == OP_PING:
                with contextlib.suppress(OSError):
                    data = encode_frame(data, mask=self._rng.randbytes(4), opcode=OP_PONG)
                    with self._wlock:
                        self._sock.sendall(data)
            elif opcode == OP_CLOSE:
                self._break(RemoteHostError(f"{self.url} closed the peer socket"))
            return
        try:
            frame = decode_host_frame(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self._break(RemoteHostError(f"{self.url} sent an unreadable peer-socket frame: {exc}"))
            return
        kind = type(frame)
        if kind is Reply:
            with self._lock:
                call = self._pending.pop(frame.id, None)
                if call is not None:
                    call.reply = frame
                    call.done = True
                    if call.parked:
                        call.parked = False
                        call.lock.release()
                    return
                post = self._posts.pop(frame.id, None)
                if not self._posts:
                    self._cond.notify_all()
            if post is not None:
                self._on_post_reply(self, post, frame)
        elif kind is Acks:
            with self._lock:
                posts = self._posts
                for rid in frame.ids:
                    posts.pop(rid, None)
                if not posts:
                    self._cond.notify_all()
        elif kind is Fault:
            self._break(error_from_wire(frame.error))

    def _pass_role(self) -> None:
        with self._lock:
            self._reading = False
            for call in self._pending.values():
                if call.parked:
                    call.parked = False
                    call.lock.release()
                    return
            if self._posts and self._broken is None:
                self._cond.notify_all()

    def _drain(self) -> None:
        """The drainer: reads while pipelined messages await their acknowledgement and no
        caller leads."""
        cond = self._cond
        frames = self._frames
        while True:
            with cond:
                while self._broken is None and (self._reading or not self._posts):
                    cond.wait()  # every change of these is notified
                if self._broken is not None:
                    return
                self._reading = True
            try:
                while self._posts and self._broken is None:
                    try:
                        item = frames.next()
                    except FrameError as exc:
                        self._break(RemoteHostError(f"{self.url} broke the framing: {exc}"))
                        break
                    if item is None:
                        self._fill(time.monotonic() + DRAIN_SLICE)
                    else:
                        self._dispatch(item)
            finally:
                self._pass_role()

    def flush(self, timeout: float | None) -> bool:
        """Wait until every pipelined message is acknowledged (or reported); False if some
        still wait after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._posts and self._broken is None:
                if deadline is None:
                    self._cond.wait(DRAIN_SLICE)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, DRAIN_SLICE))
            return not self._posts

    # -- the end ---------------------------------------------------------------------------

    def _break(self, exc: BaseException) -> None:
        with self._lock:
            if self._broken is not None:
                return
            self._broken = exc
            calls = list(self._pending.values())
            self._pending.clear()
            posts = [self._posts[rid] for rid in sorted(self._posts)]
            self._posts.clear()
            lost = SocketLost(str(exc) or type(exc).__name__, written=True, boot=self.boot)
            for call in calls:
                call.reply = lost
                call.done = True
                if call.parked:
                    call.parked = False
                    call.lock.release()
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        if posts:
            self._on_posts_lost(self, posts, exc)

    def close(self) -> None:
        """Close the connection; callers still waiting get `SocketLost`."""
        with self._lock:
            self._closing = True
            self._cond.notify_all()
        self._break(RemoteHostError(f"the client closed its peer socket to {self.url}"))
        with contextlib.suppress(OSError):
            self._sock.close()


def _set_timeouts(sock: socket.socket, *, send: float, receive: float) -> None:
    for option, seconds in ((socket.SO_SNDTIMEO, send), (socket.SO_RCVTIMEO, receive)):
        whole = int(seconds)
        sock.setsockopt(
            socket.SOL_SOCKET, option, struct.pack("ll", whole, int((seconds - whole) * 1e6))
        )
