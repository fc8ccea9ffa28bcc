"""`paglets examples ...` end to end (cli.md §8, jobs.md §7) against a real loopback mesh of
three `paglets host` processes: each example runs, exits 0, prints what it should, and
leaves no paglet behind on any host (service paglets aside)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paglets.remote.client import HostClient
from support.processes import HostProcess, host_processes, run_paglets
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


class Mesh:
    def __init__(self, hosts: dict[str, HostProcess], home: Path) -> None:
        self.hosts = hosts
        self.home = home
        self.client = HostClient(timeout=10.0)
        self.entry = hosts["alpha"].url
        self.env = {"PAGLETS_ENTRY": self.entry, "PYTHONPATH": _pythonpath()}

    def run(self, *args: str, timeout: float = 90.0, cwd: Path | None = None) -> Any:
        return run_paglets(*args, home=self.home, env=self.env, timeout=timeout, cwd=cwd)

    def leftovers(self) -> dict[str, list[str]]:
        """Paglets other than services on each host (active or not)."""
        found: dict[str, list[str]] = {}
        for name, host in self.hosts.items():
            rows = self.client.list_agents(host.url, state="all")
            rest = [
                f"{r.get('class_name')}:{r.get('agent_id')}"
                for r in rows
                if not str(r.get("agent_id", "")).startswith("service.")
            ]
            if rest:
                found[name] = rest
        return found

    def assert_clean(self) -> None:
        wait_until(lambda: not self.leftovers(), timeout=20, interval=0.2)


def _pythonpath() -> str:
    parts = [str(DS_DIA_SRC), *(p for p in sys.path if p.endswith("src"))]
    return ":".join(dict.fromkeys(parts))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("examples-mesh")
    launch = tmp / "launch.toml"
    launch.write_text(LAUNCH)
    env = {"PYTHONPATH": _pythonpath()}
    with host_processes(tmp) as start:
        common = ["--launch-config", str(launch)]
        beta = start("beta", args=[*common, "--tag", "linux", "--tag", "collector"], env=env)
        gamma = start("gamma", args=[*common, "--tag", "linux", "--peer", beta.url], env=env)
        alpha = start("alpha", args=[*common, "--tag", "laptop", "--peer", beta.url], env=env)
        hosts = {"alpha": alpha, "beta": beta, "gamma": gamma}
        m = Mesh(hosts, tmp / "home")

        def ready() -> bool:
            for host in hosts.values():
                seen = {
                    h["name"]: h for h in m.client.list_hosts(host.url) if h.get("online", True)
                }
                if not set(hosts) <= seen.keys():
                    return False
                if not all((seen[n].get("resources") or {}).get("job_cores") for n in hosts):
                    return False
            return True

        wait_until(ready, timeout=40, interval=0.2)
        yield m


# -- the classics ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("hello", ["Hello from beta!", "Hello from gamma!", "Back home. Goodbye!"]),
        ("clone-workers", ["clone 0 on alpha", "clone 2 on gamma", "(checked)"]),
        ("finder", ["traveller is on beta; it answers from beta", "registrations:"]),
        ("itinerary", ["leg 1: beta", "leg 2: gamma", "leg 3: alpha"]),
        ("master-slave", ["slave 0 back from beta", "slave 1 back from gamma"]),
        ("message-patterns", ["sync:", "future:", "one-way:", "ReplySet: 3 replies", "multicast"]),
        ("mobility-events", ["on_dispatching", "on_arrival", "on_clone "]),
    ],
)
def test_classic(mesh: Mesh, name: str, expect: list[str]) -> None:
    done = mesh.run("examples", "classic", name, "--timeout", "45s")
    assert done.returncode == 0, done.stderr + done.stdout
    for text in expect:
        assert text in done.stdout, done.stdout
    mesh.assert_clean()


def test_classic_json_and_unknown_name(mesh: Mesh) -> None:
    done = mesh.run("examples", "classic", "hello", "--json", "--timeout", "45s")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["ok"] is True and doc["result"]["stops"] == ["alpha", "beta", "gamma", "alpha"]
    bad = mesh.run("examples", "classic", "nope")
    assert bad.returncode == 2 and "no classic named 'nope'" in bad.stderr
    mesh.assert_clean()


def test_examples_list_names_every_example(mesh: Mesh) -> None:
    done = mesh.run("examples", "list")
    assert done.returncode == 0, done.stderr
    for text in ("examples classic NAME", "examples file push|pull"):
        assert text in done.stdout


# -- mesh-benchmark --------------------------------------------------------------------------


def test_mesh_benchmark_times_every_directed_pair(mesh: Mesh, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = mesh.run(
        "examples",
        "mesh-benchmark",
        "--payload-size",
        "4K",
        "--clock-probes",
        "2",
        "--output",
        str(out),
        "--timeout",
        "60s",
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "movement cost" in done.stdout and "hop 9/9" in done.stdout
    doc = json.loads(out.read_text())
    names = ["alpha", "beta", "gamma"]
    assert [h["name"] for h in doc["hosts"]] == names
    assert len(doc["hops"]) == 9  # 3 x 3 directed pairs, self-hops included
    assert {(h["from"], h["to"]) for h in doc["hops"]} == {(a, b) for a in names for b in names}
    assert all(h["payload_bytes"] == 4096 for h in doc["hops"])
    for a in names:
        assert set(doc["matrix"][a]) == set(names)
    mesh.assert_clean()


def test_mesh_benchmark_json_without_self_hops(mesh: Mesh, tmp_path: Path) -> None:
    done = mesh.run(
        "examples",
        "mesh-benchmark",
        "--exclude-self",
        "--repeats",
        "2",
        "--json",
        "--output",
        str(tmp_path / "b.json"),
        "--timeout",
        "60s",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    hops = doc["result"]["hops"]
    assert len(hops) == 12 and all(h["from"] != h["to"] for h in hops)
    mesh.assert_clean()
