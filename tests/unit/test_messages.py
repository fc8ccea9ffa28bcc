"""Unit tests for paglets.core.messages: Message values, FutureReply and ReplySet."""

from __future__ import annotations

import asyncio
import copy
import pickle
import threading
import time
from concurrent.futures import Future

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paglets.core import messages
from paglets.core.errors import PagletTimeoutError, SerializationError
from paglets.core.messages import (
    CLONE,
    DEACTIVATE,
    DISPATCH,
    DISPOSE,
    FUTURE,
    MAX_PRIORITY,
    MIN_PRIORITY,
    NORMAL_PRIORITY,
    NOT_HANDLED,
    ONEWAY,
    REENTRANT_PRIORITY,
    RESERVED_KINDS,
    REVERT,
    SYNCHRONOUS,
    UNQUEUED_PRIORITY,
    FutureReply,
    Message,
    ReplySet,
)
from paglets.remote.references import PagletProxyRef

WIRE_KEYS = {
    "kind",
    "args",
    "arg",
    "sender",
    "reply_to",
    "priority",
    "message_type",
    "timestamp",
    "message_id",
}


def _join(thread: threading.Thread) -> None:
    thread.join(timeout=30)
    assert not thread.is_alive()


# -- constants -----------------------------------------------------------------------------


def test_constants_match_the_spec() -> None:
    assert (SYNCHRONOUS, FUTURE, ONEWAY) == (0, 1, 2)
    assert (MIN_PRIORITY, NORMAL_PRIORITY, MAX_PRIORITY, UNQUEUED_PRIORITY) == (1, 5, 10, 0)
    assert REENTRANT_PRIORITY == 0xFFFFFFFF
    assert messages.SYSTEM_PRIORITY > messages.REQUEST_PRIORITY > MAX_PRIORITY
    assert (CLONE, DISPATCH, DISPOSE, DEACTIVATE, REVERT) == (
        "_clone",
        "_dispatch",
        "_dispose",
        "_deactivate",
        "_revert",
    )
    assert frozenset({CLONE, DISPATCH, DISPOSE, DEACTIVATE, REVERT}) == RESERVED_KINDS
    assert isinstance(RESERVED_KINDS, frozenset)
    assert messages.DEFAULT_TIMEOUT == 10.0


def test_not_handled_is_a_singleton_with_a_readable_repr() -> None:
    assert repr(NOT_HANDLED) == "NOT_HANDLED"
    assert type(NOT_HANDLED)() is NOT_HANDLED
    assert copy.copy(NOT_HANDLED) is NOT_HANDLED
    assert copy.deepcopy(NOT_HANDLED) is NOT_HANDLED
    assert pickle.loads(pickle.dumps(NOT_HANDLED)) is NOT_HANDLED


# -- Message construction and validation --------------------------------------------------


def test_message_defaults() -> None:
    before = time.time()
    msg = Message("ping")
    assert msg.kind == "ping"
    assert msg.args == {}
    assert msg.arg is None and msg.sender is None and msg.reply_to is None
    assert msg.priority == NORMAL_PRIORITY
    assert msg.message_type == SYNCHRONOUS
    assert before <= msg.timestamp <= time.time()
    assert len(msg.message_id) == 32 and int(msg.message_id, 16) >= 0
    assert Message("ping").message_id != msg.message_id
    assert Message("a").args is not Message("b").args


def test_message_positional_fields_in_spec_order() -> None:
    msg = Message("k", {"a": 1}, 7, "agent-1", "http://h:1", 9, ONEWAY, 12.5, "mid")
    assert (msg.kind, msg.args, msg.arg, msg.sender, msg.reply_to) == (
        "k",
        {"a": 1},
        7,
        "agent-1",
        "http://h:1",
    )
    assert (msg.priority, msg.message_type, msg.timestamp, msg.message_id) == (
        9,
        ONEWAY,
        12.5,
        "mid",
    )


def test_message_is_slotted() -> None:
    msg = Message("k")
    assert not hasattr(msg, "__dict__")
    with pytest.raises(AttributeError):
        msg.unknown_field = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["", None, 3, b"k"])
def test_message_rejects_bad_kinds(kind: object) -> None:
    with pytest.raises((TypeError, ValueError), match="kind"):
        Message(kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("args", [[("a", 1)], "a=1", 5, ("x",)])
def test_message_rejects_non_dict_args_and_says_what_to_pass(args: object) -> None:
    with pytest.raises(TypeError, match=r"args must be a dict.*arg="):
        Message("k", args)  # type: ignore[arg-type]


@pytest.mark.parametrize("priority", [0, 1, 5, 10, REENTRANT_PRIORITY])
def test_message_accepts_valid_priorities(priority: int) -> None:
    assert Message("k", priority=priority).priority == priority


@pytest.mark.parametrize("priority", [-1, 11, 15, 20, REENTRANT_PRIORITY - 1, 2.0, "5", None, True])
def test_message_rejects_bad_priorities(priority: object) -> None:
    with pytest.raises(ValueError, match="priority"):
        Message("k", priority=priority)  # type: ignore[arg-type]


@pytest.mark.parametrize("message_type", [3, -1, "0", None, True, [0]])
def test_message_rejects_bad_message_types(message_type: object) -> None:
    with pytest.raises(ValueError, match="message_type"):
        Message("k", message_type=message_type)  # type: ignore[arg-type]


def test_message_rejects_empty_explicit_id() -> None:
    with pytest.raises(ValueError, match="message_id"):
        Message("k", message_id="")


# -- explicit message ids ------------------------------------------------------------------


def test_generated_id_is_not_explicit() -> None:
    assert Message("k").explicit_message_id() is None


def test_keyword_and_positional_ids_are_explicit() -> None:
    assert Message("k", message_id="abc").explicit_message_id() == "abc"
    positional = Message("k", {}, None, None, None, 5, SYNCHRONOUS, None, "pos")
    assert positional.explicit_message_id() == "pos"


def test_assigned_id_becomes_explicit() -> None:
    msg = Message("k")
    msg.message_id = "assigned"
    assert msg.explicit_message_id() == "assigned"


def test_assigning_other_fields_keeps_the_id_implicit() -> None:
    msg = Message("k")
    msg.kind = "other"
    msg.priority = 7
    assert msg.explicit_message_id() is None


def test_explicitness_survives_pickle_and_copy_module() -> None:
    implicit, explicit = Message("k"), Message("k", message_id="e")
    for clone in (pickle.loads(pickle.dumps(implicit)), copy.copy(implicit)):
        assert clone == implicit
        assert clone.explicit_message_id() is None
    for clone in (pickle.loads(pickle.dumps(explicit)), copy.deepcopy(explicit)):
        assert clone.explicit_message_id() == "e"


def test_explicit_flag_is_not_a_field() -> None:
    implicit = Message("k", timestamp=1.0)
    explicit = implicit.copy(message_id=implicit.message_id)
    assert explicit.explicit_message_id() is not None
    assert implicit.explicit_message_id() is None
    assert implicit == explicit
    assert "explicit" not in repr(explicit)


# -- Message methods -----------------------------------------------------------------------


def test_get_arg() -> None:
    msg = Message("k", {"a": 1, "none": None}, "single")
    assert msg.get_arg() == "single"
    assert msg.get_arg("a") == 1
    assert msg.get_arg("missing") is None
    assert msg.get_arg("missing", 42) == 42
    assert msg.get_arg("none", 42) is None
    assert Message("k").get_arg(default="d") == "d"


def test_set_arg_returns_self_for_chaining() -> None:
    msg = Message("k")
    assert msg.set_arg("a", 1).set_arg("b", 2) is msg
    assert msg.args == {"a": 1, "b": 2}


def test_same_kind() -> None:
    msg = Message("k")
    assert msg.same_kind("k")
    assert not msg.same_kind("other")
    assert msg.same_kind(Message("k"))
    assert not msg.same_kind(Message("x"))


def test_priority_changes_are_clamped() -> None:
    msg = Message("k", priority=MAX_PRIORITY)
    assert msg.increase_priority() is msg
    assert msg.priority == MAX_PRIORITY
    msg.decrease_priority()
    assert msg.priority == MAX_PRIORITY - 1
    low = Message("k", priority=MIN_PRIORITY)
    low.decrease_priority()
    assert low.priority == MIN_PRIORITY
    unqueued = Message("k", priority=UNQUEUED_PRIORITY)
    unqueued.increase_priority()
    assert unqueued.priority == MIN_PRIORITY
    reentrant = Message("k", priority=REENTRANT_PRIORITY)
    reentrant.increase_priority()
    reentrant.decrease_priority()
    assert reentrant.priority == REENTRANT_PRIORITY


def test_sender_ref() -> None:
    msg = Message("k", sender="agent-1", reply_to="http://127.0.0.1:9000")
    assert msg.sender_ref() == PagletProxyRef("http://127.0.0.1:9000", "agent-1")
    assert Message("k", sender="agent-1").sender_ref() is None
    assert Message("k", reply_to="http://h").sender_ref() is None


# -- wire form -----------------------------------------------------------------------------


def test_to_wire_has_exactly_the_spec_keys() -> None:
    msg = Message("k", {"a": b"\x00"}, [1, 2], "s", "http://h", 3, FUTURE, 1.5, "id1")
    wire = msg.to_wire()
    assert set(wire) == WIRE_KEYS
    assert wire == {
        "kind": "k",
        "args": {"a": b"\x00"},
        "arg": [1, 2],
        "sender": "s",
        "reply_to": "http://h",
        "priority": 3,
        "message_type": FUTURE,
        "timestamp": 1.5,
        "message_id": "id1",
    }
    wire["args"]["b"] = 2
    assert msg.args == {"a": b"\x00"}


def test_wire_round_trip_keeps_everything_and_marks_the_id_explicit() -> None:
    msg = Message("k", {"a": 1}, "x", "s", "http://h", 8, ONEWAY)
    back = Message.from_wire(msg.to_wire())
    assert back == msg
    assert back.explicit_message_id() == msg.message_id


def test_from_wire_ignores_unknown_keys_and_defaults_missing_ones() -> None:
    msg = Message.from_wire({"kind": "k", "future_field": 1})
    assert msg.kind == "k"
    assert msg.args == {} and msg.arg is None
    assert msg.priority == NORMAL_PRIORITY and msg.message_type == SYNCHRONOUS
    assert msg.timestamp > 0
    assert msg.explicit_message_id() is None
    assert Message.from_wire({"kind": "k", "args": None}).args == {}


def test_from_wire_validates() -> None:
    with pytest.raises(ValueError, match="kind"):
        Message.from_wire({"args": {}})
    with pytest.raises(ValueError, match="priority"):
        Message.from_wire({"kind": "k", "priority": 99})
    with pytest.raises(TypeError, match="args"):
        Message.from_wire({"kind": "k", "args": [1]})
    with pytest.raises(TypeError, match="dict"):
        Message.from_wire(["k"])  # type: ignore[arg-type]


@given(
    kind=st.text(min_size=1, max_size=20),
    args=st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=5),
    priority=st.integers(min_value=0, max_value=10),
    message_type=st.sampled_from([SYNCHRONOUS, FUTURE, ONEWAY]),
)
def test_wire_round_trip_property(
    kind: str, args: dict[str, object], priority: int, message_type: int
) -> None:
    msg = Message(kind, args, priority=priority, message_type=message_type)
    assert Message.from_wire(msg.to_wire()) == msg


# -- copy ----------------------------------------------------------------------------------


def test_copy_is_equal_with_a_fresh_args_dict() -> None:
    msg = Message("k", {"a": [1]}, sender="s")
    dup = msg.copy()
    assert dup == msg and dup is not msg
    assert dup.args is not msg.args
    assert dup.args["a"] is msg.args["a"]  # shallow
    dup.set_arg("b", 2)
    assert "b" not in msg.args


def test_copy_applies_and_validates_changes() -> None:
    msg = Message("k", {"a": 1})
    dup = msg.copy(message_type=ONEWAY, priority=9)
    assert (dup.message_type, dup.priority) == (ONEWAY, 9)
    assert msg.message_type == SYNCHRONOUS and msg.priority == NORMAL_PRIORITY
    assert dup.message_id == msg.message_id
    new_args = {"z": 1}
    assert msg.copy(args=new_args).args == new_args
    assert msg.copy(args=new_args).args is not new_args
    with pytest.raises(ValueError, match="priority"):
        msg.copy(priority=42)
    with pytest.raises(TypeError, match="unknown field"):
        msg.copy(colour="red")


def test_copy_keeps_explicitness_unless_the_id_changes() -> None:
    implicit = Message("k")
    explicit = Message("k", message_id="e")
    assert implicit.copy().explicit_message_id() is None
    assert implicit.copy(priority=2).explicit_message_id() is None
    assert explicit.copy().explicit_message_id() == "e"
    assert explicit.copy(kind="x").explicit_message_id() == "e"
    assert implicit.copy(message_id="new").explicit_message_id() == "new"
    fresh = explicit.copy(message_id=None)
    assert fresh.explicit_message_id() is None and fresh.message_id != "e"


# -- FutureReply ---------------------------------------------------------------------------


def _resolve_later(fut: Future, value: object = None, error: BaseException | None = None):
    """Complete `fut` from another thread (what a transport thread does)."""

    def run() -> None:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_future_reply_rejects_non_futures() -> None:
    with pytest.raises(TypeError, match=r"concurrent\.futures\.Future"):
        FutureReply(object())  # type: ignore[arg-type]


def test_future_reply_delivers_a_result_from_another_thread() -> None:
    fut: Future = Future()
    reply = FutureReply(fut)
    assert reply.future is fut
    assert not reply.is_available()
    thread = _resolve_later(fut, {"ok": True})
    assert reply.get_reply(timeout=30) == {"ok": True}
    assert reply.is_available()
    assert reply.wait_for_reply(timeout=0) is True
    _join(thread)


def test_wait_for_reply_returns_false_on_timeout() -> None:
    reply = FutureReply(Future())
    assert reply.wait_for_reply(timeout=0.01) is False


def test_wait_for_reply_never_raises_the_remote_error() -> None:
    fut: Future = Future()
    fut.set_exception(ValueError("boom"))
    assert FutureReply(fut).wait_for_reply(timeout=1) is True


def test_get_reply_raises_the_remote_error() -> None:
    fut: Future = Future()
    reply = FutureReply(fut)
    thread = _resolve_later(fut, error=KeyError("missing"))
    with pytest.raises(KeyError, match="missing"):
        reply.get_reply(timeout=30)
    _join(thread)


def test_get_reply_times_out_with_paglet_timeout_error() -> None:
    reply = FutureReply(Future())
    with pytest.raises(PagletTimeoutError, match=r"no reply within 0\.01s"):
        reply.get_reply(timeout=0.01)


def test_a_remote_timeout_error_is_not_mistaken_for_our_timeout() -> None:
    fut: Future = Future()
    fut.set_exception(PagletTimeoutError("handler timed out downstream"))
    with pytest.raises(PagletTimeoutError, match="downstream"):
        FutureReply(fut).get_reply(timeout=0.01)


def test_timeout_none_uses_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(messages, "DEFAULT_TIMEOUT", 0.01)
    with pytest.raises(PagletTimeoutError, match=r"within 0\.01s"):
        FutureReply(Future()).get_reply()
    assert FutureReply(Future()).wait_for_reply() is False


def test_a_per_reply_default_timeout_overrides_the_global_one() -> None:
    with pytest.raises(PagletTimeoutError, match=r"within 0\.02s"):
        FutureReply(Future(), timeout=0.02).get_reply()


def _done(value: object) -> FutureReply:
    fut: Future = Future()
    fut.set_result(value)
    return FutureReply(fut)


def test_typed_getters_accept_the_right_types() -> None:
    assert _done(True).get_boolean_reply() is True
    assert _done(3).get_int_reply() == 3
    assert _done(2.5).get_float_reply() == 2.5
    value = _done(2).get_float_reply()
    assert value == 2.0 and type(value) is float
    assert _done("s").get_string_reply() == "s"


@pytest.mark.parametrize(
    ("getter", "value", "expected", "actual"),
    [
        ("get_boolean_reply", 1, "bool", "int"),
        ("get_boolean_reply", "true", "bool", "str"),
        ("get_int_reply", True, "int", "bool"),
        ("get_int_reply", 1.0, "int", "float"),
        ("get_int_reply", "1", "int", "str"),
        ("get_float_reply", False, "float", "bool"),
        ("get_float_reply", "1.5", "float", "str"),
        ("get_string_reply", 5, "str", "int"),
        ("get_string_reply", None, "str", "NoneType"),
    ],
)
def test_typed_getters_are_strict(getter: str, value: object, expected: str, actual: str) -> None:
    with pytest.raises(SerializationError, match=rf"type {expected}, got {actual}"):
        getattr(_done(value), getter)()


def test_typed_getters_propagate_the_remote_error_and_timeouts() -> None:
    fut: Future = Future()
    fut.set_exception(RuntimeError("bad"))
    with pytest.raises(RuntimeError, match="bad"):
        FutureReply(fut).get_int_reply()
    with pytest.raises(PagletTimeoutError):
        FutureReply(Future()).get_string_reply(timeout=0.01)


def test_add_done_callback_receives_the_future_reply() -> None:
    fut: Future = Future()
    reply = FutureReply(fut)
    seen: list[FutureReply] = []
    reply.add_done_callback(seen.append)
    assert seen == []
    thread = _resolve_later(fut, 1)
    _join(thread)
    assert seen == [reply]
    late: list[FutureReply] = []
    reply.add_done_callback(late.append)  # already done: runs at once
    assert late == [reply]


def test_await_future_reply() -> None:
    fut: Future = Future()
    reply = FutureReply(fut)

    async def main() -> object:
        thread = _resolve_later(fut, "hello")
        result = await reply
        _join(thread)
        return result

    assert asyncio.run(main()) == "hello"
    assert asyncio.run(_await(reply)) == "hello"  # already done


async def _await(reply: FutureReply) -> object:
    return await reply


def test_await_raises_the_remote_error() -> None:
    fut: Future = Future()
    fut.set_exception(ValueError("remote"))
    with pytest.raises(ValueError, match="remote"):
        asyncio.run(_await(FutureReply(fut)))


def test_await_is_bounded_and_leaves_the_shared_future_alone() -> None:
    fut: Future = Future()
    with pytest.raises(PagletTimeoutError, match="no reply within"):
        asyncio.run(_await(FutureReply(fut, timeout=0.01)))
    assert not fut.cancelled()
    fut.set_result(1)
    assert FutureReply(fut).get_reply() == 1


def test_blocking_waits_on_the_event_loop_raise_instead_of_deadlocking() -> None:
    pending = FutureReply(Future())

    async def main() -> None:
        with pytest.raises(RuntimeError, match="await future_reply"):
            pending.get_reply()
        with pytest.raises(RuntimeError, match="event loop"):
            pending.wait_for_reply()
        assert _done(4).get_int_reply() == 4  # done replies never block

    asyncio.run(main())


# -- ReplySet ------------------------------------------------------------------------------


def _resolve_in_order(futures: list[Future], order: list[int]) -> threading.Thread:
    def run() -> None:
        for i in order:
            futures[i].set_result(i)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_empty_reply_set() -> None:
    replies = ReplySet()
    assert len(replies) == 0
    assert replies.are_all_available()
    assert not replies.is_any_available()
    assert not replies.has_more_future_replies()
    assert replies.wait_for_all_replies(timeout=0) is True
    assert replies.wait_for_next_future_reply(timeout=30) is False  # empty: returns at once
    assert replies.get_next_future_reply(timeout=30) is None
    assert list(replies) == []


def test_reply_set_yields_in_completion_order() -> None:
    futures: list[Future] = [Future() for _ in range(5)]
    replies = ReplySet(FutureReply(f) for f in futures)
    assert len(replies) == 5
    assert replies.count_unavailable() == 5
    order = [3, 0, 4, 1, 2]
    thread = _resolve_in_order(futures, order)
    assert [r.get_reply() for r in replies] == order
    _join(thread)
    assert len(replies) == 0
    assert not replies.has_more_future_replies()


def test_get_next_future_reply_consumes_in_completion_order() -> None:
    futures: list[Future] = [Future() for _ in range(3)]
    replies = ReplySet([FutureReply(f) for f in futures])
    thread = _resolve_in_order(futures, [2, 1, 0])
    taken = []
    while replies.has_more_future_replies():
        reply = replies.get_next_future_reply(timeout=30)
        assert reply is not None
        taken.append(reply.get_reply())
    _join(thread)
    assert taken == [2, 1, 0]
    assert replies.get_next_future_reply(timeout=30) is None


def test_counts_and_availability() -> None:
    futures: list[Future] = [Future() for _ in range(3)]
    replies = ReplySet()
    for f in futures:
        replies.add_future_reply(FutureReply(f))
    assert not replies.is_any_available()
    assert replies.get_next_future_reply(timeout=0.01) is None  # timeout, set unchanged
    assert replies.wait_for_next_future_reply(timeout=0.01) is False
    futures[1].set_result("b")
    assert replies.is_any_available()
    assert (replies.count_available(), replies.count_unavailable()) == (1, 2)
    assert not replies.are_all_available()
    assert replies.wait_for_all_replies(timeout=0.01) is False
    assert replies.wait_for_next_future_reply(timeout=0) is True
    first = replies.get_next_future_reply()
    assert first is not None and first.get_reply() == "b"
    assert len(replies) == 2
    futures[0].set_exception(ValueError("x"))
    futures[2].set_result("c")
    assert replies.wait_for_all_replies(timeout=30) is True
    assert replies.are_all_available()
    assert (replies.count_available(), replies.count_unavailable()) == (2, 0)


def test_errors_are_yielded_as_failed_futures() -> None:
    ok: Future = Future()
    bad: Future = Future()
    bad.set_exception(RuntimeError("nope"))
    ok.set_result(1)
    replies = ReplySet([FutureReply(bad), FutureReply(ok)])
    first, second = list(replies)
    with pytest.raises(RuntimeError, match="nope"):
        first.get_reply()
    assert second.get_reply() == 1


def test_bare_futures_are_wrapped() -> None:
    fut: Future = Future()
    fut.set_result(5)
    replies = ReplySet([fut])
    reply = replies.get_next_future_reply()
    assert isinstance(reply, FutureReply) and reply.get_int_reply() == 5


def test_iteration_is_bounded_by_the_default_timeout() -> None:
    done: Future = Future()
    done.set_result(1)
    replies = ReplySet([FutureReply(done), FutureReply(Future())], timeout=0.01)
    it = iter(replies)
    assert next(it).get_reply() == 1
    with pytest.raises(PagletTimeoutError, match="1 replies still pending"):
        next(it)


def test_many_threads_resolving_hundreds_of_futures() -> None:
    count = 300
    futures: list[Future] = [Future() for _ in range(count)]
    replies = ReplySet(FutureReply(f) for f in futures)
    completion: list[int] = []
    lock = threading.Lock()

    def resolve(start: int) -> None:
        for i in range(start, count, 4):
            with lock:  # record and complete atomically, so the order is well defined
                completion.append(i)
                futures[i].set_result(i)

    threads = [threading.Thread(target=resolve, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    received = [r.get_reply() for r in replies]
    for t in threads:
        _join(t)
    assert received == completion
    assert sorted(received) == list(range(count))


def test_waiting_for_the_next_reply_wakes_on_completion() -> None:
    fut: Future = Future()
    replies = ReplySet([FutureReply(fut)])
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(replies.wait_for_all_replies(30)))
    waiter.start()
    fut.set_result(None)
    _join(waiter)
    assert result == [True]
