"""Unit tests for paglets.core.events: the frozen hook events."""

from __future__ import annotations

import dataclasses
import time

import pytest

from paglets.core.events import (
    CloneEvent,
    CreationEvent,
    MobilityEvent,
    PagletEvent,
    PersistencyEvent,
)

BASE = {"agent_id": "a1", "host_name": "h", "host_address": "http://127.0.0.1:1"}
HOSTS = {
    "source_host_name": "s",
    "source_host_address": "http://s",
    "target_host_name": "t",
    "target_host_address": "http://t",
}


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_field_names_match_the_spec() -> None:
    base = ["agent_id", "host_name", "host_address", "timestamp"]
    assert _names(PagletEvent) == base
    assert _names(CreationEvent) == [*base, "init"]
    assert _names(MobilityEvent) == [
        *base,
        "source_host_name",
        "source_host_address",
        "target_host_name",
        "target_host_address",
        "reason",
        "transfer_id",
        "epoch",
    ]
    assert _names(CloneEvent) == [
        *base,
        "source_agent_id",
        "clone_agent_id",
        "source_host_name",
        "source_host_address",
        "target_host_name",
        "target_host_address",
        "transfer_id",
    ]
    assert _names(PersistencyEvent) == [*base, "reason", "request", "policy"]


def test_subclasses_are_paglet_events() -> None:
    for cls in (CreationEvent, MobilityEvent, CloneEvent, PersistencyEvent):
        assert issubclass(cls, PagletEvent)


def test_defaults() -> None:
    before = time.time()
    event = CreationEvent(**BASE)
    assert event.init is None
    assert before <= event.timestamp <= time.time()
    mobility = MobilityEvent(**BASE, **HOSTS, reason="dispatch")
    assert mobility.transfer_id is None and mobility.epoch == 0
    clone = CloneEvent(**BASE, **HOSTS, source_agent_id="a1", clone_agent_id="a2")
    assert clone.transfer_id is None
    persistency = PersistencyEvent(**BASE, reason="activate")
    assert persistency.request is None and persistency.policy is None


def test_all_fields_set_by_keyword() -> None:
    event = MobilityEvent(
        **BASE, **HOSTS, reason="retract", transfer_id="t1", epoch=3, timestamp=1.0
    )
    assert (event.reason, event.transfer_id, event.epoch, event.timestamp) == (
        "retract",
        "t1",
        3,
        1.0,
    )
    assert event.source_host_address == "http://s"
    assert event.target_host_name == "t"


def test_events_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        PagletEvent("a1", "h", "http://h")  # type: ignore[misc]


def test_required_fields_are_required() -> None:
    with pytest.raises(TypeError, match="reason"):
        MobilityEvent(**BASE, **HOSTS)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="clone_agent_id"):
        CloneEvent(**BASE, **HOSTS, source_agent_id="a1")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="agent_id"):
        CreationEvent(host_name="h", host_address="x")  # type: ignore[call-arg]


def test_events_are_frozen_and_slotted() -> None:
    event = PersistencyEvent(**BASE, reason="dispose")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.reason = "other"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")


def test_events_compare_by_value() -> None:
    a = CreationEvent(**BASE, init={"x": 1}, timestamp=5.0)
    b = CreationEvent(**BASE, init={"x": 1}, timestamp=5.0)
    assert a == b
    assert dataclasses.replace(a, init=None) != a
