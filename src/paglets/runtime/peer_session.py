"""One peer-socket connection on the host side: frames in, deliveries, replies out.

The frame format and the reasons for this design are in `paglets.runtime.peer_socket`;
this module is the part that does not care how the bytes arrive. A `Source` yields
batches of frame payloads (a blocking read) and writes answers (thread-safe).

Threads. One thread at a time holds the connection's *reader role*: it reads a batch and
processes it. A synchronous `send` that is the last frame of its batch runs right there,
on the reading thread (which is a worker, never the event loop), so a quiet connection
answers without any thread hand-off; the mailbox lets that thread take the paglet's turn
inline when it is free (architecture §5). Earlier `send`s of a batch go to the worker
pool. If the reader stays busy longer than a moment (a long handler, an activation), the
`Promoter` gives the reader role to another worker, so the connection keeps being read:
it stays multiplexed, a slow handler never holds up the replies of other paglets.

Order. One-way frames (`post`, and `send` with `oneway`) pass through one FIFO *lane* per
connection and are queued in the target mailboxes in the order the client wrote them,
whichever thread reads them; a synchronous `send` that arrives while the lane holds
one-way messages waits in the lane too and starts after them. So the messages one client
thread sends keep their order (api.md §2.4). A full lane stops the reading: a fast sender
is held back by TCP, not by the host's memory.

At most once. Every frame's message carries its delivery id as `message_id` and is decoded
as an explicit id, so the host's delivery-id table (`Delivery._Dedup`) answers a resent
frame with the first outcome instead of running it again (network.md §1.6, targets r4).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from paglets.core.errors import (
    InvalidAgentError,
    PagletError,
    PagletMovedError,
    PagletTimeoutError,
    SerializationError,
    error_to_wire,
    http_status_for,
)
from paglets.core.messages import RESERVED_KINDS, Message
from paglets.remote.mesh_wire import decode_frame
from paglets.remote.peer_frames import MeshFrame, Post, Send, decode_client_frame
from paglets.runtime.http_wire import _CODE_STATUS, _code_of, _timeout_outcome

if TYPE_CHECKING:
    from paglets.runtime.host import Host

log = logging.getLogger("paglets.peer")

__all__ = ["PeerSession", "Source", "error_body"]

ACK_BATCH = 512  # at most this many ids per `acks` frame
LANE_LIMIT = 8192  # one-way frames read ahead of the mailboxes, per connection
_ENCODE = msgspec.msgpack.Encoder().encode
_LOOSE = msgspec.msgpack.Decoder()


class Source(Protocol):
    """How a session reads and writes its connection."""

    def read(self) -> list[bytes] | None:
        """The next batch of binary messages (at least one); `None` once the connection
        is closed. Called by one thread at a time."""
        ...

    def write(self, payload: bytes) -> None:
        """Send one binary message; thread-safe; errors close the connection quietly."""
        ...

    def close(self) -> None: ...


def error_body(exc: BaseException, host_name: str) -> dict[str, Any]:
    """The §1.5 error body for `exc`, as the HTTP API would answer it (its `status` too)."""
    if isinstance(exc, PagletError):
        wire = error_to_wire(exc, host_name=host_name, with_traceback=False)
        if wire.get("host_name") is None:
            wire["host_name"] = host_name
        code = _code_of(exc)
        detail = getattr(exc, "detail", None)
        if isinstance(exc, PagletTimeoutError) and not (detail and "outcome" in detail):
            detail = {**(detail or {}), "outcome": _timeout_outcome(exc)}
        status = getattr(exc, "status", None) or _CODE_STATUS.get(code or "")
        wire["code"] = code
        wire["status"] = status or http_status_for(exc)
        if detail:
            wire["detail"] = detail
        return wire
    log.error("internal error answering a peer-socket frame", exc_info=exc)
    return {
        "error_type": "HostError",
        "error": f"internal error on host {host_name!r} delivering a message; "
        "the host log has the details",
        "error_module": "paglets.core.errors",
        "traceback": None,
        "host_name": host_name,
        "code": "internal",
        "status": 500,
    }


def _as_paglets_error(exc: BaseException, message: Message) -> BaseException:
    """The errors that are the frame's fault, as paglets errors (as the HTTP route does)."""
    if isinstance(exc, PagletError):
        return exc
    if isinstance(exc, TimeoutError):
        return PagletTimeoutError(
            "no answer in time for a message already being delivered under this id",
            code="deadline-exceeded",
        )
    if isinstance(exc, TypeError | ValueError) and message.kind in RESERVED_KINDS:
        return SerializationError(f"$.msg.args: {message.kind}: {exc}", code="invalid-body")
    return exc


class PeerSession:
    """The frames of one connection; see the module docstring."""

    __slots__ = (
        "busy_since",
        "closed",
        "default_timeout",
        "deliver",
        "host",
        "lane",
        "lane_busy",
        "lane_full",
        "lock",
        "on_end",
        "pool",
        "promoter",
        "reader",
        "room",
        "source",
    )

    def __init__(self, host: Host, source: Source, promoter: Any, on_end: Any) -> None:
        self.host = host
        self.deliver = host.delivery.send
        self.pool = host.pool
        self.default_timeout = float(host.default_timeout)
        self.source = source
        self.promoter = promoter
        self.on_end = on_end
        self.lock = threading.Lock()
        self.lane: deque[Send | Post] = deque()
        self.lane_busy = False
        self.lane_full = False  # a reader waits for room in the lane
        self.room = threading.Condition(self.lock)
        self.reader: object | None = None  # the token of the thread holding the reader role
        self.busy_since = 0.0  # when the reader began processing its batch; 0.0 while reading
        self.closed = False

    # -- the reader role -----------------------------------------------------------------

    def run(self) -> None:
        """Hold the reader role until the connection ends or the role is promoted away."""
        token = object()
        with self.lock:
            if self.reader is not None or self.closed:
                return
            self.reader = token
        source = self.source
        promoter = self.promoter
        while True:
            try:
                batch = source.read()
            except Exception:  # a broken socket: the connection is over
                log.debug("peer socket read failed", exc_info=True)
                batch = None
            if batch is None:
                self._end()
                return
            try:
                # Sorted into the lane (or kept to run directly) before this thread may be
                # promoted away, so a later batch read by another thread queues after it.
                direct, drain = self._sort(batch)
                self.busy_since = time.monotonic()
                if promoter.idle:
                    promoter.wake()
                self._run(direct, drain)
            except Exception:  # a bug here must not leave the connection unread
                log.exception("peer socket: processing a batch failed")
            with self.lock:
                if self.reader is not token:
                    return  # promoted away: another worker reads now
                self.busy_since = 0.0

    def promote(self, since: float) -> bool:
        """Give the reader role to another worker if the reader is still busy with the
        batch it began at `since` (called by the promoter)."""
        with self.lock:
            if self.closed or self.reader is None or self.busy_since != since:
                return False
            self.reader = None
            self.busy_since = 0.0
        try:
            self.pool.submit(self.run)
        except RuntimeError:  # the host is stopping
            self.close()
        return True

    def close(self) -> None:
        self.source.close()

    def _end(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.reader = None
        self.source.close()
        self.on_end(self)

    # -- frames --------------------------------------------------------------------------

    def _sort(self, batch: list[bytes]) -> tuple[list[Send], bool]:
        """Decode a batch; one-way frames, and any frame behind them, join the lane in
        order. Returns the synchronous sends that may start at once, and whether this
        thread is to drain the lane."""
        frames: list[Send | Post] = []
        for data in batch:
            try:
                frame = decode_client_frame(data)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                self._bad_frame(data, exc)
                continue
            if type(frame) is MeshFrame:
                self._mesh(frame.data)
            else:
                frames.append(frame)
        direct: list[Send] = []
        with self.lock:
            lane = self.lane
            while len(lane) >= LANE_LIMIT and self.lane_busy and not self.closed:
                # Stop reading until the lane drains: TCP pushes back on the sender.
                self.lane_full = True
                self.room.wait(1.0)
            for frame in frames:
                if isinstance(frame, Send) and not (frame.oneway or lane or self.lane_busy):
                    direct.append(frame)
                else:
                    lane.append(frame)
            drain = bool(lane) and not self.lane_busy
            if drain:
                self.lane_busy = True
        return direct, drain

    def _run(self, direct: list[Send], drain: bool) -> None:
        """Start the direct sends (the last one on this thread, unless it drains the lane),
        then drain the lane if this thread took it."""
        if direct:
            last = None if drain else direct.pop()
            submit = self.pool.submit
            for frame in direct:
                submit(self._send, frame)
            if last is not None:
                self._send(last)
        if drain:
            self._drain_lane()

    def _mesh(self, data: bytes) -> None:
        """A membership frame: to the mesh node, on the loop where it lives (as POST
        /mesh/frame would); one that does not decode is dropped, as a lost frame."""
        host = self.host
        node, loop = host.mesh, host._loop
        if node is None or loop is None:
            return
        try:
            frame = decode_frame(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the host stops
            loop.call_soon_threadsafe(node.on_frame, frame)

    def _bad_frame(self, data: bytes, exc: Exception) -> None:
        text = str(exc).replace("`", "")
        error = SerializationError(f"peer socket frame: {text}", code="invalid-body")
        rid = None
        try:
            loose = _LOOSE.decode(data)
            if isinstance(loose, dict) and type(loose.get("id")) is int:
                rid = loose["id"]
        except Exception:
            pass
        body = error_body(error, self.host.name)
        if rid is None:
            self.source.write(_ENCODE({"t": "fault", "error": body}))
        else:
            self.source.write(_ENCODE({"t": "reply", "id": rid, "error": body}))

    def _drain_lane(self) -> None:
        acks: list[int] = []
        lane = self.lane
        lock = self.lock
        try:
            while True:
                with lock:
                    if not lane:
                        self.lane_busy = False
                        break
                    frame = lane.popleft()
                    if self.lane_full and len(lane) <= LANE_LIMIT // 2:
                        self.lane_full = False
                        self.room.notify_all()
                if type(frame) is Send and not frame.oneway:
                    # Every one-way message before it is queued: it may start now, and must
                    # not hold up the lane while its handler runs.
                    self.pool.submit(self._send, frame)
                elif self._oneway(frame) and type(frame) is Post:
                    acks.append(frame.id)
                    if len(acks) >= ACK_BATCH:
                        self.source.write(_ENCODE({"t": "acks", "ids": acks}))
                        acks = []
        except BaseException:
            with lock:
                self.lane_busy = False
            raise
        if acks:
            self.source.write(_ENCODE({"t": "acks", "ids": acks}))

    # -- deliveries ----------------------------------------------------------------------

    def _oneway(self, frame: Send | Post) -> bool:
        """Queue a one-way message; `post`s succeed silently (acknowledged in batches),
        a one-way `send` gets its own reply, failures of either get a `reply`."""
        message = frame.msg
        try:
            self.deliver(
                frame.agent,
                message,
                oneway=True,
                activate_if_inactive=frame.activate,
                no_delay=frame.no_delay,
                timeout=self.default_timeout,
                follow=False,
                from_wire=True,
            )
        except BaseException as exc:
            self.source.write(self._failure(frame.id, frame.agent, message, exc))
            return False
        if type(frame) is Send:
            self.source.write(_ENCODE({"t": "reply", "id": frame.id}))
        return True

    def _send(self, frame: Send) -> None:
        message = frame.msg
        timeout_ms = frame.timeout_ms
        timeout = timeout_ms / 1000.0 if timeout_ms and timeout_ms > 0 else self.default_timeout
        try:
            result = self.deliver(
                frame.agent,
                message,
                activate_if_inactive=frame.activate,
                no_delay=frame.no_delay,
                timeout=timeout,
                follow=False,
                from_wire=True,
            )
        except BaseException as exc:
            self.source.write(self._failure(frame.id, frame.agent, message, exc))
            return
        rid = frame.id
        if (
            type(result) is dict
            and len(result) == 2
            and result.get("queued") is True
            and result.get("message_id") == message.message_id
        ):
            payload = _ENCODE({"t": "reply", "id": rid, "held": message.message_id})
        else:
            try:
                payload = _ENCODE({"t": "reply", "id": rid, "result": result})
            except (TypeError, ValueError, OverflowError) as exc:
                error = SerializationError(
                    f"the reply to {message.kind!r} cannot be encoded: {exc}", code="invalid-body"
                )
                payload = self._failure(rid, frame.agent, message, error)
        self.source.write(payload)

    def _failure(self, rid: int, agent_id: str, message: Message, exc: BaseException) -> bytes:
        exc = _as_paglets_error(exc, message)
        if isinstance(exc, InvalidAgentError) and exc.code == "agent-not-found":
            # Gone from here: a forwarding pointer turns it into `moved` (network.md §1.6).
            try:
                found = self.host.missing(agent_id)
            except Exception:
                found = None
            if isinstance(found, PagletMovedError):
                exc = found
        if isinstance(exc, PagletMovedError):
            return _ENCODE({"t": "reply", "id": rid, "moved": dict(exc.moved)})
        body = error_body(exc, self.host.name)
        try:
            return _ENCODE({"t": "reply", "id": rid, "error": body})
        except (TypeError, ValueError, OverflowError):  # an unencodable detail
            body.pop("detail", None)
            return _ENCODE({"t": "reply", "id": rid, "error": body})
