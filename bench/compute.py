"""The jobs rows of targets.md §3 measured with real `paglets host` processes.

* **i1**: a group of short jobs (`bench.jobs.BenchJob`, thread-isolated) submitted with
  `submit_compute_job_group` from the bench process (a user's script) to the first host;
  every host is tagged `compute` and may run them (home included), the collector lives on
  the second host. Timed from the submit call to the collector's summary showing every
  member terminal. The runtime keeps no turn-CPU counter, so the hosts are started through
  `bench.turnmeter` (`paglets host` with the scheduler's lock metered: the thread CPU of
  every turn, and of placement apart); that sum over all hosts, per job, is the figure
  against the target. Beside it, an upper bound of everything the jobs cost the hosts:
  the CPU time (user + system, psutil) of every host process tree during the run, per job
  (creating the jobs over HTTP, placement, moves, activations, checkpoints, the
  collector's reports, gossip, the summary polls; the jobs sleep, so their own CPU is
  nil), also less the hosts' idle CPU rate measured just before. Lost and twice-run jobs
  are counted from the collector's summary (every key exactly once as `result`, attempt
  1, no duplicate report) and from the jobs' own run markers (one line per key).
* **i2**: `paglets jobs hosts --entry URL --json` as a user runs it (a fresh CLI process,
  wall time from spawn to exit) on an N-host mesh once the entry's gossip table holds
  every host's summary; and the in-host answer (`candidate_hosts` sent to the entry's
  `compute-slots` service from a warm client) for comparison.

Hosts start with a launch config that turns `respect_external_load` off, so that the
other hosts of this one machine (and whatever else runs on it) do not look like foreign
load that keeps jobs from being admitted, and raises the start throttle as `paglets demo`
does: a thread job starts no interpreter, and the default 4 starts/s per host would bound
the end-to-end time at jobs / (4 * hosts) seconds whatever the scheduler costs.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from paglets import Message
from paglets.cli.mesh_summary import member_resources
from paglets.core.errors import PagletError
from paglets.remote.client import HostClient

from .harness import Result, at_most, progress, summarize
from .hostprocs import REPO_ROOT, HostProc, host_cluster, host_env
from .inprocess import Group
from .network import make_client
from .turnmeter import read_meter

__all__ = ["GROUPS"]

MS = 1e3
LAUNCH = """\
[launch]
sync_demo_config = false

[services.compute-slots]
respect_external_load = false
start_rate_per_second = 50.0
start_burst = 16
"""
TAG = "compute"
READY_TIMEOUT = 120.0
POLL = 0.1


@dataclass(frozen=True, slots=True)
class I1Sizes:
    hosts: int
    jobs: int
    job_seconds: float
    idle_window: float
    timeout: float


I1_QUICK = I1Sizes(hosts=3, jobs=60, job_seconds=0.02, idle_window=1.0, timeout=120.0)
I1_FULL = I1Sizes(hosts=4, jobs=500, job_seconds=0.02, idle_window=3.0, timeout=900.0)


@contextlib.contextmanager
def _launch_config() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="paglets-bench-jobs-") as tmp:
        path = Path(tmp, "launch.toml")
        path.write_text(LAUNCH, "utf-8")
        yield path


def _members(client: HostClient, url: str) -> dict[str, dict[str, Any]]:
    try:
        rows = client.get_json(f"{url}/mesh/members", timeout=5.0)["members"]
    except PagletError:
        return {}
    return {m["name"]: m for m in rows}


def _sees_all(client: HostClient, url: str, names: set[str], *, idle: bool) -> bool:
    """The host at `url` sees every one of `names` alive with its scheduler's load figures
    (what placement ranks by); with `idle`, with every job core free."""
    members = _members(client, url)
    if not names <= members.keys():
        return False
    for name in names:
        m = members[name]
        r = member_resources(m)
        if m.get("status") != "alive" or "free_cpu_cores" not in r:
            return False
        if idle and r["free_cpu_cores"] != r.get("job_cores"):
            return False
    return True


def _wait_ready(client: HostClient, urls: Sequence[str], names: set[str], *, idle: bool) -> float:
    t0 = time.monotonic()
    while not all(_sees_all(client, url, names, idle=idle) for url in urls):
        if time.monotonic() - t0 > READY_TIMEOUT:
            raise RuntimeError(
                f"the hosts did not all see the {len(names)} hosts with load summaries within "
                f"{READY_TIMEOUT:.0f} s"
            )
        time.sleep(0.2)
    return time.monotonic() - t0


def _cpu_by_host(hosts: Sequence[HostProc]) -> dict[str, float]:
    """User + system CPU seconds of each host's process tree (exited, reaped children
    included through the parents' children_* fields)."""
    out: dict[str, float] = {}
    for host in hosts:
        total = 0.0
        for proc in host.tree():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        out[host.name] = total
    return out


def _cpu_seconds(hosts: Sequence[HostProc]) -> float:
    return sum(_cpu_by_host(hosts).values())


# -- i1 -------------------------------------------------------------------------------


def _meters(hosts: Sequence[HostProc]) -> dict[str, float]:
    """The turn meters of all hosts (`bench.turnmeter`), summed; each written after this
    call began, so nothing before it is missed."""
    asked = time.time()
    deadline = time.monotonic() + 10.0
    totals: dict[str, float] = {}
    for host in hosts:
        pdir = host.command[host.command.index("--persistence-dir") + 1]
        while True:
            try:
                data = read_meter(pdir)
            except (OSError, ValueError):
                data = {}
            if data.get("written_at", 0.0) > asked:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"i1: host {host.name} wrote no turn meter within 10 s")
            time.sleep(0.02)
        for key, value in data.items():
            if key != "written_at":
                totals[key] = totals.get(key, 0.0) + float(value)
    return totals


def _summary(client: HostClient, urls: Sequence[str], agent_id: str, **args: Any) -> dict[str, Any]:
    last: Exception | None = None
    for url in urls:
        try:
            return client.send_message(url, agent_id, Message("summary", args), timeout=10.0)
        except PagletError as exc:  # not there (it never moves here, but be safe)
            last = exc
    raise RuntimeError(f"i1: the collector {agent_id} answers on no host: {last}")


def _all_members(client: HostClient, urls: Sequence[str], agent_id: str) -> dict[str, Any]:
    doc = _summary(client, urls, agent_id, limit=1000, details=True)
    members = list(doc.get("members", []))
    while doc.get("next_offset") is not None:
        doc = _summary(client, urls, agent_id, offset=doc["next_offset"], limit=1000, details=True)
        members.extend(doc.get("members", []))
    doc["members"] = members
    return doc


def bench_i1(quick: bool) -> list[Result]:
    from paglets.system.compute_slots.groups import HostAtUrl, submit_compute_job_group

    from .jobs import BenchJob, BenchJobState

    sizes = I1_QUICK if quick else I1_FULL
    names = [f"j{i}" for i in range(sizes.hosts)]
    progress(f"i1: starting {sizes.hosts} host processes")
    with (
        _launch_config() as launch,
        tempfile.TemporaryDirectory(prefix="paglets-bench-i1-") as markers,
        host_cluster(
            names, args=["--launch-config", str(launch), "--tag", TAG], module="bench.turnmeter"
        ) as hosts,
        make_client() as client,
    ):
        urls = [h.url for h in hosts]
        _wait_ready(client, urls, set(names), idle=True)
        # The hosts' idle CPU rate (gossip, ticks, samplers), to subtract for the net figure.
        c0, t0 = _cpu_seconds(hosts), time.monotonic()
        time.sleep(sizes.idle_window)
        idle_rate = (_cpu_seconds(hosts) - c0) / (time.monotonic() - t0)

        states = [
            BenchJobState(
                seconds=sizes.job_seconds,
                marker_dir=markers,
                cpu_cores=1,
                memory_bytes=16 << 20,
                estimated_runtime_seconds=1.0,
                required_host_tags=(TAG,),
                allow_home_compute=True,
                wait_for_capable_host=True,
                placement_timeout_seconds=sizes.timeout,
            )
            for _ in range(sizes.jobs)
        ]
        progress(f"i1: {sizes.jobs} jobs over {sizes.hosts} hosts")
        meter0 = _meters(hosts)
        by_host0, t_submit = _cpu_by_host(hosts), time.perf_counter()
        cpu0 = sum(by_host0.values())
        sub = submit_compute_job_group(
            HostAtUrl(urls[0], client), BenchJob, states, collector_host_url=urls[1]
        )
        submitted = time.perf_counter() - t_submit
        submit_cpu = _cpu_seconds(hosts) - cpu0
        collector = sub.collector.agent_id
        where = [sub.collector.host_url, *urls]
        deadline = time.monotonic() + sizes.timeout
        doc: dict[str, Any] = {}
        while True:
            doc = _summary(client, where, collector, limit=0)
            if doc.get("expected") == sizes.jobs and doc.get("terminal") == sizes.jobs:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"i1: the group did not finish within {sizes.timeout:.0f} s: "
                    f"{doc.get('terminal')}/{doc.get('expected')} terminal, counts "
                    f"{doc.get('counts')}"
                )
            time.sleep(POLL)
        elapsed = time.perf_counter() - t_submit
        by_host1 = _cpu_by_host(hosts)
        cpu = sum(by_host1.values()) - cpu0
        by_host = {name: by_host1[name] - by_host0[name] for name in by_host1}
        meter1 = _meters(hosts)
        final = _all_members(client, where, collector)
        runs = _runs(Path(markers))
    meter = {k: meter1[k] - meter0.get(k, 0.0) for k in meter1}
    cpu_split = {
        "submit_phase_seconds": submit_cpu,
        "by_host_seconds": by_host,
        "collector_host": names[1],
        "submitting_host": names[0],
    }
    return _i1_results(sizes, final, runs, meter, cpu, cpu_split, idle_rate, elapsed, submitted)


def _runs(markers: Path) -> dict[str, list[str]]:
    """job key -> the lines its runs wrote (one per run)."""
    return {
        path.name: path.read_text("utf-8").splitlines()
        for path in markers.iterdir()
        if path.is_file()
    }


def _i1_results(
    sizes: I1Sizes,
    final: dict[str, Any],
    runs: dict[str, list[str]],
    meter: dict[str, float],
    cpu: float,
    cpu_split: dict[str, Any],
    idle_rate: float,
    elapsed: float,
    submitted: float,
) -> list[Result]:
    n = sizes.jobs
    members = final["members"]
    results = [m for m in members if m.get("state") == "result"]
    result_keys = {str(m.get("job_key")) for m in results}
    all_keys = {str(m.get("job_key")) for m in members}
    # lost: an expected job without exactly one accepted result
    lost = n - len(result_keys)
    # run twice: a key whose job ran more than once, or a second report the collector kept
    twice = sum(1 for lines in runs.values() if len(lines) > 1)
    duplicates = int(final.get("duplicate_reports") or 0)
    never_ran = sorted(all_keys - runs.keys())
    retried = sum(1 for m in results if int(m.get("attempt") or 1) > 1)
    per_host: dict[str, int] = {}
    for m in results:
        host = str(m.get("host_name") or "?")
        per_host[host] = per_host.get(host, 0) + 1
    per_job_ms = cpu / n * MS
    net_ms = max(0.0, cpu - idle_rate * elapsed) / n * MS
    scale = "" if (sizes.hosts, n) == (4, 500) else f" (quick: {n} jobs, {sizes.hosts} hosts)"
    common = {
        "jobs": n,
        "hosts": sizes.hosts,
        "isolation": "thread",
        "job_seconds": sizes.job_seconds,
        "per_host_results": dict(sorted(per_host.items())),
        "group_status": final.get("status"),
        "counts": final.get("counts"),
    }
    turn_ms = meter["turn_cpu_seconds"] / n * MS
    placement_ms = meter["placement_cpu_seconds"] / n * MS
    return [
        Result(
            "i1",
            "i1.turn",
            f"scheduler turn CPU per job (all hosts' turns, metered){scale}",
            "ms",
            turn_ms,
            None,
            n,
            at_most(20.0),
            {
                **common,
                "turns": int(meter["turns"]),
                "turns_per_job": meter["turns"] / n,
                "turn_cpu_seconds": meter["turn_cpu_seconds"],
                "measured": "thread CPU (time.thread_time) while holding SlotsRuntime.lock, "
                "summed over all hosts, from the submit call to all results at the collector "
                "(bench.turnmeter)",
            },
        ),
        Result(
            "i1",
            "i1.place",
            f"placement CPU per job (candidate_hosts, outside the turns){scale}",
            "ms",
            placement_ms,
            None,
            n,
            None,
            {
                "placement_calls": int(meter["placement_calls"]),
                "placement_cpu_seconds": meter["placement_cpu_seconds"],
            },
        ),
        Result(
            "i1",
            "i1.cpu",
            f"CPU of all host processes per job (upper bound of the overhead){scale}",
            "ms",
            per_job_ms,
            None,
            n,
            None,
            {
                **common,
                "host_cpu_seconds": cpu,
                "host_cpu": cpu_split,
                "idle_cpu_rate": idle_rate,
                "net_of_idle_ms_per_job": net_ms,
                "measured": "psutil cpu_times (user+system, with children) of every host "
                "process tree, from the submit call to all results at the collector",
            },
        ),
        Result(
            "i1",
            "i1.net",
            f"same, less the hosts' idle CPU rate over the run{scale}",
            "ms",
            net_ms,
            None,
            n,
            None,
            {"idle_cpu_rate": idle_rate},
        ),
        Result(
            "i1",
            "i1.e2e",
            f"submit -> all {n} results at the collector (end to end){scale}",
            "s",
            elapsed,
            None,
            1,
            None,
            {**common, "submit_seconds": submitted, "jobs_per_second": n / elapsed},
        ),
        Result(
            "i1",
            "i1.lost",
            f"jobs lost or run twice (of {n}; collector summary and run markers)",
            "jobs",
            float(lost + twice + duplicates),
            None,
            n,
            at_most(0.0),
            {
                "lost": lost,
                "ran_twice": twice,
                "duplicate_reports": duplicates,
                "never_ran": never_ran[:20],
                "retried_attempts": retried,
                "members": len(members),
            },
        ),
    ]


# -- i2 -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class I2Sizes:
    hosts: int
    cli_runs: int
    in_host_n: int


I2_QUICK = I2Sizes(hosts=8, cli_runs=5, in_host_n=50)
I2_FULL = I2Sizes(hosts=32, cli_runs=15, in_host_n=300)


def _cli_command() -> list[str]:
    """`paglets`, the console script of this environment, as a user types it (else
    `python -m paglets`)."""
    script = Path(sys.executable).with_name("paglets")
    return [str(script)] if script.exists() else [sys.executable, "-m", "paglets"]


def _run_cli(command: list[str], env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    elapsed = time.perf_counter() - t0
    if done.returncode not in (0, 1):  # 1: no candidate (cli.md §4), still an answer
        raise RuntimeError(
            f"i2: {' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    return elapsed, json.loads(done.stdout)


def bench_i2(quick: bool) -> list[Result]:
    from paglets.system.compute_slots import CandidateHostsRequest, ComputeSlotRequest
    from paglets.system.compute_slots.service import COMPUTE_SLOTS_AGENT_ID, OP_CANDIDATE_HOSTS

    sizes = I2_QUICK if quick else I2_FULL
    count = sizes.hosts
    names = [f"q{i:02d}" for i in range(count)]
    progress(f"i2: starting {count} host processes")
    with (
        _launch_config() as launch,
        tempfile.TemporaryDirectory(prefix="paglets-bench-i2-") as cli_home,
        host_cluster(names, args=["--launch-config", str(launch), "--tag", TAG]) as hosts,
        make_client() as client,
    ):
        entry = hosts[0].url
        _wait_ready(client, [entry], set(names), idle=False)
        env = host_env(Path(cli_home))
        command = [*_cli_command(), "jobs", "hosts", "--entry", entry, "--json"]
        command += ["--limit", str(count), "--allow-home"]
        progress(f"i2: {sizes.cli_runs} runs of `paglets jobs hosts` on {count} hosts")
        _run_cli(command, env)  # warm the page cache for the CLI's imports
        cli: list[float] = []
        shown: list[int] = []
        for _ in range(sizes.cli_runs):
            seconds, doc = _run_cli(command, env)
            cli.append(seconds)
            shown.append(len(doc.get("candidates") or ()) + len(doc.get("rejected") or ()))

        request = ComputeSlotRequest(
            request_id="bench", job_id="compute-job-bench", agent_id="bench", cpu_cores=1
        )
        message = OP_CANDIDATE_HOSTS.to_message(
            CandidateHostsRequest(request=request, limit=count, include_self=True)
        )

        def ask() -> Any:
            return OP_CANDIDATE_HOSTS.decode_reply(
                client.send_message(entry, COMPUTE_SLOTS_AGENT_ID, message, timeout=10.0)
            )

        for _ in range(10):
            ask()
        in_host: list[float] = []
        for _ in range(sizes.in_host_n):
            t0 = time.perf_counter()
            ask()
            in_host.append(time.perf_counter() - t0)
        start_only = _cli_start_only(env)

    scale = "" if count == 32 else f" (quick: {count} hosts; the target is for 32)"
    cli_median, cli_p95 = summarize(cli)
    host_median, host_p95 = summarize(in_host)
    return [
        Result(
            "i2",
            "i2.cli",
            f"`paglets jobs hosts --json` on {count} hosts, CLI process spawn to exit{scale}",
            "ms",
            cli_median * MS,
            cli_p95 * MS,
            len(cli),
            at_most(300.0),
            {
                "hosts_shown": shown,
                "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command)),
                "cli_start_only_ms": start_only * MS,
            },
        ),
        Result(
            "i2",
            "i2.host",
            f"candidate_hosts answered by the entry host ({count} hosts), warm client",
            "ms",
            host_median * MS,
            host_p95 * MS,
            len(in_host),
            None,
        ),
    ]


def _cli_start_only(env: dict[str, str]) -> float:
    """Median wall time of `paglets jobs hosts --help`: the CLI's start-up and imports
    without any host call, to tell start-up from the answer."""
    command = [*_cli_command(), "jobs", "hosts", "--help"]
    samples = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(
            command, cwd=REPO_ROOT, env=env, capture_output=True, timeout=60, check=False
        )
        samples.append(time.perf_counter() - t0)
    return sorted(samples)[1]


GROUPS: dict[str, Group] = {
    "i1": Group("i1", "a group of short jobs over real host processes (i1)", bench_i1),
    "i2": Group("i2", "`paglets jobs hosts` on a mesh of host processes (i2)", bench_i2),
}
