"""A paglet's files on its host: its work dir, its class's persistent storage, and the
files it registered to travel with it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paglets.artifacts import PagletFileRef
from paglets.core.errors import ForbiddenError, HostError
from paglets.persistence.storage import ManagedStorage
from paglets.runtime.mailbox import Cell

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["Files"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(name: str) -> str:
    cleaned = _SAFE.sub("_", os.path.basename(name)).lstrip(".")
    return cleaned[:128] or "file"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Files:
    def __init__(
        self,
        host: Host,
        root: Path,
        storage_quota: int,
        *,
        file_roots: list[str | Path] | None = None,
    ) -> None:
        self.host = host
        self.work_root = root / "work"
        self.storage_root = root / "storage"
        # Where register_file paths may lie besides the host's own dirs (jobs.md §5); None:
        # anywhere (an in-process Host; `paglets host` defaults to the home directory).
        self.file_roots = (
            None
            if file_roots is None
            else [Path(r).expanduser().resolve() for r in file_roots] + [root.resolve()]
        )
        self._storage_quota = storage_quota
        self._storages: dict[str, ManagedStorage] = {}
        self._lock = threading.Lock()

    # -- work dir and storage ----------------------------------------------------------

    def _check_root(self, source: Path, given: str | Path) -> None:
        roots = self.file_roots
        if roots is None or any(source.is_relative_to(r) for r in roots):
            return
        raise ForbiddenError(
            f"cannot register {str(given)!r}: it is outside the file roots of host "
            f"{self.host.name!r} ({', '.join(str(r) for r in roots)}); start the host with "
            "--file-root DIR to allow that directory",
            code="outside-file-roots",
        )

    def work_dir(self, agent_id: str, *, create: bool = True) -> Path:
        path = self.work_root / agent_id  # agent ids are validated: safe as a file name
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def storage(self, cell: Cell, quota_bytes: int | None) -> ManagedStorage:
        key = cell.info.class_name.replace(":", ".")
        with self._lock:
            storage = self._storages.get(key)
            if storage is None:
                storage = ManagedStorage(
                    self.storage_root / safe_file_name(key), quota_bytes=self._storage_quota
                )
                self._storages[key] = storage
        if quota_bytes is None:
            return storage
        if not isinstance(quota_bytes, int) or quota_bytes < 0:
            raise ValueError(f"quota_bytes must be an int >= 0, got {quota_bytes!r}")
        return storage.limited(quota_bytes)

    # -- registered files --------------------------------------------------------------

    def _refs(self, cell: Cell) -> list[dict[str, Any]]:
        return cell.info.meta.setdefault("files", [])

    def register(
        self, cell: Cell, path: str | Path, *, name: str | None, mode: str
    ) -> PagletFileRef:
        if mode not in ("copy", "move"):
            raise ValueError(f"mode must be 'copy' or 'move', got {mode!r}")
        source = Path(path).expanduser().resolve()
        self._check_root(source, path)
        if not source.is_file():
            raise HostError(
                f"cannot register {str(path)!r}: not a regular file on host {self.host.name!r}"
            )
        file_name = safe_file_name(name or source.name)
        stat = source.stat()
        ref = PagletFileRef(
            name=file_name,
            mode=mode,
            source_host_name=self.host.name,
            source_host_url=self.host.address,
            source_path=str(source),
            source_created_at=stat.st_ctime,
            source_modified_at=stat.st_mtime,
            size_bytes=stat.st_size,
            sha256=sha256_of(source),
            current_host_name=self.host.name,
            current_host_url=self.host.address,
            current_path=str(source),
            status="registered",
        )
        refs = [r for r in self._refs(cell) if r["name"] != file_name]
        refs.append(ref.to_wire())
        cell.info.meta["files"] = refs
        self.host.checkpoints.mark(cell)
        return ref

    def registered(self, cell: Cell) -> list[PagletFileRef]:
        return [PagletFileRef.from_wire(r) for r in self._refs(cell)]

    def _name_of(self, name_or_ref: Any) -> str:
        return name_or_ref.name if isinstance(name_or_ref, PagletFileRef) else str(name_or_ref)

    def unregister(self, cell: Cell, name_or_ref: Any) -> None:
        name = self._name_of(name_or_ref)
        refs = self._refs(cell)
        kept = [r for r in refs if r["name"] != name]
        if len(kept) == len(refs):
            raise HostError(f"paglet {cell.agent_id!r} has no registered file named {name!r}")
        cell.info.meta["files"] = kept

    def path_of(self, cell: Cell, name_or_ref: Any) -> Path:
        name = self._name_of(name_or_ref)
        for r in self._refs(cell):
            if r["name"] == name:
                return Path(r["current_path"])
        raise HostError(f"paglet {cell.agent_id!r} has no registered file named {name!r}")

    def copy_registered(self, source: Cell, clone: Cell) -> None:
        """A clone on the same host gets its own copy of every registered file."""
        refs = self._refs(source)
        if not refs:
            return
        target_dir = self.work_dir(clone.agent_id) / "files"
        target_dir.mkdir(parents=True, exist_ok=True)
        copied = []
        for r in refs:
            target = target_dir / r["name"]
            shutil.copyfile(r["current_path"], target)
            copied.append(
                {
                    **r,
                    "mode": "copy",
                    "current_path": str(target),
                    "status": "available",
                    "current_host_name": self.host.name,
                    "current_host_url": self.host.address,
                }
            )
        clone.info.meta["files"] = copied
        clone.info.meta["files_copied_at"] = time.time()
