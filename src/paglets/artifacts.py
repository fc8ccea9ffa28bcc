"""Artifact references and registered-file references (value types), and the store.

`ArtifactRef` and `PagletFileRef` are the shapes that paglet state and messages carry.
`ArtifactStore` (the host-owned bytes, `paglets.artifact_store`) is importable from here but
loaded only on first use, so carrying a ref never imports SQLite or the store.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paglets.artifact_store import ArtifactStore

__all__ = ["ArtifactRef", "ArtifactStore", "PagletFileRef", "safe_file_name"]

_UNSAFE = re.compile(r"[\x00-\x1f<>:\"|?*]")


def safe_file_name(name: str, fallback: str = "artifact") -> str:
    """A file name made from an artifact's or registered file's `name`: the last path
    component only, without control or reserved characters, never empty, `.` or `..`.
    Remote names are labels, so they are only ever used through this."""
    base = re.split(r"[/\\]", name or "")[-1]
    base = _UNSAFE.sub("_", base).strip().rstrip(".")
    if base in ("", ".", ".."):
        base = fallback
    return base[:255]


def __getattr__(name: str) -> Any:
    if name == "ArtifactStore":
        from paglets.artifact_store import ArtifactStore

        return ArtifactStore
    raise AttributeError(f"module 'paglets.artifacts' has no attribute {name!r}")


def _from_wire(cls: type, payload: dict[str, Any]) -> Any:
    if not isinstance(payload, dict):
        raise ValueError(f"{cls.__name__} wire form must be a dict, got {type(payload).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in payload.items() if k in names})


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    host_url: str
    artifact_id: str
    name: str
    size_bytes: int
    sha256: str
    compression: str = ""
    created_at: float = 0.0
    expires_at: float = 0.0
    owner_agent_id: str | None = None
    host_id: str | None = None
    host_name: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> ArtifactRef:
        return _from_wire(cls, payload)


@dataclass(frozen=True, slots=True)
class PagletFileRef:
    """A file registered by a paglet: it travels with dispatch, retract and clone."""

    name: str
    mode: str = "copy"
    source_host_name: str = ""
    source_host_url: str = ""
    source_path: str = ""
    source_created_at: float = 0.0
    source_modified_at: float = 0.0
    size_bytes: int = 0
    sha256: str = ""
    current_host_name: str = ""
    current_host_url: str = ""
    current_path: str = ""
    status: str = "registered"
    last_error: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> PagletFileRef:
        return _from_wire(cls, payload)
