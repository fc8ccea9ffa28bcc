"""`GET /peer/ws`: the persistent binary fast path for messages (network.md §1.1,
architecture §8).

HTTP stays for the control plane and for humans; messages between a client (or another
host) and this host travel over one multiplexed WebSocket per peer on the host's own port.
Authentication is the HTTP API's: the guard middleware checks the key (or the client
certificate) on the upgrade request, before this handler runs, so a keyless upgrade gets
`401` and never becomes a socket.

Frames
------
Every WebSocket message is binary: one MessagePack map whose `t` names the frame
(`paglets.remote.peer_frames` holds them as msgspec structs). Requests carry an `id`, an
integer chosen by the client and unique among its requests in flight on that connection;
answers name it, in any order (the connection is multiplexed).

client → host

* `{"t": "send", "id", "agent", "msg", "oneway": false, "activate": true, "no_delay": false,
  "timeout_ms": null, "durable": false}`: deliver `msg` (the message wire of api.md §2.1) to
  paglet `agent`, as `POST /agents/{agent}/messages` does. `msg.message_id` is the delivery
  id: the host treats it as explicit, so a resend of the same id runs at most once.
  `timeout_ms` bounds the wait for the paglet's turn (the host's default when absent).
  Answered by exactly one `reply`; a one-way `send` is answered once queued.
* `{"t": "post", "id", "agent", "msg", "activate": true, "no_delay": false}`: a pipelined
  one-way message (`send_oneway(wait=False)`). Acknowledged in batches (`acks`) once
  queued; answered by a `reply` only if it could not be queued (`error` or `moved`).

host → client

* `{"t": "welcome", "protocol": 1, "host_id", "name", "boot", "max_frame"}`: the first
  frame, written with the `101` answer. `boot` is new at each start of the host process;
  `max_frame` is the largest message the host reads (a larger one is sent over HTTP, whose
  `413` names the limit).
* `{"t": "reply", "id", ...}` with one of `result` (the reply, in wire form; absent for
  `None`), `held` (the message id: queued durably for an inactive paglet, api.md §2.7),
  `moved` (the `moved` block of a `307`, network.md §1.6: the client follows it, resending
  under the same delivery id) or `error` (the error body of network.md §1.5, `status`
  included).
* `{"t": "acks", "ids": [...]}`: `post` ids queued since the previous `acks`.
* `{"t": "fault", "error"}`: the connection broke the protocol (an unreadable frame with
  no usable `id`, an oversized message); the host closes the connection after it.

Ordering: one-way messages (`post` and one-way `send`) of one connection are queued in the
order written; a synchronous `send` written after them starts after them.

Threads
-------
aiohttp answers the upgrade; then, for a plain TCP connection, the host *takes the socket
over*: the event loop stops reading it and worker threads read and write it directly
(`SocketSource`), so a message that arrives can run on the thread that decoded it (taking
the paglet's turn inline when it is free) and its reply is written by that same thread: no
hop to and from the event loop (each costs ~75 µs; architecture §5). `PeerSession`
(`peer_session`) has the reader-role rules that keep the connection multiplexed. A TLS
connection cannot be taken over (its state lives in the loop's TLS layer) and is served
by aiohttp's WebSocket on the loop, handing frames to the same session (`LoopSource`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from paglets.remote.peer_frames import PROTOCOL, encode
from paglets.remote.ws_frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameReader,
    accept_key,
    close_payload,
    encode_frame,
)
from paglets.runtime.http_wire import HttpRefusal
from paglets.runtime.peer_session import PeerSession, error_body

if TYPE_CHECKING:
    from paglets.runtime.http_api import HttpServer

log = logging.getLogger("paglets.peer")

__all__ = ["PeerServer", "mount"]

FRAME_OVERHEAD = 64 * 1024  # a frame holds a message plus its envelope fields
WRITE_TIMEOUT = 30.0  # a client that reads nothing for this long loses its connection
RECV_BYTES = 65536  # below malloc's mmap threshold: no page faults per read
PROMOTE_AFTER = 0.002  # a reader busy this long hands the reader role on
PROMOTE_TICK = 0.001
IDLE_TICKS = 500  # ~0.5 s without a busy reader and the promoter sleeps until woken


# -- sources ----------------------------------------------------------------------------


class SocketSource:
    """A connection taken over from the event loop, read and written with blocking calls
    (the kernel's send timeout bounds every write; a read waits for as long as it takes)."""

    __slots__ = ("_eof", "_frames", "_host_name", "_sock", "_wlock")

    def __init__(self, sock: socket.socket, initial: bytes, max_size: int, host_name: str) -> None:
        self._sock = sock
        self._host_name = host_name
        self._frames = FrameReader(max_size)
        if initial:
            self._frames.feed(initial)
        self._wlock = threading.Lock()
        self._eof = False

    def read(self) -> list[bytes] | None:
        frames = self._frames
        sock = self._sock
        out: list[bytes] = []
        while True:
            while not self._eof:
                try:
                    item = frames.next()
                except FrameError as exc:
                    self._refuse(exc)
                    break
                if item is None:
                    break
                opcode, data = item
                if opcode == OP_BINARY:
                    out.append(data)
                elif opcode == OP_PING:
                    self._control(OP_PONG, data)
                elif opcode == OP_CLOSE:
                    self._control(OP_CLOSE, data[:2] or close_payload(1000))
                    self._eof = True
                elif opcode == OP_TEXT:
                    self._refuse(FrameError("frames are MessagePack in binary messages", 1003))
            if out:
                return out
            if self._eof:
                return None
            try:
                chunk = sock.recv(RECV_BYTES)
            except OSError:
                return None
            if not chunk:
                return None
            frames.feed(chunk)

    def _refuse(self, exc: FrameError) -> None:
        code = "body-too-large" if exc.code == 1009 else "invalid-body"
        error = HttpRefusal(
            f"peer socket: {exc}", code=code, error_type="SerializationError", status=400
        )
        self.write(encode({"t": "fault", "error": error_body(error, self._host_name)}))
        self._control(OP_CLOSE, close_payload(exc.code, str(exc)[:100]))
        self._eof = True

    def _control(self, opcode: int, payload: bytes) -> None:
        self._send(encode_frame(payload, opcode=opcode))

    def write(self, payload: bytes) -> None:
        self._send(encode_frame(payload))

    def _send(self, data: bytes) -> None:
        try:
            with self._wlock:
                self._sock.sendall(data)
        except OSError:
            self.close()  # the reader sees the end and finishes the session

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        """Close our descriptor (after the session ended: nobody reads it any more)."""
        with contextlib.suppress(OSError):
            self._sock.close()


class LoopSource:
    """A connection served by aiohttp's WebSocket on the event loop (TLS): the loop feeds
    frames in, writes are scheduled on the loop."""

    __slots__ = ("_cond", "_eof", "_loop", "_queue", "_ws")

    def __init__(self, ws: web.WebSocketResponse, loop: asyncio.AbstractEventLoop) -> None:
        self._ws = ws
        self._loop = loop
        self._queue: deque[bytes] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._eof = False

    def feed(self, data: bytes) -> None:
        with self._cond:
            self._queue.append(data)
            self._cond.notify()

    def feed_eof(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def read(self) -> list[bytes] | None:
        with self._cond:
            while not self._queue:
                if self._eof:
                    return None
                self._cond.wait()
            out = list(self._queue)
            self._queue.clear()
            return out

    def write(self, payload: bytes) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            self._loop.call_soon_threadsafe(self._send, payload)

    def _send(self, payload: bytes) -> None:
        if not self._ws.closed:
            task = asyncio.ensure_future(self._ws.send_bytes(payload))
            task.add_done_callback(_quiet)

    def close(self) -> None:
        self.feed_eof()

        def close_ws() -> None:
            asyncio.ensure_future(self._ws.close()).add_done_callback(_quiet)

        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(close_ws)


def _quiet(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a closed peer is not an error worth a log line


# -- the promoter -------------------------------------------------------------------------


class Promoter:
    """Gives the reader role of a connection whose reader has been busy for more than
    `PROMOTE_AFTER` to another worker (see `peer_session`). It ticks only while some reader
    is busy, and sleeps otherwise."""

    def __init__(self, sessions: set[PeerSession]) -> None:
        self.idle = True
        self._sessions = sessions
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def wake(self) -> None:
        self.idle = False
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._closed:
                    self._thread = threading.Thread(
                        target=self._run, name="paglets-peer-promoter", daemon=True
                    )
                    self._thread.start()
        self._event.set()

    def close(self) -> None:
        self._closed = True
        self._event.set()

    def _run(self) -> None:
        sessions = self._sessions
        while not self._closed:
            self._event.wait()
            quiet = 0
            while not self._closed:
                time.sleep(PROMOTE_TICK)
                now = time.monotonic()
                busy = False
                for session in list(sessions):
                    since = session.busy_since
                    if since:
                        busy = True
                        if now - since >= PROMOTE_AFTER:
                            session.promote(since)
                quiet = 0 if busy else quiet + 1
                if quiet >= IDLE_TICKS:
                    self._event.clear()
                    self.idle = True
                    # A reader that became busy before seeing `idle` did not wake us.
                    if not any(s.busy_since for s in list(sessions)):
                        break
                    self.idle = False
                    quiet = 0


# -- the route ----------------------------------------------------------------------------


class PeerServer:
    """The `/peer/ws` route of one host and its live connections."""

    def __init__(self, http: HttpServer) -> None:
        self.http = http
        self.host = http.host
        self.boot = uuid.uuid4().hex
        self.max_frame = int(http.message_limit) + FRAME_OVERHEAD
        self.sessions: set[PeerSession] = set()
        self.promoter = Promoter(self.sessions)
        self._closing = False

    def _welcome(self) -> bytes:
        return encode(
            {
                "t": "welcome",
                "protocol": PROTOCOL,
                "host_id": self.http.host_id,
                "name": self.host.name,
                "boot": self.boot,
                "max_frame": self.max_frame,
            }
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = _check_upgrade(request)
        if self._closing:
            raise HttpRefusal(
                f"host {self.host.name!r} is stopping and takes no new connections",
                code="draining",
                error_type="RemoteHostError",
                headers={"Retry-After": "1"},
            )
        transport = request.transport
        raw = None if transport is None else transport.get_extra_info("socket")
        if (
            raw is None
            or transport is None
            or transport.get_extra_info("sslcontext") is not None
            or not hasattr(transport, "pause_reading")
        ):
            return await self._serve_on_loop(request)
        return await self._take_over(request, transport, raw, key)

    async def _take_over(
        self, request: web.Request, transport: Any, raw: Any, key: str
    ) -> web.StreamResponse:
        transport.pause_reading()
        protocol: Any = request.protocol
        tail = getattr(protocol, "_message_tail", b"") or b""
        if tail:  # frames sent before our 101 (RFC 6455 says wait): ours to read now
            protocol._message_tail = b""
        sock = socket.socket(fileno=os.dup(raw.fileno()))
        # Blocking (one syscall per read or write: Python's own timeouts add a poll to
        # each), with the kernel bounding writes. The descriptor is shared with the paused
        # transport, which never touches it again.
        sock.settimeout(None)
        sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", int(WRITE_TIMEOUT), 0)
        )
        source = SocketSource(sock, bytes(tail), self.max_frame, self.host.name)
        head = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
        ).encode("ascii")
        try:
            sock.sendall(head + encode_frame(self._welcome()))
        except OSError:
            source.release()
            transport.abort()
            return web.Response()
        try:
            await self._run_session(source)
        finally:
            source.release()
            transport.abort()  # the connection was ours; aiohttp has nothing left to say
        return web.Response()

    async def _serve_on_loop(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=self.max_frame, compress=False, autoping=True)
        await ws.prepare(request)
        await ws.send_bytes(self._welcome())
        source = LoopSource(ws, asyncio.get_running_loop())
        waiting = asyncio.ensure_future(self._run_session(source))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    source.feed(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    await ws.close(code=1003, message=b"frames are MessagePack in binary messages")
                    break
        finally:
            source.feed_eof()
            await waiting
        return ws

    async def _run_session(self, source: Any) -> None:
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def on_end(session: PeerSession) -> None:
            self.sessions.discard(session)
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits
                loop.call_soon_threadsafe(_finish, ended)

        session = PeerSession(self.host, source, self.promoter, on_end)
        self.sessions.add(session)
        try:
            self.host.pool.submit(session.run)
        except RuntimeError:  # the worker pool is closed: the host is stopping
            self.sessions.discard(session)
            source.close()
            return
        try:
            await ended
        except asyncio.CancelledError:
            session.close()
            raise

    async def on_shutdown(self, app: web.Application) -> None:
        """Close every connection, so that the server's shutdown does not wait for them."""
        self._closing = True
        self.promoter.close()
        for session in list(self.sessions):
            session.close()


def _finish(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _check_upgrade(request: web.Request) -> str:
    """The `Sec-WebSocket-Key` of a valid WebSocket upgrade request, else a refusal."""
    headers = request.headers
    connection = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
    if headers.get("Upgrade", "").lower() != "websocket" or "upgrade" not in connection:
        raise HttpRefusal(
            "GET /peer/ws is the hosts' WebSocket for messages: send a WebSocket upgrade "
            "(Connection: Upgrade, Upgrade: websocket)",
            code="upgrade-required",
            status=426,
            headers={"Upgrade": "websocket"},
        )
    if headers.get("Sec-WebSocket-Version") != "13":
        raise HttpRefusal(
            "GET /peer/ws speaks WebSocket version 13 only",
            code="upgrade-required",
            status=426,
            headers={"Sec-WebSocket-Version": "13"},
        )
    key = headers.get("Sec-WebSocket-Key", "")
    if len(key) != 24 or not key.endswith("=="):
        raise HttpRefusal(
            "GET /peer/ws: Sec-WebSocket-Key must be 16 random bytes in base64",
            code="bad-upgrade",
            status=400,
        )
    return key


def mount(app: web.Application, http: HttpServer) -> PeerServer:
    """Serve `GET /peer/ws` on `app`; returns the route's `PeerServer`."""
    peer = PeerServer(http)
    app.router.add_get("/peer/ws", peer.handle)
    app.on_shutdown.append(peer.on_shutdown)
    return peer
