"""The host queries and artifact calls of `HostClient` (api.md §14, network.md §1.9, §4):
health, paglet listings, events, members, services, artifacts.

A mixin of `HostClient` (its own module so that the client stays one idea per module);
every method is called on a `HostClient`. Artifact transfers live in `artifact_client`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from paglets.artifacts import ArtifactRef

__all__ = ["HostQueries"]


class HostQueries:
    """`HostClient`'s read-only host calls and its artifact calls."""

    if TYPE_CHECKING:  # provided by HostClient

        def _call(
            self,
            method: str,
            url: str,
            payload: Any = None,
            *,
            timeout: float | None = None,
            idempotent: bool = False,
        ) -> Any: ...

    def health(self, url: str, *, timeout: float | None = None) -> dict[str, Any]:
        """`GET /health` (network.md §1.9)."""
        return self._call("GET", f"{url.rstrip('/')}/health", timeout=timeout)

    def list_agents(
        self,
        url: str,
        *,
        state: str = "active",
        include_state: bool = False,
        class_name: str | None = None,
        q: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """Agent summaries (`state`: active, inactive, crashed, superseded or all)."""
        return self.list_agents_page(
            url,
            state=state,
            include_state=include_state,
            class_name=class_name,
            q=q,
            limit=limit,
            offset=offset,
            timeout=timeout,
        ).get("agents", [])

    def list_agents_page(
        self,
        url: str,
        *,
        state: str = "active",
        include_state: bool = False,
        class_name: str | None = None,
        q: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        cursor: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The whole `GET /agents` answer: `{agents, next_cursor, total, truncated}`."""
        query: dict[str, Any] = {"state": state}
        if include_state:
            query["include_state"] = 1
        if class_name:
            query["class"] = class_name
        if q:
            query["q"] = q
        if limit is not None:
            query["limit"] = limit
        if cursor:
            query["cursor"] = cursor
        elif offset:
            query["offset"] = offset
        return self._call("GET", f"{url.rstrip('/')}/agents?{urlencode(query)}", timeout=timeout)

    def events(
        self, url: str, since: int = 0, limit: int = 100, *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Context events after event id `since` (network.md §1.9), oldest first."""
        query = urlencode({"since": since, "limit": limit})
        answer = self._call("GET", f"{url.rstrip('/')}/events?{query}", timeout=timeout)
        return list(answer.get("events", [])) if isinstance(answer, dict) else []

    def list_hosts(self, url: str, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """`GET /hosts`: the members the host at `url` knows, as wire dicts."""
        answer = self._call("GET", f"{url.rstrip('/')}/hosts", timeout=timeout)
        return list(answer.get("hosts", [])) if isinstance(answer, dict) else []

    def list_services(
        self,
        url: str,
        *,
        name: str | None = None,
        capability: str | None = None,
        scope: str | None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """`GET /services`: service records as wire dicts."""
        query = {
            k: v
            for k, v in (("name", name), ("capability", capability), ("scope", scope))
            if v is not None
        }
        suffix = f"?{urlencode(query)}" if query else ""
        answer = self._call("GET", f"{url.rstrip('/')}/services{suffix}", timeout=timeout)
        return list(answer.get("services", [])) if isinstance(answer, dict) else []

    # -- artifacts (network.md §4) ------------------------------------------------------

    def upload_artifact(
        self,
        host_url: str,
        path: str | os.PathLike[str],
        *,
        owner_agent_id: str | None = None,
        name: str | None = None,
        compression: str = "",
        expires_at: float = 0.0,
    ) -> ArtifactRef:
        """Store a file on `host_url`; its `ArtifactRef`."""
        from paglets.remote import artifact_client

        return artifact_client.upload_artifact(
            self,
            host_url,
            path,
            owner_agent_id=owner_agent_id,
            name=name,
            compression=compression,
            expires_at=expires_at,
        )

    def download_artifact(
        self,
        ref: ArtifactRef | dict[str, Any],
        target: str | os.PathLike[str],
        *,
        move: bool = False,
    ) -> Path:
        """Fetch an artifact to `target` (checked by size and SHA-256); `move=True` then
        deletes it on its host."""
        from paglets.remote import artifact_client

        return artifact_client.download_artifact(self, ref, target, move=move)

    def delete_artifact(self, ref: ArtifactRef | dict[str, Any]) -> bool:
        """Delete an artifact on its host; `False` if it was already gone."""
        from paglets.remote import artifact_client

        return artifact_client.delete_artifact(self, ref)

    def list_artifacts(
        self, host_url: str, *, owner_agent_id: str | None = None
    ) -> list[ArtifactRef]:
        """Every live artifact on `host_url` (optionally of one owner)."""
        from paglets.remote import artifact_client

        return artifact_client.list_artifacts(self, host_url, owner_agent_id=owner_agent_id)
