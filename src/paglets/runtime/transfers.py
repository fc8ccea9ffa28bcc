"""Moving a paglet between host processes, exactly once (architecture §7, network.md §2).

Source S runs the departure hooks in P's turn, records PREPARING, sends PREPARE; target T
validates, persists, builds the instance and runs the arrival hooks while P is not yet
reachable, and answers PREPARED. S then records COMMITTED (P leaves, a forwarding pointer
stays) and sends COMMIT; T makes P live. A lost COMMIT is resent until acknowledged; a T
holding a PREPARED arrival without COMMIT asks S for the outcome. At every instant there
is at least one durable copy of P and at most one live copy.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from paglets.core.errors import (
    SerializationError,
)
from paglets.core.ids import validate_agent_id
from paglets.persistence.transfer_log import Pointer, TransferLog
from paglets.remote.proxy import PagletProxy
from paglets.remote.transfer import TransferTicket

if TYPE_CHECKING:
    from paglets.runtime.host import Host

from paglets.runtime.arrivals import Arrivals
from paglets.runtime.departures import Departures
from paglets.runtime.envelope import check_tid, fault

__all__ = ["DEFAULT_RETENTION", "Transfers", "fault"]

DEFAULT_RETENTION = 7 * 86400.0
PRUNE_EVERY = 600.0


class Transfers:
    """The move protocol of one host: both sides, their durable log, timers and recovery."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.log = TransferLog(host.store)
        self.departures = Departures(host, self.log)
        self.arrivals = Arrivals(host, self.log)
        self.next_tick = 0.0  # when the timers should call tick() next
        self.pointer_ttl = DEFAULT_RETENTION  # --pointer-ttl
        self.log_retention = DEFAULT_RETENTION  # --transfer-log-retention
        self._next_prune = 0.0

    def move(self, agent_id: str, target: str | TransferTicket, kind: str) -> PagletProxy:
        """Dispatch, retract or clone `agent_id` to another host process."""
        return self.departures.move(agent_id, target, kind)

    def prepare(self, tid: str, body: bytes) -> dict[str, Any]:
        return self.arrivals.prepare(tid, body)

    def commit(self, tid: str, body: bytes) -> dict[str, Any]:
        return self.arrivals.commit(tid, body)

    def abort(self, tid: str) -> dict[str, Any]:
        return self.arrivals.abort(tid)

    def wait_arrival(self, agent_id: str, timeout: float) -> bool:
        return self.arrivals.wait_arrival(agent_id, timeout)

    def status(self, tid: str) -> dict[str, Any]:
        check_tid(tid)
        record = self.log.get(tid, "source")
        if record is None:
            target = self.log.get(tid, "target")
            if target is not None:
                return {"transfer_id": tid, "role": "target", **target.to_wire()}
            return {"transfer_id": tid, "decision": "UNKNOWN"}
        decision = "COMMITTED" if record.status in ("COMMITTED", "ACKED") else record.status
        return {
            "transfer_id": tid,
            "decision": decision,
            "epoch": record.epoch,
            "target_host_id": (record.header.get("target") or {}).get("host_id"),
        }

    def note_location(self, agent_id: str, body: dict[str, Any]) -> dict[str, Any]:
        validate_agent_id(agent_id)
        try:
            pointer = Pointer(
                agent_id,
                str(body["url"]),
                str(body.get("host_name", "")),
                str(body.get("host_id", "")),
                int(body["epoch"]),
                self.host.address,
                time.time(),
            )
        except (KeyError, TypeError, ValueError):
            raise SerializationError(
                "a location needs url and epoch", code="invalid-body"
            ) from None
        if agent_id not in self.host.registry.live:
            self.log.set_pointer(pointer)
        return {"ok": True}

    def location(self, agent_id: str) -> dict[str, Any]:
        host = self.host
        validate_agent_id(agent_id)
        cell = host.registry.live.get(agent_id)
        if cell is not None:
            return {
                "agent_id": agent_id,
                "state": "live",
                "host_name": host.name,
                "host_url": host.address,
                "host_id": host.host_id,
                "epoch": cell.info.epoch,
                "source": "local",
            }
        row = host.store.get_agent(agent_id)
        if row is not None:
            return {
                "agent_id": agent_id,
                "state": "inactive",
                "host_name": host.name,
                "host_url": host.address,
                "host_id": host.host_id,
                "epoch": row.epoch,
                "source": "local",
            }
        pointer = self.log.pointer(agent_id)
        if pointer is not None:
            return {
                "agent_id": agent_id,
                "state": "moved",
                "host_name": pointer.host_name,
                "host_url": pointer.url,
                "host_id": pointer.host_id,
                "epoch": pointer.epoch,
                "source": "pointer",
            }
        return {
            "agent_id": agent_id,
            "state": "unknown",
            "host_name": None,
            "host_url": None,
            "host_id": None,
            "epoch": 0,
            "source": "local",
        }

    def recover(self) -> None:
        """At start, before live paglets are recovered (network.md §2.5 rows 9-12)."""
        for record in self.log.open_records("source", ("PREPARING",)):
            self.log.set_status(record.transfer_id, "ABORTED")
            self.departures.send_abort_later(
                record.peer_url, record.transfer_id, record.agent_id, record.epoch
            )
        for record in self.log.open_records("target", ("PREPARED",)):
            if record.hooks_done:
                with self.host.registry.lock:
                    self.host.registry.reserved.add(record.agent_id)
            else:  # hooks never finished: no PREPARED answer was sent, so the source will resend or abort
                self.log.store.execute(
                    "DELETE FROM transfers WHERE transfer_id = ?", (record.transfer_id,)
                )

    def tick(self) -> None:
        """Resend COMMITs, ask STATUS for old PREPAREDs (called by the host's timers)."""
        now = time.time()
        self.next_tick = now + 0.25
        for record in self.log.open_records("source", ("COMMITTED",)):
            if record.next_attempt <= now:
                self.departures.send_commit(record)
        for record in self.log.open_records("target", ("PREPARED",)):
            if record.hooks_done and now > record.deadline + 1.0 and record.next_attempt <= now:
                self.arrivals.ask_status(record)
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY
            self.log.prune(
                decided_before=now - self.log_retention, pointers_before=now - self.pointer_ttl
            )

    def listing(self, **filters: Any) -> list[dict[str, Any]]:
        return [r.to_wire() for r in self.log.listing(**filters)]
