"""`Host`: where paglets live. The facade over the registry, mailboxes, lifecycle,
delivery, checkpoints, timers and the store."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from paglets.core.agent import ACTIVE, INACTIVE, Paglet, PagletContext
from paglets.core.context_events import ContextEvent, ContextEventLog
from paglets.core.errors import (
    HostError,
    InvalidAgentError,
    PagletError,
    PagletMovedError,
    TransferError,
)
from paglets.core.ids import validate_agent_id
from paglets.core.messages import FutureReply, Message, ReplySet
from paglets.core.runtime_values import ServiceScope
from paglets.persistence.policy import DeactivationRequest
from paglets.persistence.storage import ManagedStorage
from paglets.persistence.store import Store
from paglets.remote.proxy import PagletProxy
from paglets.remote.transfer import TransferTicket
from paglets.runtime import local_hosts, mailbox
from paglets.runtime.checkpoints import Checkpoints
from paglets.runtime.classes import ClassSpecs
from paglets.runtime.counters import HostCounters
from paglets.runtime.delivery import Delivery
from paglets.runtime.files import Files
from paglets.runtime.lifecycle import Lifecycle
from paglets.runtime.mailbox import Cell, Turns, current_cell
from paglets.runtime.registry import Registry
from paglets.runtime.timers import Timers
from paglets.runtime.transfers import DEFAULT_RETENTION, Transfers
from paglets.runtime.views import Views
from paglets.runtime.waiting import Waiting
from paglets.runtime.workers import WorkerPool
from paglets.services.helpers import HostServiceMethods

log = logging.getLogger("paglets.host")

__all__ = ["Host"]

MiB = 1024 * 1024
GiB = 1024 * MiB
DEFAULT_TIMEOUT = 10.0
_LOOPBACK = ("127.", "::1", "localhost")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "host"


def _default_code_version(explicit: str | None) -> str:
    if explicit:
        return explicit
    env = os.environ.get("PAGLETS_MESH_VERSION")
    if env:
        return env
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
        if head.returncode == 0 and head.stdout.strip():
            return f"git-{head.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    from paglets import __version__

    return f"paglets-{__version__}-no-git"


def _normalise_tags(tags: Any) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    return sorted({str(t).strip().lower() for t in tags if str(t).strip()})


class Host(HostServiceMethods):
    """A paglets host. `with Host("alpha", persistence_dir=...) as host:` starts it and
    shuts it down (saving every live paglet) on exit."""

    def __init__(
        self,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        client: Any = None,
        api_key: str | None = None,
        public_url: str | None = None,
        bind_public: list[str] | None = None,
        connect_to: str | None = None,
        relay: Any = None,  # RelaySettings (paglets.remote.relay_frames): the hub's knobs
        mesh: bool = True,
        peers: list[str] | None = None,
        mesh_multicast: bool | None = None,
        mesh_lan_discovery: bool = False,
        discover_scan: bool | None = None,
        mesh_version: str | None = None,
        mesh_gossip_interval: float = 1.0,
        mesh_offline_after: float | None = None,
        persistence_dir: str | Path | None = None,
        persistent_storage_quota_bytes: int = 10 * MiB,
        artifact_max_bytes: int = GiB,
        artifact_storage_quota_bytes: int = 10 * GiB,
        artifact_spool_ttl_seconds: float = 86400,
        launch_config: str | Path | None = None,
        auto_update_from_git: bool = False,
        auto_update_min_interval: float = 60.0,
        auto_update_verify_signatures: bool = False,
        tags: list[str] | None = None,
        properties: dict[str, str] | None = None,
        insecure: bool = False,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_ca: str | None = None,
        allow_modules: list[str] | None = None,
        durability: str = "normal",
        checkpoint_interval: float = 1.0,
        max_body_bytes: int = 16 * MiB,
        max_state_bytes: int = 256 * MiB,
        worker_threads: int = 4096,
        default_timeout: float = DEFAULT_TIMEOUT,
        ui: bool = True,
        metrics: bool = True,
        gpus: str | None = None,
        max_connections: int = 1024,
        pointer_ttl: float = DEFAULT_RETENTION,
        transfer_log_retention: float = DEFAULT_RETENTION,
        artifact_owner_cleanup: str = "delete",
        file_roots: list[str | Path] | None = None,
        system_services: bool = True,
        restart_grace: float = 600.0,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise HostError("a host needs a name, e.g. Host('alpha')")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise HostError(
                f"port must be an int from 0 to 65535 (0 = any free port), got {port!r}"
            )
        if artifact_owner_cleanup not in ("delete", "keep"):
            raise HostError(
                f"artifact_owner_cleanup must be 'delete' or 'keep', got {artifact_owner_cleanup!r}"
            )
        if not isinstance(max_connections, int) or max_connections < 1:
            raise HostError(f"max_connections must be an int >= 1, got {max_connections!r}")
        if durability not in ("normal", "full"):
            raise HostError(f"durability must be 'normal' or 'full', got {durability!r}")
        if not isinstance(checkpoint_interval, int | float) or checkpoint_interval <= 0:
            raise HostError(
                f"checkpoint_interval must be a positive number of seconds, got {checkpoint_interval!r}"
            )
        from paglets.runtime import addresses

        if host == "auto":  # the LAN address (api.md §10)
            host = addresses.resolve_auto()[0]
        self.bind_public = addresses.resolve_bind_public(bind_public or [])  # also bound
        exposed = not host.startswith(_LOOPBACK) or bool(self.bind_public)
        self.api_key = api_key if api_key is not None else os.environ.get("PAGLETS_API_KEY")
        if exposed and not (self.api_key or tls_ca or insecure):
            shown = self.bind_public[0] if host.startswith(_LOOPBACK) else host
            raise HostError(
                f"host {name!r} binds {shown}, which is not loopback, without a mesh key: set PAGLETS_API_KEY "
                "(or api_key=), use mutual TLS (tls_ca=), or pass insecure=True on a trusted network"
            )
        self.name = name
        self.bind_host = host
        self.port = port
        self.client = client
        self.public_url = public_url
        self.connect_to = connect_to
        self.relay_settings = relay  # read by relay_hub.mount; None: the defaults
        self.relay_hub: Any = None  # runtime/relay_hub.py, made with the HTTP app
        self.relay_node: Any = None  # runtime/relay_node.py, with --connect-to
        self.peers = list(peers or [])
        self.mesh_enabled = mesh
        default_beacons = exposed and connect_to is None  # network.md §3.7
        self.mesh_multicast = default_beacons if mesh_multicast is None else mesh_multicast
        self.mesh_lan_discovery = mesh_lan_discovery if discover_scan is None else discover_scan
        self.mesh_version = _default_code_version(mesh_version)
        self.mesh_gossip_interval = mesh_gossip_interval
        self.mesh_offline_after = mesh_offline_after
        self.launch_config = launch_config
        self.auto_update_from_git = auto_update_from_git
        self.tags = _normalise_tags(tags)
        from paglets.runtime.resource_probe import automatic_properties

        self.properties = {**automatic_properties(), **dict(properties or {})}  # jobs.md §1.3
        self.tls = (tls_cert, tls_key, tls_ca)
        self.allow_modules = allow_modules
        self.insecure = insecure
        self.max_body_bytes = max_body_bytes
        self.max_state_bytes = max_state_bytes
        self.artifact_limits = (
            artifact_max_bytes,
            artifact_storage_quota_bytes,
            artifact_spool_ttl_seconds,
        )
        self.default_timeout = default_timeout
        self.max_connections = max_connections  # beyond it: 503 + Retry-After (http_api.py)
        # The built-in system services (jobs.md §6); False: none (an embedded host that
        # wants no scheduler, or a test counting its own paglets).
        self.system_services = system_services
        # jobs.md §3.7: at a graceful stop, running compute jobs get this long to finish.
        self.restart_grace = float(restart_grace)
        self.echo_user_info = False  # print user-info notifications here (--echo-user-info)
        self.artifact_owner_cleanup = artifact_owner_cleanup  # jobs.md §5
        self.ui_enabled = ui  # the dashboard at /ui (http_ui.py)
        self.metrics_enabled = metrics  # GET /metrics (metrics.py)
        self.counters = HostCounters()  # bumped on hot paths, read by /metrics
        self.metrics_registry: Any = None  # metrics.registry_for(host) makes it
        self.defer_commits = durability != "full"
        self.mesh: Any = None  # the SwimNode once started (mesh_transport.start_mesh)
        from paglets.runtime.draining import Drain

        self.drain = Drain(self)  # creates and PREPAREs refused while draining (§2.2, §5)
        self.git_update: Any = None  # tooling/auto_update.py: network.md §5
        if auto_update_from_git:
            from paglets.tooling.auto_update import AutoUpdate

            self.git_update = AutoUpdate(
                self,
                min_interval=auto_update_min_interval,
                verify_signatures=auto_update_verify_signatures,
            )
        self.discovery: Any = None  # beacons and scan (runtime/discovery.py), when on
        self._more_sockets: list[socket.socket] = []  # one per --bind-public address

        root = (
            Path(persistence_dir)
            if persistence_dir is not None
            else (Path.home() / ".paglets" / "hosts" / _safe_name(name))
        )
        self.persistence_dir = root.expanduser().resolve()
        self.persistence_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.persistence_dir / "paglets.db", durability=durability)
        self.address = public_url or f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        self.events = ContextEventLog(self.store, name, self.address)
        self.pool = WorkerPool(max_threads=worker_threads)
        self.turns = Turns(self.pool)
        self.registry = Registry()
        self.classes = ClassSpecs(allow_modules, name, self.mesh_version)
        self.checkpoints = Checkpoints(self.store, self.events.emit)
        self.timers = Timers(self, checkpoint_interval)
        self.files = Files(
            self, self.persistence_dir, persistent_storage_quota_bytes, file_roots=file_roots
        )
        self.work_root = self.files.work_root
        self.lifecycle = Lifecycle(self)
        self.delivery = Delivery(self)
        self.transfers = Transfers(self)
        self.transfers.pointer_ttl = pointer_ttl
        self.transfers.log_retention = transfer_log_retention
        self.waiting = Waiting(self.turns)
        self.views = Views(self)
        from paglets.services.host_services import HostServices

        self.services = HostServices(self)  # registry, resident services, launch config
        from paglets.runtime.resource_monitor import ResourceMonitor

        self.resource_monitor = ResourceMonitor(self, gpus=gpus)  # jobs.md §1.1 summaries
        self._properties: dict[str, Any] = {}
        self._state = "new"  # new → running → stopping → stopped
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._stopped_event = threading.Event()
        self._start_lock = threading.Lock()
        self.http: Any = None
        self._artifacts: Any = None
        self._host_id: str | None = None
        self._owns_client = False

    # -- start and stop ------------------------------------------------------------------

    def start_background(self) -> Host:
        """Start the host: event loop thread, listening socket, recovery of paglets live at
        the last stop or crash, `activate_on_startup` records, timers. Returns self."""
        with self._start_lock:
            if self._state == "running":
                return self
            if self._state != "new":
                raise HostError(f"host {self.name!r} was stopped; create a new Host to start again")
            self._bind()
            self._loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run_loop() -> None:
                asyncio.set_event_loop(self._loop)
                self._loop.call_soon(ready.set)  # type: ignore[union-attr]
                self._loop.run_forever()  # type: ignore[union-attr]

            self._loop_thread = threading.Thread(
                target=run_loop, name=f"paglets-loop-{self.name}", daemon=True
            )
            self._loop_thread.start()
            ready.wait(10)
            self._start_server()
            local_hosts.register(self.address, self)
            self._state = "running"
        if self.connect_to:  # the relay URL becomes this host's address (network.md §3.8)
            from paglets.runtime.relay_node import start_relay_node

            start_relay_node(self)
        self.events.emit(
            "context-start", data={"address": self.address, "code_version": self.mesh_version}
        )
        self.services.start()  # resident adverts, before recovery (api.md §10)
        self.transfers.recover()
        self.lifecycle.recover_all()
        self.services.start_agents()  # eager providers, startup agents
        self.timers.start(self._loop)
        if self.mesh_enabled:
            from paglets.runtime.mesh_transport import start_mesh

            self.mesh = start_mesh(self)
            self.mesh_started_at = time.monotonic()
            if self.mesh_multicast or self.mesh_lan_discovery:  # off on loopback
                from paglets.runtime.discovery import start_discovery

                self.discovery = start_discovery(self)
        self.resource_monitor.start()
        if self.git_update is not None:
            self.git_update.start()  # pushes this host's commit to members on older ones
        return self

    def _bind(self) -> None:
        """Reserve the port now so the host's URL is real and unique before the HTTP server
        (which serves on this same socket) starts."""
        family = socket.AF_INET6 if ":" in self.bind_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.bind_host, self.port))
        except OSError as exc:
            sock.close()
            raise HostError(
                f"host {self.name!r} cannot listen on {self.bind_host}:{self.port}: {exc.strerror}"
            ) from None
        sock.listen(512)
        self._socket = sock
        self.port = sock.getsockname()[1]
        from paglets.runtime.addresses import advertised_host, bind_listeners

        try:
            self._more_sockets = bind_listeners(self.bind_public, self.port, self.bind_host)
        except HostError:
            sock.close()
            raise
        if self.public_url is None:
            published = self.bind_public[0] if self.bind_public else advertised_host(self.bind_host)
            shown = published if ":" not in published else f"[{published}]"
            scheme = "https" if self.tls[0] else "http"
            self.address = f"{scheme}://{shown}:{self.port}"
            self.events.host_address = self.address

    def serve_forever(self) -> None:
        """Start (if needed) and block until `shutdown()`, SIGTERM or SIGINT."""
        self.start_background()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(
                    sig, lambda *_: threading.Thread(target=self.shutdown, daemon=True).start()
                )
        self._stopped_event.wait()

    def shutdown(self, *, grace: float = 10.0, restart_grace: float | None = None) -> None:
        """Refuse new arrivals, deactivate every live paglet (`"shutdown"`, back at next
        start), save the ones still busy after `grace` from their last checkpoint, stop.
        Running compute jobs first get `restart_grace` (default `self.restart_grace`) to
        finish; the rest are stopped without using up an attempt (compute_slots/graceful.py)."""
        if self._state == "running":
            from paglets.system.compute_slots.graceful import finish_running_jobs

            finish_running_jobs(
                self, self.restart_grace if restart_grace is None else restart_grace
            )
        if not self._begin_stop():
            return
        self._leave_mesh()
        self.services.shutdown()  # lazy providers sleep without activate_on_startup
        self.lifecycle.shutdown_all(grace)
        self._finish_stop()

    def stop(self, deactivate_active: bool = False) -> None:
        """Stop without running hooks; live paglets are checkpointed and recovered at the
        next start (`on_activation(reason="recover")`)."""
        if deactivate_active:
            self.shutdown()
            return
        if not self._begin_stop():
            return
        cells = [c for c in self.registry.live.values() if c.info.checkpoint_mode != "never"]
        self.checkpoints.flush_all(cells)
        self._finish_stop()

    def _begin_stop(self) -> bool:
        with self._start_lock:
            if self._state != "running":
                if self._state == "new":
                    self._state = "stopped"
                    self.events.close()
                    self.store.close()
                return False
            self._state = "stopping"
        return True

    def _start_server(self) -> None:
        """Serve the HTTP API (and the peer WebSocket) on the socket reserved by `_bind`."""
        from paglets.runtime.http_api import HttpServer

        assert self._loop is not None and self._socket is not None
        self.http = HttpServer(self)
        asyncio.run_coroutine_threadsafe(self.http.start(self._socket), self._loop).result(10)
        for sock in self._more_sockets:
            asyncio.run_coroutine_threadsafe(self.http.serve_also(sock), self._loop).result(10)

    def _stop_server(self) -> None:
        if self.http is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.http.stop(), self._loop).result(5)

    def _leave_mesh(self) -> None:
        """Tell the mesh this host leaves (so others list it `left`, not `dead`); wait at most
        a second for the news to go out."""
        if self.discovery is not None:
            self.discovery.close()  # no beacon may bring anyone back to a leaving host
        node = self.mesh
        if node is None:
            return
        with contextlib.suppress(Exception):
            self._on_loop(node.leave)
            deadline = time.monotonic() + 1.0
            while node.running and time.monotonic() < deadline:
                time.sleep(0.02)

    def _on_loop(self, fn: Callable[..., Any], *args: Any, timeout: float = 5.0) -> Any:
        """`fn(*args)` on the loop thread, where the mesh node's methods must run."""
        loop = self._loop
        if loop is None or threading.current_thread() is self._loop_thread:
            return fn(*args)
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def call() -> None:
            try:
                result.set_result(fn(*args))
            except BaseException as exc:
                result.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return result.result(timeout)

    def _finish_stop(self) -> None:
        if self.git_update is not None:
            self.git_update.stop()
        self.resource_monitor.stop()
        if self.discovery is not None:
            self.discovery.close()
        if self.mesh is not None:
            with contextlib.suppress(Exception):
                self._on_loop(self.mesh.stop)
        if self.relay_node is not None:
            self.relay_node.stop()
        self.timers.stop()
        self._stop_server()
        self.checkpoints.flush()
        self.events.emit("context-shutdown")
        local_hosts.unregister(self.address, self)
        for cell in list(self.registry.live.values()):
            cell.paglet.departed = True
        self.registry.live.clear()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join(5)
        if self._socket is not None:
            self._socket.close()
        for sock in self._more_sockets:
            sock.close()
        self.pool.close()
        if self._artifacts is not None:
            self._artifacts.close()
        if self.client is not None and self._owns_client:
            self.client.close()
        self.events.close()
        self.store.close()
        self._state = "stopped"
        self._stopped_event.set()

    @property
    def host_id(self) -> str:
        """32 hex, made at first start and kept for the life of the persistence dir."""
        host_id = self._host_id
        if host_id is None:
            host_id = self.store.get_meta("host_id")
            if host_id is None:
                host_id = uuid.uuid4().hex
                self.store.set_meta("host_id", host_id)
            self._host_id = host_id
        return host_id

    @property
    def peer_client(self) -> Any:
        """The client this host uses to reach other hosts (it carries the mesh key)."""
        client = self.client
        if client is None:
            from paglets.remote.client import HostClient

            cert, key, ca = self.tls
            self._owns_client = True
            client = self.client = HostClient(
                api_key=self.api_key, tls_ca=ca, tls_cert=cert, tls_key=key, owner_url=self.address
            )
        return client

    @property
    def artifacts(self) -> Any:
        """The host's `ArtifactStore` (opened on first use, once)."""
        store = self._artifacts
        if store is None:
            with self._start_lock:
                store = self._artifacts
                if store is None:
                    from paglets.artifacts import ArtifactStore

                    max_bytes, quota, ttl = self.artifact_limits
                    store = self._artifacts = ArtifactStore(
                        self.persistence_dir / "artifacts",
                        max_artifact_bytes=max_bytes,
                        quota_bytes=quota,
                        spool_ttl_seconds=ttl,
                        host_name=self.name,
                        host_id=self.host_id,
                    )
        store.host_url = self.address  # final only once the port is bound
        return store

    # -- artifacts for paglets (the rules in runtime/artifact_access.py) -------------

    def upload_artifact_for(
        self,
        agent_id: str,
        path: str | Path,
        *,
        host_url: str | None = None,
        owner_agent_id: str | None = None,
        name: str | None = None,
        compression: str = "",
        expires_at: float = 0.0,
    ) -> Any:
        from paglets.runtime import artifact_access

        validate_agent_id(agent_id)
        return artifact_access.upload_artifact(
            self,
            path,
            host_url=host_url,
            owner_agent_id=owner_agent_id or agent_id,
            name=name,
            compression=compression,
            expires_at=expires_at,
        )

    def download_artifact_for(
        self, agent_id: str, artifact: Any, target: str | Path, *, move: bool = False
    ) -> Path:
        from paglets.runtime import artifact_access

        destination = Path(target)
        if not destination.is_absolute():  # relative paths land in the paglet's work dir
            destination = self.work_dir_for(agent_id) / destination
        return artifact_access.download_artifact(self, artifact, destination, move=move)

    def delete_artifact_for(self, agent_id: str, artifact: Any) -> bool:
        from paglets.runtime import artifact_access

        validate_agent_id(agent_id)
        return artifact_access.delete_artifact(self, artifact)

    @property
    def stopped(self) -> bool:
        return self._state in ("stopping", "stopped")

    def __enter__(self) -> Host:
        return self.start_background()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _require_running(self) -> None:
        if self._state != "running":
            if self._state == "new":
                raise HostError(
                    f"host {self.name!r} is not started: call start_background() or use `with Host(...)`"
                )
            raise HostError(f"host {self.name!r} is stopping or stopped; it takes no new paglets")

    def _check_blocking_allowed(self, what: str, async_name: str) -> None:
        if self._loop_thread is not None and threading.current_thread() is self._loop_thread:
            raise RuntimeError(
                f"{what}() would block the host's event loop; use `await ...{async_name}(...)` in async code"
            )

    def _run_on_loop(self, coro: Coroutine[Any, Any, Any]) -> Any:
        if self._loop is None:
            coro.close()
            raise HostError("async handlers need a started host")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # -- proxies and lookups -------------------------------------------------------------

    def proxy(self, agent_id: str) -> PagletProxy:
        return PagletProxy(self.address, agent_id, self.client, _host=self)

    def is_local_url(self, url: str) -> bool:
        return local_hosts.normalise_url(url) == local_hosts.normalise_url(self.address)

    def _is_local_target(self, target: str | TransferTicket | None) -> bool:
        if target is None:
            return True
        destination = TransferTicket.from_target(target).destination
        return destination == self.name or self.is_local_url(destination)

    def resolve_host_url(self, name_or_url: str) -> str:
        if name_or_url == self.name:
            return self.address
        if "://" in name_or_url:
            return name_or_url
        if self.mesh is not None:
            try:
                return self._on_loop(self.mesh.resolve, name_or_url)
            except HostError as exc:
                raise TransferError(str(exc), stage="preflight", code="preflight") from None
        raise TransferError(
            f"no host named {name_or_url!r} in this host's mesh view",
            stage="preflight",
            code="preflight",
        )

    def missing(self, agent_id: str) -> PagletError:
        """The error for an id with no paglet here: moved (a forwarding pointer) or unknown."""
        pointer = self.transfers.log.pointer(agent_id)
        if pointer is not None:
            return PagletMovedError(
                f"paglet {agent_id!r} moved to {pointer.url}", moved=pointer.moved()
            )
        return InvalidAgentError(
            f"no paglet {agent_id!r} on host {self.name!r}", code="agent-not-found"
        )

    def _cell_of(self, agent_id: str) -> Cell:
        validate_agent_id(agent_id)
        cell = self.registry.live.get(agent_id)
        if cell is None:
            # A paglet in its arrival hooks is not live yet, yet its files are already placed
            # and its own context calls must work (api.md §18).
            running = current_cell()
            if running is not None and running.agent_id == agent_id:
                return running
            if self.store.has_agent(agent_id):
                raise InvalidAgentError(
                    f"paglet {agent_id!r} on host {self.name!r} is not active; activate it first"
                )
            raise self.missing(agent_id)
        return cell

    def get_proxy(self, agent_id: str, *, include_inactive: bool = False) -> PagletProxy | None:
        validate_agent_id(agent_id)
        if agent_id in self.registry.live:
            return self.proxy(agent_id)
        if include_inactive:
            row = self.store.get_agent(agent_id)
            if row is not None and row.status == "inactive":
                return self.proxy(agent_id)
        return None

    def _context_get_proxy(self, agent_id: str, host_url: str | None) -> PagletProxy | None:
        if host_url is not None and not self.is_local_url(host_url):
            return PagletProxy(host_url, agent_id, self.peer_client)
        return self.get_proxy(agent_id, include_inactive=True)

    def get_proxies(self, state: int = ACTIVE) -> list[PagletProxy]:
        proxies: list[PagletProxy] = []
        if state & ACTIVE:
            proxies.extend(self.proxy(agent_id) for agent_id in list(self.registry.live))
        if state & INACTIVE:
            proxies.extend(
                self.proxy(row.agent_id) for row in self.store.list_agents(status="inactive")
            )
        return proxies

    # -- lifecycle -----------------------------------------------------------------------

    def create(
        self,
        agent_cls: type[Paglet[Any]] | str,
        state: Any = None,
        *,
        init: Any = None,
        agent_id: str | None = None,
    ) -> PagletProxy:
        return self.lifecycle.create(agent_cls, state, init=init, agent_id=agent_id)

    def create_remote(
        self,
        target_url: str,
        agent_cls: Any,
        state: Any = None,
        *,
        init: Any = None,
        agent_id: str | None = None,
    ) -> PagletProxy:
        if self.is_local_url(target_url):
            return self.create(agent_cls, state, init=init, agent_id=agent_id)
        remote = local_hosts.lookup(target_url)
        if remote is not None:
            return remote.create(agent_cls, state, init=init, agent_id=agent_id)
        return self.peer_client.create_agent(
            target_url, agent_cls, None, state, init=init, agent_id=agent_id
        )

    def activate(self, agent_id: str) -> PagletProxy:
        return self.lifecycle.activate(agent_id)

    def deactivate(self, agent_id: str, request: DeactivationRequest | None = None) -> PagletProxy:
        return self.lifecycle.deactivate(agent_id, request)

    def dispose(self, agent_id: str) -> None:
        self.lifecycle.dispose(agent_id)

    def clone(self, agent_id: str, target: str | TransferTicket | None = None) -> PagletProxy:
        if self._is_local_target(target):
            timeout = TransferTicket.from_target(target).timeout if target is not None else None
            return self.lifecycle.clone_here(agent_id, timeout=timeout)
        return self._remote_move("clone", agent_id, target)

    def dispatch(self, agent_id: str, target: str | TransferTicket) -> PagletProxy:
        if target is None:
            raise TransferError(
                "dispatch needs a target host URL, mesh name or TransferTicket", stage="preflight"
            )
        if self._is_local_target(target):
            return self.lifecycle.move_here(
                agent_id, reason="dispatch", timeout=TransferTicket.from_target(target).timeout
            )
        return self._remote_move("dispatch", agent_id, target)

    def retract(
        self, remote_host_url: str, agent_id: str, *, target: str | None = None
    ) -> PagletProxy:
        """Pull a paglet from `remote_host_url` here (or to `target`)."""
        destination = target or self.address
        if self.is_local_url(remote_host_url):
            if self._is_local_target(destination):
                return self.lifecycle.move_here(agent_id, reason="retract")
            return self.transfers.move(agent_id, destination, "retract")
        return self.peer_client.retract(remote_host_url, agent_id, destination)

    def _remote_move(self, kind: str, agent_id: str, target: Any) -> PagletProxy:
        return self.transfers.move(agent_id, target, kind)

    # -- messages ------------------------------------------------------------------------

    def deliver_message(
        self,
        agent_id: str,
        message: Message,
        *,
        oneway: bool = False,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
        reply_type: Any = None,
    ) -> Any:
        return self.delivery.send(
            agent_id,
            message,
            oneway=oneway,
            activate_if_inactive=activate_if_inactive,
            no_delay=no_delay,
            timeout=timeout,
            reply_type=reply_type,
            sender=self._current_sender(),
        )

    def deliver_future(
        self,
        agent_id: str,
        message: Message,
        *,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
        reply_type: Any = None,
    ) -> FutureReply:
        return self.delivery.send_future(
            agent_id,
            message,
            activate_if_inactive=activate_if_inactive,
            no_delay=no_delay,
            timeout=timeout,
            reply_type=reply_type,
            sender=self._current_sender(),
        )

    def _current_sender(self) -> str | None:
        cell = mailbox.current_cell()
        return cell.agent_id if cell is not None else None

    def _send_from(
        self,
        sender: str | None,
        target: str,
        message: Message,
        *,
        host_url: str | None,
        timeout: float | None,
        reply_type: Any,
    ) -> Any:
        host = self._host_for(host_url)
        return host.delivery.send(
            target, message, timeout=timeout, reply_type=reply_type, sender=sender
        )

    def _send_future_from(
        self,
        sender: str | None,
        target: str,
        message: Message,
        *,
        host_url: str | None,
        timeout: float | None,
        reply_type: Any,
    ) -> FutureReply:
        host = self._host_for(host_url)
        return host.delivery.send_future(
            target, message, timeout=timeout, reply_type=reply_type, sender=sender
        )

    def _host_for(self, host_url: str | None) -> Any:
        """The host serving `host_url`: this one, another in this process, or a
        `RemoteHost` that sends through this host's client."""
        if host_url is None or self.is_local_url(host_url):
            return self
        other = local_hosts.lookup(host_url)
        if other is None:
            from paglets.remote.client import RemoteHost

            return RemoteHost(self.peer_client, host_url, self.address)
        return other

    def multicast_message(
        self,
        kind: str | Message,
        args: dict[str, Any] | None = None,
        *,
        exclude: list[str] | None = None,
        scope: ServiceScope = ServiceScope.LOCAL,
        timeout: float | None = None,
        sender: str | None = None,
    ) -> ReplySet:
        return self.delivery.multicast(
            kind,
            args,
            exclude=exclude,
            timeout=timeout,
            sender=sender if sender is not None else self._current_sender(),
        )

    def mailbox_status(self, agent_id: str) -> dict[str, int]:
        cell = self._cell_of(agent_id)
        return {
            "queued": cell.queued_count(),
            "in_flight": 1 if cell.busy else 0,
            "delivered": cell.delivered,
            "failed": cell.failed,
        }

    # -- state and summaries -----------------------------------------------------------

    def get_state(self, agent_id: str, state_cls: Any = None) -> Any:
        """A snapshot of the state (a copy), for live and inactive paglets."""
        return self.views.get_state(agent_id, state_cls)

    def agent_info(self, agent_id: str) -> dict[str, Any]:
        return self.views.agent_info(agent_id)

    def list_agents(
        self,
        *,
        active: bool = True,
        inactive: bool = False,
        include_state: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        return self.views.list_agents(
            active=active,
            inactive=inactive,
            include_state=include_state,
            offset=offset,
            limit=limit,
        )

    def export_inactive_record(self, agent_id: str) -> dict[str, Any]:
        """paglets 2.0's JSON layout of an inactive record."""
        return self.views.export_inactive_record(agent_id)

    def health(self) -> dict[str, Any]:
        from paglets.tooling.auto_update import health_fields as auto_update_health

        return {
            "status": "ok" if self._state == "running" else self._state,
            "name": self.name,
            "address": self.address,
            "active_count": len(self.registry.live),
            "inactive_count": self.store.count_agents("inactive"),
            "code_version": self.mesh_version,
            "capabilities": ["admin:git-update"] if self.git_update is not None else [],
            "tags": list(self.tags),
            "properties": dict(self.properties),
            "host_id": self.host_id,
            "incarnation": self.mesh.record.incarnation if self.mesh is not None else 0,
            **self.drain.health_fields(),
            **auto_update_health(self.git_update),
            "discover": (
                self.discovery.stats()
                if self.discovery is not None
                else {"beacons": False, "scan": False}
            ),
        }

    def list_hosts(self, *, online_only: bool = False, include_self: bool = True) -> list[Any]:
        if self.mesh is not None and self._state == "running":
            return self._mesh_hosts(online_only=online_only, include_self=include_self)
        if not include_self:
            return []
        from paglets.remote.mesh import HostRef

        h = self.health()
        return [
            HostRef(
                name=self.name,
                url=self.address,
                code_version=self.mesh_version,
                online=True,
                last_seen=time.time(),
                active_count=h["active_count"],
                inactive_count=h["inactive_count"],
                tags=list(self.tags),
                properties=dict(self.properties),
                resources=self.resource_monitor.summary(),
            )
        ]

    def _mesh_hosts(self, *, online_only: bool, include_self: bool) -> list[Any]:
        refs = self._on_loop(lambda: self.mesh.host_refs(time.time(), include_self=include_self))
        if include_self and refs:
            # This host's own counts are exact here; its load summary may lag.
            refs[0] = dataclasses.replace(
                refs[0],
                active_count=len(self.registry.live),
                inactive_count=self.store.count_agents("inactive"),
            )
        return [r for r in refs if r.online] if online_only else refs

    # -- properties and events -------------------------------------------------------

    def get_property(self, key: str, default: Any = None) -> Any:
        return self._properties.get(key, default)

    def set_property(self, key: str, value: Any) -> None:
        if value is None:
            self._properties.pop(key, None)
        else:
            self._properties[key] = value

    def add_listener(self, listener: Callable[[ContextEvent], Any]) -> None:
        self.events.add_listener(listener)

    def remove_listener(self, listener: Callable[[ContextEvent], Any]) -> None:
        self.events.remove_listener(listener)

    def list_events(self, since: int = 0, limit: int = 100) -> list[ContextEvent]:
        return self.events.list_events(since=since, limit=limit)

    # -- per-paglet files and resources ----------------------------------------------

    def resources_for(self, agent_id: str) -> Any:
        return self._cell_of(agent_id).paglet.resources

    def work_dir_for(self, agent_id: str, *, create: bool = True) -> Path:
        validate_agent_id(agent_id)
        return self.files.work_dir(agent_id, create=create)

    def persistent_storage_for(
        self, agent_id: str, *, quota_bytes: int | None = None
    ) -> ManagedStorage:
        return self.files.storage(self._cell_of(agent_id), quota_bytes)

    def register_file_for(
        self, agent_id: str, path: str | Path, *, name: str | None = None, mode: str = "copy"
    ) -> Any:
        return self.files.register(self._cell_of(agent_id), path, name=name, mode=mode)

    def registered_files_for(self, agent_id: str) -> list[Any]:
        return self.files.registered(self._cell_of(agent_id))

    def unregister_file_for(self, agent_id: str, name_or_ref: Any) -> None:
        self.files.unregister(self._cell_of(agent_id), name_or_ref)

    def file_path_for(self, agent_id: str, name_or_ref: Any) -> Path:
        return self.files.path_of(self._cell_of(agent_id), name_or_ref)

    # -- runtime plumbing (used by contexts and components) ----------------------------

    def _attach(self, cell: Cell) -> None:
        context = PagletContext(self, cell.agent_id)
        context._cell = cell
        cell.paglet._context = context

    # Waiting and notification live in runtime/waiting.py; contexts reach them here.
    def _wait_message(self, cell: Cell, timeout: float | None) -> bool:
        return self.waiting.wait_message(cell, self.default_timeout if timeout is None else timeout)

    def _notify_message(self, cell: Cell, *, all_waiters: bool) -> None:
        self.waiting.notify_message(cell, all_waiters=all_waiters)

    def _wait_state(self, cell: Cell, predicate: Callable[[], bool], timeout: float | None) -> bool:
        return self.waiting.wait_state(
            cell, predicate, self.default_timeout if timeout is None else timeout
        )

    def _notify_state(self, cell: Cell, *, all_waiters: bool) -> None:
        self.checkpoints.mark(cell)
        self.waiting.notify_state(cell, all_waiters=all_waiters)

    def _wake_all(self, cell: Cell) -> None:
        self.waiting.wake_all(cell)

    def _edit_subscriptions(self, cell: Cell, action: str, kind: str) -> None:
        self.waiting.edit_subscriptions(cell, action, kind)

    def _mark_dirty(self, cell: Cell) -> None:
        self.checkpoints.mark(cell)

    def _checkpoint_now(self, agent_id: str) -> None:
        self.checkpoints.write_now(self._cell_of(agent_id))
