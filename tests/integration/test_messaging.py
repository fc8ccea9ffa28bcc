"""Messaging on one in-process host (api.md §1.6, §2, §5; architecture.md §5, §8).

Every test uses a real started host. Handlers that must stay busy block on a gate (a
`threading.Event` in `support.messaging_models.GATES`), never on a sleep.
"""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

import paglets
from paglets import (
    FUTURE,
    ONEWAY,
    SYNCHRONOUS,
    Host,
    HostError,
    InvalidAgentError,
    Message,
    NotHandledError,
    PagletProxy,
    PagletTimeoutError,
    RemoteHandlerError,
)
from paglets.core.errors import ForbiddenError, RemoteHostError, SerializationError
from paglets.core.messages import UNQUEUED_PRIORITY
from support import messaging_models as mm
from support.messaging_models import (
    WHEN,
    Color,
    Deaf,
    Echo,
    FailingRun,
    PingOnly,
    Point,
    Quiet,
)
from support.waiting import wait_until


@pytest.fixture(autouse=True)
def _release_gates() -> Iterator[None]:
    yield
    mm.release_all()


def block(proxy: PagletProxy) -> threading.Event:
    """Put the paglet in a long `block` handler; returns the gate that releases it."""
    gate = mm.gate(proxy.agent_id)
    gate.clear()
    mm.started(proxy.agent_id).clear()
    mm.finished(proxy.agent_id).clear()
    proxy.send_oneway(Message("block"))
    assert mm.started(proxy.agent_id).wait(10), "the block handler never started"
    return gate


def events_of(host: Host, kind: str, agent_id: str) -> list[Any]:
    return [e for e in host.list_events(limit=10_000) if e.kind == kind and e.agent_id == agent_id]


# -- replies of every codec kind ------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("int", 42),
        ("str", "hello"),
        ("dataclass", {"x": 1, "y": 2, "label": "p"}),
        ("enum", "blue"),
        ("tuple", [1, "a", 2.5]),
        ("bytes", b"\x00\xffpaglets"),
        ("nested", {"points": [{"x": 3, "y": 4, "label": ""}], "color": "red", "pair": [5, 6]}),
    ],
)
def test_untyped_replies_arrive_in_wire_form(host: Host, what: str, expected: Any) -> None:
    proxy = host.create(Echo)
    reply = proxy.send(Message("reply", {"what": what}))
    assert reply == expected
    assert type(reply) is type(expected)


def test_untyped_datetime_reply_is_an_iso_string(host: Host) -> None:
    reply = host.create(Echo).send(Message("reply", {"what": "datetime"}))
    assert isinstance(reply, str)
    assert datetime.fromisoformat(reply) == WHEN


@pytest.mark.parametrize(
    ("what", "reply_type", "expected"),
    [
        ("dataclass", Point, Point(1, 2, "p")),
        ("enum", Color, Color.BLUE),
        ("tuple", tuple[int, str, float], (1, "a", 2.5)),
        ("bytes", bytes, b"\x00\xffpaglets"),
        ("datetime", datetime, WHEN),
        ("int", int, 42),
        (
            "nested",
            dict[str, Any],
            {"points": [{"x": 3, "y": 4, "label": ""}], "color": "red", "pair": [5, 6]},
        ),
    ],
)
def test_typed_replies_convert_to_reply_type(
    host: Host, what: str, reply_type: Any, expected: Any
) -> None:
    proxy = host.create(Echo)
    reply = proxy.send(Message("reply", {"what": what}), reply_type=reply_type)
    assert reply == expected
    assert type(reply) is type(expected)
    future = proxy.send_future(Message("reply", {"what": what}), reply_type=reply_type)
    assert future.get_reply(10) == expected


@pytest.mark.parametrize(
    ("what", "reply_type"),
    [("str", int), ("dataclass", Color), ("int", Point), ("enum", Point), ("tuple", bytes)],
)
def test_reply_type_mismatch_is_a_serialization_error(
    host: Host, what: str, reply_type: Any
) -> None:
    proxy = host.create(Echo)
    with pytest.raises(SerializationError):
        proxy.send(Message("reply", {"what": what}), reply_type=reply_type)
    with pytest.raises(SerializationError):
        proxy.send_future(Message("reply", {"what": what}), reply_type=reply_type).get_reply(10)


# -- what handlers see ------------------------------------------------------------------------


def _inspect_message() -> Message:
    return Message(
        "inspect",
        {
            "point": Point(1, 2, "p"),
            "color": Color.RED,
            "tags": ("a", "b"),
            "when": WHEN,
            "blob": b"xy",
            "items": [1, 2],
        },
        arg=Point(3, 4),
    )


def test_handlers_see_args_and_arg_as_builtins(host: Host) -> None:
    seen = host.create(Echo).send(_inspect_message())
    assert seen["types"] == {
        "point": "dict",
        "color": "str",
        "tags": "list",
        "when": "str",
        "blob": "bytes",
        "items": "list",
    }
    assert seen["arg_type"] == "dict"
    assert seen["point"] == {"x": 1, "y": 2, "label": "p"}
    assert seen["arg"] == {"x": 3, "y": 4, "label": ""}
    assert seen["blob"] == b"xy"


@pytest.mark.parametrize("mode", ["send", "send_future", "send_oneway"])
def test_the_callers_message_is_never_mutated(host: Host, mode: str) -> None:
    proxy = host.create(Echo)
    message = _inspect_message()
    args = message.args
    point, items, arg = args["point"], args["items"], message.arg
    before = copy.deepcopy({k: getattr(message, k) for k in message.to_wire()})

    if mode == "send":
        proxy.send(message)
    elif mode == "send_future":
        proxy.send_future(message).get_reply(10)
    else:
        proxy.send_oneway(message)
        wait_until(lambda: host.mailbox_status(proxy.agent_id)["delivered"] == 1)

    after = {k: getattr(message, k) for k in message.to_wire()}
    assert after == before  # kind, args, arg, sender, reply_to, priority, type, timestamp, id
    assert message.message_type == SYNCHRONOUS
    # The handler mutated its copy (a dataclass arrives as a dict, the list was appended to,
    # a key added); none of it reached the caller's objects.
    assert message.args is args and message.arg is arg
    assert args["point"] is point and point == Point(1, 2, "p")
    assert args["items"] is items and items == [1, 2]
    assert "added" not in args
    assert arg == Point(3, 4)


def test_delivered_copy_says_how_it_was_sent(host: Host) -> None:
    proxy = host.create(Echo)
    message = Message("mode")
    assert proxy.send(message) == SYNCHRONOUS
    assert proxy.send_future(message).get_reply(10) == FUTURE
    proxy.send_oneway(message)
    wait_until(lambda: len(mm.records(proxy.agent_id)) == 3)
    assert mm.records(proxy.agent_id) == [str(SYNCHRONOUS), str(FUTURE), str(ONEWAY)]
    assert message.message_type == SYNCHRONOUS


def test_message_sent_from_a_paglet_carries_sender_and_reply_to(host: Host) -> None:
    a, b = host.create(Echo), host.create(Echo)
    replies = a.send(Message("fanout"))
    assert replies == [{"id": b.agent_id, "sender": a.agent_id, "reply_to": host.address}]
    # From outside any paglet there is no sending paglet.
    assert b.send(Message("ping")) == {"id": b.agent_id, "sender": None, "reply_to": None}


# -- errors -----------------------------------------------------------------------------------


def test_not_handled_raises_not_handled_error(host: Host) -> None:
    proxy = host.create(Echo)
    with pytest.raises(NotHandledError):
        proxy.send(Message("not-handled"))
    with pytest.raises(NotHandledError):
        proxy.send(Message("no-such-kind"))
    with pytest.raises(NotHandledError):
        proxy.send_future(Message("not-handled")).get_reply(10)


def test_builtin_handler_error_keeps_its_type_message_and_traceback(host: Host) -> None:
    proxy = host.create(Echo)
    with pytest.raises(ValueError, match="bad input: because") as info:
        proxy.send(Message("fail", {"why": "because"}))
    exc = info.value
    assert isinstance(exc, RemoteHandlerError)
    assert isinstance(exc, HostError) and isinstance(exc, RemoteHostError)  # 2.0 handlers
    assert exc.remote_type == "builtins:ValueError"
    assert exc.remote_traceback and "ValueError: bad input: because" in exc.remote_traceback
    assert "handle_message" in exc.remote_traceback
    assert type(exc.__cause__) is ValueError
    assert str(exc.__cause__) == "bad input: because"
    # Both spellings catch it.
    try:
        proxy.send(Message("fail"))
    except RemoteHandlerError as caught:
        assert isinstance(caught, ValueError)
    else:
        pytest.fail("no error raised")


def test_paglets_errors_keep_their_class(host: Host) -> None:
    proxy = host.create(Echo)
    with pytest.raises(ForbiddenError, match="echo forbids this") as info:
        proxy.send(Message("fail-paglet"))
    assert type(info.value) is ForbiddenError
    assert not isinstance(info.value, RemoteHandlerError)


def test_other_handler_errors_arrive_as_remote_handler_error(host: Host) -> None:
    proxy = host.create(Echo)
    with pytest.raises(RemoteHandlerError, match="custom trouble") as info:
        proxy.send(Message("fail-custom"))
    assert info.value.remote_type == "support.messaging_models:CustomError"
    assert isinstance(info.value.__cause__, mm.CustomError)


def test_send_to_unknown_paglet_is_invalid_agent_error(host: Host) -> None:
    ghost = PagletProxy(host.address, "0" * 32)
    with pytest.raises(InvalidAgentError):
        ghost.send(Message("ping"))
    with pytest.raises(InvalidAgentError):
        ghost.send_future(Message("ping")).get_reply(10)


# -- priorities and turns ---------------------------------------------------------------------


def test_queued_messages_run_unqueued_first_then_by_priority_fifo_within_one(host: Host) -> None:
    proxy = host.create(Echo)
    gate = block(proxy)
    sends = [
        (3, "a"), (10, "b"), (1, "c"), (5, "d"), (UNQUEUED_PRIORITY, "u"), (5, "e"), (7, "f"),
        (10, "g"), (2, "h"), (4, "i"), (6, "j"), (8, "k"), (9, "l"), (1, "m"), (5, "n"),
    ]  # fmt: skip
    for priority, tag in sends:
        proxy.send_oneway(Message("record", {"tag": tag}, priority=priority))
    assert host.mailbox_status(proxy.agent_id)["queued"] == len(sends)
    gate.set()
    wait_until(lambda: len(mm.records(proxy.agent_id)) == len(sends))
    normal = [s for s in sends if s[0] != UNQUEUED_PRIORITY]
    expected = ["u"] + [tag for _, tag in sorted(normal, key=lambda s: -s[0])]  # stable: FIFO
    assert mm.records(proxy.agent_id) == expected


def test_one_way_messages_from_one_sender_keep_their_order(host: Host) -> None:
    proxy = host.create(Echo)
    tags = [f"m{i}" for i in range(100)]
    for tag in tags:
        proxy.send_oneway(Message("record", {"tag": tag}))
    wait_until(lambda: len(mm.records(proxy.agent_id)) == len(tags))
    assert mm.records(proxy.agent_id) == tags


def test_lifecycle_request_runs_before_queued_messages(host: Host) -> None:
    proxy = host.create(Echo)
    gate = block(proxy)
    for i in range(3):
        proxy.send_oneway(Message("record", {"tag": f"m{i}"}, priority=10))
    proxy.send_oneway(Message("record", {"tag": "u"}, priority=UNQUEUED_PRIORITY))
    outcome: list[Any] = []
    deactivating = threading.Thread(target=lambda: outcome.append(proxy.deactivate()))
    deactivating.start()
    wait_until(lambda: host.mailbox_status(proxy.agent_id)["queued"] == 5)
    gate.set()
    deactivating.join(20)
    assert outcome == [proxy]
    # The queued messages were not lost: they follow the inactive rules (activate, deliver).
    wait_until(lambda: len(mm.records(proxy.agent_id)) == 5)
    order = mm.records(proxy.agent_id)
    assert order[0] == "deactivate"
    assert sorted(order[1:]) == ["m0", "m1", "m2", "u"]


def test_sync_send_to_a_busy_paglet_times_out_and_is_never_executed(host: Host) -> None:
    proxy = host.create(Echo)
    gate = block(proxy)
    with pytest.raises(PagletTimeoutError) as info:
        proxy.send(Message("record", {"tag": "late"}), timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    gate.set()
    # FIFO: "late" would run before "after" if it had been kept.
    assert proxy.send(Message("record", {"tag": "after"})) == "after"
    assert mm.records(proxy.agent_id) == ["after"]
    status = host.mailbox_status(proxy.agent_id)
    assert status["delivered"] == 2  # block + after
    assert status["queued"] == 0


def test_sync_send_waits_for_a_busy_paglet_within_its_timeout(host: Host) -> None:
    proxy = host.create(Echo)
    gate = block(proxy)
    result: list[Any] = []
    caller = threading.Thread(target=lambda: result.append(proxy.send(Message("count"))))
    caller.start()
    wait_until(lambda: host.mailbox_status(proxy.agent_id)["queued"] == 1)
    gate.set()
    caller.join(20)
    assert result == [1]


# -- one-way, future, async -------------------------------------------------------------------


def test_send_oneway_returns_before_the_handler_runs(host: Host) -> None:
    proxy = host.create(Echo)
    mm.gate(proxy.agent_id).clear()
    assert proxy.send_oneway(Message("block")) is None
    # The handler cannot finish before the gate opens, so send_oneway did not wait for it.
    assert not mm.finished(proxy.agent_id).is_set()
    assert mm.started(proxy.agent_id).wait(10)
    mm.gate(proxy.agent_id).set()
    assert mm.finished(proxy.agent_id).wait(10)


def test_oneway_handler_errors_become_message_failed_events(host: Host) -> None:
    proxy = host.create(Echo)
    proxy.send_oneway(Message("fail", {"why": "oneway"}))
    failed = wait_until(lambda: events_of(host, "message-failed", proxy.agent_id))
    event = failed[0]  # type: ignore[index]
    assert "ValueError" in (event.error or "")
    assert "bad input: oneway" in (event.error or "")
    assert event.data.get("kind") == "fail"
    assert host.mailbox_status(proxy.agent_id)["failed"] == 1
    # The paglet is still usable.
    assert proxy.send(Message("count")) == 1


def test_send_future_replies_and_errors(host: Host) -> None:
    proxy = host.create(Echo)
    future = proxy.send_future(Message("reply", {"what": "int"}))
    assert future.wait_for_reply(10) is True
    assert future.is_available()
    assert future.get_reply() == 42
    assert future.get_int_reply() == 42

    failing = proxy.send_future(Message("fail", {"why": "future"}))
    assert failing.wait_for_reply(10) is True  # never raises the remote error
    with pytest.raises(ValueError, match="bad input: future") as info:
        failing.get_reply()
    assert isinstance(info.value, RemoteHandlerError)
    with pytest.raises(SerializationError):
        proxy.send_future(Message("reply", {"what": "str"})).get_int_reply(10)


def test_send_future_on_a_busy_paglet_times_out_then_completes(host: Host) -> None:
    proxy = host.create(Echo)
    gate = block(proxy)
    future = proxy.send_future(Message("reply", {"what": "int"}))
    assert future.wait_for_reply(0.05) is False
    with pytest.raises(PagletTimeoutError):
        future.get_reply(0.05)
    assert not future.is_available()
    gate.set()
    assert future.get_reply(10) == 42


def test_send_async_and_await_future_inside_asyncio_run(host: Host) -> None:
    proxies = [host.create(Echo) for _ in range(5)]

    async def main() -> tuple[Any, ...]:
        one = await proxies[0].send_async(Message("reply", {"what": "int"}))
        typed = await proxies[0].send_async(
            Message("reply", {"what": "dataclass"}), reply_type=Point
        )
        awaited = await proxies[1].send_future(Message("reply", {"what": "tuple"}))
        many = await asyncio.gather(*(p.send_async(Message("ping")) for p in proxies))
        with pytest.raises(ValueError, match="bad input"):
            await proxies[2].send_async(Message("fail"))
        with pytest.raises(NotHandledError):
            await proxies[2].send_future(Message("not-handled"))
        return one, typed, awaited, many

    one, typed, awaited, many = asyncio.run(main())
    assert one == 42
    assert typed == Point(1, 2, "p")
    assert awaited == [1, "a", 2.5]
    assert [r["id"] for r in many] == [p.agent_id for p in proxies]


def test_async_handler_runs_on_the_host_loop_thread(host: Host) -> None:
    proxy = host.create(mm.AsyncEcho)
    name = proxy.send(Message("where"))
    assert name.startswith("paglets-loop")
    assert proxy.send_future(Message("where")).get_reply(10).startswith("paglets-loop")
    with pytest.raises(ValueError, match="async trouble"):
        proxy.send(Message("fail"))
    with pytest.raises(NotHandledError):
        proxy.send(Message("nothing"))


def test_async_handler_can_await_send_async(host: Host) -> None:
    echo = host.create(Echo)
    proxy = host.create(mm.AsyncEcho)
    assert proxy.send(Message("ask", {"target": echo.agent_id})) == 42


def test_blocking_send_on_the_loop_thread_raises_runtime_error(host: Host) -> None:
    echo = host.create(Echo)
    proxy = host.create(mm.AsyncEcho)
    outcome = proxy.send(Message("blocking-send", {"target": echo.agent_id}), timeout=10)
    assert outcome["raised"] is not None, "a blocking send on the event loop did not raise"
    assert "send_async" in outcome["message"]
    assert host.mailbox_status(echo.agent_id)["delivered"] == 0


# -- multicast --------------------------------------------------------------------------------


def _replies(replies: Any) -> list[Any]:
    assert replies.wait_for_all_replies(10)
    return [reply.get_reply() for reply in replies]


def test_multicast_reaches_every_live_paglet(host: Host) -> None:
    ids = [host.create(Echo).agent_id for _ in range(6)]
    replies = host.multicast_message("ping")
    assert len(replies) == len(ids)
    assert sorted(r["id"] for r in _replies(replies)) == sorted(ids)
    # A Message works too, and the caller's object is untouched.
    message = Message("ping")
    assert len(host.multicast_message(message)) == len(ids)
    assert message.message_type == SYNCHRONOUS


def test_multicast_respects_subscriptions(host: Host) -> None:
    echoes = [host.create(Echo).agent_id for _ in range(2)]
    deaf = host.create(Deaf)
    ping_only = host.create(PingOnly)

    replies = host.multicast_message("ping")
    assert len(replies) == 3
    got = sorted(r["id"] for r in _replies(replies))
    assert got == sorted([*echoes, ping_only.agent_id])

    others = host.multicast_message("count")
    assert len(others) == 2  # PingOnly and Deaf do not get "count"
    assert sorted(_replies(others)) == [1, 1]

    assert deaf.send(Message("subscribe", {"kind": "ping"})) is True
    replies = host.multicast_message("ping")
    assert len(replies) == 4
    assert deaf.agent_id in {r["id"] for r in _replies(replies)}
    assert len(host.multicast_message("count")) == 2  # still only the kind it subscribed to


def test_multicast_non_handlers_give_not_handled_futures(host: Host) -> None:
    echoes = [host.create(Echo).agent_id for _ in range(2)]
    for _ in range(3):
        host.create(Quiet)
    replies = host.multicast_message("ping")
    assert len(replies) == 5
    assert replies.wait_for_all_replies(10)
    ok: list[str] = []
    not_handled = 0
    for reply in replies:
        try:
            ok.append(reply.get_reply()["id"])
        except NotHandledError:
            not_handled += 1
    assert sorted(ok) == sorted(echoes)
    assert not_handled == 3


def test_multicast_exclude(host: Host) -> None:
    ids = [host.create(Echo).agent_id for _ in range(4)]
    replies = host.multicast_message("ping", exclude=ids[:2])
    assert len(replies) == 2
    assert sorted(r["id"] for r in _replies(replies)) == sorted(ids[2:])


def test_paglet_multicast_from_a_handler_without_itself(host: Host) -> None:
    proxies = [host.create(Echo) for _ in range(4)]
    replies = proxies[0].send(Message("fanout"))
    assert sorted(r["id"] for r in replies) == sorted(p.agent_id for p in proxies[1:])
    assert {r["sender"] for r in replies} == {proxies[0].agent_id}


# -- at most once -----------------------------------------------------------------------------


def test_explicit_message_id_runs_the_handler_once(host: Host) -> None:
    proxy = host.create(Echo)
    first = proxy.send(Message("count", message_id="delivery-1"))
    second = proxy.send(Message("count", message_id="delivery-1"))
    assert first == second == 1
    assigned = Message("count")
    assigned.message_id = "delivery-2"  # assignment makes it explicit too
    assert proxy.send(assigned) == 2
    assert proxy.send(assigned) == 2
    assert proxy.get_state().count == 2
    assert host.mailbox_status(proxy.agent_id)["delivered"] == 2


def test_explicit_message_id_is_deduplicated_across_send_modes(host: Host) -> None:
    proxy = host.create(Echo)
    assert proxy.send(Message("count", message_id="shared")) == 1
    assert proxy.send_future(Message("count", message_id="shared")).get_reply(10) == 1
    proxy.send_oneway(Message("count", message_id="shared"))
    assert proxy.send(Message("count")) == 2  # FIFO: a second run of "shared" would come first
    assert proxy.get_state().count == 2


def test_reusing_a_message_without_explicit_id_runs_each_time(host: Host) -> None:
    proxy = host.create(Echo)
    message = Message("count")
    assert [proxy.send(message) for _ in range(3)] == [1, 2, 3]
    assert proxy.send_future(message).get_reply(10) == 4
    assert proxy.get_state().count == 4


# -- mailbox status and info ------------------------------------------------------------------


def test_mailbox_status_counts(host: Host) -> None:
    proxy = host.create(Echo)
    assert host.mailbox_status(proxy.agent_id) == {
        "queued": 0, "in_flight": 0, "delivered": 0, "failed": 0,
    }  # fmt: skip
    for _ in range(3):
        proxy.send(Message("count"))
    with pytest.raises(ValueError):
        proxy.send(Message("fail"))
    assert host.mailbox_status(proxy.agent_id) == {
        "queued": 0, "in_flight": 0, "delivered": 3, "failed": 1,
    }  # fmt: skip
    gate = block(proxy)
    proxy.send_oneway(Message("count"))
    proxy.send_oneway(Message("count"))
    status = host.mailbox_status(proxy.agent_id)
    assert status["queued"] == 2 and status["in_flight"] == 1
    gate.set()
    wait_until(lambda: host.mailbox_status(proxy.agent_id)["delivered"] == 6)
    assert host.mailbox_status(proxy.agent_id) == {
        "queued": 0, "in_flight": 0, "delivered": 6, "failed": 1,
    }  # fmt: skip
    assert proxy.info()["mailbox"] == host.mailbox_status(proxy.agent_id)


def test_info_fields(host: Host) -> None:
    proxy = host.create(Echo)
    proxy.send(Message("count"))
    info = proxy.info()
    assert info["agent_id"] == proxy.agent_id
    assert info["class_name"] == "support.messaging_models:Echo"
    assert info["active"] is True
    assert info["mailbox"]["delivered"] == 1
    assert isinstance(info["epoch"], int)
    assert info["home_url"] == host.address
    assert info["run_error"] is None


def test_run_failure_is_reported_and_the_paglet_stays_usable(host: Host) -> None:
    proxy = host.create(FailingRun)
    run_error = wait_until(lambda: proxy.info()["run_error"])
    assert "run exploded" in str(run_error)
    failed = wait_until(lambda: events_of(host, "run-failed", proxy.agent_id))
    assert "run exploded" in (failed[0].error or "")  # type: ignore[index]
    assert proxy.info()["active"] is True
    assert proxy.send(Message("count")) == 1
    assert proxy.send(Message("reply", {"what": "int"})) == 42


# -- top-level imports ------------------------------------------------------------------------

# The list of api.md §20, in its order.
# fmt: off
SPEC_ALL = [
    "Paglet", "PagletState", "PagletContext", "state_locked", "ACTIVE", "INACTIVE", "NOT_HANDLED",
    "Message", "FutureReply", "ReplySet", "SYNCHRONOUS", "FUTURE", "ONEWAY",
    "CreationEvent", "MobilityEvent", "CloneEvent", "PersistencyEvent",
    "PagletError", "HostError", "TransferError", "NotHandledError", "PagletInactiveError",
    "PagletCrashedError", "InvalidAgentError", "PagletTimeoutError", "RemoteHandlerError",
    "ArrivalMode", "ServiceScope", "Isolation", "CheckpointMode", "ItineraryPlan",
    "DeactivationPolicy", "DeactivationRequest", "Host", "HostClient",
    "PagletProxy", "PagletProxyRef", "TransferTicket",
    "ServiceContract", "ServiceOperation", "EmptyPayload", "ArtifactRef",
]
# fmt: on


def _modules_after(statement: str) -> set[str]:
    code = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(out.stdout))


def test_import_paglets_loads_only_the_standard_library() -> None:
    loaded = _modules_after("import paglets")
    assert "paglets" in loaded
    for name in ("msgspec", "aiohttp", "paglets.runtime", "paglets.cli"):
        assert name not in loaded, f"`import paglets` imported {name}"


def test_runtime_host_does_not_import_the_cli_rich_or_examples() -> None:
    loaded = _modules_after("import paglets.runtime.host")
    for name in ("paglets.cli", "rich", "paglets.examples"):
        assert name not in loaded, f"`import paglets.runtime.host` imported {name}"


def test_all_is_exactly_the_documented_list() -> None:
    assert len(paglets.__all__) == len(set(paglets.__all__))
    assert sorted(paglets.__all__) == sorted(SPEC_ALL)
    assert set(SPEC_ALL) <= set(dir(paglets))
    assert isinstance(paglets.__version__, str)


@pytest.mark.parametrize("name", SPEC_ALL)
def test_every_top_level_name_resolves(name: str) -> None:
    value = getattr(paglets, name)
    assert value is getattr(__import__("paglets", fromlist=[name]), name)
