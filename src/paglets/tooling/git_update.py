"""Git auto-update (network.md section 5): the update run and the one-at-a-time updater.

`update_checkout` is the run itself, as the spec's steps, each failure a status of its own:

1. clean worktree (`dirty-worktree`);
2. `git fetch` (`fetch-failed`);
3. the target (the pushed hash, else the upstream's tip) must exist (`target-missing`), be on
   the upstream branch (`not-on-upstream`) and descend from HEAD (`not-fast-forward`: never a
   downgrade, never a ping-pong between two hosts);
4. `git verify-commit` when signatures are required (`signature-invalid`), before anything
   moves, so a bad commit never reaches the worktree;
5. `git merge --ff-only` (`merge-failed`);
6. `uv sync` when the checkout has a `pyproject.toml` and HEAD moved (or an earlier sync is
   still owed), 600 s (`uv-sync-failed`). `PAGLETS_UV_SYNC_COMMAND` replaces the command
   (split like a shell would, no shell run), for tests and for installs without uv.

The outcome is `updated` (HEAD moved) or `current`. Git steps time out after 300 s.

`GitUpdater` runs `update_checkout` on a thread of its own, so `POST /admin/git-update`
answers `202 accepted` at once (paglets 2.0 ran git inside the request and the caller timed
out). One run at a time: a request during a run is `coalesced` into it; a request within
`min_interval` of the last run's start is `rate-limited`; and runs of different processes on
one checkout take turns through `CheckoutLock`. A run that succeeded with HEAD away from the
process's start HEAD is flagged `restart`, and `on_finish` decides what to do with it.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from paglets.tooling.git_checkout import Checkout, CheckoutLock, GitFailed

__all__ = [
    "ACCEPTED",
    "COALESCED",
    "CURRENT",
    "DIRTY_WORKTREE",
    "FETCH_FAILED",
    "HASH_RE",
    "LOCKED",
    "MERGE_FAILED",
    "NOT_FAST_FORWARD",
    "NOT_ON_UPSTREAM",
    "RATE_LIMITED",
    "RUNNING",
    "SIGNATURE_INVALID",
    "SUCCEEDED",
    "SYNC_COMMAND_ENV",
    "SYNC_TIMEOUT",
    "TARGET_MISSING",
    "UPDATED",
    "UV_SYNC_FAILED",
    "GitUpdater",
    "RunOutcome",
    "UpdateResult",
    "sync_command",
    "update_checkout",
]

log = logging.getLogger("paglets.git_update")

# Outcomes of a run (paglets 2.0's names, plus ours).
CURRENT = "current"
UPDATED = "updated"
DIRTY_WORKTREE = "dirty-worktree"
FETCH_FAILED = "fetch-failed"
TARGET_MISSING = "target-missing"
NOT_ON_UPSTREAM = "not-on-upstream"
NOT_FAST_FORWARD = "not-fast-forward"
SIGNATURE_INVALID = "signature-invalid"
MERGE_FAILED = "merge-failed"
UV_SYNC_FAILED = "uv-sync-failed"
GIT_FAILED = "git-failed"
LOCKED = "locked"  # another process held the checkout's lock past `lock_wait`
# Answers to a request, and the state of a run under way.
ACCEPTED = "accepted"
RUNNING = "running"
COALESCED = "coalesced"
RATE_LIMITED = "rate-limited"

SUCCEEDED = frozenset({CURRENT, UPDATED})

SYNC_COMMAND_ENV = "PAGLETS_UV_SYNC_COMMAND"
SYNC_TIMEOUT = 600.0
DEFAULT_MIN_INTERVAL = 60.0
# How long a run waits for another process's run on the same checkout: longer than the
# slowest run (fetch, merge, verify at 300 s each, then a 600 s sync).
DEFAULT_LOCK_WAIT = 1800.0
HASH_RE = re.compile(r"^[0-9a-f]{7,64}$")


def sync_command() -> list[str]:
    """`uv sync`, or the command in `PAGLETS_UV_SYNC_COMMAND` (e.g. `true`, or
    `pip install -e .`)."""
    override = os.environ.get(SYNC_COMMAND_ENV, "").strip()
    return shlex.split(override) if override else ["uv", "sync"]


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What `update_checkout` did: a status, a sentence for people, and HEAD before and
    after (the same unless the merge ran)."""

    status: str
    message: str
    head_before: str | None = None
    head_after: str | None = None
    target: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCEEDED


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "none"


def update_checkout(
    checkout: Checkout,
    target: str | None = None,
    *,
    verify_signatures: bool = False,
    sync: list[str] | None = None,
    sync_timeout: float = SYNC_TIMEOUT,
) -> RunOutcome:
    """One update run on `checkout` towards `target` (None: the upstream's tip). Never
    raises for a git problem: every failure is a status. The caller holds the lock."""
    head = checkout.head()
    if head is None:
        return RunOutcome(GIT_FAILED, f"{checkout.root} has no commit to update from")

    def outcome(status: str, message: str, after: str | None = None) -> RunOutcome:
        return RunOutcome(status, message, head, after or head, target)

    try:
        changed = checkout.changed_paths()
    except GitFailed as exc:
        return outcome(GIT_FAILED, f"git status failed: {exc.detail}")
    if changed:
        shown = ", ".join(changed[:5]) + (
            f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        )
        return outcome(
            DIRTY_WORKTREE,
            f"the checkout {checkout.root} has uncommitted changes ({shown}); commit, stash or "
            "revert them, then update again",
        )
    upstream = checkout.upstream()
    if upstream is None:
        branch = checkout.branch()
        where = f"branch {branch!r} has no upstream" if branch else "HEAD is detached"
        return outcome(
            NOT_ON_UPSTREAM,
            f"{where} in {checkout.root}; check out a branch that tracks the remote "
            "(git branch --set-upstream-to=origin/<branch>)",
        )
    remote = checkout.upstream_remote()
    try:
        checkout.git("fetch", "--quiet", *([remote] if remote and remote != "." else []))
    except GitFailed as exc:
        return outcome(FETCH_FAILED, f"git fetch failed: {exc.detail}")
    tip = checkout.resolve(upstream)
    wanted = target or tip
    resolved = checkout.resolve(wanted) if wanted else None
    if resolved is None:
        return outcome(
            TARGET_MISSING,
            f"commit {wanted} is not in {checkout.root} after git fetch; push it to "
            f"{upstream} first",
        )
    target = resolved
    if resolved == head:
        failed = _sync(checkout, sync, sync_timeout)  # a sync an earlier run still owes
        if failed is not None:
            return outcome(UV_SYNC_FAILED, failed)
        return outcome(CURRENT, f"already at {_short(head)}")
    if tip is None or not checkout.is_ancestor(resolved, tip):
        return outcome(
            NOT_ON_UPSTREAM,
            f"commit {_short(resolved)} is not on the upstream branch {upstream}; only "
            "commits pushed there are installed",
        )
    if not checkout.is_ancestor(head, resolved):
        older = checkout.is_ancestor(resolved, head)
        why = (
            "is older than HEAD (no downgrade)"
            if older
            else "does not descend from HEAD (local commits diverge from the upstream)"
        )
        return outcome(
            NOT_FAST_FORWARD,
            f"commit {_short(resolved)} {why} {_short(head)}; nothing changed",
        )
    if verify_signatures:
        try:
            checkout.git("verify-commit", resolved)
        except GitFailed as exc:
            return outcome(
                SIGNATURE_INVALID,
                f"commit {_short(resolved)} has no valid signature: {exc.detail}",
            )
    checkout.sync_marker.touch()  # a sync is owed until one succeeds
    try:
        checkout.git("merge", "--ff-only", "--quiet", resolved)
    except GitFailed as exc:
        after = checkout.head() or head
        return outcome(MERGE_FAILED, f"git merge --ff-only failed: {exc.detail}", after)
    after = checkout.head() or resolved
    failed = _sync(checkout, sync, sync_timeout)
    if failed is not None:
        return outcome(UV_SYNC_FAILED, failed, after)
    return outcome(UPDATED, f"updated {_short(head)} → {_short(after)}", after)


def _sync(checkout: Checkout, command: list[str] | None, timeout: float) -> str | None:
    """Run the sync when one is owed and the checkout is a Python project; the error
    sentence, or None when all is well."""
    marker = checkout.sync_marker
    if not marker.exists():
        return None
    if not checkout.has("pyproject.toml"):
        marker.unlink(missing_ok=True)
        return None
    command = command or sync_command()
    shown = " ".join(command)
    try:
        done = subprocess.run(
            command,
            cwd=checkout.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{shown} did not finish within {timeout:g}s; the new code is checked out"
    except OSError as exc:
        return (
            f"cannot run {shown}: {exc.strerror or exc} (install uv, or set "
            f"{SYNC_COMMAND_ENV} to the command that installs the checkout)"
        )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return f"{shown} failed with exit code {done.returncode}: {' / '.join(tail)}"
    marker.unlink(missing_ok=True)
    return None


# -- the updater -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """One update request and, once it ran, its outcome (the wire form of
    `GET /admin/git-update` and `/health.git_update`)."""

    update_id: str | None
    status: str
    message: str = ""
    target: str | None = None
    head_before: str | None = None
    head_after: str | None = None
    source_name: str | None = None
    source_url: str | None = None
    source_host_id: str | None = None
    requested_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    restart: bool = False
    retry_after_s: float | None = None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCEEDED

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


class GitUpdater:
    """Runs updates of one checkout, one at a time, off the caller's thread.

    `on_finish(result)` is called on the update thread after every run (an event, a
    restart); `clock` is monotonic seconds (tests may pass their own).
    """

    def __init__(
        self,
        checkout: Checkout,
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        verify_signatures: bool = False,
        sync: list[str] | None = None,
        sync_timeout: float = SYNC_TIMEOUT,
        lock_wait: float = DEFAULT_LOCK_WAIT,
        on_finish: Callable[[UpdateResult], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checkout = checkout
        self.min_interval = float(min_interval)
        self.verify_signatures = verify_signatures
        self.sync = sync
        self.sync_timeout = sync_timeout
        self.lock_wait = lock_wait
        self.on_finish = on_finish
        self.clock = clock
        self.start_head = checkout.head()
        self.head = self.start_head  # cached: /health never runs git
        self.branch = checkout.branch()
        self.upstream = checkout.upstream()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._current: UpdateResult | None = None  # the run under way
        self._last: UpdateResult | None = None  # the latest finished run
        self._last_started: float | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Condition(self._lock)

    # -- asking ----------------------------------------------------------------------------

    def request(
        self,
        target: str | None = None,
        *,
        source_name: str | None = None,
        source_url: str | None = None,
        source_host_id: str | None = None,
    ) -> UpdateResult:
        """Ask for a run. `accepted` (a new run started, its `update_id`), `coalesced` (the
        run under way answers this request too), or `rate-limited` (with `retry_after_s`)."""
        if target is not None and not HASH_RE.match(target):
            raise ValueError(f"target_hash {target!r} is not a commit hash (7 to 64 hex digits)")
        with self._lock:
            if self._current is not None:
                return replace(self._current, status=COALESCED)
            now = self.clock()
            if self._last_started is not None and now - self._last_started < self.min_interval:
                wait = self.min_interval - (now - self._last_started)
                return UpdateResult(
                    None,
                    RATE_LIMITED,
                    f"one update per {self.min_interval:g}s; the last started "
                    f"{now - self._last_started:.0f}s ago",
                    target=target,
                    requested_at=time.time(),
                    retry_after_s=round(wait, 3),
                )
            if self._stop.is_set():
                raise RuntimeError("the updater is closed")
            result = UpdateResult(
                uuid.uuid4().hex,
                RUNNING,
                "starting",
                target=target,
                head_before=self.head,
                source_name=source_name,
                source_url=source_url,
                source_host_id=source_host_id,
                requested_at=time.time(),
                started_at=time.time(),
            )
            self._current = result
            self._last_started = now
            self._thread = threading.Thread(
                target=self._run, args=(result,), name="paglets-git-update", daemon=True
            )
            self._thread.start()
        return replace(result, status=ACCEPTED)

    def run_now(self, target: str | None = None) -> UpdateResult:
        """One run on the calling thread (the update before serving); waits for the
        checkout's lock like any run."""
        with self._lock:
            if self._current is not None:
                raise RuntimeError("an update is already running")
            result = UpdateResult(
                uuid.uuid4().hex,
                RUNNING,
                "starting",
                target=target,
                head_before=self.head,
                requested_at=time.time(),
                started_at=time.time(),
            )
            self._current = result
            self._last_started = self.clock()
        return self._run(result, notify=False)

    def adopt(self, result: UpdateResult) -> None:
        """Take `result` (a run made before this updater existed: the update before
        serving) as the latest, for reports and the rate limit."""
        with self._lock:
            if self._current is None:
                self._last = replace(result, restart=False)
                self._last_started = self.clock()

    # -- reading ---------------------------------------------------------------------------

    @property
    def current(self) -> UpdateResult | None:
        """The run under way, else the latest finished one (None before any)."""
        with self._lock:
            return self._current or self._last

    def wait(self, timeout: float) -> UpdateResult | None:
        """Block until no run is under way (or `timeout`); the latest result."""
        deadline = time.monotonic() + timeout
        with self._done:
            while self._current is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._done.wait(left)
            return self._current or self._last

    def status(self) -> dict[str, Any]:
        """`GET /admin/git-update`: the checkout, its cached heads, the current or last run."""
        current = self.current
        return {
            "enabled": True,
            "checkout": str(self.checkout.root),
            "branch": self.branch,
            "upstream": self.upstream,
            "start_head": self.start_head,
            "head": self.head,
            "min_interval_s": self.min_interval,
            "verify_signatures": self.verify_signatures,
            "update": None if current is None else current.to_wire(),
        }

    def close(self) -> None:
        """No new runs; a run waiting for another process's lock gives up."""
        self._stop.set()

    # -- running ---------------------------------------------------------------------------

    def _progress(self, result: UpdateResult, message: str) -> UpdateResult:
        with self._lock:
            if self._current is not None and self._current.update_id == result.update_id:
                self._current = replace(self._current, message=message)
                return self._current
        return result

    def _run(self, result: UpdateResult, *, notify: bool = True) -> UpdateResult:
        try:
            outcome = self._locked_run(result)
        except Exception as exc:  # a bug here must still end the run and free the slot
            log.exception("git update %s failed", result.update_id)
            outcome = RunOutcome(GIT_FAILED, f"{type(exc).__name__}: {exc}", self.head, self.head)
        head = outcome.head_after or self.head
        restart = outcome.succeeded and head is not None and head != self.start_head
        final = replace(
            result,
            status=outcome.status,
            message=outcome.message,
            target=outcome.target or result.target,
            head_before=outcome.head_before or result.head_before,
            head_after=head,
            finished_at=time.time(),
            restart=restart,
        )
        with self._done:
            self.head = head
            self._current = None
            self._last = final
            self._done.notify_all()
        level = logging.INFO if final.succeeded else logging.WARNING
        log.log(level, "git update %s: %s (%s)", final.update_id, final.status, final.message)
        if notify and self.on_finish is not None:
            try:
                self.on_finish(final)
            except Exception:
                log.exception("git update %s: on_finish failed", final.update_id)
        return final

    def _locked_run(self, result: UpdateResult) -> RunOutcome:
        lock = CheckoutLock(self.checkout.lock_path)
        if not lock.acquire(0):
            self._progress(
                result,
                f"waiting for another process's update of {self.checkout.root} "
                f"(lock {self.checkout.lock_path})",
            )
            if not lock.acquire(self.lock_wait, self._stop):
                return RunOutcome(
                    LOCKED,
                    f"another process kept {self.checkout.lock_path} locked for "
                    f"{self.lock_wait:g}s; nothing changed",
                    self.head,
                    self.head,
                    result.target,
                )
        try:
            self._progress(result, "updating")
            return update_checkout(
                self.checkout,
                result.target,
                verify_signatures=self.verify_signatures,
                sync=self.sync,
                sync_timeout=self.sync_timeout,
            )
        finally:
            lock.release()
