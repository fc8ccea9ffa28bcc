"""The system services and their commands on a loopback mesh of real `paglets host`
processes (jobs.md §6-7, cli.md §5, §7-9).

Three hosts, each with its own HOME (so each has its own files and its own default file
root): `paglets sys load --json` hears from all of them; `paglets search grep` finds a
string planted on two of them; a search whose timeout passes (one host made slow with
`PAGLETS_SEARCH_PACE`) ends with the other hosts' hits and leaves no searcher anywhere;
`paglets examples file push --mode move` moves a file. A separate two-host mesh shows
user-info output of a paglet on another host reaching `paglets events --follow` on its
home host, also after that home host was stopped and came back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from paglets import Message
from paglets.remote.client import HostClient
from support.processes import HostProcess, cli_env, host_processes, run_paglets
from support.waiting import wait_until

JOIN = 30.0
SEARCHER = "paglets.examples.search:Searcher"
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("sysmesh")
    homes = {name: tmp / f"home-{name}" for name in ("alpha", "beta", "gamma")}
    for home in homes.values():
        (home / "data").mkdir(parents=True)
        (home / "slow").mkdir()
    with host_processes(tmp) as start:
        alpha = start("alpha", home=homes["alpha"])
        beta = start("beta", home=homes["beta"], args=["--peer", alpha.url, "--tag", "big"])
        gamma = start(
            "gamma",
            home=homes["gamma"],
            args=["--peer", alpha.url],
            env={"PAGLETS_SEARCH_PACE": "0.5"},  # a slow disk: 0.5 s per file
        )
        hosts = {"alpha": alpha, "beta": beta, "gamma": gamma}
        client = HostClient(timeout=10.0)
        wait_until(
            lambda: all(_alive(client, h) == set(hosts) for h in hosts.values()), timeout=JOIN
        )
        wait_until(lambda: _summaries(client, alpha) == set(hosts), timeout=JOIN)
        yield {"hosts": hosts, "homes": homes, "client": client, "tmp": tmp}


def _alive(client: HostClient, host: HostProcess) -> set[str]:
    members = client.get_json(f"{host.url}/mesh/members")["members"]
    return {m["name"] for m in members if m["status"] == "alive"}


def _summaries(client: HostClient, host: HostProcess) -> set[str]:
    """The members whose load summary `host` has heard."""
    hosts = client.get_json(f"{host.url}/hosts")["hosts"]
    return {h["name"] for h in hosts if "free_cpu_cores" in (h.get("resources") or {})}


def _paglets(
    mesh: dict[str, Any], *args: str, timeout: float = 90.0
) -> subprocess.CompletedProcess[str]:
    alpha = mesh["hosts"]["alpha"]
    return run_paglets(
        *args, "--entry", alpha.url, home=mesh["homes"]["alpha"], timeout=timeout, cwd=mesh["tmp"]
    )


def _searchers(client: HostClient, host: HostProcess) -> list[str]:
    agents = client.get_json(f"{host.url}/agents")["agents"]
    return [a["agent_id"] for a in agents if a["class_name"] == SEARCHER]


def _no_searchers_left(mesh: dict[str, Any]) -> bool:
    return all(not _searchers(mesh["client"], h) for h in mesh["hosts"].values())


def test_sys_load_json_hears_every_host(mesh: dict[str, Any]) -> None:
    done = _paglets(mesh, "sys", "load", "--json", "--timeout", "20s")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["errors"] == []
    by_host = {row["host_name"]: row for row in doc["hosts"]}
    assert set(by_host) == {"alpha", "beta", "gamma"}
    for name, row in by_host.items():
        assert row["host_url"] == mesh["hosts"][name].url
        assert 0.0 <= row["cpu_percent"] <= 100.0
        assert row["cpu_source"] in ("sampler", "host-monitor", "interval")
        assert row["memory_total_bytes"] > 0 and 0.0 <= row["memory_percent"] <= 100.0
        assert len(row["load_average"]) == 3 and all(x >= 0 for x in row["load_average"])
        assert row["cpu_count"] >= 1
        assert row["gpu_error"] is None or isinstance(row["gpu_error"], str)


def test_sys_df_names_a_bad_path_per_host_and_exits_1(mesh: dict[str, Any]) -> None:
    done = _paglets(mesh, "sys", "df", "/no/such/path", "~", "--host", "beta", "--json")
    assert done.returncode == 1, done.stderr
    volumes = json.loads(done.stdout)["volumes"]
    assert [v["host"] for v in volumes] == ["beta", "beta"]
    bad, home = volumes
    assert "No such file" in bad["error"] and home["error"] is None and home["total_bytes"] > 0


def test_mesh_targets_applies_every_filter(mesh: dict[str, Any]) -> None:
    loose = ["--max-load-per-cpu", "1000", "--max-cpu-percent", "100"]
    done = _paglets(mesh, "mesh", "targets", "--tag", "big", *loose, "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [t["host"]["host_name"] for t in doc["targets"]] == ["beta"]
    reasons = {r["host_name"]: [x["code"] for x in r["reasons"]] for r in doc["rejected"]}
    assert reasons == {"alpha": ["missing-tag"], "gamma": ["missing-tag"]}
    table = _paglets(mesh, "mesh", "targets", "--exclude-self", *loose)
    assert table.returncode == 0 and "Mesh Targets" not in table.stderr
    assert "beta" in table.stdout and "gamma" in table.stdout
    nothing = _paglets(mesh, "mesh", "targets", "--mem", "1000T", *loose)
    assert nothing.returncode == 1 and "No host qualifies." in nothing.stdout
    assert "needs 1000.0 TiB free memory" in nothing.stdout


def test_search_grep_finds_a_string_planted_on_two_hosts(mesh: dict[str, Any]) -> None:
    token = f"needle-{uuid.uuid4().hex[:8]}"
    homes = mesh["homes"]
    (homes["alpha"] / "data" / "a.txt").write_text(f"first line\nhere is {token}\n")
    (homes["beta"] / "data" / "b.md").write_text(f"{token} at the start\n")
    (homes["gamma"] / "data" / "c.txt").write_text("nothing to see\n")
    output = mesh["tmp"] / "grep.jsonl"
    done = _paglets(
        mesh, "search", "grep", token, "~/data", "--timeout", "60s", "--output", str(output)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"alpha:~/data/a.txt:2:here is {token}" in done.stdout
    assert f"beta:~/data/b.md:1:{token} at the start" in done.stdout
    hits = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted((h["host"], h["path"], h["line"]) for h in hits) == [
        ("alpha", "~/data/a.txt", 2),
        ("beta", "~/data/b.md", 1),
    ]
    assert "2 hit(s) from 3 host(s)" in done.stderr
    wait_until(lambda: _no_searchers_left(mesh), timeout=15.0)


def test_a_search_whose_timeout_passes_ends_with_partial_results(mesh: dict[str, Any]) -> None:
    token = f"slow-{uuid.uuid4().hex[:8]}"
    homes = mesh["homes"]
    (homes["alpha"] / "slow" / "one.txt").write_text(f"{token}\n")
    (homes["beta"] / "slow" / "one.txt").write_text(f"{token}\n")
    for i in range(40):  # 0.5 s per file on gamma: 20 s, far beyond the timeout
        (homes["gamma"] / "slow" / f"f{i:02}.txt").write_text(f"{token} {i}\n")
    done = _paglets(mesh, "search", "grep", token, "~/slow", "--timeout", "6s", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    hosts_with_hits = {h["host"] for h in doc["hits"]}
    assert {"alpha", "beta"} <= hosts_with_hits
    assert len([h for h in doc["hits"] if h["host"] == "gamma"]) < 40
    assert doc["timed_out"] is True
    assert any(e["host"] == "gamma" and "timeout" in e["error"] for e in doc["errors"])
    wait_until(lambda: _no_searchers_left(mesh), timeout=15.0)


def test_examples_file_push_moves_a_file(mesh: dict[str, Any]) -> None:
    homes = mesh["homes"]
    source = homes["alpha"] / "payload.bin"
    content = bytes(range(256)) * 400
    source.write_bytes(content)
    done = run_paglets(
        "examples",
        "file",
        "push",
        "payload.bin",
        "--remote",
        "beta",
        "--dest",
        "~/inbox/",
        "--mode",
        "move",
        "--entry",
        mesh["hosts"]["alpha"].url,
        home=homes["alpha"],
        cwd=homes["alpha"],
        timeout=90.0,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    arrived = homes["beta"] / "inbox" / "payload.bin"
    assert arrived.read_bytes() == content
    assert f"COMPLETED: alpha:{source} (100.0 KiB) -> beta:{arrived}" in done.stdout
    assert not source.exists()  # moved
    client = mesh["client"]
    transfers = "paglets.patterns.file_mobility:SingleFileTransferPaglet"
    for host in mesh["hosts"].values():
        agents = client.get_json(f"{host.url}/agents")["agents"]
        assert not [a for a in agents if a["class_name"] == transfers]


# -- user-info output reaches the home host ------------------------------------------------


class _Follower:
    """`paglets events --follow --job J --json` against one host, lines collected."""

    def __init__(self, host: HostProcess, home: Path, job: str) -> None:
        self.lines: list[dict[str, Any]] = []
        command = [sys.executable, "-m", "paglets", "events", "--follow", "--since", "0"]
        command += ["--job", job, "--json", "--entry", host.url]
        self.proc = subprocess.Popen(
            command,
            env=cli_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                continue

    def titles(self) -> list[str]:
        return [
            str(e.get("data", {}).get("title"))
            for e in self.lines
            if e.get("kind") == "user-info.notify"
        ]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def test_user_info_from_another_host_reaches_the_home_host_also_after_it_was_away(
    host_process: Callable[..., HostProcess], tmp_path: Path
) -> None:
    env = {"PYTHONPATH": str(TESTS)}  # the hosts load support.pattern_models:Notifier
    alpha = host_process("alpha", env=env)
    beta = host_process("beta", env=env, args=["--peer", alpha.url])
    client = HostClient(timeout=10.0)
    wait_until(lambda: _alive(client, alpha) == {"alpha", "beta"}, timeout=JOIN)
    wait_until(lambda: _alive(client, beta) == {"alpha", "beta"}, timeout=JOIN)
    job = f"job-{uuid.uuid4().hex[:8]}"
    follower = _Follower(alpha, tmp_path / "home", job)
    try:
        created = client.create_agent(alpha.url, "support.pattern_models:Notifier")
        moved = client.dispatch(alpha.url, created.agent_id, beta.url)
        assert moved.host_url == beta.url

        def notify(title: str) -> Any:
            return client.send_message(
                beta.url,
                created.agent_id,
                Message("notify", {"title": title, "text": "from beta", "job_id": job}),
            )

        assert notify("first") is True
        wait_until(lambda: "first" in follower.titles(), timeout=20.0)
        first = next(e for e in follower.lines if e["data"].get("title") == "first")
        assert first["host_name"] == "alpha" and first["data"]["origin_host"] == "beta"
        assert first["data"]["job"] == job and first["agent_id"] == created.agent_id

        alpha.terminate()  # the home host goes away...
        assert notify("while away") is True  # ...recorded on beta, waiting for alpha
        local = client.get_json(f"{beta.url}/events?job={job}&limit=100")["events"]
        assert "while away" in [e["data"].get("title") for e in local]
        alpha.restart(same_port=True)  # ...and comes back: the backlog follows
        wait_until(lambda: "while away" in follower.titles(), timeout=40.0)
        assert follower.titles().count("while away") == 1
    finally:
        follower.close()
