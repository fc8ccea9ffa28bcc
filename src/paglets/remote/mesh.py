"""Mesh value types. Membership itself arrives with the mesh layer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HostRef"]


@dataclass(frozen=True, slots=True)
class HostRef:
    """A member of the mesh as one host sees it. `last_seen` is this host's receive time."""

    name: str
    url: str
    code_version: str | None = None
    online: bool = True
    last_seen: float = 0.0
    active_count: int = 0
    inactive_count: int = 0
    tags: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    host_id: str | None = None
    incarnation: int = 0
    status: str = "alive"
    capabilities: list[str] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> HostRef:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in payload.items() if k in names})
