"""The source side of a move (S): preflight, staging of registered files, departure hooks,
PREPARING, PREPARE, the COMMITTED decision and COMMIT (architecture §7)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from paglets.core.errors import (
    PagletError,
    PagletTimeoutError,
    RemoteHostError,
    TransferError,
    TransferTimeoutError,
    error_from_wire,
)
from paglets.core.events import CloneEvent, MobilityEvent
from paglets.core.ids import new_agent_id
from paglets.persistence.transfer_log import Pointer, TransferLog, TransferRecord
from paglets.remote.proxy import PagletProxy
from paglets.remote.transfer import TransferTicket
from paglets.runtime import local_hosts
from paglets.runtime.mailbox import Cell, CellGone

if TYPE_CHECKING:
    from paglets.runtime.host import Host

from paglets.runtime.envelope import (
    COMMIT_BACKOFF,
    ENVELOPE_TYPE,
    MSGPACK,
    PREFLIGHT_FRESH,
    PROTOCOL,
    STAGED_FILE_TTL,
    encode_envelope,
    error_body,
    fault,
)

log = logging.getLogger("paglets.transfers")

__all__ = ["Departures"]


class _NoAnswer(Exception):
    """PREPARE got no usable answer (reset, timeout, 5xx): the attempt may be repeated."""


class Departures:
    def __init__(self, host: Host, log: TransferLog) -> None:
        self.host = host
        self.log = log
        self._last_proposed: dict[str, int] = {}
        self._peers: dict[str, tuple[float, dict[str, Any]]] = {}

    def move(self, agent_id: str, target: str | TransferTicket, kind: str) -> PagletProxy:
        """Dispatch, retract or clone `agent_id` to another host process."""
        host = self.host
        ticket = TransferTicket.from_target(target)
        url = host.resolve_host_url(ticket.destination).rstrip("/")
        peer = self._preflight(url, ticket)
        cell = host._cell_of(agent_id)
        # Registered files go first, as artifacts on T, under a timeout of their own: the
        # ticket's clock starts after them (network.md §4).
        staged = self._stage_files(url, cell)
        deadline = time.monotonic() + ticket.timeout

        def op() -> PagletProxy:
            if cell.gone:
                raise CellGone
            return self._move_in_turn(cell, kind, url, peer, ticket, deadline, staged)

        return host.turns.call(cell, op, system=True, timeout=ticket.timeout, what=kind)

    def _preflight(self, url: str, ticket: TransferTicket) -> dict[str, Any]:
        host = self.host
        cached = self._peers.get(url)
        member = self._member_at(url)
        if member is not None:  # the membership view: no round trip (architecture §7.1)
            if member.status not in ("alive", "incompatible"):  # incompatible: named below
                raise TransferError(
                    f"cannot move to {member.name!r}: the mesh sees it {member.status}",
                    stage="preflight",
                    code="preflight",
                )
            peer = {
                "name": member.name,
                "host_id": member.host_id,
                "code_version": member.code_version,
                "tags": list(member.tags),
                "capabilities": list(member.capabilities),
            }
        elif cached is not None and time.monotonic() - cached[0] < PREFLIGHT_FRESH:
            peer = cached[1]
        else:
            try:
                peer = host.peer_client.get_json(f"{url}/health", timeout=min(ticket.timeout, 5.0))
            except PagletError as exc:
                raise TransferError(
                    f"cannot move to {url}: the host does not answer ({exc})",
                    stage="preflight",
                    code="preflight",
                ) from None
            self._peers[url] = (time.monotonic(), peer)
        theirs = peer.get("code_version")
        if theirs != host.mesh_version:
            raise TransferError(
                f"cannot move to {peer.get('name', url)!r}: it runs mesh version {theirs!r}, this host runs "
                f"{host.mesh_version!r}; start both with the same --mesh-version",
                stage="preflight",
                code="incompatible-version",
            )
        if ticket.expected_code_version is not None and theirs != ticket.expected_code_version:
            raise TransferError(
                f"{url} runs {theirs!r}, the ticket expects {ticket.expected_code_version!r}",
                stage="preflight",
                code="preflight",
            )
        missing_tags = set(ticket.required_tags) - set(peer.get("tags") or [])
        if missing_tags:
            raise TransferError(
                f"{url} lacks the required tags {sorted(missing_tags)}",
                stage="preflight",
                code="preflight",
            )
        missing_caps = set(ticket.required_capabilities) - set(peer.get("capabilities") or [])
        if missing_caps:
            raise TransferError(
                f"{url} lacks the required capabilities {sorted(missing_caps)}",
                stage="preflight",
                code="preflight",
            )
        return peer

    def _member_at(self, url: str) -> Any:
        """The mesh member serving `url`, if this host's membership view has one."""
        if self.host.mesh is None:
            return None
        wanted = local_hosts.normalise_url(url)
        for ref in self.host.list_hosts(include_self=False):
            if local_hosts.normalise_url(ref.url) == wanted:
                return ref
        return None

    def _stage_files(self, url: str, cell: Cell) -> list[dict[str, Any]]:
        refs = cell.info.meta.get("files") or []
        staged: list[dict[str, Any]] = []
        try:
            for ref in refs:
                artifact = self.host.peer_client.upload_artifact(
                    url,
                    ref["current_path"],
                    owner_agent_id=cell.agent_id,
                    name=ref["name"],
                    expires_at=time.time() + STAGED_FILE_TTL,
                )
                staged.append(
                    {
                        "name": ref["name"],
                        "mode": ref.get("mode", "copy"),
                        "artifact_id": artifact.artifact_id,
                        "sha256": artifact.sha256,
                        "size_bytes": artifact.size_bytes,
                        "file": ref,
                    }
                )
        except (PagletError, OSError) as exc:
            for item in staged:
                with contextlib.suppress(Exception):
                    self.host.peer_client.delete_artifact(
                        {
                            "host_url": url,
                            "artifact_id": item["artifact_id"],
                            "name": item["name"],
                            "size_bytes": item["size_bytes"],
                            "sha256": item["sha256"],
                        }
                    )
            raise TransferError(
                f"could not stage the registered files of {cell.agent_id!r} on {url}: {exc}",
                stage="file-upload",
                code="file-upload",
            ) from None
        return staged

    def _move_in_turn(
        self,
        cell: Cell,
        kind: str,
        url: str,
        peer: dict[str, Any],
        ticket: TransferTicket,
        deadline: float,
        staged: list[dict[str, Any]],
    ) -> PagletProxy:
        from paglets.runtime.lifecycle import _departure_hooks

        host = self.host
        source = cell.paglet
        info = cell.info
        agent_id = cell.agent_id
        clone = kind == "clone"
        moved_id = new_agent_id() if clone else agent_id
        if clone:
            epoch = 1
        else:
            epoch = max(info.epoch, self._last_proposed.get(agent_id, 0)) + 1
            self._last_proposed[agent_id] = epoch
        tid = uuid.uuid4().hex
        sides: dict[str, Any] = {
            "source_host_name": host.name,
            "source_host_address": host.address,
            "target_host_name": str(peer.get("name", "")),
            "target_host_address": url,
        }
        base: dict[str, Any] = {
            "agent_id": agent_id,
            "host_name": host.name,
            "host_address": host.address,
        }
        event: Any
        if clone:
            event = CloneEvent(
                source_agent_id=agent_id, clone_agent_id=moved_id, transfer_id=tid, **sides, **base
            )
            _departure_hooks(agent_id, lambda: source.on_cloning(event))
        else:
            event = MobilityEvent(reason=kind, transfer_id=tid, epoch=epoch, **sides, **base)
            hook = source.on_reverting if kind == "retract" else source.on_dispatching

            def departure() -> None:
                hook(event)
                if source._resources is not None:
                    source._resources.cleanup(reason=kind)

            _departure_hooks(agent_id, departure)

        state = host.lifecycle._encode(cell)
        header = {
            "protocol": PROTOCOL,
            "transfer_id": tid,
            "kind": kind,
            "agent_id": moved_id,
            "clone_of": agent_id if clone else None,
            "epoch": epoch,
            "agent_class_name": info.class_name,
            "state_class_name": info.state_class_name,
            "code_version": host.mesh_version,
            "source": {"host_id": host.host_id, "name": host.name, "url": host.address},
            "target": {"host_id": peer.get("host_id"), "name": peer.get("name"), "url": url},
            "home": {"url": host.address if clone else (info.home_url or host.address)},
            "ticket": ticket.to_wire(),
            "deadline_ms": 0,
            "state_size": len(state),
            "state_sha256": hashlib.sha256(state).hexdigest(),
            "isolation": str(info.cls.ISOLATION),
            "metadata": {k: v for k, v in info.meta.items() if k != "files"},
            "registered_files": staged,
            "created_at": time.time() if clone else info.created_at,
        }
        now = time.time()
        record = TransferRecord(
            transfer_id=tid,
            role="source",
            agent_id=moved_id,
            kind=kind,
            epoch=epoch,
            status="PREPARING",
            peer_url=url,
            header=header,
            state=None,
            reply=None,
            hooks_done=True,
            created_at=now,
            updated_at=now,
            deadline=now + max(0.0, deadline - time.monotonic()),
            attempts=0,
            next_attempt=0.0,
        )
        with host.store.transaction():
            self.log.insert(record)
            if not clone and not self._stored_state_is_current(cell, kind):
                # P's checkpoint is the envelope's state (network.md §2.3).
                host.store.update_states([(agent_id, state, now)])
        fault("source-after-preparing")

        try:
            reply = self._send_prepare(url, tid, header, state, ticket, deadline)
        except _NoAnswer as exc:
            self.log.set_status(tid, "ABORTED")
            host.counters.transfers_out_aborted += 1
            self.send_abort_later(url, tid, moved_id, epoch)
            host.lifecycle._aborted(cell, event, exc)
            raise TransferTimeoutError(
                f"no answer from {url} within {ticket.timeout:g}s ({exc}); paglet {agent_id!r} stays on {host.name!r}",
                stage="prepare-timeout",
                code="prepare-timeout",
            ) from None
        if reply.get("outcome") != "PREPARED":
            self.log.set_status(tid, "ABORTED", reply=reply)
            host.counters.transfers_out_rejected += 1
            error = error_from_wire(
                reply.get("error") or {"error_type": "TransferError", "error": "rejected"}
            )
            host.lifecycle._aborted(cell, event, error)
            raise TransferError(
                f"{peer.get('name', url)!r} refused paglet {agent_id!r}: {error.remote_type or type(error).__name__}: "
                f"{error}",
                stage="target-rejected",
                code=str((reply.get("error") or {}).get("code") or "target-rejected"),
            )
        fault("source-after-prepared")

        with host.store.transaction():
            self.log.set_status(tid, "COMMITTED")
            # This thread sends the first COMMITs; the timer resends only after the deadline.
            self.log.schedule(tid, 0, time.time() + max(0.0, deadline - time.monotonic()) + 1.0)
            if not clone:
                host.store.delete_agent(agent_id)
                self.log.set_pointer(
                    Pointer(
                        agent_id,
                        url,
                        str(peer.get("name", "")),
                        str(peer.get("host_id") or ""),
                        epoch,
                        info.home_url or host.address,
                        time.time(),
                    )
                )
        fault("source-after-committed")
        host.counters.moved(kind)
        # COMMIT before leaving: P's turn is still held here, so nothing runs on this copy,
        # and messages waiting for it are re-routed to a target that is already live.
        acknowledged = self.send_commit(self.log.get(tid, "source") or record, until=deadline)
        if not clone:
            host.lifecycle._leave(cell)
        host.events.emit(
            kind,
            agent_id=agent_id,
            class_name=info.class_name,
            data={"target": url, "epoch": epoch, "transfer_id": tid, "acknowledged": acknowledged},
        )
        if clone:
            try:
                source.on_cloned(event)
            except Exception as exc:
                host.events.emit(
                    "hook-failed",
                    agent_id=agent_id,
                    error=f"on_cloned: {type(exc).__name__}: {exc}",
                )
        return PagletProxy(url, moved_id, host.peer_client, acknowledged=acknowledged)

    def _stored_state_is_current(self, cell: Cell, kind: str) -> bool:
        """True when the stored checkpoint already equals the envelope's state, so a large
        paglet is not written once more (targets d3): nothing marked it dirty since it was
        stored, and no departure hook or resource cleanup could have changed it."""
        from paglets.core.agent import Paglet

        info = cell.info
        if (
            info.checkpoint_mode == "never"
            or info.checkpointed_at <= 0
            or self.host.checkpoints.is_dirty(cell)
        ):
            return False
        paglet = cell.paglet
        hook = "on_reverting" if kind == "retract" else "on_dispatching"
        overridden = getattr(type(paglet), hook) is not getattr(Paglet, hook)
        return not overridden and not (paglet._resources is not None and paglet._resources.status())

    def _send_prepare(
        self,
        url: str,
        tid: str,
        header: dict[str, Any],
        state: bytes,
        ticket: TransferTicket,
        deadline: float,
    ) -> dict[str, Any]:
        attempts = 0
        last: str = "no attempt"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _NoAnswer(last)
            header["deadline_ms"] = int(remaining * 1000)
            try:
                status, _h, data = self.host.peer_client.request(
                    "POST",
                    f"{url}/transfers/{tid}/prepare",
                    body=encode_envelope(header, state),
                    content_type=ENVELOPE_TYPE,
                    accept=MSGPACK,
                    headers={
                        "X-Paglets-Host-Id": self.host.host_id,
                        "X-Paglets-Deadline-Ms": str(header["deadline_ms"]),
                    },
                    timeout=remaining,
                )
                if status == 200:
                    return msgspec.msgpack.decode(data)
                if status < 500:
                    return {
                        "transfer_id": tid,
                        "outcome": "REJECTED",
                        "error": error_body(data, status),
                    }
                last = f"HTTP {status}"
            except (RemoteHostError, PagletTimeoutError, OSError) as exc:
                last = str(exc)
            if attempts >= ticket.retries:
                raise _NoAnswer(last)
            attempts += 1
            time.sleep(min(ticket.retry_interval, max(0.0, deadline - time.monotonic())))

    def send_commit(self, record: TransferRecord, *, until: float | None = None) -> bool:
        """Send COMMIT until acknowledged or `until` (monotonic) passes; then the timer resends."""
        body = msgspec.msgpack.encode(
            {
                "transfer_id": record.transfer_id,
                "agent_id": record.agent_id,
                "epoch": record.epoch,
                "handoff": [],
            }
        )
        delay = COMMIT_BACKOFF[0]
        attempts = record.attempts
        while True:
            try:
                status, _h, data = self.host.peer_client.request(
                    "POST",
                    f"{record.peer_url}/transfers/{record.transfer_id}/commit",
                    body=body,
                    content_type=MSGPACK,
                    accept=MSGPACK,
                    headers={"X-Paglets-Host-Id": self.host.host_id},
                    timeout=5.0 if until is None else max(0.5, until - time.monotonic()),
                )
                if status == 200:
                    self.log.set_status(record.transfer_id, "ACKED")
                    if record.kind != "clone":  # `mode="move"` sources go only after the ack
                        _delete_moved_sources(record.header.get("registered_files") or [])
                    return True
                log.warning("COMMIT of %s answered %s: %s", record.transfer_id, status, data[:200])
            except (RemoteHostError, PagletTimeoutError, OSError) as exc:
                log.info("COMMIT of %s not acknowledged yet: %s", record.transfer_id, exc)
            attempts += 1
            if until is None or time.monotonic() + delay >= until:
                self.log.schedule(
                    record.transfer_id, attempts, time.time() + min(COMMIT_BACKOFF[1], delay)
                )
                return False
            time.sleep(delay)
            delay = min(COMMIT_BACKOFF[1], delay * 2)

    def send_abort_later(self, url: str, tid: str, agent_id: str, epoch: int) -> None:
        body = msgspec.msgpack.encode(
            {"transfer_id": tid, "agent_id": agent_id, "epoch": epoch, "reason": "aborted"}
        )

        def send() -> None:
            try:
                self.host.peer_client.request(
                    "POST",
                    f"{url}/transfers/{tid}/abort",
                    body=body,
                    content_type=MSGPACK,
                    accept=MSGPACK,
                    timeout=5.0,
                )
            except Exception as exc:  # best effort: T asks STATUS on its own timer
                log.info("ABORT of %s not delivered: %s", tid, exc)

        try:
            self.host.pool.submit(send)
        except RuntimeError:
            pass


def _delete_moved_sources(staged: list[dict[str, Any]]) -> None:
    """`mode="move"` files are deleted on the source only after the COMMIT ack."""
    for item in staged:
        if item.get("mode") == "move":
            path = (item.get("file") or {}).get("current_path")
            if path:
                with contextlib.suppress(OSError):
                    os.remove(path)
