"""DeactivationPolicy / DeactivationRequest / QueuedMessage / InactiveRecord value types."""

from __future__ import annotations

import dataclasses
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paglets.persistence import (
    DeactivationPolicy,
    DeactivationRequest,
    InactiveRecord,
    QueuedMessage,
)

POLICY_KEYS = {
    "activate_on_message",
    "queue_messages_when_inactive",
    "activate_on_startup",
    "activate_at",
}


def test_policy_defaults_and_wire_keys() -> None:
    policy = DeactivationPolicy()
    assert policy.activate_on_message is True
    assert policy.queue_messages_when_inactive is True
    assert policy.activate_on_startup is False
    assert policy.activate_at is None
    wire = policy.to_wire()
    assert set(wire) == POLICY_KEYS
    assert DeactivationPolicy.from_wire(wire) == policy


def test_policy_is_frozen_and_hashable() -> None:
    policy = DeactivationPolicy(activate_on_startup=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.activate_on_startup = False  # type: ignore[misc]
    assert hash(policy) == hash(DeactivationPolicy(activate_on_startup=True))


def test_policy_after_sets_absolute_time() -> None:
    before = time.time()
    policy = DeactivationPolicy.after(30, activate_on_message=False)
    after = time.time()
    assert policy.activate_at is not None
    assert before + 30 <= policy.activate_at <= after + 30
    assert policy.activate_on_message is False


@pytest.mark.parametrize(
    "field", ["activate_on_message", "queue_messages_when_inactive", "activate_on_startup"]
)
@pytest.mark.parametrize("bad", ["false", 0, 1, None])
def test_policy_bools_must_be_bools(field: str, bad: object) -> None:
    with pytest.raises(TypeError, match=field):
        DeactivationPolicy(**{field: bad})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=field):
        DeactivationPolicy.from_wire({field: bad})


@pytest.mark.parametrize("bad", ["10", True, [1]])
def test_policy_activate_at_must_be_number(bad: object) -> None:
    with pytest.raises(TypeError, match="activate_at"):
        DeactivationPolicy(activate_at=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="activate_at"):
        DeactivationPolicy.from_wire({"activate_at": bad})


def test_policy_activate_at_rejects_nan_and_keeps_ints_as_float() -> None:
    with pytest.raises(ValueError, match="finite"):
        DeactivationPolicy(activate_at=float("nan"))
    assert DeactivationPolicy(activate_at=5).activate_at == 5.0


def test_policy_from_wire_ignores_unknown_and_defaults_missing() -> None:
    policy = DeactivationPolicy.from_wire({"activate_on_startup": True, "extra": 1})
    assert policy == DeactivationPolicy(activate_on_startup=True)
    assert DeactivationPolicy.from_wire({}) == DeactivationPolicy()
    with pytest.raises(ValueError, match="JSON object"):
        DeactivationPolicy.from_wire([])  # type: ignore[arg-type]


@given(
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.none() | st.floats(allow_nan=False, allow_infinity=False),
)
def test_policy_round_trip(a: bool, b: bool, c: bool, at: float | None) -> None:
    policy = DeactivationPolicy(a, b, c, at)
    assert DeactivationPolicy.from_wire(policy.to_wire()) == policy


def test_request_defaults_and_wire() -> None:
    request = DeactivationRequest()
    assert request.to_wire() == {
        "reason": "deactivate",
        "source": "external",
        "policy": None,
        "metadata": {},
    }
    assert DeactivationRequest.from_wire({}) == request
    # Default metadata is not shared between instances.
    assert DeactivationRequest().metadata is not request.metadata


def test_request_round_trip_with_policy() -> None:
    request = DeactivationRequest(
        reason="shutdown",
        source="host",
        policy=DeactivationPolicy(activate_on_startup=True),
        metadata={"by": "test"},
    )
    wire = request.to_wire()
    assert set(wire) == {"reason", "source", "policy", "metadata"}
    assert set(wire["policy"]) == POLICY_KEYS
    assert DeactivationRequest.from_wire({**wire, "unknown": 1}) == request


def test_request_accepts_policy_wire_dict_and_validates() -> None:
    request = DeactivationRequest(policy={"activate_on_message": False})  # type: ignore[arg-type]
    assert request.policy == DeactivationPolicy(activate_on_message=False)
    with pytest.raises(TypeError, match="reason"):
        DeactivationRequest(reason=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="activate_on_message"):
        DeactivationRequest.from_wire({"policy": {"activate_on_message": "yes"}})
    with pytest.raises(ValueError, match="metadata"):
        DeactivationRequest.from_wire({"metadata": [1, 2]})


def test_queued_message_and_inactive_record_round_trip() -> None:
    queued = QueuedMessage({"kind": "ping", "args": {}}, True, 12.5)
    assert queued.to_wire() == {
        "message": {"kind": "ping", "args": {}},
        "oneway": True,
        "queued_at": 12.5,
    }
    assert QueuedMessage.from_wire(queued.to_wire()) == queued

    record = InactiveRecord(
        envelope={"agent_id": "a1", "state": {"n": 1}},
        policy=DeactivationPolicy(activate_at=99.0),
        request=DeactivationRequest(reason="idle"),
        deactivated_at=10.0,
        queued_messages=(queued,),
    )
    wire = record.to_wire()
    assert wire["schema_version"] == 1
    assert set(wire) == {
        "schema_version",
        "envelope",
        "policy",
        "request",
        "deactivated_at",
        "queued_messages",
    }
    assert InactiveRecord.from_wire(wire) == record


def test_inactive_record_from_wire_defaults_missing() -> None:
    record = InactiveRecord.from_wire({"envelope": {"agent_id": "x"}})
    assert record.policy == DeactivationPolicy()
    assert record.request is None
    assert record.queued_messages == ()
    with pytest.raises(ValueError, match="oneway"):
        QueuedMessage.from_wire({"message": {}, "oneway": "no"})
