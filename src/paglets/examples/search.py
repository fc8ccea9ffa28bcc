"""`paglets search`: move the code to the data (jobs.md §7, cli.md §7).

A `Searcher` is created on the entry host and sent `"start"`. It clones itself to every
target host (`MeshFanoutMixin`); each clone searches that host's files under the paths it
was given (which must lie under the host's file roots: the host user's home by default),
sends its hits back to the parent in batches and reports when it is done, then disposes
itself. The parent records each batch in the entry host's durable event log through the
`user-info` service (`user-info.stream` events on stream `<job id>`, tagged with the job),
so `paglets search` (or anyone: `paglets events --follow --job <job id>`) sees the hits as
they arrive.

The search's timeout is enforced: at the deadline the parent gives up on hosts still
searching, disposes every child (a child also stops by itself at the deadline), records
a final `user-info.notify` event (`metadata["search"] == "finished"`, with per-host
results and errors) and disposes itself. Nothing is left behind (paglets 2.0 left its
searchers alive).

Events of a search, all tagged `data["job"] == job_id`:

* `user-info.notify`, `metadata.search = "started"`: the hosts searched, and those that
  could not be (unknown, offline, clone failed);
* `user-info.stream`, stream `<job id>`: hits, one JSON object per line (`host`, `kind`,
  `path`, and `line`/`text`/`count`/`size` as the kind needs);
* `user-info.notify`, `metadata.search = "host-done"`: one host finished (files, hits,
  errors, truncated);
* `user-info.notify`, `metadata.search = "finished"`: the end (hits, hosts, errors,
  timed out).

`PAGLETS_SEARCH_PACE` (seconds, in a host's environment) makes that host's searchers wait
that long per file: a slow disk for tests and demos.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paglets import Message, Paglet
from paglets.core.errors import PagletError
from paglets.examples.search_engine import SearchOptions, SearchOutcome, run_search
from paglets.patterns.coordination import FANOUT_CHILD_DONE, MeshFanoutMixin, MeshFanoutState

__all__ = [
    "SEARCHER_CLASS",
    "SearchState",
    "Searcher",
    "allowed_roots",
    "format_hit",
    "resolve_roots",
]

SEARCHER_CLASS = "paglets.examples.search:Searcher"
HITS_KIND = "search-hits"
BATCH_HITS = 200
BATCH_SECONDS = 0.25
START_GRACE = 60.0  # a searcher never started (its client died) disposes itself after this
CLONE_TIMEOUT = 10.0
PACE_VARIABLE = "PAGLETS_SEARCH_PACE"


@dataclass
class SearchState(MeshFanoutState):
    """The request (`options` is a `SearchOptions` as a dict), the progress, and the
    fan-out book-keeping (inherited). Children carry the same state with `role="child"`."""

    job_id: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    paths: list[str] = field(default_factory=lambda: ["."])
    targets: list[str] = field(default_factory=list)
    timeout: float = 60.0
    output_path: str = ""  # written on the entry host (`--detach`)
    echo: bool = False  # hits printed on the entry host's console (`--detach`)
    created_at: float = 0.0
    started: bool = False
    finished: bool = False
    hits: int = 0
    host_results: dict[str, dict[str, Any]] = field(default_factory=dict)


def allowed_roots(configured: list[Path] | None) -> list[Path]:
    """Where this host lets searches look: its `--file-root`s (`context.file_roots()`),
    else the host user's home (jobs.md §5)."""
    return [r.resolve() for r in (configured or [Path.home()])]


def resolve_roots(paths: list[str], roots: list[Path]) -> tuple[list[tuple[Path, str]], list[str]]:
    """The search paths on this host (`~` expanded, relative ones against the working
    directory) that exist and lie under a file root, and an error for each other one."""
    found: list[tuple[Path, str]] = []
    errors: list[str] = []
    for raw in paths or ["."]:
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            errors.append(f"{raw}: no such file or directory")
            continue
        if not any(real == r or r in real.parents for r in roots):
            shown = ", ".join(str(r) for r in roots)
            errors.append(f"{raw}: outside this host's file roots ({shown})")
            continue
        found.append((real, raw))
    return found, errors


class Searcher(MeshFanoutMixin, Paglet[SearchState]):
    """The parent on the entry host, and its clones on the searched hosts."""

    State = SearchState
    state: SearchState  # MeshFanoutMixin's annotation names the base state class

    def on_creation(self, event: Any) -> None:
        if not self.state.created_at:
            self.state.created_at = time.time()
        if self.state.options:
            SearchOptions(**self.state.options)  # a bad request fails the create

    # -- messages (the parent) --------------------------------------------------------------

    def handle_message(self, message: Message) -> Any:
        kind = message.kind
        if kind == "start":
            return self._start()
        if kind == HITS_KIND:
            return self._hits(str(message.get_arg("host", "")), message.get_arg("hits") or [])
        if kind == FANOUT_CHILD_DONE:
            return self._host_done(dict(message.args or {}))
        if kind == "status":
            state = self.state
            return {
                "job_id": state.job_id,
                "started": state.started,
                "finished": state.finished,
                "pending": list(state.pending_hosts),
                "done": list(state.done_hosts),
                "errors": dict(state.errors),
                "hits": state.hits,
            }
        return self.not_handled()

    def _start(self) -> dict[str, Any]:
        state = self.state
        if state.started:
            return {
                "job_id": state.job_id,
                "hosts": list(state.pending_hosts) + list(state.done_hosts),
            }
        self.fanout_reset(timeout=state.timeout)
        with self.locked_state() as s:
            s.started = True
        hosts = self.fanout_select_hosts(state.targets or None, include_self=True)
        for host in hosts:
            remaining = self.fanout_remaining()
            if remaining <= 0:
                self.fanout_record_child_error(host.name, "no time left to clone the searcher")
                continue
            self._clone_to(host, min(CLONE_TIMEOUT, remaining))
        self._notice(
            "info",
            "search started",
            f"searching {len(hosts)} host(s)",
            {
                "search": "started",
                "hosts": [h.name for h in hosts],
                "errors": dict(self.state.errors),
            },
        )
        return {
            "job_id": state.job_id,
            "hosts": [h.name for h in hosts],
            "errors": dict(self.state.errors),
            "deadline": state.deadline,
        }

    def _clone_to(self, host: Any, timeout: float) -> None:
        from paglets.remote.transfer import TransferTicket

        self.fanout_prepare_clone(host)
        try:
            proxy = self.clone(TransferTicket(host.url, timeout=timeout))
        except Exception as exc:
            self.fanout_finish_clone_prepare()
            self.fanout_record_child_error(host.name, f"could not clone the searcher there: {exc}")
            return
        self.fanout_finish_clone_prepare()
        self.fanout_record_child_proxy(host.name, proxy)

    def _hits(self, host: str, hits: list[dict[str, Any]]) -> dict[str, Any]:
        state = self.state
        if state.finished or not hits:
            return {"accepted": 0, "stop": state.finished}
        for hit in hits:
            hit.setdefault("host", host)
        text = "".join(json.dumps(h, sort_keys=True, ensure_ascii=False) + "\n" for h in hits)
        self._stream(text, {"search": "hits", "host": host, "count": len(hits)})
        if state.output_path:
            path = Path(state.output_path).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(text)
        if state.echo:
            for hit in hits:
                sys.stdout.write(format_hit(hit) + "\n")
            sys.stdout.flush()
        with self.locked_state() as s:
            s.hits += len(hits)
        return {"accepted": len(hits), "stop": False}

    def _host_done(self, report: dict[str, Any]) -> bool:
        host = str(report.get("host") or "")
        if not host:
            return False
        result = {
            "files": int(report.get("files") or 0),
            "hits": int(report.get("hits") or 0),
            "errors": list(report.get("errors") or ()),
            "truncated": bool(report.get("truncated")),
            "stopped": bool(report.get("stopped")),
            "seconds": float(report.get("seconds") or 0.0),
        }
        with self.locked_state() as s:
            s.host_results[host] = result
        fresh = self.fanout_record_child_done(host)
        if fresh:
            severity = "warning" if result["errors"] else "info"
            self._notice(
                severity,
                f"search done on {host}",
                f"{result['hits']} hit(s) in {result['files']} file(s)",
                {"search": "host-done", "host": host, **result},
            )
        return fresh

    # -- recording in the entry host's event log ----------------------------------------------

    def _stream(self, text: str, metadata: dict[str, Any]) -> None:
        from paglets.system.user_info.contract import (
            STREAM,
            USER_INFO,
            UserInfoStreamRequest,
        )

        handle = self.require_contract(USER_INFO, operation=STREAM)
        handle.call(
            STREAM,
            UserInfoStreamRequest(
                stream_id=self.state.job_id,
                text=text,
                job_id=self.state.job_id,
                source_agent_id=self.agent_id,
                metadata=metadata,
            ),
        )

    def _notice(self, severity: str, title: str, message: str, metadata: dict[str, Any]) -> None:
        from paglets.system.user_info.contract import NOTIFY, USER_INFO, UserInfoRequest

        handle = self.require_contract(USER_INFO, operation=NOTIFY)
        handle.call(
            NOTIFY,
            UserInfoRequest(
                severity=severity,
                title=title,
                message=message,
                job_id=self.state.job_id,
                source_agent_id=self.agent_id,
                metadata=metadata,
            ),
        )

    # -- the run thread: the parent waits, a child searches -------------------------------------

    def run(self) -> None:
        if self.fanout_is_child():
            self._search_here()
        else:
            self._supervise()

    def _supervise(self) -> None:
        """Wait until every host reported or the deadline passed, then end the search."""
        while not self.departed:
            state = self.state
            if state.finished:
                return
            if not state.started:
                if time.time() - state.created_at > START_GRACE:
                    self._dispose_quietly()
                    return
            elif not state.pending_hosts or self.fanout_remaining() <= 0:
                self._finish()
                return
            try:
                self.wait_state(
                    lambda s: s.started and not s.pending_hosts,
                    timeout=max(0.05, min(0.5, self.fanout_remaining())),
                )
            except PagletError:
                return  # left meanwhile

    def _finish(self) -> None:
        expired = self.fanout_expire_pending(
            f"still searching when the timeout ({self.state.timeout:g}s) passed"
        )
        self.fanout_cleanup_children()
        with self.locked_state() as s:
            s.finished = True
        state = self.state
        errors = dict(state.errors)
        errors.update({f"{h} (cleanup)": e for h, e in state.cleanup_errors.items()})
        self._notice(
            "warning" if errors else "info",
            "search finished",
            f"{state.hits} hit(s) from {len(state.done_hosts)} host(s)"
            + (f"; {len(errors)} failed" if errors else ""),
            {
                "search": "finished",
                "hits": state.hits,
                "hosts": dict(state.host_results),
                "done": list(state.done_hosts),
                "errors": errors,
                "timed_out": bool(expired),
            },
        )
        self._dispose_quietly()

    def _dispose_quietly(self) -> None:
        try:
            self.dispose()
        except PagletError:
            pass  # already gone

    # -- a child: search this host -------------------------------------------------------------

    def _search_here(self) -> None:
        state = self.state
        host = state.target_host_name or self.context.name
        options = SearchOptions(**state.options)
        roots, errors = resolve_roots(list(state.paths), allowed_roots(self.context.file_roots()))
        batch: list[dict[str, Any]] = []
        flushed_at = time.monotonic()
        parent_lost: list[str] = []

        def should_stop() -> bool:
            return self.departed or bool(parent_lost) or time.time() >= state.deadline

        def flush() -> None:
            nonlocal flushed_at
            flushed_at = time.monotonic()
            if not batch or should_stop():
                return
            hits = list(batch)
            batch.clear()
            try:
                self._to_parent(HITS_KIND, {"host": host, "hits": hits})
            except Exception as exc:
                parent_lost.append(f"hits not delivered to the entry host: {exc}")

        def emit(hit: dict[str, Any]) -> None:
            hit["host"] = host
            batch.append(hit)
            if len(batch) >= BATCH_HITS or time.monotonic() - flushed_at >= BATCH_SECONDS:
                flush()

        pace = _pace()
        outcome = (
            run_search(options, roots, emit, should_stop, pace=pace) if roots else SearchOutcome()
        )
        flush()
        if not self.departed and not parent_lost and time.time() < state.deadline:
            report = dataclasses.asdict(outcome)
            report["errors"] = errors + outcome.errors
            try:
                self.fanout_notify_parent(report, timeout=max(0.5, state.deadline - time.time()))
            except Exception:
                pass  # the parent ended the search meanwhile: nothing to tell
        self._dispose_quietly()

    def _to_parent(self, kind: str, args: dict[str, Any]) -> Any:
        parent = self.fanout_parent_proxy()
        if parent is None:
            raise PagletError("this searcher has no parent")
        remaining = max(0.5, self.state.deadline - time.time())
        return parent.send(Message(kind, args), timeout=min(CLONE_TIMEOUT, remaining))


def _pace() -> float:
    try:
        return max(0.0, float(os.environ.get(PACE_VARIABLE, "0") or 0))
    except ValueError:
        return 0.0


def format_hit(hit: dict[str, Any]) -> str:
    """One hit as a line: `host:path:line:text` (grep), `host:path-line-text` (context),
    `host:path:count` (counts), `host:path` (files, find)."""
    host = hit.get("host", "")
    path = hit.get("path", "")
    kind = hit.get("kind")
    if kind == "match":
        parts = [host, path]
        if "line" in hit:
            parts.append(str(hit["line"]))
        if "column" in hit:
            parts.append(str(hit["column"]))
        return ":".join(parts) + ":" + str(hit.get("text", ""))
    if kind == "context":
        return f"{host}:{path}-{hit.get('line', '')}-{hit.get('text', '')}"
    if kind == "count":
        return f"{host}:{path}:{hit.get('count', 0)}"
    return f"{host}:{path}"
