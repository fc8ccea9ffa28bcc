"""Real `paglets host` processes for end-to-end tests.

`HostProcess` starts `python -m paglets host --name N --port 0 --persistence-dir DIR
--mesh-version test` with its own HOME, waits for the ready line on stdout (whose URL it
parses), and can be stopped with SIGTERM, killed with SIGKILL, or restarted on the same
persistence dir. `host_processes(tmp)` is the context manager behind the `host_process`
fixture: every process it started is killed by PID at the end, whatever the test did.

`run_paglets(...)` runs one short CLI command and returns the finished process.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

__all__ = ["READY_RE", "HostProcess", "cli_env", "host_processes", "run_paglets"]

# cli.md 1.2: `paglets host 'alpha' listening at http://127.0.0.1:8765 (mesh on, version dev)`
READY_RE = re.compile(r"^paglets host '(?P<name>[^']+)' listening at (?P<url>\S+) \(")
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0


def cli_env(
    home: Path, *, api_key: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for a CLI child: this one, with HOME replaced, no mesh key unless
    given, no colours, and the test mesh version removed (tests pass it explicitly)."""
    env = dict(os.environ)
    env["HOME"] = str(home)
    env["NO_COLOR"] = "1"
    env.pop("PAGLETS_API_KEY", None)
    env.pop("PAGLETS_DEBUG", None)
    if api_key is not None:
        env["PAGLETS_API_KEY"] = api_key
    if extra:
        env.update(extra)
    return env


def run_paglets(
    *args: str,
    home: Path,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m paglets ARGS` to completion; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "paglets", *args],
        env=cli_env(home, api_key=api_key, extra=env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
    )


class HostProcess:
    """One `paglets host` child process. `start()` returns once the ready line is read."""

    def __init__(
        self,
        name: str,
        persistence_dir: Path,
        home: Path,
        *,
        port: int = 0,
        mesh_version: str = "test",
        args: Sequence[str] = (),
        api_key: str | None = None,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.persistence_dir = persistence_dir
        self.home = home
        self.port = port
        self.mesh_version = mesh_version
        self.args = list(args)
        self.api_key = api_key
        self.env = dict(env or {})
        self.log_dir = log_dir or persistence_dir.parent
        self.proc: subprocess.Popen[str] | None = None
        self.url: str = ""
        self.stdout_lines: list[str] = []
        self.started_at = 0.0
        self.ready_at = 0.0
        self._runs = 0
        self._stderr_path: Path | None = None
        self._lines_changed = threading.Condition()
        self._reader: threading.Thread | None = None

    # -- starting ------------------------------------------------------------------------

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "paglets",
            "host",
            "--name",
            self.name,
            "--port",
            str(self.port),
            "--persistence-dir",
            str(self.persistence_dir),
            "--mesh-version",
            self.mesh_version,
            *self.args,
        ]

    def start(self, timeout: float = READY_TIMEOUT) -> HostProcess:
        if self.alive:
            raise RuntimeError(f"host process {self.name!r} is already running")
        self._runs += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._stderr_path = self.log_dir / f"{self.name}-{self._runs}.stderr"
        self.stdout_lines = []
        self.url = ""
        stderr = self._stderr_path.open("w")
        self.started_at = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                self.command,
                env=cli_env(self.home, api_key=self.api_key, extra=self.env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                bufsize=1,
            )
        finally:
            stderr.close()  # the child has its own copy
        self._reader = threading.Thread(
            target=self._read_stdout, args=(self.proc,), name=f"stdout-{self.name}", daemon=True
        )
        self._reader.start()
        self._wait_ready(timeout)
        return self

    def _read_stdout(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._lines_changed:
                self.stdout_lines.append(line.rstrip("\n"))
                self._lines_changed.notify_all()
        with self._lines_changed:
            self._lines_changed.notify_all()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._lines_changed:
            while True:
                for line in self.stdout_lines[seen:]:
                    match = READY_RE.match(line)
                    if match:
                        self.url = match.group("url")
                        self.ready_at = time.monotonic()
                        return
                seen = len(self.stdout_lines)
                if self.proc is not None and self.proc.poll() is not None:
                    # Exited: read what is left of stdout before giving up.
                    if self._reader is not None and self._reader.is_alive():
                        self._lines_changed.wait(0.05)
                        if len(self.stdout_lines) > seen:
                            continue
                    raise RuntimeError(
                        f"paglets host {self.name!r} exited with {self.proc.returncode} before "
                        f"it was ready\n{self.describe()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.kill()
                    raise RuntimeError(
                        f"paglets host {self.name!r} printed no ready line within {timeout}s\n"
                        f"{self.describe()}"
                    )
                self._lines_changed.wait(min(remaining, 0.1))

    # -- state ---------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def stderr(self) -> str:
        if self._stderr_path is None or not self._stderr_path.exists():
            return ""
        return self._stderr_path.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        with self._lines_changed:
            return "\n".join(self.stdout_lines)

    def describe(self) -> str:
        return (
            f"command: {' '.join(self.command)}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )

    # -- stopping ------------------------------------------------------------------------

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.proc is not None, "not started"
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(
                f"paglets host {self.name!r} did not exit within {timeout}s\n{self.describe()}"
            ) from None
        if self._reader is not None:
            self._reader.join(5)
        return code

    def signal(self, sig: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM (graceful stop: every paglet saved) and wait; returns the exit code."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def interrupt(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGINT (as Ctrl-C) and wait."""
        self.signal(signal.SIGINT)
        return self.wait(timeout)

    def kill(self) -> int | None:
        """SIGKILL, no saving; waits for the process to be gone."""
        if self.proc is None:
            return None
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        return self.proc.poll()

    def restart(self, *, same_port: bool = False, timeout: float = READY_TIMEOUT) -> HostProcess:
        """Stop gracefully (if running) and start again on the same persistence dir.
        `same_port` reuses the port the last run listened on (else the configured one)."""
        if self.alive:
            self.terminate()
        if same_port and self.url:
            self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
        return self.start(timeout)

    def close(self) -> None:
        """Make sure the process is gone (by PID), whatever state it is in."""
        if self.alive:
            self.kill()


@contextlib.contextmanager
def host_processes(tmp: Path) -> Iterator[Callable[..., HostProcess]]:
    """A factory of started `HostProcess`es under `tmp`: `factory("alpha", args=[...])`.
    Each gets `tmp/<name>` as its persistence dir (unless given) and `tmp/home` as HOME;
    all are killed at the end."""
    started: list[HostProcess] = []
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)

    def factory(name: str = "alpha", *, start: bool = True, **kwargs: object) -> HostProcess:
        kwargs.setdefault("persistence_dir", tmp / "hosts" / name)
        kwargs.setdefault("home", home)
        kwargs.setdefault("log_dir", tmp / "logs")
        process = HostProcess(name, **kwargs)  # type: ignore[arg-type]
        started.append(process)
        return process.start() if start else process

    try:
        yield factory
    finally:
        for process in started:
            process.close()
