"""How a paglet reaches artifacts: its own host's store directly, a host in this process
directly, any other host through the client (api.md §1.4, §18)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paglets.artifacts import ArtifactRef
from paglets.runtime import local_hosts

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["delete_artifact", "download_artifact", "upload_artifact"]


def _ref(artifact: ArtifactRef | dict[str, Any]) -> ArtifactRef:
    return artifact if isinstance(artifact, ArtifactRef) else ArtifactRef.from_wire(artifact)


def _in_process(host: Host, url: str | None) -> Host | None:
    if url is None or host.is_local_url(url):
        return host
    return local_hosts.lookup(url)


def upload_artifact(
    host: Host,
    path: str | os.PathLike[str],
    *,
    host_url: str | None = None,
    owner_agent_id: str | None = None,
    name: str | None = None,
    compression: str = "",
    expires_at: float = 0.0,
) -> ArtifactRef:
    target = _in_process(host, host_url)
    if target is not None:
        ref = target.artifacts.put_file(
            path,
            name=name,
            owner_agent_id=owner_agent_id,
            compression=compression,
            expires_at=expires_at,
        )
        return dataclasses.replace(
            ref, host_url=target.address, host_name=target.name, host_id=target.host_id
        )
    assert host_url is not None
    return host.peer_client.upload_artifact(
        host_url,
        path,
        owner_agent_id=owner_agent_id,
        name=name,
        compression=compression,
        expires_at=expires_at,
    )


def download_artifact(
    host: Host, artifact: ArtifactRef | dict[str, Any], target: str | Path, *, move: bool = False
) -> Path:
    ref = _ref(artifact)
    owner = _in_process(host, ref.host_url)
    if owner is not None:
        return owner.artifacts.export_to_path(ref.artifact_id, target, move=move)
    return host.peer_client.download_artifact(ref, target, move=move)


def delete_artifact(host: Host, artifact: ArtifactRef | dict[str, Any]) -> bool:
    ref = _ref(artifact)
    owner = _in_process(host, ref.host_url)
    if owner is not None:
        return bool(owner.artifacts.delete(ref.artifact_id))
    return host.peer_client.delete_artifact(ref)
