"""`SlotsRuntime`: the scheduler of one host with what it needs around it (jobs.md §2.1).

One per host (`slots_runtime(host)`), made by the `compute-slots` service when it starts
(or by the first job that asks). It owns:

* the `ComputeSlotsScheduler` over the host's store, and **one lock**: the service's
  handlers, the tick, the job supervisor and local jobs all call the scheduler under it,
  so there is one writer and every turn is one SQLite transaction;
* the tick (every second, at once after a release): capacity and load from
  `host.resource_monitor`, `accepting` from `host.drain`, expiries, walltime, memory,
  the grant pass; usage every 5 s; a sweep of vanished requests every 10 s;
* the scheduler hooks: a grant is a local one-way message (`compute_slot_grant`) that
  activates the sleeping job; a cancel of a waiting job is `compute_cancel`; a stop goes
  to the job supervisor; a `redirect` names the best capable peer from the gossip table;
* a load source publishing the scheduler's figures (free resources after leases,
  running jobs, queue, queued core-seconds, next release) into the host's summary.

Messages to jobs go out on a small executor, never while the scheduler lock is held, so
a job's handler that calls the scheduler can never wait on a turn that waits on it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from paglets.core.errors import PagletError

from .config import SchedulerConfig
from .hooks import SchedulerHooks
from .inputs import HostPolicy, capacity_from_spec, load_from_sample
from .job_placement import local_summaries, needs_of
from .job_process import JobHandle, JobOutcome, JobSupervisor, prune_job_logs
from .models import (
    COMPUTE_SLOTS,
    RELEASE_REASONS,
    ComputeSlotRequest,
    SlotLease,
    SlotReleaseRequest,
    to_wire,
)
from .redirects import PeerView
from .scheduler import ComputeSlotsScheduler
from .usage import UsageMonitor

__all__ = ["SlotsRuntime", "existing_runtime", "slots_runtime"]

_log = logging.getLogger("paglets.compute.slots")
T = TypeVar("T")

TICK_EVERY = 1.0
USAGE_EVERY = 5.0
SWEEP_EVERY = 10.0
REDIRECT_EVERY = 2.0
LOG_PRUNE_EVERY = 600.0

_runtimes: weakref.WeakKeyDictionary[Any, SlotsRuntime] = weakref.WeakKeyDictionary()
_runtimes_lock = threading.Lock()


def slots_runtime(host: Any) -> SlotsRuntime:
    """The host's `SlotsRuntime`, made (and recovered) on first use."""
    with _runtimes_lock:
        rt = _runtimes.get(host)
        if rt is None:
            rt = SlotsRuntime(host)
            _runtimes[host] = rt
    rt.start()
    return rt


def existing_runtime(host: Any) -> SlotsRuntime | None:
    """The host's `SlotsRuntime` if one was made, else None (never makes one: a host
    without the jobs system has no scheduler to ask)."""
    with _runtimes_lock:
        return _runtimes.get(host)


class SlotsRuntime:
    def __init__(self, host: Any) -> None:
        self.host = host
        self.lock = threading.RLock()
        monitor = host.resource_monitor
        resources = monitor.current()
        if resources is None:  # before the monitor's first sample
            monitor.refresh()
            resources = monitor.current()
        self.config = SchedulerConfig.from_mapping(_settings(host))
        self.supervisor = JobSupervisor(self)
        self.usage = UsageMonitor()
        self._outbox = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix=f"compute-out-{host.name}"
        )
        hooks = SchedulerHooks(
            deliver_grant=self._deliver_grant,
            stop_job=self.supervisor.stop,
            cancel_waiting=self._cancel_waiting,
            capable_peer=self._capable_peer,
            event=self._event,
        )
        self.scheduler = ComputeSlotsScheduler(
            host.store,
            capacity_from_spec(resources.spec),
            policy=self._policy(),
            config=self.config,
            hooks=hooks,
        )
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._start_lock = threading.Lock()
        # True while a graceful stop waits for running jobs (graceful.py): the tick keeps
        # running although the host is stopping, so exits are released and reported.
        self.finishing = False

    def _policy(self) -> HostPolicy:
        host = self.host
        return HostPolicy(
            host_id=host.host_id,
            host_name=host.name,
            host_url=host.address,
            tags=frozenset(host.tags),
            properties=dict(host.properties),
            max_walltime_seconds=self.config.max_walltime_seconds,
            default_walltime_seconds=self.config.default_walltime_seconds,
        )

    def start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            self._started = True
        with self.lock:
            closed = self.scheduler.recover()
        if closed:
            _log.info(
                "compute-slots on %s: %d running jobs ended host-restart",
                self.host.name,
                len(closed),
            )
        self.host.resource_monitor.add_load_source(self._load_source)
        self.host.add_listener(self._on_event)
        from .metrics import register_metrics

        register_metrics(self)
        self._thread = threading.Thread(
            target=self._run, name=f"compute-tick-{self.host.name}", daemon=True
        )
        self._thread.start()

    # -- one writer ------------------------------------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` as one turn of the scheduler (under its lock)."""
        with self.lock:
            return fn(*args)

    def wake(self) -> None:
        self._wake.set()

    def _stopped(self) -> bool:
        if self.finishing:
            return False
        host = self.host
        return bool(getattr(host, "stopped", False)) or getattr(host, "_state", "") in (
            "stopping",
            "stopped",
        )

    def _run(self) -> None:
        next_usage = next_sweep = next_redirect = next_prune = time.monotonic()
        while not self._stopped():
            self._wake.wait(TICK_EVERY)
            self._wake.clear()
            if self._stopped():
                break
            try:
                self._tick()
                now = time.monotonic()
                if now >= next_usage:
                    next_usage = now + USAGE_EVERY
                    samples = self.usage.sample_all()
                    if samples:
                        self.call(self.scheduler.record_usage, samples)
                if now >= next_redirect:
                    next_redirect = now + REDIRECT_EVERY
                    self._redirects()
                if now >= next_prune:
                    next_prune = now + LOG_PRUNE_EVERY
                    prune_job_logs(self.host)
                if now >= next_sweep:
                    next_sweep = now + SWEEP_EVERY
                    self.call(self.scheduler.reconcile, self._known)
            except Exception:
                if self._stopped():
                    break
                _log.exception("compute-slots tick on %s failed", self.host.name)
        self.supervisor.stop_all("host-stop", 0.0)
        self._outbox.shutdown(wait=False)

    def _tick(self) -> None:
        host = self.host
        monitor = host.resource_monitor
        resources = monitor.current()
        drain = getattr(host, "drain", None)
        accepting = monitor.accepting and not getattr(drain, "active", False)
        with self.lock:
            sched = self.scheduler
            if resources is not None:
                job_busy = sum(
                    (rec.usage.cpu_percent or 0.0) / 100.0 for rec in sched._leases.values()
                )
                sched.observe_load(load_from_sample(resources.load, job_busy))
            sched.set_accepting(accepting)
            sched.tick()

    def _known(self, agent_id: str) -> bool:
        host = self.host
        if agent_id in host.registry.live:
            return True
        try:
            return bool(host.store.has_agent(agent_id))
        except Exception:
            return True  # cannot tell: never drop on doubt

    # -- redirects: work stealing with holds (jobs.md §2.7) --------------------------------

    def _redirects(self) -> None:
        """Plan this pass's redirects under the lock; ask the targets for holds off it."""
        with self.lock:
            if not self.scheduler.queued():
                return
        peers = [s for s in local_summaries(self.host) if not s.is_self and s.online]
        if not peers:
            return
        with self.lock:
            plans = self.scheduler.plan_redirects(peers)
        for plan in plans:
            try:
                self._outbox.submit(self._ask_hold, plan)
            except RuntimeError:
                return

    def _ask_hold(self, plan: Any) -> None:
        import msgspec

        from .contract import COMPUTE_SLOTS_AGENT_ID, OP_RELEASE_SLOT, OP_REQUEST_SLOT
        from .models import DECISION_SLEEP, SlotDecisionReply

        request = msgspec.structs.replace(plan.request, hold_only=True, hold_id="")
        url = plan.target.url
        client = self.host.peer_client
        try:
            answer = client.send_message(
                url, COMPUTE_SLOTS_AGENT_ID, OP_REQUEST_SLOT.to_message(request), timeout=5.0
            )
            reply = OP_REQUEST_SLOT.decode_reply(answer)
        except Exception as exc:
            reply = SlotDecisionReply(
                decision=DECISION_SLEEP, request_id=request.request_id, message=str(exc)
            )
        with self.lock:
            order = self.scheduler.redirect_answer(request.request_id, reply)
        if order is None:
            return
        if order.release_only:
            from .models import SlotReleaseRequest as _Release

            try:
                client.send_message(
                    url,
                    COMPUTE_SLOTS_AGENT_ID,
                    OP_RELEASE_SLOT.to_message(_Release(hold_id=order.hold_id, reason="released")),
                    timeout=5.0,
                )
            except Exception as exc:
                _log.info("hold %s at %s not released: %s", order.hold_id, url, exc)
            return
        self._send(
            order.request.agent_id,
            "compute_slot_redirect",
            {
                "target_url": order.target_url,
                "target_host_id": order.target_host_id,
                "hold_id": order.hold_id,
                "reason": order.reason,
            },
        )

    # -- jobs report ----------------------------------------------------------------------

    def started(self, handle: JobHandle) -> None:
        lease = handle.lease
        with self.lock:
            try:
                self.scheduler.mark_started(lease.lease_id, handle.pid, handle.create_time)
            except KeyError as exc:
                _log.warning("compute job %s started without a lease: %s", lease.job_id, exc)
        if handle.mode != "thread" and handle.pid:
            self.usage.track(
                lease.lease_id,
                handle.pid,
                create_time=handle.create_time or None,
                paths=handle.usage_paths,
            )

    def renew(self, lease_id: str) -> None:
        try:
            with self.lock:
                self.scheduler.renew_lease(lease_id)
        except Exception:  # never the end of the watcher: the TTL then tells
            _log.exception("renewing lease %s failed", lease_id)

    def job_exited(self, handle: JobHandle, outcome: JobOutcome) -> None:
        self.usage.untrack(handle.lease.lease_id)
        if outcome.ok:
            reason = "released"
        elif outcome.kind == "stopped":
            reason = outcome.stop_reason if outcome.stop_reason in RELEASE_REASONS else "killed"
        elif outcome.kind == "killed":
            reason = "killed"
        else:
            reason = "failed"
        with self.lock:
            self.scheduler.release_slot(
                SlotReleaseRequest(
                    lease_id=handle.lease.lease_id,
                    agent_id=handle.agent_id,
                    reason=reason,
                    exit_code=outcome.exit_code,
                    error=outcome.error,
                )
            )
        self.wake()

    # -- hooks ------------------------------------------------------------------------------

    def _send(self, agent_id: str, kind: str, args: dict[str, Any]) -> None:
        from paglets.core.messages import Message

        def send() -> None:
            try:
                self.host.proxy(agent_id).send_oneway(Message(kind, args))
            except PagletError as exc:
                _log.info("compute job %s not told %s: %s", agent_id, kind, exc)
                if kind == "compute_slot_grant":
                    self.call(self.scheduler.agent_gone, agent_id, "vanished")

        try:
            self._outbox.submit(send)
        except RuntimeError:  # shut down: the host stops
            pass

    def _deliver_grant(self, lease: SlotLease, request: ComputeSlotRequest) -> str | None:
        if not self._known(lease.agent_id):
            return "vanished"
        self._send(lease.agent_id, "compute_slot_grant", {"lease": to_wire(lease)})
        return None

    def _cancel_waiting(self, request: ComputeSlotRequest) -> None:
        self._send(
            request.agent_id, "compute_cancel", {"reason": "cancelled", "from_scheduler": True}
        )

    def _capable_peer(self, request: ComputeSlotRequest) -> PeerView | None:
        from paglets.system.placement import rank_hosts

        try:
            needs = needs_of(request, include_self=False)
        except ValueError:
            return None
        others = [s for s in local_summaries(self.host) if not s.is_self and s.online]
        best = rank_hosts(others, needs, limit=1).best
        if best is None:
            return None
        h = best.host
        return PeerView(host_id=h.host_id, host_url=h.url, host_name=h.host_name)

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        self.host.events.emit(kind, data=dict(data))

    def _on_event(self, event: Any) -> None:
        if event.kind == "dispose" and event.agent_id:
            agent_id = event.agent_id

            def gone() -> None:
                self.call(self.scheduler.agent_gone, agent_id, "vanished")
                from .job_index import delete_row

                try:
                    delete_row(self.host, agent_id)
                except Exception:
                    pass

            try:
                self._outbox.submit(gone)
            except RuntimeError:
                pass

    # -- the summary's load part --------------------------------------------------------

    def _load_source(self, _resources: Any, _base: Any) -> dict[str, Any]:
        if not self.lock.acquire(timeout=0.5):
            return {}
        try:
            st = self.scheduler.host_status()
        finally:
            self.lock.release()
        return {
            "free_cpu_cores": st.free_cpu_cores,
            "free_memory_bytes": st.free_memory_bytes,
            "free_temp_bytes": st.free_temp_bytes,
            "free_gpus": st.free_gpus,
            "running_jobs": st.running_jobs + st.starting_jobs,
            "queue_length": st.queue_length,
            "queued_core_seconds": math.ceil(st.queued_core_seconds),
            "next_release_seconds": (
                math.ceil(st.next_release_seconds) if st.next_release_seconds else None
            ),
        }


def _settings(host: Any) -> dict[str, Any]:
    services = getattr(host, "services", None)
    try:
        return dict(services.settings(COMPUTE_SLOTS)) if services is not None else {}
    except Exception:
        return {}
