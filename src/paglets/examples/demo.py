"""`paglets demo` (cli.md §11, jobs.md §7): the whole idea on one machine, in one command.

Three `paglets host` processes on loopback, with a generated mesh key, in a temporary
directory: `alpha` (the laptop, tagged `laptop`), `beta` and `gamma` (tagged `linux`;
`beta` also `collector`). From alpha a detached group of short jobs is submitted, each
returning an artifact; alpha is then stopped (the laptop goes away) and started again
while the jobs run on beta and gamma; the collector brings the results home to alpha.
A progress bar shows `done/total` with per-host counts; the summary follows, then every
host is stopped by its PID (unless `--keep`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paglets.core.messages import Message

__all__ = ["DemoHost", "DemoOptions", "main", "run_demo"]

EXIT_OK, EXIT_FAILED, EXIT_MESH = 0, 1, 2
HOST_NAMES = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota")
MESH_VERSION = "demo"
# One machine plays three hosts: their CPUs are the same CPUs, so the load one host sees
# is mostly the others' jobs. The demo's schedulers count only their own leases, and start
# jobs as fast as they come.
LAUNCH_CONFIG = """\
[launch]
sync_demo_config = false

[services.compute-slots]
respect_external_load = false
start_rate_per_second = 50.0
start_burst = 16
"""


@dataclass
class DemoOptions:
    hosts: int = 3
    jobs: int = 12
    keep: bool = False
    dir: Path | None = None
    base_port: int = 0
    laptop_away: float = 2.0
    timeout: float = 120.0
    json: bool = False
    job_seconds: float = 0.4
    progress: bool = True


@dataclass
class DemoHost:
    """One `paglets host` child process of the demo."""

    name: str
    port: int
    dir: Path
    tags: list[str]
    peers: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "paglets", "host", "--name", self.name]
        cmd += ["--port", str(self.port), "--persistence-dir", str(self.dir / "store")]
        cmd += ["--mesh-version", MESH_VERSION, "--launch-config", str(self.dir / "launch.toml")]
        for tag in self.tags:
            cmd += ["--tag", tag]
        for peer in self.peers:
            cmd += ["--peer", peer]
        return cmd

    def start(self, env: dict[str, str]) -> None:
        (self.dir / "store").mkdir(parents=True, exist_ok=True)
        (self.dir / "home").mkdir(parents=True, exist_ok=True)
        (self.dir / "launch.toml").write_text(LAUNCH_CONFIG, encoding="utf-8")
        with (self.dir / "host.log").open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env={**env, "HOME": str(self.dir / "home")},  # its own ~/.paglets
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal reaches the demo, not them
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a graceful stop: paglets saved), then SIGKILL after `timeout`."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.dir / "host.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _plan(options: DemoOptions, root: Path) -> list[DemoHost]:
    if not 2 <= options.hosts <= len(HOST_NAMES):
        raise ValueError(f"--hosts must be 2 to {len(HOST_NAMES)}, got {options.hosts}")
    hosts = []
    for i in range(options.hosts):
        name = HOST_NAMES[i]
        port = options.base_port + i if options.base_port else _free_port()
        if i == 0:
            tags = ["laptop"]
        elif i == 1:
            tags = ["linux", "collector"]
        else:
            tags = ["linux"]
        hosts.append(DemoHost(name, port, root / name, tags))
    seed = hosts[0].url
    for host in hosts[1:]:
        host.peers = [seed]
    hosts[0].peers = [hosts[1].url]  # alpha finds the mesh again after its restart
    return hosts


class _Out:
    """Where the demo talks: stderr for progress and notes, stdout for the summary."""

    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.quiet = options.json

    def note(self, text: str) -> None:
        if not self.quiet:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()


def _wait(predicate: Any, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        time.sleep(step)  # polling child processes over HTTP
    return False


def _mesh_ready(client: Any, hosts: list[DemoHost]) -> bool:
    """Every host is up, and alpha sees every compute host alive with its resources."""
    names = {h.name for h in hosts}
    rows = client.list_hosts(hosts[0].url, timeout=2.0)
    seen = {r["name"]: r for r in rows if r.get("online", True)}
    if not names <= seen.keys():
        return False
    return all((seen[h.name].get("resources") or {}).get("job_cores") for h in hosts[1:])


def run_demo(options: DemoOptions) -> int:
    """Run the demo; returns the exit code (0 all reported, 1 some failed, 2 no mesh)."""
    from paglets.remote.client import HostClient

    out = _Out(options)
    started = time.monotonic()
    own_dir = options.dir is None
    root = Path(tempfile.mkdtemp(prefix="paglets-demo-")) if own_dir else Path(options.dir)  # type: ignore[arg-type]
    root.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    home = root / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(HOME=str(home), PAGLETS_API_KEY=key, NO_COLOR="1")
    env.pop("PAGLETS_ENTRY", None)
    try:
        hosts = _plan(options, root)
    except ValueError as exc:
        out.note(f"paglets demo: {exc}")
        return EXIT_MESH
    client = HostClient(timeout=10.0, api_key=key)
    keep = False
    try:
        out.note(f"starting {len(hosts)} hosts in {root}")
        hosts[0].start(env)
        for host in hosts[1:]:
            host.start(env)
        with _spinner(options, "waiting until every host sees every other one"):
            ready = _wait(lambda: _mesh_ready(client, hosts), timeout=40.0)
        if not ready:
            out.note("paglets demo: the hosts did not form a mesh in 40 s")
            for host in hosts:
                out.note(f"--- {host.name} ({'running' if host.alive else 'exited'})")
                out.note(host.log_tail())
            return EXIT_MESH
        for host in hosts:
            out.note(f"  {host.name:<6} {host.url}  tags {','.join(host.tags)}")
        code, doc = _run_group(options, client, hosts, env, out)
        doc["seconds"] = round(time.monotonic() - started, 2)
        doc["dir"] = str(root)
        keep = options.keep
        if keep:  # what the next commands need (the key is the demo's own, made above)
            doc["api_key"] = key
            doc["hosts"] = [
                {"name": h.name, "url": h.url, "pid": h.proc.pid if h.proc else None} for h in hosts
            ]
        _print_summary(doc, options, out)
        if keep and not options.json:
            _print_next_steps(hosts, key, root)
        return code
    finally:
        if not keep:
            _stop_all(hosts)
            if own_dir:
                import shutil

                shutil.rmtree(root, ignore_errors=True)


def _spinner(options: DemoOptions, text: str) -> Any:
    if options.json or not options.progress or not sys.stderr.isatty():
        return contextlib.nullcontext()
    from paglets.cli.output import stderr_console

    return stderr_console().status(text)


def _stop_all(hosts: list[DemoHost]) -> None:
    threads = [threading.Thread(target=h.stop, daemon=True) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)


def _run_group(
    options: DemoOptions,
    client: Any,
    hosts: list[DemoHost],
    env: dict[str, str],
    out: _Out,
) -> tuple[int, dict[str, Any]]:
    from paglets.examples.demo_jobs import DemoJobPaglet, DemoJobState
    from paglets.system.compute_slots.groups import HostAtUrl, submit_compute_job_group

    alpha = hosts[0]
    states = [
        DemoJobState(
            bundle=f"bundle-{i + 1:02d}",
            seconds=options.job_seconds,
            cpu_cores=1,
            memory_bytes=16 << 20,
            estimated_runtime_seconds=max(1.0, options.job_seconds),
            required_host_tags=("linux",),
            wait_for_capable_host=True,
            placement_timeout_seconds=max(60.0, options.timeout),
        )
        for i in range(options.jobs)
    ]
    sub = submit_compute_job_group(
        HostAtUrl(alpha.url, client),
        DemoJobPaglet,
        states,
        collector_host_tag="collector",
        return_home_when_complete=True,
    )
    collector = sub.collector
    out.note(
        f"submitted group {sub.group_id}: {len(sub.jobs)} jobs from alpha, "
        f"collector on {_name_of(hosts, collector.host_url)}"
    )

    away = threading.Thread(target=_laptop_away, args=(alpha, env, options, out), daemon=True)
    away.start()
    final = _follow(options, client, hosts, collector, out)
    away.join(options.timeout)
    members = final.get("members", [])
    failed = [m for m in members if m.get("state") != "result"]
    code = EXIT_OK if final.get("status") == "COMPLETE" and not failed else EXIT_FAILED
    return code, {
        "group_id": sub.group_id,
        "status": final.get("status"),
        "at_home": final.get("at_home"),
        "collector_host": final.get("collector_host_name"),
        "expected": final.get("expected"),
        "done": final.get("done"),
        "failed": len(failed),
        "members": members,
    }


def _laptop_away(alpha: DemoHost, env: dict[str, str], options: DemoOptions, out: _Out) -> None:
    """The laptop leaves right after submitting, and comes back."""
    time.sleep(0.3)  # let the first jobs leave alpha
    out.note("alpha (the laptop) goes away ...")
    alpha.stop()
    time.sleep(max(0.0, options.laptop_away))
    out.note("alpha is back")
    alpha.start(env)


def _name_of(hosts: list[DemoHost], url: str) -> str:
    url = url.rstrip("/")
    return next((h.name for h in hosts if h.url == url), url)


def _summary(client: Any, hosts: list[DemoHost], collector: Any) -> dict[str, Any]:
    """The collector's summary, asked where it is (it moves home at the end)."""
    last: Exception | None = None
    for url in [collector.host_url, *(h.url for h in hosts)]:
        try:
            return client.send_message(
                url,
                collector.agent_id,
                Message("summary", {"limit": 1000, "details": True}),
                timeout=5.0,
            )
        except Exception as exc:  # not there (moved) or host away: ask the next
            last = exc
    raise RuntimeError(f"collector not reachable: {last}")


def _follow(
    options: DemoOptions, client: Any, hosts: list[DemoHost], collector: Any, out: _Out
) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from paglets.cli.output import stderr_console

    show = options.progress and not options.json and sys.stderr.isatty()
    deadline = time.monotonic() + options.timeout
    doc: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[hosts]}"),
        console=stderr_console(),
        disable=not show,
        transient=False,
    ) as bar:
        task = bar.add_task("jobs", total=options.jobs, hosts="")
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                doc = _summary(client, hosts, collector)
                per_host: dict[str, int] = {}
                for m in doc.get("members", []):
                    if m.get("state") == "result":
                        per_host[m.get("host_name") or "?"] = (
                            per_host.get(m.get("host_name") or "?", 0) + 1
                        )
                counts = "  ".join(f"{k} {v}" for k, v in sorted(per_host.items()))
                status = doc.get("status", "")
                bar.update(
                    task,
                    completed=doc.get("terminal", 0),
                    hosts=f"{counts}  ({status.lower().replace('_', ' ')})",
                )
                if status in ("COMPLETE", "CANCELLED") and doc.get("at_home"):
                    return doc
            time.sleep(0.2)  # polling the collector's summary
    out.note("paglets demo: the group did not finish before --timeout")
    return doc


def _print_summary(doc: dict[str, Any], options: DemoOptions, out: _Out) -> None:
    if options.json:
        sys.stdout.write(json.dumps(doc, sort_keys=True, default=str) + "\n")
        return
    from paglets.cli.session import table

    rows = []
    for m in doc.get("members", []):
        refs = m.get("artifacts") or []
        where = ",".join(sorted({str(r.get("host_name") or "?") for r in refs})) or "-"
        rows.append(
            [
                str(m.get("job_key") or "").removeprefix(f"{doc.get('group_id')}-"),
                str(m.get("state")),
                str(m.get("host_name") or "-"),
                json.dumps(m.get("result")) if m.get("result") is not None else "-",
                f"{sum(int(r.get('size_bytes') or 0) for r in refs)} B on {where}",
            ]
        )
    table(f"Group {doc.get('group_id')}", ("job", "state", "ran on", "result", "artifact"), rows)
    ran = {}
    for m in doc.get("members", []):
        ran[m.get("host_name") or "?"] = ran.get(m.get("host_name") or "?", 0) + 1
    sys.stdout.write(
        f"{doc.get('done')}/{doc.get('expected')} jobs reported once each "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(ran.items()))}); "
        f"collector {doc.get('status')} and {'home on alpha' if doc.get('at_home') else 'not home'}"
        f"; {doc.get('seconds')} s\n"
    )
    sys.stdout.flush()


def _print_next_steps(hosts: list[DemoHost], key: str, root: Path) -> None:
    alpha = hosts[0]
    pids = " ".join(str(h.proc.pid) for h in hosts if h.proc is not None)
    sys.stdout.write(
        "\nthe hosts keep running (--keep). Try:\n"
        f"  export PAGLETS_API_KEY={key} PAGLETS_ENTRY={alpha.url}\n"
        "  paglets mesh hosts\n"
        "  paglets jobs groups\n"
        f"  dashboard: {alpha.url}/ui\n"
        f"stop them with: kill {pids}   (files in {root})\n"
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m paglets.examples.demo")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    return run_demo(DemoOptions(hosts=args.hosts, jobs=args.jobs, keep=args.keep))


if __name__ == "__main__":
    sys.exit(main())
