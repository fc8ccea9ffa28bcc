"""`Host.services`: the host's service registry, resident services, launch config and
startup agents, started and stopped with the host.

Order at start (api.md §10): the registry and resident adverts come up before crash
recovery (`start`), eager providers and startup agents after the `activate_on_startup`
records (`start_agents`). A tick on the host's loop (at most every second, faster when a
lazy service has a short idle timeout) drives idle deactivation, eager restarts, lease
expiry and digest publishing; anything that blocks goes to the worker pool.

The launch config is read, and every class it names imported, when the `Host` is
constructed, so a bad config fails before anything starts (`LaunchConfigError`).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paglets.config.startup import (
    AutoStartSpec,
    LaunchConfig,
    LaunchConfigError,
    ResidentServiceEntry,
    StartupAgentEntry,
    load_launch_config,
)
from paglets.core.errors import PagletError
from paglets.core.runtime_values import ResidentLifecycle
from paglets.services.builtin import BUILTIN_RESIDENT_SERVICES
from paglets.services.registry import ServiceRegistry
from paglets.services.resident import ResidentManager, ResidentServiceSpec

if TYPE_CHECKING:
    from paglets.core.context_events import ContextEvent
    from paglets.runtime.host import Host

__all__ = ["HostServices"]

log = logging.getLogger("paglets.services")

TICK_MAX, TICK_MIN = 1.0, 0.05
PRUNE_EVERY = 2.0
# Event kinds after which a paglet may have stopped (or started) being live here.
LIVENESS_KINDS = frozenset(
    {
        "create",
        "activate",
        "paglet-recovered",
        "arrival",
        "arrival-aborted",
        "deactivate",
        "dispose",
        "dispatch",
        "retract",
        "transfer-aborted",
        "paglet-crashed",
        "activation-failed",
    }
)


def _load(config: Any) -> LaunchConfig | None:
    if config is None:
        return None
    if isinstance(config, LaunchConfig):
        return config
    if isinstance(config, str | os.PathLike):
        return load_launch_config(Path(config))
    raise LaunchConfigError(
        f"launch_config must be a path or a LaunchConfig, got {type(config).__name__}"
    )


class HostServices:
    """Everything service-related of one host (module docstring)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.registry = ServiceRegistry(host)
        self.resident = ResidentManager(host, self.registry)
        self._agents: list[tuple[type, str, AutoStartSpec, str]] = []
        self._timer: Any = None
        self._stopped = False
        self._pruned_at = 0.0
        try:
            self.config = _load(host.launch_config)
            self._enable_configured()
        except BaseException:
            # The host will never start: close what its construction opened so far.
            host.events.close()
            host.store.close()
            raise

    # -- construction: the launch config and the built-in services ------------------------

    def _entries(self) -> tuple[ResidentServiceEntry, ...]:
        return self.config.resident_services if self.config is not None else ()

    def _enable_configured(self) -> None:
        entries = self._entries()
        builtins = BUILTIN_RESIDENT_SERVICES if self.host.system_services else ()
        for class_name, service in builtins:
            if any(e.class_name == class_name and e.service in (None, service) for e in entries):
                continue  # the launch config tunes (or disables) it
            try:
                self.resident.enable(class_name, service, where="built-in service")
            except Exception as exc:
                log.warning("built-in service %s (%s) not enabled: %s", service, class_name, exc)
        for entry in entries:
            if entry.enabled:
                self._enable_entry(entry)
        for agent in self.config.startup_agents if self.config is not None else ():
            self._add_agent(agent)

    def _class(self, class_name: str, where: str) -> type:
        try:
            return self.host.classes.get(class_name).cls
        except PagletError as exc:
            raise LaunchConfigError(f"{where}, key 'class': {exc}") from None

    def _enable_entry(self, entry: ResidentServiceEntry) -> None:
        cls = self._class(entry.class_name, entry.where)
        try:
            self.resident.enable(
                cls,
                entry.service,
                agent_id=entry.agent_id,
                lifecycle=entry.lifecycle,
                scope=entry.scope,
                idle_timeout=entry.idle_timeout,
                state=entry.state,
                init=entry.init,
                where=entry.where,
            )
        except LaunchConfigError:
            raise
        except PagletError as exc:
            message = str(exc)
            if not message.startswith(entry.where):
                message = f"{entry.where}: {message}"
            raise LaunchConfigError(message) from None

    def _add_agent(self, entry: StartupAgentEntry) -> None:
        cls = self._class(entry.class_name, entry.where)
        auto = getattr(cls, "AUTO_START", None)
        if auto is not None and not isinstance(auto, AutoStartSpec):
            raise LaunchConfigError(
                f"{entry.where}: {entry.class_name}.AUTO_START must be an AutoStartSpec "
                f"(paglets.config.startup) or None, got {auto!r}"
            )
        spec = entry.resolve(auto)
        if spec.enabled:
            self._agents.append((cls, entry.class_name, spec, entry.where))

    # -- public ---------------------------------------------------------------------------

    def settings(self, name: str) -> dict[str, Any]:
        """The launch config's `[services.<name>]` table (empty without one)."""
        return self.config.service_settings(name) if self.config is not None else {}

    def enable_resident(
        self,
        agent_cls: type | str,
        service: str | None = None,
        **overrides: Any,
    ) -> ResidentServiceSpec:
        """Run a `RESIDENT_SERVICES` entry of `agent_cls` here, as a launch-config entry
        would (keywords: agent_id, lifecycle, scope, idle_timeout, state, init)."""
        return self.resident.enable(agent_cls, service, **overrides)

    # -- start and stop -------------------------------------------------------------------

    def start(self) -> None:
        """Before crash recovery: listen to the event log, advertise resident services,
        start the tick."""
        self.host.add_listener(self._on_event)
        self.resident.start()
        self._schedule()

    def start_agents(self) -> None:
        """After the `activate_on_startup` records: eager providers, then startup agents."""
        self.resident.start_eager()
        for cls, class_name, spec, where in self._agents:
            try:
                self._start_agent(cls, class_name, spec)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.warning("startup agent %s (%s) did not start: %s", class_name, where, error)
                self.host.events.emit(
                    "startup-agent-failed",
                    agent_id=spec.agent_id,
                    class_name=class_name,
                    error=error,
                )

    def _start_agent(self, cls: type, class_name: str, spec: AutoStartSpec) -> None:
        host = self.host
        agent_id = spec.agent_id
        if agent_id is not None:
            if agent_id in host.registry.live:
                return
            if host.store.has_agent(agent_id):
                host.activate(agent_id)
                return
            host.create(cls, spec.state, init=spec.init, agent_id=agent_id)
            return
        if spec.singleton:
            if any(c.info.class_name == class_name for c in list(host.registry.live.values())):
                return
            for row in host.store.list_agents(status="inactive"):
                if row.class_name == class_name:
                    host.activate(row.agent_id)
                    return
        host.create(cls, spec.state, init=spec.init)

    def shutdown(self) -> None:
        """Host shutdown, before the paglets are saved: stop the tick, put lazy providers
        to sleep (they do not come back at the next start)."""
        self._stopped = True
        timer = self._timer
        if timer is not None and self.host._loop is not None:
            try:
                self.host._loop.call_soon_threadsafe(timer.cancel)
            except RuntimeError:
                pass
        self.resident.shutdown()

    # -- the tick -------------------------------------------------------------------------

    def _interval(self) -> float:
        lazy = [
            s.idle_timeout for s in self.resident.specs() if s.lifecycle is ResidentLifecycle.LAZY
        ]
        return max(TICK_MIN, min([TICK_MAX, *(t / 4 for t in lazy)]))

    def _schedule(self) -> None:
        loop = self.host._loop
        if loop is None or self._stopped:
            return

        def arm() -> None:
            if not self._stopped:
                self._timer = loop.call_later(self._interval(), self._tick)

        try:
            loop.call_soon_threadsafe(arm)
        except RuntimeError:
            pass  # the loop is closed

    def _tick(self) -> None:
        """On the loop: never raises, always re-arms while the host runs."""
        host = self.host
        if self._stopped or host.stopped:
            return
        try:
            self.resident.tick()
            now = time.monotonic()
            if now - self._pruned_at >= PRUNE_EVERY:
                self._pruned_at = now
                self.registry.prune()
            self.registry.publish_if_dirty()
        except Exception:
            log.exception("service tick failed")
        loop = host._loop
        if loop is not None and not self._stopped:
            self._timer = loop.call_later(self._interval(), self._tick)

    # -- host events ----------------------------------------------------------------------

    def _on_event(self, event: ContextEvent) -> None:
        """A paglet with records left or came back: drop dead records, republish."""
        agent_id = event.agent_id
        registry = self.registry
        kind = event.kind
        if kind in LIVENESS_KINDS and agent_id is not None and registry.has_agent(agent_id):
            if not registry.prune(agent_id):
                registry._changed()  # it may have just gone live: its records show now
        elif kind in ("member-dead", "member-left", "member-forgotten"):
            host_id = event.data.get("host_id") if event.data else None
            if host_id:
                registry.forget_host(str(host_id))
