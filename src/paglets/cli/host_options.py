"""`HostOptions`: everything `paglets host` was told, already parsed (sizes in bytes,
durations in seconds). `None` means "not given" for flags that are refused when given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["HostOptions"]


@dataclass(frozen=True, slots=True)
class HostOptions:
    name: str | None
    mesh_version: str | None = None
    tags: tuple[str, ...] = ()
    properties: tuple[tuple[str, str], ...] = ()
    bind_host: str = "127.0.0.1"
    port: int = 8765
    bind_public: tuple[str, ...] = ()
    public_url: str | None = None
    max_connections: int | None = None
    mesh: bool = True
    peers: tuple[str, ...] = ()
    discover: bool | None = None
    discover_scan: bool = False
    mesh_multicast: bool | None = None
    mesh_lan_discovery: bool | None = None
    connect_to: str | None = None
    relay_hub: bool | None = None
    relay_offline_after: float | None = None
    relay_delivery_timeout: float | None = None
    relay_queue_limit: int | None = None
    api_key_env: str | None = None
    api_key_file: Path | None = None
    insecure: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    allow_modules: tuple[str, ...] = ()
    persistence_dir: Path | None = None
    durability: str = "normal"
    checkpoint_interval: float = 1.0
    shutdown_grace: float = 10.0
    pointer_ttl: float | None = None
    transfer_log_retention: float | None = None
    max_state_size: int = 256 * 1024 * 1024
    max_message_size: int = 16 * 1024 * 1024
    persistent_storage_quota: int | None = 10 * 1024 * 1024
    artifact_max_size: int | None = 1024**3
    artifact_storage_quota: int | None = 10 * 1024**3
    artifact_spool_ttl: float = 86400.0
    artifact_owner_cleanup: str | None = None
    gpus: str | None = None
    file_roots: tuple[Path, ...] = ()
    echo_user_info: bool | None = None
    restart_grace: float | None = None
    launch_config: Path | None = None
    sync_launch_config: bool | None = None
    yes: bool = False
    auto_update_from_git: bool = False
    auto_update_min_interval: float | None = None
    auto_update_verify_signatures: bool = False
    log_level: str = "info"
    log_format: str = "text"
    ui: bool | None = None
    metrics: bool | None = None
