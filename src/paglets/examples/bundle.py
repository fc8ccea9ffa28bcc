"""`paglets examples bundle --jobs 20` (jobs.md §4.6, §7): the seed's pattern, run from
the command line against the entry host's mesh.

`ds_dia` bundle jobs (`ds_dia.compute.paglets:DsDiaBundleJobPaglet`) are submitted from
the entry host with `submit_compute_job_group`, exactly as the seed does from its laptop:
required host tags, a property constraint (`python>=3.11` by default), each job's output
reported as an artifact, the collector on a host tagged `collector` (else the entry host)
returning home with the artifacts when the group is complete. Failed, lost or timed-out
jobs are re-created from their initial state (`retry_failed`, up to `retries` rounds).

`run_bundle` then prints the group summary (one row per job: state, host, rows,
artifact and where it is), downloads the artifacts with `download`, and disposes what it
made: the collector (with the artifacts it owns) and any failed job copies, unless
`keep`. At the timeout the group is cancelled first. Bundle paths that are not files
stand for synthetic bundles (`ds_dia.compute.bundles`), so it runs without data.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paglets.core.messages import Message

__all__ = ["BundleOptions", "run_bundle"]

POLL_SECONDS = 0.3
CANCEL_WAIT = 10.0
RETRY_STATES = ("failed", "lost", "timed_out")


@dataclass
class BundleOptions:
    jobs: int = 20
    bundles: list[str] = field(default_factory=list)  # paths; default synthetic names
    cores: int = 1
    memory_bytes: int = 64 << 20
    temp_bytes: int = 1 << 20
    runtime_seconds: float = 30.0
    tags: list[str] | None = None  # None: `linux` when some host has it, else none
    prefer_tags: list[str] = field(default_factory=list)
    exclude_tags: list[str] = field(default_factory=list)
    exclude_hosts: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=lambda: ["python>=3.11"])
    allow_home: bool = False
    collector_tag: str = "collector"
    return_home: bool = True
    retries: int = 1
    timeout: float = 300.0
    download: Path | None = None
    keep: bool = False
    detach: bool = False
    json: bool = False
    progress: bool = True


@dataclass(frozen=True, slots=True)
class _At:
    """Where the collector was last found."""

    host_url: str
    agent_id: str


class BundleRun:
    """One submission and its follow-up, over HTTP from the entry host."""

    def __init__(self, options: BundleOptions, client: Any, entry: str, note: Any) -> None:
        self.options = options
        self.client = client
        self.entry = entry.rstrip("/")
        self.note = note
        self.urls: list[str] = [self.entry]
        self.failed_copies: set[str] = set()
        self.retried = 0
        self.collector = _At(self.entry, "")

    # -- submitting ---------------------------------------------------------------------

    def states(self) -> list[Any]:
        from ds_dia.compute.models import DsDiaBundleJobState

        opts = self.options
        paths = list(opts.bundles) or [f"bundle-{i + 1:04d}" for i in range(opts.jobs)]
        tags = self.required_tags()
        return [
            DsDiaBundleJobState(
                bundle_path=str(Path(p).expanduser().absolute()) if Path(p).exists() else p,
                cpu_cores=opts.cores,
                memory_bytes=opts.memory_bytes,
                temp_storage_bytes=opts.temp_bytes,
                estimated_runtime_seconds=opts.runtime_seconds,
                required_host_tags=tuple(tags),
                preferred_host_tags=tuple(opts.prefer_tags),
                excluded_host_tags=tuple(opts.exclude_tags),
                excluded_host_names=tuple(h for h in opts.exclude_hosts if "://" not in h),
                excluded_host_urls=tuple(h for h in opts.exclude_hosts if "://" in h),
                required_host_properties=tuple(opts.where),
                allow_home_compute=opts.allow_home,
                wait_for_capable_host=True,
                placement_timeout_seconds=max(30.0, opts.timeout),
                max_attempts=2,
                retry_on_exception=True,
                retry_backoff_seconds=1.0,
            )
            for p in paths
        ]

    def required_tags(self) -> list[str]:
        members = self.client.list_hosts(self.entry)
        self.urls += [
            str(m["url"]).rstrip("/")
            for m in members
            if m.get("url") and str(m["url"]).rstrip("/") != self.entry
        ]
        if self.options.tags is not None:
            return list(self.options.tags)
        if any("linux" in (m.get("tags") or ()) for m in members if m.get("online", True)):
            return ["linux"]
        self.note("no host is tagged linux: the jobs require no tag (give --tag T to require one)")
        return []

    def submit(self) -> Any:
        from ds_dia.compute.paglets import DsDiaBundleJobPaglet

        from paglets.system.compute_slots import HostAtUrl, submit_compute_job_group

        opts = self.options
        sub = submit_compute_job_group(
            HostAtUrl(self.entry, self.client),
            DsDiaBundleJobPaglet,
            self.states(),
            collector_host_tag=opts.collector_tag,
            return_home_when_complete=opts.return_home,
            max_group_retries=max(1, opts.retries),
            job_metadata={"example": "bundle"},
        )
        for warning in sub.warnings:
            self.note(f"warning: {warning}")
        return sub

    # -- following ----------------------------------------------------------------------

    def summary(self, collector: Any) -> dict[str, Any]:
        """The collector's summary, asked where it is (it moves home at the end)."""
        last: Exception | None = None
        urls = [collector.host_url.rstrip("/"), *(u for u in self.urls if u != collector.host_url)]
        for url in urls:
            try:
                doc = self.client.send_message(
                    url,
                    collector.agent_id,
                    Message("summary", {"limit": 100_000, "details": True}),
                    timeout=5.0,
                )
            except Exception as exc:  # moved on, or that host is away: ask the next
                last = exc
                continue
            self.collector = _At(url, collector.agent_id)
            return doc
        raise RuntimeError(f"the collector {collector.agent_id} answers nowhere: {last}")

    def follow(self, sub: Any) -> dict[str, Any]:
        opts = self.options
        self.collector = _At(sub.collector.host_url.rstrip("/"), sub.collector.agent_id)
        deadline = time.monotonic() + opts.timeout
        rounds = 0
        doc: dict[str, Any] = {}
        with self._progress(len(sub.jobs) + len(sub.creation_errors)) as bar:
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    doc = self.summary(self.collector)
                bar(doc)
                redo = [m for m in doc.get("members", []) if m.get("state") in RETRY_STATES]
                if redo and rounds < opts.retries:
                    rounds += 1
                    self.retry(redo)
                    continue
                status = doc.get("status")
                if status in ("COMPLETE", "CANCELLED") and (
                    doc.get("at_home") or not opts.return_home
                ):
                    return doc
                time.sleep(POLL_SECONDS)  # polling the collector's summary
        self.note(f"the group did not finish within {opts.timeout:g}s: cancelling it")
        self.cancel()
        return doc

    def retry(self, redo: list[dict[str, Any]]) -> None:
        for member in redo:
            self.note(
                f"{member['job_key']} {member['state']} on {member.get('host_name') or '?'}"
                f" ({member.get('error') or 'no report'}): retrying"
            )
            if member.get("agent_id"):
                self.failed_copies.add(str(member["agent_id"]))
        reply = self.client.send_message(
            self.collector.host_url,
            self.collector.agent_id,
            Message(
                "retry_failed",
                {
                    "keys": [m["job_key"] for m in redo],
                    "include_lost": True,
                    "include_timed_out": True,
                },
            ),
            timeout=30.0,
        )
        self.retried += len(reply.get("recreated") or ())

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            self.client.send_message(
                self.collector.host_url,
                self.collector.agent_id,
                Message("cancel", {"kill_running": True}),
                timeout=10.0,
            )
        end = time.monotonic() + CANCEL_WAIT
        while time.monotonic() < end:
            with contextlib.suppress(Exception):
                if self.summary(self.collector).get("status") == "CANCELLED":
                    return
            time.sleep(POLL_SECONDS)

    def _progress(self, total: int) -> Any:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from paglets.cli.output import stderr_console

        show = self.options.progress and not self.options.json and sys.stderr.isatty()
        progress = Progress(
            TextColumn("jobs"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            console=stderr_console(),
            disable=not show,
        )

        @contextlib.contextmanager
        def bar() -> Any:
            with progress:
                task = progress.add_task("jobs", total=total, status="")

                def update(doc: dict[str, Any]) -> None:
                    status = str(doc.get("status", "")).lower().replace("_", " ")
                    progress.update(task, completed=doc.get("terminal", 0), status=status)

                yield update

        return bar()

    # -- the end ------------------------------------------------------------------------

    def download(self, doc: dict[str, Any], folder: Path) -> list[str]:
        saved = []
        for member in doc.get("members", []):
            for ref in member.get("artifacts") or ():
                target = folder / str(member["job_key"])
                target.mkdir(parents=True, exist_ok=True)
                path = self.client.download_artifact(ref, target / str(ref.get("name") or "out"))
                saved.append(str(path))
        return saved

    def dispose(self, doc: dict[str, Any]) -> list[str]:
        """The collector (its artifacts go with it) and any job copy left anywhere."""
        errors = []
        leftovers = set(self.failed_copies)
        for member in doc.get("members", []):
            if member.get("state") != "result" and member.get("agent_id"):
                leftovers.add(str(member["agent_id"]))
        try:
            self.client.dispose(self.collector.host_url, self.collector.agent_id, timeout=10.0)
        except Exception as exc:
            errors.append(f"collector {self.collector.agent_id}: {exc}")
        for agent_id in sorted(leftovers):
            for url in self.urls:
                with contextlib.suppress(Exception):
                    self.client.dispose(url, agent_id, timeout=5.0)
        return errors


def run_bundle(options: BundleOptions, client: Any, entry: str, note: Any) -> dict[str, Any]:
    """Submit, follow, summarise, download and clean up; returns the summary document
    (`ok` is True when every job reported a result)."""
    run = BundleRun(options, client, entry, note)
    sub = run.submit()
    doc: dict[str, Any] = {
        "group_id": sub.group_id,
        "collector_agent_id": sub.collector.agent_id,
        "collector_host_url": sub.collector.host_url,
        "submitted": len(sub.jobs),
        "creation_errors": sub.creation_errors,
        "warnings": list(sub.warnings),
    }
    if options.detach:
        doc["ok"] = True
        doc["detached"] = True
        return doc
    final = run.follow(sub)
    members = final.get("members", [])
    doc.update(
        status=final.get("status"),
        at_home=final.get("at_home"),
        collector_host_name=final.get("collector_host_name"),
        home_host_name=final.get("home_host_name"),
        expected=final.get("expected"),
        done=final.get("done"),
        failed=len([m for m in members if m.get("state") != "result"]),
        retried=run.retried,
        members=members,
    )
    doc["ok"] = bool(members) and doc["failed"] == 0 and final.get("status") == "COMPLETE"
    if options.download is not None and members:
        doc["downloaded"] = run.download(final, options.download)
    if options.keep:
        doc["kept"] = True
    else:
        doc["cleanup_errors"] = run.dispose(final)
    return doc
