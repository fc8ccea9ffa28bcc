"""Paglet classes for the checkpoint and recovery tests (tests/system/test_crash_recovery.py).

`Spawner` creates many `Tick`s inside a host process and drives their state with
synchronous sends from its own handler (fast: the sender takes each target's turn), so a
test can fill a `paglets host` process with thousands of changing paglets through one
HTTP call per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paglets import Message, Paglet, PagletState


@dataclass
class TickState(PagletState):
    round: int = 0
    recovered: int = 0


class Tick(Paglet[TickState]):
    State = TickState

    def on_activation(self, event: Any) -> None:
        if event.reason == "recover":
            self.state.recovered += 1

    def handle_message(self, message: Message) -> Any:
        if message.kind == "tick":
            self.state.round = int(message.get_arg("round"))
            return self.state.round
        if message.kind == "get":
            return [self.state.round, self.state.recovered]
        return self.not_handled()


@dataclass
class SpawnerState(PagletState):
    ids: list[str] = field(default_factory=list)


class Spawner(Paglet[SpawnerState]):
    SUBSCRIBED_MESSAGES = ()
    State = SpawnerState

    def handle_message(self, message: Message) -> Any:
        kind = message.kind
        if kind == "spawn":
            n = int(message.get_arg("n"))
            for _ in range(n):
                self.state.ids.append(self.context.create_paglet(Tick).agent_id)
            ids = self.state.ids
            return {
                "count": len(ids),
                "sample": ids[:3] + ids[len(ids) // 2 : len(ids) // 2 + 2] + ids[-3:],
            }
        if kind == "tick_all":
            round_ = int(message.get_arg("round"))
            tick = Message("tick", {"round": round_})
            for agent_id in self.state.ids:
                self.send(agent_id, tick)
            return len(self.state.ids)
        if kind == "summary":
            rounds: dict[int, int] = {}
            recovered = 0
            for agent_id in self.state.ids:
                round_, times = self.send(agent_id, Message("get"))
                rounds[round_] = rounds.get(round_, 0) + 1
                recovered += 1 if times >= 1 else 0
            return {
                "count": len(self.state.ids),
                "rounds": {str(k): v for k, v in sorted(rounds.items())},
                "recovered": recovered,
            }
        return self.not_handled()


# -- STATE_VERSION ---------------------------------------------------------------------------


@dataclass
class CountV1(PagletState):
    """What version 1 of `Versioned` stored."""

    count: int = 0


@dataclass
class TotalV2(PagletState):
    total: int = 0
    label: str = ""
    seen: list[str] = field(default_factory=list)


class Versioned(Paglet[TotalV2]):
    """Version 2 renamed `count` to `total` (ten times larger) and added a label."""

    State = TotalV2
    STATE_VERSION = 2

    @classmethod
    def migrate_state(cls, payload: dict[str, Any], from_version: int) -> dict[str, Any]:
        if from_version == 1:
            return {"total": int(payload.get("count", 0)) * 10, "label": "migrated from v1"}
        return payload

    def on_activation(self, event: Any) -> None:
        self.state.seen.append(f"{event.reason}:{self.state.total}")

    def handle_message(self, message: Message) -> Any:
        if message.kind == "total":
            return self.state.total
        return self.not_handled()
