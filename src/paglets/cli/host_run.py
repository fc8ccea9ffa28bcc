"""Running `paglets host`: check the options, find the mesh key, start the `Host`, print
the ready line, and stop gracefully on SIGTERM/SIGINT (cli.md sections 1.1 and 1.2).

`check_options` is pure (no runtime import) and raises `CliError` with exit 2 for every
usage or configuration problem, in this order: the name, malformed values and refused
combinations, the key source, a non-loopback bind without a key (with the recipe), then
flags whose feature is not in this build yet, then `--bind-public auto` (which reads the
machine's interfaces). `run_host` does the rest.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import signal
import socket
import ssl
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from paglets.cli.bind_addresses import (
    beacons_switch,
    discovery_line,
    resolve_bind_public,
    scan_switch,
)
from paglets.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, CliError
from paglets.cli.host_options import HostOptions
from paglets.cli.keys import MeshKey, forget_key_variables, read_mesh_key
from paglets.cli.logs import configure_logging

__all__ = ["HostPlan", "check_options", "is_loopback", "run_host"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

KEY_RECIPE = (
    'run "paglets certs key --write" to create ~/.paglets/mesh.key (mode 0600) and copy that '
    "file to every host, or put the same key in PAGLETS_API_KEY (or in the variable named by "
    "--api-key-env) on every host; --insecure starts without a key on a trusted network"
)


@dataclass(frozen=True, slots=True)
class HostPlan:
    """What `check_options` decided: the validated name, where the host keeps its data,
    the key, and the lines to print after the ready line."""

    name: str
    persistence_dir: Path
    key: MeshKey
    mesh_version_source: str | None
    warnings: tuple[str, ...] = field(default=())
    bind_public: tuple[str, ...] = ()  # --bind-public, `auto` resolved
    beacons: bool | None = None  # --discover/--mesh-multicast; None: the host's default
    scan: bool = False  # --discover-scan/--mesh-lan-discovery


def is_loopback(address: str) -> bool:
    """`127.0.0.0/8`, `::1` and `localhost`; any other name or address is not."""
    text = address.strip().strip("[]").lower()
    if text == "localhost" or text.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def _http_url(flag: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(
            f'{flag}: "{value}" is not an absolute http(s) URL',
            hint=f"example: {flag} http://192.168.1.20:8765",
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise CliError(f'{flag}: "{value}" has an invalid port') from None


def _check_values(o: HostOptions) -> None:
    for tag in o.tags:
        if not tag.strip():
            raise CliError("--tag: a tag cannot be empty", hint="example: --tag linux --tag gpu")
    for url in o.peers:
        _http_url("--peer", url)
    if o.public_url is not None:
        _http_url("--public-url", o.public_url)
    if o.connect_to is not None:
        _http_url("--connect-to", o.connect_to)
    for value in o.bind_public:
        if value.startswith("-"):
            raise CliError(
                f'--bind-public: "{value}" looks like an option, not an address',
                hint="give an address or auto: --bind-public auto",
            )
    if o.connect_to is not None and o.bind_public:
        raise CliError(
            "--connect-to and --bind-public cannot be used together: a connect-mode host "
            "reaches the mesh through its hub and publishes no address",
        )
    if o.tls_cert is not None and o.tls_key is None:
        raise CliError("--tls-cert needs --tls-key (the certificate's private key)")
    if o.tls_key is not None and o.tls_cert is None:
        raise CliError("--tls-key needs --tls-cert")
    if o.tls_ca is not None and o.tls_cert is None:
        raise CliError(
            "--tls-ca needs --tls-cert and --tls-key: client certificates are checked over HTTPS",
            hint='make them with "paglets certs host NAME"',
        )
    if o.checkpoint_interval <= 0:
        raise CliError("--checkpoint-interval: must be more than 0 (example: 1s, 500ms)")
    for flag, seconds in (
        ("--relay-offline-after", o.relay_offline_after),
        ("--relay-delivery-timeout", o.relay_delivery_timeout),
    ):
        if seconds is not None and seconds <= 0:
            raise CliError(f"{flag}: must be more than 0 (example: 30s)")
    for flag, size in (
        ("--max-state-size", o.max_state_size),
        ("--max-message-size", o.max_message_size),
    ):
        if size <= 0:
            raise CliError(f"{flag}: must be more than 0 (example: 16M)")
    if o.api_key_env is not None and not o.api_key_env.strip():
        raise CliError("--api-key-env: needs a variable name (example: --api-key-env MESH_KEY)")


def _non_loopback_binds(o: HostOptions) -> list[str]:
    """The reasons this host is reachable from other machines (each needs the key)."""
    reasons = []
    if not is_loopback(o.bind_host):
        reasons.append(f"--host {o.bind_host}")
    reasons += [f"--bind-public {value}" for value in o.bind_public]
    if o.public_url is not None:
        reasons.append(f"--public-url {o.public_url}")
    if o.connect_to is not None:
        reasons.append(f"--connect-to {o.connect_to}")
    return reasons


# (flag, given?, why it is missing, what to do instead); the feature list of cli.md 1.1
# that this build does not have yet. A flag that is given is refused, never ignored.
def _unavailable(o: HostOptions) -> list[tuple[str, str | None]]:
    soon = []
    if o.public_url is not None and urlsplit(o.public_url).path not in ("", "/"):
        soon.append(("--public-url with a path prefix", "publish a URL without a path"))
    return soon


def _check_tls(o: HostOptions) -> None:
    if o.tls_cert is None:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(o.tls_cert), str(o.tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise CliError(
            f"--tls-cert/--tls-key: cannot load {o.tls_cert} with {o.tls_key}: "
            f"{getattr(exc, 'strerror', None) or exc}",
            hint='make a certificate with "paglets certs host NAME"',
        ) from None
    if o.tls_ca is not None:
        try:
            context.load_verify_locations(str(o.tls_ca))
        except (OSError, ssl.SSLError) as exc:
            raise CliError(
                f"--tls-ca: cannot load {o.tls_ca}: {getattr(exc, 'strerror', None) or exc}"
            ) from None


def check_options(o: HostOptions) -> HostPlan:
    """Validate everything that can be checked before the runtime loads; read the key."""
    if o.name is None:
        raise CliError(
            "--name is required to run a host",
            hint="paglets host --name alpha --port 8765 --mesh-version dev",
        )
    if not NAME_RE.match(o.name):
        raise CliError(
            f'--name: "{o.name}" is not a valid host name (1 to 63 letters, digits, ".", "_" '
            'or "-", starting with a letter or digit)',
            hint="example: --name linux-a",
        )
    _check_values(o)
    beacons = beacons_switch(o)
    key = read_mesh_key(o.api_key_env, o.api_key_file)
    exposed = _non_loopback_binds(o)
    if exposed and key.value is None and o.tls_ca is None and not o.insecure:
        raise CliError(
            f"{exposed[0]} makes this host reachable from other machines, so it needs the "
            "mesh key, and none was found (PAGLETS_API_KEY, --api-key-env, ~/.paglets/mesh.key)",
            hint=KEY_RECIPE,
        )
    soon = _unavailable(o)
    if soon:
        flag, instead = soon[0]
        raise CliError(f"{flag} is not available yet in this paglets build", hint=instead)
    _check_tls(o)
    bind_public = resolve_bind_public(o)  # after the key: no key is the first thing to hear

    warnings = []
    if o.insecure and exposed:
        warnings.append(
            f"--insecure: {exposed[0]} without a mesh key: anyone who reaches this address "
            "can run paglets here"
        )
    source = None
    if o.mesh_version is not None:
        source = "--mesh-version"
    elif os.environ.get("PAGLETS_MESH_VERSION"):
        source = "PAGLETS_MESH_VERSION"
    persistence = o.persistence_dir or Path.home() / ".paglets" / "hosts" / o.name
    return HostPlan(
        name=o.name,
        persistence_dir=persistence.expanduser(),
        key=key,
        mesh_version_source=source,
        warnings=tuple(warnings),
        bind_public=bind_public,
        beacons=beacons,
        scan=scan_switch(o),
    )


# -- signals -----------------------------------------------------------------------------


class _Stopper:
    """SIGTERM/SIGINT handlers for the main thread: the first asks for a graceful stop; a
    second SIGINT stops waiting for busy paglets: pending checkpoints are written and the
    process ends (the paglets come back from their last checkpoint at the next start)."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signal_name: str | None = None
        self.host: Any = None
        self.restart: Any = None  # the git update that asks for a restart (network.md §5)
        self._previous: dict[int, Any] = {}

    def request_restart(self, result: Any) -> None:
        """A git update moved the checkout: stop serving, then re-execute (main thread)."""
        if not self.requested.is_set():
            self.restart = result
            self.signal_name = "git update"
            self.requested.set()

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: object) -> None:
        if not self.requested.is_set():
            self.signal_name = signal.Signals(signum).name
            self.requested.set()
            return
        if signum == signal.SIGINT and self.host is not None:
            # Off the signal frame: the main thread may hold the store's (re-entrant) lock.
            threading.Thread(target=self._abandon, name="paglets-abandon", daemon=True).start()

    def _abandon(self) -> None:
        host = self.host
        _say(
            f"paglets host {host.name!r}: second interrupt, not waiting for busy paglets; "
            "they resume from their last checkpoint at the next start"
        )
        try:
            host.checkpoints.flush()
            host.store.commit()
        finally:
            os._exit(EXIT_INTERRUPTED)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# -- running -----------------------------------------------------------------------------


def _port_hint(o: HostOptions, port: int) -> tuple[str | None, int]:
    """After a failed bind: why, as (hint, exit code). In use is a runtime failure (1);
    an address this machine does not have or a privileged port is configuration (2)."""
    family = socket.AF_INET6 if ":" in o.bind_host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((o.bind_host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (
                "another process listens there (another paglets host?); "
                "pick another --port, or --port 0 for any free port",
                EXIT_FAILED,
            )
        if exc.errno == errno.EACCES:
            return "ports below 1024 need privileges; use --port 8765 or above", 2
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            return f"{o.bind_host} is not an address of this machine; see --host", 2
        return None, EXIT_FAILED
    finally:
        probe.close()
    return None, EXIT_FAILED


def _echo_event(event: Any) -> None:
    """Host events that carry an error, one line each on stderr (cli.md 1.2)."""
    if not getattr(event, "error", None):
        return
    about = []
    if event.agent_id:
        about.append(f"agent={event.agent_id}")
    if event.service_name:
        about.append(f"service={event.service_name}")
    where = f" ({', '.join(about)})" if about else ""
    error = " ".join(str(event.error).split("\n"))
    sys.stderr.write(f"paglets host {event.kind}{where}: {error}\n")
    sys.stderr.flush()


_SEVEN_DAYS = 7 * 86400.0  # --pointer-ttl and --transfer-log-retention defaults (cli.md 1.1)


def _host_kwargs(o: HostOptions, plan: HostPlan) -> dict[str, Any]:
    return {
        "host": o.bind_host,
        "port": o.port,
        "api_key": plan.key.value,
        "public_url": o.public_url,
        "connect_to": o.connect_to,  # network.md §3.8
        "relay": _relay_settings(o),
        "mesh": o.mesh,
        "peers": list(o.peers),
        "bind_public": list(plan.bind_public),
        "mesh_multicast": plan.beacons,
        "mesh_lan_discovery": plan.scan,
        "mesh_version": o.mesh_version,
        "persistence_dir": plan.persistence_dir,
        "persistent_storage_quota_bytes": o.persistent_storage_quota,
        "artifact_max_bytes": o.artifact_max_size,
        "artifact_storage_quota_bytes": o.artifact_storage_quota,
        "artifact_spool_ttl_seconds": o.artifact_spool_ttl,
        "tags": list(o.tags),
        "properties": dict(o.properties),
        "insecure": o.insecure,
        "tls_cert": str(o.tls_cert) if o.tls_cert else None,
        "tls_key": str(o.tls_key) if o.tls_key else None,
        "tls_ca": str(o.tls_ca) if o.tls_ca else None,
        "allow_modules": list(o.allow_modules) or None,
        "durability": o.durability,
        "checkpoint_interval": o.checkpoint_interval,
        "max_body_bytes": o.max_message_size,
        "max_state_bytes": o.max_state_size,
        "auto_update_from_git": o.auto_update_from_git,  # network.md §5
        "auto_update_min_interval": (
            60.0 if o.auto_update_min_interval is None else o.auto_update_min_interval
        ),
        "auto_update_verify_signatures": o.auto_update_verify_signatures,
        "ui": o.ui is not False,  # --ui/--no-ui, on by default
        "metrics": o.metrics is not False,  # --metrics/--no-metrics, on by default
        "gpus": o.gpus,  # jobs.md §1.2
        "max_connections": o.max_connections or 1024,
        "pointer_ttl": _SEVEN_DAYS if o.pointer_ttl is None else o.pointer_ttl,
        "transfer_log_retention": (
            _SEVEN_DAYS if o.transfer_log_retention is None else o.transfer_log_retention
        ),
        "artifact_owner_cleanup": o.artifact_owner_cleanup or "delete",
        # jobs.md §5: register_file paths lie under these (default: the home directory).
        "file_roots": list(o.file_roots) or [Path.home()],
        # jobs.md §3.7: running jobs' time to finish at a graceful stop (10 min).
        "restart_grace": 600.0 if o.restart_grace is None else o.restart_grace,
    }


def _relay_settings(o: HostOptions) -> Any:
    from paglets.remote.relay_frames import RelaySettings

    default = RelaySettings()
    return RelaySettings(
        hub=o.relay_hub is not False,
        offline_after=o.relay_offline_after or default.offline_after,
        delivery_timeout=o.relay_delivery_timeout or default.delivery_timeout,
        queue_limit=o.relay_queue_limit or default.queue_limit,
    )


def _ready_lines(o: HostOptions, plan: HostPlan, host: Any) -> list[str]:
    relay = getattr(host, "relay_node", None)
    url = host.address if relay is None else relay.local_url
    if o.tls_cert is not None and o.public_url is None and url.startswith("http://"):
        url = "https://" + url[len("http://") :]
    mesh = "on" if o.mesh else "off"
    lines = [
        f"paglets host {plan.name!r} listening at {url} (mesh {mesh}, version {host.mesh_version})"
        + ("" if relay is None else f", connected via {relay.relay_url}")
    ]
    if relay is not None and relay.link is None:
        lines.append(f"  warning: hub {relay.hub_url} not reachable yet; retrying")
    lines.append(f"  pid {os.getpid()}, data in {host.persistence_dir}")
    if plan.mesh_version_source is not None:
        lines.append(f"  mesh version from {plan.mesh_version_source}")
    elif str(host.mesh_version).startswith("git-"):
        lines.append(f"  mesh version from git HEAD of {Path.cwd()}")
    else:
        lines.append(
            "  warning: no --mesh-version, PAGLETS_MESH_VERSION or git checkout: using "
            f"{host.mesh_version}; give every host the same --mesh-version"
        )
    if plan.key.value is not None:
        lines.append(f"  mesh key from {plan.key.source}")
    elif o.tls_ca is not None:
        lines.append("  authentication: client certificates (mutual TLS)")
    else:
        lines.append("  no mesh key: open to local clients (loopback)")
    if o.peers:
        lines.append(f"  peers: {', '.join(o.peers)}")
    lines.append(f"  discovery: {discovery_line(host)}")
    if o.tls_cert is not None:
        mutual = ", client certificates required" if o.tls_ca is not None else ""
        lines.append(f"  tls: {o.tls_cert}{mutual}")
    else:
        lines.append("  tls: off")
    if getattr(host, "git_update", None) is not None:
        from paglets.tooling.restart import ready_line

        lines.append(ready_line(host.git_update))
    lines += [f"  warning: {w}" for w in plan.warnings]
    return lines


def run_host(o: HostOptions) -> int:
    """Run the host in the foreground; return the exit code."""
    plan = check_options(o)
    configure_logging(o.log_level, o.log_format)
    forget_key_variables(o.api_key_env)

    from paglets.core.errors import HostError
    from paglets.runtime.host import Host

    startup = None
    if o.auto_update_from_git:  # update before serving; may re-execute (network.md §5)
        from paglets.tooling.restart import update_before_serving

        startup = update_before_serving(o, plan.key.value)
    stopper = _Stopper()
    stopper.install()
    try:
        try:
            from paglets.config.startup import sync_for_host_command

            launch = sync_for_host_command(  # api.md §16.4, cli.md §1.1
                o.launch_config, sync=o.sync_launch_config is not False, assume_yes=o.yes
            )
            host = Host(plan.name, launch_config=launch.path, **_host_kwargs(o, plan))
            host.echo_user_info = o.echo_user_info is not False  # read by user-info (on)
        except HostError as exc:
            raise CliError(str(exc)) from None
        except OSError as exc:
            raise CliError(
                f"cannot use the persistence dir {plan.persistence_dir}: {exc.strerror or exc}",
                hint="pass a writable --persistence-dir",
                code=EXIT_FAILED,
            ) from exc
        try:
            host.start_background()
        except HostError as exc:
            host.stop()
            hint, code = _port_hint(o, o.port)
            if getattr(exc, "code", None) in ("name-taken", "auth-failed"):  # the hub refused
                hint, code = None, 2
            raise CliError(str(exc), hint=hint, code=code) from exc
        stopper.host = host
        if host.git_update is not None:
            if startup is not None:
                host.git_update.updater.adopt(startup)
            host.git_update.restart_hook = stopper.request_restart
        host.add_listener(_echo_event)
        _say("\n".join(_ready_lines(o, plan, host)))
        if launch.message:
            _say(f"  {'warning: ' if launch.action == 'skipped' else ''}{launch.message}")
        while not stopper.requested.wait(1.0):
            if host.stopped:
                break
        if stopper.restart is not None and not host.stopped:
            from paglets.tooling.restart import restart_host

            return restart_host(host, o, plan.key.value)  # returns only if exec failed
        refused = getattr(host.mesh, "fatal", None)  # network.md §3.1: name-taken, id copied
        if refused is not None:
            code = EXIT_FAILED if refused[0] == "host-id-collision" else 2
            raise CliError(f"{refused[1]} (paglets are saved)", code=code)
        _say(
            f"paglets host {plan.name!r} stopping ({stopper.signal_name or 'stopped'}): saving "
            f"every paglet, waiting up to {o.shutdown_grace:g}s for busy ones"
            + ("; Ctrl-C again to stop waiting" if sys.stdin.isatty() else "")
        )
        host.shutdown(grace=o.shutdown_grace)
        _say(f"paglets host {plan.name!r} stopped")
        return EXIT_OK
    finally:
        stopper.restore()
