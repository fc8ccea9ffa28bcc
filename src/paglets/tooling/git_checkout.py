"""The git checkout a host runs from, as the auto-update sees it (network.md section 5).

`Checkout` wraps the few git commands the update needs, each with a timeout (300 s: a hung
fetch must not hold the update lock for ever) and with `GIT_TERMINAL_PROMPT=0`, so git fails
instead of waiting for a password nobody will type. `CheckoutLock` is the cross-process lock
in the git common dir: one update at a time per checkout, whichever process (or worktree) asks.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GIT_TIMEOUT", "LOCK_NAME", "Checkout", "CheckoutLock", "GitFailed"]

GIT_TIMEOUT = 300.0
LOCK_NAME = "paglets-auto-update.lock"
SYNC_PENDING_NAME = "paglets-uv-sync-pending"
_LOCK_POLL = 0.1


class GitFailed(Exception):
    """A git command failed or timed out; `detail` is its last line of output."""

    def __init__(self, command: list[str], detail: str) -> None:
        super().__init__(f"{' '.join(command)}: {detail}")
        self.command = command
        self.detail = detail


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for credentials: fail, report, go on
    env["LC_ALL"] = "C"  # messages we quote are in one language
    return env


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


@dataclass(frozen=True, slots=True)
class Checkout:
    """A git working tree (`root`) and its common dir (shared by all its worktrees)."""

    root: Path
    common_dir: Path
    timeout: float = GIT_TIMEOUT

    @classmethod
    def find(cls, path: str | Path, *, timeout: float = GIT_TIMEOUT) -> Checkout | None:
        """The checkout holding `path`, or None when it is not inside one (or git is
        missing)."""
        try:
            done = subprocess.run(
                ["git", "rev-parse", "--show-toplevel", "--git-common-dir"],
                cwd=path,
                capture_output=True,
                text=True,
                timeout=min(timeout, 30.0),
                env=_environment(),
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or len(lines) != 2:
            return None
        root = Path(lines[0])
        common = Path(lines[1])
        if not common.is_absolute():
            common = (Path(path) / common).resolve()
        return cls(root=root, common_dir=common, timeout=timeout)

    # -- running git ---------------------------------------------------------------------

    def git(self, *args: str, timeout: float | None = None) -> str:
        """Run `git ARGS` in the root; its stdout, or `GitFailed` (exit code, timeout)."""
        command = ["git", *args]
        try:
            done = subprocess.run(
                command,
                cwd=self.root,
                capture_output=True,
                text=True,
                timeout=self.timeout if timeout is None else timeout,
                env=_environment(),
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            limit = self.timeout if timeout is None else timeout
            raise GitFailed(command, f"no answer within {limit:g}s (killed)") from None
        except OSError as exc:
            raise GitFailed(command, f"cannot run git: {exc.strerror or exc}") from None
        if done.returncode != 0:
            raise GitFailed(command, _last_line(done.stderr or done.stdout))
        return done.stdout

    def succeeds(self, *args: str) -> bool:
        """Whether `git ARGS` exits 0 (for the yes/no questions: ancestry, existence)."""
        try:
            self.git(*args)
        except GitFailed:
            return False
        return True

    # -- questions -----------------------------------------------------------------------

    def head(self) -> str | None:
        """The full hash of HEAD (None in a repository without commits)."""
        try:
            return self.git("rev-parse", "--verify", "--quiet", "HEAD").strip() or None
        except GitFailed:
            return None

    def branch(self) -> str | None:
        """The current branch's short name (None on a detached HEAD)."""
        try:
            return self.git("symbolic-ref", "--quiet", "--short", "HEAD").strip() or None
        except GitFailed:
            return None

    def upstream(self) -> str | None:
        """The current branch's upstream (`origin/main`), or None when it has none."""
        try:
            text = self.git("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}")
        except GitFailed:
            return None
        return text.strip() or None

    def upstream_remote(self) -> str | None:
        branch = self.branch()
        if branch is None:
            return None
        try:
            return self.git("config", "--get", f"branch.{branch}.remote").strip() or None
        except GitFailed:
            return None

    def changed_paths(self) -> list[str]:
        """Tracked files with changes, staged or not. Untracked files do not count: logs and
        build output are common in a lab checkout, and a fast-forward that would overwrite
        one fails on its own (reported as `merge-failed`)."""
        text = self.git("status", "--porcelain", "--untracked-files=no")
        return [line[3:] for line in text.splitlines() if line.strip()]

    def resolve(self, revision: str) -> str | None:
        """The full hash of the commit `revision` names, or None when there is none."""
        try:
            text = self.git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
        except GitFailed:
            return None
        return text.strip() or None

    def is_ancestor(self, older: str, newer: str) -> bool:
        """Whether `newer` contains `older` (equal counts)."""
        return self.succeeds("merge-base", "--is-ancestor", older, newer)

    def has(self, name: str) -> bool:
        return (self.root / name).exists()

    @property
    def lock_path(self) -> Path:
        return self.common_dir / LOCK_NAME

    @property
    def sync_marker(self) -> Path:
        """Present while a `uv sync` is owed (the last one failed or was cut short)."""
        return self.common_dir / SYNC_PENDING_NAME


class CheckoutLock:
    """An exclusive `flock` on `<git common dir>/paglets-auto-update.lock`, so two hosts
    started from one checkout never update it at once. The lock goes with the process: a
    crashed updater never leaves it held."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait: float, stop: threading.Event | None = None) -> bool:
        """Take the lock, polling for up to `wait` seconds (0: one try). False if another
        process still holds it, or `stop` was set."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                    os.close(fd)
                    return False
                if stop is not None:
                    stop.wait(_LOCK_POLL)
                else:
                    time.sleep(_LOCK_POLL)
                continue
            self._fd = fd
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> CheckoutLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
