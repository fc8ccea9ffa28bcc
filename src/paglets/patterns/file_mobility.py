"""Moving a file between hosts by moving a paglet that carries it.

The file travels as a **registered file** of the paglet (`api.md` §18): staged on the
target as a checked artifact before the move, placed in the arriving paglet's work dir
before `on_arrival`. `SingleFileTransferPaglet` is the whole pattern as a task:

1. `run_task` (on the source host) plans the transfer; a dry run completes here;
2. it registers the file, sets `WAITING_FOR_ARRIVAL` and dispatches itself to the target;
3. `on_arrival` (on the target, before the move commits) copies the arrived file to the
   destination atomically and completes the task, or fails it and re-raises: the move
   then aborts, the paglet stays on the source (its task `FAILED`) and so does the source
   file, even in `MOVE` mode (a moved file is deleted only after the commit).

A destination written by `on_arrival` stays if the commit itself then fails (rare: the
target died between its hooks and the commit); the task then shows `FAILED` on the source.
The arrived copy in the paglet's work dir stays until the paglet is disposed; dispose
finished transfer paglets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from paglets.core.errors import HostError
from paglets.core.runtime_values import require_enum
from paglets.patterns.notifications import NotificationMixin, NotificationSeverity
from paglets.patterns.tasks import TaskPaglet, TaskState, TaskStatus

if TYPE_CHECKING:
    from paglets.artifacts import PagletFileRef
    from paglets.core.events import MobilityEvent
    from paglets.remote.proxy import PagletProxy

__all__ = [
    "FileMobilityMixin",
    "FileTransferArrival",
    "FileTransferEndpoint",
    "FileTransferMode",
    "FileTransferPlan",
    "FileTransferRequest",
    "FileTransferResult",
    "FileTransferSource",
    "FileTransferState",
    "SingleFileTransferPaglet",
    "format_bytes",
]

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(size: int | float) -> str:
    """`1536` -> `"1.5 KiB"`: binary units, one decimal; plain bytes below 1 KiB."""
    value = float(size)
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value < 1024:
        return f"{sign}{int(value)} B"
    for unit in _UNITS:
        value /= 1024.0
        if value < 1024 or unit == _UNITS[-1]:
            return f"{sign}{value:.1f} {unit}"
    raise AssertionError("unreachable")


class FileTransferMode(StrEnum):
    """`COPY` keeps the source file; `MOVE` deletes it once the move has committed."""

    COPY = "copy"
    MOVE = "move"


@dataclass(frozen=True)
class FileTransferRequest:
    """What to transfer.

    `target`: a host name from the mesh view or a URL. `destination_path`: on the target,
    absolute or starting with `~` (the target's home); ending with `/` or naming an
    existing directory puts the file in it under the source's name. `notify`: send
    `user-info` notifications on start, completion and failure (best effort).
    `timeout`: the move's ticket timeout (file staging has its own, scaled by size).
    """

    source_path: str = ""
    target: str = ""
    destination_path: str = ""
    mode: FileTransferMode = FileTransferMode.COPY
    overwrite: bool = False
    dry_run: bool = False
    create_parents: bool = True
    notify: bool = False
    job_id: str = ""
    timeout: float = 30.0

    def __post_init__(self) -> None:
        require_enum(self.mode, FileTransferMode, "mode")


@dataclass(frozen=True)
class FileTransferEndpoint:
    """A file's place: host and path (the path as planned, or as written)."""

    host_name: str = ""
    host_url: str = ""
    path: str = ""


@dataclass(frozen=True)
class FileTransferSource:
    """The source file as `stat_transfer_source` found it."""

    host_name: str = ""
    host_url: str = ""
    path: str = ""
    name: str = ""
    size_bytes: int = 0
    modified_at: float = 0.0


@dataclass(frozen=True)
class FileTransferPlan:
    """A checked request: the source as found, the target endpoint with the planned
    destination, and (once registered) the registered file's name and SHA-256."""

    request: FileTransferRequest = field(default_factory=FileTransferRequest)
    source: FileTransferSource = field(default_factory=FileTransferSource)
    destination: FileTransferEndpoint = field(default_factory=FileTransferEndpoint)
    file_name: str = ""
    sha256: str = ""
    planned_at: float = 0.0


@dataclass(frozen=True)
class FileTransferArrival:
    """The registered file as it arrived on the target (in the paglet's work dir)."""

    host_name: str = ""
    host_url: str = ""
    path: str = ""
    size_bytes: int = 0
    sha256: str = ""
    arrived_at: float = 0.0


@dataclass(frozen=True)
class FileTransferResult:
    """The outcome. For a dry run `destination.path` is the planned path, not yet resolved
    on the target."""

    source: FileTransferEndpoint = field(default_factory=FileTransferEndpoint)
    destination: FileTransferEndpoint = field(default_factory=FileTransferEndpoint)
    mode: FileTransferMode = FileTransferMode.COPY
    size_bytes: int = 0
    size_text: str = "0 B"
    sha256: str = ""
    dry_run: bool = False
    started_at: float = 0.0
    completed_at: float = 0.0


@dataclass
class FileTransferState(TaskState):
    plan: FileTransferPlan | None = None
    arrival: FileTransferArrival | None = None


def _atomic_copy(
    source: Path, destination: Path, *, overwrite: bool, create_parents: bool, where: str
) -> Path:
    """Copy to a temporary file beside `destination`, flush it to disk, then put it in
    place. Without `overwrite` the final step is a hard link, which fails if the name
    appeared meanwhile, so an existing file is never replaced."""
    if not source.is_file():
        raise FileNotFoundError(f"cannot copy {str(source)!r} on {where}: not a regular file")
    parent = destination.parent
    if create_parents:
        parent.mkdir(parents=True, exist_ok=True)
    elif not parent.is_dir():
        raise FileNotFoundError(
            f"destination directory {str(parent)!r} does not exist on {where}; create it or "
            "pass create_parents=True"
        )
    if destination.is_dir():
        raise IsADirectoryError(
            f"destination {str(destination)!r} on {where} is a directory; end the path "
            "with '/' to copy into it"
        )
    exists_error = FileExistsError(
        f"destination {str(destination)!r} already exists on {where}; pass overwrite=True "
        "to replace it"
    )
    if not overwrite and (destination.exists() or destination.is_symlink()):
        raise exists_error
    fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        shutil.copymode(source, tmp)
        if overwrite:
            os.replace(tmp, destination)
            return destination
        try:
            os.link(tmp, destination)
        except FileExistsError:
            raise exists_error from None
        except OSError:
            # No hard links on this file system: check, then rename (a small race).
            if destination.exists() or destination.is_symlink():
                raise exists_error from None
            os.replace(tmp, destination)
            return destination
        tmp.unlink()
        return destination
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class FileMobilityMixin(NotificationMixin):
    """Helpers for paglets that carry files (their `State` a `FileTransferState`)."""

    state: FileTransferState

    # -- planning (on the source host) ---------------------------------------------------

    def require_transfer_target(self, target: str) -> FileTransferEndpoint:
        """The target host as an endpoint (no path yet). A name must be a member of the
        mesh view; a URL outside it is accepted (the move's preflight checks it)."""
        if not target:
            raise ValueError("a file transfer needs a target: a host name or URL")
        context = self.context  # type: ignore[attr-defined]
        wanted = target.rstrip("/").lower()
        for ref in context.available_hosts(online_only=False, include_self=True):
            if ref.name == target or ref.url.rstrip("/").lower() == wanted:
                if not ref.online:
                    raise HostError(f"target host {target!r} is offline ({ref.status})")
                return FileTransferEndpoint(host_name=ref.name, host_url=ref.url)
        if "://" in target:
            return FileTransferEndpoint(host_name="", host_url=target)
        raise HostError(
            f"unknown target host {target!r}: not in the mesh view of {context.name!r}; "
            "use a member's name (paglets mesh hosts) or its URL"
        )

    def stat_transfer_source(self, path: str | Path) -> FileTransferSource:
        context = self.context  # type: ignore[attr-defined]
        if not str(path):
            raise ValueError("a file transfer needs source_path")
        source = Path(path).expanduser().absolute()
        if not source.exists():
            raise FileNotFoundError(
                f"source file {str(source)!r} does not exist on host {context.name!r}"
            )
        if not source.is_file():
            raise IsADirectoryError(
                f"source {str(source)!r} on host {context.name!r} is not a regular file; "
                "transfer one file at a time"
            )
        stat = source.stat()
        return FileTransferSource(
            host_name=context.name,
            host_url=context.address,
            path=str(source),
            name=source.name,
            size_bytes=stat.st_size,
            modified_at=stat.st_mtime,
        )

    def plan_destination_path(self, destination_path: str, file_name: str) -> str:
        """The destination as planned on the source: checked for shape, not resolved
        (`~` and directories are resolved on the target, `resolve_destination_path`)."""
        path = destination_path.strip()
        if not path:
            raise ValueError("a file transfer needs destination_path on the target")
        if not (path.startswith("/") or path.startswith("~")):
            raise ValueError(
                f"destination_path {destination_path!r} must be absolute or start with '~' "
                "(it is a path on the target host)"
            )
        if path.endswith("/"):
            return path + file_name
        return path

    def prepare_file_transfer(self, request: FileTransferRequest) -> FileTransferPlan:
        if not isinstance(request, FileTransferRequest):
            raise TypeError(
                f"prepare_file_transfer needs a FileTransferRequest, got {type(request).__name__}"
            )
        if not request.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {request.timeout!r}")
        source = self.stat_transfer_source(request.source_path)
        target = self.require_transfer_target(request.target)
        destination = dataclasses.replace(
            target, path=self.plan_destination_path(request.destination_path, source.name)
        )
        return FileTransferPlan(
            request=request, source=source, destination=destination, planned_at=time.time()
        )

    # -- remembering -------------------------------------------------------------------

    def remember_transfer_request(self, request: FileTransferRequest) -> None:
        from paglets.serialization.codec import dataclass_to_wire

        with self.locked_state() as state:  # type: ignore[attr-defined]
            state.request = dataclass_to_wire(request)

    def remember_transfer_plan(self, plan: FileTransferPlan) -> None:
        with self.locked_state() as state:  # type: ignore[attr-defined]
            state.plan = plan

    def remember_transfer_arrival(self, arrival: FileTransferArrival) -> None:
        with self.locked_state() as state:  # type: ignore[attr-defined]
            state.arrival = arrival

    # -- registering and moving --------------------------------------------------------

    def register_transfer_file(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        mode: FileTransferMode = FileTransferMode.COPY,
    ) -> PagletFileRef:
        mode = require_enum(mode, FileTransferMode, "mode")
        return self.register_file(path, name=name, mode=mode.value)  # type: ignore[attr-defined]

    def register_planned_file(self, plan: FileTransferPlan) -> FileTransferPlan:
        """Register the plan's source file; returns (and remembers) the plan with the
        registered name."""
        ref = self.register_transfer_file(
            plan.source.path, name=plan.source.name, mode=plan.request.mode
        )
        plan = dataclasses.replace(plan, file_name=ref.name, sha256=ref.sha256)
        self.remember_transfer_plan(plan)
        return plan

    def mark_waiting_for_arrival(self) -> None:
        self.set_task_status(TaskStatus.WAITING_FOR_ARRIVAL, done=False)  # type: ignore[attr-defined]

    # -- on the target -------------------------------------------------------------------

    def resolve_destination_path(self, plan: FileTransferPlan) -> Path:
        """The destination on this (the target) host: `~` expanded here; an existing
        directory (or a planned path ending with '/') gets the source's name."""
        planned = plan.destination.path
        path = Path(planned).expanduser()
        if not path.is_absolute():
            raise ValueError(f"destination_path {planned!r} is not absolute on this host")
        if planned.endswith("/") or path.is_dir():
            path = path / plan.source.name
        return path

    def atomic_copy_file(
        self,
        source: str | Path,
        destination: str | Path,
        *,
        overwrite: bool = False,
        create_parents: bool = True,
    ) -> Path:
        """Copy through a temporary file and a rename; an existing destination is an error
        (`FileExistsError`) unless `overwrite`."""
        context = getattr(self, "_context", None)
        where = f"host {context.name!r}" if context is not None else "this host"
        return _atomic_copy(
            Path(source),
            Path(destination),
            overwrite=overwrite,
            create_parents=create_parents,
            where=where,
        )

    def save_registered_file_to_destination(
        self,
        name: str,
        destination: str | Path,
        *,
        overwrite: bool = False,
        create_parents: bool = True,
    ) -> Path:
        source = self.arrived_file_path(name)
        return self.atomic_copy_file(
            source, destination, overwrite=overwrite, create_parents=create_parents
        )

    def arrived_file_path(self, name: str) -> Path:
        """Where the registered file `name` is on this host (also during `on_arrival`)."""
        return self.file_path(name)  # type: ignore[attr-defined]

    def current_transfer_arrival(self, plan: FileTransferPlan) -> FileTransferArrival:
        context = self.context  # type: ignore[attr-defined]
        path = self.arrived_file_path(plan.file_name)
        return FileTransferArrival(
            host_name=context.name,
            host_url=context.address,
            path=str(path),
            size_bytes=path.stat().st_size,
            sha256=plan.sha256,
            arrived_at=time.time(),
        )

    def save_arrived_file(self, plan: FileTransferPlan | None = None) -> FileTransferResult:
        """Copy the arrived file to its destination; returns the result."""
        plan = plan or self.state.plan
        if plan is None:
            raise HostError("no file transfer planned: run prepare_file_transfer first")
        arrival = self.current_transfer_arrival(plan)
        self.remember_transfer_arrival(arrival)
        destination = self.resolve_destination_path(plan)
        written = self.save_registered_file_to_destination(
            plan.file_name,
            destination,
            overwrite=plan.request.overwrite,
            create_parents=plan.request.create_parents,
        )
        return self.build_transfer_result(plan, destination_path=str(written), arrival=arrival)

    def build_transfer_result(
        self,
        plan: FileTransferPlan,
        *,
        destination_path: str | None = None,
        arrival: FileTransferArrival | None = None,
    ) -> FileTransferResult:
        context = self.context  # type: ignore[attr-defined]
        source = plan.source
        destination = plan.destination
        if destination_path is not None:
            destination = FileTransferEndpoint(
                host_name=context.name, host_url=context.address, path=destination_path
            )
        return FileTransferResult(
            source=FileTransferEndpoint(
                host_name=source.host_name, host_url=source.host_url, path=source.path
            ),
            destination=destination,
            mode=plan.request.mode,
            size_bytes=source.size_bytes,
            size_text=format_bytes(source.size_bytes),
            sha256=arrival.sha256 if arrival is not None else "",
            dry_run=plan.request.dry_run and destination_path is None,
            started_at=self.state.started_at or plan.planned_at,
            completed_at=time.time(),
        )

    # -- notifications (only when the request asks for them) -----------------------------

    def notify_transfer_started(self, plan: FileTransferPlan) -> bool:
        if not plan.request.notify:
            return False
        return self.notify_user_info(
            NotificationSeverity.INFO,
            "file transfer started",
            f"{plan.source.name} ({format_bytes(plan.source.size_bytes)}) from "
            f"{plan.source.host_name} to {plan.destination.host_name or plan.destination.host_url}"
            f":{plan.destination.path}",
            job_id=plan.request.job_id,
        )

    def notify_transfer_completed(self, plan: FileTransferPlan, result: FileTransferResult) -> bool:
        if not plan.request.notify:
            return False
        return self.notify_user_info(
            NotificationSeverity.INFO,
            "file transfer completed",
            f"{plan.source.name} ({result.size_text}) is at "
            f"{result.destination.host_name}:{result.destination.path}",
            job_id=plan.request.job_id,
        )

    def notify_transfer_failed(self, plan: FileTransferPlan, error: BaseException | str) -> bool:
        if not plan.request.notify:
            return False
        return self.notify_user_info(
            NotificationSeverity.ERROR,
            "file transfer failed",
            f"{plan.source.name}: {error}",
            job_id=plan.request.job_id,
        )


class SingleFileTransferPaglet(
    FileMobilityMixin, TaskPaglet[FileTransferRequest, FileTransferResult, FileTransferState]
):
    """Carries one file to another host as a task (module docstring).

    Start it with a `FileTransferRequest` (`TaskClient.for_paglet(proxy,
    SingleFileTransferPaglet).start(request)`); the client follows it to the target, where
    the snapshot is `COMPLETED` with a `FileTransferResult`, or it stays on the source
    `FAILED` with the reason.
    """

    State: ClassVar[type[Any]] = FileTransferState
    Request: ClassVar[Any] = FileTransferRequest
    Result: ClassVar[Any] = FileTransferResult

    def run_task(self, request: FileTransferRequest) -> FileTransferResult | PagletProxy:
        plan = self.prepare_file_transfer(request)
        self.remember_transfer_plan(plan)
        if request.dry_run:
            return self.build_transfer_result(plan)
        plan = self.register_planned_file(plan)
        self.mark_waiting_for_arrival()
        self.notify_transfer_started(plan)
        from paglets.remote.transfer import TransferTicket

        try:
            return self.dispatch(TransferTicket(plan.destination.host_url, timeout=request.timeout))
        except Exception as exc:
            # The move aborted: this paglet and the source file stay here. The file must not
            # ride along on a later move of this (failed) task.
            with contextlib.suppress(Exception):
                self.unregister_file(plan.file_name)
            self.notify_transfer_failed(plan, exc)
            raise

    def on_arrival(self, event: MobilityEvent) -> None:
        state = self.state
        plan = state.plan
        if state.status is not TaskStatus.WAITING_FOR_ARRIVAL or plan is None:
            return  # a later move of a finished task: nothing to copy
        try:
            result = self.save_arrived_file(plan)
        except Exception as exc:
            # Recorded for the record, then re-raised: the move aborts and the source host
            # keeps the paglet (it marks the task FAILED with this error) and the file.
            self.fail_task(exc)
            raise
        self.complete_task(result)
        self.notify_transfer_completed(plan, result)
