"""A paglet for the relay tests: it counts the runs of its handlers, and one handler takes
as long as it is told, so a relayed delivery can outlive the hub's deadline."""

from __future__ import annotations

import time
from dataclasses import dataclass

from paglets import Message, Paglet, PagletState


@dataclass
class TallyState(PagletState):
    runs: int = 0


class Tally(Paglet[TallyState]):
    """`add` counts one run; `slow` (arg `seconds`) counts one run after that long; `get`
    answers the count; `blob` (arg `size`) answers that many bytes."""

    State = TallyState

    def handle_message(self, message: Message) -> object:
        if message.kind == "add":
            self.state.runs += 1
            return self.state.runs
        if message.kind == "slow":
            time.sleep(float(message.get_arg("seconds", 1.0)))
            self.state.runs += 1
            return self.state.runs
        if message.kind == "get":
            return self.state.runs
        if message.kind == "blob":
            return bytes(int(message.get_arg("size", 0)))
        return self.not_handled()
