"""Real `paglets host` processes for the network rows (targets.md §6).

Each host runs as `python -m paglets host --name N --port 0 --persistence-dir DIR
--mesh-version bench`, exactly as a user starts one, with the repository root as its
working directory and on its PYTHONPATH (so that `bench.models` imports there), its own
temporary HOME and persistence dir, and no mesh key (loopback is open without one). It is
ready when it prints its first stdout line, `paglets host 'N' listening at URL (...)`.

`host_cluster(...)` is the only way the rows start hosts: whatever happens inside it, every
host process and any child it spawned (the forkserver, process paglets) is killed by PID at
the end, and the temporary directories are removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psutil

__all__ = ["READY_RE", "REPO_ROOT", "HostProc", "host_cluster", "host_env", "start_host"]

REPO_ROOT = Path(__file__).resolve().parent.parent
# cli.md §1.2: `paglets host 'alpha' listening at http://127.0.0.1:8765 (mesh on, version dev)`
READY_RE = re.compile(r"^paglets host '(?P<name>[^']+)' listening at (?P<url>\S+) \(")
READY_TIMEOUT = 30.0


def _parent_death_signal() -> Callable[[], None] | None:
    """On Linux, a `preexec_fn` that makes the child get SIGKILL when this process dies, so
    that a benchmark process killed from outside (the driver's timeout, a SIGKILL) leaves no
    host running. The libc function is looked up here, before any fork. Linux sends the
    signal when the *thread* that spawned the child ends, so hosts are started from the
    benchmark's main thread only."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def arm() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)

    return arm


_DIE_WITH_PARENT = _parent_death_signal()


def host_env(home: Path) -> dict[str, str]:
    """This environment with HOME replaced, the repo root first on PYTHONPATH, and no
    paglets settings leaking in from the caller's shell (key, mesh version, debug)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGLETS_")}
    env["HOME"] = str(home)
    env["NO_COLOR"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    return env


class HostProc:
    """One running `paglets host` child. `url` is what its ready line printed."""

    __slots__ = (
        "_reader",
        "command",
        "name",
        "proc",
        "ready_seconds",
        "spawned_at",
        "stderr_path",
        "url",
    )

    def __init__(
        self,
        name: str,
        proc: subprocess.Popen[str],
        command: list[str],
        stderr_path: Path,
        spawned_at: float,
    ) -> None:
        self.name = name
        self.spawned_at = spawned_at  # time.perf_counter() just before the spawn
        self.proc = proc
        self.command = command
        self.stderr_path = stderr_path
        self.url = ""
        self.ready_seconds = 0.0
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tree(self) -> list[psutil.Process]:
        """The host process and all its descendants (those alive now)."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stderr_tail(self, chars: int = 3000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the host and every descendant, by PID, and reap the host."""
        victims = self.tree()
        for victim in victims:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                os.kill(victim.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        for victim in victims[1:]:
            with contextlib.suppress(psutil.Error):
                victim.wait(5)
        if self._reader is not None:
            self._reader.join(2)


def start_host(
    name: str,
    persistence_dir: Path,
    home: Path,
    log_dir: Path,
    *,
    args: Sequence[str] = (),
    timeout: float = READY_TIMEOUT,
    module: str = "paglets",
) -> HostProc:
    """Start a host and return once its ready line was read (`ready_seconds` is the time
    from spawning to that line). The rest of its stdout is drained in a thread so that a
    chatty host never blocks on a full pipe. `module` is what `python -m` runs: `paglets`
    (as a user runs it), or a launcher that meters something first (`bench.turnmeter`)."""
    command = [
        sys.executable,
        "-m",
        module,
        "host",
        "--name",
        name,
        "--port",
        "0",
        "--persistence-dir",
        str(persistence_dir),
        "--mesh-version",
        "bench",
        *args,
    ]
    log_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = log_dir / f"{name}.stderr"
    with stderr_path.open("w") as stderr:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=host_env(home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            bufsize=1,
            # Only a prctl call runs between fork and exec: safe with our threads running.
            preexec_fn=_DIE_WITH_PARENT,
        )
    host = HostProc(name, proc, command, stderr_path, t0)
    try:
        host.url, host.ready_seconds = _read_ready(host, t0, timeout)
    except BaseException:
        host.kill()
        raise
    return host


def _read_ready(host: HostProc, t0: float, timeout: float) -> tuple[str, float]:
    proc = host.proc
    assert proc.stdout is not None
    found: list[tuple[str, float]] = []
    seen: list[str] = []
    got_line = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not found:
                seen.append(line.rstrip("\n"))
                match = READY_RE.match(line)
                if match:
                    found.append((match.group("url").rstrip("/"), time.perf_counter() - t0))
                    got_line.set()
        got_line.set()  # EOF: the process ended

    host._reader = threading.Thread(target=drain, name=f"stdout-{host.name}", daemon=True)
    host._reader.start()
    if not got_line.wait(timeout) or not found:
        state = "exited with " + str(proc.poll()) if proc.poll() is not None else "still running"
        raise RuntimeError(
            f"paglets host {host.name!r} printed no ready line within {timeout:.0f} s ({state}); "
            f"command: {' '.join(host.command)}\nstdout: {seen[:10]}\n"
            f"stderr tail:\n{host.stderr_tail()}"
        )
    return found[0]


@contextlib.contextmanager
def host_cluster(
    names: Sequence[str], *, peer: bool = True, args: Sequence[str] = (), module: str = "paglets"
) -> Iterator[list[HostProc]]:
    """Started hosts `names` in one temporary tree (HOME, persistence dirs, logs). With
    `peer`, every host after the first is given `--peer <first>` so they form a mesh as a
    user's would. All are killed by PID on exit, however the block ends."""
    with tempfile.TemporaryDirectory(prefix="paglets-bench-net-") as tmp:
        root = Path(tmp)
        home = root / "home"
        home.mkdir()
        hosts: list[HostProc] = []
        try:
            for name in names:
                extra = list(args)
                if peer and hosts:
                    extra += ["--peer", hosts[0].url]
                hosts.append(
                    start_host(
                        name, root / "hosts" / name, home, root / "logs", args=extra, module=module
                    )
                )
            yield hosts
        finally:
            for host in hosts:
                host.kill()
