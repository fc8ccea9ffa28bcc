"""Message delivery on one host: sync, future, one-way and multicast sends, the rules for
inactive targets (api.md §2.7), reserved kinds, and at-most-once delivery ids."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import msgspec

from paglets.core.errors import (
    NotHandledError,
    PagletCrashedError,
    PagletInactiveError,
    PagletMovedError,
    SerializationError,
    as_caller_error,
)
from paglets.core.ids import validate_agent_id
from paglets.core.messages import (
    CLONE,
    DEACTIVATE,
    DISPATCH,
    DISPOSE,
    FUTURE,
    NOT_HANDLED,
    ONEWAY,
    RESERVED_KINDS,
    REVERT,
    SYNCHRONOUS,
    FutureReply,
    Message,
    ReplySet,
)
from paglets.persistence.policy import DeactivationPolicy, DeactivationRequest
from paglets.runtime import local_hosts, mailbox
from paglets.runtime.mailbox import Cell, CellGone
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.runtime.host import Host

log = logging.getLogger("paglets.delivery")

__all__ = ["Delivery"]

MAX_HOPS = 8  # forwarding pointers followed at most (network.md §1.6)
DEDUP_SECONDS = 600.0  # a target remembers delivery ids at least this long (api.md §2.5)


class _Settled:
    """A finished delivery, remembered cheaply (a Future per message for 10 minutes would
    cost about a kilobyte each at tens of thousands of messages a second)."""

    __slots__ = ("error", "result")

    def __init__(self, result: Any, error: BaseException | None) -> None:
        self.result = result
        self.error = error

    def future(self) -> Future[Any]:
        done: Future[Any] = Future()
        if self.error is not None:
            done.set_exception(self.error)
        else:
            done.set_result(self.result)
        return done


class _Dedup:
    """(agent id, delivery id) → the first call: its future while it runs, then its
    outcome; evicted by age only (never by count, network.md §1.6)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], Future[Any] | _Settled] = {}
        self._order: deque[tuple[float, tuple[str, str]]] = deque()

    def claim(self, key: tuple[str, str]) -> tuple[Future[Any], bool]:
        now = time.monotonic()
        with self._lock:
            order = self._order
            while order and now - order[0][0] > DEDUP_SECONDS:
                self._entries.pop(order.popleft()[1], None)
            existing = self._entries.get(key)
            if existing is not None:
                return (existing.future() if isinstance(existing, _Settled) else existing), False
            future: Future[Any] = Future()
            self._entries[key] = future
            order.append((now, key))
        future.add_done_callback(lambda f: self._settle(key, f))
        return future, True

    def _settle(self, key: tuple[str, str], future: Future[Any]) -> None:
        error = future.exception()
        settled = _Settled(None if error is not None else future.result(), error)
        with self._lock:
            if self._entries.get(key) is future:
                self._entries[key] = settled


class Delivery:
    def __init__(self, host: Host) -> None:
        self.host = host
        self._dedup = _Dedup()

    # -- public entry points ---------------------------------------------------------

    def send(
        self,
        agent_id: str,
        message: Message,
        *,
        oneway: bool = False,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
        reply_type: Any = None,
        sender: str | None = None,
        follow: bool = True,
        hops: int = 0,
        from_wire: bool = False,
    ) -> Any:
        """Deliver `message`; with `follow`, a paglet that moved away is followed to its new
        host (in-process callers); without, `PagletMovedError` is raised (the HTTP layer
        turns it into `307`)."""
        host = self.host
        host._check_blocking_allowed("send", "send_async")
        validate_agent_id(agent_id)
        timeout = host.default_timeout if timeout is None else timeout
        delivered = self._delivered_copy(
            message, ONEWAY if oneway else SYNCHRONOUS, sender, from_wire
        )
        try:
            return self._send_here(
                agent_id,
                message,
                delivered,
                oneway,
                activate_if_inactive,
                no_delay,
                timeout,
                reply_type,
            )
        except PagletMovedError as moved:
            if not follow or hops >= MAX_HOPS:
                raise
            url = str(moved.moved.get("host_url", ""))
        other = local_hosts.lookup(url)
        if other is not None and other is not host:
            return other.delivery.send(
                agent_id,
                message,
                oneway=oneway,
                activate_if_inactive=activate_if_inactive,
                no_delay=no_delay,
                timeout=timeout,
                reply_type=reply_type,
                sender=sender,
                hops=hops + 1,
            )
        return host.peer_client.send_message(
            url,
            agent_id,
            message,
            sender=sender,
            reply_to=host.address if sender is not None else None,
            oneway=oneway,
            activate_if_inactive=activate_if_inactive,
            no_delay=no_delay,
            timeout=timeout,
            reply_type=reply_type,
        )

    def _send_here(
        self,
        agent_id: str,
        message: Message,
        delivered: Message,
        oneway: bool,
        activate_if_inactive: bool,
        no_delay: bool,
        timeout: float,
        reply_type: Any,
    ) -> Any:
        if delivered.kind in RESERVED_KINDS:
            return self._reserved(agent_id, delivered, timeout)
        explicit = message.explicit_message_id()
        if explicit is None:
            reply = self._route(
                agent_id, delivered, oneway, activate_if_inactive, no_delay, timeout
            )
        else:
            reply = self._once(
                agent_id,
                explicit,
                lambda: self._route(
                    agent_id, delivered, oneway, activate_if_inactive, no_delay, timeout
                ),
                timeout,
            )
        if reply_type is not None and not oneway:
            return codec.convert(reply, reply_type)
        return None if oneway else reply

    def send_future(
        self,
        agent_id: str,
        message: Message,
        *,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
        reply_type: Any = None,
        sender: str | None = None,
    ) -> FutureReply:
        validate_agent_id(agent_id)
        delivered = self._delivered_copy(message, FUTURE, sender)
        result: Future[Any] = Future()
        explicit = message.explicit_message_id()
        claimed: Future[Any] | None = None
        if explicit is not None:
            claimed, first = self._dedup.claim((agent_id, explicit))
            if not first:
                inner = claimed
                claimed = None
        if claimed is not None or explicit is None:
            try:
                inner = self._route_future(agent_id, delivered, activate_if_inactive, no_delay)
            except BaseException as exc:
                if claimed is not None:
                    claimed.set_exception(exc)
                if isinstance(exc, PagletMovedError):
                    raise  # the caller follows the paglet (in-process proxies, HTTP 307)
                result.set_exception(exc)
                return FutureReply(result)
            if claimed is not None:
                _chain(inner, claimed)

        def done(f: Future[Any]) -> None:
            exc = f.exception()
            if exc is not None:
                result.set_exception(exc)
                return
            try:
                value = f.result()
                result.set_result(
                    codec.convert(value, reply_type) if reply_type is not None else value
                )
            except BaseException as conv:
                result.set_exception(conv)

        inner.add_done_callback(done)
        return FutureReply(result)

    def multicast(
        self,
        kind: str | Message,
        args: dict[str, Any] | None = None,
        *,
        exclude: list[str] | None = None,
        timeout: float | None = None,
        sender: str | None = None,
    ) -> ReplySet:
        message = kind if isinstance(kind, Message) else Message(kind, args or {})
        skip = set(exclude or ())
        replies = ReplySet()
        for cell in list(self.host.registry.live.values()):
            if cell.agent_id in skip or not _subscribed(cell, message.kind):
                continue
            replies.add_future_reply(self.send_future(cell.agent_id, message, sender=sender))
        return replies

    # -- the copy the handler sees ---------------------------------------------------

    def _delivered_copy(
        self, message: Message, message_type: int, sender: str | None, from_wire: bool = False
    ) -> Message:
        """What the handler sees: args and arg as builtins, never shared with the caller.
        A message just decoded from the network already is that, and nobody else holds it."""
        if from_wire:
            message.message_type = message_type
            return message
        if not isinstance(message, Message):
            raise TypeError(
                f"send takes a paglets Message, got {type(message).__name__}; e.g. Message('kind', {{...}})"
            )
        try:
            args = codec.to_wire_form(message.args)
            arg = codec.to_wire_form(message.arg)
        except SerializationError as exc:
            raise SerializationError(f"message {message.kind!r} cannot be sent: {exc}") from None
        copy = message.copy(args=args, arg=arg, message_type=message_type)
        if sender is not None:
            copy.sender = sender
            copy.reply_to = self.host.address
        return copy

    # -- routing -----------------------------------------------------------------------

    def _route(
        self,
        agent_id: str,
        message: Message,
        oneway: bool,
        activate: bool,
        no_delay: bool,
        timeout: float,
    ) -> Any:
        host = self.host
        turns = host.turns
        while True:
            cell = host.registry.live.get(agent_id)
            if cell is None:
                outcome = self._inactive(agent_id, message, oneway, activate, no_delay)
                if not isinstance(outcome, Cell):
                    return outcome
                cell = outcome
            try:
                if oneway:
                    turns.post(
                        cell,
                        lambda c=cell: self._invoke(c, message),
                        priority=message.priority,
                        on_done=lambda _r, e, c=cell: self._oneway_done(c, message, e),
                    )
                    return None
                chain = mailbox.current_chain() or mailbox.new_chain()
                waiting = mailbox.current_cell()
                previous = waiting.waiting_chain if waiting is not None else None
                if waiting is not None:
                    waiting.waiting_chain = chain
                try:
                    return turns.call(
                        cell,
                        lambda c=cell: self._invoke(c, message),
                        priority=message.priority,
                        timeout=timeout,
                        chain=chain,
                    )
                finally:
                    if waiting is not None:
                        waiting.waiting_chain = previous
            except CellGone:
                continue

    def _route_future(
        self, agent_id: str, message: Message, activate: bool, no_delay: bool
    ) -> Future[Any]:
        host = self.host
        while True:
            cell = host.registry.live.get(agent_id)
            if cell is None:
                outcome = self._inactive(agent_id, message, False, activate, no_delay)
                if not isinstance(outcome, Cell):
                    done: Future[Any] = Future()
                    done.set_result(outcome)
                    return done
                cell = outcome
            try:
                return host.turns.submit(
                    cell,
                    lambda c=cell: self._invoke(c, message),
                    priority=message.priority,
                    chain=mailbox.current_chain(),
                )
            except CellGone:
                continue

    def _once(self, agent_id: str, delivery_id: str, run: Any, timeout: float) -> Any:
        future, first = self._dedup.claim((agent_id, delivery_id))
        if not first:
            return future.result(timeout)
        try:
            result = run()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        future.set_result(result)
        return result

    def _inactive(
        self, agent_id: str, message: Message, oneway: bool, activate: bool, no_delay: bool
    ) -> Any:
        host = self.host
        row = host.store.get_agent(agent_id)
        if row is None:
            if agent_id in host.registry.live:
                return host.registry.live[agent_id]
            if agent_id in host.registry.reserved and host.transfers.wait_arrival(
                agent_id, host.default_timeout
            ):
                cell = host.registry.live.get(agent_id)
                if cell is not None:  # a prepared arrival went live: deliver to it
                    return cell
            raise host.missing(agent_id)
        if row.status == "crashed":
            raise PagletCrashedError(
                f"paglet {agent_id!r} on host {host.name!r} crashed; dispose or activate it"
            )
        if row.status == "active":  # live again, or becoming live: look once more
            cell = host.registry.live.get(agent_id)
            if cell is not None:
                return cell
            host.activate(agent_id)
            return host.registry.live.get(agent_id) or host._cell_of(agent_id)
        if no_delay:
            raise PagletInactiveError(
                f"paglet {agent_id!r} is inactive and no_delay=True forbids activating it or queueing the message"
            )
        policy = DeactivationPolicy.from_wire(row.policy) if row.policy else DeactivationPolicy()
        if activate and policy.activate_on_message:
            host.activate(agent_id)
            cell = host.registry.live.get(agent_id)
            if cell is not None:
                return cell
            return self._inactive(agent_id, message, oneway, activate, no_delay)
        if policy.queue_messages_when_inactive:
            payload = msgspec.msgpack.encode(message.to_wire())
            host.store.queue_message(agent_id, payload, oneway, time.time())
            host.counters.messages_queued += 1
            host.events.emit(
                "message-queued",
                agent_id=agent_id,
                message_id=message.message_id,
                data={"kind": message.kind},
            )
            return None if oneway else {"queued": True, "message_id": message.message_id}
        raise PagletInactiveError(
            f"paglet {agent_id!r} is inactive and its policy neither activates it on messages nor queues them; "
            "activate it first"
        )

    def requeue_stored(self, cell: Cell) -> None:
        """Put the durably queued messages of a just-activated paglet into its mailbox, in
        order; each is deleted from the store once its handler has run."""
        store = self.host.store
        for row in store.queued_messages(cell.agent_id):
            message = Message.from_wire(msgspec.msgpack.decode(row.payload))

            def on_done(
                _result: Any, error: BaseException | None, seq: int = row.seq, m: Message = message
            ) -> None:
                if isinstance(error, CellGone):
                    return  # still stored: delivered at the next activation
                store.delete_queued([seq])
                if error is not None:
                    self._emit_failed(cell, m, error)
                else:
                    self.host.events.emit(
                        "message-delivered", agent_id=cell.agent_id, message_id=m.message_id
                    )

            self.host.turns._push(
                cell,
                mailbox.Item(lambda m=message: self._invoke(cell, m), None, None, on_done),
                False,
                message.priority,
            )

    # -- running the handler (in the turn) ---------------------------------------------

    def _invoke(self, cell: Cell, message: Message) -> Any:
        host = self.host
        paglet = cell.paglet
        try:
            result = paglet.handle_message(message)
            if asyncio.iscoroutine(result):
                result = host._run_on_loop(result)
        except BaseException as exc:
            cell.failed += 1
            host.counters.messages_failed += 1
            self._after_turn(cell)
            raise as_caller_error(exc, host_name=host.name)  # noqa: B904 (__cause__ is set inside)
        cell.delivered += 1
        host.counters.messages_delivered += 1
        self._after_turn(cell)
        if result is NOT_HANDLED:
            raise NotHandledError(
                f"{type(paglet).__qualname__} did not handle message kind {message.kind!r}",
                code="not-handled",
            )
        try:
            return codec.to_wire_form(result)
        except SerializationError as exc:
            raise SerializationError(
                f"the reply of {type(paglet).__qualname__} to {message.kind!r} cannot be encoded: {exc}"
            ) from None

    def _after_turn(self, cell: Cell) -> None:
        mode = cell.info.checkpoint_mode
        if mode == "interval":
            self.host.checkpoints.mark(cell)
        elif mode == "always":
            self.host.checkpoints.write_now(cell)
        waiters = cell.msg_waiters
        if waiters:
            cell.msg_waiters = None
            for event in waiters:
                event.set()

    def _oneway_done(self, cell: Cell, message: Message, error: BaseException | None) -> None:
        if error is None:
            return
        if isinstance(error, CellGone):
            # The paglet left before this one-way message ran: route it again.
            try:
                self._route(cell.agent_id, message, True, True, False, self.host.default_timeout)
            except Exception as exc:
                self._emit_failed(cell, message, exc)
            return
        self._emit_failed(cell, message, error)

    def _emit_failed(self, cell: Cell, message: Message, error: BaseException) -> None:
        self.host.events.emit(
            "message-failed",
            agent_id=cell.agent_id,
            class_name=cell.info.class_name,
            message_id=message.message_id,
            error=f"{type(error).__name__}: {error}",
            data={"kind": message.kind},
        )

    # -- reserved kinds ----------------------------------------------------------------

    def _reserved(self, agent_id: str, message: Message, timeout: float) -> Any:
        host = self.host
        kind = message.kind
        if kind == DEACTIVATE:
            raw = message.get_arg("request")
            request = DeactivationRequest.from_wire(raw) if isinstance(raw, dict) else None
            proxy = host.deactivate(agent_id, request)
            return {"deactivated": True, "proxy": proxy.to_wire()}
        if kind == DISPOSE:
            host.dispose(agent_id)
            return {"disposed": True}
        if kind == DISPATCH:
            return {"proxy": host.dispatch(agent_id, message.get_arg("target")).to_wire()}
        if kind == CLONE:
            return {"proxy": host.clone(agent_id, message.get_arg("target")).to_wire()}
        if kind == REVERT:
            target = message.get_arg("target") or message.reply_to or host.address
            return {"proxy": host.retract(host.address, agent_id, target=target).to_wire()}
        raise AssertionError(kind)


def _subscribed(cell: Cell, kind: str) -> bool:
    subscriptions = cell.subscriptions
    return subscriptions is None or kind in subscriptions


def _chain(source: Future[Any], target: Future[Any]) -> None:
    """Complete `target` with `source`'s outcome."""

    def copy(f: Future[Any]) -> None:
        exc = f.exception()
        if exc is not None:
            target.set_exception(exc)
        else:
            target.set_result(f.result())

    source.add_done_callback(copy)
