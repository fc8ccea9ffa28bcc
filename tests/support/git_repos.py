"""Real temporary git repositories for the auto-update tests: a bare `origin`, a `publisher`
clone that commits and pushes (another machine's developer), and a `work` clone (the
checkout a host runs from)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GIT_IDENTITY", "Repos", "git", "make_repos"]

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Paglets Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Paglets Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_IDENTITY}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {cwd}: {done.stderr}")
    return done.stdout.strip()


@dataclass(frozen=True)
class Repos:
    origin: Path
    publisher: Path
    work: Path

    def publish(self, name: str = "change.txt", text: str = "x\n", *, branch: str = "main") -> str:
        """Commit one file in the publisher and push it to origin; the new commit's hash."""
        path = self.publisher / name
        path.write_text(text)
        git(self.publisher, "add", name)
        git(self.publisher, "commit", "-q", "-m", f"change {name}")
        git(self.publisher, "push", "-q", "origin", f"HEAD:{branch}")
        return git(self.publisher, "rev-parse", "HEAD")

    def commit_local(self, name: str = "local.txt", text: str = "local\n") -> str:
        """Commit in the work checkout without pushing (a local change ahead of upstream)."""
        (self.work / name).write_text(text)
        git(self.work, "add", name)
        git(self.work, "commit", "-q", "-m", f"local {name}")
        return git(self.work, "rev-parse", "HEAD")

    def head(self, where: Path | None = None) -> str:
        return git(where or self.work, "rev-parse", "HEAD")


def make_repos(root: Path, *, files: dict[str, str] | None = None) -> Repos:
    """origin (bare, branch main) with one commit holding `files`; two clones of it."""
    origin = root / "origin.git"
    publisher = root / "publisher"
    work = root / "work"
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "--bare", "-b", "main", str(origin))
    git(root, "init", "-q", "-b", "main", str(publisher))
    for name, text in (files or {"README.md": "hello\n"}).items():
        (publisher / name).write_text(text)
    git(publisher, "add", "-A")
    git(publisher, "commit", "-q", "-m", "first")
    git(publisher, "remote", "add", "origin", str(origin))
    git(publisher, "push", "-q", "-u", "origin", "main")
    git(root, "clone", "-q", str(origin), str(work))
    return Repos(origin, publisher, work)
