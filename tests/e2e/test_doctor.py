"""`paglets doctor` (cli.md section 10; the seed's "Practical Checklist") against real
`paglets host` processes: a healthy mesh passes (exit 0), and each kind of fault is one
FAIL (or WARN) line naming the host at fault and the fix, with exit 1."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paglets.cli.main import run
from paglets.remote.client import HostClient
from support.processes import HostProcess, run_paglets
from support.waiting import wait_until

MODULE = """
from dataclasses import dataclass

from paglets import Paglet, PagletState


@dataclass
class ProbeState(PagletState):
    n: int = 0


class Probe(Paglet[ProbeState]):
    State = ProbeState
"""
PROBE = "doctor_mesh_app:Probe"
PROBE_STATE = "doctor_mesh_app:ProbeState"
CHECKS = [
    "hosts",
    "mesh-version",
    "imports",
    "code",
    "tags",
    "placement",
    "groups",
    "storage",
    "collector",
]


@pytest.fixture
def app_path(tmp_path: Path) -> str:
    """A PYTHONPATH with the application module on it (hosts without it lack the module)."""
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "doctor_mesh_app.py").write_text(MODULE)
    return os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)


def members(entry: str) -> dict[str, dict[str, Any]]:
    with HostClient(timeout=5.0) as client:
        answer = client.get_json(f"{entry}/mesh/members")
    return {m["name"]: m for m in answer["members"]}


def wait_for(entry: str, **wanted: str) -> None:
    """Until the entry's view shows each named member in the wanted status."""

    def seen() -> bool:
        view = members(entry)
        return all(
            name in view
            and (
                view[name]["status"] == status
                or (status == "incompatible" and view[name]["incompatible_reason"])
            )
            for name, status in wanted.items()
        )

    wait_until(seen, timeout=30, interval=0.1)


def lines_of(stdout: str) -> dict[str, list[str]]:
    """Each check's block: its `STATUS name: detail` line, then its notes and fix."""
    blocks: dict[str, list[str]] = {}
    current: list[str] = []
    for line in stdout.splitlines():
        if not line.startswith(" "):
            name = line.split(" ", 1)[1].split(":", 1)[0]
            current = blocks[name] = [line]
        else:
            current.append(line.strip())
    return blocks


def test_a_healthy_mesh_passes_and_a_killed_member_fails(
    host_process: Callable[..., HostProcess], app_path: str, tmp_path: Path
) -> None:
    alpha = host_process("alpha", env={"PYTHONPATH": app_path})
    beta = host_process(
        "beta", env={"PYTHONPATH": app_path}, args=["--peer", alpha.url, "--tag", "linux"]
    )
    home = tmp_path / "home"
    wait_for(alpha.url, beta="alive")

    fine = run_paglets("doctor", PROBE, "--expect-tag", "linux", "--entry", alpha.url, home=home)
    assert (fine.returncode, fine.stderr) == (0, ""), fine.stdout
    blocks = lines_of(fine.stdout)
    assert list(blocks) == CHECKS
    assert blocks["hosts"][0] == "PASS hosts: 2 host(s) alive and answering: alpha (entry), beta"
    assert blocks["mesh-version"][0] == "PASS mesh-version: 2 host(s) run mesh version 'test'"
    assert blocks["imports"][0] == f"PASS imports: alpha, beta import {PROBE}, {PROBE_STATE}"
    assert blocks["tags"][0] == "PASS tags: linux (beta)"
    assert blocks["storage"][0].startswith("PASS storage: ")
    assert any(n.startswith("- alpha quota 10 GiB, ") for n in blocks["storage"])
    assert not any(line.startswith("FAIL") for line in fine.stdout.splitlines())

    as_json = run_paglets(
        "doctor", "--class", PROBE, "--entry", alpha.url, "--json", "--expect-tag", "gpu", home=home
    )
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert sorted(doc) == ["checks", "entry", "hosts", "imports", "ok", "status"]
    assert (doc["ok"], doc["status"], doc["entry"]) == (False, "FAIL", alpha.url)
    assert [c["name"] for c in doc["checks"]] == CHECKS
    for check in doc["checks"]:
        assert sorted(check) == ["detail", "fix", "hosts", "name", "notes", "status"]
    tags = next(c for c in doc["checks"] if c["name"] == "tags")
    assert tags["status"] == "FAIL" and "'gpu'" in tags["detail"]
    assert "--tag gpu" in tags["fix"]
    assert {h["name"]: h["status"] for h in doc["hosts"]} == {"alpha": "alive", "beta": "alive"}
    assert [r["name"] for r in doc["imports"][1]["results"]] == [PROBE, PROBE_STATE]
    assert as_json.stderr.strip() == "paglets doctor: 1 of 9 checks failed: tags"

    beta.kill()
    wait_for(alpha.url, beta="dead")
    dead = run_paglets("doctor", "--entry", alpha.url, home=home)
    assert dead.returncode == 1
    hosts = lines_of(dead.stdout)["hosts"]
    assert hosts[0] == "FAIL hosts: 1 of 2 host(s) not running or not reachable: beta"
    assert hosts[1].startswith(f"- beta ({beta.url}) is dead, last heard ")
    port = beta.url.rsplit(":", 1)[1]
    assert hosts[2] == (
        f"fix: start beta again: paglets host --name beta --port {port} "
        f"--mesh-version test --peer {alpha.url}"
    )
    # (With the jobs system, placement fails too: the only host left is the submitter.)
    assert dead.stderr.startswith("paglets doctor: ")
    assert "checks failed: hosts" in dead.stderr.splitlines()[0]


def test_another_mesh_version_and_a_missing_module_are_named(
    host_process: Callable[..., HostProcess], app_path: str, tmp_path: Path
) -> None:
    alpha = host_process("alpha", env={"PYTHONPATH": app_path})
    host_process("beta", args=["--peer", alpha.url])  # lacks the application module
    host_process(
        "gamma", env={"PYTHONPATH": app_path}, mesh_version="other", args=["--peer", alpha.url]
    )
    home = tmp_path / "home"
    wait_for(alpha.url, beta="alive", gamma="incompatible")

    done = run_paglets("doctor", "--class", PROBE, "--entry", alpha.url, home=home)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[0] == (
        "paglets doctor: 2 of 9 checks failed: mesh-version, imports"
    )
    blocks = lines_of(done.stdout)
    assert blocks["hosts"][0].startswith("PASS hosts: 3 host(s) alive")
    assert blocks["mesh-version"] == [
        "FAIL mesh-version: gamma runs mesh version 'other', alpha (entry) runs 'test'",
        "fix: restart gamma with --mesh-version test (or every host with one common value), "
        "once all run the same code",
    ]
    imports = blocks["imports"]
    assert imports[0] == "FAIL imports: 1 of 3 host(s) cannot import the classes: beta"
    assert imports[1].startswith(f"- beta cannot import {PROBE}: ClassImportError: ")
    assert "No module named 'doctor_mesh_app'" in imports[1]
    assert imports[2].startswith("fix: on beta (http://127.0.0.1:")
    assert 'uv run python -c "from doctor_mesh_app import Probe; print(Probe)"' in imports[2]
    # No host advertises a role: a warning, which alone would not fail the run.
    assert blocks["tags"][0] == "WARN tags: no host advertises a tag"
    assert blocks["tags"][1].startswith("fix: advertise roles with --tag (linux, gpu, ")


def test_the_entry_must_answer(tmp_path: Path) -> None:
    code = run(["doctor", "--entry", "http://127.0.0.1:9"])
    assert code == 2
    done = run_paglets("doctor", "not-a-class", "--entry", "http://127.0.0.1:9", home=tmp_path)
    assert done.returncode == 2
    assert "must be module:QualName" in done.stderr and "Traceback" not in done.stderr


FAKE_JOBS = """
import json
from typing import Annotated

import typer

from paglets.cli.errors import CliError

app = typer.Typer(name="jobs")


@app.command("hosts")
def hosts(
    cores: Annotated[int, typer.Option("--cores")] = 0,
    json_: Annotated[bool, typer.Option("--json")] = False,
    entry: Annotated[str, typer.Option("--entry")] = "",
    timeout: Annotated[str, typer.Option("--timeout")] = "",
) -> None:
    if cores > 8:
        reasons = [{"code": "cores", "message": "has 8 cores"}]
        print(json.dumps({"candidates": [], "rejected": [{"host": "alpha", "reasons": reasons}]}))
        raise typer.Exit(1)
    print(json.dumps({"candidates": [{"host_name": "alpha"}], "rejected": []}))


@app.command("groups")
def groups(
    group: Annotated[str, typer.Option("--group")] = "",
    json_: Annotated[bool, typer.Option("--json")] = False,
    entry: Annotated[str, typer.Option("--entry")] = "",
    timeout: Annotated[str, typer.Option("--timeout")] = "",
) -> None:
    if group:
        raise CliError(f"no collector for group {group!r} on any of 1 hosts", code=1)
    print(json.dumps({"groups": [], "errors": []}))
    raise typer.Exit(1)
"""


def test_placement_and_groups_read_the_jobs_views_when_they_exist(
    host: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The jobs commands are the contract (cli.md section 4): a stand-in `jobs` group shows
    that the doctor runs them with the placement options and reads their JSON."""
    import paglets.cli.doctor as doctor_cli
    import paglets.cli.main as cli_main

    (tmp_path / "fake_jobs_cli.py").write_text(FAKE_JOBS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(doctor_cli, "JOBS_MODULE", "fake_jobs_cli")
    monkeypatch.setitem(cli_main._GROUPS, "jobs", "fake_jobs_cli")

    code = run(["doctor", "--entry", host.address, "--cores", "4"])
    out, _ = capsys.readouterr()
    blocks = lines_of(out)
    assert code == 0, out
    assert blocks["placement"] == ["PASS placement: 1 candidate host(s) for --cores 4: alpha"]
    assert blocks["groups"] == ["PASS groups: the groups view answers (0 group(s))"]
    assert blocks["collector"][0].startswith("PASS collector: no host tagged collector")

    code = run(["doctor", "--entry", host.address, "--cores", "16", "--group", "g-1"])
    out, err = capsys.readouterr()
    blocks = lines_of(out)
    assert code == 1
    assert blocks["placement"][:2] == [
        "FAIL placement: no candidate host for --cores 16",
        "- alpha: has 8 cores",
    ]
    assert blocks["groups"][0] == (
        "FAIL groups: group 'g-1' is not visible from the mesh: "
        "no collector for group 'g-1' on any of 1 hosts"
    )
    assert "2 of 9 checks failed: placement, groups" in err


def test_host_limits_the_check_to_the_hosts_named(
    host: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["doctor", "--entry", host.address, "--host", "http://127.0.0.1:9"])
    out, _ = capsys.readouterr()
    assert code == 1
    hosts = lines_of(out)["hosts"]
    assert hosts[0] == "FAIL hosts: 1 of 2 host(s) not running or not reachable: http://127.0.0.1:9"
    assert hosts[1].startswith("- http://127.0.0.1:9 is no member of the mesh and does not answer")
    assert hosts[2].startswith("fix: start a host at http://127.0.0.1:9: paglets host --name NAME")

    code = run(["doctor", "--entry", host.address, "--host", "nosuch"])
    _, err = capsys.readouterr()
    assert code == 2 and "no host named 'nosuch'" in err
