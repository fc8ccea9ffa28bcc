"""Moving a paglet between host processes, exactly once (architecture §7, network.md §2).

Source S runs the departure hooks in P's turn, records PREPARING, sends PREPARE; target T
validates, persists, builds the instance and runs the arrival hooks while P is not yet
reachable, and answers PREPARED. S then records COMMITTED (P leaves, a forwarding pointer
stays) and sends COMMIT; T makes P live. A lost COMMIT is resent until acknowledged; a T
holding a PREPARED arrival without COMMIT asks S for the outcome. At every instant there
is at least one durable copy of P and at most one live copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import threading
import time
import uuid
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import msgspec

from paglets.core.errors import (
    HostError,
    PagletError,
    PagletTimeoutError,
    RemoteHostError,
    SerializationError,
    TransferError,
    TransferTimeoutError,
    error_from_wire,
    error_to_wire,
)
from paglets.core.events import CloneEvent, MobilityEvent
from paglets.core.ids import new_agent_id, validate_agent_id
from paglets.persistence.transfer_log import Pointer, TransferLog, TransferRecord
from paglets.remote.proxy import PagletProxy
from paglets.remote.transfer import TransferTicket
from paglets.runtime.mailbox import Cell, CellGone
from paglets.runtime.registry import AgentInfo
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.runtime.host import Host

log = logging.getLogger("paglets.transfers")

__all__ = ["Transfers", "fault"]

PROTOCOL = 1
ENVELOPE_TYPE = "application/vnd.paglets.envelope"
MSGPACK = "application/msgpack"
COMMIT_BACKOFF = (0.2, 30.0)
STATUS_BACKOFF = (1.0, 60.0)
PREFLIGHT_FRESH = 2.0  # seconds a peer's /health answer is trusted for preflight
STAGED_FILE_TTL = 86400.0  # staged files expire unless a PREPARE claims them


def fault(point: str) -> None:
    """Test-only fault injection: `PAGLETS_FAULT=<point>` kills this process at that step."""
    if os.environ.get("PAGLETS_FAULT") == point:
        log.warning("fault injection: SIGKILL at %s", point)
        os.kill(os.getpid(), signal.SIGKILL)


class PrepareHeader(msgspec.Struct, kw_only=True):
    """The envelope header of PREPARE (network.md §2.2), checked before the state is used."""

    protocol: int
    transfer_id: str
    kind: str
    agent_id: str
    clone_of: str | None = None
    epoch: int
    agent_class_name: str
    state_class_name: str
    code_version: str
    source: dict[str, Any]
    target: dict[str, Any] = {}
    home: dict[str, Any] = {}
    ticket: dict[str, Any] = {}
    deadline_ms: int
    state_size: int
    state_sha256: str
    state_codec: str = "msgpack"
    registered_files: list[dict[str, Any]] = []
    policy: dict[str, Any] | None = None
    queued_messages: list[dict[str, Any]] = []
    isolation: str = "host"
    metadata: dict[str, Any] = {}
    created_at: float = 0.0


def encode_envelope(header: dict[str, Any], state: bytes) -> bytes:
    head = msgspec.msgpack.encode(header)
    return len(head).to_bytes(4, "big") + head + state


def decode_envelope(body: bytes) -> tuple[PrepareHeader, bytes]:
    if len(body) < 4:
        raise SerializationError(
            "envelope too short: expected a 4-byte header length", code="invalid-body"
        )
    size = int.from_bytes(body[:4], "big")
    if size > len(body) - 4:
        raise SerializationError("envelope header length exceeds the body", code="invalid-body")
    try:
        header = msgspec.msgpack.decode(body[4 : 4 + size], type=PrepareHeader)
    except msgspec.ValidationError as exc:
        raise SerializationError(f"envelope header: {exc}", code="invalid-body") from None
    except msgspec.DecodeError as exc:
        raise SerializationError(
            f"envelope header is not MessagePack: {exc}", code="invalid-body"
        ) from None
    state = body[4 + size :]
    if len(state) != header.state_size:
        raise SerializationError(
            f"envelope state is {len(state)} bytes, header says {header.state_size}",
            code="invalid-body",
        )
    if hashlib.sha256(state).hexdigest() != header.state_sha256:
        raise SerializationError(
            "envelope state does not match its sha256", code="checksum-mismatch"
        )
    return header, state


class _NoAnswer(Exception):
    """PREPARE got no usable answer (reset, timeout, 5xx): the attempt may be repeated."""


class Transfers:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.log = TransferLog(host.store)
        self._prepared: dict[str, Cell] = {}  # target side: built, not yet live
        self._inflight: dict[str, Future[dict[str, Any]]] = {}  # target side: PREPAREs running
        self._last_proposed: dict[str, int] = {}
        self._peers: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._arrivals = threading.Condition()  # notified when a prepared arrival ends
        self.next_tick = 0.0  # when the timers should call tick() next

    # ==== source side =======================================================================

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
        if cached is not None and time.monotonic() - cached[0] < PREFLIGHT_FRESH:
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
        sides = {
            "source_host_name": host.name,
            "source_host_address": host.address,
            "target_host_name": str(peer.get("name", "")),
            "target_host_address": url,
        }
        base = {"agent_id": agent_id, "host_name": host.name, "host_address": host.address}
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
            if not clone:  # P's checkpoint is the envelope's state (network.md §2.3)
                host.store.update_states([(agent_id, state, now)])
        fault("source-after-preparing")

        try:
            reply = self._send_prepare(url, tid, header, state, ticket, deadline)
        except _NoAnswer as exc:
            self.log.set_status(tid, "ABORTED")
            self._send_abort_later(url, tid, moved_id, epoch)
            host.lifecycle._aborted(cell, event, exc)
            raise TransferTimeoutError(
                f"no answer from {url} within {ticket.timeout:g}s ({exc}); paglet {agent_id!r} stays on {host.name!r}",
                stage="prepare-timeout",
                code="prepare-timeout",
            ) from None
        if reply.get("outcome") != "PREPARED":
            self.log.set_status(tid, "ABORTED", reply=reply)
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
        # COMMIT before leaving: P's turn is still held here, so nothing runs on this copy,
        # and messages waiting for it are re-routed to a target that is already live.
        acknowledged = self._send_commit(self.log.get(tid, "source") or record, until=deadline)
        if not clone:
            host.lifecycle._leave(cell)
            if acknowledged:
                _delete_moved_sources(staged)
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
                        "error": _error_body(data, status),
                    }
                last = f"HTTP {status}"
            except (RemoteHostError, PagletTimeoutError, OSError) as exc:
                last = str(exc)
            if attempts >= ticket.retries:
                raise _NoAnswer(last)
            attempts += 1
            time.sleep(min(ticket.retry_interval, max(0.0, deadline - time.monotonic())))

    def _send_commit(self, record: TransferRecord, *, until: float | None = None) -> bool:
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

    def _send_abort_later(self, url: str, tid: str, agent_id: str, epoch: int) -> None:
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

    # ==== target side =======================================================================

    def prepare(self, tid: str, body: bytes) -> dict[str, Any]:
        """Handle PREPARE; the same `tid` always gets the same answer."""
        _check_tid(tid)
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
            post_state = host.lifecycle._encode(cell)
            reply = {
                "transfer_id": tid,
                "outcome": "PREPARED",
                "epoch": header.epoch,
                "target": self._me(),
                "error": None,
            }
            self.log.set_status(tid, "PREPARED", reply=reply, state=post_state, hooks_done=True)
            self._prepared[tid] = cell
            host.events.emit("transfer-prepared", agent_id=agent_id, data={"transfer_id": tid})
        except BaseException:
            with host.registry.lock:
                if not any(c.agent_id == agent_id for c in self._prepared.values()):
                    host.registry.reserved.discard(agent_id)
            raise
        fault("target-before-prepared-reply")
        return reply

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
        sides = {
            "source_host_name": str(header.source.get("name", "")),
            "source_host_address": str(header.source.get("url", "")),
            "target_host_name": host.name,
            "target_host_address": host.address,
        }
        base = {"agent_id": cell.agent_id, "host_name": host.name, "host_address": host.address}
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

    def commit(self, tid: str, body: bytes) -> dict[str, Any]:
        _check_tid(tid)
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
        return self._make_live(record)

    def _commit_reply(self, record: TransferRecord) -> dict[str, Any]:
        return {
            "transfer_id": record.transfer_id,
            "outcome": "COMMITTED",
            "epoch": record.epoch,
            "proxy": {"host_url": self.host.address, "agent_id": record.agent_id},
        }

    def _make_live(self, record: TransferRecord) -> dict[str, Any]:
        host = self.host
        with self._lock:
            cell = self._prepared.pop(record.transfer_id, None)
        if cell is None:  # after a restart: rebuild from the post-hook state, hooks not rerun
            header = msgspec.convert(record.header, PrepareHeader)
            spec = host.classes.get(header.agent_class_name)
            cell = self._build(
                spec, codec.decode_state(spec.state_cls, record.state or b""), header
            )
        state = record.state if record.state is not None else host.lifecycle._encode(cell)
        row = host.lifecycle._row(cell, state, "active")
        with host.store.transaction():
            host.store.put_agent(row)
            self.log.set_status(record.transfer_id, "COMMITTED")
            self.log.drop_pointer(record.agent_id)
            self.log.note_epoch(record.agent_id, record.epoch)
        fault("target-after-commit-persisted")
        host.lifecycle._go_live(cell)
        host.turns.release(cell)
        host.events.emit(
            "arrival",
            agent_id=record.agent_id,
            class_name=cell.info.class_name,
            data={"source": record.peer_url, "reason": record.kind, "epoch": record.epoch},
        )
        host.lifecycle.start_run(cell)
        self._tell_home(cell)
        return self._commit_reply(record)

    def _tell_home(self, cell: Cell) -> None:
        home = cell.info.home_url
        host = self.host
        if not home or host.is_local_url(home):
            return
        body = {
            "agent_id": cell.agent_id,
            "host_id": host.host_id,
            "host_name": host.name,
            "url": host.address,
            "epoch": cell.info.epoch,
        }

        def send() -> None:
            try:
                host.peer_client.post_json(
                    f"{home}/agents/{cell.agent_id}/location", body, timeout=5.0
                )
            except Exception as exc:  # best effort; proxies still follow pointers
                log.info("could not tell home %s where %s is: %s", home, cell.agent_id, exc)

        try:
            host.pool.submit(send)
        except RuntimeError:
            pass

    def abort(self, tid: str) -> dict[str, Any]:
        _check_tid(tid)
        record = self.log.get(tid, "target")
        if record is not None and record.status == "COMMITTED":
            raise TransferError(
                f"transfer {tid} already committed on {self.host.name!r}", code="transfer-conflict"
            )
        if record is not None and record.status == "PREPARED":
            self._drop_prepared(record)
        return {"transfer_id": tid, "outcome": "ABORTED"}

    def _drop_prepared(self, record: TransferRecord) -> None:
        with self._lock:
            cell = self._prepared.pop(record.transfer_id, None)
        if cell is not None:
            self._discard(cell)
        else:
            with self.host.registry.lock:
                self.host.registry.reserved.discard(record.agent_id)
            self._arrival_ended()
        self.log.set_status(record.transfer_id, "ABORTED")
        self.host.events.emit(
            "arrival-aborted", agent_id=record.agent_id, data={"transfer_id": record.transfer_id}
        )

    def status(self, tid: str) -> dict[str, Any]:
        _check_tid(tid)
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

    # ==== location (home host) =================================================================

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

    # ==== timers and recovery ===================================================================

    def recover(self) -> None:
        """At start, before live paglets are recovered (network.md §2.5 rows 9-12)."""
        for record in self.log.open_records("source", ("PREPARING",)):
            self.log.set_status(record.transfer_id, "ABORTED")
            self._send_abort_later(
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
                self._send_commit(record)
        for record in self.log.open_records("target", ("PREPARED",)):
            if record.hooks_done and now > record.deadline + 1.0 and record.next_attempt <= now:
                self._ask_status(record)

    def _ask_status(self, record: TransferRecord) -> None:
        try:
            answer = self.host.peer_client.get_json(
                f"{record.peer_url}/transfers/{record.transfer_id}", timeout=5.0
            )
            decision = answer.get("decision")
        except Exception as exc:
            decision = None
            log.info("STATUS of %s from %s failed: %s", record.transfer_id, record.peer_url, exc)
        if decision == "COMMITTED":
            self._make_live(record)
        elif decision in ("ABORTED", "UNKNOWN"):
            self._drop_prepared(record)
        else:
            delay = min(STATUS_BACKOFF[1], STATUS_BACKOFF[0] * (2 ** min(record.attempts, 10)))
            self.log.schedule(record.transfer_id, record.attempts + 1, time.time() + delay)

    def listing(self, **filters: Any) -> list[dict[str, Any]]:
        return [r.to_wire() for r in self.log.listing(**filters)]


def _delete_moved_sources(staged: list[dict[str, Any]]) -> None:
    """`mode="move"` files are deleted on the source only after the COMMIT ack."""
    for item in staged:
        if item.get("mode") == "move":
            path = (item.get("file") or {}).get("current_path")
            if path:
                with contextlib.suppress(OSError):
                    os.remove(path)


def _check_tid(tid: str) -> None:
    if len(tid) != 32 or any(c not in "0123456789abcdef" for c in tid):
        raise SerializationError(
            f"transfer id must be 32 lowercase hex characters, got {tid[:40]!r}",
            code="invalid-body",
        )


def _error_body(data: bytes, status: int) -> dict[str, Any]:
    for decode in (msgspec.msgpack.decode, msgspec.json.decode):
        try:
            body = decode(data)
            if isinstance(body, dict):
                return body
        except Exception:
            continue
    return {"error_type": "TransferError", "error": f"HTTP {status}", "code": "target-rejected"}
