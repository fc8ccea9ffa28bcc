"""One relay WebSocket seen from either end (network.md §3.8): frames in and out, the HTTP
exchanges multiplexed on it, and bodies streamed under credit.

The hub and the node use the same `RelayLink`; they differ only in what they do with a `req`
(`serve`) and a `cancel` (`on_cancel`), given to the link. Frames are handled on the event
loop in the order they arrive, synchronously: a `req` followed by its `cancel` in the same
read (a node that was paused while the hub gave up) is cancelled before its task ever runs.

Writes never interleave: an uncompressed WebSocket frame is written to the transport in one
call, so tasks may send concurrently; `post` schedules a send from synchronous code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import msgspec
from aiohttp import WSMsgType

from paglets.remote.relay_frames import (
    CHUNK_BYTES,
    WINDOW,
    Cancel,
    Chunk,
    Credit,
    Ping,
    Pong,
    RelayFrame,
    Req,
    Res,
    decode,
    encode,
)

__all__ = ["BODY_IDLE_SECONDS", "Call", "Incoming", "LinkLost", "RelayLink"]

BODY_IDLE_SECONDS = 30.0  # a streamed body with no chunk for this long is abandoned

log = logging.getLogger("paglets.relay")


class LinkLost(ConnectionError):
    """The relay WebSocket closed while an exchange on it was still open."""


class Incoming:
    """A body arriving as `chunk` frames. Iterate `chunks()`; each chunk consumed grants the
    sender one more (`credit`)."""

    __slots__ = ("_link", "_queue", "consumed", "sid")

    def __init__(self, link: RelayLink, sid: int) -> None:
        self._link = link
        self.sid = sid
        self._queue: asyncio.Queue[Chunk | BaseException] = asyncio.Queue()
        self.consumed = 0

    def feed(self, item: Chunk | BaseException) -> None:
        self._queue.put_nowait(item)

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            try:
                item = await asyncio.wait_for(self._queue.get(), BODY_IDLE_SECONDS)
            except TimeoutError:
                raise LinkLost(f"no body chunk for {BODY_IDLE_SECONDS:g}s") from None
            if isinstance(item, BaseException):
                raise item
            self.consumed += 1
            if item.data:
                yield item.data
            if item.end:
                return
            self._link.post(Credit(self.sid, self.consumed))


class _Window:
    """The credit granted for a body this side sends."""

    __slots__ = ("changed", "granted", "lost")

    def __init__(self) -> None:
        self.granted = 0
        self.changed = asyncio.Event()
        self.lost: BaseException | None = None

    def grant(self, seq: int) -> None:
        if seq > self.granted:
            self.granted = seq
            self.changed.set()

    def fail(self, exc: BaseException) -> None:
        self.lost = exc
        self.changed.set()

    async def wait(self, seq: int) -> None:
        while seq >= self.granted + WINDOW:
            if self.lost is not None:
                raise self.lost
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), BODY_IDLE_SECONDS)
            except TimeoutError:
                raise LinkLost(f"no credit for {BODY_IDLE_SECONDS:g}s") from None
        if self.lost is not None:
            raise self.lost


class Call:
    """An exchange this side started: its answer's head, then (if chunked) its body."""

    __slots__ = ("body", "delivery_id", "head", "sender", "sid")

    def __init__(self, sid: int, delivery_id: str) -> None:
        self.sid = sid
        self.delivery_id = delivery_id
        self.head: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self.body: Incoming | None = None
        self.sender: asyncio.Task[None] | None = None


async def _pieces(source: bytes | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """`source` cut into chunk-sized pieces (never empty ones)."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        for start in range(0, len(data), CHUNK_BYTES):
            yield data[start : start + CHUNK_BYTES]
        return
    async for data in source:
        for start in range(0, len(data), CHUNK_BYTES):
            yield bytes(data[start : start + CHUNK_BYTES])


Serve = Callable[["RelayLink", Req, Incoming | None], None]
OnCancel = Callable[["RelayLink", Cancel], None]


class RelayLink:
    """One relay WebSocket. `parity` is 0 on the hub and 1 on the node (see `relay_frames`)."""

    def __init__(self, ws: Any, *, parity: int, serve: Serve, on_cancel: OnCancel) -> None:
        self.ws = ws
        self.parity = parity
        self._serve = serve
        self._on_cancel = on_cancel
        self._next_sid = parity
        self.calls: dict[int, Call] = {}
        self.incoming: dict[int, Incoming] = {}
        self.windows: dict[int, _Window] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.last_frame = time.monotonic()
        self.connected_at = self.last_frame
        self.rtt_ms: float | None = None
        self.closed = False
        self.error: str | None = None

    # -- sending -------------------------------------------------------------------------

    async def send(self, frame: RelayFrame) -> None:
        if self.closed:
            raise LinkLost(self.error or "the relay link is closed")
        try:
            await self.ws.send_bytes(encode(frame))
        except (ConnectionError, RuntimeError) as exc:
            self.close(f"writing failed: {exc}")
            raise LinkLost(self.error or str(exc)) from None

    def post(self, frame: RelayFrame) -> None:
        """Send from synchronous code (the frame goes out in order with other posts)."""
        if not self.closed:
            self.spawn(self._send_quietly(frame))

    async def _send_quietly(self, frame: RelayFrame) -> None:
        with contextlib.suppress(LinkLost):
            await self.send(frame)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def call(self, req: Req, body: bytes | AsyncIterable[bytes] | None) -> Call:
        """Send `req` (its `sid` is set here) with `body`; the answer comes in `Call.head`."""
        sid = self._next_sid
        self._next_sid += 2
        req.sid = sid
        call = Call(sid, req.delivery_id)
        self.calls[sid] = call
        if body is None or (isinstance(body, bytes) and len(body) <= CHUNK_BYTES):
            req.body = body
            req.chunked = False
            await self.send(req)
        else:
            req.body = None
            req.chunked = True
            await self.send(req)
            call.sender = self.spawn(self.send_body(sid, body))
        return call

    async def send_body(self, sid: int, source: bytes | AsyncIterable[bytes]) -> None:
        window = self.windows[sid] = _Window()
        seq = 0
        try:
            async for piece in _pieces(source):
                await window.wait(seq)
                await self.send(Chunk(sid, seq, piece))
                seq += 1
            await window.wait(seq)
            await self.send(Chunk(sid, seq, end=True))
        except LinkLost:
            pass
        finally:
            self.windows.pop(sid, None)

    async def respond(
        self,
        sid: int,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterable[bytes] | None,
    ) -> None:
        """Answer the exchange `sid` this side serves."""
        if body is None or (isinstance(body, bytes) and len(body) <= CHUNK_BYTES):
            await self.send(Res(sid, status, headers, body))
            return
        await self.send(Res(sid, status, headers, chunked=True))
        await self.send_body(sid, body)

    async def abandon(self, call: Call) -> None:
        """`cancel`, with the `cancel` frame written before this returns: whatever the caller
        answers next (a 504) cannot overtake it. The frame is in the transport at once; a
        paused transport (a paused peer) does not hold the caller up."""
        self._forget(call)
        with contextlib.suppress(TimeoutError, LinkLost):
            await asyncio.wait_for(self.send(Cancel(call.sid, call.delivery_id)), 0.1)

    def cancel(self, call: Call) -> None:
        """Give up an exchange this side started: forget it and tell the other side."""
        self._forget(call)
        self.post(Cancel(call.sid, call.delivery_id))

    def _forget(self, call: Call) -> None:
        self.calls.pop(call.sid, None)
        if call.sender is not None:
            call.sender.cancel()
        window = self.windows.pop(call.sid, None)
        if window is not None:
            window.fail(LinkLost("cancelled"))
        if call.body is not None:
            call.body.feed(LinkLost("cancelled"))

    def finish(self, call: Call) -> None:
        """The answer of `call` was read to its end (or abandoned by the caller)."""
        self.calls.pop(call.sid, None)
        if call.sender is not None and not call.sender.done():
            call.sender.cancel()  # the answer is complete: the rest of our body is not wanted

    # -- receiving -----------------------------------------------------------------------

    async def run(self) -> None:
        """Read frames until the socket closes; then fail everything still open."""
        reason = "the relay WebSocket closed"
        try:
            while not self.closed:
                msg = await self.ws.receive()
                if msg.type == WSMsgType.BINARY:
                    try:
                        frame = decode(msg.data)
                    except (msgspec.MsgspecError, ValueError) as exc:
                        reason = f"an unreadable relay frame: {exc}"
                        await self.ws.close(code=1003, message=b"unreadable frame")
                        break
                    self.dispatch(frame)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                elif msg.type == WSMsgType.ERROR:
                    reason = f"the relay WebSocket failed: {msg.data}"
                    break
                # text, ping and pong messages carry nothing for us
        finally:
            self.close(reason)

    def dispatch(self, frame: RelayFrame) -> None:
        self.last_frame = time.monotonic()
        kind = type(frame)
        if kind is Req:
            assert isinstance(frame, Req)
            body = None
            if frame.chunked:
                body = self.incoming[frame.sid] = Incoming(self, frame.sid)
            self._serve(self, frame, body)
        elif kind is Res:
            assert isinstance(frame, Res)
            call = self.calls.get(frame.sid)
            if call is None or call.head.done():
                return  # cancelled meanwhile
            if frame.chunked:
                call.body = Incoming(self, frame.sid)
            else:
                self.finish(call)
            call.head.set_result(frame)
        elif kind is Chunk:
            assert isinstance(frame, Chunk)
            target = self._body_of(frame.sid)
            if target is not None:
                target.feed(frame)
                if frame.end:
                    self.incoming.pop(frame.sid, None)
        elif kind is Credit:
            assert isinstance(frame, Credit)
            window = self.windows.get(frame.sid)
            if window is not None:
                window.grant(frame.seq)
        elif kind is Cancel:
            assert isinstance(frame, Cancel)
            body = self.incoming.pop(frame.sid, None)
            if body is not None:
                body.feed(LinkLost("the requester cancelled"))
            window = self.windows.pop(frame.sid, None)
            if window is not None:
                window.fail(LinkLost("the requester cancelled"))
            self._on_cancel(self, frame)
        elif kind is Ping:
            assert isinstance(frame, Ping)
            self.post(Pong(frame.t_ms))
        elif kind is Pong:
            assert isinstance(frame, Pong)
            self.rtt_ms = max(0.0, time.monotonic() * 1000 - frame.t_ms)
        else:
            log.debug("relay frame %s ignored after the handshake", kind.__name__)

    def _body_of(self, sid: int) -> Incoming | None:
        if sid & 1 == self.parity:  # an answer's body, for an exchange this side started
            call = self.calls.get(sid)
            return None if call is None else call.body
        return self.incoming.get(sid)

    def ping(self) -> None:
        self.post(Ping(int(time.monotonic() * 1000)))

    # -- closing -------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self.calls)

    def close(self, reason: str) -> None:
        """Fail every open exchange with `LinkLost(reason)`; idempotent."""
        if self.closed:
            return
        self.closed = True
        self.error = reason
        lost = LinkLost(reason)
        calls, self.calls = self.calls, {}
        for call in calls.values():
            if not call.head.done():
                call.head.set_exception(lost)
            elif call.body is not None:
                call.body.feed(lost)
        incoming, self.incoming = self.incoming, {}
        for body in incoming.values():
            body.feed(lost)
        windows, self.windows = self.windows, {}
        for window in windows.values():
            window.fail(lost)
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(self._close_socket())

    async def _close_socket(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
