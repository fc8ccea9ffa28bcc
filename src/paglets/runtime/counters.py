"""The host's event counters: plain integers bumped on hot paths, read by `/metrics`.

A prometheus `Counter.inc()` takes a lock and a float add per call; a message delivery here
costs one attribute increment instead, and the collector in `metrics.py` reads the values
at scrape time. `+=` on an attribute is not atomic across threads, so two threads bumping
the same counter in the same instant can lose one increment: the counts are monitoring
figures (monotonic, almost exact), never accounting.

This module imports nothing, so the host can hold its counters without loading
prometheus-client.
"""

from __future__ import annotations

__all__ = ["MOVE_KINDS", "HostCounters"]

MOVE_KINDS = ("dispatch", "retract", "clone")


class HostCounters:
    """Totals since the host started. Names say what happened, on which side of a move.

    * `messages_delivered` / `messages_failed`: handler turns that returned / raised;
      `messages_queued`: messages stored for an inactive paglet.
    * `moves_<kind>`: moves this host sent away and committed (source side), per kind.
    * `transfers_<role>_<outcome>`: decided transfers; role `out` (source) or `in`
      (target), outcome committed, aborted (no answer, or the source gave up) or
      rejected (the target refused it at PREPARE).
    """

    __slots__ = (
        "messages_delivered",
        "messages_failed",
        "messages_queued",
        "moves_clone",
        "moves_dispatch",
        "moves_retract",
        "transfers_in_aborted",
        "transfers_in_committed",
        "transfers_in_rejected",
        "transfers_out_aborted",
        "transfers_out_rejected",
    )

    def __init__(self) -> None:
        self.messages_delivered = 0
        self.messages_failed = 0
        self.messages_queued = 0
        self.moves_clone = 0
        self.moves_dispatch = 0
        self.moves_retract = 0
        self.transfers_in_aborted = 0
        self.transfers_in_committed = 0
        self.transfers_in_rejected = 0
        self.transfers_out_aborted = 0
        self.transfers_out_rejected = 0

    def moved(self, kind: str) -> None:
        """A move of `kind` (dispatch, retract, clone) committed on the source side."""
        if kind == "dispatch":
            self.moves_dispatch += 1
        elif kind == "retract":
            self.moves_retract += 1
        elif kind == "clone":
            self.moves_clone += 1

    @property
    def transfers_out_committed(self) -> int:
        return self.moves_dispatch + self.moves_retract + self.moves_clone

    def snapshot(self) -> dict[str, int]:
        """Every counter by name (for tests and diagnostics)."""
        out = {name: getattr(self, name) for name in self.__slots__}
        out["transfers_out_committed"] = self.transfers_out_committed
        return out
