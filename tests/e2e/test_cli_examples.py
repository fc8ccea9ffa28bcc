"""`paglets examples ...` end to end (cli.md §8, jobs.md §7) against a real loopback mesh of
three `paglets host` processes: each example runs, exits 0, prints what it should, and
leaves no paglet behind on any host (service paglets aside)."""

from __future__ import annotations

import itertools
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
        try:
            wait_until(lambda: not self.leftovers(), timeout=20, interval=0.2)
        except BaseException:
            raise AssertionError(f"paglets left behind: {self.leftovers()}") from None


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


def test_classic_detached_runs_on_and_cleans_up(mesh: Mesh) -> None:
    done = mesh.run("examples", "classic", "master-slave", "--detach", "--timeout", "45s")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("submitted example-master-slave-")
    job = done.stdout.split()[1]

    def finished() -> bool:
        page = mesh.client.get_json(f"{mesh.entry}/events?job={job}&limit=200")
        return any(
            ((e.get("data") or {}).get("metadata") or {}).get("example") == "finished"
            for e in page.get("events") or ()
        )

    wait_until(finished, timeout=45, interval=0.2)
    mesh.assert_clean()


def test_examples_list_names_every_example(mesh: Mesh) -> None:
    done = mesh.run("examples", "list")
    assert done.returncode == 0, done.stderr
    for text in (
        "paglets demo",
        "examples bundle --jobs 20",
        "examples classic NAME",
        "examples file push|pull",
        "examples mesh-benchmark",
        "examples pi --digits N",
        "paglets search grep|find",
    ):
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


# -- pi --------------------------------------------------------------------------------------

PI = "31415926535897932384626433832795028841971693993751"


def test_pi_digits_in_order_with_a_lost_batch_retried(mesh: Mesh, tmp_path: Path) -> None:
    out = tmp_path / "pi.txt"
    done = mesh.run(
        "examples",
        "pi",
        "--digits",
        "24",
        "--batch-size",
        "8",
        "--fail-batch",
        "1",
        "--output",
        str(out),
        "--timeout",
        "60s",
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip() == PI[:24]
    assert "batch 1 failed" in done.stderr and "retrying" in done.stderr
    assert out.read_text().strip() == PI[:24]
    mesh.assert_clean()


def test_pi_json_from_an_offset_in_waves(mesh: Mesh, tmp_path: Path) -> None:
    done = mesh.run(
        "examples",
        "pi",
        "--start",
        "10",
        "--digits",
        "12",
        "--batch-size",
        "4",
        "--max-in-flight",
        "2",
        "--json",
        "--output",
        str(tmp_path / "pi.txt"),
        "--timeout",
        "60s",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["ok"] and doc["result"]["digits"] == PI[10:22]
    assert doc["result"]["batches"] == 3
    assert set(doc["result"]["hosts"]) <= {"beta", "gamma"}
    mesh.assert_clean()


def test_pi_timeout_cancels_the_batches_and_cleans_up(mesh: Mesh, tmp_path: Path) -> None:
    # No host has 100 TiB of memory: the batches wait for a capable host until the timeout.
    done = mesh.run(
        "examples",
        "pi",
        "--digits",
        "3",
        "--mem",
        "100T",
        "--timeout",
        "3s",
        "--output",
        str(tmp_path / "pi.txt"),
    )
    assert done.returncode == 1, done.stderr + done.stdout
    assert "did not finish within 3s" in done.stderr
    assert not (tmp_path / "pi.txt").exists()
    mesh.assert_clean()


# -- bundle (the seed's pattern) -------------------------------------------------------------


def test_bundle_runs_the_seed_pattern_and_brings_results_home(mesh: Mesh, tmp_path: Path) -> None:
    got = tmp_path / "out"
    done = mesh.run(
        "examples",
        "bundle",
        "--jobs",
        "4",
        "--download",
        str(got),
        "--timeout",
        "90s",
        timeout=150,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "4/4 jobs reported" in done.stdout and "COMPLETE and home on alpha" in done.stdout
    files = sorted(got.rglob("*"))
    assert len([f for f in files if f.is_file()]) == 4
    for f in files:
        if f.is_file():
            assert f.read_text().startswith("index,length,checksum")
    mesh.assert_clean()


def test_bundle_json_with_a_constraint_no_host_meets(mesh: Mesh) -> None:
    done = mesh.run(
        "examples",
        "bundle",
        "--jobs",
        "2",
        "--json",
        "--where",
        "python>=9",
        "--retries",
        "0",
        "--timeout",
        "6s",
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["ok"] is False and doc["done"] == 0
    mesh.assert_clean()


# -- the examples' pure parts (no mesh) ------------------------------------------------------


def test_pi_digits_matches_the_known_expansion() -> None:
    from paglets.examples.pi import pi_digits

    assert pi_digits(0, 50) == PI
    assert "".join(pi_digits(s, 7) for s in range(0, 49, 7)) == PI[:49]
    assert pi_digits(5, 0) == ""
    with pytest.raises(ValueError):
        pi_digits(-1, 3)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
@pytest.mark.parametrize("self_loops", [True, False])
def test_pair_tour_takes_every_directed_pair_once(count: int, self_loops: bool) -> None:
    from paglets.examples.mesh_benchmark import pair_tour

    nodes = [f"h{i}" for i in range(count)]
    tour = pair_tour(nodes, self_loops=self_loops)
    expected = {(a, b) for a in nodes for b in nodes if self_loops or a != b}
    assert sorted(tour) == sorted(expected)
    if tour:
        assert tour[0][0] == "h0" and tour[-1][1] == "h0"
        assert all(x[1] == y[0] for x, y in itertools.pairwise(tour))
