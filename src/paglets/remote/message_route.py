"""How `HostClient` sends a message: over the host's peer socket when it can, else over
HTTP (network.md §1.1, §1.6; api.md §2.5).

A message is encoded once (`Outgoing`): its wire form, with its delivery id, is kept as
MessagePack bytes and embedded as is in a peer-socket frame or an HTTP body, so a resend
or a followed move sends the very same bytes. `MessageExchange` is one attempt against
one host for `agent_route.follow`: the peer socket, or HTTP when the host refused the
upgrade, cannot be reached that way, or the message is larger than the socket's frames.

Pipelined one-way messages (`send_oneway(wait=False)`) are written with `post` and return
at once; their acknowledgements come later. `PostOutcomes` deals with those that did not
go well: a paglet that moved is followed (on a background thread, same delivery id); an
error, or a connection lost before the acknowledgement to a host that then restarted
(outcome unknown), is reported to `HostClient.on_oneway_failure`, else logged.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import TYPE_CHECKING, Any

import msgspec

from paglets.core.errors import (
    AuthenticationError,
    HostError,
    PagletError,
    PagletTimeoutError,
    RemoteHostError,
    SerializationError,
    error_from_wire,
)
from paglets.core.messages import Message
from paglets.remote.agent_route import FAILED, GRACE, MOVED, OK, HttpExchange, moved_target
from paglets.remote.peer_frames import Reply
from paglets.remote.peer_socket import PeerSocket, PendingPost, SocketLost
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.remote.client import HostClient

log = logging.getLogger("paglets.client")

__all__ = ["MessageExchange", "Outgoing", "PostOutcomes", "outgoing", "socket_error"]

_ENCODE = msgspec.msgpack.Encoder().encode
_FRAME_ROOM = 4096  # a frame's fields besides the message
_PLAIN = (str, int, float, bool)
_getrandbits = random.getrandbits


class Outgoing:
    """A message ready to send: its encoded wire form and how it is to be delivered."""

    __slots__ = ("activate", "durable", "kind", "message_id", "msg", "no_delay", "oneway")

    def __init__(
        self,
        msg: msgspec.Raw,
        kind: str,
        message_id: str,
        oneway: bool,
        activate: bool,
        no_delay: bool,
        durable: bool,
    ) -> None:
        self.msg = msg
        self.kind = kind
        self.message_id = message_id
        self.oneway = oneway
        self.activate = activate
        self.no_delay = no_delay
        self.durable = durable

    def http_body(self) -> bytes:
        body: dict[str, Any] = {
            "message": self.msg,
            "oneway": self.oneway,
            "activate_if_inactive": self.activate,
            "no_delay": self.no_delay,
        }
        if self.durable:
            body["durable"] = True
        return _ENCODE(body)

    def frame(self, kind: str, agent_id: str) -> dict[str, Any]:
        frame: dict[str, Any] = {"t": kind, "agent": agent_id, "msg": self.msg}
        if not self.activate:
            frame["activate"] = False
        if self.no_delay:
            frame["no_delay"] = True
        if self.durable:
            frame["durable"] = True
        return frame


def outgoing(
    message: Message,
    message_type: int,
    oneway: bool,
    activate: bool,
    no_delay: bool,
    durable: bool,
    sender: str | None,
    reply_to: str | None,
) -> Outgoing:
    """Encode `message` for sending (the caller's `Message` is not changed). The delivery
    id is the caller's explicit `message_id`, else a fresh one for this call."""
    if not isinstance(message, Message):
        raise TypeError(
            f"send takes a paglets Message, got {type(message).__name__}; "
            "e.g. Message('kind', {...})"
        )
    try:
        args = codec.to_wire_form(message.args) if message.args else {}
        arg = message.arg
        if arg is not None and type(arg) not in _PLAIN:
            arg = codec.to_wire_form(arg)
    except SerializationError as exc:
        raise SerializationError(f"message {message.kind!r} cannot be sent: {exc}") from None
    # A fresh delivery id: 128 random bits (the `random` module reseeds after a fork, and
    # is ~20 times cheaper than uuid4, which matters for pipelined bursts).
    message_id = message.explicit_message_id() or f"{_getrandbits(128):032x}"
    wire = {
        "kind": message.kind,
        "args": args,
        "arg": arg,
        "sender": message.sender if sender is None else sender,
        "reply_to": message.reply_to if reply_to is None else reply_to,
        "priority": message.priority,
        "message_type": message_type,
        "timestamp": message.timestamp,
        "message_id": message_id,
    }
    try:
        msg = msgspec.Raw(_ENCODE(wire))
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(f"message {message.kind!r} cannot be sent: {exc}") from None
    return Outgoing(msg, message.kind, message_id, oneway, activate, no_delay, durable)


def socket_error(client: HostClient, body: dict[str, Any], url: str) -> PagletError:
    """The error a peer-socket `reply` carries, as `HostClient._error` builds it for HTTP."""
    exc = error_from_wire(body)
    detail = body.get("detail")
    if detail is not None:
        exc.detail = detail  # type: ignore[attr-defined]
    if isinstance(exc, AuthenticationError):
        return client._auth_error(url, exc)
    return exc


class MessageExchange:
    """One attempt to deliver a message to one host (see the module docstring)."""

    __slots__ = ("agent_id", "client", "http", "out")

    def __init__(self, client: HostClient, agent_id: str, out: Outgoing) -> None:
        self.client = client
        self.agent_id = agent_id
        self.out = out
        self.http: HttpExchange | None = None

    def __call__(self, target: str, remaining: float) -> tuple[int, Any]:
        client = self.client
        out = self.out
        for attempt in (0, 1):
            conn = client._sockets.get(target)
            if conn is None or len(out.msg) > conn.max_frame - _FRAME_ROOM:
                return self._over_http(target, remaining)
            frame = out.frame("send", self.agent_id)
            frame["timeout_ms"] = max(1, int(remaining * 1000))
            if out.oneway:
                frame["oneway"] = True
            try:
                reply = conn.request(frame, remaining + GRACE)
            except TimeoutError:
                raise PagletTimeoutError(
                    f"message {out.kind!r} to paglet {self.agent_id!r} at {target}: no reply "
                    f"within {remaining:g}s; the handler may still be running",
                    code="deadline-exceeded",
                ) from None
            except SocketLost as lost:
                if not lost.written:  # it never reached the host: send it again
                    if attempt == 0:
                        continue  # on a fresh connection
                    return self._over_http(target, remaining)
                again = client._sockets.get(target) if attempt == 0 else None
                if again is not None and lost.boot and again.boot == lost.boot:
                    continue  # the same host process: it dedups the resent delivery id
                raise RemoteHostError(
                    f"the connection to {target} was lost while message {out.kind!r} "
                    f"(delivery id {out.message_id}) was in flight ({lost}); the host may "
                    "or may not have run it"
                ) from None
            return self._answer(reply, target)
        raise AssertionError("unreachable")  # pragma: no cover

    def _over_http(self, target: str, remaining: float) -> tuple[int, Any]:
        http = self.http
        if http is None:
            client = self.client
            headers = dict(client._base_headers)
            headers["Accept"] = "application/msgpack"
            headers["Content-Type"] = "application/msgpack"
            http = self.http = HttpExchange(
                client,
                "POST",
                f"/agents/{self.agent_id}/messages",
                self.out.http_body(),
                headers,
                deadline=True,
            )
        return http(target, remaining)

    def _answer(self, reply: Reply, target: str) -> tuple[int, Any]:
        if reply.error is not None:
            return FAILED, socket_error(self.client, reply.error, target)
        if reply.moved is not None:
            moved = moved_target(reply.moved)
            if moved is None:
                return FAILED, HostError(f"{target} answered 'moved' without a host URL")
            return MOVED, moved
        if reply.held is not None:
            return OK, {"queued": True, "message_id": reply.held}
        return OK, {"result": reply.result}


class PostOutcomes:
    """What happens to pipelined one-way messages that were not simply acknowledged."""

    def __init__(self, client: HostClient) -> None:
        self.client = client

    def replied(self, conn: PeerSocket, post: PendingPost, reply: Reply) -> None:
        """A `post` answered by a `reply`: moved (follow it) or failed (report it)."""
        moved = moved_target(reply.moved) if reply.moved is not None else None
        if moved is not None:
            url, epoch, home = moved
            self.client.locations.note(post.agent_id, conn.url, url, epoch, home)
            self._background(self._resend, conn.url, post)
            return
        if reply.error is not None:
            error: PagletError = socket_error(self.client, reply.error, conn.url)
        else:
            error = HostError(f"{conn.url} answered a pipelined message with an empty reply")
        self.report(post, error)

    def lost(self, conn: PeerSocket, posts: list[PendingPost], exc: BaseException) -> None:
        """The connection broke before these were acknowledged."""
        self._background(self._recover, conn, posts, exc)

    def _recover(self, conn: PeerSocket, posts: list[PendingPost], exc: BaseException) -> None:
        again = self.client._sockets.get(conn.url)
        same = again is not None and bool(conn.boot) and again.boot == conn.boot
        for post in posts:
            if same and again is not None:
                try:
                    frame = {"t": "post", "agent": post.agent_id, "msg": post.msg}
                    if not post.activate:
                        frame["activate"] = False
                    if post.no_delay:
                        frame["no_delay"] = True
                    again.post(frame, post)  # same delivery id: the host dedups it
                    continue
                except SocketLost:
                    same = False
            self.report(
                post,
                RemoteHostError(
                    f"the connection to {conn.url} was lost before this one-way message was "
                    f"acknowledged ({exc}); the host may or may not have queued it"
                ),
            )

    def _resend(self, url: str, post: PendingPost) -> None:
        client = self.client
        out = Outgoing(post.msg, "", "", True, post.activate, post.no_delay, post.durable)
        _fill_names(out)
        try:
            client._send(url, post.agent_id, out, client.timeout, None)
        except PagletError as exc:
            self.report(post, exc)
        except Exception as exc:  # never lose a failure silently
            self.report(post, HostError(f"{type(exc).__name__}: {exc}"))

    def report(self, post: PendingPost, error: PagletError) -> None:
        out = Outgoing(post.msg, "", "", True, post.activate, post.no_delay, post.durable)
        _fill_names(out)
        callback = self.client.on_oneway_failure
        if callback is not None:
            try:
                callback(post.agent_id, out.message_id, error)
                return
            except Exception:
                log.exception("on_oneway_failure raised")
        log.warning(
            "one-way message %r (id %s) to paglet %r failed: %s: %s",
            out.kind,
            out.message_id,
            post.agent_id,
            type(error).__name__,
            error,
        )

    def _background(self, fn: Any, *args: Any) -> None:
        threading.Thread(target=fn, args=args, name="paglets-oneway-outcome", daemon=True).start()


def _fill_names(out: Outgoing) -> None:
    """Recover kind and message id from the encoded wire (only needed on failures)."""
    try:
        wire = msgspec.msgpack.decode(out.msg)
    except msgspec.DecodeError:
        return
    if isinstance(wire, dict):
        out.kind = str(wire.get("kind") or "")
        out.message_id = str(wire.get("message_id") or "")
