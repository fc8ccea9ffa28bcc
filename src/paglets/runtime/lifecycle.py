"""Lifecycle operations of one host: create, activate, deactivate, dispose, and moves that
stay on this host (clone, dispatch and retract to itself).

Each operation runs in the paglet's turn, so it never overlaps a handler. Hook order is
api.md §1.7's table; every hook failure leaves the paglet where it was.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from paglets.core.errors import (
    DuplicateAgentError,
    HostError,
    PagletError,
    SerializationError,
    TransferError,
    as_caller_error,
    error_to_wire,
)
from paglets.core.events import CloneEvent, CreationEvent, MobilityEvent, PersistencyEvent
from paglets.core.ids import new_agent_id, validate_agent_id
from paglets.core.runtime_values import Isolation
from paglets.persistence.policy import DeactivationPolicy, DeactivationRequest
from paglets.persistence.store import AgentRow
from paglets.runtime.classes import ClassSpec
from paglets.runtime.mailbox import Cell, CellGone
from paglets.runtime.registry import AgentInfo
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.remote.proxy import PagletProxy
    from paglets.runtime.host import Host

log = logging.getLogger("paglets.lifecycle")

__all__ = ["Lifecycle"]


class Lifecycle:
    def __init__(self, host: Host) -> None:
        self.host = host

    # -- building incarnations -------------------------------------------------------

    def _state_from(self, spec: ClassSpec, state: Any) -> Any:
        if state is None:
            try:
                return spec.state_cls()
            except TypeError as exc:
                raise SerializationError(
                    f"{spec.state_class_name} needs values for fields without defaults ({exc}); pass state="
                ) from None
        if isinstance(state, dict):
            return codec.dataclass_from_wire(spec.state_cls, state)
        if type(state) is not spec.state_cls and not isinstance(state, spec.state_cls):
            raise SerializationError(
                f"state for {spec.class_name} must be a {spec.state_class_name} (or a dict of its fields), "
                f"got {type(state).__module__}.{type(state).__qualname__}"
            )
        return state

    def _init_from(self, spec: ClassSpec, init: Any) -> Any:
        if init is None:
            return None
        if spec.init_type is not None:
            return codec.convert(codec.to_wire_form(init), spec.init_type)
        return codec.to_wire_form(init)

    def _instance(self, spec: ClassSpec, state: Any, agent_id: str) -> Any:
        if spec.isolation is Isolation.PROCESS:  # a stand-in for an instance in a child process
            from paglets.runtime.isolation import incarnate

            return incarnate(self.host, spec, state, agent_id)
        return spec.cls(state, agent_id=agent_id)

    def _incarnate(self, spec: ClassSpec, state: Any, agent_id: str, info: AgentInfo) -> Cell:
        paglet = self._instance(spec, state, agent_id)
        if getattr(paglet, "agent_id", None) != agent_id:
            raise HostError(f"{spec.class_name}.__init__ must pass agent_id to Paglet.__init__")
        cell = Cell(agent_id, paglet, info)
        cell.busy = True  # the building thread holds the first turn
        if spec.subscribed is not None:
            cell.subscriptions = set(spec.subscribed)
        self.host._attach(cell)
        return cell

    def _info(self, spec: ClassSpec, **kw: Any) -> AgentInfo:
        return AgentInfo(
            spec.cls,
            spec.class_name,
            spec.state_class_name,
            checkpoint_mode=spec.checkpoint.value,
            **kw,
        )

    def _row(self, cell: Cell, state: bytes, status: str, **extra: Any) -> AgentRow:
        """The full record of `cell` with `state`; the caller stores it now, so from here
        on the stored state is the current one (the cell is clean)."""
        info = cell.info
        info.checkpointed_at = now = time.time()
        self.host.checkpoints.forget(cell)
        return AgentRow(
            agent_id=cell.agent_id,
            class_name=info.class_name,
            state_class_name=info.state_class_name,
            state=state,
            state_version=info.cls.STATE_VERSION,
            status=status,
            epoch=info.epoch,
            home_url=info.home_url,
            created_at=info.created_at,
            checkpointed_at=now,
            meta=info.meta,
            **extra,
        )

    def _encode(self, cell: Cell) -> bytes:
        with cell.paglet.locked():
            return codec.encode_state(cell.paglet.state)

    def _run_hook(self, cell: Cell, hook: Any, event: Any) -> None:
        self.host.turns._run_nested(cell, lambda: hook(event), None)

    def _go_live(self, cell: Cell) -> None:
        with self.host.registry.lock:
            self.host.registry.live[cell.agent_id] = cell
            self.host.registry.reserved.discard(cell.agent_id)

    def start_run(self, cell: Cell) -> None:
        if not self._overrides_run(cell):
            return
        paglet = cell.paglet
        host = self.host

        def runner() -> None:
            try:
                paglet.run()
            except BaseException as exc:
                cell.info.run_error = f"{type(exc).__name__}: {exc}"
                log.exception("run() of paglet %s failed", cell.agent_id)
                host.events.emit(
                    "run-failed",
                    agent_id=cell.agent_id,
                    class_name=cell.info.class_name,
                    error=cell.info.run_error,
                )

        thread = threading.Thread(
            target=runner, name=f"paglet-run-{cell.agent_id[:12]}", daemon=True
        )
        cell.info.run_thread = thread
        thread.start()

    @staticmethod
    def _overrides_run(cell: Cell) -> bool:
        from paglets.core.agent import Paglet

        return type(cell.paglet).run is not Paglet.run

    def _event_base(self, agent_id: str) -> dict[str, Any]:
        return {
            "agent_id": agent_id,
            "host_name": self.host.name,
            "host_address": self.host.address,
        }

    # -- create ----------------------------------------------------------------------

    def create(
        self, agent_cls: Any, state: Any = None, *, init: Any = None, agent_id: str | None = None
    ) -> PagletProxy:
        host = self.host
        host._require_running()
        spec = host.classes.get(agent_cls)
        explicit = agent_id is not None
        agent_id = validate_agent_id(agent_id) if explicit else new_agent_id()
        state_obj = self._state_from(spec, state)
        codec.validate_state(state_obj)
        init_value = self._init_from(spec, init)
        registry = host.registry
        with registry.lock:
            if (
                agent_id in registry.live
                or agent_id in registry.reserved
                or (explicit and host.store.has_agent(agent_id))
            ):
                raise DuplicateAgentError(
                    f"a paglet with id {agent_id!r} already exists on host {host.name!r}; "
                    "choose another id or dispose that paglet first",
                    code="agent-exists",
                )
            registry.reserved.add(agent_id)
        try:
            info = self._info(spec, epoch=1, home_url=host.address, created_at=time.time())
            cell = self._incarnate(spec, state_obj, agent_id, info)
            event = CreationEvent(init=init_value, **self._event_base(agent_id))
            self._run_hook(cell, cell.paglet.on_creation, event)
            state_bytes = self._encode(cell)
            # Group commit: durable within 100 ms (at once with durability="full").
            host.store.put_agent(
                self._row(cell, state_bytes, "active"), defer_commit=host.defer_commits
            )
            self._go_live(cell)
        except BaseException:
            with registry.lock:
                registry.reserved.discard(agent_id)
            raise
        host.turns.release(cell)
        host.events.emit("create", agent_id=agent_id, class_name=spec.class_name)
        self.start_run(cell)
        return host.proxy(agent_id)

    # -- activate --------------------------------------------------------------------

    def activate(
        self, agent_id: str, *, reason: str = "activate", timeout: float | None = None
    ) -> PagletProxy:
        host = self.host
        host._require_running()
        validate_agent_id(agent_id)
        registry = host.registry
        with registry.lock:
            if agent_id in registry.live:
                return host.proxy(agent_id)
            pending = registry.activating.get(agent_id)
            if pending is None:
                pending = registry.activating[agent_id] = Future()
                mine = True
            else:
                mine = False
        if not mine:
            pending.result(timeout or host.default_timeout)
            return host.proxy(agent_id)
        try:
            self._activate_stored(agent_id, reason)
            pending.set_result(None)
        except BaseException as exc:
            pending.set_exception(exc)
            raise
        finally:
            with registry.lock:
                registry.activating.pop(agent_id, None)
        return host.proxy(agent_id)

    def _activate_stored(self, agent_id: str, reason: str) -> None:
        host = self.host
        row = host.store.get_agent(agent_id)
        if row is None:
            raise host.missing(agent_id)
        if row.status == "crashed":  # a dead child process: restart from the last checkpoint
            reason = "recover"
            row.meta = {
                k: v
                for k, v in (row.meta or {}).items()
                if k not in ("exitcode", "error", "crashed_at")
            }
        spec = host.classes.get(row.class_name)
        state = self._decode_stored(spec, row)
        info = self._info(
            spec,
            epoch=row.epoch,
            home_url=row.home_url or host.address,
            created_at=row.created_at,
            meta=dict(row.meta or {}),
        )
        info.checkpointed_at = row.checkpointed_at
        cell = self._incarnate(spec, state, agent_id, info)
        request = DeactivationRequest.from_wire(row.request) if row.request else None
        policy = DeactivationPolicy.from_wire(row.policy) if row.policy else None
        event = PersistencyEvent(
            reason=reason, request=request, policy=policy, **self._event_base(agent_id)
        )
        try:
            self._run_hook(cell, cell.paglet.on_activation, event)
        except BaseException as exc:
            self._depart(cell)
            host.events.emit(
                "activation-failed",
                agent_id=agent_id,
                class_name=spec.class_name,
                error=f"{type(exc).__name__}: {exc}",
            )
            raise
        row.state = self._encode(cell)
        row.status = "active"
        row.activate_at = None
        row.activate_on_startup = False
        row.state_version = spec.state_version
        row.checkpointed_at = time.time()
        host.store.put_agent(row)
        self._go_live(cell)
        host.delivery.requeue_stored(cell)  # queued messages run before anything sent later
        host.turns.release(cell)
        kind = "paglet-recovered" if reason == "recover" else "activate"
        host.events.emit(kind, agent_id=agent_id, class_name=spec.class_name)
        self.start_run(cell)

    def _decode_stored(self, spec: ClassSpec, row: AgentRow) -> Any:
        if row.state_version < spec.state_version:
            import msgspec

            payload = msgspec.msgpack.decode(row.state)
            migrated = spec.cls.migrate_state(payload, row.state_version)
            return codec.dataclass_from_wire(spec.state_cls, migrated)
        return codec.decode_state(spec.state_cls, row.state)

    # -- deactivate ------------------------------------------------------------------

    def deactivate(
        self,
        agent_id: str,
        request: DeactivationRequest | None = None,
        *,
        timeout: float | None = None,
        force_startup: bool = False,
    ) -> PagletProxy:
        host = self.host
        validate_agent_id(agent_id)
        request = request or DeactivationRequest(source="external")
        while True:
            cell = host.registry.get(agent_id)
            if cell is None:
                return self._already_inactive(agent_id)

            def op(cell: Cell = cell) -> None:
                if cell.gone:
                    raise CellGone
                paglet = cell.paglet
                policy = paglet.deactivation_policy(request)
                if force_startup:
                    policy = DeactivationPolicy(
                        activate_on_message=policy.activate_on_message,
                        queue_messages_when_inactive=policy.queue_messages_when_inactive,
                        activate_on_startup=True,
                        activate_at=policy.activate_at,
                    )
                event = PersistencyEvent(
                    reason=request.reason,
                    request=request,
                    policy=policy,
                    **self._event_base(agent_id),
                )
                paglet.on_deactivating(event)
                if paglet._resources is not None:
                    paglet._resources.cleanup(reason=request.reason)
                row = self._row(
                    cell,
                    self._encode(cell),
                    "inactive",
                    deactivated_at=time.time(),
                    activate_at=policy.activate_at,
                    activate_on_startup=policy.activate_on_startup,
                    policy=policy.to_wire(),
                    request=request.to_wire(),
                )
                host.store.put_agent(row)
                self._leave(cell)
                if policy.activate_at is not None:
                    host.timers.activation_due(policy.activate_at)
                host.events.emit(
                    "deactivate",
                    agent_id=agent_id,
                    class_name=cell.info.class_name,
                    data={"reason": request.reason},
                )

            try:
                host.turns.call(
                    cell,
                    op,
                    system=True,
                    timeout=timeout or host.default_timeout,
                    what="deactivation",
                )
                return host.proxy(agent_id)
            except CellGone:
                continue

    def _already_inactive(self, agent_id: str) -> PagletProxy:
        if self.host.store.has_agent(agent_id):
            return self.host.proxy(agent_id)
        raise self.host.missing(agent_id)

    def _leave(self, cell: Cell) -> None:
        """The paglet stops being live here (after its state was stored)."""
        with self.host.registry.lock:
            if self.host.registry.live.get(cell.agent_id) is cell:
                del self.host.registry.live[cell.agent_id]
        self._depart(cell)

    def _depart(self, cell: Cell) -> None:
        paglet = cell.paglet
        paglet.departed = True
        if paglet._context is not None:
            paglet._context._detached = True
        self.host.checkpoints.forget(cell)
        self.host.turns.mark_gone(cell)
        self.host._wake_all(cell)

    # -- dispose ---------------------------------------------------------------------

    def dispose(self, agent_id: str, *, timeout: float | None = None) -> None:
        host = self.host
        validate_agent_id(agent_id)
        while True:
            cell = host.registry.get(agent_id)
            if cell is None:
                if not host.store.delete_agent(agent_id):
                    raise host.missing(agent_id)
                self._remove_files(agent_id)
                self._expire_artifacts(agent_id)
                host.events.emit("dispose", agent_id=agent_id)
                return

            def op(cell: Cell = cell) -> None:
                if cell.gone:
                    raise CellGone
                paglet = cell.paglet
                event = PersistencyEvent(reason="dispose", **self._event_base(agent_id))
                paglet.on_disposing(event)
                if paglet._resources is not None:
                    paglet._resources.cleanup(reason="dispose")
                host.store.delete_agent(agent_id)
                self._leave(cell)
                self._remove_files(agent_id)
                self._expire_artifacts(agent_id)
                host.events.emit("dispose", agent_id=agent_id, class_name=cell.info.class_name)

            try:
                host.turns.call(
                    cell, op, system=True, timeout=timeout or host.default_timeout, what="dispose"
                )
                return
            except CellGone:
                continue

    def _expire_artifacts(self, agent_id: str) -> None:
        """A disposed owner's artifacts go after a grace period (jobs.md §5)."""
        host = self.host
        if host.artifact_owner_cleanup == "keep":  # --artifact-owner-cleanup keep
            return
        if host._artifacts is not None or (host.persistence_dir / "artifacts").exists():
            host.artifacts.expire_owner(agent_id, grace_seconds=3600)

    def _remove_files(self, agent_id: str) -> None:
        shutil.rmtree(self.host.work_root / agent_id, ignore_errors=True)

    # -- clone on this host ----------------------------------------------------------

    def clone_here(self, agent_id: str, *, timeout: float | None = None) -> PagletProxy:
        host = self.host
        cell = host._cell_of(agent_id)

        def op() -> PagletProxy:
            if cell.gone:
                raise CellGone
            source = cell.paglet
            clone_id = new_agent_id()
            transfer_id = uuid.uuid4().hex
            sides = {
                "source_host_name": host.name,
                "source_host_address": host.address,
                "target_host_name": host.name,
                "target_host_address": host.address,
            }
            event = CloneEvent(
                source_agent_id=agent_id,
                clone_agent_id=clone_id,
                transfer_id=transfer_id,
                **sides,
                **self._event_base(agent_id),
            )
            _departure_hooks(agent_id, lambda: source.on_cloning(event))
            state_bytes = self._encode(cell)
            spec = host.classes.get(cell.info.cls)
            info = self._info(
                spec,
                epoch=1,
                home_url=host.address,
                created_at=time.time(),
                meta={"clone_of": agent_id},
            )
            with host.registry.lock:
                host.registry.reserved.add(clone_id)
            try:
                clone = self._incarnate(
                    spec, codec.decode_state(spec.state_cls, state_bytes), clone_id, info
                )
                host.files.copy_registered(cell, clone)
                clone_event = CloneEvent(
                    source_agent_id=agent_id,
                    clone_agent_id=clone_id,
                    transfer_id=transfer_id,
                    **sides,
                    **self._event_base(clone_id),
                )
                try:
                    self._run_hook(clone, clone.paglet.on_clone, clone_event)
                except BaseException as exc:
                    self._discard(clone)
                    self._aborted(cell, event, exc)
                    raise TransferError(
                        f"on_clone of the clone failed: {type(exc).__name__}: {exc}",
                        stage="hook-failed",
                        code="target-rejected",
                    ) from exc
                host.store.put_agent(self._row(clone, self._encode(clone), "active"))
                self._go_live(clone)
            finally:
                with host.registry.lock:
                    host.registry.reserved.discard(clone_id)
            host.turns.release(clone)
            host.events.emit(
                "clone", agent_id=clone_id, class_name=spec.class_name, data={"clone_of": agent_id}
            )
            self.start_run(clone)
            try:
                source.on_cloned(event)
            except Exception as exc:
                host.events.emit(
                    "hook-failed",
                    agent_id=agent_id,
                    class_name=spec.class_name,
                    error=f"on_cloned: {type(exc).__name__}: {exc}",
                )
            return host.proxy(clone_id)

        return host.turns.call(
            cell, op, system=True, timeout=timeout or host.default_timeout, what="clone"
        )

    def _discard(self, cell: Cell) -> None:
        self._depart(cell)
        self._remove_files(cell.agent_id)

    def _aborted(self, cell: Cell, event: Any, exc: BaseException) -> None:
        self.host.events.emit(
            "transfer-aborted",
            agent_id=cell.agent_id,
            class_name=cell.info.class_name,
            error=f"{type(exc).__name__}: {exc}",
        )
        try:
            cell.paglet.on_transfer_aborted(event)
        except Exception:
            log.exception("on_transfer_aborted of %s failed", cell.agent_id)

    # -- dispatch / retract to this same host ----------------------------------------

    def move_here(self, agent_id: str, *, reason: str, timeout: float | None = None) -> PagletProxy:
        """A dispatch or retract whose target is this host: same hooks, no network, files kept."""
        host = self.host
        cell = host._cell_of(agent_id)

        def op() -> PagletProxy:
            if cell.gone:
                raise CellGone
            source = cell.paglet
            info = cell.info
            event = MobilityEvent(
                source_host_name=host.name,
                source_host_address=host.address,
                target_host_name=host.name,
                target_host_address=host.address,
                reason=reason,
                transfer_id=uuid.uuid4().hex,
                epoch=info.epoch + 1,
                **self._event_base(agent_id),
            )
            hook = source.on_reverting if reason == "retract" else source.on_dispatching

            def departure() -> None:
                hook(event)
                if source._resources is not None:
                    source._resources.cleanup(reason=reason)

            _departure_hooks(agent_id, departure)
            spec = host.classes.get(cell.info.cls)
            state_bytes = self._encode(cell)
            arriving = self._instance(
                spec, codec.decode_state(spec.state_cls, state_bytes), agent_id
            )
            cell.paglet = arriving
            host._attach(cell)
            try:
                self._run_hook(cell, arriving.on_arrival, event)
            except BaseException as exc:
                arriving.departed = True
                cell.paglet = source
                self._aborted(cell, event, exc)
                raise TransferError(
                    f"on_arrival failed on {host.name!r}: {type(exc).__name__}: {exc}",
                    stage="target-rejected",
                    code="target-rejected",
                ) from exc
            source.departed = True
            if source._context is not None:
                source._context._detached = True
            info.epoch += 1
            host.store.put_agent(self._row(cell, self._encode(cell), "active"))
            host.events.emit(
                reason,
                agent_id=agent_id,
                class_name=info.class_name,
                data={"target": host.address, "epoch": info.epoch},
            )
            host.events.emit(
                "arrival",
                agent_id=agent_id,
                class_name=info.class_name,
                data={"source": host.address, "reason": reason},
            )
            self.start_run(cell)
            return host.proxy(agent_id)

        return host.turns.call(
            cell, op, system=True, timeout=timeout or host.default_timeout, what=reason
        )

    # -- start and stop --------------------------------------------------------------

    def recover_all(self) -> None:
        """Bring back paglets that were live when the host last stopped or crashed, and those
        stored with `activate_on_startup`."""
        host = self.host
        for agent_id in host.store.agent_ids("active"):
            self._start_one(agent_id, "recover")
        for agent_id in host.store.startup_agent_ids():
            self._start_one(agent_id, "activate")

    def _start_one(self, agent_id: str, reason: str) -> None:
        try:
            self.activate(agent_id, reason=reason)
        except Exception as exc:
            wire = error_to_wire(exc, with_traceback=False)
            log.warning("could not bring back paglet %s (%s): %s", agent_id, reason, wire["error"])
            self.host.events.emit(
                "activation-failed",
                agent_id=agent_id,
                error=f"{wire['error_type']}: {wire['error']}",
            )

    def shutdown_all(self, grace: float) -> None:
        """Deactivate every live paglet with `activate_on_startup`; those still busy after
        `grace` seconds are saved from their last checkpoint and recovered at next start."""
        host = self.host
        cells = list(host.registry.live.values())
        if not cells:
            return
        deadline = time.monotonic() + grace
        request = DeactivationRequest(reason="shutdown", source="host")
        futures: list[tuple[Cell, Future[Any]]] = []
        for cell in cells:
            future: Future[Any] = Future()
            futures.append((cell, future))
            host.pool.submit(self._shutdown_one, cell, request, deadline, future)
        for cell, future in futures:
            try:
                future.result(max(0.0, deadline - time.monotonic()) + 1.0)
            except Exception as exc:
                log.warning(
                    "paglet %s not deactivated at shutdown (%s); saving its checkpoint",
                    cell.agent_id,
                    exc,
                )
        host.checkpoints.flush_all()

    def _shutdown_one(
        self, cell: Cell, request: DeactivationRequest, deadline: float, future: Future[Any]
    ) -> None:
        try:
            remaining = max(0.01, deadline - time.monotonic())
            self.deactivate(cell.agent_id, request, timeout=remaining, force_startup=True)
            future.set_result(None)
        except (PagletError, CellGone) as exc:
            future.set_exception(exc)
        except BaseException as exc:  # a hook raised: keep the paglet (recovered next start)
            future.set_exception(as_caller_error(exc))


def _departure_hooks(agent_id: str, run: Any) -> None:
    """Run a move's departure hooks; a failure aborts the move with the paglet in place."""
    try:
        run()
    except PagletError as exc:
        if isinstance(exc, TransferError):
            raise
        raise TransferError(
            f"paglet {agent_id!r} did not leave: a departure hook failed: {type(exc).__name__}: {exc}",
            stage="hook-failed",
            code="hook-failed",
        ) from exc
    except Exception as exc:
        raise TransferError(
            f"paglet {agent_id!r} did not leave: a departure hook failed: {type(exc).__name__}: {exc}",
            stage="hook-failed",
            code="hook-failed",
        ) from exc
