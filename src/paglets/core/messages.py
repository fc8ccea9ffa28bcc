"""Messages between paglets, and the handles their replies arrive through.

`Message` is the value a sender builds; `FutureReply` wraps the `concurrent.futures.Future`
a send completes; `ReplySet` gathers many of them (multicast) and hands them out in the
order they complete. Delivery, mailboxes and re-entrancy live in the runtime; this module
only holds the values and the bounded waits on them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final
from uuid import uuid4

from paglets.core.errors import PagletTimeoutError, SerializationError
from paglets.remote.references import PagletProxyRef

__all__ = [
    "CLONE",
    "DEACTIVATE",
    "DEFAULT_TIMEOUT",
    "DISPATCH",
    "DISPOSE",
    "FUTURE",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "NORMAL_PRIORITY",
    "NOT_HANDLED",
    "ONEWAY",
    "REENTRANT_PRIORITY",
    "REQUEST_PRIORITY",
    "RESERVED_KINDS",
    "REVERT",
    "SYNCHRONOUS",
    "SYSTEM_PRIORITY",
    "UNQUEUED_PRIORITY",
    "FutureReply",
    "Message",
    "ReplySet",
]

# -- send modes: how the delivered copy of a message was sent --------------------------------
SYNCHRONOUS: Final = 0
FUTURE: Final = 1
ONEWAY: Final = 2
_MESSAGE_TYPES: Final = frozenset((SYNCHRONOUS, FUTURE, ONEWAY))

# -- priorities ----------------------------------------------------------------------------
# 1..10 are the application levels (high runs first). UNQUEUED_PRIORITY goes to the head of
# the queue; REENTRANT_PRIORITY marks a nested turn on the caller's own call chain.
# SYSTEM_PRIORITY and REQUEST_PRIORITY order the runtime's own lifecycle work above every
# message; the spec names them without fixing their numbers, so 20 and 15 are our values.
# Only the mailbox uses them: a `Message` never carries them.
MIN_PRIORITY: Final = 1
NORMAL_PRIORITY: Final = 5
MAX_PRIORITY: Final = 10
UNQUEUED_PRIORITY: Final = 0
REENTRANT_PRIORITY: Final = 0xFFFFFFFF
SYSTEM_PRIORITY: Final = 20
REQUEST_PRIORITY: Final = 15

# -- reserved kinds: intercepted by the host, never reach `handle_message` -----------------
CLONE: Final = "_clone"
DISPATCH: Final = "_dispatch"
DISPOSE: Final = "_dispose"
DEACTIVATE: Final = "_deactivate"
REVERT: Final = "_revert"
RESERVED_KINDS: Final = frozenset((CLONE, DISPATCH, DISPOSE, DEACTIVATE, REVERT))

DEFAULT_TIMEOUT: Final = 10.0
"""Seconds a wait given `timeout=None` lasts: the client default, so no wait is unbounded."""


class _NotHandledType:
    """Type of `NOT_HANDLED`, the reply that means "this paglet does not handle this kind".

    A singleton compared with `is`; copying and pickling give back the same object.
    """

    __slots__ = ()
    _instance: _NotHandledType | None = None

    def __new__(cls) -> _NotHandledType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_HANDLED"

    def __reduce__(self) -> str:
        return "NOT_HANDLED"

    def __copy__(self) -> _NotHandledType:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _NotHandledType:
        return self


NOT_HANDLED: Final = _NotHandledType()


# -- Message -------------------------------------------------------------------------------

_set = object.__setattr__
_WIRE_KEYS: Final = (
    "kind",
    "args",
    "arg",
    "sender",
    "reply_to",
    "priority",
    "message_type",
    "timestamp",
    "message_id",
)
_FIELD_SET: Final = frozenset(_WIRE_KEYS)


def _check_kind(kind: Any) -> str:
    if type(kind) is not str:
        if not isinstance(kind, str):
            raise TypeError(
                f"Message.kind must be a str naming the message kind, got {type(kind).__name__}"
            )
        kind = str(kind)
    if not kind:
        raise ValueError("Message.kind must be a non-empty string, e.g. Message('ping')")
    return kind


def _check_args(args: Any) -> dict[str, Any]:
    if type(args) is not dict and not isinstance(args, dict):
        raise TypeError(
            f"Message.args must be a dict of named arguments, got {type(args).__name__}; "
            "pass args={'name': value} (or omit it) and put a single value in arg="
        )
    return args


def _check_priority(priority: Any) -> int:
    if type(priority) is int:
        if 0 <= priority <= MAX_PRIORITY or priority == REENTRANT_PRIORITY:
            return priority
    elif isinstance(priority, int) and not isinstance(priority, bool):
        return _check_priority(int(priority))
    raise ValueError(
        f"Message.priority must be an int from {MIN_PRIORITY} (MIN_PRIORITY) to {MAX_PRIORITY} "
        f"(MAX_PRIORITY), {UNQUEUED_PRIORITY} (UNQUEUED_PRIORITY) or REENTRANT_PRIORITY, "
        f"got {priority!r}"
    )


def _check_message_type(message_type: Any) -> int:
    if (
        isinstance(message_type, int)
        and not isinstance(message_type, bool)
        and message_type in _MESSAGE_TYPES
    ):
        return int(message_type)
    raise ValueError(
        "Message.message_type must be SYNCHRONOUS (0), FUTURE (1) or ONEWAY (2), "
        f"got {message_type!r}"
    )


def _check_timestamp(timestamp: Any) -> float:
    if timestamp is None:
        return time.time()
    if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        return float(timestamp)
    raise TypeError(
        f"Message.timestamp must be epoch seconds (a float), got {type(timestamp).__name__}"
    )


def _check_message_id(message_id: Any) -> str:
    if isinstance(message_id, str) and message_id:
        return str(message_id)
    raise ValueError(
        f"Message.message_id must be a non-empty string, got {message_id!r}; "
        "omit it to get a fresh id per send"
    )


class _ExplicitIdSlot:
    """Slotted base holding the hidden flag: was `message_id` chosen by the caller?

    A base class is the only way to add a slot that is not a dataclass field (it must not
    show up in `fields()`, equality, `repr` or the wire).
    """

    __slots__ = ("_explicit_id",)


@dataclass(slots=True, init=False)
class Message(_ExplicitIdSlot):
    """A message to a paglet: a `kind`, named `args` and/or a single `arg`.

    `message_id` doubles as the delivery id for de-duplication only when the caller set it
    (constructor argument, assignment or `from_wire`); otherwise every send call gets a fresh
    one, so reusing one `Message` object in a loop runs every send.
    """

    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    arg: Any = None
    sender: Any = None
    reply_to: Any = None
    priority: int = NORMAL_PRIORITY
    message_type: int = SYNCHRONOUS
    timestamp: float = field(default_factory=time.time)
    message_id: str = field(default_factory=lambda: uuid4().hex)

    # A hand-written __init__ (rather than the generated one) is the only way to tell an
    # explicit `message_id` from the default, and it is also the cheapest path: messages are
    # built on every send.
    def __init__(
        self,
        kind: str,
        args: dict[str, Any] | None = None,
        arg: Any = None,
        sender: Any = None,
        reply_to: Any = None,
        priority: int = NORMAL_PRIORITY,
        message_type: int = SYNCHRONOUS,
        timestamp: float | None = None,
        message_id: str | None = None,
    ) -> None:
        _set(self, "kind", _check_kind(kind))
        _set(self, "args", {} if args is None else _check_args(args))
        _set(self, "arg", arg)
        _set(self, "sender", sender)
        _set(self, "reply_to", reply_to)
        _set(self, "priority", _check_priority(priority))
        _set(self, "message_type", _check_message_type(message_type))
        _set(self, "timestamp", _check_timestamp(timestamp))
        if message_id is None:
            _set(self, "message_id", uuid4().hex)
            _set(self, "_explicit_id", False)
        else:
            _set(self, "message_id", _check_message_id(message_id))
            _set(self, "_explicit_id", True)

    def __post_init__(self) -> None:
        # Only reached when a decoder (msgspec) fills the fields without calling __init__:
        # validate them, and count the decoded id as explicit, as `from_wire` does.
        _set(self, "kind", _check_kind(self.kind))
        _check_args(self.args)
        _set(self, "priority", _check_priority(self.priority))
        _set(self, "message_type", _check_message_type(self.message_type))
        _set(self, "_explicit_id", True)

    def __setattr__(self, name: str, value: Any) -> None:
        _set(self, name, value)
        if name == "message_id":
            # An id assigned after construction is the caller's choice: it becomes the
            # delivery id, exactly as if it had been passed to the constructor.
            _set(self, "_explicit_id", True)

    def __getstate__(self) -> tuple[Any, ...]:
        return (*(getattr(self, k) for k in _WIRE_KEYS), self._explicit_id)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for key, value in zip(_WIRE_KEYS, state, strict=False):
            _set(self, key, value)
        _set(self, "_explicit_id", state[-1])

    # -- identity ----------------------------------------------------------------------

    def explicit_message_id(self) -> str | None:
        """The `message_id` if the caller chose it (the send's delivery id), else `None`."""
        return self.message_id if self._explicit_id else None

    # -- arguments ---------------------------------------------------------------------

    def get_arg(self, name: str | None = None, default: Any = None) -> Any:
        """`args[name]`, or `arg` when no name is given; `default` when that is missing/None."""
        if name is None:
            return default if self.arg is None else self.arg
        return self.args.get(name, default)

    def set_arg(self, name: str, value: Any) -> Message:
        """Set `args[name]` and return this message, so calls can be chained."""
        self.args[name] = value
        return self

    def same_kind(self, kind: str | Message) -> bool:
        """True if `kind` (a string or another message) names this message's kind."""
        if isinstance(kind, Message):
            return kind.kind == self.kind
        return kind == self.kind

    # -- priority ----------------------------------------------------------------------

    def increase_priority(self) -> Message:
        """Raise the priority by one level, clamped to 1..10; returns this message.

        `REENTRANT_PRIORITY` is a marker, not a level, and is left unchanged.
        """
        if self.priority != REENTRANT_PRIORITY:
            _set(self, "priority", max(MIN_PRIORITY, min(MAX_PRIORITY, self.priority + 1)))
        return self

    def decrease_priority(self) -> Message:
        """Lower the priority by one level, clamped to 1..10; returns this message.

        `REENTRANT_PRIORITY` is a marker, not a level, and is left unchanged.
        """
        if self.priority != REENTRANT_PRIORITY:
            _set(self, "priority", max(MIN_PRIORITY, min(MAX_PRIORITY, self.priority - 1)))
        return self

    # -- wire form and copies ----------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        """The wire dict (exactly the nine keys). `args` is copied, values are not."""
        return {
            "kind": self.kind,
            "args": dict(self.args),
            "arg": self.arg,
            "sender": self.sender,
            "reply_to": self.reply_to,
            "priority": self.priority,
            "message_type": self.message_type,
            "timestamp": self.timestamp,
            "message_id": self.message_id,
        }

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> Message:
        """Rebuild a message; unknown keys are ignored and missing ones take defaults.

        A `message_id` present on the wire counts as explicit: it is the delivery id the
        sender chose, and forwarding the message must keep it.
        """
        if not isinstance(payload, dict):
            raise TypeError(f"a wire message must be a dict, got {type(payload).__name__}")
        get = payload.get
        kind = get("kind")
        if kind is None:
            raise ValueError("a wire message needs a 'kind' (the message kind, a string)")
        return cls(
            kind,
            get("args"),
            get("arg"),
            get("sender"),
            get("reply_to"),
            get("priority", NORMAL_PRIORITY),
            get("message_type", SYNCHRONOUS),
            get("timestamp"),
            get("message_id") or None,
        )

    def copy(self, **changes: Any) -> Message:
        """A new message with `changes` applied; `args` is a fresh (shallow) dict.

        The copy's id stays explicit if this one's was, and becomes explicit when `changes`
        sets a `message_id` (`message_id=None` draws a fresh, non-explicit id).
        """
        if not changes:
            new = Message.__new__(Message)
            _set(new, "kind", self.kind)
            _set(new, "args", dict(self.args))
            _set(new, "arg", self.arg)
            _set(new, "sender", self.sender)
            _set(new, "reply_to", self.reply_to)
            _set(new, "priority", self.priority)
            _set(new, "message_type", self.message_type)
            _set(new, "timestamp", self.timestamp)
            _set(new, "message_id", self.message_id)
            _set(new, "_explicit_id", self._explicit_id)
            return new
        unknown = changes.keys() - _FIELD_SET
        if unknown:
            raise TypeError(
                f"Message.copy() got unknown field(s) {sorted(unknown)}; "
                f"fields are {', '.join(_WIRE_KEYS)}"
            )
        values = {key: getattr(self, key) for key in _WIRE_KEYS}
        values.update(changes)
        args = values["args"]
        values["args"] = {} if args is None else dict(_check_args(args))
        new = Message(**values)  # validates the changes; explicit iff message_id is not None
        if "message_id" not in changes:
            _set(new, "_explicit_id", self._explicit_id)
        return new

    def sender_ref(self) -> PagletProxyRef | None:
        """A reference to the sending paglet (`reply_to` host, `sender` id), if both are set."""
        if self.sender and self.reply_to:
            return PagletProxyRef(str(self.reply_to), str(self.sender))
        return None


# -- FutureReply ---------------------------------------------------------------------------


def _bounded(timeout: float | None, default: float | None) -> float:
    if timeout is None:
        timeout = DEFAULT_TIMEOUT if default is None else default
    return max(0.0, float(timeout))


def _refuse_on_event_loop(what: str) -> None:
    # A blocking wait on the loop thread would starve the very loop that may have to deliver
    # the reply; say what to use instead of hanging for the whole timeout.
    if asyncio._get_running_loop() is not None:
        raise RuntimeError(
            f"{what} would block the running event loop; use `await future_reply` "
            "(or call it from a worker thread)"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _mark_retrieved(fut: asyncio.Future[Any]) -> None:
    # An abandoned wrapper (the awaiting task timed out or was cancelled) must not log
    # "exception was never retrieved" when the reply later fails.
    if not fut.cancelled():
        fut.exception()


class FutureReply:
    """The reply of a `send_future` (or one member of a multicast), arriving later.

    Every wait is bounded: `timeout=None` means this reply's default (`timeout=` given at
    construction, else `DEFAULT_TIMEOUT`). Waits that would block a running event loop
    raise `RuntimeError`; there `await future_reply` is the way.
    """

    __slots__ = ("_future", "_timeout")

    def __init__(
        self, future: concurrent.futures.Future[Any], *, timeout: float | None = None
    ) -> None:
        if not isinstance(future, concurrent.futures.Future):
            raise TypeError(
                "FutureReply wraps a concurrent.futures.Future, got "
                f"{type(future).__name__}; for asyncio use `await` on the future directly"
            )
        self._future = future
        self._timeout = timeout

    @property
    def future(self) -> concurrent.futures.Future[Any]:
        """The underlying `concurrent.futures.Future`."""
        return self._future

    def is_available(self) -> bool:
        """True once the reply (or the error) has arrived."""
        return self._future.done()

    def wait_for_reply(self, timeout: float | None = None) -> bool:
        """Wait for the reply; False on timeout. Never raises the remote error."""
        fut = self._future
        if fut.done():
            return True
        _refuse_on_event_loop("FutureReply.wait_for_reply()")
        concurrent.futures.wait((fut,), timeout=_bounded(timeout, self._timeout))
        return fut.done()

    def get_reply(self, timeout: float | None = None) -> Any:
        """The reply; raises the remote error, or `PagletTimeoutError` after `timeout`."""
        fut = self._future
        if not fut.done():
            _refuse_on_event_loop("FutureReply.get_reply()")
            wait = _bounded(timeout, self._timeout)
            # Wait first, then read: `result(timeout)` would mix up our timeout with a remote
            # `PagletTimeoutError` (both are builtin TimeoutErrors).
            concurrent.futures.wait((fut,), timeout=wait)
            if not fut.done():
                raise PagletTimeoutError(f"no reply within {wait:g}s")
        return fut.result()

    def get_boolean_reply(self, timeout: float | None = None) -> bool:
        """The reply, which must be a bool (`SerializationError` otherwise)."""
        value = self.get_reply(timeout)
        if type(value) is not bool:
            raise _mismatch("bool", value)
        return value

    def get_int_reply(self, timeout: float | None = None) -> int:
        """The reply, which must be an int; a bool is not accepted."""
        value = self.get_reply(timeout)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _mismatch("int", value)
        return value

    def get_float_reply(self, timeout: float | None = None) -> float:
        """The reply as a float; an int is accepted (and converted), a bool is not."""
        value = self.get_reply(timeout)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _mismatch("float", value)
        return float(value)

    def get_string_reply(self, timeout: float | None = None) -> str:
        """The reply, which must be a str."""
        value = self.get_reply(timeout)
        if not isinstance(value, str):
            raise _mismatch("str", value)
        return value

    def add_done_callback(self, fn: Callable[[FutureReply], Any]) -> None:
        """Call `fn(self)` when the reply arrives (at once if it already has).

        It runs on the thread that completes the reply: keep it short and non-blocking.
        """
        self._future.add_done_callback(lambda _fut: fn(self))

    def __await__(self) -> Generator[Any, None, Any]:
        return self._await_reply(None).__await__()

    async def _await_reply(self, timeout: float | None) -> Any:
        fut = self._future
        if not fut.done():
            wait = _bounded(timeout, self._timeout)
            wrapped = asyncio.wrap_future(fut)
            wrapped.add_done_callback(_mark_retrieved)
            # asyncio.wait, unlike wait_for, never cancels what it waits on: cancelling the
            # wrapper would cancel the shared reply future for every other waiter.
            done, _ = await asyncio.wait((wrapped,), timeout=wait)
            if not done:
                raise PagletTimeoutError(f"no reply within {wait:g}s")
        return fut.result()

    def __repr__(self) -> str:
        fut = self._future
        if not fut.done():
            status = "pending"
        elif fut.cancelled():
            status = "cancelled"
        elif fut.exception() is not None:
            status = f"failed: {type(fut.exception()).__name__}"
        else:
            status = f"reply={_short(fut.result())}"
        return f"FutureReply({status})"


def _mismatch(expected: str, value: Any) -> SerializationError:
    return SerializationError(
        f"expected a reply of type {expected}, got {type(value).__name__} ({_short(value)}); "
        "use get_reply() for an untyped reply"
    )


# -- ReplySet ------------------------------------------------------------------------------

_EMPTY: Final = object()


class ReplySet:
    """Many `FutureReply`s (a multicast's), handed out in the order they complete.

    Completion order is recorded by a done-callback on each future, so taking the next
    reply costs O(1) however many are pending (no re-scan of hundreds of futures) and ties
    are broken by the real completion order. A taken reply leaves the set.
    """

    __slots__ = ("_cond", "_done", "_next_key", "_pending", "_timeout")

    def __init__(
        self,
        replies: Iterable[FutureReply | concurrent.futures.Future[Any]] = (),
        *,
        timeout: float | None = None,
    ) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._pending: dict[int, FutureReply] = {}
        self._done: deque[FutureReply] = deque()
        self._next_key = 0
        self._timeout = timeout
        for reply in replies:
            self.add_future_reply(reply)

    def add_future_reply(self, reply: FutureReply | concurrent.futures.Future[Any]) -> None:
        """Add a reply (a bare `concurrent.futures.Future` is wrapped)."""
        if not isinstance(reply, FutureReply):
            reply = FutureReply(reply, timeout=self._timeout)
        with self._cond:
            key = self._next_key
            self._next_key = key + 1
            self._pending[key] = reply
        # Outside the lock: an already-done future runs the callback right here.
        reply.future.add_done_callback(lambda _fut: self._completed(key))

    def _completed(self, key: int) -> None:
        with self._cond:
            reply = self._pending.pop(key, None)
            if reply is not None:
                self._done.append(reply)
                self._cond.notify_all()

    def are_all_available(self) -> bool:
        """True if no reply in the set is still pending."""
        with self._cond:
            return not self._pending

    def count_available(self) -> int:
        """Replies that have arrived and were not taken yet."""
        with self._cond:
            return len(self._done)

    def count_unavailable(self) -> int:
        """Replies still pending."""
        with self._cond:
            return len(self._pending)

    def is_any_available(self) -> bool:
        """True if at least one arrived reply is waiting to be taken."""
        with self._cond:
            return bool(self._done)

    def has_more_future_replies(self) -> bool:
        """True while the set holds replies, arrived or pending."""
        with self._cond:
            return bool(self._done or self._pending)

    def wait_for_all_replies(self, timeout: float | None = None) -> bool:
        """Wait until every reply has arrived; False on timeout."""
        with self._cond:
            if not self._pending:
                return True
            _refuse_on_event_loop("ReplySet.wait_for_all_replies()")
            return self._cond.wait_for(lambda: not self._pending, _bounded(timeout, self._timeout))

    def wait_for_next_future_reply(self, timeout: float | None = None) -> bool:
        """Wait until an arrived reply can be taken; False on timeout or if the set is empty."""
        with self._cond:
            return self._wait_next(timeout)

    def get_next_future_reply(self, timeout: float | None = None) -> FutureReply | None:
        """Take the next arrived reply (completion order); None on timeout or when empty."""
        reply = self._take(timeout)
        return None if reply is _EMPTY else reply  # type: ignore[return-value]

    def _wait_next(self, timeout: float | None) -> bool:
        # Caller holds the lock.
        if self._done:
            return True
        if not self._pending:
            return False
        _refuse_on_event_loop("ReplySet.wait_for_next_future_reply()")
        # Also wake when the last pending reply is gone (another thread took it): waiting on
        # would only burn the whole timeout.
        self._cond.wait_for(
            lambda: bool(self._done) or not self._pending, _bounded(timeout, self._timeout)
        )
        return bool(self._done)

    def _take(self, timeout: float | None) -> FutureReply | object | None:
        """The next reply, None on timeout, `_EMPTY` when nothing is left at all."""
        with self._cond:
            if not self._done and not self._pending:
                return _EMPTY
            if self._wait_next(timeout):
                return self._done.popleft()
            return None

    def __len__(self) -> int:
        with self._cond:
            return len(self._done) + len(self._pending)

    def __iter__(self) -> Iterator[FutureReply]:
        """Take the replies in completion order until the set is empty.

        Each step waits at most the default timeout, then raises `PagletTimeoutError`
        naming how many replies are still pending.
        """
        while True:
            reply = self._take(None)
            if reply is _EMPTY:
                return
            if reply is None:
                wait = _bounded(None, self._timeout)
                raise PagletTimeoutError(
                    f"{self.count_unavailable()} replies still pending after waiting "
                    f"{wait:g}s for the next one"
                )
            yield reply  # type: ignore[misc]

    def __repr__(self) -> str:
        with self._cond:
            return f"ReplySet(available={len(self._done)}, pending={len(self._pending)})"
