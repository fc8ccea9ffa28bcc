"""`paglets host`: the flags of cli.md section 1.1, read into a `HostOptions`.

Parsing only: values are checked here (sizes, durations, choices: exit 2 with the option
named), and `paglets.cli.host_run` decides what the combination means and runs the host.
Nothing from the runtime is imported until a host actually starts.

Flags whose feature is not in this build yet (relay, launch config, ...) are accepted by
the parser and refused by `host_run` with one line and exit 2 when given, never ignored.
`paglets host drain` is in `paglets.cli.host_drain`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from paglets.cli.host_options import HostOptions
from paglets.cli.session import ApiKeyEnv, Entry, Json, Quiet, Timeout
from paglets.cli.values import (
    option,
    parse_choice,
    parse_duration,
    parse_int,
    parse_key_value,
    parse_size,
)

__all__ = ["app"]

app = typer.Typer(
    name="host",
    help="Run a paglets host in the foreground until SIGINT/SIGTERM.",
    invoke_without_command=True,
    add_completion=False,
    context_settings={"help_option_names": ["--help", "-h"]},
)

_size = option(parse_size)
_size_or_none = option(lambda text: parse_size(text, allow_none=True))
_duration = option(parse_duration)
_key_value = option(parse_key_value)
_durability = option(lambda text: parse_choice(text, ("normal", "full")))
_log_level = option(lambda text: parse_choice(text, ("debug", "info", "warning", "error")))
_log_format = option(lambda text: parse_choice(text, ("text", "json")))
_port = option(lambda text: parse_int(text, low=0, high=65535, what="a port"))
_count = option(lambda text: parse_int(text, low=1, what="a count"))
_cleanup = option(lambda text: parse_choice(text, ("delete", "keep")))

ID = "Identity"
NET = "Network"
MESH = "Mesh and discovery"
RELAY = "Relay"
SEC = "Security"
PERSIST = "Persistence"
LIMITS = "Limits and quotas"
JOBS = "Jobs"
LAUNCH = "Launch config"
UPDATE = "Auto-update"
OUT = "Output"


@app.callback()
def host(
    ctx: typer.Context,
    # -- identity
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", help="Host name, unique in the mesh.", rich_help_panel=ID),
    ] = None,
    mesh_version: Annotated[
        str | None,
        typer.Option(
            help="Code-version gate (default: PAGLETS_MESH_VERSION, else git HEAD).",
            rich_help_panel=ID,
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Advertised role (repeatable).", rich_help_panel=ID),
    ] = None,
    property_: Annotated[
        list[str] | None,  # parsed to (key, value) pairs by the parser
        typer.Option(
            "--property",
            metavar="KEY=VALUE",
            parser=_key_value,
            help="Advertised hint (repeatable).",
            rich_help_panel=ID,
        ),
    ] = None,
    # -- network
    bind_host: Annotated[
        str,
        typer.Option("--host", help="Bind address.", rich_help_panel=NET),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            "--port",
            "-p",
            parser=_port,
            metavar="PORT",
            help="0 = any free port.",
            rich_help_panel=NET,
        ),
    ] = "8765",  # type: ignore[assignment]
    bind_public: Annotated[
        list[str] | None,
        typer.Option(
            metavar="HOST|auto", help="Also bind this address (repeatable).", rich_help_panel=NET
        ),
    ] = None,
    public_url: Annotated[
        str | None, typer.Option(help="URL to publish (reverse proxy).", rich_help_panel=NET)
    ] = None,
    max_connections: Annotated[
        int | None,
        typer.Option(parser=_count, metavar="N", help="Default 1024.", rich_help_panel=NET),
    ] = None,
    # -- mesh and discovery
    mesh: Annotated[
        bool, typer.Option("--mesh/--no-mesh", help="Mesh membership.", rich_help_panel=MESH)
    ] = True,
    peer: Annotated[
        list[str] | None,
        typer.Option("--peer", metavar="URL", help="Seed host (repeatable).", rich_help_panel=MESH),
    ] = None,
    discover: Annotated[
        bool | None,
        typer.Option("--discover/--no-discover", help="Signed UDP beacons.", rich_help_panel=MESH),
    ] = None,
    discover_scan: Annotated[
        bool, typer.Option(help="Also probe the local /24.", rich_help_panel=MESH)
    ] = False,
    mesh_multicast: Annotated[
        bool | None,
        typer.Option(
            "--mesh-multicast/--no-mesh-multicast",
            help="paglets 2.0 name for --discover.",
            rich_help_panel=MESH,
        ),
    ] = None,
    mesh_lan_discovery: Annotated[
        bool | None,
        typer.Option(
            "--mesh-lan-discovery/--no-mesh-lan-discovery",
            help="paglets 2.0 name for --discover-scan.",
            rich_help_panel=MESH,
        ),
    ] = None,
    # -- relay
    connect_to: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Connect mode via a hub.", rich_help_panel=RELAY),
    ] = None,
    relay_hub: Annotated[
        bool | None,
        typer.Option(
            "--relay-hub/--no-relay-hub", help="Accept relay nodes.", rich_help_panel=RELAY
        ),
    ] = None,
    relay_offline_after: Annotated[
        float | None, typer.Option(parser=_duration, metavar="DURATION", rich_help_panel=RELAY)
    ] = None,
    relay_delivery_timeout: Annotated[
        float | None, typer.Option(parser=_duration, metavar="DURATION", rich_help_panel=RELAY)
    ] = None,
    relay_queue_limit: Annotated[
        int | None, typer.Option(parser=_count, metavar="N", rich_help_panel=RELAY)
    ] = None,
    # -- security
    api_key_env: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Variable holding the mesh key.", rich_help_panel=SEC),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH", help="Default ~/.paglets/mesh.key (mode 0600).", rich_help_panel=SEC
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(help="Allow a non-loopback bind without a key.", rich_help_panel=SEC),
    ] = False,
    tls_cert: Annotated[Path | None, typer.Option(metavar="PATH", rich_help_panel=SEC)] = None,
    tls_key: Annotated[Path | None, typer.Option(metavar="PATH", rich_help_panel=SEC)] = None,
    tls_ca: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="Require client certificates.", rich_help_panel=SEC),
    ] = None,
    allow_module: Annotated[
        list[str] | None,
        typer.Option(metavar="PREFIX", help="Import allow-list (repeatable).", rich_help_panel=SEC),
    ] = None,
    # -- persistence
    persistence_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH", help="Default ~/.paglets/hosts/<name>.", rich_help_panel=PERSIST
        ),
    ] = None,
    durability: Annotated[
        str, typer.Option(parser=_durability, metavar="normal|full", rich_help_panel=PERSIST)
    ] = "normal",
    checkpoint_interval: Annotated[
        float, typer.Option(parser=_duration, metavar="DURATION", rich_help_panel=PERSIST)
    ] = "1s",  # type: ignore[assignment]
    shutdown_grace: Annotated[
        float, typer.Option(parser=_duration, metavar="DURATION", rich_help_panel=PERSIST)
    ] = "10s",  # type: ignore[assignment]
    pointer_ttl: Annotated[
        float | None, typer.Option(parser=_duration, metavar="DURATION", rich_help_panel=PERSIST)
    ] = None,
    transfer_log_retention: Annotated[
        float | None, typer.Option(parser=_duration, metavar="DURATION", rich_help_panel=PERSIST)
    ] = None,
    # -- limits and quotas
    max_state_size: Annotated[
        int, typer.Option(parser=_size, metavar="SIZE", rich_help_panel=LIMITS)
    ] = "256M",  # type: ignore[assignment]
    max_message_size: Annotated[
        int, typer.Option(parser=_size, metavar="SIZE", rich_help_panel=LIMITS)
    ] = "16M",  # type: ignore[assignment]
    persistent_storage_quota: Annotated[
        int | None,
        typer.Option(parser=_size_or_none, metavar="SIZE|none", rich_help_panel=LIMITS),
    ] = "10M",  # type: ignore[assignment]
    artifact_max_size: Annotated[
        int | None,
        typer.Option(parser=_size_or_none, metavar="SIZE|none", rich_help_panel=LIMITS),
    ] = "1G",  # type: ignore[assignment]
    artifact_storage_quota: Annotated[
        int | None,
        typer.Option(parser=_size_or_none, metavar="SIZE|none", rich_help_panel=LIMITS),
    ] = "10G",  # type: ignore[assignment]
    artifact_spool_ttl: Annotated[
        float, typer.Option(parser=_duration, metavar="DURATION", rich_help_panel=LIMITS)
    ] = "24h",  # type: ignore[assignment]
    artifact_owner_cleanup: Annotated[
        str | None, typer.Option(parser=_cleanup, metavar="delete|keep", rich_help_panel=LIMITS)
    ] = None,
    # -- jobs
    gpus: Annotated[
        str | None, typer.Option(metavar="auto|none|LIST", rich_help_panel=JOBS)
    ] = None,
    file_root: Annotated[
        list[Path] | None, typer.Option(metavar="PATH", rich_help_panel=JOBS)
    ] = None,
    echo_user_info: Annotated[
        bool | None,
        typer.Option("--echo-user-info/--no-echo-user-info", rich_help_panel=JOBS),
    ] = None,
    restart_grace: Annotated[
        float | None, typer.Option(parser=_duration, metavar="DURATION", rich_help_panel=JOBS)
    ] = None,
    # -- launch config
    launch_config: Annotated[
        Path | None, typer.Option(metavar="PATH", rich_help_panel=LAUNCH)
    ] = None,
    sync_launch_config: Annotated[
        bool | None,
        typer.Option("--sync-launch-config/--no-sync-launch-config", rich_help_panel=LAUNCH),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Replace without asking.", rich_help_panel=LAUNCH)
    ] = False,
    # -- auto-update
    auto_update_from_git: Annotated[
        bool,
        typer.Option(
            help="Follow the working directory's git upstream: update, restart (trusted labs).",
            rich_help_panel=UPDATE,
        ),
    ] = False,
    auto_update_min_interval: Annotated[
        float | None,
        typer.Option(
            parser=_duration,
            metavar="DURATION",
            help="At most one update run per interval (default 60s).",
            rich_help_panel=UPDATE,
        ),
    ] = None,
    auto_update_verify_signatures: Annotated[
        bool,
        typer.Option(
            help="Install only commits git verify-commit accepts.", rich_help_panel=UPDATE
        ),
    ] = False,
    # -- output
    log_level: Annotated[
        str, typer.Option(parser=_log_level, metavar="LEVEL", rich_help_panel=OUT)
    ] = "info",
    log_format: Annotated[
        str, typer.Option(parser=_log_format, metavar="text|json", rich_help_panel=OUT)
    ] = "text",
    ui: Annotated[bool | None, typer.Option("--ui/--no-ui", rich_help_panel=OUT)] = None,
    metrics: Annotated[
        bool | None, typer.Option("--metrics/--no-metrics", rich_help_panel=OUT)
    ] = None,
) -> None:
    """Run a paglets host in the foreground until SIGINT/SIGTERM."""
    if ctx.invoked_subcommand is not None:
        return  # `paglets host drain ...`: the subcommand does the work
    options = HostOptions(
        name=name,
        mesh_version=mesh_version,
        tags=tuple(tag or ()),
        properties=tuple(property_ or ()),  # type: ignore[arg-type]
        bind_host=bind_host,
        port=port,
        bind_public=tuple(bind_public or ()),
        public_url=public_url,
        max_connections=max_connections,
        mesh=mesh,
        peers=tuple(peer or ()),
        discover=discover,
        discover_scan=discover_scan,
        mesh_multicast=mesh_multicast,
        mesh_lan_discovery=mesh_lan_discovery,
        connect_to=connect_to,
        relay_hub=relay_hub,
        relay_offline_after=relay_offline_after,
        relay_delivery_timeout=relay_delivery_timeout,
        relay_queue_limit=relay_queue_limit,
        api_key_env=api_key_env,
        api_key_file=api_key_file,
        insecure=insecure,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
        allow_modules=tuple(allow_module or ()),
        persistence_dir=persistence_dir,
        durability=durability,
        checkpoint_interval=checkpoint_interval,
        shutdown_grace=shutdown_grace,
        pointer_ttl=pointer_ttl,
        transfer_log_retention=transfer_log_retention,
        max_state_size=max_state_size,
        max_message_size=max_message_size,
        persistent_storage_quota=persistent_storage_quota,
        artifact_max_size=artifact_max_size,
        artifact_storage_quota=artifact_storage_quota,
        artifact_spool_ttl=artifact_spool_ttl,
        artifact_owner_cleanup=artifact_owner_cleanup,
        gpus=gpus,
        file_roots=tuple(file_root or ()),
        echo_user_info=echo_user_info,
        restart_grace=restart_grace,
        launch_config=launch_config,
        sync_launch_config=sync_launch_config,
        yes=yes,
        auto_update_from_git=auto_update_from_git,
        auto_update_min_interval=auto_update_min_interval,
        auto_update_verify_signatures=auto_update_verify_signatures,
        log_level=log_level,
        log_format=log_format,
        ui=ui,
        metrics=metrics,
    )
    from paglets.cli.host_run import run_host

    raise typer.Exit(run_host(options))


@app.command()
def drain(
    target: Annotated[
        str | None, typer.Option(metavar="NAME|URL", help="The member to drain.")
    ] = None,
    undo: Annotated[bool, typer.Option(help="Resume admission.")] = False,
    wait: Annotated[bool, typer.Option(help="Show running jobs until they end.")] = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Ask a host to stop admitting new paglets and jobs (--undo: admit again)."""
    from paglets.cli.host_drain import run_drain

    run_drain(
        target=target,
        undo=undo,
        wait=wait,
        entry=entry,
        json_=json_,
        timeout=timeout,
        api_key_env=api_key_env,
        quiet=quiet,
    )
