"""The relay's frames, delivery ids and small rules (network.md §3.8), without sockets."""

from __future__ import annotations

import json
import time

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from paglets.core.errors import PagletTimeoutError, RemoteHostError
from paglets.remote.relay_frames import (
    PROTOCOL,
    Cancel,
    Chunk,
    Credit,
    Hello,
    Ping,
    Pong,
    RelaySettings,
    Req,
    Res,
    Welcome,
    decode,
    encode,
)
from paglets.runtime.relay_deliveries import DeliveryStore, Run
from paglets.runtime.relay_fallback import never_sent
from paglets.runtime.relay_http import delivery_id_for, request_headers, response_headers

FRAMES = [
    Hello(PROTOCOL, "n1", "a" * 32, code_version="dev", tags=["gpu"]),
    Welcome(PROTOCOL, "b" * 32, "hub", "http://hub:8765/relay/hosts/n1", [{"name": "hub"}]),
    Req(2, "k", "POST", "/agents/x/messages", "a=1", [("Content-Type", "application/json")], b"{}"),
    Req(4, "t:prepare", "POST", "/transfers/t/prepare", chunked=True, deadline_ms=500),
    Req(1, "d", "GET", "/health", target="http://other:8765"),
    Res(2, 200, [("Content-Type", "application/json")], b'{"ok":true}'),
    Res(4, 200, chunked=True),
    Chunk(4, 0, b"x" * 10),
    Chunk(4, 1, end=True),
    Credit(4, 1),
    Cancel(2, "k"),
    Ping(123),
    Pong(123),
]


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_every_frame_round_trips(frame: object) -> None:
    assert decode(encode(frame)) == frame


def test_the_tag_names_the_frame_and_a_wrong_field_names_its_path() -> None:
    raw = msgspec.msgpack.decode(encode(Credit(3, 2)))
    assert raw == {"t": "credit", "sid": 3, "seq": 2}
    with pytest.raises(msgspec.ValidationError, match=r"\$\.seq"):
        decode(msgspec.msgpack.encode({"t": "credit", "sid": 3, "seq": "two"}))
    with pytest.raises(msgspec.ValidationError):
        decode(msgspec.msgpack.encode({"t": "teleport", "sid": 1}))
    with pytest.raises((msgspec.MsgspecError, ValueError)):
        decode(msgspec.msgpack.encode(msgspec.msgpack.Ext(5, b"x")))


@given(
    sid=st.integers(min_value=0, max_value=2**40),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=st.text(min_size=1, max_size=40).map(lambda p: "/" + p),
    headers=st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=5),
    body=st.one_of(st.none(), st.binary(max_size=256)),
    deadline=st.integers(min_value=0, max_value=10**7),
)
def test_requests_round_trip(
    sid: int,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    deadline: int,
) -> None:
    req = Req(sid, "d", method, path, headers=headers, body=body, deadline_ms=deadline)
    assert decode(encode(req)) == req


def test_delivery_ids_come_from_the_request_when_it_has_one() -> None:
    assert delivery_id_for("POST", "/agents", {"Idempotency-Key": "k1"}, b"{}") == ("k1", True)
    assert delivery_id_for("POST", "/transfers/abc123/commit", {}, b"") == ("abc123:commit", True)
    body = json.dumps({"message": {"kind": "add", "message_id": "m-7"}}).encode()
    json_headers = {"Content-Type": "application/json"}
    assert delivery_id_for("POST", "/agents/x/messages", json_headers, body) == ("m-7", True)
    packed = msgspec.msgpack.encode({"message": {"kind": "add", "message_id": "m-8"}})
    packed_headers = {"Content-Type": "application/msgpack"}
    assert delivery_id_for("POST", "/agents/x/messages", packed_headers, packed) == ("m-8", True)
    fresh, keyed = delivery_id_for("POST", "/agents/x/messages", json_headers, b"not json")
    assert not keyed and len(fresh) == 32
    fresh, keyed = delivery_id_for("GET", "/health", {}, None)
    assert not keyed and fresh != delivery_id_for("GET", "/health", {}, None)[0]


def test_credentials_and_hop_by_hop_headers_never_cross_the_link() -> None:
    sent = [
        ("Authorization", "Bearer secret"),
        ("Cookie", "s=1"),
        ("Host", "hub:8765"),
        ("Content-Length", "2"),
        ("Connection", "keep-alive"),
        ("Content-Type", "application/json"),
        ("Idempotency-Key", "k"),
        ("X-Paglets-Deadline-Ms", "500"),
    ]
    assert [k for k, _ in request_headers(sent)] == [
        "Content-Type",
        "Idempotency-Key",
        "X-Paglets-Deadline-Ms",
    ]
    back = [("Content-Length", "9"), ("Transfer-Encoding", "chunked"), ("Location", "http://x")]
    assert response_headers(back) == [("Location", "http://x")]


def test_only_a_connection_never_made_may_go_through_the_hub() -> None:
    assert never_sent(RemoteHostError("could not reach http://x: connection refused (is ...)"))
    assert never_sent(RemoteHostError("could not reach http://x: unknown host name (nope)"))
    assert not never_sent(RemoteHostError("could not reach http://x: connection reset by peer"))
    assert not never_sent(PagletTimeoutError("connection refused, and then a timeout"))
    assert not never_sent(ValueError("connection refused"))


def test_settings_refuse_nonsense() -> None:
    assert RelaySettings().queue_limit == 1024
    with pytest.raises(ValueError, match="queue_limit"):
        RelaySettings(queue_limit=0)
    with pytest.raises(ValueError, match="positive"):
        RelaySettings(delivery_timeout=0)


def test_stored_deliveries_are_evicted_by_age_only() -> None:
    store = DeliveryStore(keep=600)
    runs = [Run(f"d{i}") for i in range(1000)]
    for run in runs:
        store.put(run)
    assert len(store) == 1000 and store.get("d0") is runs[0]
    store.drop(runs[0])
    assert store.get("d0") is None
    expired = DeliveryStore(keep=-1.0)  # everything is older than that
    first = Run("same")
    expired.put(first)
    assert expired.get("same") is None and len(expired) == 0


def test_an_id_stored_again_outlives_its_first_entry() -> None:
    store = DeliveryStore(keep=600)
    first, second = Run("x"), Run("x")
    store.put(first)
    store.drop(first)  # e.g. cancelled before it started
    store.put(second)
    store._order[0] = (time.monotonic() - 601, first)  # the first entry has expired
    assert store.get("x") is second
