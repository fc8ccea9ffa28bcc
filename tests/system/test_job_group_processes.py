"""The seed's example (jobs.md §4.6) on three real `paglets host` processes.

beta (linux, collector) and gamma (linux) compute; alpha, the laptop, submits the
`ds_dia` bundle jobs exactly as the seed does and is stopped right after, mid-run. While
it is away the collector gathers every report and waits for home; alpha comes back and
the collector returns with the artifacts. Every result and artifact arrives exactly once,
and the jobs are gone (disposed after their report was acknowledged).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paglets import Message
from paglets.remote.client import HostClient
from support.processes import HostProcess
from support.waiting import wait_until

DS_DIA_SRC = Path(__file__).resolve().parents[2] / "packages" / "ds_dia" / "src"
# One machine plays three hosts: the others' jobs are not "external load" here.
LAUNCH = """\
[launch]
sync_demo_config = false

[services.compute-slots]
respect_external_load = false
start_rate_per_second = 50.0
start_burst = 16
"""
JOBS = 12


@pytest.fixture
def ds_dia_path(monkeypatch: pytest.MonkeyPatch) -> str:
    """ds_dia importable here and in the host processes, installed or not (it is a uv
    workspace member; this keeps the test independent of the environment's sync)."""
    try:
        import ds_dia  # noqa: F401
    except ImportError:
        monkeypatch.syspath_prepend(str(DS_DIA_SRC))
    return str(DS_DIA_SRC)


def members(client: HostClient, url: str) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in client.list_hosts(url) if h.get("online", True)}


def summary(client: HostClient, urls: list[str], agent_id: str) -> dict[str, Any] | None:
    for url in urls:
        try:
            return client.send_message(
                url, agent_id, Message("summary", {"limit": 1000, "details": True}), timeout=5
            )
        except Exception:
            continue
    return None


def test_seed_example_with_the_laptop_away(
    host_process: Callable[..., HostProcess], tmp_path: Path, ds_dia_path: str
) -> None:
    from ds_dia.compute.bundles import process_bundle
    from ds_dia.compute.models import DsDiaBundleJobState
    from ds_dia.compute.paglets import DsDiaBundleJobPaglet

    from paglets.system.compute_slots import submit_compute_job_group

    launch = tmp_path / "launch.toml"
    launch.write_text(LAUNCH)
    env = {"PYTHONPATH": ds_dia_path + (":" + sys.path[0] if sys.path else "")}

    def start(name: str, *args: str) -> HostProcess:
        (tmp_path / "hosts" / name).mkdir(parents=True, exist_ok=True)
        return host_process(
            name,
            args=["--launch-config", str(launch), *args],
            env=env,
            persistence_dir=tmp_path / "hosts" / name,
        )

    beta = start("beta", "--tag", "linux", "--tag", "collector", "--property", "python=3.12")
    gamma = start("gamma", "--tag", "linux", "--property", "python=3.12", "--peer", beta.url)
    alpha = start("alpha", "--tag", "laptop", "--peer", beta.url)
    client = HostClient(timeout=10.0)

    def mesh_ready() -> bool:
        seen = members(client, alpha.url)
        return {"alpha", "beta", "gamma"} <= seen.keys() and all(
            (seen[n].get("resources") or {}).get("job_cores") for n in ("beta", "gamma")
        )

    wait_until(mesh_ready, timeout=30)

    bundles = tmp_path / "bundles"
    bundles.mkdir()
    bundle_paths = []
    for i in range(JOBS):
        path = bundles / f"bundle-{i:02d}.txt"
        path.write_text("".join(f"record {i}-{r}\n" for r in range(5 + i)))
        bundle_paths.append(str(path))

    # The seed's code (§4.6), with resources this machine has.
    states = [
        DsDiaBundleJobState(
            bundle_path=p,
            cpu_cores=1,
            memory_bytes=64 << 20,
            temp_storage_bytes=1 << 20,
            estimated_runtime_seconds=30,
            required_host_tags=("linux",),
            required_host_properties=("python>=3.12",),
        )
        for p in bundle_paths
    ]
    sub = submit_compute_job_group(
        alpha.url,
        DsDiaBundleJobPaglet,
        states,
        collector_host_tag="collector",
        return_home_when_complete=True,
    )
    assert sub.collector.host_url.rstrip("/") == beta.url.rstrip("/")
    assert len(sub.jobs) == JOBS and not sub.creation_errors
    alpha_url = alpha.url
    collector = sub.collector.agent_id
    job_ids = {proxy.agent_id for proxy in sub.jobs.values()}

    def all_left_the_laptop() -> bool:
        here = {a["agent_id"] for a in client.list_agents(alpha.url, state="all")}
        return not (job_ids & here)

    # The jobs place themselves from alpha; once every one has left it (they run or queue on
    # beta and gamma), the laptop goes away mid-run.
    wait_until(all_left_the_laptop, timeout=60)
    alpha.terminate()
    away = wait_until(
        lambda: (
            (s := summary(client, [beta.url], collector))
            and s["terminal"] == JOBS
            and s["status"] == "WAITING_FOR_HOME"
            and s
        ),
        timeout=90,
    )
    assert away["done"] == JOBS, away["failures"]

    alpha.restart(same_port=True)
    assert alpha.url == alpha_url
    home = wait_until(
        lambda: (s := summary(client, [alpha.url], collector)) and s["status"] == "COMPLETE" and s,
        timeout=60,
    )
    assert home["at_home"] and home["collector_host_name"] == "alpha"
    assert home["done"] == JOBS and home["duplicate_reports"] == 0

    expected_rows = {}
    for i, path in enumerate(bundle_paths):
        expected_rows[f"{sub.group_id}-{i + 1:04d}"] = process_bundle(path, tmp_path / "x.out")
    seen_ids = set()
    for member in home["members"]:
        assert member["state"] == "result"
        assert member["result"] == {"rows": expected_rows[member["job_key"]]}
        assert member["host_name"] in ("beta", "gamma")
        (ref,) = member["artifacts"]
        assert ref["host_name"] == "alpha"
        assert ref["artifact_id"] not in seen_ids
        seen_ids.add(ref["artifact_id"])
        target = tmp_path / "out" / member["job_key"]
        target.mkdir(parents=True)
        got = client.download_artifact(ref, target / "bundle.out")
        data = got.read_bytes()
        assert hashlib.sha256(data).hexdigest() == ref["sha256"]
        assert data.count(b"\n") == expected_rows[member["job_key"]] + 1
    # Every job disposed itself once its report was acknowledged.
    for host in (alpha, beta, gamma):
        names = [a["class_name"] for a in client.list_agents(host.url, state="all")]
        assert not [n for n in names if "DsDia" in n], (host.name, names)
