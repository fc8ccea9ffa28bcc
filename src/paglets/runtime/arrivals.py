"""The target side of a move (T): PREPARE checks and persistence, arrival hooks while the
paglet is unreachable, COMMIT, ABORT, and asking the source when no decision came."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import msgspec

from paglets.core.errors import (
    HostError,
    PagletError,
    SerializationError,
    TransferError,
    TransferTimeoutError,
    error_to_wire,
)
from paglets.core.events import CloneEvent, MobilityEvent
from paglets.core.ids import validate_agent_id
from paglets.persistence.policy import DeactivationPolicy, DeactivationRequest
from paglets.persistence.store import AgentRow
from paglets.persistence.transfer_log import TransferLog, TransferRecord
from paglets.runtime.mailbox import Cell
from paglets.runtime.registry import AgentInfo
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.runtime.host import Host

from paglets.runtime.envelope import (
    PROTOCOL,
    STATUS_BACKOFF,
    PrepareHeader,
    check_tid,
    decode_envelope,
    fault,
)

log = logging.getLogger("paglets.transfers")

__all__ = ["Arrivals"]


class Arrivals:
    def __init__(self, host: Host, log: TransferLog) -> None:
        self.host = host
        self.log = log
        self._prepared: dict[str, tuple[Cell, bytes]] = {}  # built, not yet live, + post-hook state
        self._inflight: dict[str, Future[dict[str, Any]]] = {}  # PREPAREs running
        self._lock = threading.Lock()
        self._arrivals = threading.Condition()  # notified when a prepared arrival ends
        self._decision_locks = [threading.Lock() for _ in range(64)]

    def prepare(self, tid: str, body: bytes) -> dict[str, Any]:
        """Handle PREPARE; the same `tid` always gets the same answer."""
        check_tid(tid)
        existing = self.log.get(tid, "target")
        if existing is not None and existing.reply is not None:
            return existing.reply
        with self._lock:
            running = self._inflight.get(tid)
            if running is None:
                running = self._inflight[tid] = Future()
                mine = True
            else:
                mine = False
        if not mine:
            return running.result(self.host.default_timeout)
        try:
            reply = self._prepare(tid, body)
        except BaseException as exc:
            running.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._inflight.pop(tid, None)
        running.set_result(reply)
        return reply

    def _reject(
        self, tid: str, header: PrepareHeader | None, exc: BaseException, code: str
    ) -> dict[str, Any]:
        wire = error_to_wire(
            exc, host_name=self.host.name, with_traceback=not isinstance(exc, PagletError)
        )
        wire["code"] = code
        if getattr(exc, "detail", None):
            wire["detail"] = exc.detail  # type: ignore[attr-defined]
        reply = {
            "transfer_id": tid,
            "outcome": "REJECTED",
            "epoch": header.epoch if header else 0,
            "target": self._me(),
            "error": wire,
        }
        if header is not None:
            now = time.time()
            record = TransferRecord(
                transfer_id=tid,
                role="target",
                agent_id=header.agent_id,
                kind=header.kind,
                epoch=header.epoch,
                status="REJECTED",
                peer_url=str(header.source.get("url", "")),
                header=msgspec.to_builtins(header),
                state=None,
                reply=reply,
                hooks_done=False,
                created_at=now,
                updated_at=now,
                deadline=now,
                attempts=0,
                next_attempt=0.0,
            )
            existing = self.log.get(tid, "target")
            if existing is None:
                self.log.insert(record)
            else:
                self.log.set_status(tid, "REJECTED", reply=reply)
        self.host.counters.transfers_in_rejected += 1
        return reply

    def _me(self) -> dict[str, Any]:
        return {"host_id": self.host.host_id, "name": self.host.name, "url": self.host.address}

    def _prepare(self, tid: str, body: bytes) -> dict[str, Any]:
        host = self.host
        started = time.monotonic()
        header, state = decode_envelope(body)
        if header.transfer_id != tid:
            raise SerializationError(
                "envelope transfer_id does not match the URL", code="invalid-body"
            )
        wanted = header.target.get("host_id")
        if wanted and wanted != host.host_id:
            return self._reject(
                tid,
                header,
                TransferError(
                    f"this envelope is for host id {wanted}, not {host.name!r} ({host.host_id})"
                ),
                "wrong-host",
            )
        if header.protocol != PROTOCOL:
            return self._reject(
                tid,
                header,
                TransferError(f"unsupported move protocol {header.protocol}"),
                "protocol",
            )
        if host.stopped:
            return self._reject(
                tid, header, TransferError(f"host {host.name!r} is shutting down"), "draining"
            )
        draining = host.drain.arrival_refusal()  # network.md §2.2: REJECTED + retry_after_s
        if draining is not None:
            return self._reject(tid, header, draining, "draining")
        if header.code_version != host.mesh_version:
            return self._reject(
                tid,
                header,
                TransferError(
                    f"host {host.name!r} runs mesh version {host.mesh_version!r}, the source runs {header.code_version!r}"
                ),
                "incompatible-version",
            )
        agent_id = validate_agent_id(header.agent_id)
        if header.epoch <= self.log.max_epoch(agent_id):
            return self._reject(
                tid,
                header,
                TransferError(
                    f"stale epoch {header.epoch} for paglet {agent_id!r}: this host has seen {self.log.max_epoch(agent_id)}"
                ),
                "stale-epoch",
            )
        self._wait_for_departure(agent_id, header.epoch, started + header.deadline_ms / 1000.0)
        if (
            agent_id in host.registry.live
            or agent_id in host.registry.reserved
            or host.store.has_agent(agent_id)
        ):
            return self._reject(
                tid,
                header,
                TransferError(f"paglet {agent_id!r} already exists on {host.name!r}"),
                "agent-exists",
            )
        try:
            spec = host.classes.get(header.agent_class_name)
            state_obj = codec.decode_state(spec.state_cls, state)
        except PagletError as exc:
            return self._reject(tid, header, exc, str(exc.code or "target-rejected"))
        deadline = started + header.deadline_ms / 1000.0
        try:  # files first, so the record (and a rebuild after a crash) knows them
            header.metadata["files"] = self._place_files(agent_id, header.registered_files)
        except (PagletError, OSError) as exc:
            host.lifecycle._remove_files(agent_id)
            return self._reject(tid, header, exc, "file-upload")
        now = time.time()
        record = TransferRecord(
            transfer_id=tid,
            role="target",
            agent_id=agent_id,
            kind=header.kind,
            epoch=header.epoch,
            status="PREPARED",
            peer_url=str(header.source.get("url", "")),
            header=msgspec.to_builtins(header),
            state=state,
            reply=None,
            hooks_done=False,
            created_at=now,
            updated_at=now,
            deadline=now + header.deadline_ms / 1000.0,
            attempts=0,
            next_attempt=0.0,
        )
        with host.registry.lock:
            host.registry.reserved.add(agent_id)
        try:
            with host.store.transaction():
                self.log.insert(record)
                self.log.note_epoch(agent_id, header.epoch)
            fault("target-after-prepare-persisted")
            if _arrives_inactive(header):
                # Validated and persisted; no instance and no hooks until it is woken.
                return self._prepared_reply(tid, header, None)
            cell = self._build(spec, state_obj, header)
            try:
                self._run_arrival_hooks(cell, header, tid)
            except Exception as exc:
                self._discard(cell)
                self.log.set_status(tid, "REJECTED")
                return self._reject(tid, header, exc, "target-rejected")
            if time.monotonic() > deadline:
                self._discard(cell)
                return self._reject(
                    tid,
                    header,
                    TransferTimeoutError(
                        f"the arrival hooks of {agent_id!r} ran past the source's deadline"
                    ),
                    "prepare-timeout",
                )
            hook = "on_clone" if header.kind == "clone" else "on_arrival"
            # A paglet without that hook comes out as it went in: no encode (targets d3).
            post_state = host.lifecycle._encode(cell) if _overrides(cell, hook) else state
            self._prepared[tid] = (cell, post_state)
            # The state is stored once: rewritten only if the hooks changed it (targets d3).
            changed = post_state is not state and post_state != state
            reply = self._prepared_reply(tid, header, post_state if changed else None)
        except BaseException:
            with host.registry.lock:
                if not any(c.agent_id == agent_id for c, _ in self._prepared.values()):
                    host.registry.reserved.discard(agent_id)
            raise
        fault("target-before-prepared-reply")
        return reply

    def _wait_for_departure(self, agent_id: str, epoch: int, deadline: float) -> None:
        """A paglet coming back right after it left: this host recorded its departure
        (COMMITTED, pointer at an older epoch) but its leaving copy stays registered until the
        COMMIT it sent is answered. Wait for that copy to go (bounded by the source's
        deadline) instead of refusing the arrival as `agent-exists`."""
        registry = self.host.registry
        if agent_id not in registry.live:
            return
        pointer = self.log.pointer(agent_id)
        if pointer is None or pointer.epoch >= epoch:
            return  # a live copy that never left: a real conflict
        while agent_id in registry.live and time.monotonic() < deadline:
            time.sleep(0.002)

    def _place_files(self, agent_id: str, staged: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Check each staged artifact's hash and move it into the arrival's work dir; the
        names are sanitised and paths in the refs are never read (network.md §4)."""
        if not staged:
            return []
        from paglets.artifacts import safe_file_name

        host = self.host
        folder = host.work_dir_for(agent_id) / "files"
        folder.mkdir(parents=True, exist_ok=True)
        placed = []
        for item in staged:
            try:
                ref = host.artifacts.get(str(item["artifact_id"]))
            except PagletError:
                raise TransferError(
                    f"staged file {item.get('name')!r} is missing on {host.name!r}",
                    code="file-upload",
                ) from None
            if ref.sha256 != item.get("sha256"):
                raise TransferError(
                    f"staged file {item.get('name')!r} does not match its sha256",
                    code="checksum-mismatch",
                )
            name = safe_file_name(str(item.get("name") or ref.name), fallback="file")
            path = host.artifacts.export_to_path(ref.artifact_id, folder / name, move=True)
            original = dict(item.get("file") or {})
            original.update(
                {
                    "name": name,
                    "current_host_name": host.name,
                    "current_host_url": host.address,
                    "current_path": str(path),
                    "status": "available",
                }
            )
            placed.append(original)
        return placed

    def _build(self, spec: Any, state_obj: Any, header: PrepareHeader) -> Cell:
        host = self.host
        meta = dict(header.metadata)
        if header.clone_of:
            meta["clone_of"] = header.clone_of
        info = AgentInfo(
            spec.cls,
            spec.class_name,
            spec.state_class_name,
            epoch=header.epoch,
            home_url=str(header.home.get("url") or header.source.get("url") or ""),
            created_at=header.created_at or time.time(),
            meta=meta,
            checkpoint_mode=spec.checkpoint.value,
        )
        return host.lifecycle._incarnate(spec, state_obj, header.agent_id, info)

    def _run_arrival_hooks(self, cell: Cell, header: PrepareHeader, tid: str) -> None:
        host = self.host
        sides: dict[str, Any] = {
            "source_host_name": str(header.source.get("name", "")),
            "source_host_address": str(header.source.get("url", "")),
            "target_host_name": host.name,
            "target_host_address": host.address,
        }
        base: dict[str, Any] = {
            "agent_id": cell.agent_id,
            "host_name": host.name,
            "host_address": host.address,
        }
        if header.kind == "clone":
            event: Any = CloneEvent(
                source_agent_id=header.clone_of or "",
                clone_agent_id=cell.agent_id,
                transfer_id=tid,
                **sides,
                **base,
            )
            host.lifecycle._run_hook(cell, cell.paglet.on_clone, event)
        else:
            event = MobilityEvent(
                reason=header.kind, transfer_id=tid, epoch=header.epoch, **sides, **base
            )
            host.lifecycle._run_hook(cell, cell.paglet.on_arrival, event)

    def _discard(self, cell: Cell) -> None:
        host = self.host
        host.lifecycle._depart(cell)
        host.lifecycle._remove_files(cell.agent_id)
        with host.registry.lock:
            host.registry.reserved.discard(cell.agent_id)
        self._arrival_ended()

    def _arrival_ended(self) -> None:
        with self._arrivals:
            self._arrivals.notify_all()

    def wait_arrival(self, agent_id: str, timeout: float) -> bool:
        """Wait while `agent_id` is a prepared arrival here (messages to it wait for COMMIT)."""
        registry = self.host.registry
        with self._arrivals:
            return self._arrivals.wait_for(lambda: agent_id not in registry.reserved, timeout)

    def _decision(self, tid: str) -> threading.Lock:
        """One decision at a time per transfer: a resent COMMIT, an ABORT or a STATUS answer
        arriving while another one is being applied waits, then sees its outcome."""
        return self._decision_locks[hash(tid) % len(self._decision_locks)]

    def commit(self, tid: str, body: bytes) -> dict[str, Any]:
        check_tid(tid)
        with self._decision(tid):
            return self._commit(tid)

    def _commit(self, tid: str) -> dict[str, Any]:
        record = self.log.get(tid, "target")
        if record is None:
            raise HostError(
                f"no transfer {tid} on host {self.host.name!r}", code="unknown-transfer"
            )
        if record.status == "COMMITTED":
            return self._commit_reply(record)
        if record.status != "PREPARED" or not record.hooks_done:
            raise TransferError(
                f"transfer {tid} is {record.status} on {self.host.name!r}; it cannot commit",
                code="transfer-conflict",
            )
        return self.make_live(record)

    def _commit_reply(self, record: TransferRecord) -> dict[str, Any]:
        return {
            "transfer_id": record.transfer_id,
            "outcome": "COMMITTED",
            "epoch": record.epoch,
            "proxy": {"host_url": self.host.address, "agent_id": record.agent_id},
        }

    def _prepared_reply(
        self, tid: str, header: PrepareHeader, post_state: bytes | None
    ) -> dict[str, Any]:
        """Persist PREPARED (with the post-hook state when the hooks changed it), then, and
        only then, answer it."""
        reply = {
            "transfer_id": tid,
            "outcome": "PREPARED",
            "epoch": header.epoch,
            "target": self._me(),
            "error": None,
        }
        self.log.set_status(tid, "PREPARED", reply=reply, state=post_state, hooks_done=True)
        self.host.events.emit(
            "transfer-prepared", agent_id=header.agent_id, data={"transfer_id": tid}
        )
        return reply

    def _commit_inactive(self, record: TransferRecord) -> dict[str, Any]:
        """`arrival_mode=INACTIVE`: COMMIT writes an inactive record; `on_activation` runs
        when the paglet is woken (no `on_arrival`, as paglets 2.0)."""
        host = self.host
        header = msgspec.convert(record.header, PrepareHeader)
        spec = host.classes.get(header.agent_class_name)
        policy = header.policy or DeactivationPolicy().to_wire()
        stored = self.log.get(record.transfer_id, "target", with_state=True)
        state = (stored.state if stored is not None else None) or b""
        row = AgentRow(
            agent_id=record.agent_id,
            class_name=spec.class_name,
            state_class_name=spec.state_class_name,
            state=state,
            state_version=spec.state_version,
            status="inactive",
            epoch=record.epoch,
            home_url=str(header.home.get("url") or record.peer_url),
            created_at=header.created_at or time.time(),
            checkpointed_at=time.time(),
            deactivated_at=time.time(),
            policy=policy,
            request=DeactivationRequest(reason="transfer", source="transfer").to_wire(),
            meta=dict(header.metadata),
        )
        with host.store.transaction():
            host.store.put_agent(row, state_from=self.log.state_owner(record.transfer_id))
            self.log.set_status(record.transfer_id, "COMMITTED")
            self.log.drop_pointer(record.agent_id)
            self.log.note_epoch(record.agent_id, record.epoch)
        with host.registry.lock:
            host.registry.reserved.discard(record.agent_id)
        self._arrival_ended()
        host.counters.transfers_in_committed += 1
        host.events.emit(
            "arrival",
            agent_id=record.agent_id,
            class_name=spec.class_name,
            data={
                "source": record.peer_url,
                "reason": record.kind,
                "epoch": record.epoch,
                "inactive": True,
            },
        )
        self._tell_home(record.agent_id, row.home_url, record.epoch)
        return self._commit_reply(record)

    def make_live(self, record: TransferRecord) -> dict[str, Any]:
        if _arrives_inactive(record.header):
            return self._commit_inactive(record)
        host = self.host
        with self._lock:
            entry = self._prepared.pop(record.transfer_id, None)
        if entry is None:  # after a restart: rebuild from the post-hook state, hooks not rerun
            stored = self.log.get(record.transfer_id, "target", with_state=True)
            state = (stored.state if stored is not None else None) or b""
            header = msgspec.convert(record.header, PrepareHeader)
            spec = host.classes.get(header.agent_class_name)
            cell = self._build(spec, codec.decode_state(spec.state_cls, state), header)
        else:
            cell, state = entry
        row = host.lifecycle._row(cell, state, "active")
        with host.store.transaction():
            host.store.put_agent(row, state_from=self.log.state_owner(record.transfer_id))
            self.log.set_status(record.transfer_id, "COMMITTED")
            self.log.drop_pointer(record.agent_id)
            self.log.note_epoch(record.agent_id, record.epoch)
        fault("target-after-commit-persisted")
        host.lifecycle._go_live(cell)
        self._arrival_ended()
        host.turns.release(cell)
        host.counters.transfers_in_committed += 1
        host.events.emit(
            "arrival",
            agent_id=record.agent_id,
            class_name=cell.info.class_name,
            data={"source": record.peer_url, "reason": record.kind, "epoch": record.epoch},
        )
        host.lifecycle.start_run(cell)
        self._tell_home(cell.agent_id, cell.info.home_url, cell.info.epoch)
        return self._commit_reply(record)

    def _tell_home(self, agent_id: str, home: str, epoch: int) -> None:
        """The home host learns each new place (best effort; proxies follow pointers too)."""
        host = self.host
        if not home or host.is_local_url(home):
            return
        body = {
            "agent_id": agent_id,
            "host_id": host.host_id,
            "host_name": host.name,
            "url": host.address,
            "epoch": epoch,
        }

        def send() -> None:
            try:
                host.peer_client.post_json(f"{home}/agents/{agent_id}/location", body, timeout=5.0)
            except Exception as exc:  # best effort; proxies still follow pointers
                log.info("could not tell home %s where %s is: %s", home, agent_id, exc)

        try:
            host.pool.submit(send)
        except RuntimeError:
            pass

    def abort(self, tid: str) -> dict[str, Any]:
        check_tid(tid)
        with self._decision(tid):
            return self._abort(tid)

    def _abort(self, tid: str) -> dict[str, Any]:
        record = self.log.get(tid, "target")
        if record is not None and record.status == "COMMITTED":
            raise TransferError(
                f"transfer {tid} already committed on {self.host.name!r}", code="transfer-conflict"
            )
        if record is not None and record.status == "PREPARED":
            self.drop_prepared(record)
        return {"transfer_id": tid, "outcome": "ABORTED"}

    def drop_prepared(self, record: TransferRecord) -> None:
        with self._lock:
            entry = self._prepared.pop(record.transfer_id, None)
        if entry is not None:
            self._discard(entry[0])
        else:
            with self.host.registry.lock:
                self.host.registry.reserved.discard(record.agent_id)
            self._arrival_ended()
        self.log.set_status(record.transfer_id, "ABORTED")
        self.host.counters.transfers_in_aborted += 1
        self.host.events.emit(
            "arrival-aborted", agent_id=record.agent_id, data={"transfer_id": record.transfer_id}
        )

    def ask_status(self, record: TransferRecord) -> None:
        try:
            answer = self.host.peer_client.get_json(
                f"{record.peer_url}/transfers/{record.transfer_id}", timeout=5.0
            )
            decision = answer.get("decision")
        except Exception as exc:
            decision = None
            log.info("STATUS of %s from %s failed: %s", record.transfer_id, record.peer_url, exc)
        if decision in ("COMMITTED", "ABORTED", "UNKNOWN"):
            with self._decision(record.transfer_id):
                current = self.log.get(record.transfer_id, "target")
                if current is None or current.status != "PREPARED":
                    return  # a COMMIT or ABORT got here first
                if decision == "COMMITTED":
                    self.make_live(current)
                else:
                    self.drop_prepared(current)
        else:
            delay = min(STATUS_BACKOFF[1], STATUS_BACKOFF[0] * (2 ** min(record.attempts, 10)))
            self.log.schedule(record.transfer_id, record.attempts + 1, time.time() + delay)


def _arrives_inactive(header: PrepareHeader | dict[str, Any]) -> bool:
    ticket = header.ticket if isinstance(header, PrepareHeader) else header.get("ticket") or {}
    return ticket.get("arrival_mode") == "inactive"


def _overrides(cell: Cell, hook: str) -> bool:
    from paglets.core.agent import Paglet

    return getattr(type(cell.paglet), hook) is not getattr(Paglet, hook)
